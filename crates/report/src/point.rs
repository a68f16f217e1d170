//! One second of a run as charts draw it: rates, percentiles of the merged histograms, answers
//! per server version, and (for an aggregator's run) the offered rate and coverage. The live
//! UI's stream and the HTML report both draw these, so both show the same numbers.

use crate::runfile::{FleetSecond, RunFile};
use hist::{quantile_ms, Snapshot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Latency percentiles in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// From a µs histogram.
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        Percentiles {
            p50: quantile_ms(h, 0.5),
            p90: quantile_ms(h, 0.9),
            p99: quantile_ms(h, 0.99),
            p999: quantile_ms(h, 0.999),
            max: h.max() as f64 / 1000.0,
        }
    }
}

/// One second, cluster-wide. Counts are for the second; divide by `seconds` for a rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Unix second (aggregator), or the second of the run counted from 0 (a `load` run).
    pub t: u64,
    /// Length of the interval in seconds (1, or less for a partial first or last second).
    pub seconds: f64,
    /// Requests/s the bots were asked for; 0 when unknown (closed loop, a `load` run's own
    /// schedule is in `intended`).
    pub offered: f64,
    /// Sends the schedule asked for.
    pub intended: u64,
    /// Requests sent.
    pub sent: u64,
    /// Answers (any status).
    pub responses: u64,
    /// Answers with a 1xx–3xx status.
    pub ok: u64,
    /// Transport errors plus 4xx/5xx answers.
    pub failed: u64,
    /// Transport errors by class.
    pub errors: BTreeMap<String, u64>,
    /// Answers by status.
    pub status: BTreeMap<u16, u64>,
    /// Bytes read.
    pub bytes: u64,
    /// Corrected latency (from the intended send time).
    pub latency: Percentiles,
    /// Service time (from the actual send).
    pub service: Percentiles,
    /// Answers by server version.
    pub versions: BTreeMap<String, u64>,
    /// Bots that reported this second (0 for a `load` run).
    pub reported: u32,
    /// Bots live in this second (0 for a `load` run).
    pub live: u32,
}

impl Point {
    /// The point of one second's snapshot.
    pub fn of(t: u64, s: &Snapshot, fleet: Option<&FleetSecond>) -> Point {
        let f = fleet.copied().unwrap_or_default();
        Point {
            t,
            seconds: s.seconds(),
            offered: f.offered,
            intended: s.intended,
            sent: s.sent,
            responses: s.responses,
            ok: s.ok(),
            failed: s.failed(),
            errors: s.errors.clone(),
            status: s.status.clone(),
            bytes: s.bytes,
            latency: Percentiles::of(&s.latency),
            service: Percentiles::of(&s.service),
            versions: s.versions.clone(),
            reported: f.reported,
            live: f.live,
        }
    }

    /// Every second of a run (empty for a version 1 file, which has no per-second histograms).
    pub fn all(run: &RunFile) -> Vec<Point> {
        let fleet = run.fleet.as_ref();
        run.intervals
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let f = fleet.and_then(|f| f.seconds.get(i));
                Point::of(f.map_or(i as u64, |f| f.t), s, f)
            })
            .collect()
    }
}
