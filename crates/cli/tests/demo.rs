//! `scaletest demo` and `scaletest ctl` as a user runs them: the real binary, real child
//! processes on loopback, small rates. Children are found in /proc by the run directory the
//! demo puts in their environment (`SCALETEST_DEMO_RUN`).

// Tests may print (see clippy.toml).
#![allow(clippy::disallowed_macros)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use testsupport::call::get;
use testsupport::{interrupt, tmpdir, wait_until, Bin};

const SCALETEST: Bin = Bin(env!("CARGO_BIN_EXE_scaletest"));

/// The tests each run a whole demo: one at a time, so that they do not starve each other.
// The demos run one at a time (each is several processes on two cores); a test lock is fine.
#[allow(clippy::disallowed_types)]
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// About 17 s: every kind of phase, at rates a debug build on a shared machine keeps up with.
const SMALL: &str = r#"
name = "small"
[[phase]]
name = "warm-up"
duration = 3
rate = 200
servers = 1
bots = 1
[[phase]]
name = "scale-up"
duration = 5
rate = 400
servers = 3
bots = 2
[[phase]]
name = "rolling-update"
duration = 6
rollout = "v2"
checks = { max_failed = 0, thresholds = ["error_rate==0", "status_5xx==0"] }
[[phase]]
name = "scale-down"
duration = 3
rate = 200
servers = 1
bots = 1
"#;

/// Live processes (not zombies) whose environment names a run under `dir`, with their
/// command lines.
fn children_of(dir: &Path) -> Vec<(u32, String)> {
    let marker = format!("SCALETEST_DEMO_RUN={}", dir.display());
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // A zombie's environ reads empty: it runs nothing.
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env
            .split(|b| *b == 0)
            .any(|v| v.starts_with(marker.as_bytes()))
        {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            out.push((pid, cmd));
        }
    }
    out
}

fn count(dir: &Path, sub: &str) -> usize {
    children_of(dir)
        .iter()
        .filter(|(_, c)| c.contains(&format!("scaletest {sub} ")))
        .count()
}

/// `scaletest demo --headless ARGS --scenario FILE --dir DIR` to its end, which must be exit 0;
/// its stdout.
fn headless_demo(args: &[&str], scenario: &Path, dir: &Path) -> String {
    let out = SCALETEST
        .command()
        .args(["demo", "--headless"])
        .args(args)
        .arg("--scenario")
        .arg(scenario)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}\n{err}");
    text
}

/// The texts of a run's events.
fn event_texts(r: &report::RunFile) -> Vec<&str> {
    let f = r.fleet.as_ref().expect("an aggregated run");
    f.events.iter().map(|e| e.text.as_str()).collect()
}

/// The running demo's addresses, from RUN/demo.json.
fn demo_json(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("latest").join("demo.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn addr_of(v: &serde_json::Value) -> SocketAddr {
    v.as_str()
        .unwrap()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

#[test]
fn a_short_headless_demo_runs_every_phase_fails_no_request_and_leaves_no_child() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmpdir("demo-small");
    let scenario = dir.join("small.toml");
    std::fs::write(&scenario, SMALL).unwrap();
    let whole = ["--threshold", "failed==0", "--threshold", "requests>=1000"];
    let text = headless_demo(&whole, &scenario, &dir);
    assert!(text.starts_with("run directory: "), "{text}");
    assert!(text.contains("pass failed==0"), "{text}");
    assert!(text.contains("all 2 thresholds passed"), "{text}");
    for (i, name) in ["warm-up", "scale-up", "rolling-update", "scale-down"]
        .iter()
        .enumerate()
    {
        let head = format!("== phase {}/4: {name} — ", i + 1);
        let line = text
            .lines()
            .find(|l| l.starts_with(&head))
            .unwrap_or_else(|| panic!("no {head:?} in\n{text}"));
        assert!(line.ends_with(": ok"), "{line}");
        if *name == "rolling-update" {
            assert!(line.contains(" 0 failed,"), "{line}");
        }
    }
    // Each phase's own servers, bots and load: in the line under its name, and in its
    // table's header (the bots live in its seconds, the rate offered in them).
    let after = |head: &str| {
        let mut lines = text.lines().skip_while(|l| !l.starts_with(head));
        (lines.nth(1).unwrap_or(""), lines.next().unwrap_or(""))
    };
    let (ran, header) = after("== phase 1/4: warm-up");
    assert_eq!(ran, "ran: servers 1, bots 1, load 200 req/s", "{text}");
    // A phase's seconds are those whose middle falls in it: the next phase's first step may
    // show in its last one.
    assert!(
        header.contains(": 1 bot(s), 200 req/s in total,")
            || header.contains(": 1–2 bots, 200 → 300 req/s in total,"),
        "{header}"
    );
    let (ran, header) = after("== phase 2/4: scale-up");
    assert_eq!(
        ran, "ran: servers 1→3, bots 1→2, load 200 req/s → 400 req/s",
        "{text}"
    );
    // Its seconds see the steps taken (the first at its start, the bot joining within it).
    assert!(header.contains(" 400 req/s in total,"), "{header}");
    assert!(!header.contains("4 bot"), "{header}");
    assert!(text.contains("cores for 1M req/s"), "{text}");
    assert!(text.contains("every phase met its checks"), "{text}");
    let run = std::fs::canonicalize(dir.join("latest")).unwrap();
    let r = report::RunFile::read(&run.join("results/results.json")).unwrap();
    // Both versions answered, and the run ended on v2 only.
    assert!(
        r.total.versions.contains_key("v1"),
        "{:?}",
        r.total.versions
    );
    assert!(
        r.total.versions.contains_key("v2"),
        "{:?}",
        r.total.versions
    );
    // The whole run's thresholds, judged by the aggregator into results.json.
    let judged: Vec<(&str, bool)> = r
        .verdicts
        .iter()
        .map(|v| (v.threshold.as_str(), v.pass))
        .collect();
    assert_eq!(judged, [("failed==0", true), ("requests>=1000", true)]);
    let last = r.intervals.iter().rev().find(|s| s.responses > 0).unwrap();
    assert_eq!(last.versions.keys().collect::<Vec<_>>(), vec!["v2"]);
    let events = event_texts(&r);
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("phase 3/4: rolling-update")),
        "{events:?}"
    );
    let html = std::fs::read_to_string(run.join("results/report.html")).unwrap();
    assert!(html.contains("<html"), "not a page");
    assert!(run.join("logs/balancer.log").exists());
    assert!(children_of(&dir).is_empty(), "{:?}", children_of(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A phase whose rate is a schedule: the aggregator walks it as one schedule for the two
/// bots (each second offered its count, sent within 1 % over the stages), its last rate holds
/// until the next phase changes the load, and no request fails.
#[test]
fn a_phase_in_stages_runs_them_over_the_fleet() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmpdir("demo-stages");
    let scenario = dir.join("stages.toml");
    let toml = "name = \"stages\"\n\
        [[phase]]\nname = \"ramp\"\nduration = \"8s\"\nrate = \"stages:2s:300,2s:300\"\nbots = 2\n\
        [[phase]]\nname = \"after\"\nduration = \"2s\"\nrate = 100\n";
    std::fs::write(&scenario, toml).unwrap();
    let text = headless_demo(&["--threshold", "failed==0"], &scenario, &dir);
    assert!(
        text.contains("ran: servers 1, bots 2, load stages 2s:300,2s:300 (req/s)"),
        "{text}"
    );
    let run = std::fs::canonicalize(dir.join("latest")).unwrap();
    let r = report::RunFile::read(&run.join("results/results.json")).unwrap();
    assert_eq!(r.total.failed(), 0);
    let events = event_texts(&r);
    assert!(
        events
            .iter()
            .any(|e| e.contains("2s:300,2s:300,4years:300 starts at second")),
        "{events:?}"
    );
    // The schedule's seconds: offered 75, 225, 300, 300 (0→300/s over 2 s, then 300/s).
    let f = r.fleet.as_ref().unwrap();
    let first = f
        .seconds
        .iter()
        .position(|s| s.offered == 75.0)
        .expect("the ramp's first second");
    let offered: Vec<f64> = f.seconds[first..first + 4]
        .iter()
        .map(|s| s.offered)
        .collect();
    assert_eq!(offered, [75.0, 225.0, 300.0, 300.0]);
    let sent: u64 = r.intervals[first..first + 4].iter().map(|s| s.sent).sum();
    assert!((sent as f64 - 900.0).abs() <= 9.0, "sent {sent} of 900");
    // After the stages, their last rate holds until the next phase.
    assert!(
        f.seconds[first + 4].offered == 300.0,
        "{:?}",
        f.seconds[first + 4]
    );
    assert!(children_of(&dir).is_empty(), "{:?}", children_of(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A headless demo of `scenario` (TOML) in a new directory `name`: the directory, the output,
/// and the texts of the run's events.
fn search_demo(name: &str, scenario: &str) -> (std::path::PathBuf, String, Vec<String>) {
    let dir = tmpdir(name);
    let file = dir.join("scenario.toml");
    std::fs::write(&file, scenario).unwrap();
    let text = headless_demo(&[], &file, &dir);
    let run = std::fs::canonicalize(dir.join("latest")).unwrap();
    let r = report::RunFile::read(&run.join("results/results.json")).unwrap();
    let events = event_texts(&r).into_iter().map(String::from).collect();
    (dir, text, events)
}

/// `[search]`: after the phases the rate keeps stepping up, each step judged on the
/// aggregator's seconds; here every step is sustained (a lenient p99), so the search stops at
/// `until_rate` and the highest rate sustained is its last step.
#[test]
fn a_search_steps_the_rate_up_until_its_cap_and_reports_the_last_that_held() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, text, events) = search_demo(
        "demo-search",
        r#"
name = "search"
sustain_p99_ms = 5000
[[phase]]
name = "200/s"
duration = 3
rate = 200
servers = 1
bots = 1
[search]
factor = 2
until_rate = 800
duration = 4
"#,
    );
    for (i, name) in ["400/s", "800/s"].iter().enumerate() {
        let head = format!("== phase {}/3: {name} — ", i + 2);
        assert!(
            text.lines().any(|l| l.starts_with(&head)),
            "no {head:?} in\n{text}"
        );
    }
    assert!(!text.contains("1600/s —"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("highest rate sustained"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with("(800/s)"), "{line}");
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("search: 1600/s would pass until_rate 800")),
        "{events:?}"
    );
    assert!(children_of(&dir).is_empty(), "{:?}", children_of(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A search step that is not sustained (here: a p99 bar nothing meets) stops the search,
/// and the events say what each role used in that step and which used the most.
#[test]
fn a_search_that_stops_names_the_busiest_role() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, text, events) = search_demo(
        "demo-search-stop",
        r#"
name = "search-stop"
sustain_p99_ms = 0.001
[[phase]]
name = "200/s"
duration = 2
rate = 200
servers = 1
bots = 1
[search]
factor = 2
until_rate = 800
duration = 3
"#,
    );
    assert!(!text.contains("800/s —"), "{text}");
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("search: 400/s not sustained")),
        "{events:?}"
    );
    let used = events
        .iter()
        .find(|e| e.starts_with("search: at 400/s, cores used: loadbot "))
        .unwrap_or_else(|| panic!("{events:?}"));
    for role in ["balancer ", "server ", "aggregator ", "; the busiest: "] {
        assert!(used.contains(role), "{used}");
    }
    assert!(children_of(&dir).is_empty(), "{:?}", children_of(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sigkill_of_the_demo_leaves_no_child_running() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmpdir("demo-kill");
    let mut demo = SCALETEST
        .command()
        .args(["demo", "--headless", "--keep", "--duration", "60s", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // servers, balancer, aggregator and a bot.
    wait_until("the demo's children", Duration::from_secs(30), || {
        count(&dir, "bot") == 1 && count(&dir, "aggregate") == 1
    });
    assert!(count(&dir, "serve") >= 1 && count(&dir, "balance") == 1);
    demo.kill().unwrap();
    demo.wait().unwrap();
    wait_until("every child to be gone", Duration::from_secs(10), || {
        children_of(&dir).is_empty()
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn ctl(dir: &Path, args: &[&str]) -> String {
    let out = SCALETEST
        .command()
        .args(["ctl", "--timeout", "60s", "--dir"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ctl {args:?}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn ctl_scale_and_rollout_change_what_runs_and_are_events_on_the_ui() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmpdir("demo-ctl");
    let scenario = dir.join("one.toml");
    std::fs::write(
        &scenario,
        "[[phase]]\nname = \"steady\"\nduration = 2\nrate = 100\nservers = 1\nbots = 1\n",
    )
    .unwrap();
    let mut demo = testkit::Proc(
        SCALETEST
            .command()
            .args(["demo", "--headless", "--keep", "--scenario"])
            .arg(&scenario)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("demo.json", Duration::from_secs(30), || {
        dir.join("latest/demo.json").exists()
    });
    let info = demo_json(&dir);
    let (lb, agg) = (addr_of(&info["balancer"]), addr_of(&info["aggregator"]));

    let reply = ctl(&dir, &["scale", "servers=3"]);
    assert!(reply.contains("servers: 3"), "{reply}");
    assert_eq!(count(&dir, "serve"), 3);

    let reply = ctl(&dir, &["rollout", "v3"]);
    assert!(reply.contains("done: rollout v3"), "{reply}");
    let serves: Vec<String> = children_of(&dir)
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| c.contains("scaletest serve "))
        .collect();
    assert_eq!(serves.len(), 3, "{serves:?}");
    assert!(
        serves.iter().all(|c| c.contains("--version-label v3 ")),
        "{serves:?}"
    );
    for _ in 0..5 {
        assert!(get(lb, "/version").ends_with("v3\n"));
    }

    ctl(&dir, &["scale", "bots=2"]);
    assert_eq!(count(&dir, "bot"), 2);
    ctl(&dir, &["rate", "300"]);
    let status = ctl(&dir, &["status"]);
    assert!(status.contains("load: 300 req/s"), "{status}");
    assert!(status.contains("bots: 2"), "{status}");

    let events = get(agg, "/api/events");
    for e in [
        "ctl: scale servers=3",
        "ctl: rollout v3",
        "ctl: scale bots=2",
        "ctl: rate 300",
    ] {
        assert!(events.contains(e), "{e:?} not in {events}");
    }
    // Ctrl-C: an orderly end, the results written, every child gone.
    assert!(interrupt(demo.id()));
    let status = demo.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(dir.join("latest/results/results.json").exists());
    assert!(children_of(&dir).is_empty(), "{:?}", children_of(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `scaletest demo --headless ARGS --dir DIR/runs`, which must be refused before anything
/// starts: exit 2, one line on stderr (returned), no run directory made.
fn refused(args: &[&str], dir: &Path) -> String {
    let out = SCALETEST
        .command()
        .arg("demo")
        .arg("--headless")
        .args(args)
        .arg("--dir")
        .arg(dir.join("runs"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!dir.join("runs").exists(), "a run began: {err}");
    err
}

#[test]
fn a_scenario_with_a_bad_field_gets_one_line_naming_it_and_exit_2() {
    let dir = tmpdir("demo-bad");
    let scenario = dir.join("bad.toml");
    std::fs::write(
        &scenario,
        "[[phase]]\nduration = 5\nrate = 100\nreplicas = 3\n",
    )
    .unwrap();
    let scenario = scenario.to_str().unwrap();
    let err = refused(&["--scenario", scenario], &dir);
    assert!(
        err.contains("line 4") && err.contains("`replicas`"),
        "{err}"
    );
    std::fs::write(
        scenario,
        "[[phase]]\nduration = 5\nrate = 100\nchecks = { thresholds = [\"p99<5\"] }\n",
    )
    .unwrap();
    let err = refused(&["--scenario", scenario], &dir);
    assert!(
        err.contains("threshold \"p99<5\"") && err.contains("needs a unit"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same layout with haproxy in place of `scaletest balance` (for the max-rate
/// comparison): fixed servers, the run ends with the highest rate sustained.
#[test]
fn the_layout_runs_with_haproxy_and_ends_with_the_rate_it_sustained() {
    if !Path::new("/usr/sbin/haproxy").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "haproxy is not installed; .ci/run installs it"
        );
        testkit::checks::skipped(
            "the haproxy layout's checks",
            "/usr/sbin/haproxy is not installed (apt-get install haproxy; in CI, where CI is \
             set, this is a failure)",
        );
        return;
    }
    testkit::checks::ran("the haproxy layout's checks");
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmpdir("demo-haproxy");
    let scenario = dir.join("steps.toml");
    std::fs::write(
        &scenario,
        "sustain_p99_ms = 1000\n[[phase]]\nname = \"a\"\nduration = 3\nrate = 100\nservers = 2\nbots = 1\n\
         [[phase]]\nname = \"b\"\nduration = 3\nrate = 200\n",
    )
    .unwrap();
    let text = headless_demo(&["--balancer", "haproxy"], &scenario, &dir);
    assert!(
        text.contains("balancer: haproxy http://127.0.0.1:"),
        "{text}"
    );
    for head in ["== phase 1/2: a — ", "== phase 2/2: b — "] {
        let line = text
            .lines()
            .find(|l| l.starts_with(head))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            line.contains(" 0 failed,") && line.ends_with(": ok"),
            "{line}"
        );
    }
    // The rate named is a phase's own, served in full (a: 100/s, b: 200/s; 95 % counts).
    let sustained = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "highest rate sustained through haproxy with p99 < 1000 ms and no failures: ",
            )
        })
        .unwrap_or_else(|| panic!("{text}"));
    let (rate, phase) = sustained
        .strip_suffix(')')
        .and_then(|s| s.split_once(" req/s ("))
        .unwrap_or_else(|| panic!("no rate in {sustained:?}"));
    let rate: f64 = rate.parse().unwrap_or_else(|_| panic!("{sustained:?}"));
    let asked = match phase {
        "a" => 100.0,
        "b" => 200.0,
        _ => panic!("{sustained:?}"),
    };
    // It can be above the rate asked on a busy machine (109 for 100/s was seen): e.g. an
    // open-loop bot catching up inside the phase on sends it owed from just before it.
    assert!(
        (0.95 * asked..=1.5 * asked).contains(&rate),
        "{sustained:?}"
    );
    let run = std::fs::canonicalize(dir.join("latest")).unwrap();
    let cfg = std::fs::read_to_string(run.join("haproxy.cfg")).unwrap();
    assert_eq!(cfg.matches(" check inter 100ms").count(), 2, "{cfg}");
    let r = report::RunFile::read(&run.join("results/results.json")).unwrap();
    assert_eq!(r.total.failed(), 0);
    assert!(r.total.responses >= 600, "{}", r.total.responses);
    assert!(children_of(&dir).is_empty(), "{:?}", children_of(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn haproxy_refuses_a_scenario_that_changes_servers_before_anything_starts() {
    let dir = tmpdir("demo-haproxy-refused");
    let err = refused(&["--balancer", "haproxy", "--scenario", "default"], &dir);
    // The scenario is checked first, so this holds whether haproxy is installed or not.
    assert!(
        err.contains("fixed set of servers") && err.contains("phase \"scale-up\""),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
