//! `scaletest api churn` / `api watch` as a user runs them: against the in-process fake API
//! through a kubeconfig (the churn test also against a real cluster, with `--ignored` and
//! SCALETEST_KUBECONFIG), exit codes, one-line errors, the report, the JSON, cleanup, and a
//! separate watch process with /metrics.

// Tests and examples may print (see clippy.toml).
#![allow(clippy::disallowed_macros)]

use kubefake::FakeApi;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use testsupport::call::get;
use testsupport::{interrupt, text, tmpdir, wait_until, Bin};

const SCALETEST: Bin = Bin(env!("CARGO_BIN_EXE_scaletest"));
/// How long to wait for another process.
const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A fake API server, a directory for the test's files, and the path of its kubeconfig.
fn fake_api(test: &str) -> (FakeApi, PathBuf, String) {
    let fake = FakeApi::start();
    let dir = tmpdir(test);
    let kc = fake.kubeconfig(&dir).to_string_lossy().into_owned();
    (fake, dir, kc)
}

/// The real cluster's kubeconfig `SCALETEST_KUBECONFIG` names, for the ignored tests
/// (`--ignored`).
fn real_kubeconfig() -> PathBuf {
    std::env::var_os("SCALETEST_KUBECONFIG")
        .map(PathBuf::from)
        .expect("SCALETEST_KUBECONFIG must name a real cluster's kubeconfig for this test")
}

#[test]
fn bad_usage_gets_one_line_and_exit_code_2() {
    let (fake, dir, kc) = fake_api("usage");
    let kc = kc.as_str();
    let bad_template = dir.join("bad.yaml");
    std::fs::write(&bad_template, "just: [unclosed").expect("write");
    let no_kind = dir.join("nokind.yaml");
    std::fs::write(&no_kind, "metadata: {name: x}\n").expect("write");
    let bad_wait = dir.join("wait.yaml");
    let workload = kapi::workload::EXAMPLES[0].2;
    std::fs::write(&bad_wait, workload.replace("waitFor: Ready", "waitFor: Up")).expect("write");
    let widget = dir.join("widget.yaml");
    std::fs::write(
        &widget,
        "jobs:\n  - name: w\n    objects:\n      - object: {apiVersion: x.example.com/v1, kind: Widget, metadata: {name: w}}\n",
    )
    .expect("write");
    let (bad_wait, widget) = (
        bad_wait.to_str().expect("path"),
        widget.to_str().expect("path"),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["api", "run", "/nonexistent/w.yaml"],
            "/nonexistent/w.yaml: No such file",
        ),
        (
            vec!["api", "run", bad_wait, "--kubeconfig", kc],
            "jobs[0].waitFor: \"Up\": one of Ready, Running, Complete",
        ),
        (
            vec!["api", "run", "deployments", "--set", "nope=1"],
            "--set nope: deployments has no such variable",
        ),
        (
            vec!["api", "run", widget, "--kubeconfig", kc],
            "jobs[0].objects[0]: \"x.example.com/v1/Widget\": the server does not serve",
        ),
        (
            vec!["api", "run", "deployments", "--run-id", "Bad_ID"],
            "--run-id",
        ),
        (vec!["api", "churn", "--rate", "10"], "needs -d/--duration"),
        (
            vec!["api", "churn", "--rate", "10", "-d", "1s", "-w", "3"],
            "cannot be used with",
        ),
        (vec!["api", "churn"], "give --rate"),
        (
            vec!["api", "churn", "-n", "5", "--lifetime", "1s"],
            "open loop",
        ),
        (vec!["api", "churn", "--rate", "0", "-d", "1s"], "rate"),
        (
            vec!["api", "churn", "-n", "1", "--run-id", "Bad_ID"],
            "--run-id",
        ),
        (vec!["api", "churn", "-n", "1", "--qps", "0"], "--qps"),
        (
            vec![
                "api",
                "churn",
                "-n",
                "1",
                "--template",
                bad_template.to_str().expect("path"),
            ],
            "not YAML or JSON",
        ),
        (
            vec![
                "api",
                "churn",
                "-n",
                "1",
                "--template",
                no_kind.to_str().expect("path"),
            ],
            "apiVersion and kind",
        ),
        (
            vec!["api", "churn", "-n", "1", "--kubeconfig", "/nonexistent/kc"],
            "kubeconfig",
        ),
        (
            vec![
                "api",
                "churn",
                "-n",
                "1",
                "--kubeconfig",
                kc,
                "--resource",
                "widgets",
            ],
            "no such resource",
        ),
        (
            vec![
                "api",
                "churn",
                "-n",
                "1",
                "--kubeconfig",
                kc,
                "--resource",
                "x.example.com/v1/Widget",
            ],
            "does not serve",
        ),
        (
            vec!["api", "watch", "-A", "--namespace", "x"],
            "cannot be used with",
        ),
    ];
    for (args, want) in cases {
        let out = SCALETEST.run(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // Created nothing.
    assert_eq!(fake.count("create configmaps"), 0);
    assert_eq!(fake.count("create namespaces"), 0);
}

#[test]
fn an_unreachable_api_server_is_one_line_and_exit_code_1() {
    let dir = tmpdir("unreachable");
    let kc = dir.join("kc");
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .expect("write");
    let out = SCALETEST.run(&[
        "api",
        "churn",
        "-n",
        "1",
        "--kubeconfig",
        kc.to_str().expect("path"),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach the API server"), "{err}");
}

#[test]
fn churn_reports_every_call_writes_json_and_passes_the_slo() {
    let fake = FakeApi::start();
    let dir = tmpdir("churn");
    churn_reports_against(&fake.kubeconfig(&dir), Some(&fake), &dir);
}

#[test]
#[ignore = "needs a real cluster: set SCALETEST_KUBECONFIG and run with --ignored"]
fn churn_reports_every_call_writes_json_and_passes_the_slo_on_a_real_cluster() {
    churn_reports_against(&real_kubeconfig(), None, &tmpdir("churn-real"));
}

/// The churn test through `kc`; `fake`: the fake API server behind it, whose request log is
/// checked too.
fn churn_reports_against(kc: &Path, fake: Option<&FakeApi>, dir: &Path) {
    let run_id = format!("cli{}", std::process::id() % 100_000);
    let json = dir.join("churn.json");
    let out = SCALETEST.run(&[
        "api",
        "churn",
        "--kubeconfig",
        kc.to_str().expect("path"),
        "-w",
        "4",
        "-n",
        "40",
        "-u",
        "2",
        "--namespaces",
        "3",
        "--watch",
        "--slo",
        "--json",
        json.to_str().expect("path"),
        "--run-id",
        &run_id,
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for want in [
        "create configmaps",
        "patch configmaps",
        "delete configmaps",
        "Notify create",
        "pass",
    ] {
        assert!(stdout.contains(want), "{want}: {stdout}");
    }
    // The SLO lines say what they check: the server's latency as ClusterLoader2 judges it
    // when its /metrics can be read (the fake's can), else an approximation, not the SLI.
    let slo_lines: &[&str] = if fake.is_some() || stdout.contains("SLO, server latency") {
        &[
            "POST configmaps (resource)",
            "SLO, server latency (p99 of 5-min windows)",
            "As ClusterLoader2's APIResponsivenessPrometheus",
        ]
    } else {
        &[
            "SLO, approximated (p99 over the run)",
            "An approximation of the Kubernetes API-call SLOs",
            "the SLI is a p99 per 5-minute window",
        ]
    };
    for want in slo_lines {
        assert!(stdout.contains(want), "{want}: {stdout}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let ok = |verb: &str| {
        v["calls"]
            .as_array()
            .expect("calls")
            .iter()
            .find(|c| c["verb"] == verb)
            .map(|c| c["ok"].as_u64().expect("ok"))
    };
    assert_eq!(
        (ok("create"), ok("patch"), ok("delete")),
        (Some(40), Some(80), Some(40))
    );
    assert_eq!(v["lifecycles"]["completed"], 40);
    assert_eq!(v["info"]["namespaces"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["watch"]["applied"], 120);
    assert_eq!(v["watch"]["deleted"], 40);
    // Every timed notification in its second too: a create's and two patches' a lifecycle.
    let told = |key: &str| -> u64 {
        let seconds = v["watch"]["seconds"].as_array().expect("watch seconds");
        seconds.iter().filter_map(|s| s[key]["n"].as_u64()).sum()
    };
    assert_eq!(
        (told("create notification"), told("update notification")),
        (40, 80)
    );
    assert!(v["slo"]
        .as_array()
        .expect("slo")
        .iter()
        .all(|s| s["pass"] == true));
    // `scaletest report` prints it again, and merges two runs into one.
    let j = json.to_str().expect("path");
    let out = SCALETEST.run(&["report", j, j]);
    let again = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(again.contains("80 lifecycles: 80 completed"), "{again}");
    assert!(v["server"]["version"].as_str().is_some(), "{}", v["server"]);
    if let Some(fake) = fake {
        assert_eq!(v["server"]["version"], "v1.28.7");
        let server_posts = v["server"]["calls"]
            .as_array()
            .expect("server calls")
            .iter()
            .find(|c| c["verb"] == "POST" && c["resource"] == "configmaps")
            .map(|c| c["count"].clone());
        assert_eq!(server_posts, Some(serde_json::json!(40)));
        assert!(v["server"]["slo"]
            .as_array()
            .expect("server slo")
            .iter()
            .all(|s| s["pass"] == true));
        assert_eq!(fake.count("create configmaps"), 40);
        assert_eq!(fake.count("create namespaces"), 3);
        // Spread round-robin over the run's namespaces.
        let per_ns: Vec<u64> = (0..3)
            .map(|i| fake.count(&format!("create configmaps in scaletest-{run_id}-{i}")))
            .collect();
        assert_eq!(per_ns, [14, 13, 13]);
        // The run's namespaces are gone again, and so is every object.
        assert_eq!(fake.count("delete namespaces"), 3);
        assert!(fake.objects("configmaps").is_empty());
    }
}

/// A user without RBAC's get on /metrics: one warning line, then the client's report, with the
/// SLO approximated from the client's latency and saying so; the run file keeps the version.
#[test]
fn a_forbidden_metrics_endpoint_is_one_warning_and_the_client_report_comes_out() {
    let fake = FakeApi::start_with(kubefake::Options {
        forbid_metrics: true,
        ..Default::default()
    });
    let dir = tmpdir("forbidden-metrics");
    let kc = fake.kubeconfig(&dir);
    let json = dir.join("churn.json");
    let out = SCALETEST.run(&[
        "api",
        "churn",
        "--kubeconfig",
        kc.to_str().expect("path"),
        "-n",
        "5",
        "--slo",
        "--json",
        json.to_str().expect("path"),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("server metrics"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with("scaletest: server metrics: GET /metrics: 403 Forbidden"),
        "{stderr}"
    );
    for want in [
        "create configmaps",
        "Server (v1.28.7): no metrics",
        "No server metrics: the SLO check is the client-side approximation.",
        "SLO, approximated (p99 over the run)",
    ] {
        assert!(stdout.contains(want), "{want}: {stdout}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    assert_eq!(v["server"]["version"], "v1.28.7");
    assert!(v["server"]["unavailable"]
        .as_str()
        .is_some_and(|w| w.contains("403")));
}

#[test]
fn a_failing_slo_exits_1_and_cleanup_removes_a_crashed_runs_objects() {
    let (fake, _dir, kc) = fake_api("slo");
    let kc = kc.as_str();
    fake.delay("create", std::time::Duration::from_millis(1050));
    let out = SCALETEST.run(&[
        "api",
        "churn",
        "--kubeconfig",
        kc,
        "-w",
        "1",
        "-n",
        "1",
        "-u",
        "0",
        "--slo",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert!(text(&out.stderr).contains("SLO check failed"));
    fake.delay("create", std::time::Duration::ZERO);
    // As if a run had crashed: its labelled objects are still there.
    for i in 0..3 {
        fake.create(
            "configmaps",
            "default",
            serde_json::json!({"metadata": {"name": format!("st-crashed-{i}"),
                                            "labels": {"scaletest.dev/run": "crashed"}}}),
        )
        .expect("create");
    }
    let out = SCALETEST.run(&[
        "api",
        "churn",
        "--kubeconfig",
        kc,
        "--cleanup",
        "--run-id",
        "crashed",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("removed 3 configmaps"),
        "{}",
        text(&out.stdout)
    );
    assert!(fake.objects("configmaps").is_empty());
}

#[test]
fn a_separate_watch_process_times_an_open_loop_churn_and_serves_metrics() {
    let (fake, dir, kc) = fake_api("watchproc");
    let kc = kc.as_str();
    let json = dir.join("watch.json");
    let mut watch = SCALETEST.spawn(&[
        "api",
        "watch",
        "--kubeconfig",
        kc,
        "--run-id",
        "sep",
        "--metrics",
        "127.0.0.1:0",
        "--scrape-interval",
        "200ms",
        "--json",
        json.to_str().expect("path"),
    ]);
    let addr = metrics_addr(&mut watch.0);
    // Wait for its initial list, so that it sees every create.
    wait_until("the watch to start", WAIT, || {
        fake.count("watch configmaps") > 0
    });
    let out = SCALETEST.run(&[
        "api",
        "churn",
        "--kubeconfig",
        kc,
        "--rate",
        "200",
        "-d",
        "500ms",
        "--lifetime",
        "100ms",
        "--run-id",
        "sep",
        "--json",
        dir.join("churn.json").to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Start lateness"), "{stdout}");
    let churn: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("churn.json")).expect("json"))
            .expect("parse");
    let n = churn["lifecycles"]["completed"]
        .as_u64()
        .expect("completed");
    assert!(n > 50, "{n}");
    // The watch process sees every delete; read its counter from /metrics.
    let metrics = || get(addr, "/metrics");
    let want = format!("scaletest_watch_notifications_total{{type=\"delete\"}} {n}");
    wait_until(&want, WAIT, || metrics().contains(&want));
    let body = metrics();
    assert!(
        body.contains(&format!(
            "scaletest_watch_notifications_total{{type=\"create\"}} {n}"
        )),
        "{body}"
    );
    // With the server's own figures as of its last scrape, before the one end.
    let posts = format!(
        "scaletest_apiserver_requests_total{{verb=\"POST\",resource=\"configmaps\",\
         subresource=\"\",scope=\"resource\"}} {n}"
    );
    wait_until(&posts, WAIT, || metrics().contains(&posts));
    let body = metrics();
    assert!(
        body.contains("scaletest_apiserver_info{version=\"v1.28.7\"} 1"),
        "{body}"
    );
    let apf = "scaletest_apiserver_apf_wait_p99_seconds{priority_level=\"global-default\"}";
    assert!(body.contains(apf), "{body}");
    assert_eq!(body.matches("# EOF").count(), 1, "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    // Ctrl-C: the watch reports and writes its JSON.
    assert!(interrupt(watch.0.id()));
    let status = watch.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("watch json")).expect("parse");
    assert_eq!(v["watch"]["deleted"].as_u64(), Some(n));
    assert_eq!(v["watch"]["relists"], 0);
    // Each create it was told of, in its second.
    let seconds = v["watch"]["seconds"].as_array().expect("watch seconds");
    let told: u64 = seconds
        .iter()
        .filter_map(|s| s["create notification"]["n"].as_u64())
        .sum();
    assert_eq!(told, n);
}

/// The metrics address a watch process announces on stderr once it is set up.
fn metrics_addr(child: &mut std::process::Child) -> SocketAddr {
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("read");
    line.trim()
        .rsplit("http://")
        .next()
        .and_then(|s| s.strip_suffix("/metrics"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {line:?}"))
}

#[test]
fn ctrl_c_deletes_what_the_run_made_then_reports_and_writes_json() {
    let (fake, dir, kc) = fake_api("ctrlc");
    let json = dir.join("interrupted.json");
    let mut churn = SCALETEST.spawn(&[
        "api",
        "churn",
        "--kubeconfig",
        &kc,
        "--rate",
        "100",
        "-d",
        "60s",
        "--lifetime",
        "50s",
        "--json",
        json.to_str().expect("path"),
    ]);
    wait_until("churn to get going", WAIT, || {
        fake.count("create configmaps") >= 20
    });
    assert!(!fake.objects("configmaps").is_empty());
    let started = std::time::Instant::now();
    assert!(interrupt(churn.0.id()));
    let out = finish(&mut churn.0);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(out.0, Some(0), "{}", out.2);
    assert!(out.1.contains("(interrupted)"), "{}", out.1);
    // Every object the run made was deleted on the way out, and the JSON says so.
    assert!(fake.objects("configmaps").is_empty());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    assert_eq!(v["interrupted"], true);
    // Lifecycles were cut short, not failed.
    assert_eq!(v["lifecycles"]["failed"], 0);
    assert!(v["lifecycles"]["cut_short"].as_u64() >= Some(20), "{v}");
    let created = fake.count("create configmaps");
    assert_eq!(fake.count("delete configmaps"), created);
}

/// Wait for a child whose pipes are still ours: (exit code, stdout, stderr).
fn finish(child: &mut std::process::Child) -> (Option<i32>, String, String) {
    use std::io::Read;
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let code = child.wait().expect("wait").code();
    (code, out, err)
}

fn flunders() -> kubefake::Resource {
    kubefake::Resource {
        group: "wardle.example.com".into(),
        version: "v1alpha1".into(),
        plural: "flunders".into(),
        kind: "Flunder".into(),
        namespaced: true,
    }
}

#[test]
fn a_custom_resource_without_a_template_is_churned_as_its_own_kind() {
    let (fake, dir, kc) = fake_api("crnotemplate");
    fake.register(flunders());
    let json = dir.join("cr.json");
    let out = SCALETEST.run(&[
        "api",
        "churn",
        "--kubeconfig",
        &kc,
        "--resource",
        "wardle.example.com/v1alpha1/Flunder",
        "-n",
        "6",
        "-w",
        "2",
        "--json",
        json.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Every create was a Flunder, so the fake (which refuses other kinds, as the API server
    // does) took all of them.
    assert_eq!(fake.count("create flunders"), 6);
    assert_eq!(fake.count("delete flunders"), 6);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    assert_eq!(v["lifecycles"]["completed"], 6, "{v}");
    assert!(v["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .all(|c| c["status"].as_object().is_some_and(|m| m.is_empty())));
    // A built-in kind with no default, and a template of another kind: refused before any
    // create, naming --template.
    let cm = dir.join("cm.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n").expect("write");
    for args in [
        vec!["--resource", "secrets"],
        vec![
            "--resource",
            "wardle.example.com/v1alpha1/Flunder",
            "--template",
            cm.to_str().expect("path"),
        ],
    ] {
        let mut all = vec!["api", "churn", "--kubeconfig", &kc, "-n", "2"];
        all.extend(args.iter().copied());
        let out = SCALETEST.run(&all);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("template"), "{err}");
    }
    assert_eq!(fake.count("create flunders"), 6);
    assert_eq!(fake.count("create secrets"), 0);
}

#[test]
fn the_api_servers_first_message_for_an_error_is_in_the_report_and_the_json() {
    let (fake, dir, kc) = fake_api("errmsg");
    // The run's first object is there already: its create gets 409 AlreadyExists.
    fake.create(
        "configmaps",
        "default",
        serde_json::json!({"metadata": {"name": "st-dup-0"}}),
    )
    .expect("create");
    let json = dir.join("err.json");
    let out = SCALETEST.run(&[
        "api",
        "churn",
        "--kubeconfig",
        &kc,
        "-n",
        "3",
        "-w",
        "1",
        "--run-id",
        "dup",
        "--json",
        json.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("create configmaps: 1 × 409"), "{stdout}");
    assert!(
        stdout.contains("first 409: AlreadyExists: configmaps \"st-dup-0\" already exists"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let create = v["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .find(|c| c["verb"] == "create")
        .expect("creates");
    assert_eq!(create["status"]["409"], 1, "{create}");
    assert_eq!(create["messages"]["409"]["reason"], "AlreadyExists");
    assert_eq!(
        create["messages"]["409"]["message"],
        "configmaps \"st-dup-0\" already exists"
    );
}

#[test]
fn watch_loops_see_every_event_once_resume_and_relist_after_410() {
    let (fake, dir, kc) = fake_api("watchers");
    let json = dir.join("watchers.json");
    let mut watch = SCALETEST.spawn(&[
        "api",
        "watch",
        "--kubeconfig",
        &kc,
        "--run-id",
        "wl",
        "--watchers",
        "20",
        "--watch-timeout",
        "2s",
        "--connections",
        "2",
        "-d",
        "120s",
        "--metrics",
        "127.0.0.1:0",
        "--json",
        json.to_str().expect("path"),
    ]);
    let addr = metrics_addr(&mut watch.0);
    wait_until("20 watches", WAIT, || fake.count("watch configmaps") >= 20);
    let churn = |lifecycles: u64| {
        let out = SCALETEST.run(&[
            "api",
            "churn",
            "--kubeconfig",
            &kc,
            "-n",
            &lifecycles.to_string(),
            "-w",
            "2",
            "--run-id",
            "wl",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    };
    let seen = |kind: &str, n: u64| {
        let want = format!("scaletest_watchers_events_total{{type=\"{kind}\"}} {n}\n");
        wait_until(&want, WAIT, || get(addr, "/metrics").contains(&want));
    };
    churn(10);
    seen("deleted", 200);
    // History lost: open watches get an ERROR 410, and so does any resuming from before.
    fake.expire_history();
    wait_until("20 relists", WAIT, || {
        get(addr, "/metrics").contains("scaletest_watchers_relists_total 20\n")
    });
    churn(10);
    seen("deleted", 400);
    // Ended by Ctrl-C once the events are in and each loop has renewed its watch a few
    // times (a fixed duration ran out before the churns on a busy machine).
    wait_until("60 watch requests", WAIT, || {
        fake.count("watch configmaps") >= 60
    });
    assert!(interrupt(watch.0.id()));
    let (code, stdout, stderr) = finish(&mut watch.0);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("20 watch loops"), "{stdout}");
    assert!(stdout.contains("relists after 20 × 410 Gone"), "{stdout}");
    let run = kapi::output::ApiRun::from_json(
        "watchers.json",
        &std::fs::read_to_string(&json).expect("json"),
    )
    .expect("an api run file");
    let w = run.watchers.expect("watch loop stats");
    assert_eq!(w.protocol, "HTTP/2");
    assert_eq!(
        w.connections, 2,
        "two connections carry all 20 watchers' streams"
    );
    assert!(w.total.requests >= 60, "{:?}", w.total);
    assert_eq!((w.relists, w.gone), (20, 20));
    assert_eq!(w.errors, [(410, 20)].into());
    assert_eq!(w.messages[&410].reason, "Expired");
    // Every watcher saw every create, update and delete of both runs, once.
    assert_eq!(w.per_watcher.len(), 20);
    for c in &w.per_watcher {
        assert_eq!(
            (c.added, c.modified, c.deleted, c.duplicates, c.lists),
            (20, 20, 20, 0, 2),
            "{c:?}"
        );
    }
    assert_eq!(
        (w.delivery_create.len(), w.delivery_update.len()),
        (400, 400)
    );
    assert_eq!(w.failed_requests, 0);
}

/// `api run` of the built-in `deployments` workload (5 namespaces × 2 Deployments × 3
/// replicas, each with a Service) against the fake API, with 10 hollow nodes (a `nodes`
/// process) as the kubelets and the fake's test-only controllers as the Deployment
/// controller and scheduler: every pod runs, its startup is measured, the calls and the
/// server's view are reported, and `--cleanup` leaves no namespace of the run.
#[test]
fn api_run_deployments_on_hollow_nodes_reports_pod_startup_and_cleans_up() {
    use kubefake::controllers::{Controllers, Fate};
    let fake = std::sync::Arc::new(FakeApi::start());
    let dir = tmpdir("api-run");
    let kc = fake.kubeconfig(&dir).to_string_lossy().into_owned();
    let _controllers = Controllers::start(fake.clone(), "", Fate::Nodes);
    let mut nodes = SCALETEST.spawn(&[
        "nodes",
        "--nodes",
        "10",
        "--prefix",
        "w-",
        "--kubeconfig",
        &kc,
        "-d",
        "120s",
    ]);
    let ready = |n: &serde_json::Value| {
        n["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    };
    wait_until("10 nodes Ready", WAIT, || {
        fake.objects("nodes").iter().filter(|n| ready(n)).count() == 10
    });
    let json = dir.join("run.json");
    let out = SCALETEST.run(&[
        "api",
        "run",
        "deployments",
        "--kubeconfig",
        &kc,
        "--set",
        "namespaces=5",
        "--set",
        "deployments=2",
        "--set",
        "replicas=3",
        "--run-id",
        "e2e",
        "--cleanup",
        "--scrape-interval",
        "1s",
        "--json",
        json.to_str().expect("path"),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(interrupt(nodes.0.id()));
    let _ = nodes.wait();
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    for want in [
        "Workload deployments: 1 job(s), run e2e",
        "20/20 Ready",
        "create deployments.apps",
        "create services",
        "create namespaces",
        "30 pods seen Running and Ready",
        "POST deployments.apps (resource)",
    ] {
        assert!(stdout.contains(want), "{want}: {stdout}");
    }
    assert!(stderr.contains("removed 5 namespace(s)"), "{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    assert_eq!(v["pods"]["pods"], 30, "{}", v["pods"]);
    assert_eq!(v["jobs"][0]["objects"], 20);
    assert_eq!(v["jobs"][0]["ok"], true);
    let made: u64 = v["seconds"]
        .as_array()
        .expect("seconds")
        .iter()
        .map(|s| s["create deployments.apps"]["n"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(made, 10);
    assert_eq!(fake.count("create deployments"), 10);
    assert_eq!(fake.count("create services"), 10);
    let left: Vec<serde_json::Value> = fake
        .objects("namespaces")
        .into_iter()
        .filter(|n| {
            n["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .starts_with("scaletest-e2e-")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// A workload's other jobs: objects on an open-loop rate with templated data, namespace
/// churn (a third of the namespaces deleted and made again with their objects, twice), a
/// pause, and a delete job that removes the first job's objects and namespaces.
#[test]
fn api_run_churns_pauses_and_deletes() {
    let (fake, dir, kc) = fake_api("api-run-churn");
    let w = dir.join("w.yaml");
    std::fs::write(
        &w,
        "vars: {namespaces: 3, per: 4}
jobs:
  - name: cms
    namespaces: {{namespaces}}
    rate: 40
    objects:
      - replicas: {{per}}
        object:
          apiVersion: v1
          kind: ConfigMap
          metadata:
            name: cm-{{replica}}
          data:
            at: '{{namespace}}/{{iteration}}/{{job}}/{{run}}'
    waitFor: Ready
    churn: {percent: 33, interval: 300ms, cycles: 2}
  - name: rest
    pause: 200ms
  - name: gone
    delete: cms
",
    )
    .expect("write");
    let json = dir.join("run.json");
    let out = SCALETEST.run(&[
        "api",
        "run",
        w.to_str().expect("path"),
        "--kubeconfig",
        &kc,
        "--run-id",
        "ch",
        "--json",
        json.to_str().expect("path"),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let jobs = v["jobs"].as_array().expect("jobs");
    let row = |i: usize| {
        (
            jobs[i]["kind"].clone(),
            jobs[i]["objects"].clone(),
            jobs[i]["ok"].clone(),
        )
    };
    // 12 at first, then one namespace's 4 again in each of two cycles.
    assert_eq!(
        row(0),
        ("create".into(), 20.into(), true.into()),
        "{stdout}"
    );
    assert_eq!(jobs[0]["churn_cycles"], 2);
    assert_eq!(row(1), ("pause".into(), 0.into(), true.into()));
    assert!(jobs[1]["took_s"].as_f64().expect("took") >= 0.2);
    assert_eq!(
        row(2),
        ("delete".into(), 12.into(), true.into()),
        "{stdout}"
    );
    assert_eq!(fake.count("create configmaps"), 20);
    let per_ns: Vec<u64> = (0..3)
        .map(|i| fake.count(&format!("create configmaps in scaletest-ch-cms-{i}")))
        .collect();
    assert_eq!(
        per_ns,
        [8, 8, 4],
        "cycle 0 makes namespace 0 again, cycle 1 namespace 1"
    );
    assert_eq!(fake.count("delete namespaces"), 2 + 3);
    assert_eq!(fake.count("delete configmaps"), 12);
    assert!(fake.objects("configmaps").is_empty());
    assert!(
        stdout.contains("Start lateness"),
        "the open loop's: {stdout}"
    );
    assert!(stderr.contains("left what run ch made"), "{stderr}");
    // What a crashed run left: its namespaces go with --cleanup-only.
    for i in 0..2 {
        let ns = serde_json::json!({"metadata": {"name": format!("scaletest-ch-x-{i}"),
            "labels": {"scaletest.dev/run": "ch"}}});
        fake.create("namespaces", "", ns).expect("namespace");
    }
    let out = SCALETEST.run(&[
        "api",
        "run",
        w.to_str().expect("path"),
        "--kubeconfig",
        &kc,
        "--run-id",
        "ch",
        "--cleanup-only",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "removed 2 namespace(s) and 0 object(s) of run ch\n"
    );
    assert_eq!(fake.count("create configmaps"), 20, "no job ran");
}

/// `api run` of the built-in `deployments` workload on a real cluster with schedulable nodes
/// (real ones, or hollow ones from `scaletest nodes`): every pod Running and Ready, timed,
/// and `--cleanup` leaving no namespace of the run.
#[test]
#[ignore = "needs a real cluster with nodes: set SCALETEST_KUBECONFIG and run with --ignored"]
fn api_run_deployments_on_a_real_cluster() {
    let kc = real_kubeconfig();
    let dir = tmpdir("api-run-real");
    let json = dir.join("run.json");
    let run_id = format!("real{}", std::process::id() % 100_000);
    let out = SCALETEST.run(&[
        "api",
        "run",
        "deployments",
        "--kubeconfig",
        kc.to_str().expect("path"),
        "--set",
        "namespaces=2",
        "--set",
        "deployments=1",
        "--set",
        "replicas=2",
        "--run-id",
        &run_id,
        "--cleanup",
        "--json",
        json.to_str().expect("path"),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("removed 2 namespace(s)"), "{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    assert_eq!(v["pods"]["pods"], 4, "{stdout}");
    assert_eq!(v["jobs"][0]["ok"], true);
    assert!(v["server"]["version"].as_str().is_some());
}
