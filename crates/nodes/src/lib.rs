//! Hollow nodes: thousands of simulated kubelets and kube-proxies in one process, putting a
//! real node's API traffic on a control plane without running a container (seed 001's
//! Kubemark, at a fraction of its cost), and measuring pod startup latency.
//!
//! - [`client`]: a bounded pool of kube-rs clients over HTTP/2 connections; watches are
//!   streams, never a connection each, and short calls have connections of their own, below
//!   the stream limit the server advertises.
//! - [`objects`]: the Node, Lease, status patches and events a kubelet writes, and what a
//!   pod makes its kubelet fetch (token, Secrets, ConfigMaps).
//! - [`profile`]: the kubelet release played (`--kubelet-version`, 1.28–1.33): what differs.
//! - [`hollow`]: registration, the one heartbeat scheduler (leases every 10 s, node status
//!   every 10 s, patched every 5 min when unchanged), the pod lifecycle (admission, Pending →
//!   Running and Ready, Jobs → Succeeded, deletion → grace-0 delete) and the watches.
//! - [`endpoint`]: the one HTTPS kubelet endpoint of every node of the process (`--node-ip`):
//!   `/healthz`, `/pods`, `containerLogs`, and a clear 501 for exec, attach, port-forward.
//! - [`reflect`]: client-go's reflector (list, watch with bookmarks, 5–10 min timeouts).
//! - [`startup`]: pod startup latency phases and network programming latency.
//! - [`report`]: the run record (JSON), the tables, the SLO check and `/metrics`.
//! - [`traffic`]: everything sent, by verb and resource; 429s retried and counted.

// Control plane, not data plane: per-node state and counters behind short locks.
#![allow(clippy::disallowed_types)]

pub mod client;
pub mod endpoint;
pub mod hollow;
pub mod objects;
pub mod profile;
pub mod reflect;
pub mod report;
pub mod startup;
pub mod traffic;

use client::Pool;
use hollow::Hollow;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, ListParams};
use kube::Api;
use objects::{Shape, LABEL_HOLLOW, LEASE_NS};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch as signal;
use traffic::{CallError, Traffic};

/// Why hollow nodes could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's to fix: a name clash, a bad kubeconfig.
    #[error("{0}")]
    Usage(String),
    /// The API server refused or could not be reached.
    #[error("{0}")]
    Api(String),
}

impl Error {
    fn from_call(what: &str, e: CallError) -> Error {
        match e.code() {
            Some(401) => Error::Api(format!(
                "{what}: unauthorized (401): check the kubeconfig's credentials"
            )),
            Some(403) => Error::Api(format!(
                "{what}: forbidden (403), a missing RBAC permission: {e}"
            )),
            Some(_) => Error::Api(format!("{what}: {e}")),
            None => Error::Api(format!("{what}: cannot reach the API server: {e}")),
        }
    }
}

/// The kubelet's and kube-proxy's periods (their configuration defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Intervals {
    /// Lease renewal: `nodeLeaseDurationSeconds` × 0.25 = 10 s.
    pub lease_renew: Duration,
    /// `nodeLeaseDurationSeconds`: 40 s.
    pub lease_duration: Duration,
    /// `nodeStatusUpdateFrequency`: 10 s.
    pub status_update: Duration,
    /// `nodeStatusReportFrequency`: 5 min.
    pub status_report: Duration,
    /// Jitter factor of every period (the kubelet's `wait.JitterUntil`: 0.04).
    pub jitter: f64,
}

impl Default for Intervals {
    fn default() -> Intervals {
        Intervals {
            lease_renew: Duration::from_secs(10),
            lease_duration: Duration::from_secs(40),
            status_update: Duration::from_secs(10),
            status_report: Duration::from_secs(300),
            jitter: 0.04,
        }
    }
}

/// How long pods take on a hollow node.
#[derive(Debug, Clone, PartialEq)]
pub struct PodTiming {
    /// From admission to Running and Ready.
    pub run_delay: Duration,
    /// A Job's pod: from Running to Succeeded.
    pub job_duration: Duration,
}

impl Default for PodTiming {
    fn default() -> PodTiming {
        PodTiming {
            run_delay: Duration::from_secs(1),
            job_duration: Duration::from_secs(5),
        }
    }
}

/// Who watches what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// Each node watches as a kubelet and a kube-proxy do (faithful).
    PerNode,
    /// One watch of each kind for all nodes, filtered here (cheap; not a kubelet's traffic).
    Shared,
}

impl WatchMode {
    /// As reported.
    pub fn name(self) -> &'static str {
        match self {
            WatchMode::PerNode => "per-node",
            WatchMode::Shared => "shared",
        }
    }
}

/// A run of hollow nodes.
#[derive(Debug, Clone)]
pub struct Config {
    /// How many.
    pub nodes: usize,
    /// Node names: PREFIX0 … PREFIX(N-1).
    pub prefix: String,
    /// Capacity, labels, taints.
    pub shape: Shape,
    /// Heartbeat periods.
    pub intervals: Intervals,
    /// Pod delays.
    pub pods: PodTiming,
    /// Also a kube-proxy per node.
    pub proxy: bool,
    /// Watches per node or shared.
    pub watch: WatchMode,
    /// Watch timeouts drawn from [min, max) (client-go: 5–10 min).
    pub watch_timeout: (Duration, Duration),
    /// Post the events a kubelet posts.
    pub events: bool,
    /// Calls in flight at most.
    pub inflight: usize,
    /// First wait after a 429.
    pub retry_wait: Duration,
    /// Per-call timeout.
    pub call_timeout: Duration,
    /// The kubelet release played.
    pub kubelet: profile::KubeletVersion,
    /// Where the one kubelet endpoint of every node listens (`--node-ip`), advertised as each
    /// Node's addresses and kubelet port; `None`: no endpoint, 100.64.0.0/10 addresses and
    /// port 10250 where nothing answers.
    pub node_ip: Option<std::net::IpAddr>,
}

impl Config {
    /// `n` nodes named `hollow-node-0…` with the kubelet's defaults.
    pub fn new(n: usize) -> Config {
        Config {
            nodes: n,
            prefix: "hollow-node-".into(),
            shape: Shape::default(),
            intervals: Intervals::default(),
            pods: PodTiming::default(),
            proxy: true,
            watch: WatchMode::PerNode,
            watch_timeout: (Duration::from_secs(300), Duration::from_secs(600)),
            events: true,
            inflight: 256,
            retry_wait: Duration::from_secs(1),
            call_timeout: Duration::from_secs(30),
            kubelet: profile::KubeletVersion::default(),
            node_ip: Some(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        }
    }

    /// Node `i`'s name.
    pub fn node_name(&self, i: usize) -> String {
        format!("{}{i}", self.prefix)
    }

    /// Calls at once (for sizing the pool's call connections): the traffic lanes' total.
    pub fn calls_at_once(&self) -> usize {
        traffic::calls_at_once(self.inflight)
    }

    /// Long-lived watches this configuration opens (for sizing the connection pool).
    pub fn watches(&self) -> usize {
        1 + match self.watch {
            WatchMode::PerNode => self.nodes * if self.proxy { 6 } else { 3 },
            WatchMode::Shared => {
                if self.proxy {
                    3
                } else {
                    1
                }
            }
        }
    }
}

/// Hollow nodes at work.
pub struct Running {
    hollow: Arc<Hollow>,
    stop: signal::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
    started: Instant,
    started_unix: f64,
    transport: String,
    connections: usize,
    endpoint: Option<objects::Endpoint>,
    endpoint_phase: tokio::sync::watch::Sender<st_http::server::Phase>,
}

/// Register the nodes and start their kubelets and proxies. Fails (with nothing left behind)
/// when the API server cannot be reached or refuses, or a node name is taken by a node that
/// is not a hollow one.
pub async fn start(cfg: Config, pool: Pool) -> Result<Running, Error> {
    if cfg.nodes == 0 {
        return Err(Error::Usage("--nodes must be at least 1".into()));
    }
    let traffic = Arc::new(Traffic::new(cfg.inflight, cfg.retry_wait, cfg.call_timeout));
    let (stop, stop_rx) = signal::channel(false);
    let started = Instant::now();
    let started_unix = objects::unix_now();
    let connections = pool.len();
    let transport = pool.describe().to_string();
    let listener = cfg.node_ip.map(endpoint::bind).transpose()?;
    let endpoint = match &listener {
        Some(l) => Some(objects::Endpoint {
            ip: cfg.node_ip.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
            port: l
                .local_addr()
                .map_err(|e| Error::Usage(format!("kubelet endpoint: {e}")))?
                .port(),
        }),
        None => None,
    };
    let hollow = Arc::new(Hollow::new(cfg, pool, traffic, stop_rx, endpoint.clone()));
    let (endpoint_phase, phase) = tokio::sync::watch::channel(st_http::server::Phase::Serving);
    let mut tasks = tokio::task::JoinSet::new();
    if let (Some(l), Some(e)) = (listener, &endpoint) {
        let (h, ip) = (hollow.clone(), e.ip);
        tasks.spawn(async move {
            let _ = endpoint::serve(l, ip, h, phase).await;
        });
    }
    if let Err(e) = hollow.register().await {
        let _ = endpoint_phase.send(st_http::server::Phase::Stopping);
        tasks.abort_all();
        return Err(e);
    }
    tasks.spawn(hollow.clone().heartbeats());
    hollow.start_watches(&mut tasks);
    Ok(Running {
        hollow,
        stop,
        tasks,
        started,
        started_unix,
        transport,
        connections,
        endpoint,
        endpoint_phase,
    })
}

impl Running {
    /// The kubelet endpoint every node advertises, when there is one.
    pub fn endpoint(&self) -> Option<&objects::Endpoint> {
        self.endpoint.as_ref()
    }

    /// The nodes' names.
    pub fn names(&self) -> Vec<String> {
        self.hollow.names()
    }

    /// Everything measured so far.
    pub fn report(&self) -> report::NodesRun {
        let h = &self.hollow;
        let calls = h.traffic.calls.snapshot().calls.into_values().collect();
        self.report_of(calls, h.startup.stats())
    }

    /// A report with these calls and pod-startup figures (copies taken by the caller).
    fn report_of(
        &self,
        calls: Vec<kapi::stats::CallStats>,
        startup: startup::StartupStats,
    ) -> report::NodesRun {
        let h = &self.hollow;
        let p = &h.pods;
        let mut run = report::NodesRun::new(self.started_unix);
        run.elapsed_s = self.started.elapsed().as_secs_f64();
        run.info = report::NodesInfo {
            nodes: h.cfg.nodes,
            prefix: h.cfg.prefix.clone(),
            watch: h.cfg.watch.name().into(),
            proxy: h.cfg.proxy,
            transport: self.transport.clone(),
            connections: self.connections,
            lease_renew_s: h.cfg.intervals.lease_renew.as_secs_f64(),
            status_update_s: h.cfg.intervals.status_update.as_secs_f64(),
            status_report_s: h.cfg.intervals.status_report.as_secs_f64(),
            pod_capacity: h.cfg.shape.pods,
        };
        run.calls = calls;
        run.watches = h.traffic.watch_counts();
        run.retried_429 = h.traffic.retried_429.load(Ordering::Relaxed);
        run.stream_waits = report::StreamWaits {
            waited: h.pool.waits.waited.load(Ordering::Relaxed),
            none: h.pool.waits.none.load(Ordering::Relaxed),
        };
        run.pods = report::Pods {
            admitted: p.admitted.load(Ordering::Relaxed),
            running: p.running.load(Ordering::Relaxed),
            succeeded: p.succeeded.load(Ordering::Relaxed),
            rejected: p.rejected.load(Ordering::Relaxed),
            finalized: p.finalized.load(Ordering::Relaxed),
            active: h.pods_active(),
        };
        run.leases_held = h.leases_held();
        run.startup = startup;
        run.check_slo();
        run
    }

    /// Prometheus text for `/metrics`.
    pub fn metrics(&self) -> String {
        report::metrics(&self.report())
    }

    /// Stop every loop and watch (the nodes stay registered; their leases expire as a
    /// stopped kubelet's do); returns the final report.
    pub async fn stop(mut self, interrupted: bool) -> report::NodesRun {
        let _ = self.stop.send(true);
        let _ = self.endpoint_phase.send(st_http::server::Phase::Stopping);
        let deadline = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                j = self.tasks.join_next() => if j.is_none() { break },
                _ = &mut deadline => { self.tasks.abort_all(); break }
            }
        }
        // Every second's records only here (`/metrics` takes a report at each scrape), the
        // calls and pod startup from the same copy as their seconds: a call that outlived
        // the deadline above may still be finishing.
        let (recorded, seconds, calls_cut) = self.hollow.traffic.calls.with_seconds();
        let (startup, startup_seconds, startup_cut) = self.hollow.startup.with_seconds();
        let mut r = self.report_of(recorded.calls.into_values().collect(), startup);
        r.interrupted = interrupted;
        (r.seconds, r.startup_seconds) = (seconds, startup_seconds);
        r.seconds_cut = kapi::series::first_cut([calls_cut, startup_cut]);
        r
    }
}

/// What `cleanup` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Nodes deleted.
    pub nodes: usize,
    /// Leases deleted.
    pub leases: usize,
}

/// Delete every hollow node (label `scaletest.dev/hollow`, and the prefix when given) and its
/// lease (only a lease held by that node); nothing else.
pub async fn cleanup(client: &kube::Client, prefix: Option<&str>) -> Result<Cleaned, Error> {
    cleanup_where(client, |name| prefix.is_none_or(|p| name.starts_with(p))).await
}

/// [`cleanup`] of the hollow nodes whose names `mine` accepts.
pub async fn cleanup_where(
    client: &kube::Client,
    mine: impl Fn(&str) -> bool,
) -> Result<Cleaned, Error> {
    let api_err = |what: &str| {
        let what = what.to_string();
        move |e: kube::Error| Error::from_call(&what, CallError(e))
    };
    let nodes = Api::<Node>::all(client.clone());
    let leases = Api::<Lease>::namespaced(client.clone(), LEASE_NS);
    let listed = nodes
        .list(&ListParams::default().labels(LABEL_HOLLOW))
        .await
        .map_err(api_err("cannot list nodes"))?;
    let mut out = Cleaned::default();
    for n in listed.items {
        let Some(name) = n.metadata.name else {
            continue;
        };
        if !mine(&name) {
            continue;
        }
        match nodes.delete(&name, &DeleteParams::default()).await {
            Ok(_) => out.nodes += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api_err("cannot delete a node")(e)),
        }
        match leases.get(&name).await {
            Ok(l)
                if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                    == Some(name.as_str()) =>
            {
                match leases.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => out.leases += 1,
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(api_err("cannot delete a lease")(e)),
                }
            }
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api_err("cannot read a lease")(e)),
        }
    }
    Ok(out)
}
