//! Bots and the aggregator in one process, on loopback, against `scaletest serve` (and
//! `scaletest balance`): exact totals, per-version counts, live rate changes, bad input.

use fleet::agg::{self, Config as AggConfig};
use fleet::bot;
use fleet::state::{self, Plan};
use load::{Shutdown, Spec};
use std::net::SocketAddr;
use std::time::Duration;
use testsupport::call::{call, json};
use testsupport::fleet::served;
use testsupport::{tmpdir, wait_until};

const TOKEN: &str = "test-token-123";

fn server(label: &str) -> serve::Running {
    serve::start(serve::Config::loopback(label)).unwrap()
}

fn aggregator(
    out: &std::path::Path,
    url: &str,
    plan: Plan,
    run_for: Option<Duration>,
) -> agg::Running {
    aggregator_judging(out, url, plan, run_for, &[])
}

/// [`aggregator`] with `--threshold`s.
fn aggregator_judging(
    out: &std::path::Path,
    url: &str,
    plan: Plan,
    run_for: Option<Duration>,
    thresholds: &[&str],
) -> agg::Running {
    agg::start(AggConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        token: TOKEN.into(),
        out: out.to_path_buf(),
        spec: Spec {
            url: Some(url.into()),
            connections: 2,
            timeout_s: 5.0,
            ..Spec::default()
        },
        plan,
        run_for,
        state: state::Config::default(),
        thresholds: thresholds.iter().map(|t| t.parse().unwrap()).collect(),
        abort_on_fail: false,
        tls: None,
        public_read: false,
    })
    .unwrap()
}

struct Bot {
    #[allow(dead_code)]
    stop: Shutdown,
    thread: std::thread::JoinHandle<bot::Outcome>,
}

fn start_bot(addr: SocketAddr, name: &str) -> Bot {
    let stop = Shutdown::new();
    let s = stop.clone();
    let cfg = bot::Config {
        aggregator: format!("http://{addr}"),
        cacert: None,
        token: TOKEN.into(),
        name: name.into(),
        threads: Some(1),
        exit_when_finished: true,
        outbox: bot::OUTBOX,
        warn: |m| panic!("bot: {m}"),
    };
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, bot::run(cfg, s)).unwrap()
    });
    Bot { stop, thread }
}

/// One request; the status and the body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let r = call(addr, method, path, token, body);
    (r.status, r.body)
}

#[test]
fn three_bots_count_exactly_what_the_server_answered() {
    let srv = server("v1");
    let out = tmpdir("exact");
    let a = aggregator(
        &out,
        &format!("http://{}/", srv.addr),
        Plan::Total { rate: 300.0 },
        None,
    );
    let before = served(srv.addr);
    let bots: Vec<Bot> = (0..3)
        .map(|i| start_bot(a.addr, &format!("b{i}")))
        .collect();
    wait_until(
        "3 live bots and 600 answers",
        Duration::from_secs(20),
        || {
            let s = json(a.addr, "/api/summary");
            s["live"] == 3 && s["requests"].as_u64().unwrap() >= 600
        },
    );
    // Each live bot was given a third of the total.
    let b = json(a.addr, "/api/bots?sort=name");
    assert_eq!(b["total"], 3);
    for bot in b["bots"].as_array().unwrap() {
        assert_eq!(bot["rate"], 100.0, "{bot}");
    }
    let (code, _) = http(a.addr, "POST", "/api/finish", Some(TOKEN), "");
    assert_eq!(code, 200);
    let outcome = a.wait();
    for b in bots {
        b.thread.join().unwrap();
    }
    let run = outcome.run;
    let answered = served(srv.addr) - before;
    // /metrics scrapes are answered too: the two made above (before the run and now).
    assert_eq!(run.total.responses, answered - 1, "aggregator vs server");
    assert_eq!(run.total.failed(), 0);
    assert_eq!(run.total.versions["v1"], run.total.responses);
    let summary = run.summary.clone().unwrap();
    assert_eq!(summary.requests, run.total.responses);
    // The series adds up to the total, and the seconds in the middle heard from all 3 bots.
    let per_second: u64 = run.intervals.iter().map(|s| s.responses).sum();
    assert_eq!(per_second, run.total.responses);
    let fleet = run.fleet.as_ref().unwrap();
    assert!(fleet.seconds.iter().any(|s| s.reported == 3 && s.live == 3));
    assert!(fleet.events.iter().any(|e| e.kind == "bot_joined"));
    // What was written reads back the same.
    let back = report::RunFile::read(&outcome.results).unwrap();
    assert_eq!(back.total.responses, run.total.responses);
    assert!(std::fs::metadata(&outcome.report).unwrap().len() > 0);
    std::fs::remove_dir_all(out).unwrap();
}

/// A total rate in stages over 3 bots: one schedule for the fleet, started on a whole second
/// after the first bot is live; each stage's sends (cut from the merged seconds) are the
/// schedule's count within 1 %, the server answered every one, and the run ends with the
/// stages.
#[test]
fn stages_split_over_three_bots_keep_each_stage() {
    let srv = server("v1");
    let out = tmpdir("stages");
    let shape: pace::RateShape = "stages:2s:300,2s:300,2s:900".parse().unwrap();
    let a = aggregator(
        &out,
        &format!("http://{}/", srv.addr),
        Plan::Shaped {
            shape,
            start_unix: None,
        },
        None,
    );
    let before = served(srv.addr);
    let bots: Vec<Bot> = (0..3)
        .map(|i| start_bot(a.addr, &format!("b{i}")))
        .collect();
    // No --run-for: the run ends when the stages do.
    let outcome = a.wait();
    for b in bots {
        b.thread.join().unwrap();
    }
    let run = outcome.run;
    let rows: Vec<(Option<f64>, u64)> = run
        .stages
        .iter()
        .map(|r| (r.plan.planned, r.sent))
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for ((planned, sent), want) in rows.iter().zip([300.0, 600.0, 1200.0]) {
        assert_eq!(*planned, Some(want));
        assert!(
            (*sent as f64 - want).abs() <= 0.01 * want,
            "stage of {want}: sent {sent} ({rows:?})"
        );
    }
    // Each bot's first send is due on the schedule's first instant, a second's bound: one
    // whose cut of the second before ran late counts it there. Nothing else is outside.
    let in_stages: u64 = rows.iter().map(|r| r.1).sum();
    assert!(
        run.total.sent >= in_stages && run.total.sent - in_stages <= 3,
        "{} sent, {in_stages} in the stages",
        run.total.sent
    );
    assert_eq!(run.total.failed(), 0);
    // The scrape above and the one now are answered too.
    assert_eq!(
        run.total.responses,
        served(srv.addr) - before - 1,
        "aggregator vs server"
    );
    let fleet = run.fleet.as_ref().unwrap();
    assert!(
        fleet
            .events
            .iter()
            .any(|e| e.text.contains("2s:300,2s:300,2s:900 starts at second")),
        "{:?}",
        fleet.events
    );
    std::fs::remove_dir_all(out).unwrap();
}

/// `aggregate --threshold`: judged on the merged histograms at the end, into results.json;
/// the count a threshold measures is the bots' own counts added up.
#[test]
fn thresholds_are_judged_on_the_merged_run() {
    let srv = server("v1");
    let out = tmpdir("thresholds");
    let a = aggregator_judging(
        &out,
        &format!("http://{}/delay?ms=5", srv.addr),
        Plan::Total { rate: 200.0 },
        None,
        &["p99<1ms", "p99<50ms", "requests>=1", "failed==0"],
    );
    let bots: Vec<Bot> = (0..2)
        .map(|i| start_bot(a.addr, &format!("b{i}")))
        .collect();
    wait_until("300 answers", Duration::from_secs(20), || {
        json(a.addr, "/api/summary")["requests"].as_u64().unwrap() >= 300
    });
    let (code, _) = http(a.addr, "POST", "/api/finish", Some(TOKEN), "");
    assert_eq!(code, 200);
    let outcome = a.wait();
    let measured_by_bots: u64 = bots
        .into_iter()
        .map(|b| b.thread.join().unwrap().responses)
        .sum();
    let run = outcome.run;
    let v = &run.verdicts;
    let p99 = run.total.quantile_ms(0.99);
    assert!(p99 >= 5.0, "{p99}");
    assert_eq!((v[0].pass, v[0].measured), (false, Some(p99)), "{v:?}");
    assert!(v[1].pass, "{v:?}");
    assert_eq!(v[2].measured, Some(measured_by_bots as f64), "{v:?}");
    assert_eq!(run.total.completed(), measured_by_bots);
    assert!(v[3].pass, "{v:?}");
    let back = report::RunFile::read(&outcome.results).unwrap();
    assert_eq!(&back.verdicts, v);
    std::fs::remove_dir_all(out).unwrap();
}

/// The thresholds' live state: `/api/summary`'s `verdicts`, judged on the totals so far, move
/// from fail to pass as answers arrive, and measure what the summary counts.
#[test]
fn the_summary_judges_thresholds_on_the_run_so_far() {
    let srv = server("v1");
    let out = tmpdir("live-verdicts");
    let a = aggregator_judging(
        &out,
        &format!("http://{}/", srv.addr),
        Plan::Total { rate: 200.0 },
        None,
        &["requests>=150", "failed==0", "p99<10s"],
    );
    let s = json(a.addr, "/api/summary");
    let v = s["verdicts"].as_array().expect("verdicts in the summary");
    let texts: Vec<&str> = v.iter().map(|v| v["threshold"].as_str().unwrap()).collect();
    assert_eq!(texts, ["requests>=150", "failed==0", "p99<10s"]);
    // Nothing ended yet: too few requests, no failure, no latency to judge.
    assert_eq!(v[0]["pass"], false, "{v:?}");
    assert_eq!(v[1]["pass"], true, "{v:?}");
    assert_eq!(
        (&v[2]["pass"], v[2]["shown"].as_str()),
        (&false.into(), Some("no answers"))
    );
    let bot = start_bot(a.addr, "b0");
    let mut last = serde_json::Value::Null;
    wait_until("requests>=150 passes", Duration::from_secs(20), || {
        last = json(a.addr, "/api/summary");
        last["verdicts"][0]["pass"] == true
    });
    let v = &last["verdicts"];
    let ended = last["ok"].as_u64().unwrap() + last["errors"].as_u64().unwrap();
    assert!(ended >= 150, "{last}");
    assert_eq!(v[0]["measured"].as_f64(), Some(ended as f64), "{last}");
    assert_eq!(v[1]["pass"], true, "{last}");
    assert_eq!(v[2]["pass"], true, "{last}");
    assert!(v[2]["measured"].as_f64().unwrap() > 0.0, "{last}");
    let (code, _) = http(a.addr, "POST", "/api/finish", Some(TOKEN), "");
    assert_eq!(code, 200);
    let outcome = a.wait();
    bot.thread.join().unwrap();
    assert!(
        outcome.run.verdicts.iter().all(|v| v.pass),
        "{:?}",
        outcome.run.verdicts
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn answers_per_version_match_two_servers_behind_the_balancer() {
    let (v1, v2) = (server("v1"), server("v2"));
    let lb = balance::start(balance::Config {
        algorithm: balance::pick::Algorithm::RoundRobin,
        // No health checks during the run: the servers' counts are then the bots' requests.
        health: balance::health::HealthConfig {
            interval: Duration::from_secs(3600),
            ..Default::default()
        },
        ..balance::Config::new(vec![v1.addr, v2.addr], "t")
    })
    .unwrap();
    let out = tmpdir("versions");
    let a = aggregator(
        &out,
        &format!("http://{}/", lb.addr),
        Plan::Total { rate: 200.0 },
        None,
    );
    // Let the balancer's first health checks pass before counting.
    std::thread::sleep(Duration::from_millis(300));
    let (b1, b2) = (served(v1.addr), served(v2.addr));
    let bots: Vec<Bot> = (0..3)
        .map(|i| start_bot(a.addr, &format!("b{i}")))
        .collect();
    wait_until("400 answers", Duration::from_secs(20), || {
        json(a.addr, "/api/summary")["requests"].as_u64().unwrap() >= 400
    });
    a.finish();
    let run = a.wait().run;
    for b in bots {
        b.thread.join().unwrap();
    }
    // Each server's count moved by the bots' requests plus our second scrape of the other.
    let n1 = served(v1.addr) - b1 - 1;
    let n2 = served(v2.addr) - b2 - 1;
    assert_eq!(run.total.versions.get("v1").copied().unwrap_or(0), n1);
    assert_eq!(run.total.versions.get("v2").copied().unwrap_or(0), n2);
    assert!(n1 > 100 && n2 > 100, "round-robin spreads: {n1} / {n2}");
    assert_eq!(run.total.responses, n1 + n2);
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn a_new_rate_takes_effect_within_a_second_or_two() {
    let srv = server("v1");
    let out = tmpdir("rate");
    let a = aggregator(
        &out,
        &format!("http://{}/", srv.addr),
        Plan::Total { rate: 100.0 },
        None,
    );
    let bots: Vec<Bot> = (0..2)
        .map(|i| start_bot(a.addr, &format!("b{i}")))
        .collect();
    wait_until("2 live bots", Duration::from_secs(10), || {
        json(a.addr, "/api/summary")["live"] == 2
    });
    // Wait for a full second at 100/s.
    wait_until("a second at 100/s", Duration::from_secs(10), || {
        json(a.addr, "/api/series").as_object().unwrap()["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["reported"] == 2 && p["sent"].as_u64().unwrap() >= 95)
    });
    let (code, body) = http(a.addr, "PUT", "/api/load", Some(TOKEN), r#"{"rate": 400}"#);
    assert_eq!(code, 200, "{body}");
    let changed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // From the second after next (the change lands mid-second), both bots send at 200/s.
    let target = changed + 2;
    wait_until("the new rate", Duration::from_secs(10), || {
        json(a.addr, &format!("/api/series?since={}", target - 1))["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["t"] == target)
    });
    let points = json(a.addr, &format!("/api/series?since={}", target - 1));
    let p = &points["points"][0];
    let sent = p["sent"].as_u64().unwrap();
    assert!(
        (390..=410).contains(&sent),
        "sent {sent} in second {target}: {p}"
    );
    assert_eq!(p["offered"], 400.0);
    a.finish();
    a.wait();
    for b in bots {
        b.thread.join().unwrap();
    }
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn bad_writes_change_nothing() {
    let out = tmpdir("bad");
    let a = aggregator(&out, "http://127.0.0.1:9/", Plan::Idle, None);
    let reg = r#"{"name":"x","host":"h","pid":1,"version":"0","clock_unix":0,"wire":2}"#;
    // No token, wrong token.
    assert_eq!(http(a.addr, "POST", "/api/bots", None, reg).0, 401);
    assert_eq!(http(a.addr, "POST", "/api/bots", Some("nope"), reg).0, 401);
    assert_eq!(
        http(a.addr, "PUT", "/api/load", None, r#"{"rate":5}"#).0,
        401
    );
    let (code, body) = http(a.addr, "POST", "/api/bots", Some(TOKEN), reg);
    assert_eq!(code, 200, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_u64()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let path = format!("/api/bots/{id}/snapshots");
    // Pushes are binary (a bot's `Push::encode`): posted as a bot posts them.
    let post = |path: &str, body: &[u8]| -> (u16, String) {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: agg\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            fleet::wire::PUSH_TYPE,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        let text = testsupport::call::raw(a.addr, &req);
        let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, text)
    };
    let push = |t: u64, snap: hist::sparse::WireSnapshot| fleet::wire::Push {
        clock_unix: 0.0,
        dropped: 0,
        intervals: vec![fleet::wire::Interval { t, snap }],
        generation: 0,
        idle: false,
        instance: String::new(),
    };
    // Not a push, a JSON push (a bot of the previous wire version), a snapshot whose counts
    // disagree, an unknown bot, an interval far in the future, an oversized body.
    let json_push = serde_json::to_vec(&push(now, Default::default())).unwrap();
    let bad_counts = push(
        now,
        hist::sparse::WireSnapshot {
            responses: 5,
            ..Default::default()
        },
    )
    .encode();
    let empty = fleet::wire::Push {
        intervals: Vec::new(),
        ..push(now, Default::default())
    }
    .encode();
    let future = push(now + 3600, Default::default()).encode();
    let huge = vec![0u8; 5 << 20];
    for (p, body, want, says) in [
        (path.as_str(), &b"{not json"[..], 400, "wire version 1"),
        (
            path.as_str(),
            &json_push[..],
            400,
            "wire version 1, this aggregator 2",
        ),
        (path.as_str(), &b"GET /"[..], 400, "not a scaletest push"),
        (path.as_str(), &bad_counts[..], 400, "status counts"),
        ("/api/bots/999/snapshots", &empty[..], 404, "register first"),
        (
            path.as_str(),
            &future[..],
            422,
            "outside the accepted window",
        ),
        (path.as_str(), &huge[..], 413, "body over"),
    ] {
        let (code, text) = post(p, body);
        assert_eq!(code, want, "{p}: {text}");
        assert!(text.contains(says), "{text}");
    }
    // A push with a wrong token: the quick path leaves it to hyper, which refuses it with the
    // challenge, as it refuses the other writes.
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: agg\r\nAuthorization: Bearer nope\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        empty.len()
    )
    .into_bytes();
    req.extend_from_slice(&empty);
    let text = testsupport::call::raw(a.addr, &req).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 401 "), "{text}");
    assert!(text.contains("\r\nwww-authenticate: bearer\r\n"), "{text}");
    // Without the token, a large body is refused from the head: none of it is waited for
    // (nor kept) before the 401.
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: agg\r\nContent-Length: {}\r\n\r\n",
        fleet::wire::MAX_BODY
    );
    let text = testsupport::call::raw(a.addr, head.as_bytes());
    assert!(text.starts_with("HTTP/1.1 401 "), "{text}");
    // A load spec that `scaletest load` would reject gets its reason.
    let (code, text) = http(
        a.addr,
        "PUT",
        "/api/load",
        Some(TOKEN),
        r#"{"rate": 10, "spec": {"url": "http://127.0.0.1:9/", "streams": 4}}"#,
    );
    assert_eq!(code, 400);
    assert!(text.contains("streams needs http2"), "{text}");
    let s = json(a.addr, "/api/summary");
    assert_eq!(s["requests"], 0);
    assert_eq!(s["errors"], 0);
    a.finish();
    a.wait();
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn closed_loop_bots_and_posted_events() {
    let srv = server("v1");
    let out = tmpdir("closed");
    let a = aggregator(
        &out,
        &format!("http://{}/", srv.addr),
        Plan::Connections { per_bot: 2 },
        None,
    );
    let bots: Vec<Bot> = (0..2)
        .map(|i| start_bot(a.addr, &format!("b{i}")))
        .collect();
    wait_until("answers from 2 bots", Duration::from_secs(15), || {
        let s = json(a.addr, "/api/summary");
        s["live"] == 2 && s["requests"].as_u64().unwrap() > 200
    });
    let (code, body) = http(
        a.addr,
        "POST",
        "/api/events",
        Some(TOKEN),
        r#"{"text": "rollout started: v2"}"#,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        http(
            a.addr,
            "POST",
            "/api/events",
            Some(TOKEN),
            r#"{"text": ""}"#
        )
        .0,
        400
    );
    let events = json(a.addr, "/api/events");
    assert!(events["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "posted" && e["text"] == "rollout started: v2"));
    a.finish();
    let run = a.wait().run;
    for b in bots {
        b.thread.join().unwrap();
    }
    assert_eq!(run.info.mode, "closed");
    assert!(run.total.responses > 200);
    assert_eq!(run.total.failed(), 0);
    // Closed loop: every send was also an intended one.
    assert_eq!(run.total.sent, run.total.intended);
    std::fs::remove_dir_all(out).unwrap();
}

/// An idle aggregator on `bind` with `public_read`.
fn listening_on(bind: &str, public_read: bool, out: &std::path::Path) -> agg::Running {
    agg::start(AggConfig {
        bind: bind.parse().unwrap(),
        token: TOKEN.into(),
        out: out.to_path_buf(),
        spec: Spec::default(),
        plan: Plan::Idle,
        run_for: None,
        state: state::Config::default(),
        thresholds: vec![],
        abort_on_fail: false,
        tls: None,
        public_read,
    })
    .unwrap()
}

/// Off loopback (here 0.0.0.0, reached through 127.0.0.1) the page and the read APIs need
/// the token, as the header or `?token=` (the page, the stream); `/healthz` and the static
/// assets do not. `--public-read` opens the reads again; on loopback they always were.
#[test]
fn reads_need_the_token_off_loopback_unless_public_read() {
    let dir = tmpdir("fleet-reads");
    let status = |addr: SocketAddr, path: &str, token: Option<&str>| {
        call(addr, "GET", path, token, "").status
    };
    let private = listening_on("0.0.0.0:0", false, &dir.join("private"));
    let addr: SocketAddr = format!("127.0.0.1:{}", private.addr.port())
        .parse()
        .unwrap();
    for path in [
        "/",
        "/api/summary",
        "/api/series",
        "/api/events",
        "/metrics",
    ] {
        assert_eq!(status(addr, path, None), 401, "{path}");
        assert_eq!(status(addr, path, Some(TOKEN)), 200, "{path}");
        let q = if path.contains('?') { '&' } else { '?' };
        assert_eq!(status(addr, &format!("{path}{q}token={TOKEN}"), None), 200);
        assert_eq!(status(addr, &format!("{path}{q}token=wrong"), None), 401);
    }
    assert!(call(addr, "GET", "/", None, "")
        .body
        .contains("/?token=TOKEN"));
    for path in ["/healthz", "/assets/app.js", "/assets/uplot.css"] {
        assert_eq!(status(addr, path, None), 200, "{path}");
    }
    // A write takes the header only: the query is for what a browser reads.
    assert_eq!(
        call(
            addr,
            "POST",
            &format!("/api/finish?token={TOKEN}"),
            None,
            ""
        )
        .status,
        401
    );
    let public = listening_on("0.0.0.0:0", true, &dir.join("public"));
    let addr: SocketAddr = format!("127.0.0.1:{}", public.addr.port()).parse().unwrap();
    assert_eq!(status(addr, "/api/summary", None), 200);
    assert_eq!(status(addr, "/", None), 200);
    let local = listening_on("127.0.0.1:0", false, &dir.join("local"));
    assert_eq!(status(local.addr, "/api/summary", None), 200);
    assert_eq!(status(local.addr, "/", None), 200);
    for a in [private, public, local] {
        a.finish();
        a.wait();
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Bots split a templated run's `{{seq}}` and CSV rows: bot i of 3 sends seq i, i+3, … and
/// takes rows i, i+3, …: every request's seq is distinct across the fleet, and the row it
/// carries is one of its sender's.
#[test]
fn bots_split_the_sequence_and_the_rows() {
    let srv = testkit::Server::start(testkit::Behavior::Ok);
    let out = tmpdir("shares");
    let a = agg::start(AggConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        token: TOKEN.into(),
        out: out.clone(),
        spec: Spec {
            url: Some(srv.url("s/{{seq}}/{{csv.user}}")),
            connections: 2,
            data: Some(load::template::Data {
                columns: vec!["user".into()],
                rows: (0..7).map(|i| vec![format!("u{i}")]).collect(),
                order: Default::default(),
            }),
            ..Spec::default()
        },
        plan: Plan::Idle,
        run_for: None,
        state: state::Config::default(),
        thresholds: Vec::new(),
        abort_on_fail: false,
        tls: None,
        public_read: false,
    })
    .unwrap();
    let bots: Vec<Bot> = (0..3)
        .map(|i| start_bot(a.addr, &format!("b{i}")))
        .collect();
    wait_until("3 live bots", Duration::from_secs(20), || {
        json(a.addr, "/api/summary")["live"] == 3
    });
    // The shares are dealt before any load starts: the set holds for the whole run.
    let (code, body) = http(a.addr, "PUT", "/api/load", Some(TOKEN), r#"{"rate": 300}"#);
    assert_eq!(code, 200, "{body}");
    wait_until("600 answers", Duration::from_secs(20), || {
        json(a.addr, "/api/summary")["requests"].as_u64().unwrap() >= 600
    });
    let (code, _) = http(a.addr, "POST", "/api/finish", Some(TOKEN), "");
    assert_eq!(code, 200);
    let run = a.wait().run;
    for b in bots {
        b.thread.join().unwrap();
    }
    let paths = srv.paths();
    let total: u64 = paths.values().sum();
    assert_eq!(total, run.total.responses, "every answer counted");
    assert!(total >= 600);
    let mut by_bot = [0u64; 3];
    for (path, n) in &paths {
        assert_eq!(*n, 1, "{path} sent {n} times");
        let (seq, user) = path
            .trim_start_matches("/s/")
            .split_once("/u")
            .unwrap_or_else(|| panic!("{path}"));
        let (seq, user): (u64, u64) = (seq.parse().unwrap(), user.parse().unwrap());
        assert_eq!(seq % 3, user % 3, "{path}: a row of another bot's share");
        by_bot[(seq % 3) as usize] += 1;
    }
    assert!(by_bot.iter().all(|n| *n > 150), "{by_bot:?}");
    std::fs::remove_dir_all(out).unwrap();
}

/// A bot's kept-alive connection that calls once a second stays open past the server's quiet
/// limit (10 s): its requests count as activity. (Uncounted, every bot's connections were
/// closed and opened again every ~10 s.)
#[test]
fn a_connection_used_every_second_stays_open() {
    use std::io::{BufRead, BufReader, Read, Write};
    let out = tmpdir("keepalive");
    let a = aggregator(&out, "http://127.0.0.1:9/", Plan::Idle, None);
    let mut s = std::net::TcpStream::connect(a.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let started = std::time::Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(14) {
        s.write_all(b"GET /api/summary HTTP/1.1\r\nhost: agg\r\n\r\n")
            .unwrap();
        let mut len = None;
        loop {
            let mut line = String::new();
            let n = r.read_line(&mut line).unwrap();
            assert!(n > 0, "closed after {calls} calls, {:?}", started.elapsed());
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length: ") {
                len = v.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; len.expect("a content-length")];
        r.read_exact(&mut body).unwrap();
        calls += 1;
        // The client's own pace: once a second, as a bot pushes.
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(calls >= 13);
    a.finish();
    a.wait();
    std::fs::remove_dir_all(out).unwrap();
}
