//! `st_http::quick` on a loopback port: which requests it answers itself and which it hands to
//! hyper (counted at both), pipelining, POST bodies (whole, in pieces, over the limit), the
//! bytes already read surviving the hand-off, `Connection: close`, heads too large or
//! malformed, and the stop.

use http::StatusCode;
use st_http::quick::{self, Answer, Post, Responder};
use st_http::runner::{self, Servers};
use st_http::server::{Activity, Limits, Phase, Stats};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIG: usize = 100_000;
static BIG_BODY: [u8; BIG] = [b'b'; BIG];

/// Answers `/q` (any query) and `/big`; `/nc` is a 204, which the quick path leaves to hyper.
/// POSTs to `/echo` of at most 16 bytes are answered (201, the authorization and the body);
/// `/decline` takes the same bodies and then declines them.
struct Fixed {
    answered: Arc<AtomicU64>,
    /// POST heads read (each asks for the limit).
    posts_seen: Arc<AtomicU64>,
}

impl Responder for Fixed {
    fn answer(&self, target: &str) -> Option<Answer<'_>> {
        let path = target.split('?').next().unwrap_or("");
        let (status, body): (StatusCode, &[u8]) = match path {
            "/q" => (StatusCode::OK, b"quick\n"),
            "/big" => (StatusCode::OK, &BIG_BODY),
            "/nc" => (StatusCode::NO_CONTENT, b""),
            _ => return None,
        };
        Some(Answer {
            status,
            headers: b"x-path: quick\r\n",
            body,
        })
    }

    /// Whether the POST is to `/echo` (else `/decline`).
    type Admitted = bool;

    fn post_limit(&self, target: &str, _authorization: Option<&[u8]>) -> Option<(usize, bool)> {
        self.posts_seen.fetch_add(1, Ordering::Relaxed);
        matches!(target, "/echo" | "/decline").then_some((16, target == "/echo"))
    }

    fn post(
        &self,
        echo: bool,
        req: &Post<'_>,
        body: &mut Vec<u8>,
    ) -> Option<(StatusCode, &'static [u8])> {
        if !echo {
            return None;
        }
        body.extend_from_slice(b"echo ");
        body.extend_from_slice(req.authorization.unwrap_or(b"-"));
        body.push(b' ');
        body.extend_from_slice(req.body);
        Some((StatusCode::CREATED, b"x-path: quick\r\n"))
    }

    fn answered(&self, _status: u16, _took: Duration) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }
}

struct Server {
    addr: SocketAddr,
    stats: Arc<Stats>,
    servers: Servers,
    quick: Arc<AtomicU64>,
    posts_seen: Arc<AtomicU64>,
    hyper: Arc<AtomicU64>,
}

fn start() -> Server {
    start_with(Limits {
        header_timeout: Duration::from_secs(5),
        ..Limits::default()
    })
}

/// One thread serving quick answers, and hyper answering `hyper METHOD TARGET BODY`.
fn start_with(limits: Limits) -> Server {
    let (listeners, addr) = runner::bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
    let (quick, hyper) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut servers = Servers::new();
    let posts_seen = Arc::new(AtomicU64::new(0));
    let (q, h, p) = (quick.clone(), hyper.clone(), posts_seen.clone());
    let stats = Arc::new(Stats::default());
    servers
        .per_thread("quick", listeners, stats.clone(), move |w| {
            let h = h.clone();
            let make = move |_peer: SocketAddr, _activity: Arc<Activity>| {
                let h = h.clone();
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let h = h.clone();
                    async move {
                        use http_body_util::BodyExt;
                        h.fetch_add(1, Ordering::Relaxed);
                        let what = format!("hyper {} {} ", req.method(), req.uri());
                        let body = req.into_body().collect().await?.to_bytes();
                        let text = what + std::str::from_utf8(&body).unwrap_or("?");
                        let mut r = hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(text),
                        ));
                        r.headers_mut().insert("x-path", "hyper".parse().unwrap());
                        Ok::<_, hyper::Error>(r)
                    }
                })
            };
            let responder = Rc::new(Fixed {
                answered: q.clone(),
                posts_seen: p.clone(),
            });
            let limits = limits.clone();
            async move {
                quick::serve(w.listener, limits, w.stats, w.phase, make, responder)
                    .await
                    .unwrap();
            }
        })
        .unwrap();
    Server {
        addr,
        stats,
        servers,
        quick,
        posts_seen,
        hyper,
    }
}

/// One response read off `c`: its head and body (`head_request`: no body follows).
fn response(c: &mut TcpStream, pending: &mut Vec<u8>, head_request: bool) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = r.parse(pending) {
            let len: usize = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap_or(0);
            let len = if head_request { 0 } else { len };
            if pending.len() >= n + len {
                let head = String::from_utf8_lossy(&pending[..n]).into_owned();
                let body = String::from_utf8_lossy(&pending[n..n + len]).into_owned();
                pending.drain(..n + len);
                return (head, body);
            }
        }
        assert!(Instant::now() < deadline, "no complete response");
        let mut buf = [0u8; 65536];
        let got = c.read(&mut buf).unwrap();
        assert!(
            got > 0,
            "closed; had {:?}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&buf[..got]);
    }
}

/// Each request, on a connection of its own, is answered by hyper with `want`.
fn answered_by_hyper(s: &Server, cases: &[(&[u8], &str)]) {
    for (req, want) in cases {
        let before = s.hyper.load(Ordering::Relaxed);
        let mut c = connect(s.addr);
        c.write_all(req).unwrap();
        let (head, body) = response(&mut c, &mut Vec::new(), false);
        assert_eq!(&body, want, "{head}");
        assert_eq!(s.hyper.load(Ordering::Relaxed), before + 1);
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

#[test]
fn pipelined_requests_it_answers_never_reach_hyper() {
    let s = start();
    let mut c = connect(s.addr);
    c.write_all(
        b"GET /q HTTP/1.1\r\nHost: t\r\n\r\nHEAD /q HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /q?x=1 HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n\
          GET /big HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let mut pending = Vec::new();
    for (head_request, body_len) in [(false, 6), (true, 0), (false, 6), (false, BIG)] {
        let (head, body) = response(&mut c, &mut pending, head_request);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        // HEAD too tells the length of what GET sends.
        let len = if body_len == BIG { BIG } else { 6 };
        assert!(
            head.contains(&format!("\r\ncontent-length: {len}\r\n")),
            "{head}"
        );
        assert!(head.contains("\r\nx-path: quick\r\n"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert_eq!(body.len(), body_len, "{head}");
    }
    assert_eq!(s.quick.load(Ordering::Relaxed), 4);
    assert_eq!(s.hyper.load(Ordering::Relaxed), 0);
}

#[test]
fn the_first_request_it_does_not_answer_hands_the_connection_to_hyper() {
    let s = start();
    let mut c = connect(s.addr);
    // The POST and what follows it were read with the first request: hyper must get them.
    c.write_all(
        b"GET /q HTTP/1.1\r\nHost: t\r\n\r\nPOST /q HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
          GET /q HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let mut pending = Vec::new();
    let (head, body) = response(&mut c, &mut pending, false);
    assert!(head.contains("x-path: quick"), "{head}");
    assert_eq!(body, "quick\n");
    let (_, body) = response(&mut c, &mut pending, false);
    assert_eq!(body, "hyper POST /q abc");
    // Handed over for good: hyper answers even what the quick path could.
    let (_, body) = response(&mut c, &mut pending, false);
    assert_eq!(body, "hyper GET /q ");
    assert_eq!(
        (
            s.quick.load(Ordering::Relaxed),
            s.hyper.load(Ordering::Relaxed)
        ),
        (1, 2)
    );

    // What the quick path leaves alone: unknown targets, HTTP/1.0, framings other than
    // Content-Length (204), absolute-form targets, upgrades.
    answered_by_hyper(
        &s,
        &[
        (
            &b"GET /other HTTP/1.1\r\nHost: t\r\n\r\n"[..],
            "hyper GET /other ",
        ),
        (b"GET /q HTTP/1.0\r\n\r\n", "hyper GET /q "),
        (b"GET /nc HTTP/1.1\r\nHost: t\r\n\r\n", "hyper GET /nc "),
        (
            b"GET http://t/q HTTP/1.1\r\nHost: t\r\n\r\n",
            "hyper GET http://t/q ",
        ),
        (
            b"GET /q HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
            "hyper GET /q z",
        ),
        (
            b"GET /q HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
            "hyper GET /q ",
        ),
        (
            b"GET /q HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, close\r\n\r\n",
            "hyper GET /q ",
        ),
    ],
    );
    // A target hyper's URI parser refuses: refused as hyper refuses it, not answered.
    let mut c = connect(s.addr);
    c.write_all(b"GET /q?a<b HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut all = String::new();
    let _ = c.read_to_string(&mut all);
    assert!(all.starts_with("HTTP/1.1 400 "), "{all}");
    assert_eq!(s.quick.load(Ordering::Relaxed), 1);
}

#[test]
fn posts_within_the_limit_are_answered_here_whole_or_in_pieces() {
    let s = start();
    let mut c = connect(s.addr);
    c.set_nodelay(true).unwrap();
    // Pipelined: a body, no Content-Length (no body), a body that is the next request's
    // look-alike, then a GET: all four here, in order.
    c.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer k\r\nContent-Length: 3\r\n\r\nabc\
          POST /echo HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 16\r\n\r\nGET /q HTTP/1.1\n\
          GET /q HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let mut pending = Vec::new();
    for want in [
        "echo Bearer k abc",
        "echo - ",
        "echo - GET /q HTTP/1.1\n",
        "quick\n",
    ] {
        let (head, body) = response(&mut c, &mut pending, false);
        assert!(head.contains("\r\nx-path: quick\r\n"), "{head}");
        let status = if want == "quick\n" {
            "200 OK"
        } else {
            "201 Created"
        };
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{head}"
        );
        assert_eq!(body, want);
    }
    // A body in two writes, the second once the server has read the head (and so the first
    // part, without the rest): answered once it is whole, on the same connection.
    let seen = s.posts_seen.load(Ordering::Relaxed);
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
        .unwrap();
    let t = Instant::now();
    while s.posts_seen.load(Ordering::Relaxed) == seen {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the head was never read"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    c.write_all(b"56789").unwrap();
    let (_, body) = response(&mut c, &mut pending, false);
    assert_eq!(body, "echo - 0123456789");
    assert_eq!(s.quick.load(Ordering::Relaxed), 5);
    assert_eq!(s.hyper.load(Ordering::Relaxed), 0);

    // Left to hyper, with the whole body: over the limit, chunked, a target without a limit,
    // one the responder declines after reading it, and a second Content-Length.
    answered_by_hyper(
        &s,
        &[
        (
            &b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 17\r\n\r\n0123456789abcdefg"[..],
            "hyper POST /echo 0123456789abcdefg",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
            "hyper POST /echo z",
        ),
        (
            b"POST /q HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
            "hyper POST /q hi",
        ),
        (
            b"POST /decline HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz",
            "hyper POST /decline xyz",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
            "hyper POST /echo hi",
        ),
        // A GET that says it has a body.
        (
            b"GET /q HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
            "hyper GET /q hi",
        ),
    ],
    );
    assert_eq!(s.quick.load(Ordering::Relaxed), 5);
}

#[test]
fn connection_close_is_answered_then_closed() {
    let s = start();
    let mut c = connect(s.addr);
    c.write_all(b"GET /q HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /q HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut all = String::new();
    c.read_to_string(&mut all).unwrap();
    assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 1, "{all}");
    assert!(all.contains("\r\nconnection: close\r\n"), "{all}");
    assert!(all.ends_with("\r\n\r\nquick\n"), "{all}");
    assert_eq!(s.quick.load(Ordering::Relaxed), 1);
}

#[test]
fn heads_too_large_or_malformed_get_hypers_answers() {
    let s = start();
    for (req, want) in [
        (
            format!(
                "GET /q HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
                "a".repeat(40_000)
            ),
            "HTTP/1.1 431 ",
        ),
        ("NOT HTTP AT ALL\r\n\r\n".to_string(), "HTTP/1.1 400 "),
    ] {
        let mut c = connect(s.addr);
        c.write_all(req.as_bytes()).unwrap();
        let mut all = Vec::new();
        let _ = c.read_to_end(&mut all);
        let all = String::from_utf8_lossy(&all);
        assert!(all.starts_with(want), "{all}");
    }
    assert_eq!(s.quick.load(Ordering::Relaxed), 0);
}

#[test]
fn stopping_closes_idle_connections_and_the_server_finishes() {
    let s = start();
    let mut c = connect(s.addr);
    c.write_all(b"GET /q HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut pending = Vec::new();
    let (head, _) = response(&mut c, &mut pending, false);
    assert!(!head.contains("connection: close"), "{head}");
    s.servers.set_phase(Phase::Stopping);
    // The idle kept-alive connection is closed, and with it the last connection.
    let mut buf = [0u8; 64];
    assert_eq!(c.read(&mut buf).unwrap_or(0), 0);
    assert!(s.servers.wait(Duration::from_secs(5)));
    assert!(TcpStream::connect(s.addr).is_err(), "listener still open");
}

#[test]
fn a_client_that_does_not_read_its_answers_is_cut_off() {
    let s = start_with(Limits {
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    });
    let c = connect(s.addr);
    // 20 MB of answers asked for at once, none read: the socket fills and the write stalls.
    let asks = "GET /big HTTP/1.1\r\nHost: t\r\n\r\n".repeat(200);
    (&c).write_all(asks.as_bytes()).unwrap();
    let open = || s.stats.open.load(Ordering::Relaxed);
    let t = Instant::now();
    while open() == 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "never accepted");
        std::thread::sleep(Duration::from_millis(1));
    }
    while open() > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the stalled connection is still open"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Cut off by the write limit, not at once.
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    drop(c);
}
