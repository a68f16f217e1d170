//! The load engine against the project's own test servers on loopback.

use load::RunResult;
use st_http::Protocol;
use std::time::Duration;
use testkit::{Behavior, Misbehaving, Misbehavior, Server, TestCert};
use testsupport::Run;

fn ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[test]
fn a_request_count_is_exact_and_statuses_are_counted() {
    let server = Server::start(Behavior::Alternate);
    let mut run = Run::new(&server.url("/"));
    run.connections = 10;
    run.requests = Some(1000);
    let r = run.go();
    assert_eq!(server.hits(), 1000);
    assert_eq!(r.total.responses, 1000);
    assert_eq!(r.total.status.get(&200), Some(&500));
    assert_eq!(r.total.status.get(&500), Some(&500));
    assert_eq!(r.total.error_count(), 0);
    assert_eq!(r.total.latency.len(), 1000);
    // hyper's heads: status line + content-length + date + blank line, then the 13-byte body.
    let ok = "HTTP/1.1 200 OK\r\ncontent-length: 13\r\ndate: Mon, 23 Nov 2026 20:15:00 GMT\r\n\r\n"
        .len()
        + 13;
    let err = ok + "Internal Server Error".len() - "OK".len();
    assert_eq!(r.total.bytes, 500 * (ok + err) as u64);
}

#[test]
fn large_and_chunked_bodies_are_read_to_their_end() {
    let server = Server::start(Behavior::Ok);
    for (path, protocol) in [
        ("bytes/300000", Protocol::Http1),
        ("chunked/300000", Protocol::Http1),
        ("chunked/300000", Protocol::Http2),
        ("bytes/0", Protocol::Http1),
    ] {
        let mut run = Run::new(&server.url(path));
        run.protocol = protocol;
        run.connections = 3;
        run.requests = Some(30);
        let r = run.go();
        assert_eq!(r.total.responses, 30, "{path} {:?}", r.total.errors);
        assert_eq!(r.total.status.get(&200), Some(&30));
        // Everything read, and nothing more than the bodies plus their heads and framing.
        let body: u64 = path.rsplit('/').next().unwrap().parse().unwrap();
        assert!(
            r.total.bytes >= 30 * body && r.total.bytes < 30 * (body + 4000),
            "{path}: {}",
            r.total.bytes
        );
    }
}

#[test]
fn a_delayed_server_shows_its_delay_in_the_median() {
    let server = Server::start(Behavior::Delay(Duration::from_millis(50)));
    let mut run = Run::new(&server.url("/"));
    run.connections = 5;
    run.requests = Some(50);
    let r = run.go();
    assert_eq!(r.total.responses, 50);
    let p50 = ms(&r.total.latency, 0.5);
    assert!((50.0..100.0).contains(&p50), "p50 {p50} ms");
}

#[test]
fn open_loop_corrects_for_coordinated_omission() {
    // One connection at most: while the server stalls, scheduled sends queue up behind it.
    let server = Server::start(Behavior::StallOnce {
        after: Duration::from_secs(1),
        len: Duration::from_secs(1),
    });
    let mut run = Run::new(&server.url("/")).open(200.0, 1);
    run.connections = 1;
    run.threads = 1;
    run.duration = Some(Duration::from_secs(3));
    let r = run.go();
    assert!(r.total.responses >= 590, "{}", r.total.responses);
    let corrected = ms(&r.total.latency, 0.99);
    let service = ms(&r.total.service, 0.99);
    assert!(corrected >= 500.0, "corrected p99 {corrected} ms");
    assert!(service < 100.0, "uncorrected p99 {service} ms");
    // The sends that queued behind the stall are reported as capped and late.
    assert!(
        r.total.capped >= 150 && r.total.late >= 150,
        "capped {} late {}",
        r.total.capped,
        r.total.late
    );
}

#[test]
fn open_loop_counts_sends_that_never_started() {
    // The only connection stalls; every later send waits at the cap until the run ends.
    let s = Misbehaving::start(Misbehavior::Stall);
    let mut run = Run::new(&s.url()).open(100.0, 1);
    run.connections = 1;
    run.threads = 1;
    run.duration = Some(Duration::from_secs(1));
    let r = run.go();
    assert_eq!(r.total.completed(), 0);
    assert_eq!(r.in_flight_at_end, 1);
    assert_eq!(r.total.lateness.len(), 1, "only the first send started");
    assert_eq!(r.total.unsent, 99);
}

#[test]
fn open_loop_keeps_its_rate() {
    let server = Server::start(Behavior::Ok);
    let mut run = Run::new(&server.url("/")).open(2000.0, 100);
    run.duration = Some(Duration::from_secs(2));
    let r = run.go();
    let rate = r.total.responses as f64 / 2.0;
    assert!((1900.0..=2100.0).contains(&rate), "achieved {rate}/s");
    assert_eq!(server.hits(), r.total.responses);
    // The schedule sends exactly rate × duration.
    assert_eq!(r.total.lateness.len(), 4000);
}

#[test]
fn open_loop_grows_connections_for_a_slow_server_up_to_the_cap() {
    // 100 req/s against 200 ms responses needs ~20 connections at once.
    let server = Server::start(Behavior::Delay(Duration::from_millis(200)));
    let mut run = Run::new(&server.url("/")).open(100.0, 50);
    run.connections = 1;
    run.threads = 1;
    run.duration = Some(Duration::from_secs(1));
    let r = run.go();
    assert_eq!(r.total.responses, 100);
    assert!((15..=50).contains(&r.peak_lanes), "peak {}", r.peak_lanes);
    assert_eq!(r.total.capped, 0);
    let p99 = ms(&r.total.latency, 0.99);
    assert!(p99 < 400.0, "p99 {p99}");
}

fn error_run(url: &str, timeout_ms: u64, requests: u64) -> RunResult {
    let mut run = Run::new(url);
    run.connections = 2;
    run.threads = 1;
    run.requests = Some(requests);
    run.timeout = Duration::from_millis(timeout_ms);
    run.go()
}

fn only_error(r: &RunResult, class: &str, n: u64) {
    let what = format!(
        "status {:?}, errors {:?}, in flight {}",
        r.total.status, r.total.errors, r.in_flight_at_end
    );
    assert_eq!(r.total.responses, 0, "{what}");
    assert_eq!(
        r.total.errors.keys().collect::<Vec<_>>(),
        vec![class],
        "{what}"
    );
    assert_eq!(r.total.errors[class], n, "{what}");
}

#[test]
fn refused_connections_are_counted() {
    let s = Misbehaving::start(Misbehavior::Refuse);
    only_error(&error_run(&s.url(), 1000, 20), "connect_refused", 20);
}

#[test]
fn resets_are_counted() {
    let s = Misbehaving::start(Misbehavior::Reset);
    only_error(&error_run(&s.url(), 2000, 10), "reset", 10);
}

#[test]
fn stalls_past_the_timeout_are_counted() {
    let s = Misbehaving::start(Misbehavior::Stall);
    only_error(&error_run(&s.url(), 200, 4), "request_timeout", 4);
}

#[test]
fn garbage_is_counted_as_malformed() {
    let s = Misbehaving::start(Misbehavior::Garbage);
    only_error(&error_run(&s.url(), 2000, 10), "malformed_response", 10);
}

#[test]
fn connects_that_hang_are_counted_as_connect_timeouts() {
    let s = Misbehaving::start(Misbehavior::Blackhole);
    only_error(&error_run(&s.url(), 300, 2), "connect_timeout", 2);
}

#[test]
fn tls_failures_are_counted() {
    let s = Misbehaving::start(Misbehavior::NotTls);
    only_error(
        &error_run(&format!("https://{}/", s.addr), 2000, 4),
        "tls",
        4,
    );
    // A self-signed certificate that nobody trusts.
    let cert = TestCert::new();
    let server = Server::start_tls(Behavior::Ok, &cert);
    only_error(&error_run(&server.url("/"), 2000, 4), "tls", 4);
    assert_eq!(server.hits(), 0);
}

#[test]
fn a_run_against_errors_still_ends_on_time() {
    let s = Misbehaving::start(Misbehavior::Stall);
    let mut run = Run::new(&s.url());
    run.duration = Some(Duration::from_millis(500));
    run.timeout = Duration::from_secs(30);
    let started = std::time::Instant::now();
    let r = run.go();
    // 0.5 s of sending, then at most load::DRAIN_MAX waiting for answers that never come.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.total.completed(), 0);
    assert_eq!(r.in_flight_at_end, 4);
}

#[test]
fn h2c_multiplexes_streams_with_exact_counts() {
    let server = Server::start(Behavior::Ok);
    let mut run = Run::new(&server.url("/"));
    run.protocol = Protocol::Http2;
    run.connections = 2;
    run.streams = 5;
    run.requests = Some(500);
    let r = run.go();
    assert_eq!(r.total.responses, 500);
    assert_eq!(server.hits(), 500);
    assert_eq!(server.versions().get("HTTP/2.0"), Some(&500));
    assert_eq!(r.peak_lanes, 10);
}

#[test]
fn http2_over_tls_with_alpn_gives_exact_counts() {
    let cert = TestCert::new();
    let server = Server::start_tls(Behavior::Ok, &cert);
    let mut run = Run::new(&server.url("/"));
    run.protocol = Protocol::Http2;
    run.tls.insecure = true;
    run.connections = 2;
    run.streams = 10;
    run.requests = Some(500);
    let r = run.go();
    assert_eq!((r.total.responses, server.hits()), (500, 500));
    assert_eq!(server.versions().get("HTTP/2.0"), Some(&500));
}

#[test]
fn http1_over_tls_trusts_a_given_ca_file() {
    let cert = TestCert::new();
    let dir = std::env::temp_dir().join(format!("st-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &cert.cert_pem).unwrap();
    let server = Server::start_tls(Behavior::Ok, &cert);
    let mut run = Run::new(&server.url("/"));
    run.tls.ca_file = Some(ca);
    run.requests = Some(200);
    let r = run.go();
    assert_eq!((r.total.responses, server.hits()), (200, 200));
    assert_eq!(server.versions().get("HTTP/1.1"), Some(&200));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn open_loop_over_http2_grows_stream_slots() {
    let server = Server::start(Behavior::Ok);
    let mut run = Run::new(&server.url("/")).open(1000.0, 4);
    run.protocol = Protocol::Http2;
    run.streams = 4;
    run.connections = 1;
    run.threads = 1;
    run.duration = Some(Duration::from_secs(1));
    let r = run.go();
    assert_eq!(r.total.responses, 1000);
    assert_eq!(server.versions().get("HTTP/2.0"), Some(&1000));
}

/// A server that switches every connection to another protocol and then says nothing more,
/// as a WebSocket server would; counts the connections it accepted.
fn switching_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n\x81\x00");
                // Hold the connection open until the client closes it.
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    (url, accepted)
}

#[test]
fn a_101_is_counted_and_its_connection_not_reused() {
    let (url, accepted) = switching_server();
    let mut run = Run::new(&url);
    run.connections = 1;
    run.threads = 1;
    run.requests = Some(5);
    run.timeout = Duration::from_secs(2);
    let r = run.go();
    assert_eq!(r.total.status.get(&101), Some(&5), "{:?}", r.total.errors);
    assert!(r.total.errors.is_empty(), "{:?}", r.total.errors);
    // After a 101 the connection speaks something else: each request needs a new one.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
}
