//! Per-phase results, cut from the aggregator's run file after the run: the seconds whose
//! middle falls in a phase's time range are merged (percentiles of all samples, within 0.1 %:
//! the histograms are merged, not the percentiles), checked against the phase's checks, and printed with
//! `report`'s autocannon tables.

use crate::scenario::Load;
use report::threshold::{self, Threshold};
use report::RunFile;

/// What a phase did, and whether it met its checks.
pub struct PhaseResult {
    /// Its name.
    pub name: String,
    /// The phase's seconds only.
    pub run: RunFile,
    /// Failed requests (transport errors and 4xx/5xx).
    pub failed: u64,
    /// Of those, connections reset or closed before the response: what overload must not
    /// cause (a server at its limit makes clients wait, or answers 503), so shown apart.
    pub resets: u64,
    /// p99 of the corrected latency, ms.
    pub p99_ms: f64,
    /// Each check not met, as a sentence.
    pub missed: Vec<String>,
    /// The load at the phase's end.
    pub load: Option<Load>,
    /// Responses per second over the phase's seconds after its first [`TAKE_UP_S`].
    pub achieved: f64,
    /// The phase's seconds after its first [`TAKE_UP_S`] (all of them in a phase that short),
    /// merged: what it sustained is judged on them.
    pub steady: hist::Snapshot,
    /// How many seconds `steady` holds.
    pub steady_s: f64,
    /// What the phase ran (servers, bots, load), as the demo set it; empty when unknown.
    pub ran: String,
}

/// Of the open-loop phases, the one with the highest rate served with no failed request and,
/// after its first [`TAKE_UP_S`] seconds, p99 under `p99_ms` and at least 95 % of the rate
/// asked ([`sustains`]: a layout that falls behind is not sustaining its rate, however low
/// its latency): (phase name, responses/s).
pub fn sustained(phases: &[PhaseResult], p99_ms: f64) -> Option<(&str, f64)> {
    phases
        .iter()
        .filter(|p| match p.load {
            Some(Load::Rate(r)) => p.failed == 0 && sustains(&p.steady, p.steady_s, r, p99_ms),
            _ => false,
        })
        .map(|p| (p.name.as_str(), p.achieved))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Seconds at a phase's start in which the bots may still ask the rate before it: they take
/// a new rate up from the second after the next. Not counted in what a phase sustained
/// (its tables still show every second).
pub const TAKE_UP_S: usize = 2;

/// Whether `total`, measured over `seconds`, sustained `rate`: answers, none failed, p99
/// under `p99_ms`, and at least 95 % of the rate served. The one rule of the sustained rate
/// and of `[search]`'s steps.
pub fn sustains(total: &hist::Snapshot, seconds: f64, rate: f64, p99_ms: f64) -> bool {
    seconds > 0.0
        && total.responses > 0
        && total.failed() == 0
        && total.quantile_ms(0.99) < p99_ms
        && total.responses as f64 / seconds >= 0.95 * rate
}

/// Requests in `total` whose connection was reset or closed before the response.
pub fn resets(total: &hist::Snapshot) -> u64 {
    let reset = st_http::ErrorClass::Reset.as_str();
    total.errors.get(reset).copied().unwrap_or(0)
}

/// The part of `run` from `start` to `end` (Unix seconds), described by `load`.
pub fn slice(run: &RunFile, start: f64, end: f64, load: Option<Load>) -> RunFile {
    let mut out = run.clone();
    let mut intervals = Vec::new();
    let mut seconds = Vec::new();
    if let Some(f) = &run.fleet {
        for (i, s) in f.seconds.iter().enumerate() {
            let mid = s.t as f64 + 0.5;
            if mid >= start && mid < end {
                if let Some(snap) = run.intervals.get(i) {
                    let mut snap = snap.clone();
                    snap.start = intervals.len() as f64;
                    snap.end = snap.start + 1.0;
                    intervals.push(snap);
                    seconds.push(*s);
                }
            }
        }
    }
    let mut total = hist::Snapshot::default();
    for s in &intervals {
        total.merge(s);
    }
    total.start = 0.0;
    total.end = intervals.len() as f64;
    out.elapsed_s = intervals.len() as f64;
    out.started_unix = seconds.first().map_or(start, |s| s.t as f64);
    out.total = total;
    out.series = report::runfile::series_of(&intervals);
    out.intervals = intervals;
    out.in_flight_at_end = 0;
    if let Some(f) = &mut out.fleet {
        f.seconds = seconds;
        f.events.retain(|e| e.t >= start && e.t < end);
    }
    match load {
        Some(Load::Rate(r)) => {
            out.info.mode = "open".into();
            out.info.rate = Some(format!("{r}/s in total"));
        }
        Some(Load::Schedule(s)) => {
            out.info.mode = "open".into();
            out.info.rate = Some(format!("{s} in total"));
        }
        Some(Load::Connections(c)) => {
            out.info.mode = "closed".into();
            out.info.rate = None;
            out.info.connections = c as usize;
        }
        None => {}
    }
    out
}

/// Cut, measure and check one phase.
pub fn evaluate(
    run: &RunFile,
    name: &str,
    start: f64,
    end: f64,
    load: Option<Load>,
    checks: &[Threshold],
) -> PhaseResult {
    let mut part = slice(run, start, end, load.clone());
    let failed = part.total.failed();
    let resets = resets(&part.total);
    let p99_ms = part.total.quantile_ms(0.99);
    let mut missed = Vec::new();
    if part.total.responses == 0 {
        missed.push("no responses at all".to_string());
    }
    part.verdicts = threshold::judge(checks, &part.total, part.elapsed_s);
    for v in part.verdicts.iter().filter(|v| !v.pass) {
        missed.push(format!("{} (measured {})", v.threshold, v.shown));
    }
    let skip = if part.intervals.len() > TAKE_UP_S {
        TAKE_UP_S
    } else {
        0
    };
    let mut steady = hist::Snapshot::default();
    for s in &part.intervals[skip..] {
        steady.merge(s);
    }
    let steady_s = (part.intervals.len() - skip) as f64;
    let achieved = if steady_s > 0.0 {
        steady.responses as f64 / steady_s
    } else {
        0.0
    };
    PhaseResult {
        name: name.to_string(),
        run: part,
        failed,
        resets,
        p99_ms,
        missed,
        load,
        achieved,
        ran: String::new(),
        steady,
        steady_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use report::{Fleet, FleetSecond};

    fn th(s: &str) -> Threshold {
        s.parse().unwrap()
    }

    fn second(ok: u64, failed: u64, lat_us: u64) -> hist::Snapshot {
        let mut s = hist::Snapshot {
            responses: ok,
            ..Default::default()
        };
        s.status.insert(200, ok);
        if failed > 0 {
            s.errors.insert("reset".into(), failed);
        }
        for _ in 0..ok {
            s.latency.record(lat_us).unwrap();
        }
        s
    }

    fn run() -> RunFile {
        let intervals = vec![
            second(10, 0, 1000),
            second(10, 2, 2000),
            second(10, 0, 50_000),
        ];
        RunFile {
            version: report::RUNFILE_VERSION,
            tool: "t".into(),
            started_unix: 100.0,
            info: Default::default(),
            elapsed_s: 3.0,
            interrupted: false,
            peak_lanes: 0,
            in_flight_at_end: 0,
            total: hist::Snapshot::default(),
            series: Vec::new(),
            intervals,
            fleet: Some(Fleet {
                seconds: (100..103)
                    .map(|t| FleetSecond {
                        t,
                        ..Default::default()
                    })
                    .collect(),
                events: Vec::new(),
                bots: Vec::new(),
                previous_runs: Vec::new(),
            }),
            summary: None,
            verdicts: Vec::new(),
            stages: Vec::new(),
        }
    }

    #[test]
    fn a_phase_gets_the_seconds_whose_middle_it_holds() {
        let r = run();
        let a = evaluate(&r, "a", 100.2, 102.0, None, &[th("failed<=0")]);
        assert_eq!(a.run.total.responses, 20);
        assert_eq!((a.failed, a.resets), (2, 2));
        assert_eq!(a.missed.len(), 1, "{:?}", a.missed);
        let b = evaluate(
            &r,
            "b",
            102.0,
            103.0,
            None,
            &[th("failed<=0"), th("p99<=10ms")],
        );
        assert_eq!(b.failed, 0);
        assert!(b.p99_ms > 49.0);
        assert_eq!(b.missed.len(), 1, "{:?}", b.missed);
        assert!(
            b.missed[0].starts_with("p99<=10ms (measured 5"),
            "{:?}",
            b.missed
        );
        let empty = evaluate(&r, "c", 200.0, 210.0, None, &[]);
        assert_eq!(empty.missed, vec!["no responses at all".to_string()]);
    }

    #[test]
    fn a_step_is_sustained_when_its_rate_is_answered_cleanly() {
        let s = second(1200, 0, 1000);
        assert!(sustains(&s, 3.0, 400.0, 10.0));
        assert!(sustains(&second(1140, 0, 1000), 3.0, 400.0, 10.0), "95 %");
        assert!(
            !sustains(&second(1110, 0, 1000), 3.0, 400.0, 10.0),
            "370/s of 400/s"
        );
        assert!(
            !sustains(&second(1200, 1, 1000), 3.0, 400.0, 10.0),
            "one failed"
        );
        assert!(
            !sustains(&second(1200, 0, 20_000), 3.0, 400.0, 10.0),
            "p99 20 ms"
        );
    }

    #[test]
    fn the_sustained_rate_is_the_highest_clean_phase_under_the_p99() {
        let r = run();
        let phase = |name: &str, start: f64, end: f64, rate: f64| {
            evaluate(&r, name, start, end, Some(Load::Rate(rate)), &[])
        };
        // Second 100: 10/s at 1 ms; second 101: 2 failures; second 102: 10/s at 50 ms.
        let ps = vec![
            phase("clean", 100.0, 101.0, 10.0),
            phase("failing", 101.0, 102.0, 10.0),
            phase("slow", 102.0, 103.0, 10.0),
            phase("behind", 100.0, 101.0, 20.0),
        ];
        assert_eq!(ps[0].achieved, 10.0);
        assert_eq!(sustained(&ps, 10.0), Some(("clean", 10.0)));
        // A looser p99 admits the slow second; the failing one never counts.
        assert_eq!(sustained(&ps[1..], 100.0), Some(("slow", 10.0)));
        assert_eq!(sustained(&ps[1..], 10.0), None);
        let closed = evaluate(&r, "c", 100.0, 101.0, Some(Load::Connections(5)), &[]);
        assert_eq!(sustained(&[closed], 10.0), None, "closed loop asks no rate");
    }
}
