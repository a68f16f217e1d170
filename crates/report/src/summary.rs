//! The figures a run's report shows, computed once from a [`RunFile`]; [`crate::table`] lays
//! them out. [`Latency`] is the latency row every run kind shares (load, api, nodes).

use crate::table::{per_second, sample_stats};
use crate::{Fleet, RunFile, RunInfo};
use hdrhistogram::Histogram;

/// One latency row, ms: 2.5 %, 50 %, 97.5 %, 99 %, mean, standard deviation, max.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// p2.5, p50, p97.5, p99.
    pub quantiles: [f64; 4],
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Maximum.
    pub max: f64,
}

/// A value at quantile `q` of a histogram in µs, in ms (0 when empty).
pub(crate) fn q_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

impl Latency {
    /// From a histogram in µs.
    pub fn of(h: &Histogram<u64>) -> Latency {
        let (mean, stdev) = if h.is_empty() {
            (0.0, 0.0)
        } else {
            (h.mean() / 1000.0, h.stdev() / 1000.0)
        };
        Latency {
            quantiles: [0.025, 0.5, 0.975, 0.99].map(|q| q_ms(h, q)),
            mean,
            stdev,
            max: h.max() as f64 / 1000.0,
        }
    }
}

/// Per-second samples: 1 %, 2.5 %, 50 %, 97.5 % (nearest rank), mean, deviation, minimum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerSecond {
    /// p1, p2.5, p50, p97.5.
    pub quantiles: [f64; 4],
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Minimum.
    pub min: f64,
}

impl PerSecond {
    fn of(values: &[f64]) -> PerSecond {
        let (quantiles, mean, stdev, min) = sample_stats(values);
        PerSecond {
            quantiles,
            mean,
            stdev,
            min,
        }
    }
}

/// An aggregator's run: what was offered and sent per second, and how much the bots reported.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetFigures {
    /// Mean offered rate, requests/s (0 in a closed loop).
    pub offered: f64,
    /// Mean sent rate, requests/s.
    pub sent: f64,
    /// Percent of the bots' live seconds they reported (`None`: no live second).
    pub reported_pct: Option<f64>,
    /// What the lost bots' unreported seconds may hold ([`Fleet::lost_text`]).
    pub lost: Option<String>,
}

/// An open-loop run's schedule: rate achieved, lateness, the connection cap.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The mean rate asked for.
    pub target_rate: f64,
    /// Sends per second over the sending window.
    pub achieved: f64,
    /// Most connections open at once.
    pub peak_connections: u64,
    /// Sends made.
    pub sends: u64,
    /// Sends that started more than 1 ms late.
    pub late: u64,
    /// Lateness p50, p99 and max, ms.
    pub lateness_ms: [f64; 3],
    /// Sends that waited for a free connection at the cap.
    pub capped: u64,
    /// Scheduled sends that never started.
    pub unsent: u64,
}

/// Everything the report of a load run shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Open loop (a schedule, a corrected latency and a service time)?
    pub open: bool,
    /// Latency (corrected in an open loop).
    pub latency: Latency,
    /// Open loop: service time (from the actual send).
    pub service: Option<Latency>,
    /// Requests per second, per-second samples.
    pub requests: PerSecond,
    /// Bytes per second, per-second samples.
    pub bytes: PerSecond,
    /// Answers counted.
    pub responses: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Wall time, s.
    pub elapsed_s: f64,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// An aggregator's run.
    pub fleet: Option<FleetFigures>,
    /// An open-loop run of one process.
    pub schedule: Option<Schedule>,
    /// Answers by status code.
    pub status: Vec<(u16, u64)>,
    /// Answers outside 2xx.
    pub non2xx: u64,
    /// Answers by server version, with their percent.
    pub versions: Vec<(String, u64, f64)>,
    /// Failures by class.
    pub errors: Vec<(String, u64)>,
    /// Requests still in flight at the end (not counted).
    pub in_flight_at_end: u64,
}

impl Summary {
    /// The figures of `run`.
    pub fn of(run: &RunFile) -> Summary {
        let t = &run.total;
        let open = run.info.mode == "open";
        let (reqs, byts) = per_second(run);
        let all: u64 = t.versions.values().sum();
        Summary {
            open,
            latency: Latency::of(&t.latency),
            service: open.then(|| Latency::of(&t.service)),
            requests: PerSecond::of(&reqs),
            bytes: PerSecond::of(&byts),
            responses: t.responses,
            bytes_read: t.bytes,
            elapsed_s: run.elapsed_s,
            interrupted: run.interrupted,
            fleet: run.fleet.as_ref().map(|f| fleet(f, t.sent)),
            schedule: (open && run.fleet.is_none()).then(|| schedule(run)),
            status: t.status.iter().map(|(c, n)| (*c, *n)).collect(),
            non2xx: t
                .status
                .iter()
                .filter(|(c, _)| !(200..300).contains(*c))
                .map(|(_, n)| n)
                .sum(),
            versions: t
                .versions
                .iter()
                .map(|(k, n)| (k.clone(), *n, 100.0 * *n as f64 / all as f64))
                .collect(),
            errors: t.errors.iter().map(|(c, n)| (c.clone(), *n)).collect(),
            in_flight_at_end: run.in_flight_at_end,
        }
    }
}

fn fleet(f: &Fleet, sent: u64) -> FleetFigures {
    let n = f.seconds.len().max(1) as f64;
    let (reported, live) = f.seconds.iter().fold((0u64, 0u64), |a, x| {
        (a.0 + x.reported as u64, a.1 + x.live as u64)
    });
    FleetFigures {
        offered: f.seconds.iter().map(|x| x.offered).sum::<f64>() / n,
        sent: sent as f64 / n,
        reported_pct: (live > 0).then(|| 100.0 * reported as f64 / live as f64),
        lost: f.lost_text(),
    }
}

fn schedule(run: &RunFile) -> Schedule {
    let (i, t): (&RunInfo, _) = (&run.info, &run.total);
    // Sends over the sending window: the drain after it sends nothing.
    let window = i.duration_s.map_or(run.elapsed_s, |d| d.min(run.elapsed_s));
    let sends = t.lateness.len();
    Schedule {
        target_rate: i.target_rate.unwrap_or(0.0),
        achieved: if window > 0.0 {
            sends as f64 / window
        } else {
            0.0
        },
        peak_connections: run.peak_lanes as u64 / i.streams.max(1) as u64,
        sends,
        late: t.late,
        lateness_ms: [
            q_ms(&t.lateness, 0.5),
            q_ms(&t.lateness, 0.99),
            t.lateness.max() as f64 / 1000.0,
        ],
        capped: t.capped,
        unsent: t.unsent,
    }
}
