//! Simulated bots for the aggregator's ingest benchmark (`bench/fleet.sh`): N bots register,
//! then each pushes one realistic snapshot per second over real HTTP, spread evenly over the
//! second, as N real bots would. The snapshots are the per-second intervals of a real run
//! file (`scaletest load --json`), used in turn.
//!
//! ```text
//! cargo run --release -p fleet --example ingest -- http://127.0.0.1:8089 TOKEN BOTS SECONDS RUN.json
//! ```
//! Prints pushes sent, refused and failed, and the push latency p50/p99/max.

// A benchmark tool: it prints, and counts latencies under a lock (off the measured process).
#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use bytes::Bytes;
use fleet::wire::{Register, Registered};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

type Http = Client<HttpConnector, Full<Bytes>>;

async fn call(
    http: &Http,
    method: &str,
    url: String,
    token: &str,
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = http.request(req).await.map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    let b = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((code, b))
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 6 {
        eprintln!("usage: ingest AGGREGATOR_URL TOKEN BOTS SECONDS RUN.json");
        std::process::exit(2);
    }
    let (base, token) = (a[1].trim_end_matches('/').to_string(), a[2].clone());
    let bots: usize = a[3].parse().expect("BOTS");
    let seconds: u64 = a[4].parse().expect("SECONDS");
    let run = report::RunFile::read(std::path::Path::new(&a[5])).expect("a run file");
    let snaps: Arc<Vec<String>> = Arc::new(
        run.intervals
            .into_iter()
            .filter(|s| s.responses > 0 && s.seconds() > 0.99)
            .map(|s| serde_json::to_string(&hist::sparse::WireSnapshot::from(&s)).unwrap())
            .collect(),
    );
    assert!(!snaps.is_empty(), "the run file has no full seconds");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        let http: Http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(conn);
        let mut ids = Vec::new();
        for i in 0..bots {
            let r = Register {
                id: None,
                name: format!("sim-{i}"),
                host: "sim".into(),
                pid: i as u32,
                version: "sim".into(),
                clock_unix: now_unix(),
            };
            let (code, b) = call(&http, "POST", format!("{base}/api/bots"), &token, serde_json::to_vec(&r).unwrap())
                .await
                .expect("register");
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&b));
            let reg: Registered = serde_json::from_slice(&b).unwrap();
            ids.push((reg.id, reg.instance));
        }
        let sent = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let lat = Arc::new(std::sync::Mutex::new(hist::new_histogram()));
        let start = now_unix().floor() + 1.0;
        let mut tasks = tokio::task::JoinSet::new();
        for (k, (id, instance)) in ids.into_iter().enumerate() {
            let (http, base, token) = (http.clone(), base.clone(), token.clone());
            let (sent, refused, failed, lat) = (sent.clone(), refused.clone(), failed.clone(), lat.clone());
            let snaps = snaps.clone();
            let offset = (k as f64 / bots as f64) * 0.9 + 0.05;
            tasks.spawn(async move {
                for s in 0..seconds as usize {
                    let t = start as u64 + s as u64;
                    // The snapshot's JSON is encoded once; only the envelope is written per push.
                    let body = format!(
                        r#"{{"clock_unix":{},"intervals":[{{"t":{t},"snap":{}}}],"instance":"{instance}"}}"#,
                        t as f64 + 1.25,
                        snaps[(k + s) % snaps.len()]
                    )
                    .into_bytes();
                    let at = start + 1.0 + s as f64 + offset;
                    let wait = at - now_unix();
                    if wait > 0.0 {
                        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                    }
                    let t0 = Instant::now();
                    match call(&http, "POST", format!("{base}/api/bots/{id}/snapshots"), &token, body).await {
                        Ok((200, _)) => {}
                        Ok(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    let _ = lat.lock().unwrap().record(t0.elapsed().as_micros() as u64);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let l = lat.lock().unwrap();
        println!(
            "bots {bots} seconds {seconds} pushes {} refused {} failed {} latency_ms p50 {:.2} p99 {:.2} max {:.2}",
            sent.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            l.value_at_quantile(0.5) as f64 / 1000.0,
            l.value_at_quantile(0.99) as f64 / 1000.0,
            l.max() as f64 / 1000.0
        );
    });
}
