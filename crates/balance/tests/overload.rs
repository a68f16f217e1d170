//! The balancer past its connection limit, in-process on loopback in front of a slow-ish
//! `serve` backend: connections over the limit wait in the listen backlog and are served when
//! others close; no client sees a reset or a transport error, only answers (200, or 503 with
//! `Retry-After`) or a wait.

use balance::pick::Algorithm;
use st_http::server::Limits;
use std::net::SocketAddr;
use std::time::Duration;
use testsupport::call::crowd;
use testsupport::Run;

/// The balancer's connection limit in these tests: far below the clients.
const LIMIT: usize = 8;

fn backend() -> serve::Running {
    serve::start(serve::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        body_size: 13,
        version_label: "v1".into(),
        limits: Limits::default(),
        bounds: serve::Bounds::default(),
        tls: None,
        hyper_only: false,
    })
    .unwrap()
}

/// Two threads (the limit is over both), `LIMIT` client connections.
fn balancer(backend: SocketAddr, hyper_only: bool) -> balance::Running {
    let mut cfg = balance::Config::new(vec![backend], "secret-token");
    cfg.threads = 2;
    cfg.algorithm = Algorithm::RoundRobin;
    cfg.timeout = Duration::from_secs(10);
    cfg.hyper_only = hyper_only;
    cfg.limits.max_connections = LIMIT;
    balance::start(cfg).unwrap()
}

/// 64 clients at once, 3 calls each on fresh connections, on both client paths: every call is
/// answered.
#[test]
fn a_crowd_eight_times_the_limit_is_answered_without_a_reset() {
    let b = backend();
    for hyper_only in [false, true] {
        let lb = balancer(b.addr, hyper_only);
        let c = crowd(lb.addr, 8 * LIMIT, 3, "/delay?ms=10");
        assert!(
            c.failures.is_empty(),
            "hyper_only={hyper_only}: {} failures, e.g. {:?}",
            c.failures.len(),
            &c.failures[..c.failures.len().min(5)]
        );
        let answered: u64 = c.statuses.values().sum();
        assert_eq!(answered, 3 * 8 * LIMIT as u64, "{:?}", c.statuses);
        assert!(
            c.statuses.keys().all(|s| [200, 503].contains(s)),
            "{:?}",
            c.statuses
        );
    }
}

/// The bots' case: an open loop past what the balancer can serve grows to 64 keep-alive
/// connections; the ones over the limit wait (their requests are late or still in flight at
/// the end), and none ends in an error.
#[test]
fn an_open_loop_past_the_limit_sees_no_transport_error() {
    let b = backend();
    let lb = balancer(b.addr, false);
    // 8 connections × 20 ms serve 400/s: 1,000/s is past capacity.
    let r = Run {
        duration: Some(Duration::from_secs(1)),
        connections: 1,
        threads: 1,
        ..Run::new(&format!("http://{}/delay?ms=20", lb.addr))
    }
    .open(1000.0, 8 * LIMIT)
    .go();
    let t = &r.total;
    assert!(t.errors.is_empty(), "errors {:?}", t.errors);
    assert!(
        t.status.keys().all(|s| [200, 503].contains(s)),
        "{:?}",
        t.status
    );
    assert!(t.responses > 0, "nothing answered");
    assert!(
        r.peak_lanes > LIMIT,
        "never past the limit: {}",
        r.peak_lanes
    );
}
