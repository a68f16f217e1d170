use super::*;
use crate::wire::{Interval, Push, Register, Registered};
use hist::sparse::WireSnapshot;
use proptest::prelude::*;
use report::Event;

fn spec() -> Spec {
    Spec {
        url: Some("http://127.0.0.1:9/".into()),
        ..Spec::default()
    }
}

fn state() -> State {
    State::new(
        Config::default(),
        "r".into(),
        1000.0,
        spec(),
        Plan::Total { rate: 300.0 },
    )
}

fn reg(s: &mut State, now: f64, name: &str) -> u64 {
    register(s, now, name, None).id
}

/// A new bot named `name` that was in run `previous` before.
fn register(s: &mut State, now: f64, name: &str, previous: Option<&str>) -> Registered {
    let r = Register {
        id: None,
        name: name.into(),
        host: "h".into(),
        pid: 1,
        version: "0".into(),
        clock_unix: now,
        previous_run: previous.map(str::to_string),
        wire: crate::wire::WIRE,
    };
    s.register(now, &r, "i").unwrap()
}

/// Bots that were in another run say so: this aggregator's run restarted (a new pod on an
/// empty directory), once in the events and in the results; their own run is no news.
#[test]
fn a_bot_from_an_earlier_run_marks_the_run_as_restarted() {
    let mut s = state();
    let now = 1000.0;
    let reg = |s: &mut State, name: &str, prev: Option<&str>| register(s, now, name, prev);
    let own = s.run_id.clone();
    assert_eq!(reg(&mut s, "a", Some(&own)).run, own);
    assert_eq!(reg(&mut s, "b", None).run, own);
    // Its seconds before the first this run takes (its start − 5 s) are skipped: the bot is
    // told it has them, rather than sending them to be refused.
    assert_eq!(reg(&mut s, "c", Some("old-run")).hwm, 994);
    reg(&mut s, "d", Some("old-run"));
    let restarted: Vec<&Event> = s
        .events()
        .iter()
        .filter(|e| e.kind == "restarted")
        .collect();
    assert_eq!(restarted.len(), 1, "{restarted:?}");
    assert!(
        restarted[0].text.contains("was in run old-run")
            && restarted[0]
                .text
                .ends_with("seconds before 1970-01-01 00:16:35 UTC are missing from this run"),
        "{}",
        restarted[0].text
    );
    let run = s.results(now, report::RunInfo::default());
    assert_eq!(
        run.fleet.unwrap().previous_runs,
        vec!["old-run".to_string()]
    );
    // It survives a restore from the saved state.
    let saved = s.saved();
    assert_eq!(saved.previous_runs, vec!["old-run".to_string()]);
}

fn snap(values: &[u64]) -> Snapshot {
    let mut s = Snapshot {
        end: 1.0,
        ..Default::default()
    };
    for v in values {
        s.latency.record(*v).unwrap();
        s.service.record(*v).unwrap();
        s.responses += 1;
        *s.status.entry(200).or_default() += 1;
    }
    s
}

fn push(s: &mut State, now: f64, id: u64, t: u64, values: &[u64]) -> Result<(u64, u64), Refused> {
    push_snap(s, now, id, t, &snap(values))
}

fn push_snap(
    s: &mut State,
    now: f64,
    id: u64,
    t: u64,
    snap: &Snapshot,
) -> Result<(u64, u64), Refused> {
    s.push(
        now,
        id,
        Push {
            clock_unix: now,
            dropped: 0,
            intervals: vec![Interval {
                t,
                snap: snap.into(),
            }],
            generation: 0,
            idle: false,
            instance: String::new(),
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Merged percentiles are the percentiles of all samples taken together, whatever
    /// the split over bots and whether they arrive through the wire format.
    #[test]
    fn merged_percentiles_equal_those_of_all_samples(
        per_bot in proptest::collection::vec(proptest::collection::vec(1u64..5_000_000, 0..200), 1..6)
    ) {
        let mut s = state();
        let mut all = hist::new_histogram();
        let ids: Vec<u64> = (0..per_bot.len()).map(|i| reg(&mut s, 1000.0, &format!("b{i}"))).collect();
        for (id, values) in ids.iter().zip(&per_bot) {
            // Through JSON, as a bot sends it.
            let p = Push { clock_unix: 1001.0, dropped: 0, intervals: vec![Interval { t: 1000, snap: (&snap(values)).into() }], generation: 0, idle: false, instance: String::new() };
            let p: Push = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
            s.push(1001.0, *id, p).unwrap();
            for v in values { all.record(*v).unwrap(); }
        }
        let t = s.tick(1002.6);
        let point = &t.points.iter().find(|p| p.t == 1000).unwrap();
        prop_assert_eq!(point.second.responses, all.len());
        for (q, got) in [(0.5, point.second.latency.p50), (0.9, point.second.latency.p90), (0.99, point.second.latency.p99), (0.999, point.second.latency.p999)] {
            let want = if all.is_empty() { 0.0 } else { all.value_at_quantile(q) as f64 / 1000.0 };
            prop_assert_eq!(got, want);
        }
        prop_assert_eq!(s.total().latency.value_at_quantile(0.99), all.value_at_quantile(0.99));
    }
}

/// A push as the aggregator takes it from a request body: decoded, then counted (true) or
/// refused with a 4xx; and the state still ticks and totals.
fn ingest(s: &mut State, id: u64, body: &[u8]) -> Result<bool, TestCaseError> {
    let mut counted = false;
    if let Ok(p) = Push::decode(body) {
        match s.push(1001.0, id, p) {
            Ok(_) => counted = true,
            Err(Refused(code, why)) => {
                prop_assert!((400..500).contains(&code), "{} {}", code, why)
            }
        }
    }
    let _ = s.tick(1002.6);
    let _ = s.total();
    Ok(counted)
}

/// A push of two seconds with a few hundred values each (as JSON: `encode` gives its body).
fn push_seed() -> serde_json::Value {
    let values: Vec<u64> = (1..300).map(|i| i * 7919 % 100_003 + 1).collect();
    let intervals = [1000, 1001]
        .map(|t| Interval {
            t,
            snap: (&snap(&values)).into(),
        })
        .to_vec();
    let p = Push {
        clock_unix: 1001.0,
        dropped: 0,
        intervals,
        generation: 0,
        idle: false,
        instance: String::new(),
    };
    serde_json::to_value(p).unwrap()
}

/// A consistent snapshot (it passes [`Push::check`]) whose every count is `n`.
fn counted(n: u64) -> WireSnapshot {
    let h = hist::sparse::Buckets(vec![(1000, n)]);
    WireSnapshot {
        start: 0.0,
        end: 1.0,
        responses: n,
        bytes: n,
        status: [(200, n)].into(),
        errors: [("timeout".to_string(), n)].into(),
        latency: h.clone(),
        service: h.clone(),
        late: n,
        capped: n,
        unsent: n,
        lateness: h,
        versions: [("v1".to_string(), n)].into(),
        intended: n,
        sent: n,
        bytes_sent: n,
        names: Default::default(),
    }
}

proptest! {
    #[test]
    fn any_bytes_pushed_are_counted_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut s = state();
        let id = reg(&mut s, 1000.0, "a");
        ingest(&mut s, id, &bytes)?;
    }

    #[test]
    fn a_damaged_push_is_counted_or_refused(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut s = state();
        let id = reg(&mut s, 1000.0, "a");
        let seed = serde_json::from_value::<Push>(push_seed()).unwrap().encode();
        ingest(&mut s, id, &testsupport::damaged_bytes(&seed, &flips, cut))?;
    }

    /// A run directory damaged on disk (by hand, or a crash the journal's torn-line rule
    /// does not cover) restores or is refused; it never panics.
    #[test]
    fn a_damaged_run_directory_restores_or_is_refused(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<usize>()),
    ) {
        // Built once: a minute and a half of pushes and ticks is not cheap.
        static SEED: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
        restart(&testsupport::damaged(SEED.get_or_init(saved_seed), &flips, cut));
    }

    /// Counts a bot may claim, however large: those a second can hold add up (two bots,
    /// the same second, then the run's total), the others are refused.
    #[test]
    fn pushes_of_any_counts_are_counted_or_refused(
        counts in proptest::collection::vec(
            prop_oneof![any::<u64>(), Just(u64::MAX), 0..=crate::wire::MAX_COUNT],
            2,
        ),
    ) {
        let mut s = state();
        let mut want = 0;
        for (i, n) in counts.into_iter().enumerate() {
            let id = reg(&mut s, 1000.0, &format!("b{i}"));
            let p = Push {
                clock_unix: 1001.0,
                dropped: n,
                intervals: vec![Interval { t: 1000, snap: counted(n) }],
                generation: 0,
                idle: false,
                instance: String::new(),
            };
            let took = ingest(&mut s, id, &p.encode())?;
            // Refused exactly when past what a second can hold.
            prop_assert_eq!(took, n <= crate::wire::MAX_COUNT, "{}", n);
            want += if took { n } else { 0 };
        }
        prop_assert_eq!(s.total().responses, want);
    }
}

/// A run directory's state and journal after 90 s of one bot, as JSON: what a restarted
/// aggregator reads back (the journal's seconds past the late window, the rest open).
fn saved_seed() -> serde_json::Value {
    let mut s = state();
    let a = reg(&mut s, 1000.0, "a");
    let mut closed = Vec::new();
    for t in 1000..1090 {
        push(&mut s, t as f64 + 1.2, a, t, &[t, t + 7]).unwrap();
        closed.extend(s.tick(t as f64 + 1.3).closed);
    }
    serde_json::json!({"saved": s.saved(), "closed": closed})
}

/// Restart from `text` as `Store::open` reads it: anything that parses is restored, ticks
/// and totals.
fn restart(text: &str) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let (Ok(saved), Ok(closed)) = (
        serde_json::from_value::<Saved>(v["saved"].clone()),
        serde_json::from_value::<Vec<(u64, Closed)>>(v["closed"].clone()),
    ) else {
        return;
    };
    let mut r = State::restore(
        Config::default(),
        saved,
        closed.into_iter().collect(),
        1095.0,
    );
    let _ = r.tick(1096.0);
    let _ = r.total();
    let _ = r.saved();
}

#[test]
fn the_saved_seed_restores() {
    let v = saved_seed();
    let saved: Saved = serde_json::from_value(v["saved"].clone()).unwrap();
    let closed: Vec<(u64, Closed)> = serde_json::from_value(v["closed"].clone()).unwrap();
    assert!(
        closed.len() >= 20 && !saved.open.is_empty(),
        "{}",
        closed.len()
    );
    let r = State::restore(
        Config::default(),
        saved,
        closed.into_iter().collect(),
        1095.0,
    );
    assert_eq!(r.total().responses, 180);
}

#[test]
fn the_push_seed_is_counted() {
    let mut s = state();
    let id = reg(&mut s, 1000.0, "a");
    let body = serde_json::from_value::<Push>(push_seed())
        .unwrap()
        .encode();
    assert!(ingest(&mut s, id, &body).unwrap());
    assert_eq!(s.total().responses, 2 * 299);
}

#[test]
fn seconds_of_bots_with_different_run_starts_stay_one_second_long() {
    let mut s = state();
    let (a, b) = (reg(&mut s, 1000.0, "a"), reg(&mut s, 1000.0, "b"));
    let mut old = snap(&[1]);
    (old.start, old.end) = (99.0, 100.0);
    s.push(
        1001.2,
        a,
        Push {
            clock_unix: 0.0,
            dropped: 0,
            intervals: vec![Interval {
                t: 1000,
                snap: (&old).into(),
            }],
            generation: 0,
            idle: false,
            instance: String::new(),
        },
    )
    .unwrap();
    push(&mut s, 1001.2, b, 1000, &[2]).unwrap();
    let t = s.tick(1002.6);
    let p = t.points.iter().find(|p| p.t == 1000).unwrap();
    assert_eq!((p.seconds, p.second.responses), (1.0, 2));
}

#[test]
fn a_retried_push_is_counted_once() {
    let mut s = state();
    let id = reg(&mut s, 1000.0, "a");
    assert_eq!(push(&mut s, 1001.2, id, 1000, &[5, 6]).unwrap().0, 1000);
    assert_eq!(push(&mut s, 1001.3, id, 1000, &[5, 6]).unwrap().0, 1000);
    assert_eq!(s.total().responses, 2);
    assert_eq!(s.duplicates, 1);
}

#[test]
fn a_silent_bot_goes_stale_then_gone_and_its_share_moves() {
    let mut s = state();
    let (a, b, c) = (
        reg(&mut s, 1000.0, "a"),
        reg(&mut s, 1000.0, "b"),
        reg(&mut s, 1000.0, "c"),
    );
    // A small fleet is re-split as each bot joins: the total holds at once.
    assert_eq!(s.offered(), 300.0);
    assert_eq!(s.bots[&a].record.rate, 100.0);
    let g = s.bots[&a].assignment.generation;
    // b and c keep pushing; a falls silent.
    for now in [1001.0, 1002.0, 1003.0] {
        push(&mut s, now, b, now as u64 - 1, &[1]).unwrap();
        push(&mut s, now, c, now as u64 - 1, &[1]).unwrap();
        s.tick(now);
    }
    assert_eq!(s.bots[&a].record.state, "stale");
    assert_eq!(s.bot_counts(), (2, 1, 0));
    // The total holds: b and c now have 150 each, under a new generation.
    assert_eq!(s.bots[&b].record.rate, 150.0);
    assert_eq!(s.offered(), 300.0);
    assert!(s.bots[&b].assignment.generation > g);
    let spec = s.bots[&b].assignment.spec.clone().unwrap();
    assert_eq!(spec.rate.as_ref().map(|r| r.text()).as_deref(), Some("150"));
    for now in 1004..=1031 {
        push(&mut s, now as f64, b, now - 1, &[1]).unwrap();
        push(&mut s, now as f64, c, now - 1, &[1]).unwrap();
        s.tick(now as f64);
    }
    assert_eq!(s.bots[&a].record.state, "gone");
    let kinds: Vec<&str> = s.events().iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"bot_stale") && kinds.contains(&"bot_gone"),
        "{kinds:?}"
    );
    // It comes back: live again, and the rate is split three ways again.
    push(&mut s, 1032.0, a, 1031, &[1]).unwrap();
    assert_eq!(s.bots[&a].record.state, "live");
    s.tick(1032.1);
    assert_eq!(s.bots[&b].record.rate, 100.0);
    assert_eq!(s.offered(), 300.0);
}

#[test]
fn late_snapshots_land_in_their_own_second_and_revise_it() {
    let mut s = state();
    let (a, b) = (reg(&mut s, 1000.0, "a"), reg(&mut s, 1000.0, "b"));
    push(&mut s, 1001.2, a, 1000, &[10]).unwrap();
    let t = s.tick(1002.6);
    let p = t.points.iter().find(|p| p.t == 1000).unwrap();
    assert_eq!((p.second.responses, p.reported), (1, 1));
    // b's second 1000 arrives 20 s late: a revision of 1000, not part of 1020.
    push(&mut s, 1020.0, b, 1000, &[20, 30]).unwrap();
    let t = s.tick(1020.1);
    let r = t.revisions.iter().find(|p| p.t == 1000).unwrap();
    assert_eq!((r.second.responses, r.reported), (3, 2));
    // 100 s late: past the late window, the closed second is revised from its packed copy.
    s.tick(1070.0);
    let c = reg(&mut s, 1100.0, "c");
    push(&mut s, 1100.0, c, 1000, &[40]).unwrap();
    let t = s.tick(1100.1);
    assert!(t.closed.iter().any(|(k, _)| *k == 1000), "journaled again");
    let r = t.revisions.iter().find(|p| p.t == 1000).unwrap();
    assert_eq!((r.second.responses, r.reported), (4, 3));
    // Older than max_late (15 min) is refused and changes nothing.
    let e = push(&mut s, 2000.0, c, 1001, &[1]).unwrap_err();
    assert_eq!(e.0, 422);
    assert_eq!(s.total().responses, 4);
}

#[test]
fn a_restored_run_keeps_totals_and_high_water_marks() {
    let mut s = state();
    let a = reg(&mut s, 1000.0, "a");
    for t in 1000..1070 {
        push(&mut s, t as f64 + 1.2, a, t, &[t]).unwrap();
        let tick = s.tick(t as f64 + 1.3);
        let _ = tick;
    }
    let closed: BTreeMap<u64, Closed> = s.closed.clone();
    let saved = s.saved();
    let total = s.total().responses;
    let r = State::restore(Config::default(), saved, closed, 1075.0);
    assert_eq!(r.total().responses, total);
    assert_eq!(r.bots[&a].hwm, 1069);
    // What the bot sends again after the restart is not counted twice.
    let mut r = r;
    push(&mut r, 1075.0, a, 1069, &[1]).unwrap();
    assert_eq!(r.total().responses, total);
}

/// Issue 27's restart: the seconds a restarted aggregator hears before the bots register
/// again (their retained outboxes re-sent) follow the plan, and no second has more bots
/// reporting than live.
#[test]
fn after_a_restart_offered_follows_the_plan_and_coverage_stays_within_100_percent() {
    let mut s = state();
    let (a, b) = (reg(&mut s, 1000.0, "a"), reg(&mut s, 1000.0, "b"));
    for t in 1000..1010 {
        for id in [a, b] {
            push(&mut s, t as f64 + 1.2, id, t, &[t]).unwrap();
        }
        let _ = s.tick(t as f64 + 1.3);
    }
    let closed: BTreeMap<u64, Closed> = s.closed.clone();
    let saved = s.saved();
    // Down from 1010 to 1014; the bots re-send 1010.. and go on.
    let mut r = State::restore(Config::default(), saved, closed, 1015.0);
    for t in 1010..1020 {
        for id in [a, b] {
            push(&mut r, (t as f64 + 1.2).max(1015.0), id, t, &[t]).unwrap();
        }
        let _ = r.tick((t as f64 + 1.3).max(1015.1));
    }
    r.finish(1021.0);
    r.close_all();
    let run = r.results(1021.0, report::RunInfo::default());
    let f = run.fleet.unwrap();
    for s in f.seconds.iter().filter(|s| s.reported > 0) {
        assert!(s.reported <= s.live, "{s:?}");
        assert_eq!(s.offered, 300.0, "{s:?}");
    }
    assert_eq!(f.seconds.iter().filter(|s| s.reported == 2).count(), 20);
}

/// A restarted aggregator splits the load again at once: its offered rate is the plan and
/// its live count the bots it restored, before any of them is heard from.
#[test]
fn a_restored_run_offers_its_plan_before_any_bot_speaks() {
    let mut s = state();
    let (a, b) = (reg(&mut s, 1000.0, "a"), reg(&mut s, 1000.0, "b"));
    for id in [a, b] {
        push(&mut s, 1001.2, id, 1000, &[1]).unwrap();
    }
    let saved = s.saved();
    let r = State::restore(Config::default(), saved, BTreeMap::new(), 1010.0);
    assert_eq!(r.offered(), 300.0);
    assert_eq!(r.live_count(), 2);
}

/// With no live bot the offered rate is 0, not -0 (f64's empty sum), in the API's JSON too.
#[test]
fn no_live_bot_offers_zero() {
    let mut s = state();
    s.resplit(1000.0);
    assert_eq!(s.offered().to_string(), "0");
    assert!(s.offered().is_sign_positive());
}

/// A run that ran at 300/s and then idled (PUT /api/load idle) is restored still describing
/// the load it ran, not the idle plan of its last moment.
#[test]
fn a_restored_idle_run_keeps_the_plan_it_ran() {
    let mut s = state();
    reg(&mut s, 1000.0, "a");
    let ran = s.ran.clone();
    assert!(matches!(ran, Plan::Total { .. }), "{ran:?}");
    s.set_load(1001.0, &serde_json::from_str(r#"{"idle": true}"#).unwrap())
        .unwrap();
    assert_eq!((&s.plan, &s.ran), (&Plan::Idle, &ran));
    let r = State::restore(Config::default(), s.saved(), BTreeMap::new(), 1010.0);
    assert_eq!((&r.plan, &r.ran), (&Plan::Idle, &ran));
    // A file from before `ran` was saved: the plan stands for it.
    let mut old = serde_json::to_value(s.saved()).unwrap();
    old.as_object_mut().unwrap().remove("ran");
    let r = State::restore(
        Config::default(),
        serde_json::from_value(old).unwrap(),
        BTreeMap::new(),
        1010.0,
    );
    assert_eq!(r.ran, Plan::Idle);
}

/// Issue 27: a bot killed after reporting second 1004 is lost. Once stale, its record says
/// which seconds it never reported (1005 to the second it went stale in) and the most they
/// may hold: at the highest rate it was assigned since (150/s, though a third bot joining
/// lowered its share to 100/s before it went stale). A bot that comes back and reports them
/// clears it.
#[test]
fn a_lost_bot_says_what_its_unreported_seconds_may_hold() {
    let mut s = state();
    let (a, b) = (reg(&mut s, 1000.0, "a"), reg(&mut s, 1000.0, "b"));
    for t in 1000..1005 {
        for id in [a, b] {
            push(&mut s, t as f64 + 1.2, id, t, &[1]).unwrap();
        }
        let _ = s.tick(t as f64 + 1.3);
    }
    let c = reg(&mut s, 1006.5, "c");
    assert_eq!(s.bots[&a].record.rate, 100.0);
    for t in 1005..1010 {
        for id in [b, c] {
            push(&mut s, t as f64 + 1.2, id, t, &[1]).unwrap();
        }
        let _ = s.tick(t as f64 + 1.3);
    }
    let rec = &s.bots[&a].record;
    assert_eq!(rec.state, "stale");
    assert_eq!((rec.unreported_s, rec.unreported_max), (4, 600), "{rec:?}");
    let run = s.results(1010.0, report::RunInfo::default());
    assert_eq!(
        run.fleet.unwrap().lost_text().unwrap(),
        "1 bot lost (a): 4 s never reported, which may hold up to 600 requests"
    );
    // It was alive after all: its outbox re-sent, nothing is missing.
    for t in 1005..1010 {
        push(&mut s, 1010.2, a, t, &[1]).unwrap();
    }
    let rec = &s.bots[&a].record;
    assert_eq!((rec.unreported_s, rec.unreported_max), (0, 0), "{rec:?}");
}

#[test]
fn load_requests_are_checked_like_load_flags() {
    let mut s = state();
    let bad = |s: &mut State, json: &str| {
        s.set_load(1.0, &serde_json::from_str(json).unwrap())
            .unwrap_err()
            .1
    };
    assert!(bad(&mut s, r#"{"rate": 0}"#).contains("> 0"));
    assert_eq!(
        bad(&mut s, r#"{"rate": 5, "per_bot_rate": 5}"#),
        "give one of rate, per_bot_rate, connections_per_bot or idle"
    );
    assert!(bad(&mut s, r#"{}"#).contains("one of"));
    // The spec's rule, in the API's words: its field names, not `scaletest load`'s flags.
    assert_eq!(
        bad(
            &mut s,
            r#"{"rate": 5, "spec": {"url": "http://127.0.0.1:9/", "http2": false, "streams": 3}}"#
        ),
        "streams needs http2 (HTTP/1.1 carries one request at a time)"
    );
    s.set_load(
        1.0,
        &serde_json::from_str(r#"{"connections_per_bot": 4}"#).unwrap(),
    )
    .unwrap();
    assert_eq!(s.plan, Plan::Connections { per_bot: 4 });
}

/// A total rate in stages is one schedule for the fleet: it starts on a whole second after the
/// lead, every live bot walks its share of it from that instant (a new bot rescales the
/// others' shares, same start), each second offers the schedule's count, the run ends with
/// the stages and the results cut the stages from the seconds.
#[test]
fn a_schedule_is_one_for_the_fleet_split_over_the_live_bots() {
    let mut s = state();
    let a = reg(&mut s, 1000.0, "a");
    let b = reg(&mut s, 1000.0, "b");
    let req: LoadRequest = serde_json::from_str(r#"{"rate":"stages:2s:200,2s:200"}"#).unwrap();
    s.set_load(1000.4, &req).unwrap();
    assert_eq!(s.plan.start_unix(), Some(1003.0), "{:?}", s.plan);
    assert_eq!(s.schedule_end(), Some(1007.0));
    let share = |s: &State, id: u64| {
        let a = s.assignment(id).unwrap();
        (
            a.spec.as_ref().unwrap().rate.as_ref().unwrap().text(),
            a.rate_start_unix,
        )
    };
    assert_eq!(share(&s, a), ("stages:2s:100,2s:100".into(), Some(1003.0)));
    assert_eq!(share(&s, b), share(&s, a));
    let c = reg(&mut s, 1001.0, "c");
    let third = "stages:2s:66.66666666666666,2s:66.66666666666666".to_string();
    assert_eq!(share(&s, a), (third.clone(), Some(1003.0)));
    assert_eq!(share(&s, c), (third, Some(1003.0)));
    // Offered per second: the schedule's count in it (0→200/s over 2 s: 50 then 150), and
    // nothing after the stages (the bots' schedules end there).
    for (t, want) in [
        (1002, 0.0),
        (1003, 50.0),
        (1004, 150.0),
        (1005, 200.0),
        (1007, 0.0),
    ] {
        assert_eq!(s.plan.scheduled_in(t), Some(want), "second {t}");
    }
    for t in 1003..1007 {
        for id in [a, b, c] {
            push(&mut s, t as f64 + 1.2, id, t, &[1000; 10]).unwrap();
        }
    }
    s.tick(1004.6);
    assert!(
        (s.offered() - 160.0).abs() < 1e-6,
        "the rate asked 1.6 s into the schedule: {}",
        s.offered()
    );
    s.finish(1007.5);
    s.close_all();
    let run = s.results(1007.5, report::RunInfo::default());
    let fleet = run.fleet.as_ref().unwrap();
    let offered: Vec<f64> = fleet.seconds.iter().map(|x| x.offered).collect();
    assert_eq!(offered, vec![50.0, 150.0, 200.0, 200.0]);
    let stages: Vec<(f64, f64, Option<f64>, u64)> = run
        .stages
        .iter()
        .map(|r| (r.plan.start_s, r.plan.end_s, r.plan.planned, r.responses))
        .collect();
    assert_eq!(
        stages,
        vec![(0.0, 2.0, Some(200.0), 60), (2.0, 4.0, Some(400.0), 60)]
    );
    s.tick(1007.2);
    assert_eq!(s.offered(), 0.0, "asked for nothing after the stages");
    // Refused: a ramp (no duration to walk it over), a schedule that never sends.
    for (body, why) in [
        (r#"{"rate":"ramp:1..2"}"#, "a ramp needs a duration"),
        (r#"{"rate":"stages:5s:0"}"#, "every stage's rate is 0"),
        (r#"{"rate":"fast"}"#, "rate must be a number"),
    ] {
        let e = serde_json::from_str::<LoadRequest>(body)
            .map_err(|e| e.to_string())
            .and_then(|r| s.set_load(1008.0, &r).map_err(|e| e.1));
        assert!(e.as_ref().is_err_and(|e| e.contains(why)), "{body}: {e:?}");
    }
}

/// A run finished before its stages end: the stage table is cut at the finish, not at the
/// results' writing (after the bots' flush).
#[test]
fn the_stage_table_ends_where_the_run_did() {
    let mut s = state();
    let a = reg(&mut s, 1000.0, "a");
    let req: LoadRequest = serde_json::from_str(r#"{"rate":"stages:2s:200,10s:200"}"#).unwrap();
    s.set_load(1000.4, &req).unwrap();
    for t in 1003..1006 {
        push(&mut s, t as f64 + 1.2, a, t, &[1000; 10]).unwrap();
    }
    s.finish(1006.0);
    s.close_all();
    let run = s.results(1016.0, report::RunInfo::default());
    let stages: Vec<(f64, f64, Option<f64>)> = run
        .stages
        .iter()
        .map(|r| (r.plan.start_s, r.plan.end_s, r.plan.planned))
        .collect();
    assert_eq!(
        stages,
        vec![(0.0, 2.0, Some(200.0)), (2.0, 3.0, Some(200.0))]
    );
}

/// A run started with a schedule ends `--run-for` after the schedule first started, whatever
/// the plan becomes later, and a restored run still knows it was one.
#[test]
fn a_scheduled_run_ends_from_its_first_schedule_start() {
    let shape: pace::RateShape = "stages:10s:100".parse().unwrap();
    let plan = Plan::Shaped {
        shape,
        start_unix: None,
    };
    let mut s = State::new(Config::default(), "r".into(), 1000.0, spec(), plan);
    assert_eq!(
        s.scheduled_end(Some(60.0)),
        Some(1060.0),
        "no bot yet: from the run's start"
    );
    assert_eq!(s.scheduled_end(None), None, "not started: no end yet");
    reg(&mut s, 1300.0, "a");
    assert_eq!(s.scheduled_end(Some(60.0)), Some(1362.0));
    assert_eq!(s.scheduled_end(None), Some(1312.0), "with its stages");
    s.set_load(1320.0, &serde_json::from_str(r#"{"rate": 50}"#).unwrap())
        .unwrap();
    assert_eq!(
        s.scheduled_end(Some(60.0)),
        Some(1362.0),
        "a PUT does not move it"
    );
    let r = State::restore(Config::default(), s.saved(), BTreeMap::new(), 1330.0);
    assert!(r.scheduled_run());
    assert_eq!(r.scheduled_end(Some(60.0)), Some(1362.0));
    // A run started with a constant rate has no scheduled end (its --run-for is the run's).
    assert_eq!(state().scheduled_end(Some(60.0)), None);
}

/// A second of `values` (µs) per name; the total is theirs together.
fn with_names(names: &[(&str, &[u64])]) -> Snapshot {
    let mut total = snap(&[]);
    for (name, values) in names {
        let n = snap(values);
        total.merge(&n);
        total.names.insert(name.to_string(), n);
    }
    total
}

#[test]
fn named_requests_are_counted_once_kept_whole_run_and_across_a_restart() {
    let mut s = state();
    let (a, b) = (reg(&mut s, 1000.0, "a"), reg(&mut s, 1000.0, "b"));
    let second = with_names(&[("slow", &[20_000, 21_000]), ("fast", &[300])]);
    for t in 1000..1070 {
        for id in [a, b] {
            push_snap(&mut s, t as f64 + 1.2, id, t, &second).unwrap();
        }
        let _ = s.tick(t as f64 + 1.3);
    }
    // A retried push counts nothing, its names neither.
    push_snap(&mut s, 1070.5, a, 1069, &second).unwrap();
    let rows = s.summary(1071.0).names;
    let got: Vec<(&str, u64)> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.responses))
        .collect();
    assert_eq!(got, [("slow", 280), ("fast", 140)]);
    assert_eq!(s.total().responses, 420);
    assert!((20.0..20.1).contains(&rows[0].p50_ms), "{rows:?}");
    // Seconds are kept without names (closed, open, and the UI's history).
    assert!(s.closed.values().all(|c| !c.packed.contains("\"names\"")));
    assert!(s.history.values().all(|p| p.second.names.is_empty()));
    assert!(s.total().names.is_empty());
    // The run file has them in its total, adding up to it; and so does a restored run.
    let closed: BTreeMap<u64, Closed> = s.closed.clone();
    let saved = s.saved();
    let r = State::restore(Config::default(), saved, closed, 1075.0);
    for st in [&s, &r] {
        let run = st.results(1075.0, report::RunInfo::default());
        let sum: u64 = run.total.names.values().map(|n| n.responses).sum();
        assert_eq!((sum, run.total.responses), (420, 420));
        assert_eq!(run.total.names["fast"].latency.len(), 140);
    }
}

#[test]
fn names_past_the_fleets_limit_are_counted_as_other() {
    let mut s = state();
    let id = reg(&mut s, 1000.0, "a");
    let many = |from: usize| {
        let names: Vec<String> = (from..from + 600).map(|i| format!("n{i}")).collect();
        let values: Vec<(&str, &[u64])> =
            names.iter().map(|n| (n.as_str(), &[500u64][..])).collect();
        with_names(&values)
    };
    push_snap(&mut s, 1001.0, id, 1000, &many(0)).unwrap();
    push_snap(&mut s, 1002.0, id, 1001, &many(600)).unwrap();
    let rows = s.summary(1002.0).names;
    assert_eq!(rows.len(), crate::wire::MAX_NAMES as usize + 1);
    let other = rows.iter().find(|r| r.name == "other").unwrap();
    assert_eq!(other.responses, 200);
    assert_eq!(rows.iter().map(|r| r.responses).sum::<u64>(), 1200);
}

/// The run's spec (here with a large header) is saved once, not once per bot; a restored run
/// deals it to the live bots again, under a new generation, each with its place (its
/// requests vary; a spec whose requests do not gets no places).
#[test]
fn the_spec_is_saved_once_and_dealt_again_after_a_restart() {
    let marker = "x".repeat(4096);
    let mut s = State::new(
        Config::default(),
        "r".into(),
        1000.0,
        Spec {
            headers: vec![format!("X-Big: {marker}-{{{{seq}}}}")],
            ..spec()
        },
        Plan::Total { rate: 300.0 },
    );
    let ids: Vec<u64> = (0..3)
        .map(|i| reg(&mut s, 1000.0, &format!("b{i}")))
        .collect();
    let _ = s.tick(1001.0);
    let text = serde_json::to_string(&s.saved()).unwrap();
    assert_eq!(text.matches(&marker).count(), 1);
    let before = s.generation();
    // As a restart reads it.
    let saved: Saved = serde_json::from_str(&text).unwrap();
    let mut r = State::restore(Config::default(), saved, BTreeMap::new(), 1002.0);
    let _ = r.tick(1002.5);
    for (place, id) in ids.iter().enumerate() {
        let a = r.assignment(*id).unwrap();
        assert!(a.generation > before, "a new generation: bots fetch it");
        assert_eq!(
            a.spec.as_ref().unwrap().headers,
            [format!("X-Big: {marker}-{{{{seq}}}}")]
        );
        let share = a.share.unwrap();
        assert_eq!((share.index as usize, share.of), (place, 3));
    }
    let mut fixed = state();
    let id = reg(&mut fixed, 1000.0, "a");
    assert_eq!(fixed.assignment(id).unwrap().share, None);
}

/// A bot of another wire version is refused when it registers, saying what to do.
#[test]
fn a_bot_of_another_wire_version_is_refused_with_a_clear_message() {
    let mut s = state();
    let r = Register {
        id: None,
        name: "old".into(),
        host: "h".into(),
        pid: 1,
        version: "0".into(),
        clock_unix: 1000.0,
        previous_run: None,
        wire: 1,
    };
    let e = s.register(1000.0, &r, "i").unwrap_err();
    assert_eq!(e.0, 400);
    assert!(e.1.contains("wire version 1, this aggregator 2"), "{}", e.1);
    // A registration without the field is one from before it: wire 1.
    let mut v = serde_json::to_value(&r).unwrap();
    v.as_object_mut().unwrap().remove("wire");
    assert_eq!(serde_json::from_value::<Register>(v).unwrap().wire, 1);
}
