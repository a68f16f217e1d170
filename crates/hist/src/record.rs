//! The per-second record: every counter a run keeps for an interval, defined once.
//!
//! [`Record`] is generic over how its histograms are held: [`crate::Snapshot`] holds HDR
//! histograms (what the engine records and the aggregator merges), [`crate::sparse::WireSnapshot`]
//! holds their buckets (the bots' pushes), and a chart's point holds their percentiles
//! (`report::Point`). The counters are listed once, in the `record!` invocation below, which
//! also writes their merge ([`Record::add_counts`]), their copy into another form
//! ([`Record::map`]) and a walk over every count ([`Record::each_count`], for limits), so adding
//! a counter is one line here plus its uses.
//!
//! A record may hold named requests' own records ([`Record::names`], one level deep, at most
//! [`MAX_NAMES`] names and [`OTHER`]): the engine takes them every second with the rest, so
//! a name's numbers travel the same way as the total's (per-second output, the bots' pushes).
//! A name's record counts its sends, answers, failures, bytes aside, and latencies; the
//! schedule's counters (`intended`, `late`, `capped`, `unsent`, `lateness`) are the total's.
//! Whoever keeps records for every second of a run keeps them without names (memory), and
//! the names' run totals once.

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// Most names a record keeps apart (a load spec's `--max-names` is at most this); the rest
/// are counted under [`OTHER`].
pub const MAX_NAMES: usize = 10_000;

/// Where names past [`MAX_NAMES`] are counted.
pub const OTHER: &str = "other";

/// Longest name in bytes (longer ones are cut, at a character boundary, where they are made).
pub const MAX_NAME_BYTES: usize = 200;

/// How a record holds one histogram: its empty value and its serde form.
pub trait HistForm: Sized {
    /// An empty histogram in this form.
    fn empty() -> Self;
    /// Serialize (used through serde's `serialize_with`).
    fn ser<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
    /// Deserialize (used through serde's `deserialize_with`).
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

impl HistForm for Histogram<u64> {
    fn empty() -> Self {
        crate::new_histogram()
    }
    fn ser<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::histogram_codec::serialize(self, s)
    }
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::histogram_codec::deserialize(d)
    }
}

/// A count that merges by adding: a number, or numbers by key.
pub trait Tally {
    /// Add `other` into `self`.
    fn tally(&mut self, other: &Self);
    /// Call `f` with every number held.
    fn each(&self, f: &mut dyn FnMut(u64));
}

impl Tally for u64 {
    fn tally(&mut self, other: &Self) {
        *self += other;
    }
    fn each(&self, f: &mut dyn FnMut(u64)) {
        f(*self)
    }
}

impl<K: Ord + Clone> Tally for BTreeMap<K, u64> {
    fn tally(&mut self, other: &Self) {
        crate::add_map(self, other)
    }
    fn each(&self, f: &mut dyn FnMut(u64)) {
        self.values().for_each(|n| f(*n))
    }
}

/// A count in the bots' binary push (see `sparse`): written and read in the field order.
pub trait WireCount: Sized {
    /// Append it.
    fn put(&self, out: &mut Vec<u8>);
    /// Read it at `at`.
    fn get(data: &[u8], at: &mut usize) -> Result<Self, String>;
}

impl WireCount for u64 {
    fn put(&self, out: &mut Vec<u8>) {
        crate::varint::put(out, *self)
    }
    fn get(data: &[u8], at: &mut usize) -> Result<Self, String> {
        crate::varint::get(data, at)
    }
}

impl WireCount for BTreeMap<u16, u64> {
    fn put(&self, out: &mut Vec<u8>) {
        crate::varint::put(out, self.len() as u64);
        for (k, v) in self {
            crate::varint::put(out, u64::from(*k));
            crate::varint::put(out, *v);
        }
    }
    fn get(data: &[u8], at: &mut usize) -> Result<Self, String> {
        let n = crate::varint::get_len(data, at, 2)?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k =
                u16::try_from(crate::varint::get(data, at)?).map_err(|_| "a status over 65535")?;
            m.insert(k, crate::varint::get(data, at)?);
        }
        Ok(m)
    }
}

impl WireCount for BTreeMap<String, u64> {
    fn put(&self, out: &mut Vec<u8>) {
        crate::varint::put(out, self.len() as u64);
        for (k, v) in self {
            crate::varint::put_str(out, k);
            crate::varint::put(out, *v);
        }
    }
    fn get(data: &[u8], at: &mut usize) -> Result<Self, String> {
        let n = crate::varint::get_len(data, at, 2)?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = crate::varint::get_str(data, at, 1024)?;
            m.insert(k, crate::varint::get(data, at)?);
        }
        Ok(m)
    }
}

/// Writes [`Record`] and the functions that must name every field.
macro_rules! record {
    (
        counts { $( $(#[$cm:meta])* $count:ident : $cty:ty, )* }
        histograms { $( $(#[$hm:meta])* $hist:ident, )* }
    ) => {
        /// What was measured over one interval, by one or many sources; `H` is the form of its
        /// histograms (see the module doc).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(bound(serialize = "H: HistForm", deserialize = "H: HistForm"))]
        pub struct Record<H> {
            /// Start of the interval, seconds since the run started.
            pub start: f64,
            /// End of the interval, seconds since the run started.
            pub end: f64,
            $( $(#[$cm])* #[serde(default)] pub $count: $cty, )*
            $(
                $(#[$hm])*
                #[serde(default = "HistForm::empty", serialize_with = "HistForm::ser",
                        deserialize_with = "HistForm::de")]
                pub $hist: H,
            )*
            /// Named requests' own records (one level: theirs have no names).
            #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
            pub names: BTreeMap<String, Record<H>>,
        }

        impl<H: HistForm> Default for Record<H> {
            fn default() -> Self {
                Record {
                    start: 0.0,
                    end: 0.0,
                    $( $count: Default::default(), )*
                    $( $hist: H::empty(), )*
                    names: BTreeMap::new(),
                }
            }
        }

        impl<H> Record<H> {
            /// Add every count of `other` into `self` and widen the interval to cover both
            /// (the histograms and the names are the caller's, as only it knows both forms:
            /// see [`Record::merge_names`]).
            pub fn add_counts<G>(&mut self, other: &Record<G>) {
                self.merge_bounds(other.start, other.end);
                $( Tally::tally(&mut self.$count, &other.$count); )*
            }

            /// The same record (its names too) with each histogram turned into another form
            /// by `f`.
            pub fn map<G>(&self, f: impl Fn(&H) -> G) -> Record<G> {
                self.map_dyn(&f)
            }

            fn map_dyn<G>(&self, f: &dyn Fn(&H) -> G) -> Record<G> {
                Record {
                    start: self.start,
                    end: self.end,
                    $( $count: self.$count.clone(), )*
                    $( $hist: f(&self.$hist), )*
                    names: self.names.iter().map(|(k, r)| (k.clone(), r.map_dyn(f))).collect(),
                }
            }

            /// Append the record in the binary push's form, histograms by `h` (names aside:
            /// the caller's, as one level is allowed).
            pub fn put_fields(&self, out: &mut Vec<u8>, mut h: impl FnMut(&H, &mut Vec<u8>)) {
                crate::varint::put_f64(out, self.start);
                crate::varint::put_f64(out, self.end);
                $( WireCount::put(&self.$count, out); )*
                $( h(&self.$hist, out); )*
            }

            /// Read what [`Record::put_fields`] wrote, histograms by `h` (no names).
            pub fn get_fields(
                data: &[u8],
                at: &mut usize,
                mut h: impl FnMut(&[u8], &mut usize) -> Result<H, String>,
            ) -> Result<Self, String> {
                Ok(Record {
                    start: crate::varint::get_f64(data, at)?,
                    end: crate::varint::get_f64(data, at)?,
                    $( $count: WireCount::get(data, at)?, )*
                    $( $hist: h(data, at)?, )*
                    names: BTreeMap::new(),
                })
            }

            /// Call `f` with every count (each counter, each value of each map) and `h` with
            /// each histogram, the names' too.
            pub fn each_count(&self, f: &mut dyn FnMut(u64), h: &mut dyn FnMut(&H)) {
                $( Tally::each(&self.$count, f); )*
                $( h(&self.$hist); )*
                for r in self.names.values() {
                    r.each_count(f, h);
                }
            }
        }
    };
}

record! {
    counts {
        /// Requests that got a complete response (any status).
        responses: u64,
        /// Bytes read from the network for those responses (headers and body).
        bytes: u64,
        /// Responses by HTTP status code.
        #[serde(deserialize_with = "status_keys")]
        status: BTreeMap<u16, u64>,
        /// Failed requests by error class name (see the load engine's `ErrorClass`).
        errors: BTreeMap<String, u64>,
        /// Open loop: sends that started more than [`crate::LATE_US`] after their intended time.
        late: u64,
        /// Open loop: sends that waited for a free connection because the cap was reached.
        capped: u64,
        /// Open loop: sends due before the run ended that never started (waiting for a
        /// connection at the cap, for their lane to run or for its connection to open, when the
        /// run ended).
        unsent: u64,
        /// Answers by the answering server's version (its `x-scaletest-version` header; answers
        /// without one are not counted here).
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        versions: BTreeMap<String, u64>,
        /// Sends the schedule asked for in this interval (open loop; closed loop: = `sent`).
        intended: u64,
        /// Requests actually sent (started) in this interval: the achieved send rate.
        sent: u64,
        /// Bytes written to the network in this interval (requests; over TLS, before
        /// encryption, as `bytes` counts after decryption).
        bytes_sent: u64,
    }
    histograms {
        /// Latency measured from the *intended* send time, in µs (coordinated-omission
        /// corrected). In a closed loop there is no schedule and this equals `service`.
        latency,
        /// Latency measured from the moment the request was actually sent (service time), in µs.
        service,
        /// Open loop: every send's delay from its intended time to its start, in µs.
        lateness,
    }
}

impl<H: HistForm> Record<H> {
    /// Merge `other`'s names into this record's with `merge`, a name past [`MAX_NAMES`]
    /// into [`OTHER`]: the histograms' forms are the caller's, the bound is here.
    pub fn merge_names<G>(
        &mut self,
        other: &Record<G>,
        merge: impl FnMut(&mut Record<H>, &Record<G>),
    ) {
        merge_names(&mut self.names, &other.names, MAX_NAMES, merge)
    }
}

/// Merge the named records `from` into `into` with `merge`, keeping at most `max` names
/// apart: a new name past them is merged into [`OTHER`].
pub fn merge_names<H: HistForm, G>(
    into: &mut BTreeMap<String, Record<H>>,
    from: &BTreeMap<String, Record<G>>,
    max: usize,
    mut merge: impl FnMut(&mut Record<H>, &Record<G>),
) {
    for (name, r) in from {
        let to = match into.get_mut(name) {
            Some(to) => to,
            None => {
                let full = into.len() >= max + usize::from(into.contains_key(OTHER));
                let key = if full { OTHER } else { name.as_str() };
                into.entry(key.to_string()).or_default()
            }
        };
        merge(to, r);
    }
}

impl<H> Record<H> {
    /// Total failed requests (all error classes).
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Requests that ended, successfully or not.
    pub fn completed(&self) -> u64 {
        self.responses + self.error_count()
    }

    /// Answers with a 1xx, 2xx or 3xx status: what a user would call a success.
    pub fn ok(&self) -> u64 {
        self.status.range(..400).map(|(_, n)| n).sum()
    }

    /// Requests that failed: transport errors plus answers with a 4xx or 5xx status.
    pub fn failed(&self) -> u64 {
        self.error_count() + self.responses.saturating_sub(self.ok())
    }

    /// Length of the interval in seconds.
    pub fn seconds(&self) -> f64 {
        (self.end - self.start).max(0.0)
    }

    /// The interval becomes the union of both (an empty record takes the other's bounds).
    pub(crate) fn merge_bounds(&mut self, start: f64, end: f64) {
        if self.completed() == 0 && self.end == 0.0 && self.start == 0.0 {
            self.start = start;
            self.end = end;
        } else {
            self.start = self.start.min(start);
            self.end = self.end.max(end);
        }
    }
}

/// Statuses by code, with the codes read from JSON's string keys or from numbers: a record
/// flattened into another struct (a chart's point) reaches its map through serde's buffered
/// form, which hands over keys as strings that `u16`'s own deserializer refuses.
fn status_keys<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u16, u64>, D::Error> {
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    struct Code(u16);
    impl<'de> Deserialize<'de> for Code {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Code;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an HTTP status code")
                }
                fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Code, E> {
                    u16::try_from(n).map(Code).map_err(E::custom)
                }
                fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Code, E> {
                    s.parse().map(Code).map_err(E::custom)
                }
            }
            d.deserialize_any(V)
        }
    }
    let codes = BTreeMap::<Code, u64>::deserialize(d);
    Ok(codes?.into_iter().map(|(c, n)| (c.0, n)).collect())
}
