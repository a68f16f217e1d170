//! The promptness measurement for BENCHMARKS.md: PODS pods created on NODES hollow nodes and
//! bound at once (as a scheduler would), against the in-process fake API; reports the time
//! from the last binding until every pod is Running and Ready (as the startup informer saw),
//! and the pod startup latency.
//!
//! `cargo run --release -p nodes --example burst -- [NODES] [PODS] [shared|per-node]`

// Examples may print (see clippy.toml).
#![allow(clippy::disallowed_macros)]

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::Api;
use kubefake::FakeApi;
use nodes::client::{connections_for, Pool, Transport};
use nodes::{Config, WatchMode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let p: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let mode = args.get(3).map(String::as_str).unwrap_or("per-node");
    let api = FakeApi::start();
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
    let t = Transport::Http2 {
        streams_per_connection: 100,
    };
    let pool = Pool::new(&config, t, connections_for(cfg.watches(), 100)).expect("pool");
    let running = nodes::start(cfg, pool, t).await.expect("start");
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
    let client = kube::Client::try_from(config).expect("client");
    let pods = Api::<Pod>::namespaced(client, "default");
    let t0 = Instant::now();
    futures::stream::iter(0..p)
        .for_each_concurrent(64, |i| {
            let pods = pods.clone();
            async move {
                let b = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": format!("b{i}")},
                               "target": {"kind": "Node", "name": format!("hollow-node-{}", i % n)}});
                pods.create_subresource::<Value, Value>("binding", &format!("b{i}"), &PostParams::default(), &b)
                    .await
                    .expect("bind");
            }
        })
        .await;
    let bound = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while (running.report().startup.pod_startup.len() as usize) < p && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = t0.elapsed();
    let run = running.stop(false).await;
    println!(
        "{p} pods on {n} nodes ({mode} watches, run delay 1 s): bound in {:.2} s; all Running and seen {:.2} s after the first binding, {:.2} s after the last",
        bound.as_secs_f64(),
        all.as_secs_f64(),
        (all - bound).as_secs_f64()
    );
    println!("{}", nodes::report::render(&run));
}
