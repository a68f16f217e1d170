//! `scaletest nodes`: flags → `nodes::Config` → register, run until -d or Ctrl-C → report.

use super::{parse_duration, threads_or_cpus};
use crate::exit::fault;
use crate::metrics::Metrics;
use nodes::client::{Pool, Transport};
use nodes::objects::{Shape, Taint};
use nodes::{Config, Intervals, PodTiming, WatchMode};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const EXAMPLES: &str = "Examples:
  scaletest nodes --nodes 1000 -d 10m --json nodes.json      1,000 hollow kubelets and kube-proxies
  scaletest nodes --nodes 5000 --watch shared --metrics 127.0.0.1:9465
  scaletest nodes --nodes 100 --taint scaletest.dev/hollow=true:NoSchedule --max-pods 30
  scaletest nodes --cleanup                                  delete every hollow node and its lease";

/// Arguments of `scaletest nodes`.
#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Hollow nodes to run.
    #[arg(short = 'n', long, required_unless_present = "cleanup",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    nodes: Option<u64>,
    /// Kubeconfig file [default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context [default: its current context].
    #[arg(long)]
    context: Option<String>,
    /// Node names: PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "hollow-node-")]
    prefix: String,
    /// CPU capacity of each node.
    #[arg(long, default_value = "8")]
    cpu: String,
    /// Memory capacity of each node.
    #[arg(long, default_value = "32Gi")]
    memory: String,
    /// Pod capacity of each node (the kubelet's maxPods).
    #[arg(long, default_value_t = 110, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_pods: u32,
    /// Extra node label KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Node taint KEY[=VALUE]:EFFECT (repeatable), e.g. scaletest.dev/hollow=true:NoSchedule.
    #[arg(long = "taint", value_name = "TAINT", value_parser = parse_taint)]
    taints: Vec<Taint>,
    /// Lease renewal period (the kubelet: nodeLeaseDurationSeconds/4).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    lease_interval: Duration,
    /// Lease duration written in each lease.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// Node status computation period (nodeStatusUpdateFrequency).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    status_interval: Duration,
    /// Node status report period when nothing changed (nodeStatusReportFrequency).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    status_report: Duration,
    /// From a pod's admission to Running and Ready.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    run_delay: Duration,
    /// A Job's pod: from Running to Succeeded.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    job_duration: Duration,
    /// No kube-proxy per node.
    #[arg(long)]
    no_proxy: bool,
    /// Watches: per-node (as kubelets and kube-proxies watch) or shared (one of each for all
    /// nodes: cheaper, not a kubelet's traffic).
    #[arg(long, default_value = "per-node", value_parser = ["per-node", "shared"])]
    watch: String,
    /// Speak HTTP/1.1 (kube-rs's own client: one connection per watch) instead of HTTP/2.
    #[arg(long)]
    http1: bool,
    /// HTTP/2: watches per connection, at most the server's stream limit less a tenth
    /// [default: that] (short calls have connections of their own).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    streams_per_connection: Option<u64>,
    /// The kubelet release to play, 1.28 … 1.33: what it sends differs (docs/hollow-nodes.md).
    #[arg(long, value_name = "VERSION", default_value_t = nodes::profile::KubeletVersion::default(),
          value_parser = parse_kubelet_version)]
    kubelet_version: nodes::profile::KubeletVersion,
    /// The address of the nodes' one kubelet endpoint (HTTPS: logs, /pods, /healthz), each
    /// Node's InternalIP [default: 127.0.0.1 when the API server is on loopback, else this
    /// host's address toward the API server].
    #[arg(long, value_name = "ADDR")]
    node_ip: Option<std::net::IpAddr>,
    /// Do not post the events a kubelet posts.
    #[arg(long)]
    no_events: bool,
    /// Stop after this long [default: until Ctrl-C].
    #[arg(short = 'd', long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Per-call timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Write everything measured to this JSON file (histograms included).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// How often to scrape the API server's /metrics (also at the start and the end).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    scrape_interval: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Exit 1 when the pod startup p99 is over the 5 s SLO (one p99 over the run: an
    /// approximation of the SLO's p99 per cluster-day).
    #[arg(long)]
    slo: bool,
    /// Delete the nodes and their leases when the run ends.
    #[arg(long)]
    remove_on_exit: bool,
    /// Do not run: delete every hollow node (with --prefix: only those) and its lease, then exit.
    #[arg(long)]
    cleanup: bool,
    /// Worker threads [default: the CPUs this process may use, at most 4].
    #[arg(short = 't', long, value_parser = clap::value_parser!(u64).range(1..=64))]
    threads: Option<u64>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.into(), v.into())),
        _ => Err(format!("label {s:?}: use KEY=VALUE")),
    }
}

/// 127.0.0.1 when the API server is on loopback (or named `localhost`), else the local
/// address this host reaches it from (a UDP socket connected toward it: nothing is sent);
/// 127.0.0.1 when that cannot be found.
async fn default_node_ip(host: Option<&str>, port: Option<u16>) -> std::net::IpAddr {
    let loopback = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let host = host.unwrap_or("localhost").trim_matches(['[', ']']);
    let port = port.unwrap_or(443);
    if host == "localhost" {
        return loopback;
    }
    let Ok(Some(addr)) = tokio::net::lookup_host((host, port))
        .await
        .map(|mut a| a.next())
    else {
        return loopback;
    };
    if addr.ip().is_loopback() {
        return loopback;
    }
    let any: std::net::SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| s.connect(addr).and_then(|_| s.local_addr()))
        .map_or(loopback, |a| a.ip())
}

fn parse_kubelet_version(s: &str) -> Result<nodes::profile::KubeletVersion, String> {
    s.parse()
}

fn parse_taint(s: &str) -> Result<Taint, String> {
    s.parse()
}

pub fn main(a: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads_or_cpus(a.threads).min(if a.threads.is_some() { 64 } else { 4 }))
        .enable_all()
        .build()?;
    rt.block_on(run(a))
}

impl Args {
    /// The kubeconfig the flags name, with the per-call timeout.
    async fn kube_config(&self) -> anyhow::Result<kube::Config> {
        kapi::config(
            self.kubeconfig.as_deref(),
            self.context.as_deref(),
            Some(self.timeout),
            false,
        )
        .await
        .map_err(fault)
    }

    /// The nodes' configuration; the kubelet endpoint's address from the API server's when
    /// --node-ip is not given.
    async fn config(&self, kc: &kube::Config) -> Config {
        let mut cfg = Config::new(self.nodes.unwrap_or(1) as usize);
        cfg.prefix = self.prefix.clone();
        cfg.shape = Shape {
            cpu: self.cpu.clone(),
            memory: self.memory.clone(),
            pods: self.max_pods,
            labels: self.labels.iter().cloned().collect(),
            taints: self.taints.clone(),
        };
        cfg.intervals = Intervals {
            lease_renew: self.lease_interval,
            lease_duration: self.lease_duration,
            status_update: self.status_interval,
            status_report: self.status_report,
            ..Intervals::default()
        };
        cfg.pods = PodTiming {
            run_delay: self.run_delay,
            job_duration: self.job_duration,
        };
        cfg.proxy = !self.no_proxy;
        cfg.watch = if self.watch == "shared" {
            WatchMode::Shared
        } else {
            WatchMode::PerNode
        };
        cfg.events = !self.no_events;
        cfg.kubelet = self.kubelet_version;
        cfg.node_ip = Some(match self.node_ip {
            Some(ip) => ip,
            None => default_node_ip(kc.cluster_url.host(), kc.cluster_url.port_u16()).await,
        });
        cfg.call_timeout = self.timeout;
        cfg
    }

    fn transport(&self) -> Transport {
        if self.http1 {
            Transport::Http1
        } else {
            Transport::Http2 {
                streams_per_connection: self.streams_per_connection.map(|n| n as usize),
            }
        }
    }
}

/// Delete hollow nodes (those with `prefix`, or all) and their leases.
async fn cleanup(kc: kube::Config, prefix: Option<&str>) -> anyhow::Result<nodes::Cleaned> {
    let client = kube::Client::try_from(kc).map_err(|e| anyhow::anyhow!("kube client: {e}"))?;
    nodes::cleanup(&client, prefix).await.map_err(fault)
}

async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let kc = a.kube_config().await?;
    if a.cleanup {
        let prefix = (a.prefix != "hollow-node-").then_some(a.prefix.as_str());
        let c = cleanup(kc, prefix).await?;
        println!(
            "removed {} hollow node(s) and {} lease(s)",
            c.nodes, c.leases
        );
        return Ok(ExitCode::SUCCESS);
    }
    let cfg = a.config(&kc).await;
    let pool = Pool::connect(&kc, a.transport(), cfg.watches(), cfg.calls_at_once())
        .await
        .map_err(fault)?;
    if let Some(w) = pool.warning() {
        eprintln!("scaletest: {w}");
    }
    let mut metrics = Metrics::bind(a.metrics)?;
    let server =
        kube::Client::try_from(kc.clone()).map_err(|e| anyhow::anyhow!("kube client: {e}"))?;
    let scraper = kapi::server_metrics::Scraper::start(server, a.scrape_interval).await;
    let stop = super::stop_on_ctrl_c();
    eprintln!("scaletest: registering {} hollow nodes", cfg.nodes);
    let started = nodes::start(cfg.clone(), pool).await.map_err(fault)?;
    if let Some(e) = started.endpoint() {
        eprintln!(
            "scaletest: kubelet endpoint (every node's) at https://{}/",
            std::net::SocketAddr::new(e.ip, e.port)
        );
    }
    eprintln!(
        "scaletest: {} hollow nodes registered; {} (Ctrl-C to stop)",
        cfg.nodes,
        a.duration
            .map_or("until Ctrl-C".to_string(), |d| format!("for {d:?}"))
    );
    let started = Arc::new(started);
    metrics.serve({
        let live = metrics.live(&scraper);
        let r = started.clone();
        Arc::new(move || kapi::server_metrics::with_eof(&r.metrics(), &live.text()))
    });
    super::until_stopped(a.duration, &stop).await;
    let running = metrics.release(started).await?;
    let names_left = running.names().len();
    let mut run = running.stop(*stop.borrow()).await;
    run.server = Some(super::api::server_side(scraper).await);
    if let Some(p) = &a.json {
        report::write_json_atomic(&run, p)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
    }
    use std::io::Write;
    std::io::stdout().write_all(nodes::report::render(&run).as_bytes())?;
    if a.remove_on_exit {
        let c = cleanup(a.kube_config().await?, Some(&a.prefix)).await?;
        eprintln!(
            "scaletest: removed {} hollow node(s) and {} lease(s)",
            c.nodes, c.leases
        );
    } else {
        eprintln!(
            "scaletest: left {names_left} hollow nodes registered (NotReady once their leases expire); \
             remove them with: scaletest nodes --cleanup"
        );
    }
    if a.slo && run.slo.as_ref().is_some_and(|s| !s.pass) {
        eprintln!("scaletest: pod startup SLO failed");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
