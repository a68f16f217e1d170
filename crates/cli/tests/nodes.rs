//! `scaletest nodes` as a user runs it against the in-process fake API: bad input (one line,
//! exit code, nothing left behind), a run stopped by Ctrl-C that reports, writes its JSON and
//! says what it left, and `--cleanup`.

// Tests and examples may print (see clippy.toml).
#![allow(clippy::disallowed_macros)]

use kubefake::FakeApi;
use serde_json::json;
use std::io::Read;
use std::time::Duration;
use testsupport::{interrupt, text, tmpdir, wait_until, Bin};

const SCALETEST: Bin = Bin(env!("CARGO_BIN_EXE_scaletest"));

#[test]
fn bad_input_gets_one_line_a_nonzero_exit_and_leaves_nothing() {
    let fake = FakeApi::start();
    let dir = tmpdir("nodes-bad");
    let kc = fake.kubeconfig(&dir).to_string_lossy().into_owned();
    fake.create("nodes", "", json!({"metadata": {"name": "hollow-node-2"}}))
        .expect("a node that is not ours");
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let kc_gone = dir.join("gone");
    std::fs::write(
        &kc_gone,
        std::fs::read_to_string(&kc)
            .expect("kubeconfig")
            .replace(&fake.addr.to_string(), &gone.to_string()),
    )
    .expect("write");
    let kc_gone = kc_gone.to_string_lossy().into_owned();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["nodes", "--nodes", "0", "--kubeconfig", &kc],
            2,
            "0 is not in 1..=100000",
        ),
        (
            vec!["nodes", "--nodes", "3", "--kubeconfig", &kc, "-d", "1s"],
            2,
            "\"hollow-node-2\" exists and is not a hollow node",
        ),
        (
            vec![
                "nodes",
                "--nodes",
                "3",
                "--kubeconfig",
                &kc_gone,
                "-d",
                "1s",
            ],
            1,
            "cannot reach the API server",
        ),
        (
            vec![
                "nodes",
                "--nodes",
                "3",
                "--kubeconfig",
                &kc,
                "--streams-per-connection",
                "0",
            ],
            2,
            "invalid value '0' for '--streams-per-connection <N>': 0 is not in 1..=10000",
        ),
        (
            vec!["nodes", "--nodes", "3", "--kubelet-version", "1.27"],
            2,
            "invalid value '1.27' for '--kubelet-version <VERSION>': modelled versions are 1.28–1.33",
        ),
        (
            vec!["nodes", "--nodes", "3", "--node-ip", "node-1"],
            2,
            "invalid value 'node-1' for '--node-ip <ADDR>': invalid IP address syntax",
        ),
        (
            vec!["nodes", "--nodes", "3", "--taint", "k=v:Sometimes"],
            2,
            "the effect must be",
        ),
    ];
    for (args, code, want) in cases {
        let out = SCALETEST.run(&args);
        let err = text(&out.stderr);
        let last = err.lines().last().unwrap_or("");
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(last.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(fake.objects("nodes").len(), 1, "nothing registered");
    assert!(fake.objects("leases").is_empty());
}

#[test]
fn ctrl_c_stops_reports_and_cleanup_removes_what_was_left() {
    let fake = FakeApi::start();
    let dir = tmpdir("nodes-ctrlc");
    let kc = fake.kubeconfig(&dir).to_string_lossy().into_owned();
    let json_path = dir.join("nodes.json");
    let mut run = SCALETEST.spawn(&[
        "nodes",
        "--nodes",
        "4",
        "--kubeconfig",
        &kc,
        "--lease-interval",
        "200ms",
        "--streams-per-connection",
        "250",
        "--json",
        json_path.to_str().expect("path"),
    ]);
    wait_until("4 leases, renewed", Duration::from_secs(20), || {
        fake.objects("leases").len() == 4 && fake.count("update leases") >= 4
    });
    assert!(interrupt(run.0.id()));
    let (mut stdout, mut stderr) = (String::new(), String::new());
    run.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    run.stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    let status = run.wait().expect("exit");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("4 hollow nodes") && stdout.contains("update leases"),
        "{stdout}"
    );
    assert!(
        stderr.contains("left 4 hollow nodes registered"),
        "{stderr}"
    );
    // More streams than the fake's 100 (kube-apiserver v1.28.7's) allow: one line, once.
    let warned = "scaletest: --streams-per-connection 250: the server allows 100 streams per \
                  HTTP/2 connection; using 90, a tenth below its limit\n";
    assert_eq!(stderr.matches(warned).count(), 1, "{stderr}");
    // 25 watches on one connection; 320 calls at once on 4 of their own.
    assert!(
        stdout.contains(
            "over 5 connections: http/2 (the server allows 100 streams per connection): \
             ≤ 90 watches on each of 1 connections, calls on 4 of their own (≤ 90 streams each)"
        ),
        "{stdout}"
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("json")).expect("parse");
    assert_eq!(saved["interrupted"], true);
    assert_eq!(saved["leases_held"], 4);
    assert_eq!(fake.objects("nodes").len(), 4);
    let out = SCALETEST.run(&["nodes", "--cleanup", "--kubeconfig", &kc]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("removed 4 hollow node(s) and 4 lease(s)"));
    assert!(fake.objects("nodes").is_empty() && fake.objects("leases").is_empty());
}
