//! The JSON run file: everything a run measured, including the HDR histograms (V2 compressed,
//! base64) and the per-second series, so runs can be re-reported, merged and compared later.

use hist::{SecondSample, Snapshot};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The format version this build writes and reads.
pub const RUNFILE_VERSION: u32 = 1;

/// How a run was set up, for headers and for comparing runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Target URL (the first target, for a targets file).
    pub url: String,
    /// Number of distinct requests used round-robin.
    pub targets: usize,
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

/// One run, as written by `load --json` and read by `report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Everything measured.
    pub total: Snapshot,
    /// One sample per second (the last may be shorter: see its `seconds`).
    pub series: Vec<SecondSample>,
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
    /// Written by a different format version.
    #[error("{0} has run file version {1}; this scaletest reads version {RUNFILE_VERSION}")]
    Version(String, u64),
}

impl RunFile {
    /// Parse a run file, checking its version first so that the error names the real problem.
    pub fn from_json(name: &str, text: &str) -> Result<RunFile, RunFileError> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| RunFileError::Parse(name.into(), e.to_string()))?;
        match v.get("version").and_then(|v| v.as_u64()) {
            Some(n) if n == RUNFILE_VERSION as u64 => {}
            Some(n) => return Err(RunFileError::Version(name.into(), n)),
            None => return Err(RunFileError::Parse(name.into(), "no version field".into())),
        }
        serde_json::from_value(v).map_err(|e| RunFileError::Parse(name.into(), e.to_string()))
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
    /// the per-second series add up second by second.
    pub fn merge(runs: &[RunFile]) -> Option<RunFile> {
        let mut out = runs.first()?.clone();
        for r in &runs[1..] {
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
        Some(out)
    }
}

/// Write `value` as pretty JSON to `path` atomically: a temporary file beside it, then a rename,
/// so a reader never sees half a file and an earlier file survives a failed write.
pub fn write_json_atomic<T: serde::Serialize>(value: &T, path: &Path) -> std::io::Result<()> {
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
        serde_json::to_writer_pretty(&mut f, value)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
