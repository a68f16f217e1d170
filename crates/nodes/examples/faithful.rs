//! The faithfulness measurement for BENCHMARKS.md and docs/hollow-nodes.md: N hollow nodes with
//! the kubelet's default periods against the in-process fake API; after a warm-up, the fake's
//! request log over the measured minutes, per node per minute, by verb and resource; then the
//! calls each pod start and deletion costs.
//!
//! `cargo run --release -p nodes --example faithful -- [NODES] [MINUTES] [WARMUP_S]`

// Examples may print (see clippy.toml).
#![allow(clippy::disallowed_macros)]

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use kubefake::FakeApi;
use nodes::client::{Pool, Transport};
use nodes::Config;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn diff(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    b.iter()
        .filter(|(k, _)| !k.contains(" in "))
        .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50);
    let minutes: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let warmup: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(60);
    let api = FakeApi::start();
    let dir = std::env::temp_dir();
    let kc = api.kubeconfig(&dir);
    let config = kapi::config(Some(&kc), None, Some(Duration::from_secs(30)), false)
        .await
        .expect("config");
    let cfg = Config::new(n);
    let t = Transport::Http2 {
        streams_per_connection: None,
    };
    let pool = Pool::connect(&config, t, cfg.watches(), cfg.calls_at_once())
        .await
        .expect("pool");
    let running = nodes::start(cfg, pool).await.expect("start");
    eprintln!("{n} nodes registered; warming up {warmup}s, then measuring {minutes} min");
    tokio::time::sleep(Duration::from_secs(warmup)).await;
    let before = api.calls();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(minutes * 60.0)).await;
    let after = api.calls();
    let mins = t0.elapsed().as_secs_f64() / 60.0;
    println!(
        "Steady state: {n} nodes, {:.2} min; calls per node per minute (the fake's request log)",
        mins
    );
    for (k, v) in diff(&before, &after) {
        println!("  {k:<40} {:>8.3}", v as f64 / n as f64 / mins);
    }
    // Pod transitions: P pods created, bound, Running, then deleted and finalized.
    let p = 20;
    let client = kube::Client::try_from(config).expect("client");
    let pods = Api::<Pod>::namespaced(client, "default");
    for i in 0..p {
        api.create(
            "pods",
            "default",
            json!({"metadata": {"name": format!("f{i}")},
            "spec": {"containers": [{"name": "c", "image": "pause"}]}}),
        )
        .expect("pod");
    }
    let before = api.calls();
    for i in 0..p {
        let b = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": format!("f{i}")},
                       "target": {"kind": "Node", "name": format!("hollow-node-{}", i % n)}});
        pods.create_subresource::<Value, Value>(
            "binding",
            &format!("f{i}"),
            &PostParams::default(),
            &b,
        )
        .await
        .expect("bind");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while running.report().pods.running < p as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Events are posted in the background (as a kubelet's broadcaster posts them): wait for
    // the three of each start (Pulled, Created, Started) before cutting the window.
    let events = |c: &BTreeMap<String, u64>| c.get("create events").copied().unwrap_or(0);
    let e0 = events(&before);
    while api.count("create events") < e0 + 3 * p as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = api.calls();
    for i in 0..p {
        pods.delete(&format!("f{i}"), &DeleteParams::default())
            .await
            .expect("delete");
    }
    while running.report().pods.finalized < p as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e1 = events(&started);
    while api.count("create events") < e1 + p as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = api.calls();
    println!("Per pod start (bind → Running), calls per pod:");
    for (k, v) in diff(&before, &started) {
        println!("  {k:<40} {:>8.3}", v as f64 / p as f64);
    }
    println!("Per pod deletion (graceful delete → finalized), calls per pod:");
    for (k, v) in diff(&started, &done) {
        println!("  {k:<40} {:>8.3}", v as f64 / p as f64);
    }
    let run = running.stop(false).await;
    println!("\n{}", nodes::report::render(&run));
}
