//! `scaletest balance`: flags → `balance::Config` → `balance::start`; SIGTERM/SIGINT stop it
//! gracefully (listeners closed, in-flight requests finished).

use super::parse_duration;
use crate::Usage;
use balance::health::HealthConfig;
use st_http::server::Limits;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const EXAMPLES: &str = "Admin API (Authorization: Bearer TOKEN):
  GET /backends                    list, with health and counters (JSON)
  POST /backends  (body: ADDR)     add          DELETE /backends/ADDR   remove
  POST /backends/ADDR/drain        no new requests; /undrain to resume
  GET /metrics                     per-backend Prometheus metrics (no token needed)

Examples:
  scaletest balance --backend 127.0.0.1:8081 --backend 127.0.0.1:8082
  scaletest balance --backends-file pool.txt --algorithm least-requests --admin-token-file token
  curl -H \"Authorization: Bearer $(cat token)\" http://127.0.0.1:9000/backends";

/// Arguments of `scaletest balance`.
#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Address clients connect to.
    #[arg(long, default_value = "127.0.0.1:8000")]
    bind: SocketAddr,
    /// A backend address (repeatable).
    #[arg(long = "backend", value_name = "ADDR")]
    backends: Vec<SocketAddr>,
    /// A file of backend addresses, one per line; re-read when it changes.
    #[arg(long, value_name = "FILE")]
    backends_file: Option<PathBuf>,
    /// round-robin, least-requests or p2c (power of two choices).
    #[arg(long, default_value = "p2c", value_parser = |s: &str| s.parse::<balance::pick::Algorithm>())]
    algorithm: balance::pick::Algorithm,
    /// Address of the admin API.
    #[arg(long, default_value = "127.0.0.1:9000")]
    admin_bind: SocketAddr,
    /// File holding the admin API's bearer token [default: a random token, printed at start].
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Time between health checks of each backend's /readyz.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    health_interval: Duration,
    /// Health check timeout.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    health_timeout: Duration,
    /// Successful checks in a row that bring a backend back.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    rise: u32,
    /// Failed checks in a row that take a backend out.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    fall: u32,
    /// Per-request timeout to a backend.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Connect timeout to a backend.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Speak h2c (HTTP/2 cleartext) to the backends.
    #[arg(long)]
    backend_http2: bool,
    /// Most requests in flight on one HTTP/1.1 connection to a backend (pipelining; 1 turns
    /// it off). Requests that arrive together go out in one write; a request joins a busy
    /// connection only while the oldest request on it is younger than 2 ms, so a slow
    /// response holds up few others.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=128))]
    pipeline: u64,
    /// Serve HTTP/1 clients with hyper and hyper-util's pool instead of the hand-written
    /// path (for benchmark comparisons).
    #[arg(long, hide = true)]
    hyper_only: bool,
    /// Worker threads [default: the CPUs this process may use].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: Option<u64>,
    /// Largest request body in bytes (bodies are buffered so that a retry can resend them).
    #[arg(long, default_value_t = 8 << 20)]
    max_body: usize,
    /// Most open client connections; at the limit new ones wait in the listen backlog
    /// (4096) until one closes, never reset.
    #[arg(long, default_value_t = 10_000, value_parser = super::at_least_one)]
    max_connections: u64,
    #[command(flatten)]
    tls: super::ServerTls,
    #[command(flatten)]
    pprof: super::Pprof,
}

pub fn main(a: Args) -> anyhow::Result<ExitCode> {
    if a.backends.is_empty() && a.backends_file.is_none() {
        return Err(Usage("give at least one --backend or a --backends-file".into()).into());
    }
    let (token, printed) = match &a.admin_token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .map_err(|e| Usage(format!("cannot read admin token file {}: {e}", p.display())))?;
            let t = t.trim().to_string();
            if t.len() < 8 {
                return Err(Usage(format!(
                    "admin token in {} must be at least 8 characters",
                    p.display()
                ))
                .into());
            }
            (t, false)
        }
        None => {
            use rand::Rng;
            let t: String = rand::thread_rng()
                .sample_iter(rand::distributions::Alphanumeric)
                .take(32)
                .map(char::from)
                .collect();
            (t, true)
        }
    };
    let tls = a.tls.config()?;
    let threads = super::threads_or_cpus(a.threads);
    let cfg = balance::Config {
        bind: a.bind,
        threads,
        backends: a.backends.clone(),
        backends_file: a.backends_file.clone(),
        algorithm: a.algorithm,
        admin_bind: a.admin_bind,
        admin_token: token.clone(),
        health: HealthConfig {
            interval: a.health_interval,
            timeout: a.health_timeout,
            rise: a.rise,
            fall: a.fall,
            path: "/readyz".into(),
        },
        timeout: a.timeout,
        connect_timeout: a.connect_timeout,
        max_body: a.max_body,
        backend_h2: a.backend_http2,
        pipeline: a.pipeline as usize,
        hyper_only: a.hyper_only,
        limits: Limits {
            max_connections: a.max_connections as usize,
            ..Limits::default()
        },
        tls,
    };
    let pprof = a.pprof.start()?;
    let mut running = balance::start(cfg).map_err(crate::exit::fault)?;
    // SIGTERM handled before the address is announced: a supervisor may send it at once.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut signals = rt.block_on(async { super::Signals::new() })?;
    let scheme = a.tls.scheme();
    let mut out = std::io::stdout().lock();
    // The admin address last: scripts read it up to the ')'.
    let pprof_on = pprof.as_ref().map(super::pprof_on);
    writeln!(
        out,
        "listening on {scheme}://{} ({}admin on http://{})",
        running.addr,
        pprof_on.map_or(String::new(), |p| format!("{p}, ")),
        running.admin_addr
    )?;
    if printed {
        writeln!(out, "admin token: {token}")?;
    }
    out.flush()?;
    drop(out);
    let mut file_errors = running.file_errors();
    rt.block_on(async {
        loop {
            tokio::select! {
                _ = signals.recv() => break,
                Some(e) = async { file_errors.as_mut()?.recv().await } => {
                    eprintln!("scaletest balance: {e}; keeping the current backends");
                }
            }
        }
        anyhow::Ok(())
    })?;
    running.stop();
    if !running.wait(a.timeout.min(Duration::from_secs(30))) {
        eprintln!("shutdown timeout: some connections were still open");
    }
    Ok(ExitCode::SUCCESS)
}
