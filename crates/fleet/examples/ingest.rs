//! Simulated bots for the aggregator's ingest benchmark (`bench/fleet.sh`): N bots register,
//! then each pushes one realistic snapshot per second over real HTTP, spread evenly over the
//! second, as N real bots would: each bot on its own kept-alive connection. The snapshots are
//! the per-second intervals of a real run file (`scaletest load --json`), used in turn.
//!
//! ```text
//! cargo run --release -p fleet --example ingest -- http://127.0.0.1:8089 TOKEN BOTS SECONDS RUN.json
//! INGEST_CA=tls/cert.pem cargo run --release -p fleet --example ingest -- https://127.0.0.1:8089 …
//! ```
//! Over `https://`, every bot's connection is TLS (HTTP/1.1 by ALPN, as a bot's link speaks to
//! a deployed aggregator), trusting only the CA certificate in `INGEST_CA`.
//! Prints `registered N` once every bot has registered (pushes start at the next second), then
//! at the end the pushes sent, refused, failed and retried (sent again on a new connection),
//! pushes per second over the run, and the push latency p50/p99/max after the first
//! [`WARM_UP`] seconds.
//!
//! Pushes are binary, as a bot encodes them (`Push::encode`). The requests are written by hand on raw connections and the answers read with
//! `st_http::wire`: with hyper's pooled client on one thread, 10,000 bots' pushes queued for
//! about a second on this machine (BENCHMARKS.md, 2026-11-29 05:49), too slow to load an
//! aggregator with 10,000 bots. Here a push is one formatted buffer, one write and one read.

// A benchmark tool: it prints, and counts latencies under a lock (off the measured process).
#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use fleet::wire::{Interval, Push, Register, Registered, PUSH_TYPE};
use st_http::wire::{self, BodyFraming};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bot's connection: plain TCP or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Where the bots push: the address, and the TLS client when the URL is `https://`.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
}

/// Seconds of pushes left out of the latency figures (the script measures CPU after them too):
/// the first pushes reconnect what the aggregator closed while 10,000 bots registered.
const WARM_UP: usize = 2;

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One bot's connection to the aggregator, kept alive across pushes (reopened after a close).
struct Conn {
    target: Target,
    stream: Option<Box<dyn Stream>>,
    req: Vec<u8>,
    buf: Vec<u8>,
    /// Requests sent again on a new connection.
    retried: u64,
}

impl Conn {
    fn new(target: Target) -> Conn {
        Conn {
            target,
            stream: None,
            req: Vec::with_capacity(16 * 1024),
            buf: Vec::with_capacity(4096),
            retried: 0,
        }
    }

    /// POST `body` to `path`; the status and the answer's body.
    async fn post(
        &mut self,
        path: &str,
        token: &str,
        ctype: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        self.req.clear();
        write!(
            self.req,
            "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\
             content-type: {ctype}\r\ncontent-length: {}\r\n\r\n",
            self.target.addr,
            body.len()
        )
        .unwrap();
        self.req.extend_from_slice(body);
        let reused = self.stream.is_some();
        let mut r = self.exchange().await;
        if r.is_err() && reused {
            // A kept-alive connection the server closed while it idled (the aggregator allows
            // 10 s between requests; registering 10,000 bots takes longer): once more on a new
            // one, as a real bot's client does. A push is safe to repeat: the aggregator counts
            // each (bot, second) once.
            self.stream = None;
            self.retried += 1;
            r = self.exchange().await;
        }
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    async fn exchange(&mut self) -> Result<(u16, Vec<u8>), String> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.target.addr)
                .await
                .map_err(|e| e.to_string())?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            self.stream = Some(match &self.target.tls {
                None => Box::new(s),
                Some(tls) => {
                    let name = rustls::pki_types::ServerName::from(self.target.addr.ip());
                    Box::new(tls.connect(name, s).await.map_err(|e| e.to_string())?)
                }
            });
        }
        let s = self.stream.as_mut().unwrap();
        s.write_all(&self.req).await.map_err(|e| e.to_string())?;
        // TLS may hold the last record until flushed.
        s.flush().await.map_err(|e| e.to_string())?;
        self.buf.clear();
        loop {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed before an answer".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            let mut h = wire::headers();
            let Some(head) = wire::parse_response(&self.buf, false, &mut h, |_| {})
                .map_err(|e| e.to_string())?
            else {
                continue;
            };
            let (status, keep_alive, len) = (head.status, head.keep_alive, head.len);
            let mut framing = BodyFraming::new(head.framing);
            let mut at = len;
            loop {
                let (used, done) = framing
                    .feed(&self.buf[at..])
                    .map_err(|_| "a bad chunk".to_string())?;
                at += used;
                if done {
                    let body = self.buf[len..at].to_vec();
                    if !keep_alive {
                        self.stream = None;
                    }
                    return Ok((status, body));
                }
                let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("closed in the body".into());
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 6 {
        eprintln!("usage: ingest AGGREGATOR_URL TOKEN BOTS SECONDS RUN.json");
        std::process::exit(2);
    }
    let base = a[1].trim_end_matches('/');
    let (https, hostport) = match base.strip_prefix("https://") {
        Some(h) => (true, h),
        None => (
            false,
            base.strip_prefix("http://")
                .expect("AGGREGATOR_URL: http(s)://IP:PORT"),
        ),
    };
    let addr: SocketAddr = hostport.parse().expect("AGGREGATOR_URL: http(s)://IP:PORT");
    let tls = https.then(|| {
        let ca = std::env::var("INGEST_CA").expect("https needs INGEST_CA, the CA's PEM file");
        let pem = std::fs::read(&ca).expect("INGEST_CA readable");
        let cfg = st_http::tls::client_config_trusting(&pem, st_http::Protocol::Http1).unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    });
    let target = Target { addr, tls };
    let token: Arc<str> = a[2].as_str().into();
    let bots: usize = a[3].parse().expect("BOTS");
    let seconds: u64 = a[4].parse().expect("SECONDS");
    let run = report::RunFile::read(std::path::Path::new(&a[5])).expect("a run file");
    let snaps: Arc<Vec<hist::sparse::WireSnapshot>> = Arc::new(
        run.intervals
            .into_iter()
            .filter(|s| s.responses > 0 && s.seconds() > 0.99)
            .map(|s| hist::sparse::WireSnapshot::from(&s))
            .collect(),
    );
    assert!(!snaps.is_empty(), "the run file has no full seconds");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut conns = Vec::with_capacity(bots);
        for i in 0..bots {
            let r = Register {
                id: None,
                name: format!("sim-{i}"),
                host: "sim".into(),
                pid: i as u32,
                version: "sim".into(),
                clock_unix: now_unix(),
                previous_run: None,
                wire: fleet::wire::WIRE,
            };
            let mut c = Conn::new(target.clone());
            let (code, b) = c
                .post("/api/bots", &token, "application/json", &serde_json::to_vec(&r).unwrap())
                .await
                .expect("register");
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&b));
            let reg: Registered = serde_json::from_slice(&b).unwrap();
            conns.push((c, reg.id, reg.instance));
        }
        println!("registered {bots}");
        let sent = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let retried = Arc::new(AtomicU64::new(0));
        let lat = Arc::new(std::sync::Mutex::new(hist::new_histogram()));
        let start = now_unix().floor() + 1.0;
        let mut tasks = tokio::task::JoinSet::new();
        for (k, (mut conn, id, instance)) in conns.into_iter().enumerate() {
            let token = token.clone();
            let (sent, refused, failed, lat) = (sent.clone(), refused.clone(), failed.clone(), lat.clone());
            let retried = retried.clone();
            let snaps = snaps.clone();
            let offset = (k as f64 / bots as f64) * 0.9 + 0.05;
            tasks.spawn(async move {
                let path = format!("/api/bots/{id}/snapshots");
                for s in 0..seconds as usize {
                    let t = start as u64 + s as u64;
                    // A bot's push, as its link encodes it.
                    let body = Push {
                        clock_unix: t as f64 + 1.25,
                        dropped: 0,
                        intervals: vec![Interval {
                            t,
                            snap: snaps[(k + s) % snaps.len()].clone(),
                        }],
                        generation: 0,
                        idle: false,
                        instance: instance.clone(),
                    }
                    .encode();
                    let at = start + 1.0 + s as f64 + offset;
                    let wait = at - now_unix();
                    if wait > 0.0 {
                        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                    }
                    let t0 = Instant::now();
                    match conn.post(&path, &token, PUSH_TYPE, &body).await {
                        Ok((200, _)) => {}
                        Ok(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    if s >= WARM_UP {
                        let _ = lat.lock().unwrap().record(t0.elapsed().as_micros() as u64);
                    }
                }
                retried.fetch_add(conn.retried, Ordering::Relaxed);
            });
        }
        while tasks.join_next().await.is_some() {}
        let took = now_unix() - (start + 1.0);
        let l = lat.lock().unwrap();
        let n = sent.load(Ordering::Relaxed);
        println!(
            "bots {bots} seconds {seconds} pushes {n} refused {} failed {} retried {} per_s {:.0} latency_ms p50 {:.2} p99 {:.2} max {:.2}",
            refused.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            retried.load(Ordering::Relaxed),
            n as f64 / took,
            l.value_at_quantile(0.5) as f64 / 1000.0,
            l.value_at_quantile(0.99) as f64 / 1000.0,
            l.max() as f64 / 1000.0
        );
    });
}
