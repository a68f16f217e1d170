//! Quick answers: a cleartext HTTP/1.1 connection whose requests a [`Responder`] answers at
//! once is served here, without hyper: bodiless GETs and HEADs from what it holds, and POSTs
//! whose whole body (framed by `Content-Length`, within the responder's limit) it takes; the
//! first request it does not answer (or anything else: a chunked body, `Expect`, an upgrade,
//! HTTP/1.0, a malformed or oversized head, the HTTP/2 preface) hands the connection to hyper
//! for the rest of its life, with that request's bytes ([`crate::front`]). Hand-written
//! because it is the hot path of `serve` (hyper's per-request work cost about a fifth of the
//! server's CPU against nginx; `scaletest serve --hyper-only` is the other path) and of the
//! aggregator's ingest of the bots' pushes (BENCHMARKS.md keeps both comparisons).
//!
//! Pipelined requests are answered in one write (up to 64 KiB of answers at a time); a client
//! that does not take its answers within the header timeout is cut off. A request answered
//! here once the server stops gets `Connection: close`, and the connection a lingering close;
//! one handed over then is hyper's to answer and close. A POST whose body is still arriving
//! when the server stops is not in flight yet: its connection is closed unanswered (the
//! aggregator's bots push it again; nothing of it was acted on).

use crate::front::{self, read_more, Conn, Handoff};
use crate::server::{Activity, ConnService, Limits, Phase, Stats};
use bytes::{Buf, BufMut, BytesMut};
use http::StatusCode;
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// A response the quick path sends: `Content-Length` and `Date` are added to it.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The status (1xx, 204 and 304 are not sent here: their framing differs).
    pub status: StatusCode,
    /// Further header lines, in wire form: `name: value\r\n` each.
    pub headers: &'a [u8],
    /// The body (not sent for HEAD; its length still is).
    pub body: &'a [u8],
}

/// A POST read in full on the quick path.
#[derive(Debug, Clone, Copy)]
pub struct Post<'a> {
    /// Its target (origin form: path and query).
    pub target: &'a str,
    /// The first `Authorization` header's value, if any.
    pub authorization: Option<&'a [u8]>,
    /// The whole body.
    pub body: &'a [u8],
}

/// What a server answers on the quick path.
pub trait Responder: 'static {
    /// The answer to a bodiless GET or HEAD of `target` (origin form: path and query), or
    /// `None` to hand the connection to hyper from this request on.
    fn answer(&self, target: &str) -> Option<Answer<'_>>;

    /// What [`Responder::post_limit`] found out about a POST it admitted (its route, say),
    /// handed to [`Responder::post`] so that it is not looked up again (a body that takes
    /// several reads is asked about again at each, as the head is parsed again).
    type Admitted;

    /// The largest body of a POST to `target` answered here (a larger one is hyper's, which
    /// refuses it as the server's route does), asked once its head has arrived, before any of
    /// its body is kept (and again as more of it arrives): a caller the server refuses from
    /// the head alone (no token: `authorization` is the first `Authorization` value) should
    /// get `None`, so that hyper refuses it without reading its body. `None`, the default:
    /// every POST is hyper's.
    fn post_limit(
        &self,
        _target: &str,
        _authorization: Option<&[u8]>,
    ) -> Option<(usize, Self::Admitted)> {
        None
    }

    /// The answer to a POST admitted by [`Responder::post_limit`] whose body has arrived: its
    /// status (one that frames its body with `Content-Length`: not 1xx, 204 or 304, which
    /// would hand the request to hyper after it was acted on) and further header lines (as
    /// [`Answer::headers`]), its body written into `body`; `None` hands the connection to
    /// hyper from this request on, as [`Responder::answer`]'s does.
    fn post(
        &self,
        _admitted: Self::Admitted,
        _req: &Post<'_>,
        _body: &mut Vec<u8>,
    ) -> Option<(StatusCode, &'static [u8])> {
        None
    }

    /// A request was answered with `status`, `took` after its bytes were read; called before
    /// the response is written.
    fn answered(&self, status: u16, took: Duration);
}

/// Accept and serve connections until the phase is `Stopping` and every connection has
/// finished: quick answers from `responder`, hyper (services from `make`) for the rest. Must
/// run inside a `LocalSet`.
pub async fn serve<F, S, R>(
    listener: std::net::TcpListener,
    limits: Limits,
    stats: Arc<Stats>,
    phase: watch::Receiver<Phase>,
    make: F,
    responder: Rc<R>,
) -> io::Result<()>
where
    F: Fn(SocketAddr, Arc<Activity>) -> S + 'static,
    S: ConnService,
    R: Responder,
{
    let max_head = limits.max_header_bytes.max(8192);
    let write_limit = limits.header_timeout;
    let clients = move |s, _peer, conn: Rc<Conn>| {
        let r = responder.clone();
        async move { client(&*r, s, &conn, max_head, write_limit).await }
    };
    front::serve(listener, limits, stats, phase, make, clients, || {}).await
}

/// Above this, a body is written from where it is rather than copied behind its head.
const COPY_BODY: usize = 16 * 1024;

/// A POST body's buffer grows by at most this much per read, and is given back once empty.
const BODY_STEP: usize = 64 * 1024;

/// Answers waiting in `out` are written once they reach this (pipelined requests).
const OUT_MAX: usize = 64 * 1024;

/// `write_limit`: how long writing one batch of answers may take (a client that does not
/// read is cut off like one that does not send).
async fn client<R: Responder>(
    r: &R,
    mut s: TcpStream,
    conn: &Conn,
    max_head: usize,
    write_limit: Duration,
) -> Handoff {
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::with_capacity(4096);
    let mut posted: Vec<u8> = Vec::new();
    let mut answered: Vec<u16> = Vec::new();
    loop {
        conn.busy(false);
        if buf.is_empty() && buf.capacity() > BODY_STEP {
            // A large body's room is not kept for the connection's life.
            buf = BytesMut::with_capacity(4096);
        }
        if !read_more(&mut s, &mut buf).await {
            return None;
        }
        // Busy until the answers are written: a stop does not cut an answer short.
        conn.busy(true);
        let t0 = Instant::now();
        let date = DATE.with(|d| d.borrow_mut().now());
        let stopping = conn.stopping();
        let mut closing = false;
        let handoff = loop {
            let (head_len, method, close, target, authorization, body) = match parse(&buf) {
                Parsed::Quick {
                    len,
                    method,
                    close,
                    target,
                    authorization,
                    body,
                } => (len, method, close, target, authorization, body),
                Parsed::Partial if buf.len() < max_head => break false,
                // hyper answers it (431 for a head too large, 400 for a malformed one).
                Parsed::Partial | Parsed::Other => break true,
            };
            let head = method == Method::Head;
            let answer = if method == Method::Post {
                // A body over the limit is hyper's to refuse (the route's 413).
                let admitted = match r.post_limit(target, authorization) {
                    Some((limit, admitted)) if body <= limit => admitted,
                    _ => break true,
                };
                let whole = head_len + body;
                if buf.len() < whole {
                    // A piece of a body is activity; room is made as it arrives (a length
                    // declared is not memory given).
                    conn.started();
                    buf.reserve((whole - buf.len()).min(BODY_STEP));
                    break false;
                }
                posted.clear();
                let req = Post {
                    target,
                    authorization,
                    body: &buf[head_len..whole],
                };
                r.post(admitted, &req, &mut posted)
                    .map(|(status, headers)| Answer {
                        status,
                        headers,
                        body: &posted,
                    })
            } else {
                r.answer(target)
            };
            let Some(a) = answer.filter(|a| sendable(a.status)) else {
                break true;
            };
            closing = stopping || close;
            conn.started();
            put_head(&mut out, &a, &date, closing);
            answered.push(a.status.as_u16());
            let big = !head && a.body.len() > COPY_BODY;
            if !head && !big {
                out.put_slice(a.body);
            }
            if big || out.len() >= OUT_MAX {
                report(r, &mut answered, t0);
                let rest = if big { a.body } else { &[] };
                if !write_out(&mut s, &out, rest, write_limit).await {
                    return None;
                }
                out.clear();
            }
            buf.advance(head_len + body);
            if closing {
                buf.clear();
                break false;
            }
        };
        report(r, &mut answered, t0);
        if !out.is_empty() {
            if !write_out(&mut s, &out, &[], write_limit).await {
                return None;
            }
            out.clear();
        }
        if handoff {
            return Some((s, buf));
        }
        if closing {
            front::close_lingering(s).await;
            return None;
        }
    }
}

/// Write `head` and then `body`, within `limit`; false if the connection failed or the
/// client did not take it in time. The usual case is one write that takes it all, so the
/// timer is set only when the socket is full.
async fn write_out(s: &mut TcpStream, head: &[u8], body: &[u8], limit: Duration) -> bool {
    let mut at = 0;
    if body.is_empty() {
        match s.try_write(head) {
            Ok(n) if n == head.len() => return true,
            Ok(n) => at = n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
    let rest = async {
        s.write_all(&head[at..]).await?;
        s.write_all(body).await
    };
    matches!(tokio::time::timeout(limit, rest).await, Ok(Ok(())))
}

/// Tell the responder of the answers made since `t0`, before they are written (as hyper's
/// services count a response when they hand it over).
fn report<R: Responder>(r: &R, answered: &mut Vec<u16>, t0: Instant) {
    if answered.is_empty() {
        return;
    }
    let took = t0.elapsed();
    for status in answered.drain(..) {
        r.answered(status, took);
    }
}

/// Statuses whose message always has a body framed by `Content-Length`.
fn sendable(status: StatusCode) -> bool {
    status.as_u16() >= 200 && status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED
}

/// The methods the quick path answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Post,
}

enum Parsed<'b> {
    /// A complete HTTP/1.1 head of a GET or HEAD without a body, or of a POST whose body is
    /// `body` bytes (by `Content-Length`; none given: 0), of an origin-form target; `close`:
    /// it asked for `Connection: close`.
    Quick {
        len: usize,
        method: Method,
        close: bool,
        target: &'b str,
        authorization: Option<&'b [u8]>,
        body: usize,
    },
    /// Not all of a head yet.
    Partial,
    /// Anything else: hyper's.
    Other,
}

fn parse(data: &[u8]) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("POST") => Method::Post,
        _ => return Parsed::Other,
    };
    if req.version != Some(1) {
        return Parsed::Other;
    }
    let target = match req.path {
        Some(t) if t.starts_with('/') && plain_target(t) => t,
        _ => return Parsed::Other,
    };
    let mut close = false;
    let mut authorization = None;
    let mut body = None;
    for h in req.headers.iter() {
        let n = h.name;
        let plain = if n.eq_ignore_ascii_case("content-length") {
            // One length, of digits only; a GET or HEAD's must be 0. Anything else (a list,
            // a sign, a second header) is hyper's to judge.
            let digits = body.is_none()
                && (1..=15).contains(&h.value.len())
                && h.value.iter().all(u8::is_ascii_digit);
            let len = digits
                .then(|| (h.value.iter()).fold(0usize, |n, d| n * 10 + usize::from(d - b'0')));
            body = len;
            len.is_some_and(|l| l == 0 || method == Method::Post)
        } else if n.eq_ignore_ascii_case("authorization") {
            authorization = authorization.or(Some(h.value));
            true
        } else if n.eq_ignore_ascii_case("connection") {
            // One token of the two this path knows; lists and others are hyper's.
            let c = h.value.eq_ignore_ascii_case(b"close");
            close |= c;
            c || h.value.eq_ignore_ascii_case(b"keep-alive")
        } else {
            !(n.eq_ignore_ascii_case("transfer-encoding")
                || n.eq_ignore_ascii_case("expect")
                || n.eq_ignore_ascii_case("upgrade"))
        };
        if !plain {
            return Parsed::Other;
        }
    }
    Parsed::Quick {
        len,
        method,
        close,
        target,
        authorization,
        body: body.unwrap_or(0),
    }
}

/// Whether every byte of `target` is one that hyper's URI parser takes in a path and query,
/// and it is short enough for it: anything else is left to hyper, which refuses it (400, 414).
fn plain_target(target: &str) -> bool {
    target.len() < 65_534
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/?=&%+:@!$'()*,;".contains(&b))
}

/// The status line and headers of `a`, as hyper writes them (lower-case names).
fn put_head(out: &mut BytesMut, a: &Answer<'_>, date: &[u8; 29], close: bool) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(a.status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(a.status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    out.put_slice(a.headers);
    out.put_slice(b"content-length: ");
    out.put_slice(itoa::Buffer::new().format(a.body.len()).as_bytes());
    out.put_slice(b"\r\n");
    if close {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"date: ");
    out.put_slice(date);
    out.put_slice(b"\r\n\r\n");
}

/// `Date` text, made again when the second changes (as hyper caches it).
struct Date {
    second: u64,
    text: [u8; 29],
}

impl Date {
    fn now(&mut self) -> [u8; 29] {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            let t = httpdate::fmt_http_date(now);
            if t.len() == 29 {
                self.text.copy_from_slice(t.as_bytes());
            }
        }
        self.text
    }
}

thread_local! {
    static DATE: RefCell<Date> = const { RefCell::new(Date { second: 0, text: [b' '; 29] }) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Bytes shaped like request heads, valid or not: methods, targets, versions, the headers
    /// the quick path looks at (with values it takes and values it leaves), line ends, noise.
    fn headish() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            Just(b"GET ".to_vec()),
            Just(b"HEAD ".to_vec()),
            Just(b"POST ".to_vec()),
            "/[a-z0-9/?=&%]{0,12}".prop_map(String::into_bytes),
            Just(b"http://h/x".to_vec()),
            Just(b" HTTP/1.1".to_vec()),
            Just(b" HTTP/1.0".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"Host: t\r\n".to_vec()),
            Just(b"Content-Length: 0\r\n".to_vec()),
            Just(b"content-length: 5\r\n".to_vec()),
            Just(b"Connection: close\r\n".to_vec()),
            Just(b"Connection: Keep-Alive\r\n".to_vec()),
            Just(b"Connection: upgrade\r\n".to_vec()),
            Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
            Just(b"Expect: 100-continue\r\n".to_vec()),
            Just(b"Authorization: Bearer t\r\n".to_vec()),
            vec(any::<u8>(), 0..8),
        ];
        let noise = vec(token, 0..24).prop_map(|ts| ts.concat());
        // A request line, some of those headers and an end: enough of these are taken that the
        // checks of what is taken run (noise alone is almost never a whole request).
        let header = prop_oneof![
            Just(&b"Host: t\r\n"[..]),
            Just(&b"Content-Length: 0\r\n"[..]),
            Just(&b"content-length: 5\r\n"[..]),
            Just(&b"Connection: close\r\n"[..]),
            Just(&b"Connection: Keep-Alive\r\n"[..]),
            Just(&b"Connection: upgrade\r\n"[..]),
            Just(&b"Transfer-Encoding: chunked\r\n"[..]),
            Just(&b"Expect: 100-continue\r\n"[..]),
            Just(&b"Authorization: Bearer t\r\n"[..]),
        ];
        let request = (
            prop_oneof![Just("GET "), Just("HEAD "), Just("POST ")],
            "/[a-z0-9/?=&%]{0,12}",
            prop_oneof![Just(" HTTP/1.1\r\n"), Just(" HTTP/1.0\r\n")],
            vec(header, 0..4),
            prop_oneof![Just("\r\n"), Just("\n"), Just("")],
        )
            .prop_map(|(method, target, version, headers, end)| {
                let mut b = [method, &target, version].concat().into_bytes();
                headers.iter().for_each(|h| b.extend_from_slice(h));
                b.extend_from_slice(end.as_bytes());
                b
            });
        prop_oneof![noise, request]
    }

    proptest! {
        /// Whatever arrives: no panic, and a request taken is a whole HTTP/1.1 head of an
        /// origin-form target: a bodiless GET or HEAD, or a POST whose body is its one
        /// `Content-Length` (0 without one).
        #[test]
        fn only_bodiless_gets_and_heads_and_framed_posts_are_taken(data in headish()) {
            if let Parsed::Quick { len, method, close, target, authorization, body } = parse(&data) {
                prop_assert!(len <= data.len());
                prop_assert!(data[..len].ends_with(b"\n\n") || data[..len].ends_with(b"\r\n\r\n"));
                prop_assert!(target.starts_with('/'));
                let named = match method {
                    Method::Get => "GET ",
                    Method::Head => "HEAD ",
                    Method::Post => "POST ",
                };
                prop_assert!(data.starts_with(named.as_bytes()));
                let text = String::from_utf8_lossy(&data[..len]).to_ascii_lowercase();
                prop_assert!(!text.contains("transfer-encoding") && !text.contains("expect:"));
                prop_assert!(!text.contains("upgrade"));
                let lengths = text.matches("content-length").count();
                prop_assert!(lengths <= 1);
                let five = text.contains("content-length: 5");
                prop_assert!(!five || method == Method::Post);
                prop_assert_eq!(body, if five { 5 } else { 0 });
                prop_assert!(!close || text.contains("connection: close"));
                prop_assert_eq!(authorization.is_some(), text.contains("authorization: "));
            }
        }

        /// A request cut anywhere before its end is partial; whole, it is taken as sent.
        #[test]
        fn a_request_cut_short_is_partial(path in "/[a-z0-9/?=&]{0,40}", cut in any::<usize>()) {
            let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
            prop_assert!(matches!(parse(&req.as_bytes()[..cut % req.len()]), Parsed::Partial));
            let whole = parse(req.as_bytes());
            let taken = matches!(whole, Parsed::Quick { len, target, close: false, method: Method::Get, body: 0, .. }
                if len == req.len() && target == path);
            prop_assert!(taken);
        }
    }
}
