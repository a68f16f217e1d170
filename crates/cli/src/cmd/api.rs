//! `scaletest api churn` and `scaletest api watch`: flags → `kapi` configs → run → report.

use super::{at_least_one, parse_duration, stop_on_ctrl_c, threads_or_cpus, until_stopped};
use crate::exit::{fault, Usage};
use crate::metrics::Metrics;
use crate::progress::Ticking;
use kapi::churn;
use kapi::output::{self, ApiInfo, ApiRun};
use kapi::server_metrics::{with_eof, Scraper};
use kapi::spec::{ChurnSpec, SpecError as ChurnSpecError};
use kapi::stats::Recorder;
use kapi::{session, watch, watchers, Target};
use pace::{Arrival, RateShape};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const EXAMPLES: &str = "Examples:
  scaletest api churn --rate 500 -d 60s --population 5000 --slo      open loop, Poisson arrivals
  scaletest api churn --workers 20 --lifecycles 10000 --updates 3    closed loop
  scaletest api churn --rate ramp:50..500 -d 5m --namespaces 10 --watch --json churn.json
  scaletest api run deployments --set namespaces=5 --cleanup         a workload (see `api run --help`)
  scaletest api churn --resource wardle.example.com/v1alpha1/Flunder --template flunder.yaml --rate 100 -d 1m
  scaletest api churn --cleanup                                       remove what any run left behind
  scaletest api watch -A --metrics 127.0.0.1:9464                     time notifications of all ConfigMaps
  scaletest api watch --watchers 500 --watch-timeout 60s -d 10m       load the server with watches";

/// Arguments of `scaletest api`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Object lifecycles (create → updates → delete), open loop (--rate) or closed loop.
    #[command(after_help = EXAMPLES)]
    Churn(Box<ChurnArgs>),
    /// An informer with a work queue (notification latency, queue wait, relists), or with
    /// --watchers N, N loops of watch requests as load.
    #[command(after_help = EXAMPLES)]
    Watch(Box<WatchArgs>),
    /// A workload of jobs (objects from templates across namespaces, waits for readiness,
    /// churn, deletes, pauses), as kube-burner and ClusterLoader2 run them.
    Run(Box<super::api_run::RunArgs>),
}

/// Which resource `churn` and `watch` work on.
#[derive(clap::Args)]
struct ResourceArg {
    /// The resource: a core plural (configmaps), VERSION/Kind, or GROUP/VERSION/Kind
    /// [default: configmaps, or what --template names].
    #[arg(long)]
    resource: Option<String>,
}

/// How to reach the cluster.
#[derive(clap::Args)]
pub(crate) struct ClusterArgs {
    /// Kubeconfig file [default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account].
    #[arg(long, value_name = "FILE")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Kubeconfig context [default: its current context].
    #[arg(long)]
    pub(crate) context: Option<String>,
    /// Per-call timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Worker threads [default: the CPUs this process may use, at most 4].
    #[arg(short = 't', long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub(crate) threads: Option<u64>,
    /// Write everything measured to this JSON file (histograms included).
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// How often to scrape the API server's /metrics (also at the start and the end).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) scrape_interval: Duration,
}

#[derive(clap::Args)]
struct ChurnArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    what: ResourceArg,
    /// Object template, YAML or JSON, of the resource's kind (name, namespace and labels are
    /// filled in) [default: a ConfigMap with --size bytes of data; for a custom resource, one
    /// with an empty spec].
    #[arg(long, value_name = "FILE")]
    template: Option<PathBuf>,
    /// Bytes of data in the default ConfigMap.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    size: u64,
    /// Open loop: lifecycles/s: R, ramp:FROM..TO (over -d), or steps:R1,R2,...@DURATION.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<RateShape>,
    /// Open loop: gaps between lifecycle starts, poisson or uniform.
    #[arg(long, default_value = "poisson", value_parser = parse_arrival)]
    arrival: Arrival,
    /// Seed for Poisson arrivals.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Open loop: objects to keep in existence (lifetime = population / rate) [default: a 10s
    /// lifetime].
    #[arg(long, conflicts_with = "lifetime", value_parser = at_least_one)]
    population: Option<u64>,
    /// Open loop: how long each object lives.
    #[arg(long, value_parser = parse_duration)]
    lifetime: Option<Duration>,
    /// Closed loop: concurrent workers, each running lifecycles back to back.
    #[arg(short = 'w', long, conflicts_with = "rate", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    workers: Option<u64>,
    /// Closed loop: stop after this many lifecycles in all.
    #[arg(short = 'n', long, conflicts_with = "rate", value_parser = at_least_one)]
    lifecycles: Option<u64>,
    /// Open loop: how long lifecycles keep starting (each then lives out its lifetime).
    /// Closed loop: a time limit.
    #[arg(short = 'd', long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Patches per lifecycle.
    #[arg(short = 'u', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=1000))]
    updates: u32,
    /// Namespace for the objects [default: the kubeconfig context's].
    #[arg(long, conflicts_with = "namespaces")]
    namespace: Option<String>,
    /// Create this many namespaces for the run and spread objects over them.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    namespaces: Option<u64>,
    /// The run's id, in the `scaletest.dev/run` label of everything it makes [default: random].
    #[arg(long)]
    run_id: Option<String>,
    /// Client-side limit on API calls per second (off by default).
    #[arg(long)]
    qps: Option<f64>,
    /// Burst for --qps.
    #[arg(long, default_value_t = 10, requires = "qps")]
    burst: u32,
    /// Also run an informer on the objects (as `api watch` does) and report notifications.
    #[arg(long)]
    watch: bool,
    /// Check p99 latencies against the Kubernetes API-call SLOs; exit 1 if one fails. On the
    /// server's latency from its /metrics as ClusterLoader2 does (p99 per 5-minute window,
    /// custom resources and aggregated APIs left out); without them, approximated from the
    /// client's (one p99 per verb and resource over the whole run).
    #[arg(long)]
    slo: bool,
    /// Do not churn: delete every object (of --resource) and namespace that runs made
    /// (only --run-id's when given), then exit.
    #[arg(long)]
    cleanup: bool,
}

#[derive(clap::Args)]
struct WatchArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    what: ResourceArg,
    /// Namespace to watch [default: the kubeconfig context's].
    #[arg(long, conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Watch all namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Label selector.
    #[arg(short = 'l', long, conflicts_with = "run_id")]
    selector: Option<String>,
    /// Only the objects of this churn run.
    #[arg(long)]
    run_id: Option<String>,
    /// Stop after this long [default: until Ctrl-C].
    #[arg(short = 'd', long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Work-queue workers.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1000))]
    queue_workers: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Watches as load: this many watchers, each a loop of time-limited watch requests that
    /// resume from the last resourceVersion and list again on 410 Gone (instead of one
    /// informer with a work queue).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    watchers: Option<u64>,
    /// With --watchers: timeoutSeconds of each watch request (± 10 %, whole seconds).
    #[arg(long, default_value = "60s", value_parser = parse_duration, requires = "watchers")]
    watch_timeout: Duration,
    /// With --watchers: connections the watches share, as HTTP/2 streams [default: one per
    /// 100 watchers]. A server without HTTP/2 gets one connection per watch.
    #[arg(long, requires = "watchers", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    connections: Option<u64>,
}

impl ClusterArgs {
    /// A client for the cluster these flags name (see `kapi::connect`).
    pub(crate) async fn connect(
        &self,
        timeout: Option<Duration>,
        retry: bool,
    ) -> anyhow::Result<(kube::Client, String)> {
        kapi::connect(
            self.kubeconfig.as_deref(),
            self.context.as_deref(),
            timeout,
            retry,
        )
        .await
        .map_err(fault)
    }
}

fn parse_rate(s: &str) -> Result<RateShape, String> {
    s.parse().map_err(|e: pace::PaceError| e.to_string())
}

fn parse_arrival(s: &str) -> Result<Arrival, String> {
    s.parse()
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let threads = match &args.command {
        Command::Churn(a) => a.cluster.threads,
        Command::Watch(a) => a.cluster.threads,
        Command::Run(a) => a.threads(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads_or_cpus(threads).min(if threads.is_some() { 64 } else { 4 }))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match args.command {
            Command::Churn(a) => churn_main(*a).await,
            Command::Watch(a) => watch_main(*a).await,
            Command::Run(a) => super::api_run::main(*a).await,
        }
    })
}

async fn target(
    client: &kube::Client,
    spec: Option<&str>,
    template: Option<&serde_json::Value>,
) -> anyhow::Result<Target> {
    let from_template = template
        .and_then(kapi::template_gvk)
        .map(|g| kapi::gvk_spec(&g));
    let spec = spec
        .map(str::to_string)
        .or(from_template)
        .unwrap_or_else(|| "configmaps".into());
    kapi::resolve(client, &spec).await.map_err(fault)
}

impl ChurnArgs {
    /// The flags as kapi's churn spec.
    fn spec(&self) -> ChurnSpec {
        ChurnSpec {
            rate: self.rate.clone(),
            arrival: self.arrival,
            seed: self.seed,
            population: self.population,
            lifetime: self.lifetime,
            workers: self.workers,
            lifecycles: self.lifecycles,
            duration: self.duration,
            updates: self.updates,
            run_id: self.run_id.clone(),
            qps: self.qps,
            burst: self.burst,
        }
    }
}

/// The churn spec's fields as this command's flags: the one place they are named.
fn churn_flag(field: &str) -> String {
    match field {
        "rate" => "--rate",
        "duration" => "-d/--duration",
        "lifecycles" => "-n/--lifecycles",
        "population" => "--population",
        "lifetime" => "--lifetime",
        "run_id" => "--run-id",
        "qps" => "--qps",
        "workers" => "-w/--workers",
        "updates" => "-u/--updates",
        other => other,
    }
    .to_string()
}

fn spec_usage(e: ChurnSpecError) -> Usage {
    Usage(e.naming(churn_flag))
}

async fn churn_main(a: ChurnArgs) -> anyhow::Result<ExitCode> {
    // Flags first: bad usage never waits for a cluster.
    let template = match &a.template {
        Some(p) => Some(kapi::load_template(p).map_err(fault)?),
        None => None,
    };
    let spec = a.spec();
    if a.cleanup {
        spec.check().map_err(spec_usage)?;
        return cleanup(&a, template.as_ref()).await;
    }
    let churn = spec.build().map_err(spec_usage)?;
    let (client, default_ns) = a.cluster.connect(Some(a.cluster.timeout), false).await?;
    let target = target(&client, a.what.resource.as_deref(), template.as_ref()).await?;
    let watch = match a.watch {
        true => Some(a.cluster.connect(None, true).await?.0),
        false => None,
    };
    let session = session::Session {
        client,
        info: churn.info(&spec, target.display()),
        template: churn::template_for(&target, template, a.size as usize).map_err(fault)?,
        target,
        mode: churn.mode,
        duration: a.duration,
        updates: a.updates,
        run_id: churn.run_id,
        limit: churn.limit,
        make_namespaces: a.namespaces.map(|n| n as usize),
        namespace: a.namespace.clone().unwrap_or(default_ns),
        watch,
        sync_timeout: a.cluster.timeout,
    };
    let scraper = Scraper::start(session.client.clone(), a.cluster.scrape_interval).await;
    let stop = stop_on_ctrl_c();
    let started_unix = st_http::stamp::now_unix();
    let rec = Arc::new(Recorder::default());
    let progress = calls_progress(a.duration, rec.clone());
    let outcome = session::run(session, rec, stop, started_unix).await;
    progress.finish();
    let session::Outcome { mut run, warnings } = outcome.map_err(fault)?;
    for w in warnings {
        eprintln!("scaletest: {w}");
    }
    run.server = Some(server_side(scraper).await);
    run.check_slo();
    finish(&run, a.cluster.json.as_ref(), a.slo)
}

/// The API server's view of the run; the one line saying why it is missing, if it is.
pub(crate) async fn server_side(scraper: Scraper) -> kapi::server_metrics::ServerSide {
    let sv = scraper.finish().await;
    if let Some(w) = sv.warning() {
        eprintln!("scaletest: {w}");
    }
    sv
}

/// `api churn --cleanup`: delete what runs (or --run-id's) left behind.
async fn cleanup(a: &ChurnArgs, template: Option<&serde_json::Value>) -> anyhow::Result<ExitCode> {
    let (client, _) = a.cluster.connect(Some(a.cluster.timeout), false).await?;
    let target = target(&client, a.what.resource.as_deref(), template).await?;
    let c = churn::cleanup(&client, &target, a.run_id.as_deref()).await?;
    println!(
        "removed {} {} and {} namespace(s){}",
        c.objects,
        target.display(),
        c.namespaces,
        a.run_id
            .as_ref()
            .map(|r| format!(" of run {r}"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// The progress line of a churn: calls per second, calls and errors so far.
pub(crate) fn calls_progress(duration: Option<Duration>, rec: Arc<Recorder>) -> Ticking {
    let mut last = 0;
    Ticking::start(duration, move || {
        let (calls, errors) = rec.totals();
        let msg = format!(
            "{} calls/s; {} calls, {} errors",
            calls - last,
            calls,
            errors
        );
        last = calls;
        msg
    })
}

/// JSON first (what was measured survives a closed stdout), then the report; the exit code.
pub(crate) fn finish(run: &ApiRun, json: Option<&PathBuf>, slo: bool) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    // `--json -`: the run on stdout (a runner pod's log), the report on stderr.
    let to_stdout = json.is_some_and(|p| p.as_os_str() == "-");
    match json {
        Some(_) if to_stdout => {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, run)?;
            writeln!(out)?;
            std::io::stderr().write_all(output::render(run, slo).as_bytes())?;
        }
        Some(p) => {
            report::write_json_atomic(run, p)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
        }
        None => {}
    }
    if !to_stdout {
        std::io::stdout().write_all(output::render(run, slo).as_bytes())?;
    }
    let ok_calls: u64 = run.calls.iter().map(|c| c.ok).sum();
    if run.total_calls() > 0 && ok_calls == 0 {
        eprintln!("scaletest: every API call failed");
        return Ok(ExitCode::from(1));
    }
    if slo && !run.slo_pass() {
        eprintln!("scaletest: SLO check failed");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

async fn watch_main(a: WatchArgs) -> anyhow::Result<ExitCode> {
    if let Some(id) = &a.run_id {
        if !kapi::spec::valid_run_id(id) {
            return Err(Usage(format!("--run-id {id:?}: not a churn run id")).into());
        }
    }
    let mut metrics = Metrics::bind(a.metrics)?;
    let (client, default_ns) = a.cluster.connect(None, true).await?;
    let target = target(&client, a.what.resource.as_deref(), None).await?;
    let namespace = if a.all_namespaces || !target.namespaced {
        None
    } else {
        Some(a.namespace.clone().unwrap_or(default_ns))
    };
    let selector = a.selector.clone().or_else(|| {
        a.run_id
            .as_ref()
            .map(|r| format!("{}={r}", kapi::LABEL_RUN))
    });
    let info = ApiInfo {
        command: "watch".into(),
        resource: target.display(),
        namespaces: namespace.iter().cloned().collect(),
        run_id: a.run_id.clone(),
        duration_s: a.duration.map(|d| d.as_secs_f64()),
        ..Default::default()
    };
    let scraper = Scraper::start(client.clone(), a.cluster.scrape_interval).await;
    // The metrics server stops when this function returns (and drops `metrics`).
    if let Some(n) = a.watchers {
        let cfg = watchers::Config {
            target,
            namespace,
            selector,
            watchers: n as usize,
            timeout: a.watch_timeout,
            seed: std::process::id().into(),
        };
        return watchers_main(a, cfg, info, metrics, scraper).await;
    }
    let shared = watch::Shared::new();
    metrics.serve({
        let live = metrics.live(&scraper);
        let shared = shared.clone();
        Arc::new(move || with_eof(&shared.metrics.encode(), &live.text()))
    });
    let (watching, wstop) = Watching::start();
    let cfg = watch::Config {
        target,
        namespace,
        selector,
        workers: a.queue_workers as usize,
    };
    let task = tokio::spawn(watch::run(client, cfg, shared.clone(), wstop));
    let progress = {
        let shared = shared.clone();
        Ticking::start(a.duration, move || {
            let w = shared.stats();
            let p99 = |h: &hdrhistogram::Histogram<u64>| {
                report::format::ms(h.value_at_quantile(0.99) as f64 / 1000.0)
            };
            format!(
                "{} creates (p99 {}), {} updates (p99 {}), {} deletes; {} relists",
                w.notify_create.len(),
                p99(&w.notify_create),
                w.notify_update.len(),
                p99(&w.notify_update),
                w.deleted,
                w.relists
            )
        })
    };
    let mut run = watching.until_done(a.duration, task, progress, info).await;
    let (w, cut) = shared.report();
    (run.watch, run.seconds_cut) = (Some(w), cut);
    run.server = Some(server_side(scraper).await);
    finish(&run, a.cluster.json.as_ref(), false)
}

/// A running watch (an informer or watch loops) and what ends it.
struct Watching {
    /// Ctrl-C.
    stop: tokio::sync::watch::Receiver<bool>,
    /// Tells the watch task to stop.
    wstop_tx: tokio::sync::watch::Sender<bool>,
    started: std::time::Instant,
    started_unix: f64,
}

impl Watching {
    /// Ctrl-C handled and the clock started; the receiver the watch task stops on.
    fn start() -> (Watching, tokio::sync::watch::Receiver<bool>) {
        let (wstop_tx, wstop) = tokio::sync::watch::channel(false);
        let watching = Watching {
            stop: stop_on_ctrl_c(),
            wstop_tx,
            started: std::time::Instant::now(),
            started_unix: st_http::stamp::now_unix(),
        };
        (watching, wstop)
    }

    /// Wait for the duration or Ctrl-C, whichever comes first; stop the task and wait for it,
    /// then the progress line; the run's record so far.
    async fn until_done(
        self,
        duration: Option<Duration>,
        task: tokio::task::JoinHandle<()>,
        progress: Ticking,
        info: ApiInfo,
    ) -> ApiRun {
        until_stopped(duration, &self.stop).await;
        let _ = self.wstop_tx.send(true);
        let _ = task.await;
        progress.finish();
        let mut run = ApiRun::new(info, self.started_unix);
        run.elapsed_s = self.started.elapsed().as_secs_f64();
        run.interrupted = *self.stop.borrow();
        run
    }
}

/// `api watch --watchers N`: the watch loops as load, reported like the rest.
async fn watchers_main(
    a: WatchArgs,
    cfg: watchers::Config,
    info: ApiInfo,
    mut metrics: Metrics,
    scraper: Scraper,
) -> anyhow::Result<ExitCode> {
    let config = kapi::config(
        a.cluster.kubeconfig.as_deref(),
        a.cluster.context.as_deref(),
        None,
        false,
    )
    .await
    .map_err(fault)?;
    let n = cfg.watchers;
    let connections = a.connections.map_or(n.div_ceil(100), |c| c as usize);
    let (clients, protocol, opened) = watchers::clients(&config, connections.min(n))
        .await
        .map_err(fault)?;
    let shared = watchers::Shared::new(&cfg, protocol, opened);
    metrics.serve({
        let live = metrics.live(&scraper);
        let shared = shared.clone();
        Arc::new(move || with_eof(&shared.stats().encode_metrics(), &live.text()))
    });
    let (watching, wstop) = Watching::start();
    let rec = Arc::new(Recorder::default());
    let task = tokio::spawn(watchers::run(
        clients,
        cfg,
        shared.clone(),
        rec.clone(),
        wstop,
    ));
    let progress = {
        let shared = shared.clone();
        Ticking::start(a.duration, move || {
            let w = shared.stats();
            format!(
                "{} watch requests, {} events (delivery p99 {}), {} relists, {} errors",
                w.total.requests,
                w.total.events(),
                report::format::ms(
                    w.delivery_update
                        .value_at_quantile(0.99)
                        .max(w.delivery_create.value_at_quantile(0.99)) as f64
                        / 1000.0
                ),
                w.relists,
                w.errors.values().sum::<u64>()
            )
        })
    };
    let mut run = watching.until_done(a.duration, task, progress, info).await;
    run.seconds_cut = run.take_calls(&rec);
    let w = shared.stats();
    let none_started = w.total.requests > 0 && w.established.is_empty();
    run.watchers = Some(w);
    run.server = Some(server_side(scraper).await);
    let code = finish(&run, a.cluster.json.as_ref(), false)?;
    if none_started {
        eprintln!("scaletest: no watch request was answered");
        return Ok(ExitCode::from(1));
    }
    Ok(code)
}

/// What `k8s api` needs to know of `scaletest api ARGS` to run it in pods, read through the
/// same flags: what it works on.
pub(crate) enum RunnerNeeds {
    /// `churn`: its resource (as `--resource` takes it), `--watch`, `--namespaces`.
    Churn {
        resource: String,
        watch: bool,
        namespaces: bool,
        duration: Option<Duration>,
    },
    /// `watch`: its resource and `-d`.
    Watch {
        resource: String,
        duration: Option<Duration>,
    },
    /// `run`: the workload (a built-in name or a file) and its `--set`s.
    Run {
        workload: String,
        set: Vec<(String, String)>,
        cleanup: bool,
    },
}

/// Read `args` (after `api`) as `scaletest api` would; refuse what cannot work in a pod.
pub(crate) fn runner_needs(args: &[String]) -> Result<RunnerNeeds, Usage> {
    use clap::{Args as _, FromArgMatches};
    for (flag, why) in [
        (
            "--kubeconfig",
            "the pods use their ServiceAccount, or --kubeconfig-secret",
        ),
        (
            "--context",
            "the pods use their ServiceAccount, or --kubeconfig-secret",
        ),
        ("--json", "each pod's run comes back through its log"),
        (
            "--template",
            "a template file is not in the pods; give --resource",
        ),
        ("--metrics", "not served from pods yet"),
    ] {
        if args
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        {
            return Err(Usage(format!("k8s api: {flag}: {why}")));
        }
    }
    let cmd = Args::augment_args(clap::Command::new("scaletest api").no_binary_name(true));
    let m = cmd.try_get_matches_from(args).map_err(|e| {
        let text = e.to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ");
        Usage(format!("k8s api -- {}: {first}", args.join(" ")))
    })?;
    let a = Args::from_arg_matches(&m).map_err(|e| Usage(e.to_string()))?;
    let resource = |r: &ResourceArg| r.resource.clone().unwrap_or_else(|| "configmaps".into());
    Ok(match a.command {
        Command::Churn(c) => RunnerNeeds::Churn {
            resource: resource(&c.what),
            watch: c.watch,
            namespaces: c.namespaces.is_some(),
            duration: c.duration,
        },
        Command::Watch(w) => RunnerNeeds::Watch {
            resource: resource(&w.what),
            duration: w.duration,
        },
        Command::Run(r) => {
            let (workload, set, cleanup) = r.workload_and_set();
            RunnerNeeds::Run {
                workload,
                set,
                cleanup,
            }
        }
    })
}
