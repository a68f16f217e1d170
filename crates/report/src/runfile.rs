//! The JSON run file: everything a run measured, including the HDR histograms (V2 compressed,
//! base64) of the whole run and of every second, so runs can be re-reported, merged into
//! per-second percentiles of all samples (the merge loses nothing; the histograms keep 3
//! significant digits), and compared later. An aggregator's results add a [`Fleet`] part
//! (offered rate and coverage per second, events, bots) and a [`Summary`].
//!
//! Version 2 added the per-second histograms (`intervals`); version 1 files (summaries per
//! second only) still read, and merge as before (a merged per-second percentile of version 1
//! files is the larger of the two, an upper bound).

use hist::{SecondSample, Snapshot};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The format version this build writes.
pub const RUNFILE_VERSION: u32 = 2;

/// The oldest format version this build reads.
pub const RUNFILE_OLDEST: u32 = 1;

/// The largest whole number a run file (of `load` or `api`) may hold: 2^53, the largest the
/// HTML report's JavaScript holds exactly and far past any count a run makes; merging up to
/// 1,024 files then adds their counts without overflow. A larger one is damage.
pub const MAX_COUNT: u64 = 1 << 53;

/// Where in `v` the first whole number over [`MAX_COUNT`] is, as a JSON pointer.
pub fn count_over_max(v: &serde_json::Value) -> Option<String> {
    fn find(v: &serde_json::Value, at: &mut String) -> bool {
        let mut inside = |key: &dyn std::fmt::Display, v: &serde_json::Value| {
            let len = at.len();
            at.push_str(&format!("/{key}"));
            let found = find(v, at);
            if !found {
                at.truncate(len);
            }
            found
        };
        match v {
            serde_json::Value::Number(n) => n.as_u64().is_some_and(|n| n > MAX_COUNT),
            serde_json::Value::Array(a) => a.iter().enumerate().any(|(i, v)| inside(&i, v)),
            serde_json::Value::Object(o) => o.iter().any(|(k, v)| inside(k, v)),
            _ => false,
        }
    }
    let mut at = String::new();
    find(v, &mut at).then_some(at)
}

/// How a run was set up, for headers and for comparing runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Target URL (the first target, for a targets file).
    pub url: String,
    /// Number of distinct requests (in turn, by `weights` when they differ).
    pub targets: usize,
    /// Their weights, when they differ (`1:3`): the mix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// `closed` or `open`.
    pub mode: String,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: String,
    /// Connections opened before the start (closed loop: all of them).
    pub connections: usize,
    /// Streams per HTTP/2 connection.
    pub streams: usize,
    /// Open loop: the connection cap.
    pub max_connections: Option<usize>,
    /// Open loop: the rate shape, human-readable.
    pub rate: Option<String>,
    /// Closed loop in stages: the connection stages (`30s:10c,2m:100c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_stages: Option<String>,
    /// Open loop: `uniform` or `poisson`.
    pub arrival: Option<String>,
    /// Open loop: requests the schedule asked for per second, on average over the run.
    pub target_rate: Option<f64>,
    /// Worker threads.
    pub threads: usize,
    /// Requested duration in seconds.
    pub duration_s: Option<f64>,
    /// Requested request count.
    pub requests: Option<u64>,
    /// Per-request timeout in seconds.
    pub timeout_s: f64,
}

/// One run, as written by `load --json` and read by `report`; written with `"kind": "load"`
/// (see [`Kind`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "load")]
pub struct RunFile {
    /// Format version; readers reject others.
    pub version: u32,
    /// Which tool wrote it.
    pub tool: String,
    /// Unix time (seconds) when the run started.
    pub started_unix: f64,
    /// The setup.
    pub info: RunInfo,
    /// Wall time of the run in seconds.
    pub elapsed_s: f64,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
    /// Most lanes (connections × streams) open at once.
    pub peak_lanes: usize,
    /// Requests in flight when the run ended; not counted as errors.
    pub in_flight_at_end: u64,
    /// Everything measured; its `names`: each named request's whole run (they add up to it).
    pub total: Snapshot,
    /// One summary per second (the last may be shorter: see its `seconds`); derived from
    /// `intervals` when the file has them, kept for readers that want no histograms.
    pub series: Vec<SecondSample>,
    /// Version 2: what was measured in each second, histograms included (names only in
    /// `total`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<Snapshot>,
    /// Aggregator results: the cluster-wide view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<Fleet>,
    /// Aggregator results: the figures `GET /api/summary` answers, final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// The verdicts of the run's `--threshold`s, on its totals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::threshold::Verdict>,
    /// A run whose rate changed by plan (stages, steps, a ramp): each stage, planned and got.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<crate::stages::StageRow>,
}

/// What an aggregator adds to a run: per second, what was asked for and who reported; the
/// events of the run; and the bots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    /// One entry per element of `RunFile::intervals`, same order.
    pub seconds: Vec<FleetSecond>,
    /// Bot joined / stale / gone, load changed, posted events.
    pub events: Vec<Event>,
    /// Every bot that took part.
    pub bots: Vec<BotRecord>,
    /// Runs the bots had been in before this one: the run restarted without what those
    /// measured (a new aggregator pod on an empty directory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_runs: Vec<String>,
}

impl Fleet {
    /// The offered load as it ran: `1000 req/s in total`, or its steps in order
    /// (`1000 → 2000 → 4000 → 1000 req/s in total`; more than six: the first, the highest and
    /// the last, with the count of changes); `None` for a closed loop (nothing offered).
    pub fn load_text(&self) -> Option<String> {
        let mut steps: Vec<f64> = Vec::new();
        for s in self.seconds.iter().filter(|s| s.offered > 0.0) {
            if steps.last() != Some(&s.offered) {
                steps.push(s.offered);
            }
        }
        let rate = |r: f64| crate::format::trim(r, 1);
        let text = match steps.as_slice() {
            [] => return None,
            [one] => format!("{} req/s in total", rate(*one)),
            s if s.len() <= 6 => format!(
                "{} req/s in total",
                s.iter().map(|r| rate(*r)).collect::<Vec<_>>().join(" → ")
            ),
            s => format!(
                "{} → … → {} req/s in total ({} changes, highest {})",
                rate(s[0]),
                rate(s[s.len() - 1]),
                s.len() - 1,
                rate(s.iter().copied().fold(0.0, f64::max))
            ),
        };
        Some(text)
    }

    /// What the lost bots' unreported seconds may hold: `1 bot lost (b-2): 3 s never
    /// reported, which may hold up to 450 requests`; `None` when every bot reported all it
    /// measured. The run's total lacks at most this much of what the target answered.
    pub fn lost_text(&self) -> Option<String> {
        let lost: Vec<&BotRecord> = self.bots.iter().filter(|b| b.unreported_s > 0).collect();
        if lost.is_empty() {
            return None;
        }
        let names: Vec<&str> = lost.iter().map(|b| b.name.as_str()).collect();
        Some(format!(
            "{} lost ({}): {} s never reported, which may hold up to {} requests",
            match lost.len() {
                1 => "1 bot".to_string(),
                n => format!("{n} bots"),
            },
            names.join(", "),
            lost.iter().map(|b| b.unreported_s).sum::<u64>(),
            crate::format::count(lost.iter().map(|b| b.unreported_max).sum())
        ))
    }

    /// The bots live over the run: `2 bot(s)`, or `1–4 bots` when it changed.
    pub fn bots_text(&self) -> String {
        let live = self.seconds.iter().map(|s| s.live).filter(|n| *n > 0);
        let (lo, hi) = live.fold((u32::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)));
        match (lo, hi) {
            (_, 0) => format!("{} bot(s)", self.bots.len()),
            (lo, hi) if lo == hi => format!("{hi} bot(s)"),
            (lo, hi) => format!("{lo}–{hi} bots"),
        }
    }
}

/// The cluster-wide extras of one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetSecond {
    /// The Unix second.
    pub t: u64,
    /// Requests/s the bots were asked for (the offered rate); 0 for closed-loop load.
    pub offered: f64,
    /// Bots that reported this second.
    pub reported: u32,
    /// Bots live in this second.
    pub live: u32,
}

/// Something that happened during a run, drawn as a marker on every chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unix time in seconds.
    pub t: f64,
    /// `bot_joined`, `bot_stale`, `bot_gone`, `bot_back`, `bot_left`, `load`, `posted`, `run`.
    pub kind: String,
    /// Human-readable text.
    pub text: String,
}

/// A bot as the aggregator saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BotRecord {
    /// Id the aggregator gave it.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// scaletest version it runs.
    pub version: String,
    /// `live`, `stale`, `gone` or `left`.
    pub state: String,
    /// Unix time it registered.
    pub joined: f64,
    /// Unix time of its last push.
    pub last_seen: f64,
    /// Answers it reported.
    pub responses: u64,
    /// Failed requests it reported.
    pub errors: u64,
    /// Requests/s it is asked for now.
    pub rate: f64,
    /// Its clock minus the aggregator's, ms (positive: the bot is ahead).
    pub skew_ms: f64,
    /// Intervals it dropped from its buffer while the aggregator was unreachable.
    pub dropped: u64,
    /// Lost (went stale and never came back): seconds it may have measured and never
    /// reported, from its last reported second to the one it went stale in; 0 otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreported_s: u64,
    /// Requests those seconds may hold, at most: the highest rate it was assigned in them ×
    /// `unreported_s`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreported_max: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The figures scripts read: whole run, cumulative.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Answered requests (any status).
    pub requests: u64,
    /// Failed requests (transport errors and 4xx/5xx answers).
    pub errors: u64,
    /// Answers with a 1xx–3xx status.
    pub ok: u64,
    /// Bots live now.
    pub live: u32,
    /// Bots stale now (no report for 3 s).
    pub stale: u32,
    /// Bots gone (no report for 30 s) or left.
    pub gone: u32,
    /// Corrected latency, whole run, ms.
    pub p50_ms: f64,
    /// Corrected latency, whole run, ms.
    pub p99_ms: f64,
    /// Answers by server version.
    pub versions: std::collections::BTreeMap<String, u64>,
    /// Seconds the run has lasted.
    pub elapsed_s: f64,
    /// Named requests, the whole run: a row a name, slowest p99 first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<crate::names::NameRow>,
}

/// `GET /api/window?from=&to=`: what an aggregator measured in the Unix seconds `from..to`,
/// merged (exact percentiles), and whether every second of it has been heard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// First Unix second.
    pub from: u64,
    /// One past the last.
    pub to: u64,
    /// Every second ended at least the publishing delay ago: the bots' pushes have arrived.
    pub settled: bool,
    /// Everything measured in it.
    pub snapshot: Snapshot,
}

impl Window {
    /// The thresholds' verdicts on the window, over its length.
    pub fn judge(
        &self,
        thresholds: &[crate::threshold::Threshold],
    ) -> Vec<crate::threshold::Verdict> {
        let secs = self.to.saturating_sub(self.from) as f64;
        crate::threshold::judge(thresholds, &self.snapshot, secs)
    }

    /// Requests, failed, p99 and the answers per server version, as lines.
    pub fn describe(&self, what: &str) -> Vec<String> {
        let t = &self.snapshot;
        let mut lines = vec![format!(
            "{what} from {}, {} s: {} requests, {} failed, p99 {}{}",
            crate::format::utc(self.from as f64),
            self.to.saturating_sub(self.from),
            crate::format::count(t.completed()),
            crate::format::count(t.failed()),
            if t.latency.is_empty() {
                "-".to_string()
            } else {
                crate::format::ms(t.quantile_ms(0.99))
            },
            if self.settled {
                ""
            } else {
                " (the last seconds may still be missing pushes)"
            }
        )];
        if !t.versions.is_empty() {
            let all: u64 = t.versions.values().sum();
            let split: Vec<String> = t
                .versions
                .iter()
                .map(|(v, n)| {
                    format!(
                        "{v} {} ({:.1}%)",
                        crate::format::count(*n),
                        100.0 * *n as f64 / all.max(1) as f64
                    )
                })
                .collect();
            lines.push(format!("  answers by version: {}", split.join(", ")));
        }
        lines
    }
}

/// A run file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RunFileError {
    /// Not readable.
    #[error("cannot read {0}: {1}")]
    Io(String, String),
    /// Not a run file.
    #[error("{0} is not a scaletest run file: {1}")]
    Parse(String, String),
    /// Written by a format version this build does not read.
    #[error("{0} has run file version {1}; this scaletest reads versions {RUNFILE_OLDEST} to {RUNFILE_VERSION}")]
    Version(String, u64),
}

/// What wrote a run file, as its `kind` field says: `load` (`load --json`, `aggregate`),
/// `api` (`api churn`, `api watch`), `nodes`. Each record's type writes its own (serde's tag);
/// [`Kind::of`] is the one place a file's kind is read, or guessed for files from before the
/// field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A [`RunFile`].
    Load,
    /// A control-plane run (`kapi::output::ApiRun`).
    Api,
    /// A hollow-nodes run (`nodes::report::NodesRun`).
    Nodes,
}

impl Kind {
    /// The kind of the run file `v`: its `kind` field; without one (older files) the shape
    /// decides: a `total` is a load run's, `retried_429` a nodes run's, `calls` an api run's.
    pub fn of(v: &serde_json::Value) -> Result<Kind, String> {
        match v.get("kind") {
            Some(k) => match k.as_str() {
                Some("load") => Ok(Kind::Load),
                Some("api") => Ok(Kind::Api),
                Some("nodes") => Ok(Kind::Nodes),
                _ => Err(format!(
                    "kind {k}: this scaletest reads load, api and nodes runs"
                )),
            },
            None if v.get("total").is_some() => Ok(Kind::Load),
            None if v.get("retried_429").is_some() => Ok(Kind::Nodes),
            None if v.get("calls").is_some() => Ok(Kind::Api),
            None => Ok(Kind::Load),
        }
    }

    /// As the `kind` field spells it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Load => "load",
            Kind::Api => "api",
            Kind::Nodes => "nodes",
        }
    }

    /// The name with its article, as a message says it ("an api").
    pub fn a_name(self) -> &'static str {
        match self {
            Kind::Load => "a load",
            Kind::Api => "an api",
            Kind::Nodes => "a nodes",
        }
    }
}

/// Why a control-plane run file (an api or nodes run, of one format version) cannot be read;
/// `name` is the file's, as messages give it.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    /// Not JSON, not of the kind, a number over [`MAX_COUNT`], or not of the shape.
    #[error("{name}: not {} run file: {why}", .kind.a_name())]
    Parse {
        /// The file.
        name: String,
        /// The kind it was read as.
        kind: Kind,
        /// What is wrong with it.
        why: String,
    },
    /// Written at another format version.
    #[error("{name}: {} run file version {found} (this build reads {reads})", .kind.name())]
    Version {
        /// The file.
        name: String,
        /// The kind it was read as.
        kind: Kind,
        /// The file's version.
        found: u64,
        /// The version this build reads.
        reads: u32,
    },
}

/// Parse `text` (the file `name`, for messages) as a run of `kind` at format `version`: the
/// version is checked first (so a file of another version is called that, whatever its shape),
/// then the kind, then that no number is over [`MAX_COUNT`] (the bound of every run file).
pub fn parse_kind<T: serde::de::DeserializeOwned>(
    name: &str,
    text: &str,
    kind: Kind,
    version: u32,
) -> Result<T, Unreadable> {
    let bad = |e: &dyn std::fmt::Display| Unreadable::Parse {
        name: name.into(),
        kind,
        why: e.to_string(),
    };
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&e))?;
    match v.get("version").and_then(|v| v.as_u64()) {
        Some(n) if n == u64::from(version) => {}
        Some(found) => {
            return Err(Unreadable::Version {
                name: name.into(),
                kind,
                found,
                reads: version,
            })
        }
        None => return Err(bad(&"no version field")),
    }
    match Kind::of(&v) {
        Ok(k) if k == kind => {}
        Ok(k) => {
            return Err(bad(&format!(
                "a `{}` run, not an `{}` one",
                k.name(),
                kind.name()
            )))
        }
        Err(why) => return Err(bad(&why)),
    }
    if let Some(at) = count_over_max(&v) {
        return Err(bad(&format!("{at}: a number over {MAX_COUNT}")));
    }
    serde_json::from_value(v).map_err(|e| bad(&e))
}

impl RunFile {
    /// An aggregator's offered load in words: the schedule it walked when it ran in stages
    /// (its per-second steps would be a list of every second), else [`Fleet::load_text`].
    pub fn fleet_load_text(&self) -> Option<String> {
        match (&self.info.rate, &self.fleet) {
            (Some(rate), Some(_)) if !self.stages.is_empty() => Some(rate.clone()),
            (_, f) => f.as_ref()?.load_text(),
        }
    }

    /// Parse a run file, checking its version first so that the error names the real problem;
    /// a number over [`MAX_COUNT`] is refused.
    pub fn from_json(name: &str, text: &str) -> Result<RunFile, RunFileError> {
        let mut v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| RunFileError::Parse(name.into(), e.to_string()))?;
        legacy_names(&mut v);
        match v.get("version").and_then(|v| v.as_u64()) {
            Some(n) if (RUNFILE_OLDEST as u64..=RUNFILE_VERSION as u64).contains(&n) => {}
            Some(n) => return Err(RunFileError::Version(name.into(), n)),
            None => return Err(RunFileError::Parse(name.into(), "no version field".into())),
        }
        match Kind::of(&v) {
            Ok(Kind::Load) => {}
            Ok(k) => {
                let why = format!("an `{}` run, not a `load` one", k.name());
                return Err(RunFileError::Parse(name.into(), why));
            }
            Err(why) => return Err(RunFileError::Parse(name.into(), why)),
        }
        if let Some(at) = count_over_max(&v) {
            let why = format!("{at}: a number over {MAX_COUNT}");
            return Err(RunFileError::Parse(name.into(), why));
        }
        let mut run: RunFile = serde_json::from_value(v)
            .map_err(|e| RunFileError::Parse(name.into(), e.to_string()))?;
        if let Some(f) = &run.fleet {
            if f.seconds.len() != run.intervals.len() {
                return Err(RunFileError::Parse(
                    name.into(),
                    "fleet.seconds and intervals differ in length".into(),
                ));
            }
        }
        if !run.intervals.is_empty() {
            run.series = series_of(&run.intervals);
        }
        Ok(run)
    }

    /// Whether per-second histograms are kept (version 2), so per-second percentiles are exact.
    pub fn has_intervals(&self) -> bool {
        !self.intervals.is_empty()
    }

    /// Read and parse a run file.
    pub fn read(path: &Path) -> Result<RunFile, RunFileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| RunFileError::Io(name.clone(), e.to_string()))?;
        Self::from_json(&name, &text)
    }

    /// Write to `path` atomically: a temporary file beside it, then a rename, so a reader never
    /// sees half a file and an earlier file survives a failed write.
    pub fn write_atomic(&self, path: &Path) -> std::io::Result<()> {
        write_json_atomic(self, path)
    }

    /// Merge runs that happened at the same time (e.g. several loadbots): totals add up, and
    /// the seconds merge second by second. When every run has its per-second histograms, the
    /// merged per-second percentiles are exact; otherwise they are upper bounds.
    pub fn merge(runs: &[RunFile]) -> Option<RunFile> {
        let mut out = runs.first()?.clone();
        let exact = runs.iter().all(|r| r.has_intervals());
        if !exact {
            out.intervals.clear();
        }
        for r in &runs[1..] {
            if exact {
                for (i, s) in r.intervals.iter().enumerate() {
                    match out.intervals.get_mut(i) {
                        Some(o) => o.merge(s),
                        None => out.intervals.push(s.clone()),
                    }
                }
            }
            out.total.merge(&r.total);
            out.elapsed_s = out.elapsed_s.max(r.elapsed_s);
            out.interrupted |= r.interrupted;
            out.peak_lanes += r.peak_lanes;
            out.in_flight_at_end += r.in_flight_at_end;
            out.info.connections += r.info.connections;
            out.info.threads += r.info.threads;
            out.info.target_rate = match (out.info.target_rate, r.info.target_rate) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            for s in &r.series {
                match out.series.iter_mut().find(|o| o.second == s.second) {
                    Some(o) => {
                        o.requests += s.requests;
                        o.errors += s.errors;
                        o.bytes += s.bytes;
                        // Percentiles do not add; keep the worse one as an upper bound.
                        o.p50_ms = o.p50_ms.max(s.p50_ms);
                        o.p99_ms = o.p99_ms.max(s.p99_ms);
                        o.max_ms = o.max_ms.max(s.max_ms);
                        o.seconds = o.seconds.max(s.seconds);
                    }
                    None => out.series.push(s.clone()),
                }
            }
        }
        out.series.sort_by_key(|s| s.second);
        if exact {
            out.series = series_of(&out.intervals);
        }
        // Per-bot extras do not merge meaningfully across runs.
        out.fleet = None;
        out.summary = None;
        out.verdicts.clear();
        Some(out)
    }
}

/// The per-second summaries of per-second snapshots.
pub fn series_of(intervals: &[Snapshot]) -> Vec<SecondSample> {
    intervals
        .iter()
        .enumerate()
        .map(|(i, s)| s.sample(i as u32))
        .collect()
}

/// Write `value` as pretty JSON to `path` atomically: a temporary file beside it, then a rename,
/// so a reader never sees half a file and an earlier file survives a failed write.
pub fn write_json_atomic<T: serde::Serialize>(value: &T, path: &Path) -> std::io::Result<()> {
    write_atomic_with(path, |f| {
        serde_json::to_writer_pretty(&mut *f, value)?;
        f.write_all(b"\n")
    })
}

/// Write `bytes` to `path` atomically, as [`write_json_atomic`] does.
pub fn write_bytes_atomic(bytes: &[u8], path: &Path) -> std::io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// A temporary file beside `path`, filled by `fill`, synced, then renamed over `path`.
fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run.json".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Files written before named requests moved into the total kept them at the top level
/// (`names`, same version): moved where this build reads them.
fn legacy_names(v: &mut serde_json::Value) {
    let Some(names) = v.as_object_mut().and_then(|o| o.remove("names")) else {
        return;
    };
    if let Some(total) = v.get_mut("total").and_then(|t| t.as_object_mut()) {
        total.entry("names").or_insert(names);
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_file_says_its_kind_and_older_ones_are_told_by_their_shape() {
        let run = crate::example::rolling_update(10);
        let v = serde_json::to_value(&run).unwrap();
        assert_eq!(v["kind"], "load");
        assert_eq!(Kind::of(&v), Ok(Kind::Load));
        assert_eq!(Kind::of(&json!({"total": {}})), Ok(Kind::Load));
        assert_eq!(Kind::of(&json!({"calls": []})), Ok(Kind::Api));
        let nodes = json!({"calls": [], "retried_429": 0});
        assert_eq!(Kind::of(&nodes), Ok(Kind::Nodes));
        assert!(Kind::of(&json!({"kind": "wat"})).is_err());
        // A file without the field still reads; one of another kind is refused by name.
        let mut old = v.clone();
        old.as_object_mut().unwrap().remove("kind");
        assert_eq!(RunFile::from_json("old", &old.to_string()).unwrap(), run);
        let mut api = v;
        api["kind"] = json!("api");
        let e = RunFile::from_json("a", &api.to_string()).unwrap_err();
        assert!(e.to_string().contains("an `api` run"), "{e}");
    }

    #[test]
    fn names_at_the_top_level_of_an_older_file_read_as_the_totals() {
        let mut run = crate::example::rolling_update(5);
        let mut named = run.total.clone();
        named.names.clear();
        run.total.names.insert("home".into(), named);
        let mut v = serde_json::to_value(&run).unwrap();
        let names = v["total"].as_object_mut().unwrap().remove("names").unwrap();
        v["names"] = names;
        assert_eq!(RunFile::from_json("old", &v.to_string()).unwrap(), run);
    }
}
