//! What a bot measured until the aggregator has it: seconds still being measured, sealed
//! seconds waiting for an acknowledgement (oldest first), and acknowledged ones retained for
//! an aggregator that restarts from its last saved second.

use crate::wire::{Interval, MAX_BATCH, MAX_BODY, MAX_NAMES};
use hist::{Intervals, Snapshot};
use std::collections::VecDeque;

/// The seconds of one bot on their way to the aggregator.
///
/// Bounded: at most `cap` sealed seconds wait for an acknowledgement. When it is full (the
/// aggregator unreachable for longer than that), sealing a new second drops the oldest
/// waiting one and counts it ([`Outbox::dropped`], sent with every push); the newest seconds
/// are the ones kept. Acknowledged seconds are kept for [`RETAIN`](super::RETAIN) seconds
/// more.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// Seconds still being measured (a second's parts arrive from each worker).
    measuring: Intervals,
    /// Seconds up to this one have been sealed: a later part joins the next second.
    sealed: u64,
    /// Sealed, not acknowledged, oldest first.
    unacked: VecDeque<Interval>,
    /// Acknowledged, oldest first, for an aggregator that restarts.
    retained: VecDeque<Interval>,
    cap: usize,
    retain: usize,
    /// Sealed seconds dropped because the outbox was full (or a push was refused for good).
    pub dropped: u64,
    /// Answers measured, all seconds together.
    pub responses: u64,
}

impl Outbox {
    /// An empty outbox holding at most `cap` unacknowledged seconds (at least one) and
    /// retaining `retain` acknowledged ones.
    pub fn new(cap: usize, retain: usize) -> Outbox {
        Outbox {
            measuring: Intervals::new(),
            sealed: 0,
            unacked: VecDeque::new(),
            retained: VecDeque::new(),
            cap: cap.max(1),
            retain,
            dropped: 0,
            responses: 0,
        }
    }

    /// A part of Unix second `t` the load measured. A second already sealed (a draining run's
    /// last part) joins the next one.
    pub fn measured(&mut self, t: u64, s: &Snapshot) {
        self.responses += s.responses;
        self.measuring.add(t.max(self.sealed + 1), s);
    }

    /// Seal the seconds before `before`, dropping the oldest waiting ones past the bound. A
    /// second holding parts of two runs (a restart for a new spec) may name more requests
    /// than a fleet keeps apart: the rest go to `other`, as the aggregator would refuse it.
    pub fn seal(&mut self, before: u64) {
        for (t, _, mut s) in self.measuring.pop_before(before) {
            if s.names.len() > MAX_NAMES as usize + 1 {
                let all = std::mem::take(&mut s.names);
                hist::record::merge_names(&mut s.names, &all, MAX_NAMES as usize, |i, r| {
                    i.merge(r)
                });
            }
            self.unacked.push_back(Interval {
                t,
                snap: (&s).into(),
            });
            self.sealed = self.sealed.max(t);
        }
        while self.unacked.len() > self.cap {
            self.unacked.pop_front();
            self.dropped += 1;
        }
    }

    /// The oldest waiting seconds, at most a push's worth (in count, and in bytes: seconds
    /// with many named requests are larger); and whether they are all of them.
    pub fn batch(&self) -> (Vec<Interval>, bool) {
        let mut bytes = 0;
        let batch: Vec<Interval> = self
            .unacked
            .iter()
            .take(MAX_BATCH)
            .enumerate()
            .take_while(|(n, i)| {
                bytes += i.weight();
                // Weights are upper bounds; the push's own fields fit in what is left.
                *n == 0 || bytes <= MAX_BODY - (64 << 10)
            })
            .map(|(_, i)| i.clone())
            .collect();
        let all = batch.len() == self.unacked.len();
        (batch, all)
    }

    /// The aggregator has every second up to `hwm`: those move to the retained ones. Returns
    /// whether any did (an acknowledgement already seen, or an older one, changes nothing).
    pub fn acked(&mut self, hwm: u64) -> bool {
        let before = self.unacked.len();
        while self.unacked.front().is_some_and(|i| i.t <= hwm) {
            self.retained
                .push_back(self.unacked.pop_front().expect("checked"));
        }
        while self.retained.len() > self.retain {
            self.retained.pop_front();
        }
        self.unacked.len() < before
    }

    /// The aggregator will never take the `n` oldest waiting seconds: drop and count them.
    pub fn refused(&mut self, n: usize) {
        for _ in 0..n {
            self.unacked.pop_front();
        }
        self.dropped += n as u64;
    }

    /// A (restarted) aggregator has every second up to `hwm`: every later one, retained or
    /// waiting, is to be sent again, in order.
    pub fn rewind(&mut self, hwm: u64) {
        let mut again: VecDeque<Interval> = self.retained.drain(..).filter(|i| i.t > hwm).collect();
        again.extend(self.unacked.drain(..).filter(|i| i.t > hwm));
        self.unacked = again;
    }

    /// Sealed seconds not acknowledged yet.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Some second is still being measured.
    pub fn measuring(&self) -> bool {
        !self.measuring.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second with `names` named requests of one answer each.
    fn named_second(names: usize) -> Snapshot {
        let mut total = Snapshot::default();
        for i in 0..names {
            let mut n = Snapshot {
                end: 1.0,
                responses: 1,
                sent: 1,
                ..Default::default()
            };
            n.status.insert(200, 1);
            n.latency.record(1000 + i as u64).unwrap();
            n.service.record(900 + i as u64).unwrap();
            total.merge(&n);
            total.names.insert(format!("GET /api/items/{i}"), n);
        }
        total
    }

    #[test]
    fn two_runs_in_one_second_name_no_more_than_a_fleet_keeps() {
        let mut o = Outbox::new(10, 0);
        let mut other = named_second(MAX_NAMES as usize);
        other.names = std::mem::take(&mut other.names)
            .into_iter()
            .map(|(k, v)| (k.replace("items", "users"), v))
            .collect();
        o.measured(1, &named_second(MAX_NAMES as usize));
        o.measured(1, &other);
        o.seal(2);
        let snap = &o.unacked[0].snap;
        assert_eq!(snap.names.len(), MAX_NAMES as usize + 1);
        assert_eq!(snap.names["other"].responses, MAX_NAMES);
        crate::wire::check_snapshot(snap).unwrap();
    }

    #[test]
    fn a_batch_of_seconds_with_many_names_stays_inside_a_push() {
        let mut o = Outbox::new(100, 0);
        let second = named_second(crate::wire::MAX_NAMES as usize);
        for t in 1..=20 {
            o.measured(t, &second);
        }
        o.seal(21);
        let one = serde_json::to_vec(&o.unacked[0]).unwrap().len();
        assert!(o.unacked[0].weight() >= one, "the weight bounds the size");
        let (batch, all) = o.batch();
        let bytes = serde_json::to_vec(&batch).unwrap().len();
        assert!(!all && batch.len() > 1, "{} seconds", batch.len());
        assert!(bytes <= MAX_BODY, "{bytes} bytes");
        // Without names, a batch is its count.
        let mut o = Outbox::new(100, 0);
        for t in 1..=80 {
            o.measured(t, &named_second(0));
        }
        o.seal(81);
        assert_eq!(o.batch().0.len(), MAX_BATCH);
    }
}
