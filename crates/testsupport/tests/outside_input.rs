//! Run files and loadbots' snapshots come from outside (other machines, other versions, hand
//! edits, a bot that is not ours): whatever the bytes, `report::RunFile::from_json`,
//! `kapi::output::ApiRun::from_json` and the aggregator's reading of a
//! `hist::sparse::WireSnapshot` give a value or an error, never panic, and never allocate much
//! more than the input's size (a damaged histogram header must not ask for gigabytes). A run
//! file that reads is also merged and rendered, as `scaletest report` does with it, and a
//! number no run makes is refused rather than overflowing those sums. Here rather than in
//! `report`, `kapi` and `hist` so that the seeds are built only from public types, under one
//! counting allocator.

// Counting allocations needs a global allocator, which is unsafe to implement.
#![allow(unsafe_code)]

use base64::Engine;
use hist::sparse::WireSnapshot;
use kapi::output::{render, ApiInfo, ApiRun, Lifecycles};
use kapi::watch::WatchStats;
use proptest::collection::vec;
use proptest::prelude::*;
use report::RunFile;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use testsupport::damaged;

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

/// Read a run file as `scaletest report` does: parse, merge (here with itself), render.
fn parse(text: &str) {
    bounded(text, |t| {
        if let Ok(run) = RunFile::from_json("f", t) {
            let merged = RunFile::merge(&[run.clone(), run]).expect("two runs");
            let mut out = Vec::new();
            report::table::write_report(&merged, true, &mut out).expect("into a Vec");
        }
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

/// Read an api run file as `scaletest report` does: parse, merge (here with itself), render.
fn parse_api(text: &str) {
    bounded(text, |t| {
        if let Ok(run) = ApiRun::from_json("f", t) {
            let merged = ApiRun::merge(&[run.clone(), run]).expect("two runs");
            let _ = render(&merged, true);
        }
    });
}

/// An `api churn --watch` run file: lateness, one call's latencies and the informer's
/// notification times hold a few hundred values each.
fn api_seed() -> serde_json::Value {
    let info = ApiInfo {
        command: "churn".into(),
        resource: "configmaps".into(),
        mode: Some("open".into()),
        ..Default::default()
    };
    let mut run = ApiRun::new(info, 0.0);
    let mut h = hist::new_histogram();
    for i in 1..300u64 {
        h.record(i * 7919 % 100_003 + 1).expect("record");
    }
    run.elapsed_s = 1.0;
    run.lateness = h.clone();
    run.lifecycles = Some(Lifecycles {
        started: 299,
        completed: 299,
        ..Default::default()
    });
    run.watch = Some(WatchStats {
        notify_create: h,
        applied: 299,
        ..Default::default()
    });
    let mut v = serde_json::to_value(&run).expect("an api run");
    // `CallStats` has no public constructor: one call entry written as the file holds it.
    v["calls"] = serde_json::json!([{
        "verb": "create",
        "resource": "configmaps",
        "answered": 299,
        "ok": 298,
        "status": {"429": 1},
        "transport_errors": 0,
        "latency": v["lateness"].clone(),
    }]);
    v
}

/// The histograms of [`api_seed`], as JSON pointers.
const API_HISTOGRAMS: [&str; 3] = ["/lateness", "/calls/0/latency", "/watch/notify_create"];

/// The counters of [`api_seed`] that merging adds up, as JSON pointers.
const API_COUNTS: [&str; 8] = [
    "/lifecycles/started",
    "/lifecycles/completed",
    "/lifecycles/failed",
    "/calls/0/answered",
    "/calls/0/ok",
    "/calls/0/transport_errors",
    "/calls/0/status/429",
    "/watch/applied",
];

/// The base64 HDR histogram at `pointer` in `v`, decoded, overwritten at `flips` (positions
/// wrap), `extra` appended, and encoded again.
fn damage_histogram(v: &mut serde_json::Value, pointer: &str, flips: &[(usize, u8)], extra: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let at = v.pointer_mut(pointer).expect("a histogram");
    let mut raw = b64
        .decode(at.as_str().expect("a base64 histogram"))
        .expect("base64");
    for &(i, b) in flips {
        let i = i % raw.len();
        raw[i] = b;
    }
    raw.extend_from_slice(extra);
    *at = serde_json::Value::String(b64.encode(&raw));
}

/// The base64 HDR histogram at `pointer` in `v` replaced by its compressed cookie, then a
/// length `claimed` that the payload (`rest`) does not have.
fn claim_length(v: &mut serde_json::Value, pointer: &str, claimed: u32, rest: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let at = v.pointer_mut(pointer).expect("a histogram");
    let valid = b64.decode(at.as_str().expect("base64")).expect("base64");
    let mut raw = valid[..4].to_vec();
    raw.extend_from_slice(&claimed.to_be_bytes());
    raw.extend_from_slice(rest);
    *at = serde_json::Value::String(b64.encode(&raw));
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

/// Counters of [`seed`] that merging and rendering add up, as JSON pointers.
const RUN_COUNTS: [&str; 8] = [
    "/total/responses",
    "/total/bytes",
    "/total/status/200",
    "/total/errors/timeout",
    "/intervals/0/responses",
    "/intervals/0/status/503",
    "/intervals/0/errors/connect_refused",
    "/peak_lanes",
];

/// `seed` as text with the count at each of `pointers` set to the one of `counts` (a missing
/// map key is added).
fn with_counts(mut seed: serde_json::Value, pointers: &[&str], counts: &[u64]) -> String {
    for (pointer, n) in pointers.iter().zip(counts) {
        let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
        seed.pointer_mut(parent).expect("a parent")[key] = (*n).into();
    }
    seed.to_string()
}

/// `n` counts: any, the largest, or one a run can make.
fn counts(n: usize) -> impl Strategy<Value = Vec<u64>> {
    vec(
        prop_oneof![any::<u64>(), Just(u64::MAX), 0..=report::runfile::MAX_COUNT],
        n,
    )
}

/// Whether every count is one a run can make (and a file holding them must be read).
fn all_fit(counts: &[u64]) -> bool {
    counts.iter().all(|n| *n <= report::runfile::MAX_COUNT)
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
        cut in proptest::option::of(any::<usize>()),
    ) {
        parse(&damaged(&seed(), &flips, cut));
    }

    #[test]
    fn a_damaged_histogram_gives_a_run_or_an_error(
        flips in vec((any::<usize>(), any::<u8>()), 1..8),
        extra in vec(any::<u8>(), 0..64),
    ) {
        let mut v = seed();
        damage_histogram(&mut v, "/total/latency", &flips, &extra);
        parse(&v.to_string());
    }

    #[test]
    fn a_histogram_claiming_any_length_gives_a_run_or_an_error(
        claimed: u32,
        rest in vec(any::<u8>(), 0..256),
    ) {
        let mut v = seed();
        claim_length(&mut v, "/total/latency", claimed, &rest);
        parse(&v.to_string());
    }

    #[test]
    fn run_files_with_any_counts_merge_and_render_or_are_refused(
        counts in counts(RUN_COUNTS.len()),
    ) {
        let text = with_counts(seed(), &RUN_COUNTS, &counts);
        // Counts a run can make are read (and then merged and rendered); others refused.
        prop_assert_eq!(RunFile::from_json("f", &text).is_ok(), all_fit(&counts));
        parse(&text);
    }

    #[test]
    fn any_bytes_give_an_api_run_or_an_error(bytes in vec(any::<u8>(), 0..4096)) {
        parse_api(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn a_damaged_api_run_gives_a_run_or_an_error(
        flips in vec((any::<usize>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<usize>()),
    ) {
        parse_api(&damaged(&api_seed(), &flips, cut));
    }

    #[test]
    fn a_damaged_api_histogram_gives_a_run_or_an_error(
        which in 0..API_HISTOGRAMS.len(),
        flips in vec((any::<usize>(), any::<u8>()), 1..8),
        extra in vec(any::<u8>(), 0..64),
    ) {
        let mut v = api_seed();
        damage_histogram(&mut v, API_HISTOGRAMS[which], &flips, &extra);
        parse_api(&v.to_string());
    }

    #[test]
    fn an_api_histogram_claiming_any_length_gives_a_run_or_an_error(
        which in 0..API_HISTOGRAMS.len(),
        claimed: u32,
        rest in vec(any::<u8>(), 0..256),
    ) {
        let mut v = api_seed();
        claim_length(&mut v, API_HISTOGRAMS[which], claimed, &rest);
        parse_api(&v.to_string());
    }

    #[test]
    fn api_runs_with_any_counts_merge_and_render_or_are_refused(
        counts in counts(API_COUNTS.len()),
    ) {
        let text = with_counts(api_seed(), &API_COUNTS, &counts);
        prop_assert_eq!(ApiRun::from_json("f", &text).is_ok(), all_fit(&counts));
        parse_api(&text);
    }

    #[test]
    fn any_bytes_give_a_snapshot_or_an_error(bytes in vec(any::<u8>(), 0..4096)) {
        parse_snapshot(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn a_damaged_snapshot_gives_a_snapshot_or_an_error(
        flips in vec((any::<usize>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<usize>()),
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
fn the_api_seed_is_an_api_run() {
    let run = ApiRun::from_json("seed", &api_seed().to_string()).expect("parses");
    assert_eq!(run.calls.len(), 1);
    assert_eq!(run.calls[0].latency.len(), 299);
    assert_eq!(run.lateness.len(), 299);
    assert_eq!(run.watch.expect("a watch").notify_create.len(), 299);
    for p in API_COUNTS {
        assert!(api_seed().pointer(p).is_some_and(|c| c.is_u64()), "{p}");
    }
}

#[test]
fn the_snapshot_seed_is_a_snapshot() {
    let w: WireSnapshot = serde_json::from_value(snapshot_seed()).expect("parses");
    assert_eq!(w.to_snapshot().expect("merges").latency.len(), 299);
}

/// What CI found (2026-12-06): two bytes of a compressed latency histogram damaged so that it
/// decompressed into a header asking for ~140 MB of counts, allocated before anything was
/// checked. Refused within bounds now.
#[test]
fn a_histogram_header_asking_for_too_many_counts_is_refused_within_bounds() {
    let mut v = seed();
    damage_histogram(
        &mut v,
        "/total/latency",
        &[(4849757425711299823, 23), (253133099261666223, 145)],
        &[],
    );
    let text = v.to_string();
    parse(&text);
    assert!(RunFile::from_json("f", &text).is_err());
}
