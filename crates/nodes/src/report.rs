//! The record of a hollow-node run (`--json`, every histogram kept), its tables in `load`'s
//! and `api`'s layout (report::table) with the API server's own view after the client's
//! (kapi::server_metrics), the pod-startup SLO check, and Prometheus text.

use crate::startup::{StartupStats, POD_STARTUP, POD_STARTUP_SLO_S};
use crate::traffic::WatchCount;
use hdrhistogram::Histogram;
use kapi::output::{failures, header};
use kapi::series::{self, Second};
use kapi::server_metrics::ServerSide;
use kapi::stats::{merge_calls, CallStats};
use kapi::view::View;
use report::format::{count, ms, trim};
use report::runfile::Unreadable;
use report::table::{boxed, latency_row};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Format version of [`NodesRun`].
pub const NODES_RUN_VERSION: u32 = 1;

/// How the run was set up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodesInfo {
    /// Hollow nodes.
    pub nodes: usize,
    /// Their name prefix.
    pub prefix: String,
    /// `per-node` or `shared`.
    pub watch: String,
    /// A kube-proxy per node too.
    pub proxy: bool,
    /// HTTP/2 or HTTP/1.1, and streams per connection.
    pub transport: String,
    /// Connections (HTTP/2) or clients (HTTP/1.1).
    pub connections: usize,
    /// Lease renewal period, s.
    pub lease_renew_s: f64,
    /// Node status computation period, s.
    pub status_update_s: f64,
    /// Node status report period, s.
    pub status_report_s: f64,
    /// Pods per node.
    pub pod_capacity: u32,
}

/// Pods the hollow kubelets handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pods {
    /// Admitted.
    pub admitted: u64,
    /// Declared running.
    pub running: u64,
    /// Jobs' pods that succeeded.
    pub succeeded: u64,
    /// Rejected by admission (OutOfpods).
    pub rejected: u64,
    /// Deleted with grace 0 after their deletion timestamp.
    pub finalized: u64,
    /// On the nodes at the end (Pending or Running).
    pub active: u64,
}

/// Calls that waited for an HTTP/2 stream: the call connections saturated. A call that got
/// none was never sent, so it is in no call count (not a "no answer").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamWaits {
    /// Calls that waited for a stream.
    pub waited: u64,
    /// Of those, calls that got none within the per-call timeout.
    pub none: u64,
}

/// The pod-startup SLO verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartupSlo {
    /// p99 of create → seen running, s.
    pub p99_s: f64,
    /// The limit, s.
    pub limit_s: f64,
    /// Pods measured.
    pub pods: u64,
    /// p99 ≤ limit.
    pub pass: bool,
}

/// Everything a run measured; written with `"kind": "nodes"` (`report::Kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "nodes")]
pub struct NodesRun {
    /// [`NODES_RUN_VERSION`].
    pub version: u32,
    /// `scaletest x.y.z`.
    pub tool: String,
    /// Start, s since the Unix epoch.
    pub started_unix: f64,
    /// Wall time, s.
    pub elapsed_s: f64,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// Setup.
    pub info: NodesInfo,
    /// Calls by verb and resource (kapi's records).
    pub calls: Vec<CallStats>,
    /// LISTs and WATCHes by resource.
    pub watches: BTreeMap<String, WatchCount>,
    /// 429 answers retried.
    pub retried_429: u64,
    /// Calls that found every HTTP/2 stream of their connections taken (absent before).
    #[serde(default)]
    pub stream_waits: StreamWaits,
    /// Nodes holding a lease.
    pub leases_held: usize,
    /// Pods.
    pub pods: Pods,
    /// Startup and network programming latency.
    pub startup: StartupStats,
    /// The SLO check (none before a pod was measured).
    pub slo: Option<StartupSlo>,
    /// The API server's version and own figures (absent in files of earlier builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSide>,
    /// The calls of every second from the start (absent in files of earlier builds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seconds: Vec<Second>,
    /// `pod_startup` of the pods seen running in each second.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_seconds: Vec<Second>,
    /// Where the per-second records stop although the run went on (they keep a run's first
    /// [`series::MAX_SECONDS`]; merged runs, from the first run that stopped, counted from
    /// the earliest start): reports show the seconds after it as not kept, not as idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_cut: Option<u64>,
}

impl NodesRun {
    /// Parse a run file written by `nodes --json`; `name` is for messages (the version
    /// checked first, a number over the run files' bound refused: report::runfile::parse_kind).
    pub fn from_json(name: &str, text: &str) -> Result<NodesRun, Unreadable> {
        ::report::runfile::parse_kind(name, text, ::report::Kind::Nodes, NODES_RUN_VERSION)
    }

    /// An empty record.
    pub fn new(started_unix: f64) -> NodesRun {
        NodesRun {
            version: NODES_RUN_VERSION,
            tool: concat!("scaletest ", env!("CARGO_PKG_VERSION")).into(),
            started_unix,
            elapsed_s: 0.0,
            interrupted: false,
            info: NodesInfo::default(),
            calls: Vec::new(),
            watches: BTreeMap::new(),
            retried_429: 0,
            stream_waits: StreamWaits::default(),
            leases_held: 0,
            pods: Pods::default(),
            startup: StartupStats::default(),
            slo: None,
            server: None,
            seconds: Vec::new(),
            startup_seconds: Vec::new(),
            seconds_cut: None,
        }
    }

    /// Fill `slo` from the pod-startup histogram.
    pub fn check_slo(&mut self) {
        let h = &self.startup.pod_startup;
        self.slo = (!h.is_empty()).then(|| {
            let p99 = h.value_at_quantile(0.99) as f64 / 1e6;
            StartupSlo {
                p99_s: p99,
                limit_s: POD_STARTUP_SLO_S,
                pods: h.len(),
                pass: p99 <= POD_STARTUP_SLO_S,
            }
        });
    }

    /// Merge runs of hollow nodes that ran at the same time (shards with their own
    /// prefixes): nodes, calls, pods, leases and latencies add up, seconds by their Unix
    /// time from the earliest start; the SLO is checked again on the sums. The setup and the
    /// server's view are the first run's (the shards load one server).
    pub fn merge(runs: &[NodesRun]) -> Option<NodesRun> {
        let mut out = runs.first()?.clone();
        out.elapsed_s = series::merged_elapsed(runs.iter().map(|r| (r.started_unix, r.elapsed_s)));
        let (start, seconds) =
            series::merge_runs(runs.iter().map(|r| (r.started_unix, &r.seconds[..])));
        let (_, startup) = series::merge_runs(
            runs.iter()
                .map(|r| (r.started_unix, &r.startup_seconds[..])),
        );
        (out.started_unix, out.seconds, out.startup_seconds) = (start, seconds, startup);
        out.seconds_cut = series::merged_cut(runs.iter().map(|r| (r.started_unix, r.seconds_cut)));
        for r in &runs[1..] {
            out.interrupted |= r.interrupted;
            out.info.nodes += r.info.nodes;
            out.info.connections += r.info.connections;
            if out.info.prefix != r.info.prefix {
                // Shown as `{prefix}…`: "a-…, b-…".
                out.info.prefix = format!("{}…, {}", out.info.prefix, r.info.prefix);
            }
            merge_calls(&mut out.calls, &r.calls);
            for (k, w) in &r.watches {
                let into = out.watches.entry(k.clone()).or_default();
                into.lists += w.lists;
                into.watches += w.watches;
                into.errors += w.errors;
            }
            out.retried_429 += r.retried_429;
            out.stream_waits.waited += r.stream_waits.waited;
            out.stream_waits.none += r.stream_waits.none;
            out.leases_held += r.leases_held;
            let (p, q) = (&mut out.pods, &r.pods);
            p.admitted += q.admitted;
            p.running += q.running;
            p.succeeded += q.succeeded;
            p.rejected += q.rejected;
            p.finalized += q.finalized;
            p.active += q.active;
            out.startup.merge(&r.startup);
        }
        if runs.len() > 1 {
            let t = &mut out.info.transport;
            *t = format!("{t}, in each of {} runs", runs.len());
        }
        out.check_slo();
        Some(out)
    }

    /// What `report --html` and `report --compare` show of it.
    pub fn view(&self) -> View<'_> {
        let text = render(self);
        let heading = format!(
            "{} hollow nodes ({}…)",
            count(self.info.nodes as u64),
            self.info.prefix
        );
        let p = &self.pods;
        let mut facts = kapi::view::run_facts(
            self.started_unix,
            self.elapsed_s,
            self.interrupted,
            &self.calls,
            self.seconds_cut,
        );
        facts.extend([
            (
                "Nodes",
                format!(
                    "{}, {} holding a lease",
                    count(self.info.nodes as u64),
                    count(self.leases_held as u64)
                ),
            ),
            (
                "Pods",
                format!(
                    "{} admitted, {} running, {} rejected",
                    count(p.admitted),
                    count(p.running),
                    count(p.rejected)
                ),
            ),
            ("Server", kapi::output::server_fact(self.server.as_ref())),
        ]);
        if let Some(slo) = &self.slo {
            let verdict = if slo.pass { "pass" } else { "FAIL" };
            let text = format!("pod startup p99 {}: {verdict}", ms(slo.p99_s * 1000.0));
            facts.push(("SLO", text));
        }
        let st = &self.startup;
        let latencies = [
            (POD_STARTUP, &st.pod_startup),
            ("network programming", &st.network_programming),
        ]
        .into_iter()
        .filter(|(_, h)| !h.is_empty())
        .collect();
        View {
            heading,
            facts,
            calls: &self.calls,
            seconds: &self.seconds,
            seconds_cut: self.seconds_cut,
            server: self.server.as_ref(),
            started_unix: self.started_unix,
            elapsed_s: self.elapsed_s,
            latencies,
            latency_seconds: if self
                .startup_seconds
                .iter()
                .any(|s| s.0.contains_key(POD_STARTUP))
            {
                vec![(POD_STARTUP, &self.startup_seconds[..])]
            } else {
                Vec::new()
            },
            counts: vec![
                ("Nodes", self.info.nodes as u64),
                ("Nodes holding a lease", self.leases_held as u64),
                ("Pods running", p.running),
                ("Pods rejected", p.rejected),
            ],
            text,
        }
    }

    /// Calls of one (verb name, resource), answered or not.
    pub fn calls_of(&self, verb: &str, resource: &str) -> u64 {
        self.calls
            .iter()
            .filter(|c| c.verb.name() == verb && c.resource == resource)
            .map(CallStats::total)
            .sum()
    }
}

fn row(name: &str, h: &Histogram<u64>) -> Vec<String> {
    let mut r = latency_row(name, h);
    r.push(count(h.len()));
    r
}

/// The human report.
pub fn render(run: &NodesRun) -> String {
    let i = &run.info;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} hollow nodes ({}…), watches {}, kube-proxy {}, over {} connections: {}",
        count(i.nodes as u64),
        i.prefix,
        i.watch,
        if i.proxy { "on" } else { "off" },
        i.connections,
        i.transport
    );
    let _ = writeln!(
        s,
        "lease every {}s, node status every {}s (reported every {}s), {} pods per node\n",
        trim(i.lease_renew_s, 2),
        trim(i.status_update_s, 2),
        trim(i.status_report_s, 2),
        i.pod_capacity
    );
    if !run.calls.is_empty() {
        let mut rows = vec![header("Call", &["Calls", "Errors"])];
        for c in &run.calls {
            let mut r = latency_row(&format!("{} {}", c.verb.name(), c.resource), &c.latency);
            r.push(count(c.total()));
            r.push(count(c.errors()));
            rows.push(r);
        }
        s += &boxed(&rows);
        let per_min = |n: u64| n as f64 * 60.0 / run.elapsed_s.max(1e-9) / i.nodes.max(1) as f64;
        let leases: u64 = run
            .calls
            .iter()
            .filter(|c| c.resource == "leases")
            .map(|c| c.answered)
            .sum();
        let _ = writeln!(
            s,
            "Latency in ms, per answered call. Lease writes per node per minute: {}.",
            trim(per_min(leases), 2)
        );
    }
    if !run.watches.is_empty() {
        let mut parts = Vec::new();
        for (r, w) in &run.watches {
            parts.push(format!("{r} {}/{}", count(w.lists), count(w.watches)));
        }
        let _ = writeln!(s, "LIST/WATCH requests: {}", parts.join(", "));
    }
    let p = &run.pods;
    let _ = writeln!(
        s,
        "Pods: {} admitted, {} running, {} succeeded (Jobs), {} rejected (OutOfpods), {} finalized; \
         {} on the nodes now. {} of {} nodes hold a lease.",
        count(p.admitted),
        count(p.running),
        count(p.succeeded),
        count(p.rejected),
        count(p.finalized),
        count(p.active),
        count(run.leases_held as u64),
        count(i.nodes as u64)
    );
    if run.retried_429 > 0 {
        let _ = writeln!(
            s,
            "{} calls throttled (429) and retried",
            count(run.retried_429)
        );
    }
    let w = &run.stream_waits;
    if w.waited > 0 {
        let _ = writeln!(
            s,
            "{} calls waited for an HTTP/2 stream (every stream of their connections taken); \
             {} got none within the per-call timeout and were not sent",
            count(w.waited),
            count(w.none)
        );
    }
    s += &failures(&run.calls);
    if let Some(sv) = &run.server {
        s.push('\n');
        s += &kapi::server_metrics::render(sv);
    }
    let st = &run.startup;
    if !st.pod_startup.is_empty() || !st.network_programming.is_empty() {
        s.push('\n');
        let mut rows = vec![header("Latency", &["Count"])];
        for (name, h) in [
            ("create → scheduled", &st.create_to_schedule),
            ("scheduled → running", &st.schedule_to_run),
            ("running → seen", &st.run_to_watch),
            (POD_STARTUP, &st.pod_startup),
            ("network programming", &st.network_programming),
        ] {
            if !h.is_empty() {
                rows.push(row(name, h));
            }
        }
        s += &boxed(&rows);
        s += "Latency in ms. Create and scheduled times are the API server's (whole seconds unless \
              the pod has scaletest's sent-at annotation); running and seen are this process's clock.\n";
    }
    if let Some(slo) = &run.slo {
        let _ = writeln!(
            s,
            "Pod startup SLO, approximated (p99 ≤ {}s over the run, not per cluster-day): p99 {} over {} pods: {}",
            trim(slo.limit_s, 0),
            ms(slo.p99_s * 1000.0),
            count(slo.pods),
            if slo.pass { "pass" } else { "FAIL" }
        );
    }
    if run.interrupted {
        s += "(interrupted)\n";
    }
    s
}

/// Prometheus text exposition of a run so far.
pub fn metrics(run: &NodesRun) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# TYPE scaletest_nodes_hollow gauge\nscaletest_nodes_hollow {}",
        run.info.nodes
    );
    let _ = writeln!(
        s,
        "# TYPE scaletest_nodes_leases_held gauge\nscaletest_nodes_leases_held {}",
        run.leases_held
    );
    let _ = writeln!(s, "# TYPE scaletest_nodes_pods gauge");
    let p = &run.pods;
    for (state, n) in [
        ("admitted", p.admitted),
        ("running", p.running),
        ("succeeded", p.succeeded),
        ("rejected", p.rejected),
        ("finalized", p.finalized),
        ("active", p.active),
    ] {
        let _ = writeln!(s, "scaletest_nodes_pods{{state=\"{state}\"}} {n}");
    }
    let _ = writeln!(s, "# TYPE scaletest_nodes_api_calls counter");
    for c in &run.calls {
        let _ = writeln!(
            s,
            "scaletest_nodes_api_calls_total{{verb=\"{}\",resource=\"{}\"}} {}",
            c.verb.name(),
            c.resource,
            c.total()
        );
    }
    let _ = writeln!(
        s,
        "# TYPE scaletest_nodes_retried_429 counter\nscaletest_nodes_retried_429_total {}",
        run.retried_429
    );
    let _ = writeln!(
        s,
        "# TYPE scaletest_nodes_stream_waits counter\nscaletest_nodes_stream_waits_total {}",
        run.stream_waits.waited
    );
    let _ = writeln!(
        s,
        "# TYPE scaletest_nodes_stream_waits_unsent counter\nscaletest_nodes_stream_waits_unsent_total {}",
        run.stream_waits.none
    );
    let st = &run.startup;
    let summaries: [(&str, &str, &Histogram<u64>); 5] = [
        (
            "scaletest_pod_startup_latency_seconds",
            "phase=\"create_to_schedule\",",
            &st.create_to_schedule,
        ),
        (
            "scaletest_pod_startup_latency_seconds",
            "phase=\"schedule_to_run\",",
            &st.schedule_to_run,
        ),
        (
            "scaletest_pod_startup_latency_seconds",
            "phase=\"run_to_watch\",",
            &st.run_to_watch,
        ),
        (
            "scaletest_pod_startup_latency_seconds",
            "phase=\"pod_startup\",",
            &st.pod_startup,
        ),
        (
            "scaletest_network_programming_latency_seconds",
            "",
            &st.network_programming,
        ),
    ];
    let mut typed = std::collections::BTreeSet::new();
    for (name, labels, h) in summaries {
        if typed.insert(name) {
            let _ = writeln!(s, "# TYPE {name} summary");
        }
        for q in [0.5, 0.9, 0.99] {
            let v = h.value_at_quantile(q) as f64 / 1e6;
            let _ = writeln!(s, "{name}{{{labels}quantile=\"{q}\"}} {v}");
        }
        let count_labels = labels.trim_end_matches(',');
        let _ = writeln!(s, "{name}_count{{{count_labels}}} {}", h.len());
    }
    s += "# EOF\n";
    s
}
