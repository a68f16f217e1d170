//! The promptness measurement for BENCHMARKS.md: PODS pods created on NODES hollow nodes and
//! bound at once (as a scheduler would, 64 bindings in flight), against the in-process fake
//! API. The clock runs per pod from its binding: this example's own informer on all
//! pods (a clusterloader2-style watcher, beside the nodes' startup informer) records when each
//! pod is first seen Running and Ready, and it reports bound → Running per pod (p50/p99/max),
//! the time from the last binding until every pod was seen, and the pod startup latency.
//!
//! `cargo run --release -p nodes --example burst -- [NODES] [PODS] [shared|per-node] [BOOKMARK_S]`
//!
//! The fake sends each watch a bookmark every BOOKMARK_S seconds (default 60, the API
//! server's period; the fake's own default is shorter, for tests).

// Examples may print (see clippy.toml).
#![allow(clippy::disallowed_macros)]
// One lock for the example's per-pod marks.
#![allow(clippy::disallowed_types)]

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::Api;
use kubefake::FakeApi;
use nodes::client::{Pool, Transport};
use nodes::reflect::{self, Ev, Query};
use nodes::traffic::Traffic;
use nodes::{Config, WatchMode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Per pod name: when its binding returned and when it was first seen Running and Ready.
#[derive(Default)]
struct Marks {
    bound: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
}

fn running_and_ready(p: &Pod) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Running")
            && s.conditions
                .as_ref()
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let p: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let mode = args.get(3).map(String::as_str).unwrap_or("per-node");
    let bookmark_s: f64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(60.0);
    let api = FakeApi::start_with(kubefake::Options {
        bookmark_every: Duration::from_secs_f64(bookmark_s),
        ..Default::default()
    });
    let kc = api.kubeconfig(&std::env::temp_dir());
    let config = kapi::config(Some(&kc), None, Some(Duration::from_secs(30)), false)
        .await
        .expect("config");
    let mut cfg = Config::new(n);
    cfg.watch = if mode == "shared" {
        WatchMode::Shared
    } else {
        WatchMode::PerNode
    };
    let run_delay = cfg.pods.run_delay;
    let t = Transport::Http2 {
        streams_per_connection: None,
    };
    let pool = Pool::connect(&config, t, cfg.watches(), cfg.calls_at_once())
        .await
        .expect("pool");
    let running = nodes::start(cfg, pool).await.expect("start");
    let client = kube::Client::try_from(config).expect("client");
    // The example's own informer: when each pod is first seen Running and Ready.
    let marks = Arc::new(Mutex::new(Marks::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let informer = {
        let marks = marks.clone();
        let q = Query {
            resource: "pods",
            fields: None,
            labels: None,
            timeout: (Duration::from_secs(300), Duration::from_secs(600)),
        };
        let traffic = Arc::new(Traffic::new(
            1,
            Duration::from_secs(1),
            Duration::from_secs(30),
        ));
        let on = move |ev: Ev<Pod>| {
            let now = Instant::now();
            let mut m = marks.lock().expect("lock");
            let mut see = |p: &Pod| {
                if running_and_ready(p) {
                    if let Some(name) = &p.metadata.name {
                        m.running.entry(name.clone()).or_insert(now);
                    }
                }
            };
            match ev {
                Ev::Listed(items) => items.iter().for_each(&mut see),
                Ev::Applied(p) => see(&p),
                Ev::Deleted(_) => {}
            }
        };
        tokio::spawn(reflect::run(
            Api::<Pod>::all(client.clone()),
            q,
            traffic,
            stop_rx,
            on,
        ))
    };
    let sent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    for i in 0..p {
        api.create(
            "pods",
            "default",
            json!({"metadata": {"name": format!("b{i}"),
            "annotations": {(kapi::ANN_SENT): sent.to_string()}},
            "spec": {"containers": [{"name": "c", "image": "pause"}]}}),
        )
        .expect("pod");
    }
    let pods = Api::<Pod>::namespaced(client, "default");
    let t0 = Instant::now();
    futures::stream::iter(0..p)
        .for_each_concurrent(64, |i| {
            let (pods, marks) = (pods.clone(), marks.clone());
            async move {
                let name = format!("b{i}");
                let b = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                               "target": {"kind": "Node", "name": format!("hollow-node-{}", i % n)}});
                pods.create_subresource::<Value, Value>("binding", &name, &PostParams::default(), &b)
                    .await
                    .expect("bind");
                marks.lock().expect("lock").bound.insert(name, Instant::now());
            }
        })
        .await;
    let bound = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    let all_seen = || marks.lock().expect("lock").running.len() >= p;
    while !all_seen() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = t0.elapsed();
    while (running.report().startup.pod_startup.len() as usize) < p && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    let _ = informer.await;
    let run = running.stop(false).await;
    let m = marks.lock().expect("lock");
    let mut per_pod: Vec<f64> = m
        .bound
        .iter()
        .filter_map(|(name, b)| Some(m.running.get(name)?.duration_since(*b).as_secs_f64()))
        .collect();
    per_pod.sort_by(f64::total_cmp);
    let within = per_pod.iter().filter(|&&s| s <= 10.0).count();
    println!(
        "{p} pods on {n} nodes ({mode} watches, run delay {:.1} s): bound in {:.2} s; {} of {p} seen Running and Ready, the last {:.2} s after the first binding, {:.2} s after the last",
        run_delay.as_secs_f64(),
        bound.as_secs_f64(),
        per_pod.len(),
        seen.as_secs_f64(),
        (seen - bound).as_secs_f64()
    );
    println!(
        "bound → Running and Ready, per pod: p50 {:.2} s, p90 {:.2} s, p99 {:.2} s, max {:.2} s; {within} of {p} within 10 s",
        pct(&per_pod, 0.5),
        pct(&per_pod, 0.9),
        pct(&per_pod, 0.99),
        pct(&per_pod, 1.0)
    );
    println!("{}", nodes::report::render(&run));
}
