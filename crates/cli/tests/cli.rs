//! The `scaletest` binary: exit codes, one-line errors, report and JSON output, Ctrl-C.

use report::RunFile;
use std::process::Stdio;
use std::time::{Duration, Instant};
use testkit::{Behavior, Server};
use testsupport::call::{call, get};
use testsupport::{exited, interrupt, signal, text, tmpdir, wait_until, Bin};

const SCALETEST: Bin = Bin(env!("CARGO_BIN_EXE_scaletest"));

#[test]
fn bad_input_gets_one_line_and_exit_code_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["load", "http//nope"], "invalid URL"),
        (&["load", "ftp://127.0.0.1/"], "unsupported scheme"),
        (
            &["load", "http://127.0.0.1:1/", "--rate", "0"],
            "rate must be a number > 0",
        ),
        (&["load", "http://127.0.0.1:1/", "--rate", "-5"], "rate"),
        (
            &["load", "http://127.0.0.1:1/", "-d", "ten"],
            "invalid duration",
        ),
        (
            &[
                "load",
                "http://127.0.0.1:1/",
                "-X",
                "POST",
                "--body-file",
                "/nonexistent/body",
            ],
            "cannot read body file",
        ),
        (
            &["load", "http://127.0.0.1:1/", "--streams", "4"],
            "--streams needs --http2",
        ),
        (
            &[
                "load",
                "http://127.0.0.1:1/",
                "--rate",
                "ramp:1..2",
                "-n",
                "5",
            ],
            "ramp",
        ),
        (
            &["load", "http://127.0.0.1:1/", "--stages", "1000"],
            "needs a duration",
        ),
        (
            &[
                "load",
                "http://127.0.0.1:1/",
                "--stages",
                "1s:10",
                "--rate",
                "5",
            ],
            "cannot be used with",
        ),
        (
            &["aggregate", "http://127.0.0.1:1/", "--rate", "ramp:1..2"],
            "--rate ramp:1..2: a ramp needs --run-for (or -d) to ramp over; or give stages",
        ),
        (
            &["aggregate", "http://127.0.0.1:1/", "--stages", "1s:10c"],
            "--stages are for `scaletest load`: bots run a fixed number of connections each",
        ),
        (&["load"], "give a target URL"),
        (
            &["load", "--targets", "/nonexistent/targets"],
            "cannot read targets file",
        ),
        (
            &["load", "http://127.0.0.1:1/", "--bogus"],
            "unexpected argument",
        ),
        (&["report", "/nonexistent.json"], "cannot read"),
        (
            &["load", "http://127.0.0.1:1/", "--threshold", "p99<50"],
            "threshold \"p99<50\": \"50\": a latency needs a unit",
        ),
        (
            &["load", "http://127.0.0.1:1/", "--threshold", "latency<5ms"],
            "unknown metric \"latency\"",
        ),
        (
            &["aggregate", "http://127.0.0.1:1/", "--threshold", "p99"],
            "threshold \"p99\": no comparison",
        ),
        (&["demo", "--threshold", "error_rate<200%"], "at most 100%"),
        (
            &["load", "http://127.0.0.1:1/", "--abort-on-fail"],
            "--threshold",
        ),
        (
            &["load", "http://127.0.0.1:1/", "--out", "csv:x.csv"],
            "the format is jsonl:FILE",
        ),
        (
            &[
                "load",
                "http://127.0.0.1:1/",
                "--out",
                "prometheus-rw:http://127.0.0.1:9/",
            ],
            "Prometheus remote write is not built in",
        ),
        (
            &[
                "load",
                "http://127.0.0.1:1/",
                "--out",
                "jsonl:/nonexistent/dir/s.jsonl",
            ],
            "--out jsonl:/nonexistent/dir/s.jsonl: No such file",
        ),
    ];
    for (args, want) in cases {
        refused(args, want);
    }
}

/// `scaletest ARGS` is refused: exit 2, nothing on stdout, one line on stderr that says
/// `want` (no panic); that line.
fn refused(args: &[&str], want: &str) -> String {
    let o = SCALETEST.run(args);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(want), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(o.stdout.is_empty(), "{args:?}");
    err
}

/// A value out of bounds is told the bound that holds: "at least 1" where there is no upper
/// bound of its own (clap's ranges would print u64::MAX), the open-file limit for connections.
#[test]
fn out_of_bounds_values_are_told_their_real_limits() {
    const U: &str = "http://127.0.0.1:1/";
    let cases: &[(&[&str], &str)] = &[
        (&["load", U, "-c", "0"], "must be at least 1"),
        (&["load", U, "-n", "0"], "must be at least 1"),
        (
            &["load", U, "--rate", "10", "--max-connections", "0"],
            "must be at least 1",
        ),
        (
            &["load", U, "-c", "4000000000"],
            "exceeds the open-file limit",
        ),
        (&["serve", "--max-connections", "0"], "must be at least 1"),
        (&["balance", "--max-connections", "0"], "must be at least 1"),
        (&["api", "churn", "-n", "0"], "must be at least 1"),
        (
            &["api", "churn", "--rate", "5", "--population", "0"],
            "must be at least 1",
        ),
        (
            &["k8s", "size", "--rate", "2e9"],
            "give requests/s above 0, at most 1000000000",
        ),
    ];
    for (args, want) in cases {
        let err = refused(args, want);
        assert!(!err.contains(&u64::MAX.to_string()), "{args:?}: {err}");
    }
}

/// Parse "│ Latency │ a │ b │ ..." into its cells.
fn row(report: &str, name: &str) -> Vec<String> {
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("│ {name} ")))
        .unwrap_or_else(|| panic!("no {name} row in\n{report}"));
    line.split('│')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .skip(1)
        .collect()
}

fn fmt_ms(us: u64) -> String {
    report::format::ms(us as f64 / 1000.0)
}

#[test]
fn json_output_parses_back_and_matches_the_printed_report() {
    let server = Server::start(Behavior::Delay(Duration::from_millis(2)));
    let dir = tmpdir("json");
    let json = dir.join("run.json");
    let o = SCALETEST.run(&[
        "load",
        &server.url("/"),
        "-c",
        "4",
        "-n",
        "300",
        "--json",
        json.to_str().unwrap(),
        "--percentiles",
    ]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(out.contains("300 requests in"), "{out}");
    assert!(out.contains("status codes: 200: 300"), "{out}");
    let file = RunFile::read(&json).unwrap();
    assert_eq!(file.total.responses, 300);
    assert_eq!(server.hits(), 300);
    // The histogram decoded from the file gives the printed percentiles.
    let h = &file.total.latency;
    let printed = row(&out, "Latency");
    let want: Vec<String> = [0.025, 0.5, 0.975, 0.99]
        .iter()
        .map(|q| fmt_ms(h.value_at_quantile(*q)))
        .collect();
    assert_eq!(&printed[..4], &want[..], "{out}");
    assert_eq!(printed[6], fmt_ms(h.max()));
    let spectrum = row(&out, "Latency");
    assert!(!spectrum.is_empty());
    // And `report` renders the same tables from the file.
    let again = SCALETEST.run(&["report", json.to_str().unwrap(), "--percentiles"]);
    assert_eq!(again.status.code(), Some(0));
    let again = text(&again.stdout);
    assert_eq!(row(&again, "Latency"), printed);
    assert_eq!(row(&again, "Req/Sec"), row(&out, "Req/Sec"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `{{seq}}` makes every request of a run its own URL; `{{csv.COLUMN}}` takes the rows of
/// `--data` in turn.
#[test]
fn templates_vary_each_request_and_csv_rows_go_in_turn() {
    let server = Server::start(Behavior::Ok);
    let o = SCALETEST.run(&[
        "load",
        &server.url("/item/{{seq}}"),
        "-c",
        "4",
        "-t",
        "2",
        "-n",
        "500",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let paths = server.paths();
    let want: std::collections::BTreeMap<String, u64> =
        (0..500).map(|i| (format!("/item/{i}"), 1)).collect();
    assert_eq!(paths, want);

    let server = Server::start(Behavior::Ok);
    let dir = tmpdir("data");
    let csv = dir.join("users.csv");
    std::fs::write(&csv, "user,token\nada,t1\nbob,t2\n\"c d\",t3\n").unwrap();
    let o = SCALETEST.run(&[
        "load",
        &server.url("/u/{{csv.user}}"),
        "--data",
        csv.to_str().unwrap(),
        "-c",
        "2",
        "-t",
        "1",
        "-n",
        "90",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let got: Vec<(String, u64)> = server.paths().into_iter().collect();
    assert_eq!(
        got,
        [
            ("/u/ada".into(), 30),
            ("/u/bob".into(), 30),
            ("/u/c%20d".into(), 30)
        ]
    );
    // A value that cannot go where the template puts it is refused before the run, naming
    // its line: a line break in a header value.
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "user,token\nada,t1\nbob,\"t\r\nX-Injected: 1\"\n").unwrap();
    refused(
        &[
            "load",
            &server.url("/"),
            "-H",
            "X-Token: {{csv.token}}",
            "--data",
            bad.to_str().unwrap(),
        ],
        "CSV line 3: ",
    );
    refused(
        &[
            "load",
            &server.url("/u/{{csv.name}}"),
            "--data",
            csv.to_str().unwrap(),
        ],
        "no column \"name\" (its columns: user, token)",
    );
    refused(
        &["load", &server.url("/"), "--data", csv.to_str().unwrap()],
        "--data is given but no request has a {{csv.COLUMN}} template",
    );
    // A CSV file with no rows (checked once, in the spec's rules).
    let empty = dir.join("empty.csv");
    std::fs::write(&empty, "user,token\n").unwrap();
    refused(
        &[
            "load",
            &server.url("/u/{{csv.user}}"),
            "--data",
            empty.to_str().unwrap(),
        ],
        "--data: no rows",
    );
    refused(
        &["load", &server.url("/{{sequence}}")],
        "unknown template function \"sequence\"",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_targets_file_is_used_round_robin_with_headers_and_bodies() {
    let server = Server::start(Behavior::Ok);
    let dir = tmpdir("targets");
    std::fs::write(dir.join("body.json"), "{\"a\":1}").unwrap();
    let targets = format!(
        "# two targets\nGET {0}a\nX-Test: 1\n\nPOST {0}b\nContent-Type: application/json\n@body.json\n",
        server.url("/")
    );
    let tf = dir.join("targets.txt");
    std::fs::write(&tf, targets).unwrap();
    let o = SCALETEST.run(&[
        "load",
        "--targets",
        tf.to_str().unwrap(),
        "-c",
        "2",
        "-n",
        "100",
        "-H",
        "X-Run: 7",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let paths = server.paths();
    assert_eq!(paths.get("/a"), Some(&50), "{paths:?}");
    assert_eq!(paths.get("/b"), Some(&50), "{paths:?}");
    // Targets on two origins are refused.
    std::fs::write(
        &tf,
        format!("GET {}a\n\nGET http://127.0.0.2:9/\n", server.url("/")),
    )
    .unwrap();
    let o = SCALETEST.run(&["load", "--targets", tf.to_str().unwrap(), "-n", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("one origin"),
        "{}",
        text(&o.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unreachable_target_is_reported_and_exits_1() {
    let s = testkit::Misbehaving::start(testkit::Misbehavior::Refuse);
    let o = SCALETEST.run(&["load", &s.url(), "-n", "10", "-c", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stdout).contains("errors: connect_refused: 10"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(
        text(&o.stderr).trim(),
        "scaletest: no request got a response"
    );
}

#[test]
fn open_loop_report_names_corrected_and_uncorrected_latency() {
    let server = Server::start(Behavior::Ok);
    let o = SCALETEST.run(&[
        "load",
        &server.url("/"),
        "--rate",
        "500",
        "-d",
        "1s",
        "--arrival",
        "poisson",
    ]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(out.contains("│ Service "), "{out}");
    assert!(out.contains("coordinated omission corrected"), "{out}");
    assert!(out.contains("(uncorrected)"), "{out}");
    assert!(out.contains("target rate 500/s"), "{out}");
}

#[test]
fn stages_send_each_stages_schedule_and_report_it_per_stage() {
    let server = Server::start(Behavior::Ok);
    let dir = tmpdir("stages");
    let json = dir.join("run.json");
    let jsonl = dir.join("seconds.jsonl");
    // 0 → 200/s over 2 s (200 sends), 200/s for 1 s (200), a jump to 600/s for 1 s (600).
    let o = SCALETEST.run(&[
        "load",
        &server.url("/"),
        "--stages",
        "2s:200,1s:200,0s:600,1s:600",
        "--json",
        json.to_str().unwrap(),
        "--out",
        &format!("jsonl:{}", jsonl.display()),
    ]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // The run lasts as long as its stages: every planned send is made, none more.
    assert_eq!(server.hits(), 1000, "{out}");
    let run = RunFile::read(&json).unwrap();
    assert_eq!(run.info.duration_s, Some(4.0));
    let planned: Vec<f64> = run.stages.iter().map(|s| s.plan.planned.unwrap()).collect();
    assert_eq!(planned, vec![200.0, 200.0, 600.0]);
    for s in &run.stages {
        // Each second counts in the stage holding its middle: a send due at a stage's very
        // edge may land in the next second.
        assert!(
            s.sent.abs_diff(s.plan.planned.unwrap() as u64) <= 2,
            "{s:?}\n{out}"
        );
    }
    // Answers that came after the stages ended (a busy machine's drain) count in the last.
    assert_eq!(run.stages.iter().map(|s| s.responses).sum::<u64>(), 1000);
    assert!(out.contains("│ Stage │ Seconds │ Planned │"), "{out}");
    // --out jsonl: a line per second of the run, the series the run file keeps, consecutive
    // Unix seconds; together every response.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), run.intervals.len(), "{lines:?}");
    for (i, (line, second)) in lines.iter().zip(&run.intervals).enumerate() {
        assert_eq!(line["t"], i as u64);
        assert_eq!(line["responses"], second.responses);
        assert_eq!(line["status"]["200"], second.responses);
        let unix = |l: &serde_json::Value| l["unix"].as_u64().unwrap();
        assert_eq!(unix(line), unix(&lines[0]) + i as u64);
        assert!(line["latency"]["p99"].as_f64().unwrap() > 0.0, "{line}");
    }
    let sum: u64 = lines.iter().map(|l| l["responses"].as_u64().unwrap()).sum();
    assert_eq!(sum, 1000);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Closed loop in stages of connections: a server that answers after 50 ms lets one
/// connection send at most 21 requests a second, so 2 busy connections send at most 42 in
/// their second and 6 send more; the stage table shows connections, not a plan.
#[test]
fn connection_stages_keep_that_many_connections_busy() {
    let server = Server::start(Behavior::Delay(Duration::from_millis(50)));
    let dir = tmpdir("conn-stages");
    let json = dir.join("run.json");
    let o = SCALETEST.run(&[
        "load",
        &server.url("/"),
        "--stages",
        "0s:2c,1s:2c,0s:6c,1s:6c",
        "--json",
        json.to_str().unwrap(),
    ]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let run = RunFile::read(&json).unwrap();
    assert_eq!(run.info.duration_s, Some(2.0));
    assert_eq!(run.info.mode, "closed");
    let conns: Vec<_> = run.stages.iter().map(|s| s.plan.connections).collect();
    assert_eq!(conns, vec![Some([2, 2]), Some([6, 6])], "{out}");
    let (two, six) = (&run.stages[0], &run.stages[1]);
    assert!(two.sent >= 10 && two.sent <= 42, "{two:?}\n{out}");
    assert!(six.sent > 42 && six.sent <= 126, "{six:?}\n{out}");
    assert_eq!(two.failed + six.failed, 0);
    assert!(out.contains("│ Stage │ Seconds │ Connections │"), "{out}");
    assert!(
        out.contains("connections in stages 0s:2c,1s:2c,0s:6c,1s:6c (up to 6)"),
        "{out}"
    );
    // -n ends the run once its requests are sent, also on a thread whose share of the stage
    // is no connection (2 threads for a peak of 2, then 1 connection for 30 s).
    let (before, t) = (server.hits(), Instant::now());
    let o = SCALETEST.run(&[
        "load",
        &server.url("/"),
        "--stages",
        "0s:2c,0s:1c,30s:1c",
        "-n",
        "40",
        "-t",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(server.hits() - before, 40);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    refused(
        &["load", &server.url("/"), "--stages", "1s:5c", "-c", "10"],
        "--stages in connections (Nc) says how many connections: -c does not apply",
    );
    refused(
        &["load", &server.url("/"), "--stages", "1s:5c,1s:200"],
        "stage 2's connections \"200\" are not a whole number",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_c_ends_the_run_and_still_reports_and_writes_json() {
    let server = Server::start(Behavior::Ok);
    let dir = tmpdir("sigint");
    let json = dir.join("run.json");
    let child = SCALETEST
        .command()
        .args([
            "load",
            &server.url("/"),
            "-c",
            "2",
            "-d",
            "60s",
            "--json",
            json.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the load is flowing, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.hits() < 100 {
        assert!(Instant::now() < deadline, "no load arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(interrupt(child.id()));
    let o = child.wait_with_output().unwrap();
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(out.contains("(interrupted)"), "{out}");
    let file = RunFile::read(&json).unwrap();
    assert!(file.interrupted);
    assert!(file.total.responses >= 100);
    assert!(file.elapsed_s < 30.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `load --threshold` against a server answering in 5 ms: the verdict lines after the tables,
/// the JSON's verdicts, and the exit code (1 when any fails).
#[test]
fn thresholds_judge_the_run_and_set_the_exit_code() {
    let srv = serve_draining("0s");
    let url = format!("http://{}/delay?ms=5", srv.addr);
    let dir = tmpdir("thresholds");
    let json = dir.join("run.json");
    let run = |thresholds: &[&str]| {
        let mut args = vec!["load", &url, "-n", "200", "-c", "4"];
        for t in thresholds {
            args.extend(["--threshold", t]);
        }
        args.extend(["--json", json.to_str().unwrap()]);
        SCALETEST.run(&args)
    };
    let o = run(&["p99<1ms", "failed==0", "requests==200"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let p99 = RunFile::read(&json).unwrap().total.quantile_ms(0.99);
    assert!(p99 >= 5.0, "{p99}");
    let line = out
        .lines()
        .find(|l| l.contains("p99<1ms"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.starts_with("FAIL "), "{line}");
    let shown = format!("measured {}", report::format::ms(p99));
    assert!(line.ends_with(&shown), "{line}");
    assert!(out.contains("pass failed==0"), "{out}");
    assert!(out.contains("1 of 3 thresholds failed"), "{out}");
    // The verdict lines come after the tables.
    assert!(
        out.find("p99<1ms").unwrap() > out.find("Latency").unwrap(),
        "{out}"
    );
    let v = &RunFile::read(&json).unwrap().verdicts;
    assert_eq!(v.len(), 3);
    assert_eq!((v[0].threshold.as_str(), v[0].pass), ("p99<1ms", false));
    assert_eq!(v[0].measured, Some(p99));
    assert_eq!((v[2].measured, v[2].pass), (Some(200.0), true));
    let o = run(&["p99<50ms", "error_rate<0.1%"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("all 2 thresholds passed"));
}

/// `--abort-on-fail` stops the run once a count is past its bound, and says which.
#[test]
fn abort_on_fail_stops_at_the_first_threshold_that_cannot_pass() {
    let srv = serve_draining("0s");
    let url = format!("http://{}/status/503", srv.addr);
    let t0 = Instant::now();
    let o = SCALETEST.run(&[
        "load",
        &url,
        "-d",
        "30s",
        "-c",
        "2",
        "--threshold",
        "status_5xx<10",
        "--abort-on-fail",
    ]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    assert!(
        out.contains("stopped after second 1: threshold status_5xx<10 can no longer pass"),
        "{out}"
    );
    assert!(out.contains("FAIL status_5xx<10"), "{out}");
}

/// `scaletest serve` on an ephemeral port, version `v2`, draining for `delay` on SIGTERM.
fn serve_draining(delay: &str) -> testsupport::Listening {
    SCALETEST.listening(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--drain-delay",
        delay,
        "--version-label",
        "v2",
    ])
}

#[test]
fn serve_drains_on_sigterm_and_exits_0() {
    // A drain delay far longer than the test, so that the drain is seen without racing its
    // end; a second SIGTERM skips the rest of it.
    let mut serve = serve_draining("600s");
    let addr = serve.addr;
    let status = |path: &str| call(addr, "GET", path, None, "").status;
    assert_eq!(get(addr, "/version"), "v2\n");
    assert_eq!(status("/readyz"), 200);
    assert!(signal(serve.proc.id(), "TERM"));
    wait_until("/readyz to answer 503", Duration::from_secs(10), || {
        status("/readyz") == 503
    });
    // Draining: not ready, still serving.
    assert_eq!(get(addr, "/version"), "v2\n");
    assert_eq!(status("/readyz"), 503);
    assert!(signal(serve.proc.id(), "TERM"));
    let exit = exited(&mut serve.proc, Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0));
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn serve_stops_by_itself_when_the_drain_delay_ends() {
    let mut serve = serve_draining("300ms");
    let addr = serve.addr;
    // At once: the handler is in place before the address is announced.
    let t = Instant::now();
    assert!(signal(serve.proc.id(), "TERM"));
    let exit = exited(&mut serve.proc, Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    // A lower bound only: the drain delay was served, however busy the machine.
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert!(std::net::TcpStream::connect(addr).is_err());
}

/// The lines of an NSS key log with `label`: (client random, secret).
fn key_lines(path: &std::path::Path, label: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            (f.next() == Some(label)).then(|| {
                let random = f.next().unwrap_or("").to_string();
                (random, f.next().unwrap_or("").to_string())
            })
        })
        .collect()
}

#[test]
fn sslkeylogfile_makes_client_and_server_log_their_tls_secrets_and_unset_logs_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmpdir("keylog");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (server_log, client_log) = (dir.join("server.keys"), dir.join("client.keys"));
    let tls_pair = |log: Option<(&std::path::Path, &std::path::Path)>| {
        let mut serve = SCALETEST.command();
        serve
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--threads",
                "1",
                "--tls-self-signed",
            ])
            .current_dir(&dir)
            .env_remove("SSLKEYLOGFILE");
        let mut load = SCALETEST.command();
        load.current_dir(&dir).env_remove("SSLKEYLOGFILE");
        if let Some((s, c)) = log {
            serve.env("SSLKEYLOGFILE", s);
            load.env("SSLKEYLOGFILE", c);
        }
        let testsupport::Listening {
            proc: _server,
            addr,
            ..
        } = testsupport::listening(serve);
        let out = load
            .args([
                "load",
                &format!("https://{addr}/"),
                "-k",
                "--http2",
                "-c",
                "2",
                "-n",
                "20",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    };
    tls_pair(Some((&server_log, &client_log)));
    // TLS 1.3 traffic secrets, one per connection: the client's two connections, and the
    // server logged the same sessions (the same client randoms, the same secrets).
    let client = key_lines(&client_log, "CLIENT_TRAFFIC_SECRET_0");
    let server = key_lines(&server_log, "CLIENT_TRAFFIC_SECRET_0");
    assert_eq!(client.len(), 2, "{client:?}");
    for c in &client {
        assert_eq!(c.0.len(), 64, "a 32-byte client random in hex: {c:?}");
        assert!(server.contains(c), "{c:?} not in the server's {server:?}");
    }
    assert_eq!(
        key_lines(&client_log, "SERVER_HANDSHAKE_TRAFFIC_SECRET").len(),
        2
    );
    for f in [&server_log, &client_log] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    // Unset: nothing is written, anywhere in the working directory.
    std::fs::remove_file(&server_log).unwrap();
    std::fs::remove_file(&client_log).unwrap();
    tls_pair(None);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // A key log that cannot be opened is one line and exit 2, not a silent run.
    let out = SCALETEST
        .command()
        .args(["load", "https://127.0.0.1:1/", "-k", "-n", "1"])
        .env("SSLKEYLOGFILE", "/nonexistent/dir/keys")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("SSLKEYLOGFILE /nonexistent/dir/keys"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_streaming_run_reports_bytes_per_second_in_the_json_and_in_rate_lines() {
    let dir = tmpdir("byterates");
    let json = dir.join("blocks.json");
    let mut serve = SCALETEST.command();
    serve.args(["serve", "--bind", "127.0.0.1:0", "--threads", "1"]);
    let testsupport::Listening {
        proc: _server,
        addr,
        ..
    } = testsupport::listening(serve);
    // Two streams, each 40 blocks of 16 KiB, one every 50 ms: 2 s per response, so the bytes
    // arrive over the seconds, not when a response completes.
    let out = SCALETEST.run(&[
        "load",
        &format!("http://{addr}/blocks?size=16384&n=40&periodMS=50"),
        "-c",
        "2",
        "-d",
        "3s",
        "--log-rates",
        "1s",
        "--json",
        json.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(": rx ")).collect();
    assert!(lines.len() >= 2, "{err}");
    // Two streams × 20 blocks/s × 16 KiB ≈ 655 kB/s in each full second.
    assert!(lines[0].contains("kB/s, tx"), "{err}");
    let run = RunFile::from_json("blocks.json", &std::fs::read_to_string(&json).unwrap()).unwrap();
    let full: Vec<_> = run.series.iter().filter(|s| s.seconds >= 0.99).collect();
    assert!(full.len() >= 2, "{:?}", run.series);
    for s in &full {
        assert!(
            (400_000..900_000).contains(&s.bytes),
            "second {}: {} bytes",
            s.second,
            s.bytes
        );
        // The requests themselves went out in the first second.
        assert!(s.second == 0 || s.bytes_sent < 1000, "{s:?}");
    }
    assert!(run.series[0].bytes_sent > 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
