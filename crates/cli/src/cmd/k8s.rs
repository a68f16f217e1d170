//! `scaletest k8s`: flags → `k8s::spec::Changes` and a `k8s::cluster::Target` → one call into
//! the `k8s` crate, then its outcome as lines on stdout. Exit codes: 2 for the user's to fix,
//! 1 for a cluster that failed (unreachable, forbidden, not ready in time).

use super::parse_duration;
use crate::exit::{fault, Usage};
use k8s::aggregator::Aggregator;
use k8s::cluster::{self, Target};
use k8s::spec::{self, Changes, Figures, Spec, TargetSpec};
use report::threshold::Threshold;
use report::Window;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const EXAMPLES: &str = "Examples:
  scaletest k8s render > demo.yaml                      the manifests, for review or GitOps
  scaletest k8s up --rate 20000                         sized from the measured per-core figures
  scaletest k8s scale servers=100 bots=1000
  scaletest k8s rollout v2 --image registry.example/scaletest:2 --threshold 'p99<50ms'
                                                        maxUnavailable 0, watched, judged: exit 1 on a failed request
  scaletest k8s check --during 'kubectl -n shop rollout restart deploy/web && kubectl -n shop rollout status deploy/web'
  scaletest k8s check --since 5m --threshold 'error_rate<0.1%' --threshold 'p99<20ms'
  scaletest k8s status                                  pods, rollouts, the aggregator's rate and p99
  scaletest k8s logs serve --tail 20                    each line prefixed with its pod
  scaletest k8s rate 50000                              through the aggregator, live
  scaletest k8s ui                                      http://127.0.0.1:8089/
  scaletest k8s down
  scaletest k8s size --rate 1000000 --p99 10ms";

/// Arguments of `scaletest k8s`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Apply the run (namespace, ServiceAccount, token Secret, Services, Deployments) and wait
    /// until every pod is ready, or say which is not and why.
    #[command(after_help = EXAMPLES)]
    Up(UpArgs),
    /// Change replicas: `servers=N`, `bots=M` (or --rate to size both), then wait.
    #[command(after_help = EXAMPLES)]
    Scale(ScaleArgs),
    /// Roll the servers to a new version (maxUnavailable 0), watch until done, and judge the
    /// requests of its seconds: exit 1 if any failed or a threshold failed.
    #[command(after_help = EXAMPLES)]
    Rollout(RolloutArgs),
    /// The last lines of the run's pods' logs (of one component: serve, aggregate or bot),
    /// each prefixed with its pod.
    #[command(after_help = EXAMPLES)]
    Logs(LogsArgs),
    /// Judge the run (or its last --since, or the seconds a --during command took) against
    /// thresholds, from the aggregator's merged histograms: exit 1 if any failed.
    #[command(after_help = EXAMPLES)]
    Check(CheckArgs),
    /// Pods by component and version, and each Deployment's rollout.
    #[command(after_help = EXAMPLES)]
    Status(RunArgs),
    /// Change the bots' total rate through the aggregator (0: idle), live.
    #[command(after_help = EXAMPLES)]
    Rate(RateArgs),
    /// Forward the aggregator's live UI to a local port (through the API server).
    #[command(after_help = EXAMPLES)]
    Ui(UiArgs),
    /// Delete everything the run made (its namespace), and only that.
    #[command(after_help = EXAMPLES)]
    Down(RunArgs),
    /// Print the run's manifests as YAML (no cluster needed).
    #[command(after_help = EXAMPLES)]
    Render(RenderArgs),
    /// How many servers, bots and cores a rate needs, from measured per-core figures.
    #[command(after_help = EXAMPLES)]
    Size(SizeArgs),
    /// `scaletest api ARGS` (churn, watch --watchers, run) in pods, as a Job with the least
    /// ClusterRole it needs; their runs merged into one report.
    Api(super::k8s_runner::ApiArgs),
    /// Hollow nodes as pods: `up` (shards of a StatefulSet) and `down`.
    #[command(subcommand)]
    Nodes(super::k8s_runner::NodesCommand),
}

/// Which run, on which cluster.
#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig file [default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context [default: its current context].
    #[arg(long)]
    context: Option<String>,
    /// The run's id (a DNS label); every object carries it.
    #[arg(long, default_value = "demo")]
    run: String,
    /// The run's namespace [default: scaletest-RUN].
    #[arg(long)]
    namespace: Option<String>,
    /// Longest wait for readiness (or deletion), and bound on each API call.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    timeout: Duration,
}

/// What `up` may set; anything not given keeps the deployed value (or the default).
#[derive(clap::Args)]
struct SpecArgs {
    /// The image holding the scaletest binary [default: scaletest:VERSION].
    #[arg(long)]
    image: Option<String>,
    /// imagePullPolicy: IfNotPresent, Always or Never [default: IfNotPresent].
    #[arg(long)]
    pull_policy: Option<String>,
    /// Server replicas [default: 1, or sized by --rate].
    #[arg(long)]
    servers: Option<i32>,
    /// Loadbot replicas [default: 1, or sized by --rate].
    #[arg(long)]
    bots: Option<i32>,
    /// Total requests/s the bots start with; also sizes servers, bots and CPU.
    #[arg(long)]
    rate: Option<f64>,
    /// The version the servers report [default: v1].
    #[arg(long)]
    server_version: Option<String>,
    /// Plan servers and bots at this fraction of their measured per-core capacity.
    #[arg(long)]
    headroom: Option<f64>,
    /// How long a terminating server keeps answering, seconds [default: 5].
    #[arg(long)]
    drain_delay: Option<u32>,
    /// Load your own service at this URL instead of deploying `serve` (any URL `load`
    /// takes, e.g. `http://web.shop.svc:8080/`): only the bots and the aggregator run.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// With --target: a request header, "Name: value" (repeatable; e.g. a Host header).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// With --target: do not verify its TLS certificate.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// With --target: speak HTTP/2 (ALPN h2 over TLS, h2c over http://).
    #[arg(long)]
    http2: bool,
    /// Requests/s for every bot, so that `k8s scale bots=N` adds load (seed 000), instead of
    /// a total --rate split over the bots.
    #[arg(long, value_name = "R", conflicts_with = "rate")]
    per_bot_rate: Option<f64>,
    /// Where the aggregator keeps its run: emptydir (a new pod starts an empty run and says
    /// so) or pvc (a claim from the default StorageClass: the run outlives its pod)
    /// [default: emptydir].
    #[arg(long, value_enum)]
    state: Option<StateKind>,
    /// With --state pvc: the claim's size.
    #[arg(long, default_value = "1Gi")]
    state_size: String,
}

/// `--state`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum StateKind {
    Emptydir,
    Pvc,
}

#[derive(clap::Args)]
struct UpArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    spec: SpecArgs,
}

#[derive(clap::Args)]
struct RenderArgs {
    /// The run's id.
    #[arg(long, default_value = "demo")]
    run: String,
    /// The run's namespace [default: scaletest-RUN].
    #[arg(long)]
    namespace: Option<String>,
    #[command(flatten)]
    spec: SpecArgs,
}

#[derive(clap::Args)]
struct ScaleArgs {
    #[command(flatten)]
    run: RunArgs,
    /// `servers=N` and/or `bots=M`.
    #[arg(value_name = "COMPONENT=N")]
    counts: Vec<String>,
    /// Size servers and bots for this total rate (explicit counts win) and set it live through
    /// the aggregator.
    #[arg(long)]
    rate: Option<f64>,
}

#[derive(clap::Args)]
struct RolloutArgs {
    #[command(flatten)]
    run: RunArgs,
    /// The new version label, e.g. v2.
    #[arg(value_name = "VERSION")]
    to: String,
    /// The servers' new image (a real rollout changes the image; without it only the
    /// version label changes).
    #[arg(long)]
    image: Option<String>,
    /// A pass/fail check on the rollout's seconds (repeatable; as `load --threshold`);
    /// `failed==0` is always checked. Any failed: exit 1.
    #[arg(long = "threshold", value_name = "EXPR")]
    thresholds: Vec<Threshold>,
}

#[derive(clap::Args)]
struct LogsArgs {
    #[command(flatten)]
    run: RunArgs,
    /// serve, aggregate or bot [default: all].
    #[arg(value_parser = ["serve", "aggregate", "bot"])]
    component: Option<String>,
    /// Lines per pod, from the end.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    tail: i64,
    /// The previous container's log (after a crash).
    #[arg(long)]
    previous: bool,
}

#[derive(clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Judge the last DURATION of the run [default: the whole run].
    #[arg(long, value_parser = super::parse_duration, conflicts_with = "during")]
    since: Option<std::time::Duration>,
    /// Run this shell command (e.g. `kubectl rollout restart deploy/web && kubectl rollout
    /// status deploy/web`) and judge the seconds it took; its failure is exit 1 too.
    #[arg(long, value_name = "COMMAND")]
    during: Option<String>,
    /// A pass/fail check (repeatable; as `load --threshold`) [default: failed==0].
    #[arg(long = "threshold", value_name = "EXPR")]
    thresholds: Vec<Threshold>,
}

#[derive(clap::Args)]
struct RateArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Total requests/s over all bots (0: the bots idle).
    rate: f64,
}

#[derive(clap::Args)]
struct UiArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Local address for the UI.
    #[arg(long, default_value = "127.0.0.1:8089")]
    bind: std::net::SocketAddr,
}

#[derive(clap::Args)]
struct SizeArgs {
    /// Total requests/s.
    #[arg(long)]
    rate: f64,
    /// The p99 latency target, e.g. 10ms (checked against what was measured).
    #[arg(long)]
    p99: Option<String>,
    /// Plan at this fraction of a core's measured capacity.
    #[arg(long, default_value_t = spec::DEFAULT_HEADROOM)]
    headroom: f64,
}

impl SpecArgs {
    fn changes(&self) -> Result<Changes, Usage> {
        if self.target.is_none() && (!self.headers.is_empty() || self.insecure || self.http2) {
            return Err(Usage(
                "-H, --insecure and --http2 apply to --target URL (the run's own servers need none)"
                    .into(),
            ));
        }
        Ok(Changes {
            image: self.image.clone(),
            pull_policy: self.pull_policy.clone(),
            version: self.server_version.clone(),
            servers: self.servers,
            bots: self.bots,
            rate: self.rate,
            size_for: self.rate,
            headroom: self.headroom,
            drain_delay_s: self.drain_delay,
            server_image: None,
            target: self.target.as_ref().map(|url| TargetSpec {
                url: url.clone(),
                headers: self.headers.clone(),
                insecure: self.insecure,
                http2: self.http2,
            }),
            per_bot_rate: self.per_bot_rate,
            state: self.state.map(|s| match s {
                StateKind::Pvc => spec::RunState::Pvc {
                    size: self.state_size.clone(),
                },
                StateKind::Emptydir => spec::RunState::EmptyDir,
            }),
        })
    }
}

impl RunArgs {
    fn target(&self) -> Target {
        Target {
            run: self.run.clone(),
            namespace: self
                .namespace
                .clone()
                .unwrap_or_else(|| Spec::new(&self.run).namespace),
            timeout: self.timeout,
        }
    }

    fn base(&self) -> anyhow::Result<Spec> {
        let mut s = Spec::new(&self.run);
        if let Some(ns) = &self.namespace {
            s.namespace = ns.clone();
        }
        s.check().map_err(fault)?;
        Ok(s)
    }

    /// A runtime and a client; per-call timeouts are the command's timeout (at most 30 s).
    fn connect(&self) -> anyhow::Result<(tokio::runtime::Runtime, kube::Client)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let per_call = self.timeout.min(Duration::from_secs(30));
        let (client, _) = rt
            .block_on(kapi::connect(
                self.kubeconfig.as_deref(),
                self.context.as_deref(),
                Some(per_call),
                false,
            ))
            .map_err(fault)?;
        Ok((rt, client))
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn print_outcome(verb: &str, o: &cluster::Outcome) -> anyhow::Result<ExitCode> {
    let changed = o
        .applied
        .iter()
        .filter(|a| a.change != cluster::Change::Unchanged)
        .count();
    say(&format!(
        "{verb}: run {} in namespace {} ready ({}, {} bots, aggregator started at {}); {changed} of {} objects changed",
        o.spec.run,
        o.spec.namespace,
        match &o.spec.target {
            Some(t) => format!("loading {}", t.url),
            None => format!("{} servers {}", o.spec.servers, o.spec.version),
        },
        o.spec.bots,
        match o.spec.per_bot_rate {
            Some(r) => format!("{r} req/s per bot"),
            None => format!("{} req/s", o.spec.rate),
        },
        o.applied.len()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `rollout`: roll, then the verdict on the rollout's seconds.
fn rollout(a: RolloutArgs, say: &mut dyn FnMut(&str)) -> anyhow::Result<ExitCode> {
    let changes = Changes {
        version: Some(a.to.clone()),
        server_image: a.image.clone(),
        ..Changes::default()
    };
    a.run.base()?.with(&changes).map_err(fault)?;
    let (rt, client) = a.run.connect()?;
    let r = rt
        .block_on(cluster::rollout(
            &client,
            &a.run.target(),
            &a.to,
            a.image.as_deref(),
            say,
        ))
        .map_err(fault)?;
    if let Some(w) = &r.warning {
        eprintln!("scaletest: {w}");
    }
    print_outcome("rollout", &r.outcome)?;
    match &r.window {
        Some(w) => Ok(verdict(w, "rollout", &with_no_failed(&a.thresholds))?),
        None if a.thresholds.is_empty() => Ok(ExitCode::SUCCESS),
        None => {
            eprintln!("scaletest: no verdict: the aggregator could not be asked");
            Ok(ExitCode::from(1))
        }
    }
}

/// The thresholds given, and `failed==0` unless one already checks `failed`.
fn with_no_failed(given: &[Threshold]) -> Vec<Threshold> {
    let mut t = given.to_vec();
    if !t.iter().any(Threshold::counts_failed) {
        t.insert(0, "failed==0".parse().expect("a fixed threshold parses"));
    }
    t
}

/// Print a window's figures and verdicts; exit 1 when one failed.
fn verdict(w: &Window, what: &str, thresholds: &[Threshold]) -> std::io::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    writeln!(out)?;
    for line in w.describe(what) {
        writeln!(out, "{line}")?;
    }
    let verdicts = w.judge(thresholds);
    report::threshold::write_verdicts(&verdicts, &mut out)?;
    out.flush()?;
    Ok(if report::threshold::all_pass(&verdicts) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `check`: the window (whole run, --since, or --during's command), judged.
fn check(a: CheckArgs, say: &mut dyn FnMut(&str)) -> anyhow::Result<ExitCode> {
    a.run.base()?;
    let thresholds = if a.thresholds.is_empty() {
        with_no_failed(&[])
    } else {
        a.thresholds.clone()
    };
    let (rt, client) = a.run.connect()?;
    let t = a.run.target();
    let agg = rt
        .block_on(async {
            let spec = cluster::status(&client, &t).await?.spec;
            Aggregator::find(&client, &spec).await
        })
        .map_err(fault)?;
    let now = st_http::stamp::now_unix;
    let (from, to, ran) = match (&a.during, a.since) {
        (Some(cmd), _) => {
            let from = now().floor() as u64;
            say(&format!("check: running {cmd}"));
            let status = std::process::Command::new("sh").args(["-c", cmd]).status();
            let to = (now().ceil() as u64).max(from + 1);
            let ok = match status {
                Ok(s) if s.success() => true,
                Ok(s) => {
                    eprintln!("scaletest: the --during command failed ({s})");
                    false
                }
                Err(e) => return Err(Usage(format!("--during {cmd:?}: {e}")).into()),
            };
            (from, to, ok)
        }
        (None, since) => {
            let summary = rt.block_on(agg.summary()).map_err(fault)?;
            let started = summary["started_unix"].as_f64().unwrap_or(0.0).floor() as u64;
            // The seconds the aggregator has heard in full.
            let to = (now() - fleet::state::PUBLISH_DELAY).floor() as u64;
            let from = match since {
                Some(d) => to.saturating_sub(d.as_secs().max(1)).max(started),
                None => started,
            };
            (from, to.max(from + 1), true)
        }
    };
    let w = rt
        .block_on(agg.window(from, to, cluster::SETTLE))
        .map_err(fault)?;
    let code = verdict(&w, "check", &thresholds)?;
    Ok(if ran { code } else { ExitCode::from(1) })
}

/// An age as kubectl shows it: 45s, 3m12s, 2h5m, 3d4h.
fn age(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `servers=N bots=M` → changes.
fn counts(args: &[String], c: &mut Changes) -> Result<(), Usage> {
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| Usage(format!("{a:?}: give servers=N or bots=M")))?;
        let n: i32 = v
            .parse()
            .map_err(|_| Usage(format!("{a:?}: {v:?} is not a whole number")))?;
        match k {
            "servers" | "server" | "serve" => c.servers = Some(n),
            "bots" | "bot" => c.bots = Some(n),
            _ => return Err(Usage(format!("{a:?}: the components are servers and bots"))),
        }
    }
    Ok(())
}

fn parse_ms(s: &str) -> Result<f64, Usage> {
    let d = parse_duration(s).map_err(|e| Usage(format!("--p99: {e}")))?;
    Ok(d.as_secs_f64() * 1e3)
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Render(a) => render(a),
        Command::Size(a) => size(a),
        Command::Up(a) => up(a),
        Command::Scale(a) => scale(a),
        Command::Rollout(a) => rollout(a, &mut say),
        Command::Check(a) => check(a, &mut say),
        Command::Logs(a) => logs(a),
        Command::Rate(a) => rate(a),
        Command::Ui(a) => ui(a),
        Command::Status(a) => status(a),
        Command::Down(a) => down(a),
        Command::Api(a) => super::k8s_runner::api(a),
        Command::Nodes(c) => super::k8s_runner::nodes(c),
    }
}

/// `render`: the manifests of a run, as YAML on stdout.
fn render(a: RenderArgs) -> anyhow::Result<ExitCode> {
    let mut base = Spec::new(&a.run);
    if let Some(ns) = &a.namespace {
        base.namespace = ns.clone();
    }
    let spec = base.with(&a.spec.changes()?).map_err(fault)?;
    let keys = k8s::manifest::Keys::complete(&spec, None).map_err(fault)?;
    let yaml = k8s::manifest::render(&k8s::manifest::objects(&spec, &keys));
    let mut out = std::io::stdout().lock();
    out.write_all(yaml.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `size`: the replicas and CPU a rate needs, from the measured per-core figures.
fn size(a: SizeArgs) -> anyhow::Result<ExitCode> {
    let f = Figures::MEASURED;
    let s = spec::size(a.rate, &f, a.headroom).map_err(fault)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} req/s at {:.0} % of measured capacity:",
        a.rate,
        a.headroom * 100.0
    )?;
    writeln!(
        out,
        "  servers     {:>6} × {} m CPU  ({:.0} req/s each; measured {:.2} µs CPU per response)",
        s.servers, s.server_cpu_m, s.per_server, f.server_us_per_req
    )?;
    writeln!(
        out,
        "  bots        {:>6} × {} m CPU  ({:.0} req/s each; measured {:.2} µs CPU per request)",
        s.bots, s.bot_cpu_m, s.per_bot, f.bot_us_per_req
    )?;
    writeln!(out, "  aggregator  {:>6} × {} m CPU", 1, s.aggregator_cpu_m)?;
    writeln!(out, "  cores       {:>8.2}", s.cores)?;
    if let Some(p) = &a.p99 {
        let ms = parse_ms(p)?;
        match spec::p99_warning(ms, &f) {
            Some(w) => writeln!(out, "warning: {w}")?,
            None => writeln!(
                out,
                "p99 {ms} ms: above the {} ms measured at a server's capacity",
                f.server_p99_ms
            )?,
        }
    }
    writeln!(
        out,
        "apply: scaletest k8s up --rate {} (or scale --rate {} for a running run)",
        a.rate, a.rate
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `up`: apply the run and wait until it is ready; its cluster's version into its events.
fn up(a: UpArgs) -> anyhow::Result<ExitCode> {
    let base = a.run.base()?;
    let changes = a.spec.changes()?;
    // Check the values before any call.
    base.clone().with(&changes).map_err(fault)?;
    let (rt, client) = a.run.connect()?;
    let o = rt
        .block_on(cluster::up(
            &client,
            &a.run.target(),
            base,
            &changes,
            &mut say,
        ))
        .map_err(fault)?;
    // The cluster's version goes into the run's events (results.json keeps them).
    let recorded = rt.block_on(async {
        let v = cluster::cluster_version(&client).await?;
        Aggregator::find(&client, &o.spec)
            .await?
            .event(&format!("cluster: {v}"))
            .await
    });
    if let Err(e) = recorded {
        eprintln!("scaletest: the cluster's version is not in the run's events: {e}");
    }
    print_outcome("up", &o)
}

/// `scale`: new replica counts (or --rate: sized, and the new rate to the aggregator).
fn scale(a: ScaleArgs) -> anyhow::Result<ExitCode> {
    // The aggregator's Deployment is left alone (a change would restart it and end
    // the run): --rate sizes the replicas, and the new rate goes to it live.
    let mut changes = Changes {
        size_for: a.rate,
        ..Changes::default()
    };
    counts(&a.counts, &mut changes)?;
    if changes.servers.is_none() && changes.bots.is_none() && a.rate.is_none() {
        return Err(Usage("give servers=N, bots=M or --rate".into()).into());
    }
    a.run.base()?.with(&changes).map_err(fault)?;
    let (rt, client) = a.run.connect()?;
    let o = rt
        .block_on(cluster::change(
            &client,
            &a.run.target(),
            &changes,
            &k8s::manifest::COMPONENTS,
            &mut say,
        ))
        .map_err(fault)?;
    if let Some(rate) = a.rate {
        let set = rt.block_on(async {
            Aggregator::find(&client, &o.spec)
                .await?
                .set_rate(rate)
                .await
        });
        if let Err(e) = set {
            eprintln!("scaletest: scaled, but the rate was not changed: {e}");
            return Ok(ExitCode::from(1));
        }
        say(&format!(
            "scale: the bots are now asked for {rate} req/s in all"
        ));
    }
    print_outcome("scale", &o)
}

/// `logs`: the last lines of the run's pods' logs.
fn logs(a: LogsArgs) -> anyhow::Result<ExitCode> {
    a.run.base()?;
    let (rt, client) = a.run.connect()?;
    let lines = rt
        .block_on(cluster::logs(
            &client,
            &a.run.target(),
            a.component.as_deref(),
            a.tail,
            a.previous,
        ))
        .map_err(fault)?;
    let mut out = std::io::stdout().lock();
    for l in lines {
        writeln!(out, "{l}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `rate`: the bots' total rate through the aggregator, live.
fn rate(a: RateArgs) -> anyhow::Result<ExitCode> {
    if !(a.rate.is_finite() && a.rate >= 0.0) {
        return Err(Usage(format!("rate {}: give requests/s ≥ 0", a.rate)).into());
    }
    a.run.base()?;
    let (rt, client) = a.run.connect()?;
    let t = a.run.target();
    let answer = rt
        .block_on(async {
            let spec = cluster::status(&client, &t).await?.spec;
            let agg = Aggregator::find(&client, &spec).await?;
            agg.set_rate(a.rate).await
        })
        .map_err(fault)?;
    say(&format!(
        "rate: the bots of run {} are now asked for {} req/s in all",
        t.run, answer["offered"]
    ));
    Ok(ExitCode::SUCCESS)
}

/// `ui`: the aggregator's page on a local port, until Ctrl-C.
fn ui(a: UiArgs) -> anyhow::Result<ExitCode> {
    a.run.base()?;
    let (rt, client) = a.run.connect()?;
    let t = a.run.target();
    let run = t.run.clone();
    rt.block_on(async {
        let spec = cluster::status(&client, &t).await?.spec;
        let agg = Aggregator::find(&client, &spec).await?;
        let (pod, token) = (agg.pod.clone(), agg.token().to_string());
        k8s::aggregator::forward_ui(
            agg,
            a.bind,
            |addr| {
                say(&format!(
                    "ui: http://{addr}/?token={token} (run {run}, pod {pod}); Ctrl-C to stop"
                ))
            },
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await
    })
    .map_err(fault)?;
    Ok(ExitCode::SUCCESS)
}

/// `status`: the run's spec, rollouts, pods, and the aggregator's live figures.
fn status(a: RunArgs) -> anyhow::Result<ExitCode> {
    a.base()?;
    let (rt, client) = a.connect()?;
    let st = rt
        .block_on(cluster::status(&client, &a.target()))
        .map_err(fault)?;
    let mut out = std::io::stdout().lock();
    writeln!(
            out,
            "run {} in namespace {}: image {}, servers {} at {}, bots {}, aggregator started at {} req/s",
            st.spec.run,
            st.spec.namespace,
            st.spec.image,
            st.spec.servers,
            st.spec.version,
            st.spec.bots,
            st.spec.rate
        )?;
    for r in &st.rollouts {
        writeln!(
            out,
            "deployment {}{}",
            r.line(),
            if r.done() {
                " (rolled out)"
            } else {
                " (rolling)"
            }
        )?;
    }
    for ((component, version, state), n) in &st.pods {
        writeln!(out, "pods {component:<10} {version:<8} {state:<24} {n}")?;
    }
    if !st.rows.is_empty() {
        let w = st
            .rows
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(3)
            .max(3);
        let wn = st
            .rows
            .iter()
            .map(|r| r.node.len())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(
            out,
            "{:<w$}  {:<9}  {:<wn$}  {:<7}  {:<24}  {:>8}  age",
            "pod", "component", "node", "version", "state", "restarts"
        )?;
        for r in &st.rows {
            writeln!(
                out,
                "{:<w$}  {:<9}  {:<wn$}  {:<7}  {:<24}  {:>8}  {}",
                r.name,
                r.component,
                r.node,
                r.version,
                r.state,
                r.restarts,
                age(r.age_s)
            )?;
        }
    }
    if let Some(v) = &st.cluster_version {
        writeln!(out, "cluster: {v}")?;
    }
    out.flush()?;
    drop(out);
    let live = rt.block_on(async {
        let agg = Aggregator::find(&client, &st.spec).await?;
        agg.live().await
    });
    say(&match live {
            Ok(l) => format!(
                "aggregator: {:.0} req/s answered (asked {:.0}), p99 {:.2} ms in the last second; {} bots; {} requests, {} failed so far",
                l.rate, l.offered, l.p99_ms, l.bots, l.requests, l.errors
            ),
            Err(e) => format!("aggregator: not reachable ({e})"),
        });
    Ok(ExitCode::SUCCESS)
}

/// `down`: delete the run's namespace and wait until it is gone.
fn down(a: RunArgs) -> anyhow::Result<ExitCode> {
    a.base()?;
    let (rt, client) = a.connect()?;
    let t = a.target();
    match rt.block_on(cluster::down(&client, &t)).map_err(fault)? {
        cluster::Down::NotFound => say(&format!(
            "down: run {} does not exist (no namespace {}): nothing to delete",
            t.run, t.namespace
        )),
        cluster::Down::Deleted { objects } => say(&format!(
            "down: run {} deleted: namespace {} and its {objects} labelled objects",
            t.run, t.namespace
        )),
    }
    Ok(ExitCode::SUCCESS)
}
