//! `scaletest load`: flags → validated `load::Config` → `load::run` → report and JSON.

use super::parse_duration;
use crate::progress::Progress;
use crate::Usage;
use anyhow::Context as _;
use bytes::Bytes;
use load::{Config, Mode, Shutdown};
use pace::{Arrival, RateShape};
use report::{RunFile, RunInfo, RUNFILE_VERSION};
use st_http::{Connector, Origin, Protocol, Request, TlsOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const EXAMPLES: &str = "Examples:
  scaletest load http://127.0.0.1:8080/ -c 50 -d 10s                 closed loop, 50 connections
  scaletest load http://127.0.0.1:8080/ -n 100000                      stop after 100,000 requests
  scaletest load http://127.0.0.1:8080/ --rate 20000 -d 30s            open loop, constant rate
  scaletest load http://127.0.0.1:8080/ --rate ramp:1000..50000 -d 60s --arrival poisson
  scaletest load http://127.0.0.1:8080/ --rate steps:1000,5000,10000@10s -d 30s --percentiles
  scaletest load https://127.0.0.1:8443/ --http2 --streams 10 -c 50 --insecure
  scaletest load --targets targets.txt -H 'X-Run: 7' -d 30s --json run.json";

/// Arguments of `scaletest load`.
#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Target URL, http:// or https:// (omit when --targets is given).
    url: Option<String>,
    /// Connections. Open loop: opened before the start; more are added up to --max-connections.
    #[arg(short = 'c', long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    connections: u64,
    /// Concurrent streams per HTTP/2 connection (needs --http2 or an h2 TLS target).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    streams: u64,
    /// Stop after this long, e.g. 30s, 2m, 500ms [default: 10s unless -n is given].
    #[arg(short = 'd', long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after sending this many requests (whichever of -d and -n comes first).
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,
    /// Open loop: total requests/s: R, ramp:FROM..TO (over -d), or steps:R1,R2,...@DURATION.
    #[arg(long, value_parser = parse_rate, allow_negative_numbers = true)]
    rate: Option<RateShape>,
    /// Open loop: gaps between sends, uniform or poisson.
    #[arg(long, default_value = "uniform", value_parser = parse_arrival)]
    arrival: Arrival,
    /// Open loop: most connections to open; sends that find all busy are reported late.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// Seed for Poisson arrivals (runs with the same seed send on the same schedule).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Speak HTTP/2: ALPN h2 over TLS, prior-knowledge h2c over http://.
    #[arg(long)]
    http2: bool,
    /// Do not verify the server's TLS certificate.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Trust the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Request method.
    #[arg(short = 'X', long = "method", default_value = "GET")]
    method: String,
    /// A request header, "Name: value" (repeatable; applies to every target).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Request body read from a file.
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// Requests from a file in vegeta's text format, used round-robin (one origin).
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    targets: Option<PathBuf>,
    /// Per-request timeout, connect included.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Worker threads [default: the CPUs this process may use].
    #[arg(short = 't', long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: Option<u64>,
    /// Also print the full percentile spectrum (p50 … p99.999).
    #[arg(long)]
    percentiles: bool,
    /// Write everything measured to this JSON file (histograms included).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn parse_rate(s: &str) -> Result<RateShape, String> {
    s.parse().map_err(|e: pace::PaceError| e.to_string())
}

fn parse_arrival(s: &str) -> Result<Arrival, String> {
    s.parse()
}

fn parse_header(h: &str) -> Result<(String, String), Usage> {
    match h.split_once(':') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(Usage(format!(
            "invalid header {h:?}: expected \"Name: value\""
        ))),
    }
}

fn read_body(path: &Path) -> Result<Bytes, Usage> {
    std::fs::read(path)
        .map(Bytes::from)
        .map_err(|e| Usage(format!("cannot read body file {}: {e}", path.display())))
}

/// The requests to send, all on one origin.
fn build_requests(a: &Args) -> Result<(Origin, Vec<Request>), Usage> {
    let headers = a
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    let body = match (&a.body, &a.body_file) {
        (Some(b), _) => Bytes::from(b.clone()),
        (None, Some(p)) => read_body(p)?,
        (None, None) => Bytes::new(),
    };
    let bad = |e: &dyn std::fmt::Display| Usage(e.to_string());
    let Some(path) = &a.targets else {
        let url = a
            .url
            .as_deref()
            .ok_or_else(|| Usage("give a target URL or --targets FILE".into()))?;
        let (origin, path) = Origin::parse(url).map_err(|e| bad(&e))?;
        let req = Request::new(&origin, &a.method, &path, &headers, body).map_err(|e| bad(&e))?;
        return Ok((origin, vec![req]));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Usage(format!("cannot read targets file {}: {e}", path.display())))?;
    let specs = load::targets::parse_targets(&text)
        .map_err(|e| Usage(format!("{}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut origin: Option<Origin> = None;
    let mut reqs = Vec::new();
    for t in specs {
        let at =
            |e: &dyn std::fmt::Display| Usage(format!("{} line {}: {e}", path.display(), t.line));
        let (o, p) = Origin::parse(&t.url).map_err(|e| at(&e))?;
        if let Some(first) = &origin {
            if !first.same_as(&o) {
                return Err(at(&format!(
                    "all targets must share one origin; {} differs from {}",
                    o.url(),
                    first.url()
                )));
            }
        }
        let mut h = headers.clone();
        h.extend(t.headers.iter().cloned());
        let b = match &t.body_file {
            Some(f) => read_body(&dir.join(f))?,
            None => body.clone(),
        };
        reqs.push(Request::new(&o, &t.method, &p, &h, b).map_err(|e| at(&e))?);
        origin.get_or_insert(o);
    }
    Ok((origin.expect("parse_targets returns at least one"), reqs))
}

/// Raise the soft open-file limit to the hard one (every connection is a descriptor) and
/// return it.
fn open_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

fn build(a: &Args) -> Result<(Config, RunInfo), Usage> {
    let (origin, requests) = build_requests(a)?;
    let protocol = if a.http2 {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    if a.streams > 1 && protocol != Protocol::Http2 {
        return Err(Usage(
            "--streams needs --http2 (HTTP/1.1 carries one request at a time)".into(),
        ));
    }
    let tls = TlsOptions {
        insecure: a.insecure,
        ca_file: a.cacert.clone(),
    };
    let connector = Connector::new(origin.clone(), protocol, &tls, a.timeout)
        .map_err(|e| Usage(e.to_string()))?;
    let duration = match (a.duration, a.requests) {
        (None, None) => Some(Duration::from_secs(10)),
        (d, _) => d,
    };
    // Leave room for the process's own descriptors.
    let fd_room = open_file_limit().saturating_sub(64);
    let connections = a.connections;
    let mode = match &a.rate {
        None => {
            if connections > fd_room {
                return Err(Usage(format!(
                    "-c {connections} exceeds the open-file limit ({fd_room} usable)"
                )));
            }
            Mode::Closed
        }
        Some(shape) => {
            let max = a
                .max_connections
                .unwrap_or(10_000.min(fd_room).max(connections));
            if max > fd_room {
                return Err(Usage(format!(
                    "--max-connections {max} exceeds the open-file limit ({fd_room} usable)"
                )));
            }
            if max < connections {
                return Err(Usage(format!(
                    "--max-connections {max} is below -c {connections}"
                )));
            }
            if matches!(shape, RateShape::Ramp { .. }) && a.duration.is_none() {
                return Err(Usage("a ramp rate needs -d/--duration to ramp over".into()));
            }
            Mode::Open {
                shape: shape.clone(),
                arrival: a.arrival,
                max_connections: max as usize,
                seed: a.seed,
            }
        }
    };
    let threads = super::threads_or_cpus(a.threads);
    let (rate, arrival, max_connections, target_rate) = match &mode {
        Mode::Open {
            shape,
            arrival,
            max_connections,
            ..
        } => {
            let secs = duration.unwrap_or(Duration::from_secs(1)).as_secs_f64();
            // Mean scheduled rate: sample the shape finely over the run.
            let steps = 1000;
            let mean = (0..steps)
                .map(|i| shape.rate_at((i as f64 + 0.5) * secs / steps as f64, secs))
                .sum::<f64>()
                / steps as f64;
            (
                Some(shape.to_string()),
                Some(format!("{arrival:?}").to_lowercase()),
                Some(*max_connections),
                Some(mean),
            )
        }
        Mode::Closed => (None, None, None, None),
    };
    let info = RunInfo {
        url: a
            .url
            .clone()
            .unwrap_or_else(|| format!("{}{}", origin.url(), requests[0].path)),
        targets: requests.len(),
        mode: if rate.is_some() { "open" } else { "closed" }.into(),
        protocol: if a.http2 { "HTTP/2" } else { "HTTP/1.1" }.into(),
        connections: connections as usize,
        streams: a.streams as usize,
        max_connections,
        rate,
        arrival,
        target_rate,
        threads,
        duration_s: duration.map(|d| d.as_secs_f64()),
        requests: a.requests,
        timeout_s: a.timeout.as_secs_f64(),
    };
    let cfg = Config {
        connector,
        requests: Arc::new(requests),
        mode,
        connections: connections as usize,
        streams: a.streams as usize,
        duration,
        max_requests: a.requests,
        timeout: a.timeout,
        threads,
    };
    Ok((cfg, info))
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let (cfg, info) = build(&args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let shutdown = Shutdown::new();
    let started_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let progress = Progress::new(cfg.duration);
    let result = rt.block_on(async {
        let s = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                s.trigger();
                // A second Ctrl-C means "now".
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        load::run(cfg, shutdown.clone(), |p| progress.update(p)).await
    });
    progress.finish();
    let r = result.map_err(|e| Usage(e.to_string()))?;
    let run = RunFile {
        version: RUNFILE_VERSION,
        tool: concat!("scaletest ", env!("CARGO_PKG_VERSION")).into(),
        started_unix,
        info,
        elapsed_s: r.elapsed.as_secs_f64(),
        interrupted: r.interrupted,
        peak_lanes: r.peak_lanes,
        in_flight_at_end: r.in_flight_at_end,
        total: r.total,
        series: r.series,
    };
    // The JSON first: what was measured must survive a closed stdout.
    if let Some(path) = &args.json {
        run.write_atomic(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    report::table::write_report(&run, args.percentiles, &mut out)?;
    if run.total.responses == 0 {
        eprintln!("scaletest: no request got a response");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
