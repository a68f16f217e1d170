//! `--pprof ADDR`, the profiling endpoint (st_prof), on the commands that take it: `serve` and
//! `balance` profiled under load, the profile decoded and checked for our own functions; the
//! others' wiring (the address on their first line, the endpoint answering, a non-loopback
//! address refused without a token).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use testkit::Proc;
use testsupport::call::call;
use testsupport::{tmpdir, wait_until, Bin, Listening};

const SCALETEST: Bin = Bin(env!("CARGO_BIN_EXE_scaletest"));

/// The profiling endpoint's address from a first line ("… pprof on http://ADDR …").
fn pprof_addr(first: &str) -> SocketAddr {
    first
        .split("pprof on http://")
        .nth(1)
        .and_then(|r| r.split([',', ')', ' ', '\n']).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no pprof address in {first:?}"))
}

/// Requests `serve` at `addr` has answered with a 200 (its /metrics).
fn answered(addr: SocketAddr) -> u64 {
    let text = testsupport::call::get(addr, "/metrics");
    text.lines()
        .find(|l| l.starts_with("scaletest_requests_total{code=\"200\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A closed loop on `url` until dropped.
fn load(url: &str) -> Proc {
    Proc(
        SCALETEST
            .command()
            .args(["load", url, "-c", "4", "-t", "1", "-d", "120s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the load"),
    )
}

/// With load flowing into `backend` (through whatever `url` names), a 2-second profile from
/// `pprof`; the functions on its sampled stacks.
fn profile_under_load(url: &str, backend: SocketAddr, pprof: SocketAddr) -> Vec<String> {
    let _load = load(url);
    wait_until("load to flow", Duration::from_secs(20), || {
        answered(backend) >= 100
    });
    let r = call(pprof, "GET", "/debug/pprof/profile?seconds=2", None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(&r.bytes[..2], &[0x1f, 0x8b], "gzip'ed: {}", r.head);
    st_prof::sampled_functions(&r.bytes)
        .expect("a pprof profile")
        .into_iter()
        .collect()
}

/// Functions of the named crates (a method of a type of theirs, `<… as …>::f`, included).
fn ours<'a>(names: &'a [String], crates: &[&str]) -> Vec<&'a String> {
    names
        .iter()
        .filter(|n| {
            let n = n.trim_start_matches('<');
            crates.iter().any(|c| n.starts_with(&format!("{c}::")))
        })
        .collect()
}

fn serve() -> Listening {
    SCALETEST.listening(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--pprof",
        "127.0.0.1:0",
    ])
}

#[test]
fn serve_under_load_profiles_its_own_functions() {
    let srv = serve();
    let pprof = pprof_addr(&srv.first);
    assert_ne!(pprof, srv.addr);
    let names = profile_under_load(&format!("http://{}/", srv.addr), srv.addr, pprof);
    let ours = ours(&names, &["serve", "st_http"]);
    assert!(
        !ours.is_empty(),
        "no serve or st_http function in {names:?}"
    );
}

#[test]
fn balance_under_load_profiles_its_own_functions() {
    let backend = SCALETEST.listening(&["serve", "--bind", "127.0.0.1:0", "--threads", "1"]);
    let lb = SCALETEST.listening(&[
        "balance",
        "--bind",
        "127.0.0.1:0",
        "--admin-bind",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--backend",
        &backend.addr.to_string(),
        "--pprof",
        "127.0.0.1:0",
    ]);
    // The admin address stays last in its parentheses, where scripts read it.
    assert!(
        lb.first.contains(", admin on http://127.0.0.1:"),
        "{}",
        lb.first
    );
    let pprof = pprof_addr(&lb.first);
    let names = profile_under_load(&format!("http://{}/", lb.addr), backend.addr, pprof);
    let ours = ours(&names, &["balance"]);
    assert!(!ours.is_empty(), "no balance function in {names:?}");
}

/// The endpoint at `addr` answers (without taking a profile: the heap path says why not).
fn answers(addr: SocketAddr) {
    let r = call(addr, "GET", "/debug/pprof/heap", None, "");
    assert_eq!(r.status, 501, "{}", r.body);
    assert!(r.body.starts_with("no heap profile"), "{}", r.body);
}

#[test]
fn aggregate_and_bot_serve_the_endpoint_too() {
    let dir = tmpdir("pprof-agg");
    let out = dir.to_str().unwrap();
    let agg = SCALETEST.listening(&[
        "aggregate",
        "--bind",
        "127.0.0.1:0",
        "--out",
        out,
        "--token",
        "pprof-test-token",
        "--pprof",
        "127.0.0.1:0",
    ]);
    answers(pprof_addr(&agg.first));
    // The bot's first line is the endpoint's address.
    let bot = SCALETEST.listening(&[
        "bot",
        "--aggregator",
        &format!("http://{}", agg.addr),
        "--token",
        "pprof-test-token",
        "-t",
        "1",
        "--pprof",
        "127.0.0.1:0",
    ]);
    assert!(bot.first.starts_with("pprof on http://"), "{}", bot.first);
    answers(bot.addr);
}

#[test]
fn every_command_refuses_a_non_loopback_address_without_a_token() {
    let dir = tmpdir("pprof-refuse");
    let out = dir.to_str().unwrap();
    let cases: [&[&str]; 5] = [
        &["serve", "--bind", "127.0.0.1:0"],
        &[
            "balance",
            "--bind",
            "127.0.0.1:0",
            "--backend",
            "127.0.0.1:1",
        ],
        &["aggregate", "--bind", "127.0.0.1:0", "--out", out],
        &["bot", "--aggregator", "http://127.0.0.1:1", "--token", "t"],
        &["load", "http://127.0.0.1:1/", "-d", "1s"],
    ];
    for args in cases {
        let o = SCALETEST.run(&[args, &["--pprof", "0.0.0.0:0"]].concat());
        let err = testsupport::text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.trim(),
            "scaletest: --pprof: 0.0.0.0:0 is not a loopback address, and no token is \
             required: give --pprof-token-file",
            "{args:?}"
        );
    }
}
