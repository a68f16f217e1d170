//! The per-stage table of a run whose rate changed by plan (stages, steps, a ramp): what each
//! stage's schedule asked for beside what was sent and answered, so a user sees that the
//! open loop kept the schedule in every stage and where latency or errors began.
//!
//! The writer of the run file records the plan ([`StagePlan`], from the rate shape); the rows
//! are computed here from the run's per-second snapshots, each second counted in the stage
//! holding its middle.

use hist::Snapshot;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// One stage as the schedule planned it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StagePlan {
    /// Start, seconds from the run's start.
    pub start_s: f64,
    /// End, seconds from the run's start.
    pub end_s: f64,
    /// Sends the schedule asked for in the stage.
    pub planned: f64,
}

/// What one stage got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRow {
    /// The plan.
    #[serde(flatten)]
    pub plan: StagePlan,
    /// Sends started.
    pub sent: u64,
    /// Answers (any status).
    pub responses: u64,
    /// Transport errors plus 4xx/5xx answers.
    pub failed: u64,
    /// Median corrected latency, ms.
    pub p50_ms: f64,
    /// 99th percentile corrected latency, ms.
    pub p99_ms: f64,
}

impl StageRow {
    /// Sent as a share of planned (1.0: the schedule was kept).
    pub fn kept(&self) -> f64 {
        if self.plan.planned > 0.0 {
            self.sent as f64 / self.plan.planned
        } else {
            1.0
        }
    }
}

/// The rows of `plan` over a run's per-second snapshots.
pub fn rows(plan: &[StagePlan], intervals: &[Snapshot]) -> Vec<StageRow> {
    plan.iter()
        .map(|p| {
            let mut m = Snapshot::default();
            for s in intervals {
                let mid = (s.start + s.end) / 2.0;
                if mid >= p.start_s && mid < p.end_s {
                    m.merge(s);
                }
            }
            StageRow {
                plan: *p,
                sent: m.sent,
                responses: m.responses,
                failed: m.failed(),
                p50_ms: m.quantile_ms(0.5),
                p99_ms: m.quantile_ms(0.99),
            }
        })
        .collect()
}

/// The table, one line a stage.
pub fn table(rows: &[StageRow]) -> String {
    let mut out = String::from(
        "stage  from–to (s)     planned      sent  kept   answered    failed   p50 ms   p99 ms\n",
    );
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:>5}  {:>6.1}–{:<6.1} {:>9.0} {:>9} {:>5.1}% {:>10} {:>9} {:>8.2} {:>8.2}",
            i + 1,
            r.plan.start_s,
            r.plan.end_s,
            r.plan.planned,
            r.sent,
            100.0 * r.kept(),
            r.responses,
            r.failed,
            r.p50_ms,
            r.p99_ms
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(i: u64, sent: u64, us: u64) -> Snapshot {
        let mut s = Snapshot {
            start: i as f64,
            end: i as f64 + 1.0,
            sent,
            responses: sent,
            ..Default::default()
        };
        s.status.insert(200, sent);
        for _ in 0..sent {
            s.latency.record(us).unwrap();
        }
        s
    }

    #[test]
    fn each_second_counts_in_the_stage_holding_its_middle() {
        let plan = [
            StagePlan {
                start_s: 0.0,
                end_s: 2.0,
                planned: 20.0,
            },
            StagePlan {
                start_s: 2.0,
                end_s: 3.0,
                planned: 30.0,
            },
        ];
        let secs = [
            second(0, 10, 1000),
            second(1, 10, 1000),
            second(2, 27, 20_000),
        ];
        let r = rows(&plan, &secs);
        assert_eq!((r[0].sent, r[1].sent), (20, 27));
        assert_eq!((r[0].kept(), r[1].kept()), (1.0, 0.9));
        assert!((r[1].p50_ms - 20.0).abs() < 0.05);
        let t = table(&r);
        assert!(t.lines().nth(2).unwrap().contains(" 90.0%"), "{t}");
    }
}
