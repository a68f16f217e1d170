//! What is saved every second besides the closed seconds (see `store`), and the restore of a
//! run from it: totals, high-water marks and bots as they were, nobody stale for the
//! downtime itself, the live bots' shares split again.

use super::seconds::{pack, unpack, Closed, Open};
use super::{Bot, Config, Plan, State};
use load::Spec;
use report::point::Point;
use report::Event;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What is persisted besides the closed seconds (see `store`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    /// This run.
    pub run_id: String,
    /// Unix time the run started.
    pub started_unix: f64,
    /// The load spec.
    pub spec: Spec,
    /// The split.
    pub plan: Plan,
    /// The last plan that was not idle (absent in files from before it was saved: the plan).
    #[serde(default)]
    pub ran: Option<Plan>,
    /// The bots.
    pub bots: Vec<Bot>,
    /// Next bot id.
    pub next_id: u64,
    /// Assignment generation counter.
    pub generation: u64,
    /// Seconds still open, packed.
    pub open: Vec<(u64, Closed)>,
    /// Events.
    pub events: Vec<Event>,
    /// Runs the bots were in before this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_runs: Vec<String>,
    /// The run was started with a schedule.
    #[serde(default)]
    pub scheduled_run: bool,
    /// When its first schedule started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_schedule_start: Option<f64>,
    /// Named requests, the whole run (saved with the high-water marks they agree with), in
    /// the wire's form: written every second, it costs no compression and no copy of the
    /// histograms.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, hist::sparse::WireSnapshot>,
}

impl State {
    /// Pick up a run from what was saved and the closed seconds of the journal.
    pub fn restore(cfg: Config, saved: Saved, closed: BTreeMap<u64, Closed>, now: f64) -> State {
        let mut s = State::new(
            cfg,
            saved.run_id,
            saved.started_unix,
            saved.spec,
            saved.plan.clone(),
        );
        // An aggregator idle when it stopped still describes the load its run ran.
        s.ran = saved.ran.unwrap_or(saved.plan);
        s.events = saved.events;
        s.previous_runs = saved.previous_runs;
        s.scheduled_run = saved.scheduled_run;
        s.first_schedule_start = saved.first_schedule_start;
        s.named = (saved.names.iter())
            .filter_map(|(k, w)| Some((k.clone(), w.to_snapshot().ok()?)))
            .collect();
        s.new_events.clear();
        s.next_id = saved.next_id;
        s.generation = saved.generation;
        for b in saved.bots {
            s.bots.insert(b.record.id, b);
        }
        for (t, c) in closed {
            let snap = unpack(&c.packed);
            s.closed_total.merge(&snap);
            s.history.insert(t, Point::of(t, &snap, Some(&c.fleet)));
            s.closed.insert(t, c);
        }
        for (t, c) in saved.open {
            if s.closed.contains_key(&t) {
                // Closed in the journal after this was saved: the journal's copy is complete.
                continue;
            }
            s.intervals.restore(t, c.fleet.reported, unpack(&c.packed));
            s.open.insert(
                t,
                Open {
                    packed: None,
                    published: false,
                    dirty: false,
                    offered: c.fleet.offered,
                    live: c.fleet.live,
                },
            );
        }
        // The restarted aggregator has not heard from anyone yet; nobody goes stale for the
        // downtime itself.
        for b in s.bots.values_mut() {
            if b.record.state == "live" || b.record.state == "stale" {
                b.seen = now;
            }
        }
        // The live bots' shares and the offered rate are not saved: split again, or offered
        // reads 0 (and a second's live bots 0) until some bot's state changes.
        s.resplit(now);
        s.event(
            now,
            "run",
            "aggregator restarted; run picked up from disk".into(),
        );
        s
    }

    /// What to persist now (the closed seconds are in the journal already).
    pub fn saved(&mut self) -> Saved {
        for (t, o) in self.open.iter_mut() {
            if o.packed.is_none() {
                let (_, snap) = self.intervals.get(*t).unwrap_or((0, &self.empty));
                o.packed = Some(pack(snap));
            }
        }
        Saved {
            run_id: self.run_id.clone(),
            started_unix: self.started_unix,
            spec: self.spec.clone(),
            plan: self.plan.clone(),
            ran: Some(self.ran.clone()),
            scheduled_run: self.scheduled_run,
            first_schedule_start: self.first_schedule_start,
            names: (self.named.iter())
                .map(|(k, s)| (k.clone(), s.into()))
                .collect(),
            bots: self.bots.values().cloned().collect(),
            next_id: self.next_id,
            generation: self.generation,
            open: self
                .open
                .iter()
                .map(|(t, o)| {
                    let reported = self.intervals.get(*t).map_or(0, |x| x.0);
                    (
                        *t,
                        Closed {
                            packed: o.packed.clone().expect("packed above"),
                            fleet: o.fleet(*t, reported, &self.ran),
                        },
                    )
                })
                .collect(),
            events: self.events.clone(),
            previous_runs: self.previous_runs.clone(),
        }
    }
}
