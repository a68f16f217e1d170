//! Run files and loadbots' snapshots come from outside (other machines, other versions, hand
//! edits, a bot that is not ours): whatever the bytes, `report::RunFile::from_json` and the
//! aggregator's reading of a `hist::sparse::WireSnapshot` give a value or an error, never
//! panic, and never allocate much more than the input's size (a damaged histogram header must
//! not ask for gigabytes). Here rather than in `report` and `hist` so that the seeds are built
//! only from public types, under one counting allocator.

// Counting allocations needs a global allocator, which is unsafe to implement.
#![allow(unsafe_code)]

use base64::Engine;
use hist::sparse::WireSnapshot;
use proptest::collection::vec;
use proptest::prelude::*;
use report::RunFile;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting this thread's live bytes and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call goes to `System` unchanged; the counters only add and subtract sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.get() + layout.size();
        LIVE.set(live);
        PEAK.set(PEAK.get().max(live));
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.set(LIVE.get().saturating_sub(layout.size()));
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// The most this thread had allocated at once, beyond what it held before, while parsing.
fn peak_while(f: impl FnOnce()) -> usize {
    let base = LIVE.get();
    PEAK.set(base);
    f();
    PEAK.get() - base
}

/// What a parse may take: generous for the decoded histograms of a small file, far below what
/// a header asking for an absurd range would cost.
const MAX_PARSE_BYTES: usize = 64 << 20;

/// Run `read` on `text` (its result dropped): it must stay within [`MAX_PARSE_BYTES`].
fn bounded(text: &str, read: impl FnOnce(&str)) {
    let peak = peak_while(|| read(text));
    assert!(
        peak < MAX_PARSE_BYTES,
        "parsing {} bytes took {peak} bytes",
        text.len()
    );
}

fn parse(text: &str) {
    bounded(text, |t| {
        let _ = RunFile::from_json("f", t);
    });
}

/// Read a snapshot as the aggregator does: the wire form, then merged into a snapshot.
fn parse_snapshot(text: &str) {
    bounded(text, |t| {
        if let Ok(w) = serde_json::from_str::<WireSnapshot>(t) {
            let _ = w.to_snapshot();
        }
    });
}

/// A loadbot's snapshot of a second with a few hundred values in each histogram.
fn snapshot_seed() -> serde_json::Value {
    let mut s = hist::Snapshot {
        end: 1.0,
        ..Default::default()
    };
    for i in 1..300u64 {
        s.latency.record(i * 7919 % 100_003 + 1).expect("record");
        s.service.record(i * 31 + 1).expect("record");
        s.lateness.record(i).expect("record");
    }
    s.responses = 299;
    s.status.insert(200, 299);
    serde_json::to_value(WireSnapshot::from(&s)).expect("a wire snapshot")
}

/// `seed` as text with bytes overwritten at `flips` (positions wrap) and cut short at `cut`.
fn damaged(seed: &serde_json::Value, flips: &[(usize, u8)], cut: usize) -> String {
    let mut text = seed.to_string().into_bytes();
    for &(at, b) in flips {
        let i = at % text.len();
        text[i] = b;
    }
    text.truncate(cut % (text.len() + 1) + 1);
    String::from_utf8_lossy(&text).into_owned()
}

/// LEB128, as the wire form writes its numbers.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A valid version-2 run file with one interval.
fn seed() -> serde_json::Value {
    let snap = serde_json::to_value(hist::Snapshot::default()).expect("a snapshot");
    serde_json::json!({
        "version": report::RUNFILE_VERSION,
        "tool": "test",
        "started_unix": 0.0,
        "info": serde_json::to_value(report::RunInfo::default()).expect("info"),
        "elapsed_s": 1.0,
        "interrupted": false,
        "peak_lanes": 1,
        "in_flight_at_end": 0,
        "total": snap,
        "series": [],
        "intervals": [snap],
    })
}

#[test]
fn the_seed_is_a_run_file() {
    let text = seed().to_string();
    assert!(RunFile::from_json("seed", &text).is_ok());
}

proptest! {
    #[test]
    fn any_bytes_give_a_run_or_an_error(bytes in vec(any::<u8>(), 0..4096)) {
        parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn a_damaged_run_file_gives_a_run_or_an_error(
        flips in vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        parse(&damaged(&seed(), &flips, cut));
    }

    #[test]
    fn a_damaged_histogram_gives_a_run_or_an_error(
        flips in vec((any::<usize>(), any::<u8>()), 1..8),
        extra in vec(any::<u8>(), 0..64),
    ) {
        let mut v = seed();
        let encoded = v["total"]["latency"].as_str().expect("a base64 histogram").to_string();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut raw = b64.decode(&encoded).expect("base64");
        for (at, b) in flips {
            let i = at % raw.len();
            raw[i] = b;
        }
        raw.extend_from_slice(&extra);
        v["total"]["latency"] = serde_json::Value::String(b64.encode(&raw));
        parse(&v.to_string());
    }

    #[test]
    fn a_histogram_claiming_any_length_gives_a_run_or_an_error(
        claimed: u32,
        rest in vec(any::<u8>(), 0..256),
    ) {
        let mut v = seed();
        let b64 = base64::engine::general_purpose::STANDARD;
        let valid = b64.decode(v["total"]["latency"].as_str().expect("base64")).expect("base64");
        // The compressed cookie, then a length the payload does not have.
        let mut raw = valid[..4].to_vec();
        raw.extend_from_slice(&claimed.to_be_bytes());
        raw.extend_from_slice(&rest);
        v["total"]["latency"] = serde_json::Value::String(b64.encode(&raw));
        parse(&v.to_string());
    }

    #[test]
    fn any_bytes_give_a_snapshot_or_an_error(bytes in vec(any::<u8>(), 0..4096)) {
        parse_snapshot(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn a_damaged_snapshot_gives_a_snapshot_or_an_error(
        flips in vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        parse_snapshot(&damaged(&snapshot_seed(), &flips, cut));
    }

    #[test]
    fn any_histogram_buckets_give_a_snapshot_or_an_error(
        which in 0..3usize,
        claimed in prop_oneof![any::<u64>(), 0..1000u64],
        pairs in vec((any::<u64>(), any::<u64>()), 0..64),
        tail in vec(any::<u8>(), 0..32),
    ) {
        // A bucket count (true or not), then (value delta, count) pairs of any size.
        let mut raw = Vec::new();
        varint(claimed, &mut raw);
        for (d, c) in pairs {
            varint(d, &mut raw);
            varint(c, &mut raw);
        }
        raw.extend_from_slice(&tail);
        let mut v = snapshot_seed();
        let b64 = base64::engine::general_purpose::STANDARD;
        v[["latency", "service", "lateness"][which]] = serde_json::Value::String(b64.encode(&raw));
        parse_snapshot(&v.to_string());
    }
}

#[test]
fn the_snapshot_seed_is_a_snapshot() {
    let w: WireSnapshot = serde_json::from_value(snapshot_seed()).expect("parses");
    assert_eq!(w.to_snapshot().expect("merges").latency.len(), 299);
}
