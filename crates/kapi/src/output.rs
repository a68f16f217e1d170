//! The report of `api churn` / `api watch`: the same box tables and JSON habits as `load`
//! (autocannon's latency columns; every histogram kept in the JSON), plus an approximate check
//! against the Kubernetes API-call latency SLOs (one p99 over the whole run, custom resources
//! included, where the SLI is a p99 per 5-minute window without them).

use crate::stats::{CallStats, ErrorMessage, Verb};
use crate::watch::WatchStats;
use crate::watchers::LoopStats;
use hdrhistogram::Histogram;
use hist::{histogram_codec, new_histogram};
use report::format::{count, ms, trim};
use report::runfile::MAX_COUNT;
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
    /// The SLO check of every (verb, resource).
    pub slo: Vec<SloCheck>,
}

/// An api run file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ApiRunError {
    /// Not an api run file.
    #[error("{0}: not an api run file: {1}")]
    Parse(String, String),
    /// Written by another format version.
    #[error("{0}: api run file version {1} (this build reads {API_RUN_VERSION})")]
    Version(String, u64),
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

    /// True when every checked (verb, resource) met its SLO.
    pub fn slo_pass(&self) -> bool {
        self.slo.iter().all(|s| s.pass)
    }

    /// Parse a run file written by `--json`; `name` is for messages. The version is checked
    /// first (as `report::RunFile::from_json` does), so that a file from another version is
    /// called that rather than malformed. A number over [`MAX_COUNT`] (the bound of every run
    /// file) is refused.
    pub fn from_json(name: &str, text: &str) -> Result<ApiRun, ApiRunError> {
        let bad = |e: &dyn std::fmt::Display| ApiRunError::Parse(name.into(), e.to_string());
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&e))?;
        match v.get("version").and_then(|v| v.as_u64()) {
            Some(n) if n == u64::from(API_RUN_VERSION) => {}
            Some(n) => return Err(ApiRunError::Version(name.into(), n)),
            None => return Err(bad(&"no version field")),
        }
        match report::Kind::of(&v) {
            Ok(report::Kind::Api) => {}
            Ok(k) => return Err(bad(&format!("a `{}` run, not an `api` one", k.name()))),
            Err(why) => return Err(bad(&why)),
        }
        if let Some(at) = report::runfile::count_over_max(&v) {
            return Err(bad(&format!("{at}: a number over {MAX_COUNT}")));
        }
        serde_json::from_value(v).map_err(|e| bad(&e))
    }

    /// Merge runs that happened at the same time (several churn processes): calls, lateness,
    /// lifecycles and informer counts add up; the SLO is checked again on the sums.
    pub fn merge(runs: &[ApiRun]) -> Option<ApiRun> {
        let mut out = runs.first()?.clone();
        for r in &runs[1..] {
            out.elapsed_s = out.elapsed_s.max(r.elapsed_s);
            out.interrupted |= r.interrupted;
            for c in &r.calls {
                match out
                    .calls
                    .iter_mut()
                    .find(|o| o.verb == c.verb && o.resource == c.resource)
                {
                    Some(o) => o.merge(c),
                    None => out.calls.push(c.clone()),
                }
            }
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
        }
        out.calls
            .sort_by(|a, b| (a.verb, &a.resource).cmp(&(b.verb, &b.resource)));
        out.check_slo();
        Some(out)
    }

    /// All calls.
    pub fn total_calls(&self) -> u64 {
        self.calls
            .iter()
            .map(|c| c.answered + c.transport_errors)
            .sum()
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
    if !run.calls.is_empty() {
        let mut rows = vec![header("Call", &["Calls", "Errors"])];
        for c in &run.calls {
            let mut row = latency_row(&format!("{} {}", c.verb.name(), c.resource), &c.latency);
            row.push(count(c.answered + c.transport_errors));
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
    if slo && !run.slo.is_empty() {
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
        s += &boxed(&rows);
        s += "An approximation of the Kubernetes API-call SLOs (mutating and GET calls ≤ 1 s, \
              LIST ≤ 5 s in a namespace, ≤ 30 s across the cluster): one p99 per verb and \
              resource over the whole run, custom resources included; the SLI is a p99 per \
              5-minute window without custom resources and aggregated APIs.\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_another_version_is_named_so_whatever_its_shape() {
        let e = ApiRun::from_json("f", r#"{"version": 9, "calls": "a new shape"}"#).unwrap_err();
        assert!(matches!(e, ApiRunError::Version(_, 9)), "{e}");
        assert!(e.to_string().contains("version 9"), "{e}");
        let e = ApiRun::from_json("f", r#"{"calls": []}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("not an api run file: no version field"),
            "{e}"
        );
        let e = ApiRun::from_json("f", "{").unwrap_err();
        assert!(matches!(e, ApiRunError::Parse(..)), "{e}");
    }

    #[test]
    fn a_count_no_run_makes_is_refused_with_where_it_is() {
        let mut v = serde_json::to_value(ApiRun::new(ApiInfo::default(), 0.0)).unwrap();
        v["lifecycles"] = serde_json::to_value(Lifecycles::default()).unwrap();
        v["lifecycles"]["failed"] = MAX_COUNT.into();
        assert!(ApiRun::from_json("f", &v.to_string()).is_ok());
        v["lifecycles"]["failed"] = (MAX_COUNT + 1).into();
        let e = ApiRun::from_json("f", &v.to_string()).unwrap_err();
        assert!(
            e.to_string().ends_with(
                "not an api run file: /lifecycles/failed: a number over 9007199254740992"
            ),
            "{e}"
        );
    }
}
