//! The balancer in-process, in front of in-process `serve` backends on loopback.

use balance::backends::Health;
use balance::health::HealthConfig;
use balance::pick::Algorithm;
use st_http::server::Limits;
use st_http::Protocol;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testsupport::call::{call, get, raw};
use testsupport::closed_loop;

fn backend(label: &str) -> serve::Running {
    backend_on("127.0.0.1:0".parse().unwrap(), label)
}

fn backend_on(bind: SocketAddr, label: &str) -> serve::Running {
    serve::start(serve::Config {
        bind,
        threads: 1,
        body_size: 13,
        version_label: label.into(),
        limits: Limits::default(),
        bounds: serve::Bounds::default(),
        tls: None,
        hyper_only: false,
    })
    .unwrap()
}

fn balancer(backends: Vec<SocketAddr>, alg: Algorithm, interval_ms: u64) -> balance::Running {
    balancer_with(backends, alg, interval_ms, |_| {})
}

fn balancer_with(
    backends: Vec<SocketAddr>,
    alg: Algorithm,
    interval_ms: u64,
    tweak: impl FnOnce(&mut balance::Config),
) -> balance::Running {
    let mut cfg = balance::Config {
        algorithm: alg,
        health: HealthConfig {
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(500),
            ..Default::default()
        },
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        max_body: 1 << 20,
        ..balance::Config::new(backends, "secret-token")
    };
    tweak(&mut cfg);
    balance::start(cfg).unwrap()
}

fn served(b: &balance::Running, addr: SocketAddr) -> u64 {
    b.backends
        .snapshot()
        .iter()
        .find(|x| x.addr == addr)
        .map_or(0, |x| x.requests.load(Ordering::Relaxed))
}

fn wait_for(what: &str, ready: impl FnMut() -> bool) {
    testsupport::wait_until(what, Duration::from_secs(10), ready)
}

fn health(b: &balance::Running, addr: SocketAddr) -> Option<Health> {
    b.backends
        .snapshot()
        .iter()
        .find(|x| x.addr == addr)
        .map(|x| x.health())
}

#[test]
fn requests_spread_over_three_backends() {
    let bs: Vec<_> = (0..3).map(|i| backend(&format!("b{i}"))).collect();
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    // Round-robin is exact; the adaptive ones follow load, so a backend the scheduler slows
    // down gets fewer. On a busy 2-core machine one backend got 704 or 1303 of 3000 (before
    // and after the retry rework alike), so each must get at least half its share and at most
    // half again; sending all to one backend still fails. That they avoid a busy backend is
    // pick.rs's unit test.
    for (alg, tolerance) in [
        (Algorithm::RoundRobin, 0),
        (Algorithm::PowerOfTwo, 500),
        (Algorithm::LeastRequests, 500),
    ] {
        let lb = balancer(addrs.clone(), alg, 60_000);
        let r = closed_loop(&format!("http://{}/", lb.addr), Protocol::Http1, 3000);
        assert_eq!(
            r.total.status.get(&200),
            Some(&3000),
            "{alg:?} {:?}",
            r.total.errors
        );
        for a in &addrs {
            let n = served(&lb, *a) as i64;
            assert!((n - 1000).abs() <= tolerance, "{alg:?}: {a} served {n}");
        }
    }
}

#[test]
fn http2_clients_are_balanced_too() {
    let (a, b) = (backend("a"), backend("b"));
    let lb = balancer(vec![a.addr, b.addr], Algorithm::RoundRobin, 60_000);
    let r = closed_loop(&format!("http://{}/", lb.addr), Protocol::Http2, 400);
    assert_eq!(r.total.status.get(&200), Some(&400), "{:?}", r.total.errors);
    assert_eq!(served(&lb, a.addr) + served(&lb, b.addr), 400);
}

#[test]
fn a_refused_connection_is_retried_on_another_backend_and_ejects_it() {
    let live = backend("live");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    // Health checks far apart: only the passive ejection and the retry act here.
    let lb = balancer(vec![dead_addr, live.addr], Algorithm::RoundRobin, 60_000);
    let r = closed_loop(&format!("http://{}/", lb.addr), Protocol::Http1, 200);
    assert_eq!(
        r.total.status.get(&200),
        Some(&200),
        "{:?} {:?}",
        r.total.status,
        r.total.errors
    );
    assert_eq!(health(&lb, dead_addr), Some(Health::Down));
    let d = lb
        .backends
        .snapshot()
        .iter()
        .find(|x| x.addr == dead_addr)
        .unwrap()
        .clone();
    assert!(d.retried.load(Ordering::Relaxed) >= 1);
    assert_eq!(served(&lb, live.addr), 200);
}

#[test]
fn a_malformed_answer_is_retried_elsewhere_for_idempotent_methods_only_on_both_paths() {
    for hyper_only in [false, true] {
        let bad = testkit::Misbehaving::start(testkit::Misbehavior::Garbage);
        let good = testkit::Server::start(testkit::Behavior::Ok);
        let lb = balancer_with(
            vec![bad.addr, good.addr],
            Algorithm::RoundRobin,
            60_000,
            |c| c.hyper_only = hyper_only,
        );
        let path = if hyper_only { "hyper" } else { "pipelined" };
        // Round robin starts at the first backend: each request below tries `bad` first.
        let r = call(lb.addr, "GET", "/", None, "");
        assert_eq!(r.status, 200, "{path}: {r:?}");
        // (Health checks go to /readyz: only "/" counts.)
        let root = || good.paths().get("/").copied().unwrap_or(0);
        assert_eq!(root(), 1, "{path}");
        // The second request goes to `good` in turn; the third tries `bad` first again.
        call(lb.addr, "GET", "/", None, "");
        let r = call(lb.addr, "POST", "/", None, "");
        assert_eq!(r.status, 502, "{path}: {r:?}");
        assert_eq!(root(), 2, "{path}: the POST reached a second backend");
    }
}

#[test]
fn health_checks_eject_a_dead_backend_and_bring_it_back() {
    let a = backend("a");
    let b = backend("b");
    let b_addr = b.addr;
    let lb = balancer(vec![a.addr, b_addr], Algorithm::RoundRobin, 50);
    b.stop();
    assert_eq!(b.wait(Duration::from_secs(5)), 0);
    wait_for("b down", || health(&lb, b_addr) == Some(Health::Down));
    let r = closed_loop(&format!("http://{}/", lb.addr), Protocol::Http1, 100);
    assert_eq!(r.total.status.get(&200), Some(&100));
    // The same address comes back.
    let _b2 = backend_on(b_addr, "b2");
    wait_for("b up", || health(&lb, b_addr) == Some(Health::Up));
    let before = served(&lb, b_addr);
    let r = closed_loop(&format!("http://{}/", lb.addr), Protocol::Http1, 100);
    assert_eq!(r.total.status.get(&200), Some(&100));
    assert!(served(&lb, b_addr) > before);
}

#[test]
fn a_backend_whose_readyz_says_503_gets_no_new_requests() {
    let a = backend("a");
    let b = backend("b");
    let lb = balancer(vec![a.addr, b.addr], Algorithm::RoundRobin, 50);
    b.drain();
    wait_for("b draining", || {
        health(&lb, b.addr) == Some(Health::Draining)
    });
    let before = served(&lb, b.addr);
    let r = closed_loop(&format!("http://{}/", lb.addr), Protocol::Http1, 200);
    assert_eq!(r.total.status.get(&200), Some(&200));
    assert_eq!(served(&lb, b.addr), before);
}

#[test]
fn the_admin_api_needs_the_token_and_changes_the_set() {
    let a = backend("a");
    let b = backend("b");
    let lb = balancer(vec![a.addr], Algorithm::RoundRobin, 60_000);
    let ad = lb.admin_addr;
    let status = |method, path: &str, token, body: &str| call(ad, method, path, token, body).status;
    let (b_addr, yes) = (b.addr.to_string(), Some("secret-token"));
    assert_eq!(status("GET", "/backends", None, ""), 401);
    assert_eq!(status("GET", "/backends", Some("wrong-token"), ""), 401);
    assert_eq!(status("POST", "/backends", None, &b_addr), 401);
    assert_eq!(status("POST", "/backends", yes, &b_addr), 201);
    assert_eq!(status("POST", "/backends", yes, "not-an-address"), 400);
    let list = call(ad, "GET", "/backends", yes, "");
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains(&a.addr.to_string()) && list.body.contains(&b_addr),
        "{}",
        list.body
    );
    let drain = format!("/backends/{}/drain", a.addr);
    assert_eq!(status("POST", &drain, yes, ""), 200);
    let r = closed_loop(&format!("http://{}/", lb.addr), Protocol::Http1, 50);
    assert_eq!(r.total.status.get(&200), Some(&50));
    assert_eq!(served(&lb, a.addr), 0, "a drained backend got requests");
    let remove = format!("/backends/{}", a.addr);
    assert_eq!(status("DELETE", &remove, yes, ""), 200);
    assert_eq!(status("DELETE", &remove, yes, ""), 404);
    let m = get(ad, "/metrics");
    assert!(
        m.contains(&format!(
            "scaletest_balance_backend_requests_total{{backend=\"{}\"}} 50",
            b.addr
        )),
        "{m}"
    );
}

#[test]
fn with_no_backend_clients_get_503_with_retry_after_on_both_paths() {
    for hyper_only in [false, true] {
        let lb = balancer_with(vec![], Algorithm::PowerOfTwo, 60_000, |c| {
            c.hyper_only = hyper_only
        });
        let r = closed_loop(&format!("http://{}/", lb.addr), Protocol::Http1, 5);
        assert_eq!(r.total.status.get(&503), Some(&5));
        let r = call(lb.addr, "GET", "/", None, "");
        assert_eq!(r.status, 503);
        assert!(r.head.contains("\r\nretry-after: 1\r\n"), "{}", r.head);
    }
}

#[test]
fn backends_speak_h2c_when_asked_and_get_x_forwarded_for() {
    let b = testkit::Server::start(testkit::Behavior::Ok);
    // Health checks every 50 ms, in h2c too: the backend must stay up.
    let lb = balancer_with(vec![b.addr], Algorithm::RoundRobin, 50, |c| {
        c.backend_h2 = true
    });
    // Health checks reached the backend (and kept it up: rise and fall are 2).
    let checks = || b.paths().get("/readyz").copied().unwrap_or(0);
    wait_for("three health checks", || checks() >= 3);
    let r = closed_loop(&format!("http://{}/", lb.addr), Protocol::Http1, 100);
    assert_eq!(r.total.status.get(&200), Some(&100), "{:?}", r.total.errors);
    assert_eq!(health(&lb, b.addr), Some(Health::Up));
    // Every request and every health check arrived over HTTP/2: counted at the backend, each
    // one by the version it came in.
    let checked = checks();
    let versions = b.versions();
    assert_eq!(
        versions.keys().collect::<Vec<_>>(),
        ["HTTP/2.0"],
        "{versions:?}"
    );
    assert!(
        versions["HTTP/2.0"] >= 100 + checked,
        "{versions:?} {checked}"
    );
    assert_eq!(b.paths().get("/"), Some(&100), "{:?}", b.paths());
    assert_eq!(b.last_forwarded_for().as_deref(), Some("127.0.0.1"));
}

#[test]
fn the_backends_file_is_watched() {
    let (a, b) = (backend("a"), backend("b"));
    let dir = std::env::temp_dir().join(format!("st-balance-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("backends.txt");
    std::fs::write(&file, format!("# the pool\n{}\n", a.addr)).unwrap();
    let mut lb = balancer_with(vec![], Algorithm::RoundRobin, 60_000, |c| {
        c.backends_file = Some(file.clone())
    });
    let mut errors = lb.file_errors().unwrap();
    let addrs = || {
        lb.backends
            .snapshot()
            .iter()
            .map(|x| x.addr)
            .collect::<Vec<_>>()
    };
    assert_eq!(addrs(), vec![a.addr]);
    // Make sure the modification time moves even on coarse-grained file systems.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&file, format!("{}\n", b.addr)).unwrap();
    wait_for("the new set", || addrs() == vec![b.addr]);
    let r = closed_loop(&format!("http://{}/", lb.addr), Protocol::Http1, 50);
    assert_eq!(r.total.status.get(&200), Some(&50));
    assert_eq!(served(&lb, b.addr), 50);
    // A broken file keeps the current set.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&file, "not an address\n").unwrap();
    let mut error = None;
    wait_for("the file's error", || {
        error = errors.try_recv().ok();
        error.is_some()
    });
    assert!(
        error.unwrap().to_string().contains("not an address"),
        "the error names the bad line"
    );
    assert_eq!(addrs(), vec![b.addr]);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn body_of(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[test]
fn bodies_and_framings_pass_through_the_http1_path() {
    let b = backend("v1");
    let lb = balancer(vec![b.addr], Algorithm::RoundRobin, 60_000);
    // Raw bytes: these framings (chunked requests, HTTP/1.0, pipelining) are what is tested.
    // A chunked request body reaches the backend whole.
    let r = raw(lb.addr, b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert_eq!(body_of(&r), "Wikipedia");
    assert!(r.contains("x-scaletest-version: v1\r\n") && r.contains("connection: close\r\n"));
    // Expect: 100-continue gets its interim answer before the body is sent (a raw socket, to
    // send the body only then).
    let mut s = TcpStream::connect(lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(body_of(&out), "hello");
    // A large body is streamed, a HEAD answer has none, an HTTP/1.0 client is closed after.
    assert_eq!(
        call(lb.addr, "GET", "/bytes/300000", None, "").body.len(),
        300_000
    );
    let r = call(lb.addr, "HEAD", "/bytes/1000", None, "");
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("content-length: 1000\r\n")
            && r.body.is_empty(),
        "{r:?}"
    );
    let r = raw(lb.addr, b"GET /version HTTP/1.0\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.1 200") && body_of(&r).starts_with("v1"),
        "{r}"
    );
    // A chunked response stays chunked, and two requests in one write get two answers in order.
    let t = testkit::Server::start(testkit::Behavior::Ok);
    let lb2 = balancer(vec![t.addr], Algorithm::RoundRobin, 60_000);
    let r = raw(lb2.addr, b"GET /chunked/10000 HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(
        r.to_ascii_lowercase()
            .contains("transfer-encoding: chunked\r\n"),
        "{r}"
    );
    assert!(
        r.ends_with("hello, world\n"),
        "{}",
        &r[r.len().saturating_sub(200)..]
    );
    assert_eq!(r.matches("HTTP/1.1 200 OK\r\n").count(), 2);
    assert_eq!(t.paths().get("/chunked/10000"), Some(&1));
    assert_eq!(t.last_forwarded_for().as_deref(), Some("127.0.0.1"));
}

#[test]
fn bad_requests_get_their_status_and_the_connection_closes() {
    let b = backend("v1");
    let lb = balancer_with(vec![b.addr], Algorithm::RoundRobin, 60_000, |c| {
        c.max_body = 1000
    });
    // Raw bytes: malformed and oversized requests are what is tested.
    let status = |req: &[u8]| raw(lb.addr, req)[9..12].to_string();
    assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), "400");
    assert_eq!(
        status(
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        "400"
    );
    assert_eq!(status(b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"), "501");
    assert_eq!(
        status(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n"),
        "413"
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "x".repeat(20_000)
    );
    assert_eq!(status(big.as_bytes()), "431");
    // None of them reached the backend.
    assert_eq!(served(&lb, b.addr), 0);
}

#[test]
fn a_request_head_over_the_limits_gets_431_not_a_reset() {
    let b = backend("v1");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "x".repeat(200_000)
    );
    let many = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "A: b\r\n".repeat(5000)
    );
    for hyper_only in [false, true] {
        let lb = balancer_with(vec![b.addr], Algorithm::RoundRobin, 60_000, |c| {
            c.hyper_only = hyper_only
        });
        for (what, req) in [("200 kB header", &big), ("5,000 header lines", &many)] {
            // Raw bytes (an oversized head); `raw` fails the test on a reset.
            let r = raw(lb.addr, req.as_bytes());
            assert!(
                r.starts_with("HTTP/1.1 431"),
                "hyper_only={hyper_only}, {what}: {r:?}"
            );
        }
        assert_eq!(served(&lb, b.addr), 0);
    }
}

#[test]
fn a_slowloris_client_is_cut_off_while_others_are_served() {
    let b = backend("v1");
    let lb = balancer_with(vec![b.addr], Algorithm::RoundRobin, 60_000, |c| {
        c.limits.header_timeout = Duration::from_millis(300)
    });
    // A raw socket: a head that never ends is what is tested.
    let mut slow = TcpStream::connect(lb.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
    let t = Instant::now();
    let r = closed_loop(&format!("http://{}/", lb.addr), Protocol::Http1, 200);
    assert_eq!(r.total.status.get(&200), Some(&200));
    // The slow client keeps trickling bytes and is still closed, without an answer.
    let mut got = Vec::new();
    loop {
        let _ = slow.write_all(b"X-A: b\r\n");
        let mut buf = [0u8; 64];
        slow.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "slowloris still connected"
        );
    }
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
}

/// A backend that answers every request at once with 200 and [`testkit::BODY`], except
/// `GET /slow`, which it answers when the test calls `release.notify_one()`. Requests on one
/// connection are answered in order, as a pipelining client needs.
struct Gated {
    addr: SocketAddr,
    release: Arc<tokio::sync::Notify>,
}

fn gated_backend() -> Gated {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Detached: it serves until the test process ends.
    std::thread::spawn(move || {
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(answer_gated(s, gate.clone()));
            }
        })
    });
    Gated { addr, release }
}

async fn answer_gated(mut s: tokio::net::TcpStream, gate: Arc<tokio::sync::Notify>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // Every complete request head (the balancer sends bodiless GETs here).
        while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = got.drain(..end + 4).collect();
            if head.starts_with(b"GET /slow ") {
                gate.notified().await;
            }
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nhello, world\n";
            if s.write_all(ok).await.is_err() {
                return;
            }
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn a_slow_response_holds_up_no_request_sent_after_it() {
    // The slow answer comes only when the test releases it, after every request sent behind
    // it has been answered; a request queued behind it would never be.
    let b = gated_backend();
    let lb = balancer_with(vec![b.addr], Algorithm::RoundRobin, 60_000, |c| {
        c.timeout = Duration::from_secs(30)
    });
    let addr = lb.addr;
    let slow = std::thread::spawn(move || call(addr, "GET", "/slow", None, ""));
    let in_flight = || lb.backends.snapshot()[0].in_flight.load(Ordering::Relaxed);
    wait_for("the slow request", || in_flight() == 1);
    // Past the stall threshold its connection takes no more requests.
    std::thread::sleep(balance::pipe::STALL * 5);
    let r = closed_loop(&format!("http://{}/", lb.addr), Protocol::Http1, 500);
    assert_eq!(
        r.total.status.get(&200),
        Some(&500),
        "requests queued behind the slow one: {:?}",
        r.total.errors
    );
    assert!(
        !slow.is_finished(),
        "the slow answer came before its release"
    );
    b.release.notify_one();
    let s = slow.join().unwrap();
    assert_eq!(s.status, 200, "the slow one completes: {s:?}");
}

#[test]
fn stopping_finishes_in_flight_requests_and_closes_idle_connections() {
    let b = backend("v1");
    let lb = balancer(vec![b.addr], Algorithm::RoundRobin, 60_000);
    let addr = lb.addr;
    // A keep-alive connection that has been used and is now idle (a raw socket, kept open).
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut first = Vec::new();
    while !String::from_utf8_lossy(&first).ends_with("hello, world\n") {
        let mut buf = [0u8; 512];
        let n = idle.read(&mut buf).unwrap();
        assert!(n > 0);
        first.extend_from_slice(&buf[..n]);
    }
    // A slow request on a keep-alive connection is in flight when the balancer stops (raw:
    // `call` would ask for the close itself).
    let slow =
        std::thread::spawn(move || raw(addr, b"GET /delay?ms=400 HTTP/1.1\r\nHost: a\r\n\r\n"));
    let in_flight = || lb.backends.snapshot()[0].in_flight.load(Ordering::Relaxed);
    wait_for("the slow request", || in_flight() == 1);
    lb.stop();
    let mut buf = [0u8; 64];
    assert_eq!(
        idle.read(&mut buf).unwrap(),
        0,
        "the idle connection is closed"
    );
    // The slow one completes, told that the connection closes (raw reads to the close).
    let r = slow.join().unwrap();
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("connection: close\r\n"),
        "{r}"
    );
    wait_for("the listener to close", || {
        TcpStream::connect(addr).is_err()
    });
    assert!(lb.wait(Duration::from_secs(5)));
}
