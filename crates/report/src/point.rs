//! One second of a run as charts draw it: rates, percentiles of the merged histograms, answers
//! per server version, and (for an aggregator's run) the offered rate and coverage. The live
//! UI's stream and the HTML report both draw these, so both show the same numbers.

use crate::runfile::{FleetSecond, RunFile};
use hist::record::HistForm;
use hist::{quantile_ms, Record, Snapshot};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

impl HistForm for Percentiles {
    fn empty() -> Self {
        Percentiles::default()
    }
    fn ser<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.serialize(s)
    }
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Percentiles::deserialize(d)
    }
}

/// One second, cluster-wide: the second's [`Record`] with its histograms as percentiles, and
/// what only a chart needs. Counts are for the second; divide by `seconds` for a rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Unix second (aggregator), or the second of the run counted from 0 (a `load` run).
    pub t: u64,
    /// Length of the interval in seconds (1, or less for a partial first or last second).
    pub seconds: f64,
    /// Requests/s the bots were asked for; 0 when unknown (closed loop, a `load` run's own
    /// schedule is in `intended`).
    pub offered: f64,
    /// Answers with a 1xx–3xx status.
    pub ok: u64,
    /// Transport errors plus 4xx/5xx answers.
    pub failed: u64,
    /// Bots that reported this second (0 for a `load` run).
    pub reported: u32,
    /// Bots live in this second (0 for a `load` run).
    pub live: u32,
    /// The second's counts and percentiles (their fields sit at the top level of the JSON).
    #[serde(flatten)]
    pub second: Record<Percentiles>,
}

impl Point {
    /// The point of one second's snapshot.
    pub fn of(t: u64, s: &Snapshot, fleet: Option<&FleetSecond>) -> Point {
        let f = fleet.copied().unwrap_or_default();
        Point {
            t,
            seconds: s.seconds(),
            offered: f.offered,
            ok: s.ok(),
            failed: s.failed(),
            reported: f.reported,
            live: f.live,
            second: s.map(Percentiles::of),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_is_the_records_fields_at_the_top_level_and_round_trips() {
        let mut s = Snapshot {
            end: 1.0,
            responses: 3,
            sent: 4,
            ..Default::default()
        };
        s.status.insert(200, 2);
        s.status.insert(503, 1);
        for us in [1000, 2000, 30_000] {
            s.latency.record(us).unwrap();
        }
        let p = Point::of(7, &s, None);
        assert_eq!((p.ok, p.failed, p.second.sent), (2, 1, 4));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["responses"], 3);
        assert_eq!(v["status"]["503"], 1);
        assert_eq!(v["latency"]["max"], 30.015);
        let back: Point = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }
}
