//! The fleet under faults (issue 27): an aggregator and three loadbots under open-loop load
//! against a `scaletest serve` that counts what it answered. Bots are SIGKILLed (lost: their
//! last seconds never reported) and SIGTERMed (they drain and leave), and started again; the
//! aggregator is SIGKILLed and started again on its `--out`, once onto a directory a crash
//! left half-written (a torn journal line, a temporary state file), and the run ends by its
//! `--run-for` or by SIGTERM. When each fault comes is drawn from a seed: printed, and
//! `CHAOS_SEED=N` replays it. The verdict lists every check with its numbers; the schedule is
//! a pure function of the seed (tested below), and no check depends on more than the
//! schedule, so the same seed gives the same verdict.

// Tests may print (see clippy.toml): the seed and the verdict.
#![allow(clippy::disallowed_macros)]

use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::Proc;
use testsupport::call::json;
use testsupport::fleet::{bot, served, server};
use testsupport::{exited, signal, tmpdir, wait_until, Bin};

const SCALETEST: Bin = Bin(env!("CARGO_BIN_EXE_scaletest"));

/// The total rate, split over the live bots.
const RATE: f64 = 450.0;
/// The run's length, seconds.
const RUN_S: u64 = 18;
/// Bots at once.
const BOTS: usize = 3;
/// Faults happen from this long after the start, and are over (everyone back) by
/// [`QUIET_MS`] before the end, so that the end itself is orderly.
const FIRST_MS: u64 = 2_500;
const QUIET_MS: u64 = 4_000;

/// SplitMix64: a small PRNG whose sequence is the same for a seed on every build.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// One thing the test does to the fleet, at a moment of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    /// SIGKILL the aggregator.
    KillAggregator,
    /// Start it again on its `--out`; `torn`: first leave the directory as a crash in the
    /// middle of a write would.
    StartAggregator { torn: bool },
    /// SIGKILL the bot in this slot.
    KillBot(usize),
    /// SIGTERM the bot in this slot (it drains, delivers and leaves).
    TermBot(usize),
    /// A new bot in this slot.
    StartBot(usize),
    /// SIGTERM the aggregator: the run ends.
    End,
}

/// The faults of one seed: actions at milliseconds from the start, in order.
#[derive(Debug, Clone, PartialEq)]
struct Schedule {
    seed: u64,
    actions: Vec<(u64, Action)>,
    /// The run ends by SIGTERM at [`RUN_S`] (else by `--run-for`).
    end_by_term: bool,
}

impl Schedule {
    /// Two aggregator crashes (the first onto a half-written directory), one bot SIGKILLed
    /// (replaced or not) and another SIGTERMed and replaced, at moments drawn from `seed`;
    /// faults may overlap (a bot killed while the aggregator is down).
    fn of(seed: u64) -> Schedule {
        let mut r = Rng(seed);
        let mut actions = Vec::new();
        let end = RUN_S * 1000 - QUIET_MS;
        let kill1 = r.range(FIRST_MS, 5_500);
        let back1 = kill1 + r.range(500, 2_000);
        let kill2 = back1 + r.range(2_500, 4_500);
        let back2 = (kill2 + r.range(500, 2_000)).min(end);
        actions.extend([
            (kill1, Action::KillAggregator),
            (back1, Action::StartAggregator { torn: true }),
            (kill2, Action::KillAggregator),
            (back2, Action::StartAggregator { torn: false }),
        ]);
        let killed = r.range(0, BOTS as u64 - 1) as usize;
        let termed = (killed + r.range(1, BOTS as u64 - 1) as usize) % BOTS;
        let at = r.range(FIRST_MS, end - 3_000);
        actions.push((at, Action::KillBot(killed)));
        if r.range(0, 1) == 1 {
            actions.push((at + r.range(500, 3_000), Action::StartBot(killed)));
        }
        let at = r.range(FIRST_MS, end - 3_000);
        actions.push((at, Action::TermBot(termed)));
        actions.push((at + r.range(500, 3_000), Action::StartBot(termed)));
        let end_by_term = r.range(0, 1) == 1;
        if end_by_term {
            actions.push((RUN_S * 1000, Action::End));
        }
        actions.sort_by_key(|(t, _)| *t);
        Schedule {
            seed,
            actions,
            end_by_term,
        }
    }

    fn aggregator_kills(&self) -> usize {
        self.actions
            .iter()
            .filter(|(_, a)| *a == Action::KillAggregator)
            .count()
    }
}

#[test]
fn the_schedule_is_a_function_of_the_seed() {
    assert_eq!(Schedule::of(7), Schedule::of(7));
    assert_ne!(Schedule::of(7), Schedule::of(8));
    for seed in 0..500 {
        let s = Schedule::of(seed);
        assert_eq!(s.aggregator_kills(), 2, "{s:?}");
        let last_fault = s.actions.iter().rfind(|(_, a)| *a != Action::End);
        assert!(last_fault.unwrap().0 <= RUN_S * 1000 - QUIET_MS, "{s:?}");
        assert!(s.actions.windows(2).all(|w| w[0].0 <= w[1].0), "{s:?}");
    }
}

/// The seed: `CHAOS_SEED`, or one from the clock (printed either way).
fn seed() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 % 1_000_000)
        })
}

/// The fleet as the test drives it.
struct Fleet {
    plan: Schedule,
    addr: SocketAddr,
    args: Vec<String>,
    out: PathBuf,
    token: PathBuf,
    aggregator: Proc,
    /// The last aggregator's stdout once it exits (its report).
    report: Option<std::thread::JoinHandle<String>>,
    /// Each slot's bot and its name.
    bots: Vec<Option<(Proc, String)>>,
    /// Names of the bots SIGKILLed, and of those SIGTERMed.
    killed: Vec<String>,
    termed: Vec<String>,
    /// SIGTERMed bots, draining: each must exit 0.
    leaving: Vec<Proc>,
    started: usize,
    /// The rate each restarted aggregator offered as it started.
    offered_after_restart: Vec<f64>,
}

impl Fleet {
    fn start_aggregator(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let l = SCALETEST.listening(&args);
        assert_eq!(l.addr, self.addr, "the aggregator moved");
        self.aggregator = l.proc;
        self.report = Some(l.rest);
    }

    fn start_bot(&mut self, slot: usize) {
        self.started += 1;
        let name = format!("b{slot}-{}", self.started);
        self.bots[slot] = Some((bot(SCALETEST, self.addr, &self.token, &name), name));
    }

    fn act(&mut self, a: Action) {
        match a {
            Action::KillAggregator => {
                assert!(signal(self.aggregator.id(), "KILL"));
                exited(&mut self.aggregator, Duration::from_secs(5));
            }
            Action::StartAggregator { torn } => {
                if torn {
                    half_written(&self.out);
                }
                self.start_aggregator();
                // The plan is offered again at once, before any bot is heard from.
                let offered = json(self.addr, "/api/summary")["offered"]
                    .as_f64()
                    .unwrap_or(0.0);
                self.offered_after_restart.push(offered);
            }
            Action::KillBot(slot) => {
                let (mut p, name) = self.bots[slot].take().expect("a bot in the slot");
                assert!(signal(p.id(), "KILL"));
                exited(&mut p, Duration::from_secs(5));
                self.killed.push(name);
            }
            Action::TermBot(slot) => {
                let (p, name) = self.bots[slot].take().expect("a bot in the slot");
                assert!(signal(p.id(), "TERM"));
                self.leaving.push(p);
                self.termed.push(name);
            }
            Action::StartBot(slot) => self.start_bot(slot),
            Action::End => assert!(signal(self.aggregator.id(), "TERM")),
        }
    }
}

/// What a crash in the middle of a save leaves (the store appends closed seconds to the
/// journal, then replaces state.json through a temporary file): half a line at the end of
/// intervals.jsonl and a partial temporary state file.
fn half_written(out: &Path) {
    use std::io::Write;
    let state = std::fs::read_to_string(out.join("state.json")).expect("state.json");
    let saved: Value = serde_json::from_str(&state).expect("state.json parses");
    // The line the journal would get for an open second, cut in its middle.
    let open = &saved["open"][0];
    let line =
        serde_json::json!({ "t": open[0], "packed": open[1]["packed"], "fleet": open[1]["fleet"] })
            .to_string();
    let mut j = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(out.join("intervals.jsonl"))
        .expect("the journal");
    j.write_all(&line.as_bytes()[..line.len() / 2]).unwrap();
    std::fs::write(out.join("state.tmp99999"), &state[..state.len() / 3]).unwrap();
}

/// One check of the verdict: its name, whether it held, and its numbers.
type Check = (&'static str, bool, String);

#[test]
fn the_fleet_counts_right_through_kills_restarts_and_a_torn_directory() {
    let seed = seed();
    let plan = Schedule::of(seed);
    eprintln!("chaos: CHAOS_SEED={seed} {plan:?}");
    let began = Instant::now();
    let (_srv, srv) = server(SCALETEST);
    let dir = tmpdir(&format!("chaos-{seed}"));
    let out = dir.join("run");
    let token = dir.join("token");
    std::fs::write(&token, "chaos-token\n").unwrap();
    let before = served(srv);
    let mut args: Vec<String> = [
        "aggregate",
        &format!("http://{srv}/"),
        "--rate",
        &RATE.to_string(),
        "--out",
        out.to_str().unwrap(),
        "--token-file",
        token.to_str().unwrap(),
        "--stale-after",
        "2s",
        "--gone-after",
        "5s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !plan.end_by_term {
        args.extend(["--run-for".into(), format!("{RUN_S}s")]);
    }
    let first = SCALETEST.listening(
        &args
            .iter()
            .map(String::as_str)
            .chain(["--bind", "127.0.0.1:0"])
            .collect::<Vec<_>>(),
    );
    let start = Instant::now();
    args.extend(["--bind".into(), first.addr.to_string()]);
    let mut fleet = Fleet {
        plan: plan.clone(),
        addr: first.addr,
        args,
        out: out.clone(),
        token,
        aggregator: first.proc,
        report: Some(first.rest),
        bots: (0..BOTS).map(|_| None).collect(),
        leaving: Vec::new(),
        killed: Vec::new(),
        termed: Vec::new(),
        started: 0,
        offered_after_restart: Vec::new(),
    };
    for slot in 0..BOTS {
        fleet.start_bot(slot);
    }
    wait_until("3 live bots", Duration::from_secs(10), || {
        json(fleet.addr, "/api/summary")["live"] == 3
    });
    for (at, a) in plan.actions.clone() {
        if let Some(wait) =
            (start + Duration::from_millis(at)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(wait);
        }
        fleet.act(a);
    }
    // The end: --run-for or the SIGTERM above; bots still live drain within FLUSH_WAIT.
    let status = exited(&mut fleet.aggregator, Duration::from_secs(RUN_S + 25));
    let answered = served(srv) - before - 1;
    let stdout = fleet.report.take().unwrap().join().unwrap();
    let mut checks: Vec<Check> = vec![(
        "aggregator exits 0",
        status.success(),
        format!("{status:?}"),
    )];
    for mut p in fleet.leaving.drain(..) {
        let s = exited(&mut p, Duration::from_secs(10));
        checks.push(("a SIGTERMed bot exits 0", s.success(), format!("{s:?}")));
    }
    checks.push((
        "a restarted aggregator offers the plan",
        fleet.offered_after_restart.iter().all(|o| *o == RATE),
        format!("{:?}", fleet.offered_after_restart),
    ));
    checks.extend(judge(&out, answered, &stdout, &fleet));
    let verdict: Vec<String> = checks
        .iter()
        .map(|(name, ok, n)| format!("{} {name}: {n}", if *ok { "pass" } else { "FAIL" }))
        .collect();
    eprintln!(
        "chaos: CHAOS_SEED={seed} in {:.1} s\n{}",
        began.elapsed().as_secs_f64(),
        verdict.join("\n")
    );
    assert!(
        checks.iter().all(|c| c.1),
        "CHAOS_SEED={seed}: {verdict:#?}"
    );
    drop(fleet);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The checks of results.json, report.html and the printed report against the server's count.
fn judge(out: &Path, answered: u64, stdout: &str, fleet: &Fleet) -> Vec<Check> {
    let mut checks: Vec<Check> = Vec::new();
    let typed = report::RunFile::read(&out.join("results.json"));
    checks.push((
        "results.json reads",
        typed.is_ok(),
        format!("{:?}", typed.err()),
    ));
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap_or_default();
    let data = html
        .split("<script type=\"application/json\" id=\"data\">")
        .nth(1)
        .and_then(|r| r.split("</script>").next())
        .map(serde_json::from_str::<Value>);
    checks.push((
        "report.html is a page with its data",
        html.starts_with("<!doctype html>")
            && html.trim_end().ends_with("</html>")
            && matches!(data, Some(Ok(_))),
        format!("{} bytes", html.len()),
    ));
    let total = &run["total"];
    let counted = total["responses"].as_u64().unwrap_or(0);
    let bots = run["fleet"]["bots"].as_array().cloned().unwrap_or_default();
    // What the lost bots' unreported seconds may hold, as results.json says.
    let (lost_s, lost_max) = bots.iter().fold((0, 0), |a, b| {
        (
            a.0 + b["unreported_s"].as_u64().unwrap_or(0),
            a.1 + b["unreported_max"].as_u64().unwrap_or(0),
        )
    });
    checks.push((
        "counted = answered − at most the lost bots' unreported seconds",
        counted <= answered && answered - counted <= lost_max,
        format!("server {answered}, aggregator {counted}, lost {lost_s} s ≤ {lost_max} requests"),
    ));
    let by_bots: u64 = bots.iter().filter_map(|b| b["responses"].as_u64()).sum();
    checks.push((
        "the bots' counts add up to the total",
        by_bots == counted,
        format!("{by_bots} vs {counted}"),
    ));
    // Lost: the SIGKILLed bots, and any a restarted aggregator had not heard leave; never a
    // SIGTERMed one (it left once its leave was saved).
    let state = |name: &str| {
        bots.iter().find(|b| b["name"] == name).map(|b| {
            let s = b["state"].as_str().unwrap_or("").to_string();
            (s, b["unreported_s"].as_u64().unwrap_or(0))
        })
    };
    let lost: Vec<&str> = bots
        .iter()
        .filter(|b| b["unreported_s"].as_u64().unwrap_or(0) > 0)
        .filter_map(|b| b["name"].as_str())
        .collect();
    let line = stdout
        .lines()
        .find(|l| l.contains("never reported"))
        .unwrap_or("");
    checks.push((
        "the lost bots' share is in the results and the report",
        fleet.killed.iter().all(|k| lost.contains(&k.as_str()))
            && line.contains(&report::format::count(lost_max))
            && html.contains(line.trim()),
        format!("lost {lost:?}, killed {:?}; {line:?}", fleet.killed),
    ));
    let termed: Vec<_> = fleet.termed.iter().map(|n| state(n)).collect();
    checks.push((
        "a SIGTERMed bot leaves with all it measured",
        termed
            .iter()
            .all(|t| t.as_ref().is_some_and(|(s, u)| s == "left" && *u == 0)),
        format!("{termed:?}"),
    ));
    let seconds = run["fleet"]["seconds"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let intervals = run["intervals"].as_array().cloned().unwrap_or_default();
    let n = seconds.len() as u64;
    checks.push((
        "the run's length",
        (RUN_S - 1..=RUN_S + 2).contains(&n),
        format!("{n} seconds for {RUN_S}"),
    ));
    let off: Vec<f64> = seconds
        .iter()
        .map(|s| s["offered"].as_f64().unwrap_or(0.0))
        .collect();
    checks.push((
        "offered follows the plan every second",
        off.iter().all(|o| *o == RATE),
        format!("{off:?}"),
    ));
    let over: Vec<&Value> = seconds
        .iter()
        .filter(|s| s["reported"].as_u64() > s["live"].as_u64())
        .collect();
    let (rep, live) = seconds.iter().fold((0, 0), |a, s| {
        (
            a.0 + s["reported"].as_u64().unwrap_or(0),
            a.1 + s["live"].as_u64().unwrap_or(0),
        )
    });
    checks.push((
        "coverage ≤ 100 %, every second and in all",
        over.is_empty() && rep <= live,
        format!("{rep} of {live} bot-seconds; over: {over:?}"),
    ));
    let ok = |r: &Value| -> u64 {
        r["status"].as_object().map_or(0, |m| {
            m.iter()
                .filter(|(k, _)| k.parse::<u16>().is_ok_and(|c| c < 400))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
    };
    let sent = |r: &Value| r["sent"].as_u64().unwrap_or(0);
    // An answer may come in the second after its request was sent: by the end of any second,
    // at least as many were sent as answered.
    let (mut s, mut o, mut behind) = (0, 0, Vec::new());
    for (i, second) in intervals.iter().enumerate() {
        (s, o) = (s + sent(second), o + ok(second));
        if s < o {
            behind.push(i);
        }
    }
    checks.push((
        "sent ≥ ok, in all and by every second",
        sent(total) >= ok(total) && behind.is_empty(),
        format!(
            "sent {}, ok {}; more ok than sent by seconds {behind:?}",
            sent(total),
            ok(total)
        ),
    ));
    // A second counted twice would have twice the load; one second may carry a re-split's
    // overlap, never a second bot-set's worth.
    let ts: Vec<u64> = seconds.iter().filter_map(|s| s["t"].as_u64()).collect();
    let peak = intervals.iter().map(sent).max().unwrap_or(0);
    checks.push((
        "no second counted twice",
        ts.windows(2).all(|w| w[0] < w[1]) && (peak as f64) < RATE * 1.5,
        format!("busiest second sent {peak}"),
    ));
    let events = run["fleet"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let restarts = events
        .iter()
        .filter(|e| {
            e["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("aggregator restarted"))
        })
        .count();
    checks.push((
        "the events show each restart",
        restarts == fleet.plan.aggregator_kills(),
        format!("{restarts} restarts"),
    ));
    checks
}
