//! One second of a run as charts draw it: rates, percentiles of the merged histograms, answers
//! per server version, and (for an aggregator's run) the offered rate and coverage. The live
//! UI's stream and the HTML report both draw these, so both show the same numbers.
//! [`Jsonl`] writes them as they come, one line per second, for other tools (`load --out
//! jsonl:FILE`).

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

/// One line of [`Jsonl`]: the second's Unix time, then the [`Point`]'s fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// The Unix second the interval belongs to.
    pub unix: u64,
    /// The second (its `t` is the run's second, from 0).
    #[serde(flatten)]
    pub point: Point,
}

/// Points written one JSON line per second as a run goes, each flushed: a run stopped by
/// Ctrl-C or a crash keeps every second written before it, and `tail -f` sees each at once.
pub struct Jsonl {
    path: std::path::PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl Jsonl {
    /// Create (or truncate) `path`.
    pub fn create(path: &std::path::Path) -> std::io::Result<Jsonl> {
        Ok(Jsonl {
            path: path.to_path_buf(),
            out: std::io::BufWriter::new(std::fs::File::create(path)?),
        })
    }

    /// Append one second.
    pub fn write(&mut self, unix: u64, point: Point) -> std::io::Result<()> {
        use std::io::Write;
        serde_json::to_writer(&mut self.out, &Line { unix, point })?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    /// Where it writes.
    pub fn path(&self) -> &std::path::Path {
        &self.path
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

    #[test]
    fn jsonl_has_one_flushed_line_per_second_that_reads_back() {
        let dir = std::env::temp_dir().join(format!("st-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("seconds.jsonl");
        let mut w = Jsonl::create(&path).unwrap();
        let mut s = Snapshot {
            end: 1.0,
            responses: 2,
            ..Default::default()
        };
        s.status.insert(200, 2);
        s.latency.record(5000).unwrap();
        w.write(1_700_000_000, Point::of(0, &s, None)).unwrap();
        // Flushed: readable while the writer is still open.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        let line: Line = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(
            (line.unix, line.point.t, line.point.ok),
            (1_700_000_000, 0, 2)
        );
        assert_eq!(line.point.second.latency.p50, 5.003);
        w.write(1_700_000_001, Point::of(1, &s, None)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
