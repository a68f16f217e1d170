//! `scaletest load`: flags → validated `load::Config` → `load::run` → report and JSON.

use super::{at_least_one, parse_duration};
use crate::exit::{fault, Usage};
use crate::progress::{Progress, RateLog};
use anyhow::Context as _;
use load::{Config, Mode, Shutdown, Spec, Target};
use pace::{Arrival, RateShape};
use report::threshold::{self, Threshold};
use report::{RunFile, RunInfo, RUNFILE_VERSION};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const EXAMPLES: &str = "Examples:
  scaletest load http://127.0.0.1:8080/ -c 50 -d 10s                 closed loop, 50 connections
  scaletest load http://127.0.0.1:8080/ -n 100000                      stop after 100,000 requests
  scaletest load http://127.0.0.1:8080/ --rate 20000 -d 30s            open loop, constant rate
  scaletest load http://127.0.0.1:8080/ --rate ramp:1000..50000 -d 60s --arrival poisson
  scaletest load http://127.0.0.1:8080/ --rate steps:1000,5000,10000@10s -d 30s --percentiles
  scaletest load https://127.0.0.1:8443/ --http2 --streams 10 -c 50 --insecure
  scaletest load --targets targets.txt -H 'X-Run: 7' -d 30s --json run.json
  scaletest load http://127.0.0.1:8080/ --rate 5000 -d 5m --out jsonl:seconds.jsonl   one line per second
  scaletest load 'http://127.0.0.1:8080/item/{{seq}}?user={{csv.user}}' --data users.csv -H 'X-Req: {{uuid}}'";

/// `scaletest load`: the load flags (shared with `aggregate`) and where its seconds go.
#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Cmd {
    #[command(flatten)]
    args: Args,
    /// Per-second output for other tools: jsonl:FILE writes one JSON line per second as the
    /// run goes (its Unix second, requests, status codes, errors, p50/p90/p99/p99.9/max in ms:
    /// the run file's series fields; named requests' under `names`). Prometheus remote write
    /// is not built in.
    #[arg(long = "out", value_name = "FORMAT:FILE", value_parser = parse_out)]
    out: Option<Output>,
}

/// Where `--out` writes.
#[derive(Debug, Clone)]
enum Output {
    Jsonl(PathBuf),
}

fn parse_out(s: &str) -> Result<Output, String> {
    match s.split_once(':') {
        Some(("jsonl", path)) if !path.is_empty() => Ok(Output::Jsonl(PathBuf::from(path))),
        Some(("jsonl", _)) => Err("jsonl needs a file: jsonl:FILE".into()),
        Some(("prometheus-rw", _)) => Err("Prometheus remote write is not built in: write \
             jsonl:FILE, or run the load through `scaletest aggregate`, whose /metrics \
             Prometheus can scrape"
            .into()),
        _ => Err(format!("{s:?}: the format is jsonl:FILE")),
    }
}

/// The load flags: `scaletest load`'s, and `aggregate`'s for its bots.
#[derive(clap::Args)]
pub struct Args {
    /// Target URL, http:// or https:// (omit when --targets is given).
    url: Option<String>,
    /// Connections: 1 to the hard open-file limit (`ulimit -Hn`) less 64 [default: 50]. Open
    /// loop: opened before the start; more are added up to --max-connections.
    #[arg(short = 'c', long, value_parser = at_least_one)]
    connections: Option<u64>,
    /// Concurrent streams per HTTP/2 connection (needs --http2 or an h2 TLS target).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    streams: u64,
    /// Stop after this long, e.g. 30s, 2m, 500ms [default: 10s unless -n is given].
    #[arg(short = 'd', long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after sending this many requests (whichever of -d and -n comes first).
    #[arg(short = 'n', long, value_parser = at_least_one)]
    requests: Option<u64>,
    /// Open loop: total requests/s: R, ramp:FROM..TO (over -d), steps:R1,R2,...@DURATION or
    /// stages:DURATION:RATE,... (see --stages).
    #[arg(long, value_parser = parse_rate, allow_negative_numbers = true)]
    rate: Option<RateShape>,
    /// Load in stages: from 0, each stage moves in a straight line to its level over its
    /// duration (0s: a jump), and the run lasts as long as the stages unless -d says otherwise.
    /// Rates make an open loop (k6's ramping arrival rate), e.g. 30s:1000,5m:1000,10s:0;
    /// connections, written Nc, a closed loop with that many busy (k6's ramping VUs), e.g.
    /// 30s:10c,2m:100c (not with -c). The report has a table per stage.
    #[arg(long, value_name = "DURATION:RATE|Nc,...", conflicts_with = "rate",
          value_parser = parse_stages)]
    stages: Option<Stages>,
    /// Open loop: gaps between sends, uniform or poisson.
    #[arg(long, default_value = "uniform", value_parser = parse_arrival)]
    arrival: Arrival,
    /// Open loop: most connections to open, up to the hard open-file limit less 64 [default:
    /// 1000 or that limit if lower, not below -c]; sends that find all busy wait and are
    /// reported late (capped), or unsent at the end, not as errors.
    #[arg(long, value_parser = at_least_one)]
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
    /// Rows for {{csv.COLUMN}} templates: a CSV file with a header line. Each request takes
    /// one row (all its csv fields from it): the run's n-th request row n, or one at random
    /// (--data-order). Templates: {{seq}}, {{uuid}}, {{rand_int MIN MAX}}, {{rand_hex N}},
    /// {{now_ms}}, {{csv.COLUMN}} in the URL's path and query, header values and the body.
    #[arg(long, value_name = "FILE.csv")]
    data: Option<PathBuf>,
    /// How requests take rows of --data: in-turn or random.
    #[arg(long, default_value = "in-turn", requires = "data")]
    data_order: load::template::Order,
    /// Requests from a file (one origin): vegeta's text format (`# name: NAME` and
    /// `# weight: N` lines before a target), or JSON lines ({"name", "method", "url", "headers", "body" or
    /// "body_file", "weight"}); weights set the mix, and named requests get their own rows.
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    targets: Option<PathBuf>,
    /// Named requests: most names with rows of their own; the rest are counted as "other".
    #[arg(long, default_value_t = load::mix::DEFAULT_MAX_NAMES,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    max_names: u64,
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
    /// Every PERIOD (whole seconds), a line on stderr of the bytes received and sent per
    /// second, responses and errors (for runs without a terminal, which show no progress line).
    #[arg(long, value_name = "PERIOD", value_parser = parse_duration)]
    log_rates: Option<Duration>,
    /// A pass/fail check on the run's totals (repeatable): p99<50ms, p99.9<=0.2s, mean<10ms,
    /// max<1s, error_rate<0.1%, rps>=9000 (successful answers/s), failed==0, errors==0,
    /// requests>=1000, status_5xx<10, status_503==0. Any failed: exit 1.
    #[arg(long = "threshold", value_name = "EXPR")]
    thresholds: Vec<Threshold>,
    /// Stop the run as soon as a threshold can no longer pass (a count past its bound);
    /// latency and rate thresholds are judged at the end.
    #[arg(long)]
    abort_on_fail: bool,
    // `aggregate` takes it from here too.
    #[command(flatten)]
    pub(crate) pprof: super::Pprof,
}

fn parse_rate(s: &str) -> Result<RateShape, String> {
    s.parse::<RateShape>().map_err(|e| e.to_string())
}

/// `--stages`: of rates (`--rate stages:X`) or, when a level ends in `c`, of connections.
#[derive(Debug, Clone)]
enum Stages {
    Rate(RateShape),
    Connections(pace::Concurrency),
}

fn parse_stages(s: &str) -> Result<Stages, String> {
    if s.split(',').any(|p| p.trim_end().ends_with(['c', 'C'])) {
        s.parse()
            .map(Stages::Connections)
            .map_err(|e| e.to_string())
    } else {
        parse_rate(&format!("stages:{s}")).map(Stages::Rate)
    }
}

/// A load spec's field as this command's flag, for the spec's errors (one table).
pub(crate) fn flag(field: &str) -> String {
    match field {
        "url" => "URL",
        "targets" => "--targets",
        "rate" => "--rate",
        "max_connections" => "--max-connections",
        "connections" => "-c",
        "connection_stages" => "--stages",
        "streams" => "--streams",
        "http2" => "--http2",
        "timeout_s" => "--timeout",
        "duration_s" => "-d/--duration",
        "requests" => "-n/--requests",
        "threads" => "-t/--threads",
        "data" => "--data",
        other => other,
    }
    .to_string()
}

/// A load spec's error in this command's words (exit 2).
pub(crate) fn spec_usage(e: load::SpecError) -> Usage {
    Usage(e.naming(flag))
}

fn parse_arrival(s: &str) -> Result<Arrival, String> {
    s.parse()
}

impl Args {
    /// `-n` was given.
    pub(crate) fn has_requests(&self) -> bool {
        self.requests.is_some()
    }
    /// `-d`, if given.
    pub(crate) fn duration(&self) -> Option<Duration> {
        self.duration
    }
    /// `--percentiles` was given.
    pub(crate) fn percentiles(&self) -> bool {
        self.percentiles
    }
    /// The `--threshold`s.
    pub(crate) fn thresholds(&self) -> &[Threshold] {
        &self.thresholds
    }
    /// `--abort-on-fail` was given.
    pub(crate) fn abort_on_fail(&self) -> bool {
        self.abort_on_fail
    }
}

fn read_body(path: &Path) -> Result<String, Usage> {
    let raw = std::fs::read(path)
        .map_err(|e| Usage(format!("cannot read body file {}: {e}", path.display())))?;
    String::from_utf8(raw)
        .map_err(|_| Usage(format!("body file {} is not UTF-8 text", path.display())))
}

/// The flags as a load spec (files read here, so the spec carries their content).
pub(crate) fn spec(a: &Args) -> Result<Spec, Usage> {
    if a.abort_on_fail && a.thresholds.is_empty() {
        return Err(Usage(
            "--abort-on-fail needs at least one --threshold".into(),
        ));
    }
    let body = match (&a.body, &a.body_file) {
        (Some(b), _) => Some(b.clone()),
        (None, Some(p)) => Some(read_body(p)?),
        (None, None) => None,
    };
    let mut targets = Vec::new();
    if let Some(path) = &a.targets {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Usage(format!("cannot read targets file {}: {e}", path.display())))?;
        let specs =
            load::targets::parse(&text).map_err(|e| Usage(format!("{}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for t in specs {
            targets.push(Target {
                method: t.method,
                url: t.url,
                headers: t.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect(),
                body: match t.body {
                    Some(b) => Some(b),
                    None => t.body_file.map(|f| read_body(&dir.join(f))).transpose()?,
                },
                name: t.name,
                weight: t.weight,
            });
        }
    }
    let (rate, connection_stages) = match a.stages.clone() {
        Some(Stages::Rate(r)) => (Some(r), None),
        Some(Stages::Connections(c)) => (None, Some(c)),
        None => (a.rate.clone(), None),
    };
    if connection_stages.is_some() && a.connections.is_some() {
        return Err(Usage(
            "--stages in connections (Nc) says how many connections: -c does not apply".into(),
        ));
    }
    let data = a
        .data
        .as_ref()
        .map(|p| read_data(p, a.data_order))
        .transpose()?;
    // 10 s unless -n is given or the rate's stages say how long.
    let duration_s = match (a.duration, a.requests) {
        (None, None)
            if rate.as_ref().and_then(RateShape::own_duration).is_none()
                && connection_stages.is_none() =>
        {
            Some(10.0)
        }
        (d, _) => d.map(|d| d.as_secs_f64()),
    };
    Ok(Spec {
        url: a.url.clone(),
        targets,
        method: a.method.clone(),
        headers: a.headers.clone(),
        body,
        rate,
        arrival: a.arrival,
        max_connections: a.max_connections,
        connections: a.connections.unwrap_or(50),
        connection_stages,
        streams: a.streams,
        http2: a.http2,
        insecure: a.insecure,
        cacert: a.cacert.clone(),
        timeout_s: a.timeout.as_secs_f64(),
        duration_s,
        requests: a.requests,
        threads: a.threads,
        seed: a.seed,
        data,
        max_names: Some(a.max_names),
    })
}

/// `--data FILE.csv`: its header and records (`Spec::build` checks them: `Data::check`).
fn read_data(path: &Path, order: load::template::Order) -> Result<load::template::Data, Usage> {
    let bad = |e: &dyn std::fmt::Display| Usage(format!("--data {}: {e}", path.display()));
    let mut r = csv::Reader::from_path(path).map_err(|e| bad(&e))?;
    let columns: Vec<String> = r
        .headers()
        .map_err(|e| bad(&e))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for rec in r.records() {
        rows.push(
            rec.map_err(|e| bad(&e))?
                .iter()
                .map(str::to_string)
                .collect(),
        );
    }
    Ok(load::template::Data {
        columns,
        rows,
        order,
    })
}

/// The stages of a run whose load changes by plan: an open loop's rate shape or a closed
/// loop's connection stages (none for a constant rate or a fixed closed loop).
fn stage_plan(cfg: &Config) -> Vec<report::stages::StagePlan> {
    let Some(secs) = cfg.duration.map(|d| d.as_secs_f64()) else {
        return Vec::new();
    };
    match &cfg.mode {
        Mode::Open { shape, .. } => shape
            .stages_over(secs)
            .into_iter()
            .map(|(start_s, end_s, planned)| report::stages::StagePlan {
                start_s,
                end_s,
                planned: Some(planned),
                connections: None,
            })
            .collect(),
        Mode::Closed {
            stages: Some(stages),
        } => stages
            .stages_over(secs)
            .into_iter()
            .map(|(start_s, end_s, from, to)| report::stages::StagePlan {
                start_s,
                end_s,
                planned: None,
                connections: Some([from, to]),
            })
            .collect(),
        Mode::Closed { stages: None } => Vec::new(),
    }
}

/// How a run was set up, for the report's header and the run file.
pub(crate) fn run_info(spec: &Spec, cfg: &Config) -> RunInfo {
    // The shape as built (parsed once, in `Spec::build`).
    let (max_connections, rate) = match &cfg.mode {
        Mode::Open {
            max_connections,
            shape,
            ..
        } => (Some(*max_connections), Some(shape.to_string())),
        Mode::Closed { .. } => (None, None),
    };
    let open = max_connections.is_some();
    RunInfo {
        url: spec.display_url(),
        targets: cfg.requests.len(),
        weights: load::mix::weights_text(
            &spec.targets.iter().map(|t| t.weight).collect::<Vec<_>>(),
        ),
        mode: if open { "open" } else { "closed" }.into(),
        protocol: if spec.http2 { "HTTP/2" } else { "HTTP/1.1" }.into(),
        connections: cfg.connections,
        streams: cfg.streams,
        max_connections,
        rate,
        connection_stages: match &cfg.mode {
            Mode::Closed { stages } => stages.as_ref().map(|s| s.text()),
            Mode::Open { .. } => None,
        },
        arrival: open.then(|| format!("{:?}", spec.arrival).to_lowercase()),
        target_rate: cfg.mean_rate(),
        threads: cfg.threads,
        duration_s: cfg.duration.map(|d| d.as_secs_f64()),
        requests: cfg.max_requests,
        timeout_s: cfg.timeout.as_secs_f64(),
    }
}

/// The run of `a`; `names_each_second`: named requests' figures in every second (for a
/// per-second output), else in the totals only.
fn build(a: &Args, names_each_second: bool) -> Result<(Config, RunInfo), Usage> {
    let spec = spec(a)?;
    let live = load::Live {
        names_each_second,
        ..Default::default()
    };
    let cfg = spec.build(live).map_err(spec_usage)?;
    let info = run_info(&spec, &cfg);
    Ok((cfg, info))
}

pub fn main(cmd: Cmd) -> anyhow::Result<ExitCode> {
    let args = cmd.args;
    let (cfg, info) = build(&args, cmd.out.is_some())?;
    // Created before the run: a path that cannot be written is said before any load is sent.
    let mut jsonl = match &cmd.out {
        Some(Output::Jsonl(path)) => Some(
            report::point::Jsonl::create(path)
                .map_err(|e| Usage(format!("--out jsonl:{}: {e}", path.display())))?,
        ),
        None => None,
    };
    let mut jsonl_failed: Option<std::io::Error> = None;
    let stages = stage_plan(&cfg);
    // On stderr: stdout is the report.
    let pprof = args.pprof.start()?;
    if let Some(p) = &pprof {
        eprintln!("scaletest: {}", super::pprof_on(p));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let shutdown = Shutdown::new();
    let started_unix = st_http::stamp::now_unix();
    let progress = Progress::new(cfg.duration);
    let mut rates = args.log_rates.map(RateLog::new);
    // --abort-on-fail: the totals so far, and the threshold that stopped the run.
    let mut so_far = hist::Snapshot::default();
    let mut aborted: Option<(String, u32)> = None;
    let result = rt.block_on(async {
        let s = shutdown.clone();
        super::on_ctrl_c(move || s.trigger());
        load::run(cfg, shutdown.clone(), |p| {
            progress.update(p);
            if let (Some(w), None) = (jsonl.as_mut(), &jsonl_failed) {
                let point = report::point::Point::of(u64::from(p.second), p.snapshot, None);
                jsonl_failed = w.write(p.wall_second, point).err();
            }
            if let Some(line) = rates.as_mut().and_then(|r| r.second(p)) {
                progress.line(&line);
            }
            if args.abort_on_fail && aborted.is_none() {
                so_far.merge(p.snapshot);
                if let Some(t) = args.thresholds.iter().find(|t| t.failed_for_good(&so_far)) {
                    aborted = Some((t.to_string(), p.second + 1));
                    shutdown.trigger();
                }
            }
        })
        .await
    });
    progress.finish();
    if let (Some(w), Some(e)) = (&jsonl, &jsonl_failed) {
        eprintln!(
            "scaletest: --out {}: {e}; the lines after it were not written",
            w.path().display()
        );
    }
    let r = result.map_err(fault)?;
    let mut run = RunFile {
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
        intervals: r.intervals,
        fleet: None,
        summary: None,
        verdicts: Vec::new(),
        stages: Vec::new(),
    };
    run.stages = report::stages::rows(&stages, &run.intervals);
    run.verdicts = threshold::judge(&args.thresholds, &run.total, run.elapsed_s);
    // The JSON first: what was measured must survive a closed stdout.
    if let Some(path) = &args.json {
        run.write_atomic(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    report::table::write_report(&run, args.percentiles, &mut out)?;
    if let Some((t, second)) = &aborted {
        writeln!(
            out,
            "\nstopped after second {second}: threshold {t} can no longer pass"
        )?;
    }
    threshold::write_verdicts(&run.verdicts, &mut out)?;
    out.flush()?;
    Ok(exit_code(&run))
}

/// 1 when a threshold failed or no request got a response.
pub(crate) fn exit_code(run: &RunFile) -> ExitCode {
    if !threshold::all_pass(&run.verdicts) {
        return ExitCode::from(1);
    }
    if run.total.responses == 0 {
        eprintln!("scaletest: no request got a response");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
