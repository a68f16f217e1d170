//! Seconds: pushes checked and merged by wall-clock second (each bot's high-water mark keeps
//! a retried push from counting twice), published once bots had [`PUBLISH_DELAY`] to report,
//! revised by late pushes, and closed (packed) past the late window.

use super::{Plan, Refused, State, Tick, PUBLISH_DELAY};
use crate::wire::{Interval, Push};
use hist::sparse::WireSnapshot;
use hist::Snapshot;
use report::point::Point;
use report::FleetSecond;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A second still decoded.
#[derive(Debug, Clone, Default)]
pub(super) struct Open {
    /// Its snapshot packed for saving, until it changes (saving every open second every second
    /// would spend most of the ingest budget on re-compressing unchanged histograms).
    pub(super) packed: Option<String>,
    pub(super) published: bool,
    /// Got data since it was published: send a revision.
    pub(super) dirty: bool,
    pub(super) offered: f64,
    pub(super) live: u32,
}

impl Open {
    /// The second's cluster-wide extras. A bot that reported a second was live in it, and a
    /// second bots reported while the aggregator's offered rate read 0 (its first seconds
    /// after a restart, before the bots' shares were split again: their retained outboxes
    /// re-sent it) was offered what the plan asks of the bots that reported it: coverage
    /// never passes 100 % and offered follows the plan through a restart.
    pub(super) fn fleet(&self, t: u64, reported: u32, plan: &Plan) -> FleetSecond {
        let offered = if self.offered == 0.0 && reported > 0 {
            match plan {
                Plan::Total { rate } => *rate,
                Plan::Shaped { .. } => plan.scheduled_in(t).unwrap_or(0.0),
                Plan::PerBot { rate } => rate * reported as f64,
                Plan::Connections { .. } | Plan::Idle => 0.0,
            }
        } else {
            self.offered
        };
        FleetSecond {
            t,
            offered,
            reported,
            live: self.live.max(reported),
        }
    }
}

/// A closed second: packed, with its point for the UI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Closed {
    /// The merged snapshot as JSON (histograms compressed).
    pub packed: String,
    /// Offered rate, coverage.
    pub fleet: FleetSecond,
}

pub(super) fn pack(s: &Snapshot) -> String {
    serde_json::to_string(s).expect("a snapshot serializes")
}

pub(super) fn unpack(p: &str) -> Snapshot {
    serde_json::from_str(p).unwrap_or_default()
}

impl State {
    /// A bot's push: check, count what is new, ignore what was counted. Returns the bot's
    /// high-water mark and assignment generation.
    pub fn push(&mut self, now: f64, id: u64, p: Push) -> Result<(u64, u64), Refused> {
        let refuse = |s: &mut State, code: u16, why: String| {
            s.refused += 1;
            Err(Refused(code, why))
        };
        if !self.bots.contains_key(&id) {
            return refuse(self, 404, format!("unknown bot {id}: register first"));
        }
        if let Err(e) = p.check() {
            return refuse(self, 400, e);
        }
        let oldest = (now - self.cfg.max_late as f64).max(self.started_unix - 5.0);
        let newest = now + 10.0;
        if let Some(i) = p
            .intervals
            .iter()
            .find(|i| (i.t as f64) < oldest.floor() || (i.t as f64) > newest)
        {
            return refuse(
                self,
                422,
                format!(
                    "interval {} is outside the accepted window {:.0}..{:.0} (bot clock skew?)",
                    i.t, oldest, newest
                ),
            );
        }
        let bot = self.bots.get_mut(&id).expect("checked above");
        let back = bot.record.state != "live";
        let hwm = bot.hwm;
        bot.seen = now;
        bot.record.last_seen = now;
        bot.record.skew_ms = (p.clock_unix - now) * 1000.0;
        bot.record.dropped = p.dropped;
        bot.flushed = (p.idle && p.generation == bot.assignment.generation).then_some(p.generation);
        if back {
            bot.record.state = "live".into();
        }
        let mut fresh: Vec<Interval> = Vec::new();
        for i in p.intervals {
            if i.t <= hwm {
                self.duplicates += 1;
            } else {
                fresh.push(i);
            }
        }
        let bot = self.bots.get_mut(&id).expect("checked above");
        if let Some(last) = fresh.last() {
            bot.hwm = last.t;
            bot.reported();
        }
        if back {
            bot.silent_since(None);
        }
        for i in &fresh {
            bot.record.responses += i.snap.responses;
            bot.record.errors += i.snap.failed();
        }
        let (hwm, generation) = (bot.hwm, bot.assignment.generation);
        // Only a bot that is back is named in an event (not a copy per push).
        let name = back.then(|| bot.record.name.clone());
        for mut i in fresh {
            hist::record::merge_names(
                &mut self.named,
                &i.snap.names,
                crate::wire::MAX_NAMES as usize,
                |into, r| {
                    // Checked on arrival: cannot fail (see `add`).
                    let _ = r.merge_into(into);
                },
            );
            i.snap.names.clear();
            // A bot's interval bounds count from its own run's start; on the aggregator's
            // timeline the second starts at t (seconds since the run began) and keeps the
            // bot's length (short for a bot's first or last second).
            let len = (i.snap.end - i.snap.start).clamp(0.0, 1.0);
            i.snap.start = (i.t as f64 - self.started_unix.floor()).max(0.0);
            i.snap.end = i.snap.start + len;
            self.add(i.t, &i.snap);
        }
        if let Some(name) = name {
            self.event(now, "bot_back", format!("bot {name} (#{id}) is back"));
            self.joined_live(now, id);
        }
        Ok((hwm, generation))
    }

    pub(super) fn add(&mut self, t: u64, snap: &WireSnapshot) {
        self.accepted += 1;
        // Checked on arrival (counts agree, values are numbers): the merge cannot fail, and
        // if it did the second would only miss this bot, never count it twice.
        if let Some(c) = self.closed.get_mut(&t) {
            let _ = snap.merge_into(&mut self.closed_total);
            // Past the late window: merge into the packed copy.
            let mut s = unpack(&c.packed);
            let _ = snap.merge_into(&mut s);
            c.fleet.reported += 1;
            c.packed = pack(&s);
            self.history.insert(t, Point::of(t, &s, Some(&c.fleet)));
            self.late_closed.push(t);
            return;
        }
        self.intervals.add_with(t, |s| {
            let _ = snap.merge_into(s);
        });
        let live = self.live_count();
        let offered = self.offered_in(t);
        let o = self.open.entry(t).or_insert_with(|| Open {
            offered,
            live,
            ..Default::default()
        });
        o.packed = None;
        if o.published {
            o.dirty = true;
        }
    }

    /// What was offered in second `t`: a schedule's count in it, else the rate asked now.
    fn offered_in(&self, t: u64) -> f64 {
        self.plan.scheduled_in(t).unwrap_or(self.offered())
    }

    /// Publish seconds that ended long enough ago, revise published ones that changed, and
    /// close those past the late window.
    pub(super) fn publish(&mut self, now: f64) -> Tick {
        let mut out = Tick::default();
        // Publish seconds that ended long enough ago; revise published ones that changed.
        let due = (now - PUBLISH_DELAY).floor() as u64;
        let live = self.live_count();
        let keys: Vec<u64> = self.open.keys().copied().collect();
        for t in keys {
            let o = self.open.get_mut(&t).expect("key from the map");
            if !o.published && t < due {
                o.published = true;
                let (reported, snap) = self.intervals.get(t).unwrap_or((0, &self.empty));
                out.points
                    .push(Point::of(t, snap, Some(&o.fleet(t, reported, &self.ran))));
            } else if o.dirty {
                o.dirty = false;
                let (reported, snap) = self.intervals.get(t).unwrap_or((0, &self.empty));
                out.revisions
                    .push(Point::of(t, snap, Some(&o.fleet(t, reported, &self.ran))));
            }
        }
        let mut revised_closed = Vec::new();
        for t in std::mem::take(&mut self.late_closed) {
            if let (Some(p), Some(c)) = (self.history.get(&t), self.closed.get(&t)) {
                out.revisions.push(p.clone());
                revised_closed.push((t, c.clone()));
            }
        }
        // Make sure a second exists for every second while bots are live, even one nobody
        // reported (coverage 0 is worth seeing).
        if live > 0 && !self.finished {
            let t = (now - 1.0).floor() as u64;
            let offered = self.offered_in(t);
            self.open.entry(t).or_insert_with(|| Open {
                offered,
                live,
                ..Default::default()
            });
        }
        // Close seconds past the late window.
        let cut = (now as u64).saturating_sub(self.cfg.late_window);
        out.closed = revised_closed;
        out.closed.extend(self.close_before(cut));
        out
    }

    /// Close every second (the run is over).
    pub fn close_all(&mut self) -> Vec<(u64, Closed)> {
        self.close_before(u64::MAX)
    }

    pub(super) fn close_before(&mut self, cut: u64) -> Vec<(u64, Closed)> {
        let mut out = Vec::new();
        let mut held: BTreeMap<u64, (u32, Snapshot)> = self
            .intervals
            .pop_before(cut)
            .into_iter()
            .map(|(t, n, s)| (t, (n, s)))
            .collect();
        let keep = self.open.split_off(&cut);
        let old = std::mem::replace(&mut self.open, keep);
        for t in old.keys() {
            held.entry(*t).or_default();
        }
        for (t, (reported, snap)) in held {
            let o = old.get(&t).cloned().unwrap_or_default();
            let fleet = o.fleet(t, reported, &self.ran);
            self.history.insert(t, Point::of(t, &snap, Some(&fleet)));
            self.closed_total.merge(&snap);
            let c = Closed {
                packed: pack(&snap),
                fleet,
            };
            self.closed.insert(t, c.clone());
            out.push((t, c));
        }
        out
    }
}
