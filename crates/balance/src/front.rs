//! The client side for cleartext HTTP/1.x, hand-written because it is the balancer's hot path:
//! parse a request with httparse, rewrite its head once into the bytes the backend gets, hand
//! it to the pipelined upstream pool ([`crate::pipe`]), and write the response back as it came.
//! Bodies are relayed as framed (a chunked body stays chunked) and buffered whole only for
//! requests, so that a retry can resend them. BENCHMARKS.md keeps the comparison with the
//! hyper path that this replaces for HTTP/1.
//!
//! Connections are accepted and swept by [`st_http::front`] (no timer per request: the
//! sweeper closes connections that start no request within the header timeout, and once the
//! balancer stops, those with nothing in flight). Connections that open with the HTTP/2
//! preface go to hyper there, as do TLS clients and everything when the backends speak h2c
//! (see `lib.rs`).

use crate::backends::Backends;
use crate::pick::Algorithm;
use crate::pipe::{connection_tokens, hop_by_hop, put_headers, Outgoing, Pool, Reply, ReplyBody};
use crate::retry::{self, Fail, Refused};
use crate::target;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use st_http::front::{close_lingering, read_more, Conn};
use st_http::server::{Activity, ConnService, Limits, Phase, Stats};
use st_http::Chunked;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// What a worker thread needs to serve HTTP/1 clients.
pub struct Front {
    pub(crate) backends: Arc<Backends>,
    pub(crate) algorithm: Algorithm,
    pub(crate) turn: AtomicUsize,
    pub(crate) pool: Rc<Pool>,
    pub(crate) timeout: Duration,
    pub(crate) max_body: usize,
    pub(crate) limits: Limits,
}

/// Accept and serve connections until the phase is `Stopping` and every connection has
/// finished, on [`st_http::front`]'s loop and sweeper. `make` builds the hyper service for
/// connections that speak HTTP/2. Must run inside a `LocalSet`.
pub async fn serve<F, S>(
    listener: std::net::TcpListener,
    front: Rc<Front>,
    stats: Arc<Stats>,
    phase: watch::Receiver<Phase>,
    make: F,
) -> io::Result<()>
where
    F: Fn(SocketAddr, Arc<Activity>) -> S + 'static,
    S: ConnService,
{
    let f = front.clone();
    let clients = move |s, peer, conn: Rc<Conn>| {
        let front = f.clone();
        async move {
            client(&front, s, peer, &conn).await;
            None
        }
    };
    let tick = {
        let front = front.clone();
        move || {
            let live: Vec<SocketAddr> = front.backends.snapshot().iter().map(|b| b.addr).collect();
            front.pool.sweep(&live);
        }
    };
    let limits = front.limits.clone();
    st_http::front::serve(listener, limits, stats, phase, make, clients, tick).await
}

/// [`read_more`] for a request body: each piece counts as activity for the sweeper.
async fn read_body(s: &mut TcpStream, buf: &mut BytesMut, st: &Conn) -> bool {
    let ok = read_more(s, buf).await;
    st.started();
    ok
}

enum ReqBody {
    None,
    Length(usize),
    Chunked,
}

/// One client request, parsed, with the head the backend gets already written.
struct Parsed {
    head_len: usize,
    upstream: BytesMut,
    head_request: bool,
    idempotent: bool,
    http10: bool,
    keep_alive: bool,
    expect_continue: bool,
    body: ReqBody,
}

/// Request headers not copied to the backend: the hop-by-hop ones, and two the balancer
/// replaces (it answers `Expect` itself and extends `x-forwarded-for`).
fn not_forwarded(name: &str) -> bool {
    hop_by_hop(name)
        || name.eq_ignore_ascii_case("expect")
        || name.eq_ignore_ascii_case("x-forwarded-for")
}

/// `peer_ip` is the client's address as text, for `x-forwarded-for`.
fn parse_request(data: &[u8], peer_ip: &[u8]) -> Result<Option<Parsed>, Refused> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refused(431, "too many request headers".into()))
        }
        Err(e) => return Err(Refused(400, format!("malformed request: {e}"))),
    };
    let method = req.method.unwrap_or("GET");
    let target = target::upstream(method.as_bytes(), target::split(req.path.unwrap_or("/")))?;
    let http10 = req.version == Some(0);
    let mut keep_alive = !http10;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut host = false;
    let mut expect_continue = false;
    let mut xff: Option<&[u8]> = None;
    let mut named: Vec<&[u8]> = Vec::new();
    for h in req.headers.iter() {
        let n = h.name;
        if n.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| Refused(400, "bad content-length".into()))?;
            if length.is_some_and(|l| l != v) {
                return Err(Refused(400, "conflicting content-length".into()));
            }
            length = Some(v);
        } else if n.eq_ignore_ascii_case("transfer-encoding") {
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            if !last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(Refused(
                    400,
                    "a request transfer-encoding must end in chunked".into(),
                ));
            }
            chunked = true;
        } else if n.eq_ignore_ascii_case("host") {
            host = true;
        } else if n.eq_ignore_ascii_case("expect") {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if n.eq_ignore_ascii_case("x-forwarded-for") {
            xff = Some(h.value);
        } else if n.eq_ignore_ascii_case("connection") {
            connection_tokens(h.value, &mut keep_alive, &mut named);
        }
    }
    if !http10 && !host {
        return Err(Refused(
            400,
            "HTTP/1.1 request without a Host header".into(),
        ));
    }
    if chunked && length.is_some() {
        // Request smuggling territory (RFC 9112 §6.3): refuse rather than guess.
        return Err(Refused(
            400,
            "both transfer-encoding and content-length".into(),
        ));
    }
    let mut up = BytesMut::with_capacity(head_len + 64);
    up.put_slice(method.as_bytes());
    up.put_u8(b' ');
    up.put_slice(target.as_bytes());
    up.put_slice(if http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    put_headers(&mut up, req.headers, not_forwarded, &named);
    up.put_slice(b"x-forwarded-for: ");
    if let Some(prev) = xff {
        up.put_slice(prev);
        up.put_slice(b", ");
    }
    up.put_slice(peer_ip);
    up.put_slice(b"\r\n\r\n");
    let body = if chunked {
        ReqBody::Chunked
    } else {
        match length {
            Some(n) if n > 0 => ReqBody::Length(n),
            _ => ReqBody::None,
        }
    };
    Ok(Some(Parsed {
        head_len,
        upstream: up,
        head_request: method == "HEAD",
        idempotent: retry::idempotent(method.as_bytes()),
        http10,
        keep_alive,
        expect_continue,
        body,
    }))
}

fn reason(code: u16) -> &'static str {
    http::StatusCode::from_u16(code)
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or("")
}

/// A response made here, always with a length (a 503 with `Retry-After`).
fn local(code: u16, why: &str) -> Reply {
    let body = format!("{why}\n");
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
        reason(code),
        body.len()
    );
    if code == 503 {
        head.push_str(&format!("retry-after: {}\r\n", retry::RETRY_AFTER_S));
    }
    Reply {
        status: code,
        head: Bytes::from(head),
        body: ReplyBody::Done(Bytes::from(body)),
        close_delimited: false,
    }
}

/// Write a response; false if the client connection cannot be used after it.
async fn respond(
    s: &mut TcpStream,
    out: &mut BytesMut,
    reply: Reply,
    close: bool,
    http10: bool,
) -> bool {
    out.clear();
    out.put_slice(&reply.head);
    if close {
        out.put_slice(b"connection: close\r\n");
    } else if http10 {
        out.put_slice(b"connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
    match reply.body {
        ReplyBody::Done(b) => {
            out.put_slice(&b);
            s.write_all(out).await.is_ok()
        }
        ReplyBody::Stream(mut rx) => {
            if s.write_all(out).await.is_err() {
                return false;
            }
            while let Some(piece) = rx.recv().await {
                match piece {
                    Ok(p) => {
                        if s.write_all(&p).await.is_err() {
                            return false;
                        }
                    }
                    // The backend failed mid-body: the client must see the connection end.
                    Err(()) => return false,
                }
            }
            true
        }
    }
}

/// Answer a request the balancer refuses, then close without losing the answer (the client
/// may still be sending: a 200 kB head, a body over the limit): a lingering close.
async fn refuse(mut s: TcpStream, out: &mut BytesMut, reply: Reply, http10: bool) {
    if respond(&mut s, out, reply, true, http10).await {
        close_lingering(s).await;
    }
}

/// Serve one HTTP/1 client connection.
async fn client(front: &Front, mut s: TcpStream, peer: SocketAddr, st: &Conn) {
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::with_capacity(4096);
    let max_head = front.limits.max_header_bytes.max(8192);
    let peer_ip = peer.ip().to_string();
    loop {
        let parsed = loop {
            if !buf.is_empty() {
                match parse_request(&buf, peer_ip.as_bytes()) {
                    Ok(Some(p)) => break p,
                    Ok(None) if buf.len() >= max_head => {
                        let r = local(431, "request head too large");
                        return refuse(s, &mut out, r, false).await;
                    }
                    Ok(None) => {}
                    Err(Refused(code, why)) => {
                        return refuse(s, &mut out, local(code, &why), false).await;
                    }
                }
            }
            if !read_more(&mut s, &mut buf).await {
                return;
            }
        };
        // A body that keeps arriving is activity; one that stops is cut off like a slow head.
        st.started();
        buf.advance(parsed.head_len);
        let Parsed {
            mut upstream,
            head_request,
            idempotent,
            http10,
            keep_alive,
            expect_continue,
            body,
            ..
        } = parsed;
        // The body, whole: a retry must be able to send it again.
        match body {
            ReqBody::None => {}
            ReqBody::Length(n) => {
                if n > front.max_body {
                    let r = local(413, &too_large(front.max_body));
                    return refuse(s, &mut out, r, http10).await;
                }
                if expect_continue
                    && buf.len() < n
                    && s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err()
                {
                    return;
                }
                while buf.len() < n {
                    if !read_body(&mut s, &mut buf, st).await {
                        return;
                    }
                }
                upstream.put_slice(&buf[..n]);
                buf.advance(n);
            }
            ReqBody::Chunked => {
                if expect_continue && s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
                    return;
                }
                let mut framing = Chunked::new();
                loop {
                    match framing.feed(&buf) {
                        Ok((n, done)) => {
                            if upstream.len() + n > front.max_body + 64 * 1024 {
                                let r = local(413, &too_large(front.max_body));
                                return refuse(s, &mut out, r, http10).await;
                            }
                            upstream.put_slice(&buf[..n]);
                            buf.advance(n);
                            if done {
                                break;
                            }
                        }
                        Err(_) => {
                            let r = local(400, "malformed chunked request body");
                            return refuse(s, &mut out, r, http10).await;
                        }
                    }
                    if !read_body(&mut s, &mut buf, st).await {
                        return;
                    }
                }
            }
        }
        st.busy(true);
        let req = Outgoing {
            bytes: upstream.freeze(),
            head_request,
            exclusive: !idempotent || http10,
        };
        let reply = forward(front, req, idempotent).await;
        let close = !keep_alive || reply.close_delimited || st.stopping();
        let ok = respond(&mut s, &mut out, reply, close, http10).await;
        st.busy(false);
        if close || !ok {
            let _ = s.shutdown().await;
            return;
        }
    }
}

fn too_large(max: usize) -> String {
    format!("request body over the balancer's limit of {max} bytes")
}

/// Send a request to a backend, and once more to another when the policy says so
/// ([`crate::retry`]).
async fn forward(front: &Front, req: Outgoing, idempotent: bool) -> Reply {
    let sent = retry::attempt(
        &front.backends,
        front.algorithm,
        &front.turn,
        idempotent,
        |b| {
            let (rx, conn) = front.pool.submit(
                b.addr,
                Outgoing {
                    bytes: req.bytes.clone(),
                    head_request: req.head_request,
                    exclusive: req.exclusive,
                },
            );
            async move {
                match tokio::time::timeout(front.timeout, rx).await {
                    Ok(Ok(r)) => r,
                    // The connection was closed under the request (the balancer is stopping).
                    Ok(Err(_)) => Err(Fail::Abandoned("connection closed by the balancer".into())),
                    Err(_) => {
                        // Whatever is queued behind it would wait as long.
                        conn.retire();
                        Err(Fail::Timeout(front.timeout))
                    }
                }
            }
        },
    )
    .await;
    sent.unwrap_or_else(|Refused(code, why)| local(code, &why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> &'static [u8] {
        b"10.1.2.3"
    }

    #[test]
    fn requests_are_rewritten_for_the_backend() {
        let data: &[u8] = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Forwarded-For: 1.1.1.1\r\nAccept: */*\r\n\r\nNEXT";
        let p = parse_request(data, peer()).ok().flatten().unwrap();
        assert_eq!(
            std::str::from_utf8(&p.upstream).unwrap(),
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nx-forwarded-for: 1.1.1.1, 10.1.2.3\r\n\r\n"
        );
        assert!(p.keep_alive && p.idempotent && !p.http10 && p.head_len == data.len() - 4);
        let p = parse_request(b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n", peer())
            .ok()
            .flatten()
            .unwrap();
        assert!(!p.keep_alive && !p.idempotent && p.http10);
        assert!(matches!(p.body, ReqBody::Length(3)));
        let p = parse_request(
            b"GET http://h/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            peer(),
        )
        .ok()
        .flatten()
        .unwrap();
        assert!(p.upstream.starts_with(b"GET /x HTTP/1.1\r\n"));
        assert!(matches!(p.body, ReqBody::Chunked));
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        let code = |r: &[u8]| match parse_request(r, peer()) {
            Err(Refused(c, _)) => c,
            Ok(Some(_)) => 200,
            Ok(None) => 0,
        };
        assert_eq!(code(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(code(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
        assert_eq!(code(b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 501);
        assert_eq!(
            code(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: z\r\n\r\n"),
            400
        );
        assert_eq!(code(b"\x01\x02 / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(code(b"GET / HTTP/1.1\r\nHost: x\r\n"), 0);
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(101));
        assert_eq!(code(many.as_bytes()), 431);
    }
}

/// Arbitrary bytes from a client: no panic, and a request, a wait or a refusal that fits them.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            Just(b"Host: a".to_vec()),
            Just(b"Content-Length: 3".to_vec()),
            Just(b"Transfer-Encoding: chunked".to_vec()),
            Just(b"Connection: close, X-A".to_vec()),
            Just(b"X-Forwarded-For: 1.2.3.4".to_vec()),
            Just(b"Expect: 100-continue".to_vec()),
            "[ -~]{0,40}".prop_map(String::into_bytes),
            vec(any::<u8>(), 0..40),
        ];
        prop_oneof![
            vec(any::<u8>(), 0..2048),
            (
                "(GET|POST|HEAD|PUT|CONNECT|[A-Z]{1,8})",
                "(/|/[ -~]{0,30}|http://h/x|https://h)",
                "HTTP/1\\.[01]",
                vec(line, 0..120),
                1..3usize,
            )
                .prop_map(|(m, t, v, mut lines, ends)| {
                    // CRLF-joined; two empty lines at the end make a complete head.
                    lines.insert(0, format!("{m} {t} {v}").into_bytes());
                    lines.extend(std::iter::repeat_n(Vec::new(), ends));
                    lines.join(&b"\r\n"[..])
                }),
        ]
    }

    /// A request, a wait or a refusal that fits `data`.
    fn fits(data: &[u8]) -> Result<(), TestCaseError> {
        match parse_request(data, b"10.0.0.1") {
            Ok(Some(p)) => {
                prop_assert!(p.head_len <= data.len());
                // What the backend gets is a head of its own, ending in a blank line.
                prop_assert!(p.upstream.ends_with(b"\r\n\r\n"));
                prop_assert!(p.upstream.windows(17).any(|w| w == b"x-forwarded-for: "));
            }
            Ok(None) => {}
            Err(Refused(code, why)) => {
                prop_assert!([400, 431, 501].contains(&code), "{} {}", code, why);
            }
        }
        Ok(())
    }

    /// The rare shapes the random search finds only sometimes: absolute-form targets with and
    /// without a path, each with and without a Host line.
    #[test]
    fn absolute_form_targets_parse_or_are_refused() {
        for target in [
            "https://h",
            "http://h",
            "http://h/x",
            "http://h:80",
            "http://",
            "h://",
        ] {
            for host in ["", "Host: a\r\n"] {
                let head = format!("GET {target} HTTP/1.1\r\n{host}\r\n");
                fits(head.as_bytes()).unwrap_or_else(|e| panic!("{head:?}: {e}"));
            }
        }
    }

    proptest! {
        #[test]
        fn a_request_head_parses_waits_or_is_refused(data in request_bytes()) {
            fits(&data)?;
        }
    }
}
