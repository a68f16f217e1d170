//! The per-stage table of a run whose load changed by plan (stages, steps, a ramp; or a closed
//! loop's connection stages): what each stage's schedule asked for beside what was sent and
//! answered, so a user sees that the open loop kept the schedule in every stage and where
//! latency or errors began.
//!
//! The writer of the run file records the plan ([`StagePlan`], from the rate shape); the rows
//! are computed here from the run's per-second snapshots, each second counted in the stage
//! holding its middle; the seconds after the last stage (the drain: answers to its last sends)
//! count in the last, so that the stages' answers add up to the run's.

use crate::format::{count, ms, trim};
use hist::Snapshot;
use serde::{Deserialize, Serialize};

/// One stage as the schedule planned it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StagePlan {
    /// Start, seconds from the run's start.
    pub start_s: f64,
    /// End, seconds from the run's start.
    pub end_s: f64,
    /// Open loop: sends the schedule asked for in the stage (a closed loop plans none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<f64>,
    /// Closed loop in stages: busy connections at the stage's start and end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<[usize; 2]>,
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
    /// Sent as a share of planned (1.0: the schedule was kept); `None` without a plan.
    pub fn kept(&self) -> Option<f64> {
        let planned = self.plan.planned?;
        Some(if planned > 0.0 {
            self.sent as f64 / planned
        } else {
            1.0
        })
    }
}

/// The rows of `plan` over a run's per-second snapshots.
pub fn rows(plan: &[StagePlan], intervals: &[Snapshot]) -> Vec<StageRow> {
    plan.iter()
        .enumerate()
        .map(|(i, p)| {
            let last = i + 1 == plan.len();
            let mut m = Snapshot::default();
            for s in intervals {
                let mid = (s.start + s.end) / 2.0;
                if mid >= p.start_s && (mid < p.end_s || last) {
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

/// The table, one row a stage: an open loop's planned and kept sends, or a closed loop's
/// busy connections.
pub fn table(rows: &[StageRow]) -> String {
    let closed = rows.iter().any(|r| r.plan.connections.is_some());
    let head: &[&str] = if closed {
        &[
            "Stage",
            "Seconds",
            "Connections",
            "Sent",
            "Answered",
            "Failed",
            "p50",
            "p99",
        ]
    } else {
        &[
            "Stage", "Seconds", "Planned", "Sent", "Kept", "Answered", "Failed", "p50", "p99",
        ]
    };
    let mut t = vec![head.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for (i, r) in rows.iter().enumerate() {
        let mut row = vec![
            (i + 1).to_string(),
            format!("{}–{}", trim(r.plan.start_s, 1), trim(r.plan.end_s, 1)),
        ];
        match r.plan.connections {
            Some([a, b]) if a == b => row.push(a.to_string()),
            Some([a, b]) => row.push(format!("{a}→{b}")),
            None if closed => row.push("–".into()),
            None => {}
        }
        if !closed {
            row.push(
                r.plan
                    .planned
                    .map_or("–".into(), |p| count(p.round() as u64)),
            );
        }
        row.push(count(r.sent));
        if !closed {
            row.push(
                r.kept()
                    .map_or("–".into(), |k| format!("{:.1}%", 100.0 * k)),
            );
        }
        row.extend([
            count(r.responses),
            count(r.failed),
            ms(r.p50_ms),
            ms(r.p99_ms),
        ]);
        t.push(row);
    }
    crate::table::boxed(&t)
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
                planned: Some(20.0),
                connections: None,
            },
            StagePlan {
                start_s: 2.0,
                end_s: 3.0,
                planned: Some(30.0),
                connections: None,
            },
        ];
        // The drain after the last stage: answers to its last sends, none sent.
        let mut drain = second(3, 3, 20_000);
        drain.sent = 0;
        let secs = [
            second(0, 10, 1000),
            second(1, 10, 1000),
            second(2, 27, 20_000),
            drain,
        ];
        let r = rows(&plan, &secs);
        assert_eq!((r[0].sent, r[1].sent), (20, 27));
        assert_eq!((r[0].responses, r[1].responses), (20, 30));
        assert_eq!((r[0].kept(), r[1].kept()), (Some(1.0), Some(0.9)));
        assert!((r[1].p50_ms - 20.0).abs() < 0.05);
        let t = table(&r);
        assert!(t.lines().nth(5).unwrap().contains(" 90.0% "), "{t}");
    }

    /// A closed loop's stages: busy connections instead of planned sends.
    #[test]
    fn a_closed_loop_shows_connections_not_a_plan() {
        let plan = [
            StagePlan {
                start_s: 0.0,
                end_s: 1.0,
                planned: None,
                connections: Some([0, 4]),
            },
            StagePlan {
                start_s: 1.0,
                end_s: 2.0,
                planned: None,
                connections: Some([4, 4]),
            },
        ];
        let r = rows(&plan, &[second(0, 10, 1000), second(1, 40, 1000)]);
        assert_eq!((r[0].kept(), r[1].sent), (None, 40));
        let t = table(&r);
        assert!(t.contains("Connections") && !t.contains("Planned"), "{t}");
        assert!(t.contains(" 0→4 ") && t.contains(" 4 "), "{t}");
        // A run file of before connection stages reads the same.
        let old: StagePlan =
            serde_json::from_str(r#"{"start_s":0,"end_s":1,"planned":5}"#).unwrap();
        assert_eq!((old.planned, old.connections), (Some(5.0), None));
    }
}
