//! Measurements that stay bounded and merge: the unit every reader of a run shares.
//!
//! A [`Snapshot`] is what one worker (or one loadbot, or a whole run) measured over an
//! interval: response counts by status, error counts by class, bytes, and HDR histograms of
//! latency in microseconds. Memory is fixed by the histograms' precision, never by the number of
//! requests, and [`Snapshot::merge`] is associative and commutative, so per-worker, per-second
//! and per-bot snapshots can be summed in any grouping (past the names' bound, which names
//! end up in `other` depends on the order). The JSON codec stores each histogram as
//! HDR V2 compressed + base64 (`histogram_codec`), which other HDR tools can decode too.
//!
//! Loadbots send snapshots in [`sparse`]'s form (histograms as their non-empty buckets), which
//! the aggregator merges without decoding whole histograms; [`Intervals`] is the one
//! per-interval merge the engine's controller and the aggregator share.
//!
//! Recording happens in the load engine; reports and the aggregator only merge and read.

use hdrhistogram::Histogram;
pub use record::Record;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod histogram_codec;
pub mod record;
pub mod sparse;
pub mod varint;

/// A send that starts more than this many µs after its intended time counts as late.
pub const LATE_US: u64 = 1000;

/// Significant figures kept by every latency histogram: 0.1% relative error.
pub const SIGFIG: u8 = 3;

/// An empty latency histogram (microseconds, auto-resizing, 3 significant figures).
pub fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new(SIGFIG).expect("3 significant figures is valid");
    h.auto(true);
    h
}

/// What was measured over one interval, with its histograms as HDR histograms: what the
/// engine records, the aggregator merges and run files keep (see [`record`]).
pub type Snapshot = Record<Histogram<u64>>;

impl Snapshot {
    /// Add `other` into `self`. The interval becomes the union of both.
    pub fn merge(&mut self, other: &Snapshot) {
        self.add_counts(other);
        // Auto-resizing histograms of equal precision always merge.
        self.latency
            .add(&other.latency)
            .expect("auto-resizing histograms merge");
        self.service
            .add(&other.service)
            .expect("auto-resizing histograms merge");
        self.lateness
            .add(&other.lateness)
            .expect("auto-resizing histograms merge");
        self.merge_names(other, |into, r| into.merge(r));
    }

    /// The corrected-latency percentile `q` (0..=1) in ms; 0 when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        quantile_ms(&self.latency, q)
    }

    /// The per-second summary of this snapshot (used for the Req/Sec and Bytes/Sec rows).
    pub fn sample(&self, second: u32) -> SecondSample {
        let q = |p: f64| self.quantile_ms(p);
        SecondSample {
            second,
            seconds: self.seconds(),
            requests: self.responses,
            errors: self.error_count(),
            bytes: self.bytes,
            bytes_sent: self.bytes_sent,
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            max_ms: self.latency.max() as f64 / 1000.0,
        }
    }
}

/// Add every count of `from` into `into`.
pub(crate) fn add_map<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (k, v) in from {
        match into.get_mut(k) {
            Some(n) => *n += v,
            None => {
                into.insert(k.clone(), *v);
            }
        }
    }
}

/// Percentile `q` (0..=1) of a µs histogram, in ms; 0 for an empty histogram.
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Snapshots of many sources (workers, loadbots) merged interval by interval: the one merge the
/// load engine's controller and the aggregator share. An interval is keyed by its number (a
/// second of the run, or a wall-clock second) and counts how many reports it holds, so the
/// owner can decide when it is complete.
#[derive(Debug, Default, Clone)]
pub struct Intervals {
    open: BTreeMap<u64, (u32, Snapshot)>,
}

impl Intervals {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Put back interval `key` as it was saved: `snap` merged from `reports` reports (a
    /// restart must not count them as one).
    pub fn restore(&mut self, key: u64, reports: u32, snap: Snapshot) {
        self.open.insert(key, (reports, snap));
    }

    /// Merge one source's report for interval `key`; returns how many reports it now holds.
    pub fn add(&mut self, key: u64, snap: &Snapshot) -> u32 {
        self.add_with(key, |s| s.merge(snap))
    }

    /// As [`Intervals::add`], with the merge done by `merge` (e.g. from [`sparse::WireSnapshot`]).
    pub fn add_with(&mut self, key: u64, merge: impl FnOnce(&mut Snapshot)) -> u32 {
        let e = self
            .open
            .entry(key)
            .or_insert_with(|| (0, Snapshot::default()));
        e.0 += 1;
        merge(&mut e.1);
        e.0
    }

    /// The oldest interval, if it holds at least `reports` reports: removed and returned.
    pub fn pop_complete(&mut self, reports: u32) -> Option<(u64, Snapshot)> {
        let e = self.open.first_entry()?;
        if e.get().0 < reports {
            return None;
        }
        let (k, (_, s)) = e.remove_entry();
        Some((k, s))
    }

    /// Remove and return every interval with a key below `key`, oldest first.
    pub fn pop_before(&mut self, key: u64) -> Vec<(u64, u32, Snapshot)> {
        let keep = self.open.split_off(&key);
        let old = std::mem::replace(&mut self.open, keep);
        old.into_iter().map(|(k, (n, s))| (k, n, s)).collect()
    }

    /// An interval still open: its report count and merged snapshot.
    pub fn get(&self, key: u64) -> Option<(u32, &Snapshot)> {
        self.open.get(&key).map(|(n, s)| (*n, s))
    }

    /// Keys of the intervals still open, oldest first.
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.open.keys().copied()
    }

    /// Everything still open merged into one snapshot, and emptied.
    pub fn drain_all(&mut self) -> Snapshot {
        let mut s = Snapshot::default();
        for (_, (_, x)) in std::mem::take(&mut self.open) {
            s.merge(&x);
        }
        s
    }

    /// No interval open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// One second of a run, small enough to keep for every second of an hour-long run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondSample {
    /// Seconds since the start of the run (0 is the first second).
    pub second: u32,
    /// Length of the interval in seconds: 1 except perhaps for the last sample of a run.
    pub seconds: f64,
    /// Responses completed in this second.
    pub requests: u64,
    /// Errors in this second.
    pub errors: u64,
    /// Bytes read in this second.
    pub bytes: u64,
    /// Bytes written in this second.
    #[serde(default)]
    pub bytes_sent: u64,
    /// Median corrected latency in this second, ms.
    pub p50_ms: f64,
    /// 99th percentile corrected latency in this second, ms.
    pub p99_ms: f64,
    /// Maximum corrected latency in this second, ms.
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(seed: u64) -> Snapshot {
        let mut s = Snapshot {
            start: seed as f64,
            end: seed as f64 + 1.0,
            ..Default::default()
        };
        for i in 0..100 {
            let v = 1 + (i * 7919 + seed * 104729) % 100_000;
            s.latency.record(v).unwrap();
            s.service.record(v / 2 + 1).unwrap();
        }
        s.responses = 90 + seed;
        s.bytes = 1000 * seed;
        *s.status.entry(200).or_default() += 90;
        *s.status.entry(500 + seed as u16 % 3).or_default() += seed;
        *s.errors.entry(format!("e{}", seed % 2)).or_default() += 10;
        *s.versions.entry(format!("v{}", seed % 2)).or_default() += 90;
        s.sent = 100 + seed;
        s.intended = 101 + seed;
        s
    }

    #[test]
    fn merge_is_associative_and_commutative() {
        let (a, b, c) = (snap(1), snap(2), snap(3));
        let mut ab_c = a.clone();
        ab_c.merge(&b);
        ab_c.merge(&c);
        let mut bc = b.clone();
        bc.merge(&c);
        let mut a_bc = a.clone();
        a_bc.merge(&bc);
        let mut cba = c.clone();
        cba.merge(&b);
        cba.merge(&a);
        assert_eq!(ab_c, a_bc);
        assert_eq!(ab_c, cba);
        assert_eq!(ab_c.latency.len(), 300);
        assert_eq!((ab_c.start, ab_c.end), (1.0, 4.0));
        assert_eq!(ab_c.versions["v1"], 180);
        assert_eq!(ab_c.versions["v0"], 90);
        assert_eq!((ab_c.sent, ab_c.intended), (306, 309));
    }

    #[test]
    fn names_merge_with_the_rest_and_past_the_limit_into_other() {
        let mut a = snap(1);
        a.names.insert("x".into(), snap(2));
        let mut b = snap(3);
        b.names.insert("x".into(), snap(4));
        b.names.insert("y".into(), snap(5));
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(m.names["x"].latency.len(), 200);
        assert_eq!(m.names["y"], snap(5));
        // Through the wire form too.
        let mut w = a.clone();
        sparse::WireSnapshot::from(&b).merge_into(&mut w).unwrap();
        assert_eq!(w, m);
        // A third name past a limit of two goes to "other", and stays there.
        let mut into = m.names.clone();
        let from: BTreeMap<String, Snapshot> =
            [("z".to_string(), snap(6)), ("w".to_string(), snap(7))].into();
        record::merge_names(&mut into, &from, 2, |i, r| i.merge(r));
        let keys: Vec<&str> = into.keys().map(String::as_str).collect();
        assert_eq!(keys, ["other", "x", "y"]);
        assert_eq!(
            into["other"].responses,
            snap(6).responses + snap(7).responses
        );
    }

    #[test]
    fn ok_and_failed_split_answers_by_status() {
        let s = snap(2);
        // 90 × 200 and 2 × 502, plus 10 transport errors.
        assert_eq!(s.ok(), 90);
        assert_eq!(s.failed(), 12);
    }

    #[test]
    fn intervals_complete_when_every_source_reported() {
        let mut iv = Intervals::new();
        assert_eq!(iv.add(0, &snap(1)), 1);
        assert_eq!(iv.add(1, &snap(2)), 1);
        assert!(iv.pop_complete(2).is_none());
        assert_eq!(iv.add(0, &snap(3)), 2);
        let (k, s) = iv.pop_complete(2).unwrap();
        assert_eq!((k, s.latency.len()), (0, 200));
        // Interval 1 is not complete: it stays.
        assert!(iv.pop_complete(2).is_none());
        assert_eq!(iv.pop_before(5).len(), 1);
        assert!(iv.is_empty());
    }

    #[test]
    fn merging_into_an_empty_snapshot_is_identity() {
        let mut e = Snapshot::default();
        let a = snap(5);
        e.merge(&a);
        assert_eq!(e, a);
    }

    #[test]
    fn json_round_trip_keeps_histograms_exactly() {
        let a = snap(4);
        let text = serde_json::to_string(&a).unwrap();
        let back: Snapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(back, a);
        assert_eq!(
            back.latency.value_at_quantile(0.99),
            a.latency.value_at_quantile(0.99)
        );
    }
}
