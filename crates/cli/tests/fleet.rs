//! Loadbots and the aggregator as real processes with real signals: a SIGKILLed bot goes
//! stale then gone and the others take its rate; a SIGTERMed bot drains and leaves; an
//! aggregator SIGKILLed mid-run and restarted on the same `--out` loses and doubles nothing.
//! (The bot's outbox on its own, a full one included, is tested on tokio's paused clock in
//! fleet's `bot::tests`.)

use report::RunFile;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use testkit::Proc;
use testsupport::call::{call, json};
use testsupport::fleet::served;
use testsupport::{exited, signal, tmpdir, wait_until, Bin};

const SCALETEST: Bin = Bin(env!("CARGO_BIN_EXE_scaletest"));

/// A child that prints "listening on http://ADDR" first; its address, and the rest of its
/// stdout once it exits.
fn spawn(args: &[&str]) -> (Proc, SocketAddr, std::thread::JoinHandle<String>) {
    let l = SCALETEST.listening(args);
    (l.proc, l.addr, l.rest)
}

fn bot(agg: SocketAddr, token: &Path, name: &str) -> Proc {
    testsupport::fleet::bot(SCALETEST, agg, token, name)
}

fn server() -> (Proc, SocketAddr) {
    testsupport::fleet::server(SCALETEST)
}

#[test]
fn a_killed_bot_goes_stale_then_gone_and_the_others_take_its_rate() {
    let (_srv, srv) = server();
    let dir = tmpdir("kill");
    let out = dir.join("run");
    let url = format!("http://{srv}/");
    let (mut agg, addr, _rest) = spawn(&[
        "aggregate",
        &url,
        "--rate",
        "300",
        "--out",
        out.to_str().unwrap(),
        "--bind",
        "127.0.0.1:0",
        "--stale-after",
        "1s",
        "--gone-after",
        "3s",
    ]);
    let token = out.join("token");
    let tok = std::fs::read_to_string(&token).unwrap();
    let mut bots: Vec<Proc> = (0..3)
        .map(|i| bot(addr, &token, &format!("b{i}")))
        .collect();
    wait_until("3 live bots", Duration::from_secs(15), || {
        json(addr, "/api/summary")["live"] == 3
    });
    wait_until("answers", Duration::from_secs(10), || {
        json(addr, "/api/summary")["requests"].as_u64().unwrap() > 300
    });
    assert!(signal(bots[0].id(), "KILL"));
    exited(&mut bots[0], Duration::from_secs(5));
    wait_until("a stale bot", Duration::from_secs(10), || {
        json(addr, "/api/summary")["stale"] == 1
    });
    // Its share moved: the two live bots get 150/s each, the offered total holds.
    let b = json(addr, "/api/bots?sort=name");
    let rates: Vec<f64> = b["bots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["state"] == "live")
        .map(|x| x["rate"].as_f64().unwrap())
        .collect();
    assert_eq!(rates, vec![150.0, 150.0], "{b}");
    assert_eq!(json(addr, "/api/summary")["offered"], 300.0);
    wait_until("a gone bot", Duration::from_secs(10), || {
        json(addr, "/api/summary")["gone"] == 1
    });
    // The others keep sending at the full rate: a full second after the split has ~300 sent.
    let now = json(addr, "/api/summary")["started_unix"].as_f64().unwrap();
    let _ = now;
    wait_until(
        "a full-rate second from two bots",
        Duration::from_secs(10),
        || {
            json(addr, "/api/series")["points"]
                .as_array()
                .unwrap()
                .iter()
                .rev()
                .take(3)
                .any(|p| p["reported"] == 2 && (285..=315).contains(&p["sent"].as_u64().unwrap()))
        },
    );
    let events = json(addr, "/api/events");
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"bot_stale") && kinds.contains(&"bot_gone"),
        "{kinds:?}"
    );
    assert_eq!(
        call(addr, "POST", "/api/finish", Some(tok.trim()), "").status,
        200
    );
    assert!(exited(&mut agg, Duration::from_secs(20)).success());
    let run = RunFile::read(&out.join("results.json")).unwrap();
    assert_eq!(
        run.total.errors.values().sum::<u64>(),
        0,
        "nothing else broke"
    );
    drop(bots);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sigterm_drains_a_bot_and_a_restarted_aggregator_loses_and_doubles_nothing() {
    let (_srv, srv) = server();
    let dir = tmpdir("restart");
    let out = dir.join("run");
    let url = format!("http://{srv}/");
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let before = served(srv);
    // Load answers since `before`: every scrape of /metrics is an answer too, not counted.
    let scrapes = std::cell::Cell::new(0);
    let answers = || {
        scrapes.set(scrapes.get() + 1);
        served(srv) - before - scrapes.get()
    };
    let args = |bind: &str| -> Vec<String> {
        [
            "aggregate",
            "--rate",
            "200",
            "--out",
            out.to_str().unwrap(),
            "--bind",
            bind,
            "--token-file",
            token.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut first = args("127.0.0.1:0");
    first.insert(1, url.clone());
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let (mut agg, addr, _rest) = spawn(&first);
    let mut bots: Vec<Proc> = (0..2)
        .map(|i| bot(addr, &token, &format!("b{i}")))
        .collect();
    wait_until("answers", Duration::from_secs(15), || {
        json(addr, "/api/summary")["requests"].as_u64().unwrap() > 400
    });
    // Kill the aggregator mid-run; the bots keep the load going and buffer: two seconds of
    // load (200/s) sent while it is down.
    assert!(signal(agg.id(), "KILL"));
    exited(&mut agg, Duration::from_secs(5));
    let down = answers();
    wait_until(
        "load while the aggregator is down",
        Duration::from_secs(10),
        || answers() > down + 400,
    );
    // Restart on the same address and directory, with no load flags: the run is picked up.
    let again = args(&addr.to_string());
    let again: Vec<&str> = again.iter().map(String::as_str).collect();
    let (mut agg, addr2, _rest) = spawn(&again);
    assert_eq!(addr2, addr);
    wait_until("both bots back", Duration::from_secs(15), || {
        json(addr, "/api/summary")["live"] == 2
    });
    // What the bots buffered while it was down has arrived: everything answered before the
    // restart is counted.
    let at_restart = answers();
    wait_until("the buffered seconds", Duration::from_secs(15), || {
        json(addr, "/api/summary")["requests"].as_u64().unwrap() >= at_restart
    });
    // SIGTERM one bot: it drains, pushes its last second, leaves and exits 0.
    assert!(signal(bots[0].id(), "TERM"));
    assert!(exited(&mut bots[0], Duration::from_secs(10)).success());
    wait_until("the bot left", Duration::from_secs(5), || {
        json(addr, "/api/bots?sort=name")["bots"][0]["state"] == "left"
    });
    assert_eq!(
        call(addr, "POST", "/api/finish", Some("s3cret"), "").status,
        200
    );
    assert!(exited(&mut agg, Duration::from_secs(20)).success());
    drop(bots);
    let run = RunFile::read(&out.join("results.json")).unwrap();
    // Every answer counted exactly once.
    let answered = answers();
    // On a mismatch, the seconds and events say where it went.
    let dump = || {
        let f = run.fleet.as_ref().unwrap();
        let secs: Vec<String> = run
            .intervals
            .iter()
            .zip(&f.seconds)
            .map(|(s, x)| {
                format!(
                    "{} {} {} {}/{}",
                    x.t, s.responses, s.sent, x.reported, x.live
                )
            })
            .collect();
        let events: Vec<String> = f
            .events
            .iter()
            .map(|e| format!("{:.1} {}", e.t, e.text))
            .collect();
        format!("{}\n{}", secs.join("\n"), events.join("\n"))
    };
    assert_eq!(run.total.responses, answered, "{}", dump());
    assert_eq!(run.total.errors.values().sum::<u64>(), 0);
    // No gap: every second from the first to the last has answers.
    let fleet = run.fleet.as_ref().unwrap();
    let n = run.intervals.len();
    assert!(n >= 8, "{n} seconds");
    for (i, s) in run.intervals.iter().enumerate() {
        // The first and last seconds are partial.
        if i > 0 && i + 1 < n {
            assert!(
                s.responses > 50,
                "second {} has {} answers",
                fleet.seconds[i].t,
                s.responses
            );
        }
    }
    let kinds: Vec<&str> = fleet.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"bot_left"), "{kinds:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn aggregate_and_bot_usage_errors_are_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["bot", "--aggregator", "http://127.0.0.1:1"],
            "give --token or --token-file",
        ),
        (
            &["bot", "--aggregator", "ftp://x", "--token", "t"],
            "expected http://HOST:PORT",
        ),
        (
            &[
                "aggregate",
                "http://127.0.0.1:1/",
                "--rate",
                "5",
                "--streams",
                "4",
                "--out",
                "/tmp/st-agg-bad",
            ],
            "--streams needs --http2",
        ),
        (
            &["aggregate", "http://127.0.0.1:1/", "-n", "5"],
            "-n does not apply",
        ),
        (&["aggregate", "--token", "a b"], "no spaces"),
        // The words `PUT /api/load` answers with both (one rule: fleet's LoadRequest::plan),
        // and the flags they stand for.
        (
            &[
                "aggregate",
                "http://127.0.0.1:1/",
                "--rate",
                "1000",
                "--per-bot-rate",
                "10",
            ],
            "give one of rate, per_bot_rate, connections_per_bot or idle (rate: --rate, per_bot_rate: --per-bot-rate",
        ),
    ];
    for (args, want) in cases {
        let o = SCALETEST.command().args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn a_bot_that_never_reached_its_aggregator_leaves_on_the_first_sigterm() {
    // An "aggregator" that closes every connection unanswered: registration keeps failing.
    let closer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    closer.set_nonblocking(true).unwrap();
    let dir = tmpdir("unreached");
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let mut b = bot(closer.local_addr().unwrap(), &token, "lonely");
    let mut attempts = 0;
    wait_until("two failed registrations", Duration::from_secs(15), || {
        while let Ok((c, _)) = closer.accept() {
            drop(c);
            attempts += 1;
        }
        attempts >= 2
    });
    assert!(b.try_wait().unwrap().is_none(), "the bot gave up by itself");
    assert!(signal(b.id(), "TERM"));
    let status = exited(&mut b, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
}

/// An aggregator that starts on an empty directory while bots were in another run (a new pod
/// on an emptyDir, say) learns it from the bots registering again, and says so: an event and
/// the earlier run in results.json.
#[test]
fn a_new_aggregator_on_an_empty_directory_says_the_run_restarted() {
    let (_srv, srv) = server();
    let dir = tmpdir("restarted");
    let token = dir.join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let url = format!("http://{srv}/");
    let out1 = dir.join("one").to_string_lossy().into_owned();
    let out2 = dir.join("two").to_string_lossy().into_owned();
    let tok = token.to_string_lossy().into_owned();
    let args = |out: &str, bind: &str| {
        vec![
            "aggregate".to_string(),
            url.clone(),
            "--rate".into(),
            "50".into(),
            "--bind".into(),
            bind.to_string(),
            "--out".into(),
            out.to_string(),
            "--token-file".into(),
            tok.clone(),
        ]
    };
    let first = args(&out1, "127.0.0.1:0");
    let (mut agg, addr, _rest) = spawn(&first.iter().map(String::as_str).collect::<Vec<_>>());
    let _bot = SCALETEST.spawn(&[
        "bot",
        "--aggregator",
        &format!("http://{addr}"),
        "--token-file",
        &tok,
    ]);
    wait_until("a live bot", Duration::from_secs(15), || {
        json(addr, "/api/summary")["live"] == 1
    });
    let run = json(addr, "/api/summary")["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(signal(agg.id(), "KILL"));
    exited(&mut agg, Duration::from_secs(5));
    let second = args(&out2, &addr.to_string());
    let (mut agg, _, _rest) = spawn(&second.iter().map(String::as_str).collect::<Vec<_>>());
    wait_until("the restart event", Duration::from_secs(20), || {
        let e = json(addr, "/api/events");
        e["events"].as_array().unwrap().iter().any(|e| {
            e["kind"] == "restarted"
                && e["text"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("was in run {run}; seconds before "))
        })
    });
    assert_eq!(
        call(addr, "POST", "/api/finish", Some("s3cret-token"), "").status,
        200
    );
    assert!(exited(&mut agg, Duration::from_secs(20)).success());
    let r = RunFile::read(Path::new(&out2).join("results.json").as_path()).unwrap();
    assert_eq!(r.fleet.unwrap().previous_runs, vec![run]);
    std::fs::remove_dir_all(dir).unwrap();
}

/// GET `path` over TLS, trusting `ca`; the JSON of a 200.
fn tls_json(addr: SocketAddr, ca: &Path, path: &str) -> serde_json::Value {
    let r = st_http::blocking::call_tls(addr, ca, "GET", path, None, "", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("GET https://{addr}{path}: {e}"));
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

fn tls_bot(agg: SocketAddr, token: &Path, ca: &Path, name: &str) -> Proc {
    Proc(
        SCALETEST
            .command()
            .args([
                "bot",
                "--aggregator",
                &format!("https://{agg}"),
                "--token-file",
            ])
            .arg(token)
            .arg("--cacert")
            .arg(ca)
            .args(["--name", name, "-t", "1", "--exit-when-finished"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `--tls-self-signed`: the aggregator serves HTTPS with a certificate it keeps in OUT/tls;
/// two bots trusting it push over TLS, and the run counts exactly what the server answered.
#[test]
fn a_tls_fleet_run_counts_exactly_what_the_server_answered() {
    let (_srv, srv) = server();
    let dir = tmpdir("tls");
    let out = dir.join("run");
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let before = served(srv);
    let (mut agg, addr, rest) = spawn(&[
        "aggregate",
        &format!("http://{srv}/"),
        "--rate",
        "200",
        "--bind",
        "127.0.0.1:0",
        "--out",
        out.to_str().unwrap(),
        "--token-file",
        token.to_str().unwrap(),
        "--tls-self-signed",
    ]);
    let ca = out.join("tls").join("cert.pem");
    assert!(ca.exists());
    // Plain HTTP on the TLS port gets no answer.
    assert!(
        st_http::blocking::call(addr, "GET", "/healthz", None, "", Duration::from_secs(2))
            .map_or(true, |r| r.status != 200)
    );
    let mut bots: Vec<Proc> = (0..2)
        .map(|i| tls_bot(addr, &token, &ca, &format!("b{i}")))
        .collect();
    wait_until("2 live bots and answers", Duration::from_secs(15), || {
        let s = tls_json(addr, &ca, "/api/summary");
        s["live"] == 2 && s["requests"].as_u64().unwrap() > 400
    });
    let r = st_http::blocking::call_tls(
        addr,
        &ca,
        "POST",
        "/api/finish",
        Some("s3cret"),
        "",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(exited(&mut agg, Duration::from_secs(20)).success());
    for b in &mut bots {
        assert!(exited(b, Duration::from_secs(10)).success());
    }
    let stdout = rest.join().unwrap();
    assert!(stdout.contains("--cacert"), "{stdout}");
    let run = RunFile::read(&out.join("results.json")).unwrap();
    // This scrape is one answer more.
    assert_eq!(run.total.responses, served(srv) - before - 1);
    assert_eq!(run.total.errors.values().sum::<u64>(), 0);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A bot that cannot verify the aggregator's certificate (another CA, or none: the public
/// roots) does not retry: one line naming the certificate problem, exit 1.
#[test]
fn a_bot_with_the_wrong_ca_exits_1_with_one_line() {
    let dir = tmpdir("tls-wrong-ca");
    let out = dir.join("run");
    let (_agg, addr, _rest) = spawn(&[
        "aggregate",
        "--bind",
        "127.0.0.1:0",
        "--out",
        out.to_str().unwrap(),
        "--token",
        "s3cret",
        "--tls-self-signed",
    ]);
    let other = dir.join("other-ca.pem");
    std::fs::write(&other, st_http::tls::self_signed_pem(&[]).unwrap().0).unwrap();
    let url = format!("https://{addr}");
    let other_ca = ["--cacert", other.to_str().unwrap()];
    for extra in [&other_ca[..], &[]] {
        let mut b = Proc(
            SCALETEST
                .command()
                .args(["bot", "--aggregator", &url, "--token", "s3cret"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let status = exited(&mut b, Duration::from_secs(10));
        let mut err = String::new();
        std::io::Read::read_to_string(&mut b.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(1), "{extra:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("cannot trust the aggregator at https://")
                && err.contains("certificate")
                && err.contains("--cacert"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}
