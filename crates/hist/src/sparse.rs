//! The wire form of a snapshot for loadbots' pushes: histograms as their recorded buckets.
//!
//! The aggregator merges every bot's snapshot every second. Decoding the standard HDR V2
//! (deflate) form costs an inflate, a full counts array allocated and zeroed, and then
//! `Histogram::add` walks that whole array: together about a third of the aggregator's CPU at
//! 1,000 bots (profiled, `bench/fleet.sh`). Here a histogram is the list of its non-empty
//! buckets — one value of each bucket and its count, values delta-encoded, all as LEB128
//! varints in base64 — and merging records each bucket into the target, so the cost follows
//! the buckets a second used (a few hundred), not the histogram's range. Recording a bucket's
//! own value into a histogram of the same precision lands in the same bucket, so the merge is
//! exact.

use crate::record::{HistForm, Record};
use crate::Snapshot;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hdrhistogram::Histogram;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A histogram's non-empty buckets: (a value in the bucket, count), by increasing value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buckets(pub Vec<(u64, u64)>);

fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn get(data: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*at).ok_or("histogram buckets end early")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("a varint is longer than 64 bits".into())
}

impl Buckets {
    /// The buckets of `h`.
    pub fn of(h: &Histogram<u64>) -> Buckets {
        Buckets(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    /// Values recorded (saturating).
    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |a, (_, c)| a.saturating_add(*c))
    }

    /// Record every bucket into `h` (same precision: the merge is exact).
    pub fn add_into(&self, h: &mut Histogram<u64>) -> Result<(), String> {
        for (v, c) in &self.0 {
            h.record_n(*v, *c)
                .map_err(|e| format!("histogram value {v}: {e:?}"))?;
        }
        Ok(())
    }

    fn encode(&self) -> String {
        let mut out = Vec::with_capacity(self.0.len() * 4 + 4);
        put(&mut out, self.0.len() as u64);
        let mut prev = 0;
        for (v, c) in &self.0 {
            put(&mut out, v - prev);
            put(&mut out, *c);
            prev = *v;
        }
        STANDARD.encode(out)
    }

    fn decode(text: &str) -> Result<Buckets, String> {
        let raw = STANDARD
            .decode(text)
            .map_err(|e| format!("histogram is not base64: {e}"))?;
        let mut at = 0;
        let n = get(&raw, &mut at)?;
        // Each bucket takes at least two bytes: a count that cannot be true is refused before
        // anything is allocated for it.
        if n > raw.len() as u64 / 2 {
            return Err("histogram bucket count is larger than its data".into());
        }
        let mut out = Vec::with_capacity(n as usize);
        let mut value = 0u64;
        for _ in 0..n {
            let d = get(&raw, &mut at)?;
            if d == 0 && !out.is_empty() {
                return Err("histogram buckets are not in increasing order".into());
            }
            value = value.checked_add(d).ok_or("histogram value overflows")?;
            let c = get(&raw, &mut at)?;
            if c == 0 {
                return Err("an empty histogram bucket".into());
            }
            out.push((value, c));
        }
        if at != raw.len() {
            return Err("histogram buckets have trailing bytes".into());
        }
        Ok(Buckets(out))
    }
}

impl Serialize for Buckets {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for Buckets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Buckets::decode(&text).map_err(de::Error::custom)
    }
}

/// A [`Snapshot`] as a loadbot sends it: the same record, histograms as [`Buckets`].
pub type WireSnapshot = Record<Buckets>;

impl HistForm for Buckets {
    fn empty() -> Self {
        Buckets::default()
    }
    fn ser<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.serialize(s)
    }
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Buckets::deserialize(d)
    }
}

impl From<&Snapshot> for WireSnapshot {
    fn from(s: &Snapshot) -> Self {
        s.map(Buckets::of)
    }
}

impl WireSnapshot {
    /// Add this into `s`, as [`Snapshot::merge`] would add the snapshot it came from. Nothing
    /// is allocated beyond what `s`'s maps and histograms grow by (and a name new to `s`).
    pub fn merge_into(&self, s: &mut Snapshot) -> Result<(), String> {
        self.latency.add_into(&mut s.latency)?;
        self.service.add_into(&mut s.service)?;
        self.lateness.add_into(&mut s.lateness)?;
        s.add_counts(self);
        let mut failed = Ok(());
        s.merge_names(self, |into, r| {
            if let Err(e) = r.merge_into(into) {
                failed = Err(e);
            }
        });
        failed
    }

    /// The snapshot this stands for.
    pub fn to_snapshot(&self) -> Result<Snapshot, String> {
        let mut s = Snapshot::default();
        self.merge_into(&mut s)?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_merges_exactly_like_the_snapshot() {
        let mut a = Snapshot {
            end: 1.0,
            ..Default::default()
        };
        for i in 1..2000u64 {
            a.latency.record(i * i % 100_003 + 1).unwrap();
            a.service.record(i % 977 + 1).unwrap();
        }
        a.responses = 1999;
        a.status.insert(200, 1999);
        a.versions.insert("v1".into(), 1999);
        a.sent = 2000;
        let text = serde_json::to_string(&WireSnapshot::from(&a)).unwrap();
        let w: WireSnapshot = serde_json::from_str(&text).unwrap();
        let mut via_wire = Snapshot::default();
        w.merge_into(&mut via_wire).unwrap();
        assert_eq!(via_wire, {
            let mut m = Snapshot::default();
            m.merge(&a);
            m
        });
        assert_eq!(w.latency.total(), 1999);
    }

    #[test]
    fn damaged_buckets_are_refused() {
        for bad in ["!!", "/////////////w==", "AgEBAQ=="] {
            assert!(Buckets::decode(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Buckets::decode("AA==").unwrap_or_default(),
            Buckets::default()
        );
    }
}
