//! The report of `api churn` / `api watch`: the same box tables and JSON habits as `load`
//! (autocannon's latency columns; every histogram kept in the JSON), the server's own view
//! ([`crate::server_metrics`]), and the check against the Kubernetes API-call latency SLOs: on
//! the server's latency when its metrics were read, else approximated from the client's (one
//! p99 over the whole run, custom resources included, where the SLI is a p99 per 5-minute
//! window without them).

use crate::series::{self, Second};
use crate::server_metrics::{self, ServerSide};
use crate::stats::{CallStats, ErrorMessage, Recorder, Verb};
use crate::view::View;
use crate::watch::{WatchStats, NOTIFY_CREATE, NOTIFY_UPDATE};
use crate::watchers::LoopStats;
use crate::workload::run::{JobReport, PodStartup};
use hdrhistogram::Histogram;
use hist::{histogram_codec, new_histogram};
use report::format::{count, ms, trim};
use report::runfile::Unreadable;
use report::table::{boxed, latency_row};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Format version of [`ApiRun`].
pub const API_RUN_VERSION: u32 = 1;

/// How a run was set up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiInfo {
    /// `churn` or `watch`.
    pub command: String,
    /// The resource.
    pub resource: String,
    /// `open` or `closed` (churn).
    pub mode: Option<String>,
    /// Open loop: the rate shape, lifecycles/s.
    pub rate: Option<String>,
    /// Open loop: `uniform` or `poisson`.
    pub arrival: Option<String>,
    /// Open loop: the population asked for.
    pub population: Option<f64>,
    /// Open loop: a fixed lifetime, seconds.
    pub lifetime_s: Option<f64>,
    /// Closed loop: workers.
    pub workers: Option<usize>,
    /// Patches per lifecycle.
    pub updates: Option<u32>,
    /// Namespaces used.
    pub namespaces: Vec<String>,
    /// The run's label value.
    pub run_id: Option<String>,
    /// Requested duration, seconds.
    pub duration_s: Option<f64>,
    /// Client-side QPS limit.
    pub qps: Option<f64>,
}

/// Lifecycle counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycles {
    /// Whose create was attempted.
    pub started: u64,
    /// Whose every call succeeded.
    pub completed: u64,
    /// With a failed call.
    pub failed: u64,
    /// Cut short by Ctrl-C (their objects deleted early).
    #[serde(default)]
    pub cut_short: u64,
}

/// One (verb, resource) against its SLO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloCheck {
    /// Verb.
    pub verb: Verb,
    /// Resource.
    pub resource: String,
    /// Measured p99, ms.
    pub p99_ms: f64,
    /// Allowed p99, ms.
    pub limit_ms: f64,
    /// p99 ≤ limit.
    pub pass: bool,
}

/// Everything a run measured; written with `"kind": "api"` (see `report::Kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "api")]
pub struct ApiRun {
    /// [`API_RUN_VERSION`].
    pub version: u32,
    /// `scaletest x.y.z`.
    pub tool: String,
    /// Start, seconds since the Unix epoch.
    pub started_unix: f64,
    /// Wall time, seconds.
    pub elapsed_s: f64,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
    /// Setup.
    pub info: ApiInfo,
    /// Churn: lifecycle counts.
    pub lifecycles: Option<Lifecycles>,
    /// Calls by verb and resource.
    pub calls: Vec<CallStats>,
    /// Open loop: start − intended start of every operation, µs.
    #[serde(with = "histogram_codec")]
    pub lateness: Histogram<u64>,
    /// What an informer saw (watch, or churn --watch).
    pub watch: Option<WatchStats>,
    /// What the watch loops measured (`watch --watchers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchers: Option<LoopStats>,
    /// The SLO check of every (verb, resource), on the client's latency.
    pub slo: Vec<SloCheck>,
    /// The API server's version and own figures (absent in files of earlier builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSide>,
    /// The calls of every second from the start (absent in files of earlier builds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seconds: Vec<Second>,
    /// Where the per-second records stop although the run went on (they keep a run's first
    /// [`series::MAX_SECONDS`]; merged runs, from the first run that stopped, counted from
    /// the earliest start): reports show the seconds after it as not kept, not as idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_cut: Option<u64>,
    /// `api run`: each job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobReport>,
    /// `api run`: startup of the run's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodStartup>,
}

impl ApiRun {
    /// An empty run record.
    pub fn new(info: ApiInfo, started_unix: f64) -> ApiRun {
        ApiRun {
            version: API_RUN_VERSION,
            tool: concat!("scaletest ", env!("CARGO_PKG_VERSION")).into(),
            started_unix,
            elapsed_s: 0.0,
            interrupted: false,
            info,
            lifecycles: None,
            calls: Vec::new(),
            lateness: new_histogram(),
            watch: None,
            watchers: None,
            slo: Vec::new(),
            server: None,
            seconds: Vec::new(),
            seconds_cut: None,
            jobs: Vec::new(),
            pods: None,
        }
    }

    /// Fill `slo` from `calls`: p99 of answered calls against each verb's limit.
    pub fn check_slo(&mut self) {
        self.slo = self
            .calls
            .iter()
            .filter(|c| !c.latency.is_empty())
            .map(|c| {
                let p99 = c.latency.value_at_quantile(0.99) as f64 / 1000.0;
                let limit = c.verb.slo().as_secs_f64() * 1000.0;
                SloCheck {
                    verb: c.verb,
                    resource: c.resource.clone(),
                    p99_ms: p99,
                    limit_ms: limit,
                    pass: p99 <= limit,
                }
            })
            .collect();
    }

    /// The server's figures when its metrics were read: the SLO is judged on them.
    pub fn server_metrics(&self) -> Option<&ServerSide> {
        self.server.as_ref().filter(|s| s.has_metrics())
    }

    /// True when every checked call met its SLO: on the server's latency when its metrics
    /// were read, else on the client's.
    pub fn slo_pass(&self) -> bool {
        match self.server_metrics() {
            Some(s) => s.slo_pass(),
            None => self.slo.iter().all(|s| s.pass),
        }
    }

    /// Parse a run file written by `--json`; `name` is for messages. The version is checked
    /// first (as `report::RunFile::from_json` does), so that a file from another version is
    /// called that rather than malformed. A number over
    /// [`MAX_COUNT`](report::runfile::MAX_COUNT) (the bound of every run file) is refused.
    pub fn from_json(name: &str, text: &str) -> Result<ApiRun, Unreadable> {
        report::runfile::parse_kind(name, text, report::Kind::Api, API_RUN_VERSION)
    }

    /// Merge runs that happened at the same time (several churn processes): calls, lateness,
    /// lifecycles, informer counts and pod startup add up, jobs are listed one run after the
    /// other, and the seconds go by their Unix time from the earliest start; the SLO is
    /// checked again on the sums. The server's view is the first
    /// run's: every process scraped the same server.
    pub fn merge(runs: &[ApiRun]) -> Option<ApiRun> {
        let mut out = runs.first()?.clone();
        out.elapsed_s = series::merged_elapsed(runs.iter().map(|r| (r.started_unix, r.elapsed_s)));
        let (start, seconds) =
            series::merge_runs(runs.iter().map(|r| (r.started_unix, &r.seconds[..])));
        out.started_unix = start;
        out.seconds = seconds;
        out.seconds_cut = series::merged_cut(runs.iter().map(|r| (r.started_unix, r.seconds_cut)));
        for r in &runs[1..] {
            out.interrupted |= r.interrupted;
            crate::stats::merge_calls(&mut out.calls, &r.calls);
            let _ = out.lateness.add(&r.lateness);
            out.lifecycles = match (out.lifecycles, r.lifecycles) {
                (Some(a), Some(b)) => Some(Lifecycles {
                    started: a.started + b.started,
                    completed: a.completed + b.completed,
                    failed: a.failed + b.failed,
                    cut_short: a.cut_short + b.cut_short,
                }),
                (a, b) => a.or(b),
            };
            out.watch = match (out.watch.take(), &r.watch) {
                (Some(mut a), Some(b)) => {
                    a.merge(b);
                    Some(a)
                }
                (a, b) => a.or_else(|| b.clone()),
            };
            out.watchers = match (out.watchers.take(), &r.watchers) {
                (Some(mut a), Some(b)) => {
                    a.merge(b);
                    Some(a)
                }
                (a, b) => a.or_else(|| b.clone()),
            };
            out.jobs.extend(r.jobs.iter().cloned());
            if let Some(p) = &r.pods {
                let into = out.pods.get_or_insert_with(PodStartup::default);
                into.pods += p.pods;
                let _ = into.pod_startup.add(&p.pod_startup);
                let _ = into.create_to_schedule.add(&p.create_to_schedule);
                let _ = into.schedule_to_run.add(&p.schedule_to_run);
                let _ = into.run_to_watch.add(&p.run_to_watch);
            }
        }
        // Every run's start counts, with or without pods or a watch: the seconds line up with
        // the calls'.
        let line_up = |seconds: fn(&ApiRun) -> &[Second]| {
            series::merge_runs(runs.iter().map(|r| (r.started_unix, seconds(r)))).1
        };
        if let Some(p) = &mut out.pods {
            p.seconds = line_up(|r| r.pods.as_ref().map_or(&[], |p| &p.seconds));
        }
        if let Some(w) = &mut out.watch {
            w.seconds = line_up(|r| r.watch.as_ref().map_or(&[], |w| &w.seconds));
        }
        out.check_slo();
        Some(out)
    }

    /// What `report --html` and `report --compare` show of it.
    pub fn view(&self) -> View<'_> {
        let text = render(self, !self.slo.is_empty());
        let heading = text.lines().next().unwrap_or("api run").to_string();
        let mut facts = crate::view::run_facts(
            self.started_unix,
            self.elapsed_s,
            self.interrupted,
            &self.calls,
            self.seconds_cut,
        );
        let mut counts = Vec::new();
        if let Some(l) = &self.lifecycles {
            let text = format!(
                "{} completed, {} failed",
                count(l.completed),
                count(l.failed)
            );
            facts.push(("Lifecycles", text));
            counts.push(("Lifecycles completed", l.completed));
            counts.push(("Lifecycles failed", l.failed));
        }
        facts.push(("Server", server_fact(self.server.as_ref())));
        if !self.slo.is_empty() || self.server_metrics().is_some_and(|s| !s.slo.is_empty()) {
            let verdict = if self.slo_pass() { "pass" } else { "FAIL" };
            facts.push(("SLO", verdict.to_string()));
        }
        View {
            heading,
            facts,
            calls: &self.calls,
            seconds: &self.seconds,
            seconds_cut: self.seconds_cut,
            server: self.server.as_ref(),
            started_unix: self.started_unix,
            elapsed_s: self.elapsed_s,
            latencies: [
                ("start lateness", Some(&self.lateness)),
                (
                    crate::POD_STARTUP,
                    self.pods.as_ref().map(|p| &p.pod_startup),
                ),
                (NOTIFY_CREATE, self.watch.as_ref().map(|w| &w.notify_create)),
                (NOTIFY_UPDATE, self.watch.as_ref().map(|w| &w.notify_update)),
            ]
            .into_iter()
            .filter_map(|(n, h)| Some((n, h?)).filter(|(_, h)| !h.is_empty()))
            .collect(),
            latency_seconds: self
                .pods
                .iter()
                .map(|p| (crate::POD_STARTUP, &p.seconds[..]))
                .chain(self.watch.iter().flat_map(|w| {
                    // An informer's notifications, of the kinds it was told of.
                    [NOTIFY_CREATE, NOTIFY_UPDATE]
                        .into_iter()
                        .filter(|k| w.seconds.iter().any(|s| s.0.contains_key(*k)))
                        .map(|k| (k, &w.seconds[..]))
                }))
                .collect(),
            counts,
            text,
        }
    }

    /// What `rec` recorded into the run: the calls, their seconds and the start lateness (one
    /// copy: the seconds add up to the calls). Returns where the seconds stop although calls
    /// went on, for [`series::first_cut`] with the run's other series.
    pub fn take_calls(&mut self, rec: &Recorder) -> Option<u64> {
        let (recorded, seconds, cut) = rec.with_seconds();
        self.calls = recorded.calls.into_values().collect();
        self.seconds = seconds;
        if let Some(l) = recorded.lateness {
            self.lateness = l;
        }
        cut
    }

    /// All calls.
    pub fn total_calls(&self) -> u64 {
        self.calls.iter().map(CallStats::total).sum()
    }
}

/// The server's version and whether its metrics were read, for a page's header.
pub fn server_fact(sv: Option<&ServerSide>) -> String {
    match sv {
        None => "not read (a file of an earlier build)".into(),
        Some(s) => {
            let version = s.version.as_deref().unwrap_or("version unknown");
            if s.has_metrics() {
                format!("{version}, /metrics scraped {} times", s.scrapes)
            } else {
                format!("{version}, no metrics")
            }
        }
    }
}

const LAT_COLS: [&str; 7] = ["2.5%", "50%", "97.5%", "99%", "Avg", "Stdev", "Max"];

/// The header row of a latency table: `first`, the latency columns, then `extra`.
pub fn header(first: &str, extra: &[&str]) -> Vec<String> {
    let mut h = vec![first.to_string()];
    h.extend(LAT_COLS.iter().map(|c| c.to_string()));
    h.extend(extra.iter().map(|c| c.to_string()));
    h
}

fn jobs_section(jobs: &[JobReport], s: &mut String) {
    let mut rows = vec![vec![
        "Job".to_string(),
        "Does".into(),
        "Objects".into(),
        "Failed".into(),
        "Calls took".into(),
        "Waited".into(),
        "Took".into(),
        "Result".into(),
    ]];
    for j in jobs {
        let does = if j.churn_cycles > 0 {
            format!("{}, {} churn cycle(s)", j.kind, j.churn_cycles)
        } else {
            j.kind.clone()
        };
        rows.push(vec![
            j.name.clone(),
            does,
            count(j.objects),
            count(j.failed),
            format!("{} s", trim(j.calls_s, 2)),
            j.waited.clone().unwrap_or_else(|| "-".into()),
            format!("{} s", trim(j.took_s, 2)),
            if j.ok { "ok" } else { "FAILED" }.into(),
        ]);
    }
    *s += &boxed(&rows);
    s.push('\n');
}

fn pods_section(p: &PodStartup, s: &mut String) {
    if p.pods == 0 {
        *s += "No pod of the run was seen Running and Ready.\n\n";
        return;
    }
    let mut rows = vec![header("Pod startup", &["Pods"])];
    for (name, h) in [
        ("create → scheduled", &p.create_to_schedule),
        ("scheduled → running", &p.schedule_to_run),
        ("running → seen", &p.run_to_watch),
        (crate::POD_STARTUP, &p.pod_startup),
    ] {
        if !h.is_empty() {
            let mut row = latency_row(name, h);
            row.push(count(h.len()));
            rows.push(row);
        }
    }
    *s += &boxed(&rows);
    let _ = writeln!(
        s,
        "{} pods seen Running and Ready. From creationTimestamp (whole seconds, as the server \
         writes it) to when this run's informer saw them; scheduled from the PodScheduled \
         condition's time, running from the containers' startedAt (whole seconds too). Pod \
         startup SLO (p99 ≤ {} s), approximated over the run: {}.\n",
        count(p.pods),
        trim(crate::POD_STARTUP_SLO_S, 0),
        if p.pod_startup.value_at_quantile(0.99) as f64 / 1e6 <= crate::POD_STARTUP_SLO_S {
            "pass"
        } else {
            "FAIL"
        }
    );
}

fn watch_section(w: &WatchStats, s: &mut String) {
    let mut rows = vec![header("Informer", &["Count"])];
    for (name, h) in [
        ("Notify create", &w.notify_create),
        ("Notify update", &w.notify_update),
        ("Queue wait", &w.queue_wait),
    ] {
        let mut row = latency_row(name, h);
        row.push(count(h.len()));
        rows.push(row);
    }
    *s += &boxed(&rows);
    *s += "Notify: the informer's receipt time minus the writer's send time (wall clocks).\n";
    let _ = writeln!(
        s,
        "{} add/update and {} delete notifications; {} coalesced in the queue, {} duplicates, {} \
         foreign changes; {} relists, {} × 410 Gone, {} other watch errors\n",
        count(w.applied),
        count(w.deleted),
        count(w.coalesced),
        count(w.duplicates),
        count(w.foreign),
        count(w.relists),
        count(w.gone),
        count(w.errors)
    );
    if !w.messages.is_empty() {
        *s += "Watch errors:\n";
        messages(&w.messages, s);
        s.push('\n');
    }
}

fn watchers_section(w: &LoopStats, elapsed_s: f64, s: &mut String) {
    let mut rows = vec![header("Watch", &["Count"])];
    for (name, h) in [
        ("Established", &w.established),
        ("First event", &w.first_event),
        ("Delivery create", &w.delivery_create),
        ("Delivery update", &w.delivery_update),
    ] {
        let mut row = latency_row(name, h);
        row.push(count(h.len()));
        rows.push(row);
    }
    *s += &boxed(&rows);
    *s += "Established: watch request to response head; first event: to the first event or \
           bookmark; delivery: receipt minus the writer's send time (wall clocks).\n";
    let t = &w.total;
    let (lo, mid, hi) = w.events_per_watcher();
    let _ = writeln!(
        s,
        "{} watch requests ({}/s, {} failed); {} events ({} added, {} modified, {} deleted), \
         {} bookmarks, {} duplicates; per watcher: min {}, median {}, max {} events",
        count(t.requests),
        trim(t.requests as f64 / elapsed_s.max(1e-9), 1),
        count(w.failed_requests),
        count(t.events()),
        count(t.added),
        count(t.modified),
        count(t.deleted),
        count(t.bookmarks),
        count(t.duplicates),
        count(lo),
        count(mid),
        count(hi)
    );
    let errors: Vec<String> = w
        .errors
        .iter()
        .map(|(code, n)| match code {
            0 => format!("{} × no answer", count(*n)),
            c => format!("{} × {c}", count(*n)),
        })
        .collect();
    let _ = writeln!(
        s,
        "{} lists, {} relists after {} × 410 Gone; {} watches ended overdue; errors: {}",
        count(t.lists),
        count(w.relists),
        count(w.gone),
        count(w.overdue),
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join(", ")
        }
    );
    messages(&w.messages, s);
    s.push('\n');
}

/// Under an error count: the server's first message of each status, one line each.
fn messages(m: &BTreeMap<u16, ErrorMessage>, s: &mut String) {
    for (code, m) in m {
        let what = match code {
            0 => "no answer".to_string(),
            c => c.to_string(),
        };
        let _ = writeln!(s, "    first {what}: {}", m.line(200));
    }
}

/// One line per (verb, resource) with failures, `  create pods: 3 × 429, 1 × no answer`,
/// each followed by the server's first message for each status.
pub fn failures(calls: &[CallStats]) -> String {
    let mut s = String::new();
    for c in calls {
        let parts: Vec<String> = c
            .status
            .iter()
            .map(|(code, n)| format!("{} × {code}", count(*n)))
            .chain(
                (c.transport_errors > 0)
                    .then(|| format!("{} × no answer", count(c.transport_errors))),
            )
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(
                s,
                "  {} {}: {}",
                c.verb.name(),
                c.resource,
                parts.join(", ")
            );
            messages(&c.messages, &mut s);
        }
    }
    s
}

/// The human report.
pub fn render(run: &ApiRun, slo: bool) -> String {
    let i = &run.info;
    let mut s = String::new();
    match i.command.as_str() {
        "churn" => {
            let mode = i.mode.as_deref().unwrap_or("closed");
            let _ = write!(s, "Churning {} ({mode} loop", i.resource);
            if mode == "open" {
                let _ = write!(
                    s,
                    ", {} lifecycles/s, {} arrivals",
                    i.rate.as_deref().unwrap_or("?"),
                    i.arrival.as_deref().unwrap_or("poisson")
                );
                if let Some(p) = i.population {
                    let _ = write!(s, ", population {}", trim(p, 0));
                }
                if let Some(l) = i.lifetime_s {
                    let _ = write!(s, ", lifetime {}s", trim(l, 2));
                }
            } else {
                let _ = write!(s, ", {} workers", i.workers.unwrap_or(1));
            }
            let _ = writeln!(
                s,
                ", {} update(s) each) in {} namespace(s), run {}",
                i.updates.unwrap_or(0),
                i.namespaces.len().max(1),
                i.run_id.as_deref().unwrap_or("?")
            );
        }
        "run" => {
            let _ = writeln!(
                s,
                "Workload {}: {} job(s), run {}",
                i.resource,
                run.jobs.len(),
                i.run_id.as_deref().unwrap_or("?")
            );
        }
        _ => match &run.watchers {
            Some(w) => {
                let _ = writeln!(
                    s,
                    "Watching {} with {} watch loops (watches of {}s ± 10 %) over {} {} \
                     connection(s)",
                    i.resource,
                    count(w.watchers as u64),
                    trim(w.watch_timeout_s, 0),
                    count(w.connections),
                    w.protocol
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "Watching {} with an informer and a work queue",
                    i.resource
                );
            }
        },
    }
    s.push('\n');
    if !run.jobs.is_empty() {
        jobs_section(&run.jobs, &mut s);
    }
    if !run.calls.is_empty() {
        let mut rows = vec![header("Call", &["Calls", "Errors"])];
        for c in &run.calls {
            let mut row = latency_row(&format!("{} {}", c.verb.name(), c.resource), &c.latency);
            row.push(count(c.total()));
            row.push(count(c.errors()));
            rows.push(row);
        }
        if !run.lateness.is_empty() {
            let mut row = latency_row("Start lateness", &run.lateness);
            row.push(count(run.lateness.len()));
            row.push(String::new());
            rows.push(row);
        }
        s += &boxed(&rows);
        s += "Latency in ms, per answered call. ";
        if !run.lateness.is_empty() {
            s += "Start lateness: when each operation started minus when the schedule said.";
        }
        s += "\n\n";
    }
    if let Some(p) = &run.pods {
        pods_section(p, &mut s);
    }
    if let Some(w) = &run.watch {
        watch_section(w, &mut s);
    }
    if let Some(w) = &run.watchers {
        watchers_section(w, run.elapsed_s, &mut s);
    }
    let calls = run.total_calls();
    if calls > 0 {
        let _ = write!(
            s,
            "{} API calls in {}s ({}/s)",
            count(calls),
            trim(run.elapsed_s, 2),
            trim(calls as f64 / run.elapsed_s.max(1e-9), 0)
        );
        if let Some(l) = &run.lifecycles {
            let _ = write!(
                s,
                "; {} lifecycles: {} completed, {} failed",
                count(l.started),
                count(l.completed),
                count(l.failed)
            );
            if l.cut_short > 0 {
                let _ = write!(s, ", {} cut short", count(l.cut_short));
            }
        }
        if run.interrupted {
            s += " (interrupted)";
        }
        s.push('\n');
    }
    let throttled: u64 = run.calls.iter().map(CallStats::throttled).sum();
    s += &failures(&run.calls);
    if throttled > 0 {
        let _ = writeln!(
            s,
            "{} calls throttled (429, API Priority and Fairness)",
            count(throttled)
        );
    }
    if let Some(sv) = &run.server {
        s.push('\n');
        s += &server_metrics::render(sv);
    }
    if slo {
        slo_section(run, &mut s);
    }
    s
}

/// The SLO verdicts: on the server's latency when its metrics were read, else the client's
/// approximation, saying so.
fn slo_section(run: &ApiRun, s: &mut String) {
    if let Some(sv) = run.server_metrics() {
        s.push('\n');
        let mut rows = vec![vec![
            "SLO, server latency (p99 of 5-min windows)".to_string(),
            "p99".into(),
            "Limit".into(),
            "Windows".into(),
            "Result".into(),
        ]];
        for c in &sv.slo {
            rows.push(vec![
                server_metrics::call_text(&c.verb, &c.resource, &c.subresource, &c.scope),
                ms(c.p99_s * 1000.0),
                ms(c.limit_s * 1000.0),
                count(u64::from(c.windows)),
                if c.pass { "pass" } else { "FAIL" }.into(),
            ]);
        }
        *s += &boxed(&rows);
        *s += "As ClusterLoader2's APIResponsivenessPrometheus: the server's p99 per verb, \
               resource, subresource and scope over 5-minute windows (a shorter run is one \
               window), then the 99th percentile of those; ≤ 1 s for single objects, 5 s for \
               namespace-scoped and 30 s for cluster-scoped collections; WATCH, CONNECT, custom \
               resources and aggregated APIs left out.\n";
        return;
    }
    if run.server.is_some() {
        *s += "\nNo server metrics: the SLO check is the client-side approximation.\n";
    }
    if !run.slo.is_empty() {
        s.push('\n');
        let mut rows = vec![vec![
            "SLO, approximated (p99 over the run)".to_string(),
            "p99".into(),
            "Limit".into(),
            "Result".into(),
        ]];
        for c in &run.slo {
            rows.push(vec![
                format!("{} {}", c.verb.name(), c.resource),
                ms(c.p99_ms),
                ms(c.limit_ms),
                if c.pass { "pass" } else { "FAIL" }.into(),
            ]);
        }
        *s += &boxed(&rows);
        *s += "An approximation of the Kubernetes API-call SLOs (mutating and GET calls ≤ 1 s, \
              LIST ≤ 5 s in a namespace, ≤ 30 s across the cluster): one p99 per verb and \
              resource over the whole run, custom resources included; the SLI is a p99 per \
              5-minute window without custom resources and aggregated APIs.\n";
    }
}

#[cfg(test)]
mod tests;
