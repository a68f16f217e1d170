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

use crate::varint::{get, put};

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

    /// Append the buckets as varints: their count, then each value's step from the last and
    /// its count.
    pub fn put(&self, out: &mut Vec<u8>) {
        put(out, self.0.len() as u64);
        let mut prev = 0;
        for (v, c) in &self.0 {
            put(out, v - prev);
            put(out, *c);
            prev = *v;
        }
    }

    /// Read what [`Buckets::put`] wrote at `at`: increasing values, no empty bucket.
    pub fn get(raw: &[u8], at: &mut usize) -> Result<Buckets, String> {
        // Each bucket takes at least two bytes.
        let n = crate::varint::get_len(raw, at, 2)
            .map_err(|_| "histogram bucket count is larger than its data".to_string())?;
        let mut out = Vec::with_capacity(n);
        let mut value = 0u64;
        for _ in 0..n {
            let d = get(raw, at)?;
            if d == 0 && !out.is_empty() {
                return Err("histogram buckets are not in increasing order".into());
            }
            value = value.checked_add(d).ok_or("histogram value overflows")?;
            let c = get(raw, at)?;
            if c == 0 {
                return Err("an empty histogram bucket".into());
            }
            out.push((value, c));
        }
        Ok(Buckets(out))
    }

    fn encode(&self) -> String {
        let mut out = Vec::with_capacity(self.0.len() * 4 + 4);
        self.put(&mut out);
        STANDARD.encode(out)
    }

    fn decode(text: &str) -> Result<Buckets, String> {
        let raw = STANDARD
            .decode(text)
            .map_err(|e| format!("histogram is not base64: {e}"))?;
        let mut at = 0;
        let b = Buckets::get(&raw, &mut at)?;
        if at != raw.len() {
            return Err("histogram buckets have trailing bytes".into());
        }
        Ok(b)
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

    /// Append this in the binary push's form: the record, its histograms' buckets, then its
    /// names (each a record without names).
    pub fn put(&self, out: &mut Vec<u8>) {
        let record = |r: &WireSnapshot, out: &mut Vec<u8>| r.put_fields(out, |h, o| h.put(o));
        record(self, out);
        put(out, self.names.len() as u64);
        for (name, r) in &self.names {
            crate::varint::put_str(out, name);
            record(r, out);
        }
    }

    /// Read what [`WireSnapshot::put`] wrote at `at` (names of at most `max_name` bytes).
    pub fn get(data: &[u8], at: &mut usize, max_name: usize) -> Result<WireSnapshot, String> {
        let mut s = Record::get_fields(data, at, Buckets::get)?;
        // A record takes at least 16 bytes (its bounds).
        let n = crate::varint::get_len(data, at, 16)?;
        for _ in 0..n {
            let name = crate::varint::get_str(data, at, max_name)?;
            let r = Record::get_fields(data, at, Buckets::get)?;
            s.names.insert(name, r);
        }
        Ok(s)
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
    fn the_binary_form_reads_back_the_same() {
        let mut a = Snapshot {
            start: 0.25,
            end: 1.0,
            ..Default::default()
        };
        for i in 1..500u64 {
            a.latency.record(i * 37 % 10_007 + 1).unwrap();
            a.service.record(i).unwrap();
            a.lateness.record(i % 3 + 1).unwrap();
        }
        a.responses = 499;
        a.status.insert(200, 400);
        a.status.insert(503, 99);
        a.errors.insert("timeout".into(), 7);
        a.versions.insert("v2".into(), 499);
        a.sent = 506;
        let mut named = a.clone();
        named.versions.clear();
        a.names.insert("checkout é".into(), named);
        let w = WireSnapshot::from(&a);
        let mut out = Vec::new();
        w.put(&mut out);
        let mut at = 0;
        assert_eq!(WireSnapshot::get(&out, &mut at, 200).unwrap(), w);
        assert_eq!(at, out.len());
        // Cut anywhere, it is refused, never misread.
        for cut in 0..out.len() {
            assert!(
                WireSnapshot::get(&out[..cut], &mut 0, 200).is_err(),
                "cut at {cut}"
            );
        }
        assert!(
            WireSnapshot::get(&out, &mut 0, 5).is_err(),
            "a name too long"
        );
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
