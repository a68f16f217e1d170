//! What bots and the aggregator say to each other over HTTP: JSON, except the pushes, which
//! the aggregator reads every second from every bot: those are binary ([`Push::encode`]:
//! varints, histograms as their buckets, no base64, no field names), tagged with the wire
//! version ([`WIRE`]), which registration checks too, so a bot of another version is told
//! at once. Every type here is checked on arrival ([`Push::check`]): a body that fails a
//! check changes nothing.

use hist::sparse::WireSnapshot;
use load::Spec;
use serde::{Deserialize, Serialize};

/// Largest request body the aggregator reads (a push of many buffered intervals).
pub const MAX_BODY: usize = 4 << 20;

/// Most intervals in one push; a bot with more buffered sends several pushes.
pub const MAX_BATCH: usize = 60;

/// The version of what bots and the aggregator say: 2 = binary pushes (1 was JSON).
pub const WIRE: u32 = 2;

/// The content type of a binary push.
pub const PUSH_TYPE: &str = "application/x-scaletest-push";

/// What a binary push starts with: a tag and the wire version.
const PUSH_MAGIC: [u8; 4] = [b'S', b'T', b'P', WIRE as u8];

fn wire_1() -> u32 {
    1
}

/// Why a bot of another wire version cannot be taken, in one line.
pub fn other_wire(theirs: u32) -> String {
    format!(
        "this bot speaks wire version {theirs}, this aggregator {WIRE}: run bots of the same \
         scaletest version as the aggregator ({})",
        env!("CARGO_PKG_VERSION")
    )
}

/// `POST /api/bots`: a bot introduces itself (again, after an aggregator restart, with the id
/// it had).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// The id this bot had, when it registers again.
    #[serde(default)]
    pub id: Option<u64>,
    /// Its name (unique names make the bots table readable; not required).
    pub name: String,
    /// Host it runs on.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// scaletest version.
    pub version: String,
    /// The bot's clock when it sent this, Unix seconds (for the skew check).
    pub clock_unix: f64,
    /// The run it was in before, when it registers again: an aggregator whose run differs
    /// knows the run restarted (a new aggregator pod on an empty directory, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_run: Option<String>,
    /// The wire version it speaks ([`WIRE`]; bots from before it was sent speak 1).
    #[serde(default = "wire_1")]
    pub wire: u32,
}

/// Answer to [`Register`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    /// The bot's id from now on.
    pub id: u64,
    /// Highest interval of this bot already counted: the bot re-sends only newer ones.
    pub hwm: u64,
    /// Identifies this aggregator process; a change tells bots it restarted.
    pub instance: String,
    /// The run this aggregator is measuring (kept across its restarts from the same
    /// directory; a new one on an empty directory starts a new run).
    #[serde(default)]
    pub run: String,
}

/// One interval of one bot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interval {
    /// The Unix second it covers.
    pub t: u64,
    /// What the bot measured in it (histograms as their buckets: see `hist::sparse`).
    pub snap: WireSnapshot,
}

/// `POST /api/bots/{id}/snapshots`: intervals in increasing order of `t`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    /// The bot's clock when it sent this, Unix seconds.
    pub clock_unix: f64,
    /// Intervals the bot dropped from its buffer so far (the aggregator was unreachable).
    #[serde(default)]
    pub dropped: u64,
    /// The intervals, oldest first, at most [`MAX_BATCH`].
    pub intervals: Vec<Interval>,
    /// The assignment generation the bot is following.
    #[serde(default)]
    pub generation: u64,
    /// No load is running and everything measured is in this push (or was pushed before).
    #[serde(default)]
    pub idle: bool,
    /// The aggregator process the bot registered with. A restarted aggregator refuses the push
    /// (409) without counting it, so the bot registers again and re-sends, oldest first, what
    /// the new process had not saved: newer seconds first would move the high-water mark past
    /// them.
    #[serde(default)]
    pub instance: String,
}

/// Answer to [`Push`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// Highest interval of this bot counted so far (everything up to it may be forgotten).
    pub hwm: u64,
    /// Generation of the bot's assignment: when it differs from the bot's, fetch it.
    pub generation: u64,
    /// This aggregator process.
    pub instance: String,
}

/// `GET /api/bots/{id}/assignment?after=G`: what the bot should run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// Changes with every new assignment.
    pub generation: u64,
    /// The load to run (its rate or connections are this bot's share); `None`: idle. Shared:
    /// every live bot's assignment holds the same one.
    pub spec: Option<std::sync::Arc<Spec>>,
    /// The run is over: idle (and exit, when the bot was asked to).
    #[serde(default)]
    pub finished: bool,
    /// The Unix second at which the spec's rate shape starts (a fleet's schedule: the bot
    /// joins it where it is); `None`: a constant rate, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_start_unix: Option<f64>,
    /// This bot's share of the fleet's `{{seq}}` and CSV rows: its place among the live bots
    /// (changed without a restart when the fleet grows or shrinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<load::template::Share>,
}

/// Most keys in a snapshot's maps (statuses, error classes, versions).
const MAX_KEYS: usize = 256;

/// Most named requests a fleet keeps apart (a bot's spec's `max_names`): a bot's second then
/// stays well inside a push's [`MAX_BODY`].
pub const MAX_NAMES: u64 = 1000;

impl Interval {
    /// At most how many bytes this takes in a push (for batching): each record's fields, map
    /// keys as JSON may escape them (6 bytes a byte), each bucket's two varints in base64.
    pub fn weight(&self) -> usize {
        let record = |s: &WireSnapshot| {
            let buckets = s.latency.0.len() + s.service.0.len() + s.lateness.0.len();
            let keys: usize = s
                .errors
                .keys()
                .chain(s.versions.keys())
                .map(String::len)
                .sum();
            1024 + 48 * (s.status.len() + s.errors.len() + s.versions.len())
                + 6 * keys
                + 24 * buckets
        };
        record(&self.snap)
            + (self.snap.names.iter())
                .map(|(k, r)| 6 * k.len() + record(r))
                .sum::<usize>()
    }
}

/// The most of anything one bot's second may count (requests, bytes, answers of a status):
/// about a trillion, far past any real second, and low enough that the aggregator's sums over
/// millions of bot-seconds cannot overflow.
pub const MAX_COUNT: u64 = 1 << 40;

impl Push {
    /// The push as its binary body.
    pub fn encode(&self) -> Vec<u8> {
        use hist::varint::{put, put_f64, put_str};
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(&PUSH_MAGIC);
        put_f64(&mut out, self.clock_unix);
        put(&mut out, self.dropped);
        put(&mut out, self.generation);
        out.push(u8::from(self.idle));
        put_str(&mut out, &self.instance);
        put(&mut out, self.intervals.len() as u64);
        for i in &self.intervals {
            put(&mut out, i.t);
            i.snap.put(&mut out);
        }
        out
    }

    /// A push from its binary body; a body of another wire version, or one that does not
    /// read, says why.
    pub fn decode(body: &[u8]) -> Result<Push, String> {
        use hist::varint::{get, get_f64, get_len, get_str};
        match body.get(..4) {
            Some(m) if m == PUSH_MAGIC => {}
            Some([b'S', b'T', b'P', v]) => return Err(other_wire(u32::from(*v))),
            Some([b'{', ..]) => return Err(other_wire(1)),
            _ => return Err("not a scaletest push".into()),
        }
        let at = &mut 4;
        let clock_unix = get_f64(body, at)?;
        let dropped = get(body, at)?;
        let generation = get(body, at)?;
        let idle = match body.get(*at) {
            Some(b @ (0 | 1)) => *b == 1,
            _ => return Err("idle is not 0 or 1".into()),
        };
        *at += 1;
        let instance = get_str(body, at, 256)?;
        // An interval takes at least 17 bytes (its second and its record's bounds); their
        // number is checked with the rest (`check`).
        let n = get_len(body, at, 17)?;
        let mut intervals = Vec::with_capacity(n);
        for _ in 0..n {
            let t = get(body, at)?;
            let snap = WireSnapshot::get(body, at, hist::record::MAX_NAME_BYTES)?;
            intervals.push(Interval { t, snap });
        }
        if *at != body.len() {
            return Err("trailing bytes after the push".into());
        }
        Ok(Push {
            clock_unix,
            dropped,
            intervals,
            generation,
            idle,
            instance,
        })
    }

    /// Structural checks that need no state: order, batch size, and each snapshot's own
    /// consistency (counts that must agree do).
    pub fn check(&self) -> Result<(), String> {
        if self.intervals.len() > MAX_BATCH {
            return Err(format!(
                "{} intervals in one push; at most {MAX_BATCH}",
                self.intervals.len()
            ));
        }
        if !self.clock_unix.is_finite() {
            return Err("clock_unix is not a number".into());
        }
        for w in self.intervals.windows(2) {
            if w[1].t <= w[0].t {
                return Err(format!(
                    "intervals out of order: {} after {}",
                    w[1].t, w[0].t
                ));
            }
        }
        for i in &self.intervals {
            check_snapshot(&i.snap).map_err(|e| format!("interval {}: {e}", i.t))?;
        }
        Ok(())
    }
}

/// A snapshot whose parts agree with each other, and its named requests' too (at most
/// [`MAX_NAMES`] and `other`, their answers within the snapshot's).
pub fn check_snapshot(s: &WireSnapshot) -> Result<(), String> {
    check_record(s)?;
    if s.names.len() as u64 > MAX_NAMES + 1 {
        return Err(format!(
            "{} named requests; at most {MAX_NAMES}",
            s.names.len()
        ));
    }
    let mut named = 0u64;
    for (name, r) in &s.names {
        if name.len() > hist::record::MAX_NAME_BYTES {
            return Err(format!(
                "a name is over {} bytes",
                hist::record::MAX_NAME_BYTES
            ));
        }
        if !r.names.is_empty() {
            return Err(format!("name {name:?} has names of its own"));
        }
        check_record(r).map_err(|e| format!("name {name:?}: {e}"))?;
        named = named.saturating_add(r.responses);
    }
    if named > s.responses {
        return Err(format!(
            "named answers sum to {named}, responses is {}",
            s.responses
        ));
    }
    Ok(())
}

/// One record's own consistency (names aside).
fn check_record(s: &WireSnapshot) -> Result<(), String> {
    let statuses: u64 = s.status.values().fold(0u64, |a, b| a.saturating_add(*b));
    if statuses != s.responses {
        return Err(format!(
            "status counts sum to {statuses}, responses is {}",
            s.responses
        ));
    }
    let (lat, svc) = (s.latency.total(), s.service.total());
    if lat != s.responses || svc != s.responses {
        return Err(format!(
            "latency histograms hold {lat} and {svc} values for {} responses",
            s.responses
        ));
    }
    let versions: u64 = s.versions.values().fold(0u64, |a, b| a.saturating_add(*b));
    if versions > s.responses {
        return Err("more answers by version than responses".into());
    }
    let (mut count_over, mut hist_over) = (false, false);
    s.each_count(&mut |n| count_over |= n > MAX_COUNT, &mut |h| {
        hist_over |= h.total() > MAX_COUNT
    });
    if count_over || hist_over {
        return Err(format!("a count over {MAX_COUNT} in one second"));
    }
    if s.status.len() > MAX_KEYS || s.errors.len() > MAX_KEYS || s.versions.len() > MAX_KEYS {
        return Err("too many distinct statuses, errors or versions".into());
    }
    if s.errors
        .keys()
        .chain(s.versions.keys())
        .any(|k| k.len() > 64)
    {
        return Err("an error class or version name is over 64 bytes".into());
    }
    if !(s.start.is_finite() && s.end.is_finite()) {
        return Err("interval bounds are not numbers".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use hist::Snapshot;

    fn snap(n: u64) -> Snapshot {
        let mut s = Snapshot {
            end: 1.0,
            responses: n,
            ..Default::default()
        };
        s.status.insert(200, n);
        for i in 0..n {
            s.latency.record(100 + i).unwrap();
            s.service.record(50 + i).unwrap();
        }
        s
    }

    #[test]
    fn a_push_reads_back_from_its_binary_body_and_another_wire_is_named() {
        let mut named = snap(2);
        named.names.insert("buy".into(), snap(2));
        let p = Push {
            clock_unix: 1234.5,
            dropped: 3,
            intervals: vec![
                Interval {
                    t: 7,
                    snap: (&snap(3)).into(),
                },
                Interval {
                    t: 8,
                    snap: (&named).into(),
                },
            ],
            generation: 9,
            idle: true,
            instance: "abc".into(),
        };
        let body = p.encode();
        assert_eq!(Push::decode(&body).unwrap(), p);
        // A JSON push (a bot of wire 1) and a push of another version say so.
        let json = serde_json::to_vec(&p).unwrap();
        let e = Push::decode(&json).unwrap_err();
        assert!(e.contains("wire version 1, this aggregator 2"), "{e}");
        let mut v3 = body.clone();
        v3[3] = 3;
        assert!(Push::decode(&v3).unwrap_err().contains("wire version 3"));
        assert!(Push::decode(b"GET /")
            .unwrap_err()
            .contains("not a scaletest push"));
        let mut longer = body.clone();
        longer.push(0);
        assert!(Push::decode(&longer).unwrap_err().contains("trailing"));
        for cut in 0..body.len() {
            assert!(Push::decode(&body[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn consistent_pushes_pass_and_inconsistent_ones_say_why() {
        let ok = Push {
            clock_unix: 1.0,
            dropped: 0,
            intervals: vec![
                Interval {
                    t: 5,
                    snap: (&snap(3)).into(),
                },
                Interval {
                    t: 6,
                    snap: (&snap(1)).into(),
                },
            ],
            generation: 0,
            idle: false,
            instance: String::new(),
        };
        assert!(ok.check().is_ok());
        let mut p = ok.clone();
        p.intervals.swap(0, 1);
        assert!(p.check().unwrap_err().contains("out of order"));
        let mut p = ok.clone();
        p.intervals[0].snap.responses = 4;
        assert!(p.check().unwrap_err().contains("status counts"));
        let mut p = ok.clone();
        p.intervals[0].snap.versions.insert("v1".into(), 9);
        assert!(p.check().unwrap_err().contains("by version"));
        let mut p = ok.clone();
        p.intervals[1].snap.latency.0.push((1_000_000, 1));
        assert!(p.check().unwrap_err().contains("histograms"));
        let mut p = ok.clone();
        p.intervals[0].snap.bytes = MAX_COUNT + 1;
        assert!(p.check().unwrap_err().contains("a count over"));
        // Named requests: each consistent, within the total, one level, within the limit.
        let named = |p: &mut Push, name: &str, n: u64| {
            p.intervals[0]
                .snap
                .names
                .insert(name.into(), (&snap(n)).into());
        };
        let mut p = ok.clone();
        named(&mut p, "a", 2);
        named(&mut p, "b", 1);
        assert!(p.check().is_ok());
        named(&mut p, "c", 1);
        assert!(p.check().unwrap_err().contains("named answers sum to 4"));
        let mut p = ok.clone();
        named(&mut p, "a", 2);
        p.intervals[0].snap.names.get_mut("a").unwrap().responses = 1;
        assert!(p.check().unwrap_err().contains("name \"a\": status counts"));
        let mut p = ok.clone();
        named(&mut p, "a", 2);
        let inner = p.intervals[0].snap.names["a"].clone();
        p.intervals[0]
            .snap
            .names
            .get_mut("a")
            .unwrap()
            .names
            .insert("x".into(), inner);
        assert!(p.check().unwrap_err().contains("names of its own"));
        let mut p = ok.clone();
        named(&mut p, &"n".repeat(201), 1);
        assert!(p.check().unwrap_err().contains("over 200 bytes"));
        let mut p = ok;
        for i in 0..=MAX_NAMES + 1 {
            named(&mut p, &format!("n{i}"), 0);
        }
        assert!(p.check().unwrap_err().contains("named requests; at most"));
    }
}
