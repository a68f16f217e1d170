//! `scaletest serve`: flags → `serve::Config` → `serve::start`, then the shutdown sequence on
//! SIGTERM/SIGINT: readiness 503 at once, keep serving for --drain-delay, stop accepting,
//! finish in-flight requests within --shutdown-timeout, exit 0.

use super::{at_least_one, parse_duration, parse_duration_or_zero};
use st_http::server::Limits;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

const EXAMPLES: &str = "Endpoints:
  /                     the fixed body (--body-size bytes)
  /version              the --version-label; every response also has an x-scaletest-version header
  /healthz, /readyz     liveness; readiness (503 while draining)
  /delay?ms=N           answer after N ms             /status/CODE     answer with CODE
  /bytes/N              N bytes                       /echo (POST)     the request body back
  /blocks?size=&n=&periodMS=   n blocks of size bytes, one every periodMS (go_httperf)
  /metrics              Prometheus text format

Examples:
  scaletest serve                                         127.0.0.1:8080, HTTP/1.1 and h2c
  scaletest serve --bind 127.0.0.1:8443 --tls-self-signed  HTTP/1.1 and HTTP/2 over TLS
  scaletest serve --version-label v2 --drain-delay 2s";

/// Arguments of `scaletest serve`.
#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Worker threads [default: the CPUs this process may use].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: Option<u64>,
    /// Size of the body that / answers, in bytes.
    #[arg(long, default_value_t = 13, value_parser = clap::value_parser!(u64).range(0..=64 << 20))]
    body_size: u64,
    /// Version this server reports (the rollout demo counts answers by it).
    #[arg(long, default_value = "v1")]
    version_label: String,
    /// After SIGTERM, keep serving (with /readyz at 503) this long before closing listeners.
    #[arg(long, default_value = "5s", value_parser = parse_duration_or_zero)]
    drain_delay: Duration,
    /// Then wait at most this long for in-flight requests.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    #[command(flatten)]
    tls: super::ServerTls,
    /// Most open client connections; at the limit new ones wait in the listen backlog
    /// (4096) until one closes, never reset.
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one)]
    max_connections: u64,
    /// Time a client has to send a request head (slowloris); also bounds HTTP/1.1 keep-alive idle time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// Close connections with no request for this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Largest request head in bytes (at least 8192); larger ones get 431.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u64).range(8192..=1 << 20))]
    max_header_bytes: u64,
    /// Serve HTTP/1.1 with hyper only, without the quick path for fixed answers (for
    /// benchmark comparisons).
    #[arg(long, hide = true)]
    hyper_only: bool,
    #[command(flatten)]
    pprof: super::Pprof,
}

pub fn main(a: Args) -> anyhow::Result<ExitCode> {
    let tls = a.tls.config()?;
    let threads = super::threads_or_cpus(a.threads);
    let cfg = serve::Config {
        bind: a.bind,
        threads,
        body_size: a.body_size as usize,
        version_label: a.version_label.clone(),
        limits: Limits {
            max_connections: a.max_connections as usize,
            header_timeout: a.header_timeout,
            idle_timeout: a.idle_timeout,
            max_header_bytes: a.max_header_bytes as usize,
            ..Limits::default()
        },
        bounds: serve::Bounds::default(),
        tls,
        hyper_only: a.hyper_only,
    };
    let pprof = a.pprof.start()?;
    let running = serve::start(cfg).map_err(crate::exit::fault)?;
    // SIGTERM handled before the address is announced: a supervisor may send it at once.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut signals = rt.block_on(async { super::Signals::new() })?;
    let scheme = a.tls.scheme();
    // One line on stdout that scripts (and tests) read for the real address.
    let mut out = std::io::stdout().lock();
    let pprof_on = pprof.as_ref().map(super::pprof_on);
    writeln!(
        out,
        "listening on {scheme}://{} (version {}, {threads} threads{})",
        running.addr,
        a.version_label,
        pprof_on.map_or(String::new(), |p| format!(", {p}"))
    )?;
    out.flush()?;
    drop(out);

    rt.block_on(async {
        signals.recv().await;
        eprintln!(
            "draining: /readyz answers 503; serving for {:?} more",
            a.drain_delay
        );
        running.drain();
        // A second signal skips the rest of the drain delay.
        tokio::select! {
            _ = tokio::time::sleep(a.drain_delay) => {}
            _ = signals.recv() => {}
        }
        anyhow::Ok(())
    })?;
    eprintln!("stopping: no new connections; finishing in-flight requests");
    running.stop();
    let left = running.wait(a.shutdown_timeout);
    if left > 0 {
        eprintln!("shutdown timeout: {left} connections were still open");
    } else {
        eprintln!("stopped");
    }
    Ok(ExitCode::SUCCESS)
}
