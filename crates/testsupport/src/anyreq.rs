//! Arbitrary client requests, for the property tests that check no client input can harm a
//! server beyond its own answer (`balance`: a backend's health; `serve`: other clients).
//!
//! A request is any method, a target in each of the four forms of RFC 9112 §3.2 (origin,
//! absolute, authority, asterisk) or plain junk, headers hop-by-hop or not, a body framed by
//! length or chunks, sent as HTTP/1.0, HTTP/1.1 (raw bytes, nothing checked on the way) or
//! HTTP/2 (the h2 crate, which refuses to send what HTTP/2 cannot carry), by a client that
//! waits for the answer or leaves early. [`send`] returns the final status, if one came.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// HTTP/1.0 request line, raw bytes.
    Http10,
    /// HTTP/1.1, raw bytes.
    Http11,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
}

/// The request target, by form (RFC 9112 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/path?query`.
    Origin(String),
    /// `http://host/path`: as sent to proxies.
    Absolute(String),
    /// `host:port`: CONNECT's form.
    Authority(String),
    /// `*`: OPTIONS's form.
    Asterisk,
    /// Whatever printable text.
    Junk(String),
}

impl Target {
    /// As written on an HTTP/1 request line.
    pub fn text(&self) -> &str {
        match self {
            Target::Origin(s) | Target::Absolute(s) | Target::Authority(s) | Target::Junk(s) => s,
            Target::Asterisk => "*",
        }
    }
}

/// The request body, by framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body, no framing header.
    None,
    /// `content-length`.
    Length(Vec<u8>),
    /// `transfer-encoding: chunked` (HTTP/1 only; over HTTP/2 the bytes go as data).
    Chunked(Vec<u8>),
}

/// When the client goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// After the final answer's head.
    AfterAnswer,
    /// Right after the request is written.
    AfterSending,
    /// Half-way through the body (the whole request when there is none).
    MidBody,
}

/// One request as a client may send it.
#[derive(Debug, Clone)]
pub struct AnyRequest {
    /// HTTP/1.0, HTTP/1.1 or HTTP/2.
    pub client: Client,
    /// Any token, or not a token.
    pub method: String,
    /// In any form.
    pub target: Target,
    /// A `host` header (HTTP/1) or `:authority` (HTTP/2).
    pub host: bool,
    /// Beside the framing headers, which follow from `body`.
    pub headers: Vec<(String, String)>,
    /// The body and its framing.
    pub body: Body,
    /// When the client goes away.
    pub leave: Leave,
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "PRI",
        ])
        .prop_map(String::from),
        1 => "[A-Z]{1,8}",
        1 => "[!-~]{1,6}",
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        2 => "/[a-z0-9/?=&%.*-]{0,16}".prop_map(Target::Origin),
        // serve's routes, so that some requests get real answers of each kind.
        2 => prop::sample::select(vec![
            "/", "/version", "/readyz", "/delay?ms=2", "/status/503", "/status/101",
            "/bytes/70000", "/echo", "/blocks?size=10&n=2&periodMS=1", "/metrics",
        ])
        .prop_map(|s| Target::Origin(s.into())),
        2 => prop::sample::select(vec![
            "http://h", "http://h/p?q=1", "https://x.example:8443/a", "http://h?x=1",
            "HTTP://H/Z", "http://127.0.0.1:1/", "http://[::1]:9/x", "http://",
        ])
        .prop_map(|s| Target::Absolute(s.into())),
        2 => prop::sample::select(vec![
            "h:443", "127.0.0.1:80", "example.com:8080", "[::1]:1", "h",
        ])
        .prop_map(|s| Target::Authority(s.into())),
        2 => Just(Target::Asterisk),
        1 => "[!-~]{1,12}".prop_map(Target::Junk),
    ]
}

fn header() -> impl Strategy<Value = (String, String)> {
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    prop_oneof![
        4 => prop::sample::select(vec![
            pair("connection", "close"),
            pair("connection", "keep-alive, x-a"),
            pair("x-a", "1"),
            pair("upgrade", "websocket"),
            pair("upgrade", "h2c"),
            pair("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
            pair("te", "trailers"),
            pair("expect", "100-continue"),
            pair("x-forwarded-for", "1.2.3.4"),
            pair("proxy-connection", "keep-alive"),
            pair("keep-alive", "timeout=5"),
            pair("host", "other.example:81"),
            pair("accept", "*/*"),
            pair("content-type", "application/json"),
        ]),
        1 => ("[a-z-]{1,12}", "[ -~]{0,24}"),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        3 => Just(Body::None),
        1 => vec(any::<u8>(), 0..64).prop_map(Body::Length),
        1 => vec(any::<u8>(), 1..64).prop_map(Body::Chunked),
    ]
}

/// Any request (see the module doc).
pub fn any_request() -> impl Strategy<Value = AnyRequest> {
    (
        prop_oneof![
            1 => Just(Client::Http10),
            3 => Just(Client::Http11),
            3 => Just(Client::Http2),
        ],
        method(),
        target(),
        prop::bool::weighted(0.9),
        vec(header(), 0..4),
        body(),
        prop_oneof![
            6 => Just(Leave::AfterAnswer),
            1 => Just(Leave::AfterSending),
            1 => Just(Leave::MidBody),
        ],
    )
        .prop_map(
            |(client, method, target, host, headers, body, leave)| AnyRequest {
                client,
                method,
                target,
                host,
                headers,
                body,
                leave,
            },
        )
}

/// An ordinary `GET /` with a Host, waiting for the answer: the request that must still
/// work after any others.
pub fn plain_get(client: Client) -> AnyRequest {
    AnyRequest {
        client,
        method: "GET".into(),
        target: Target::Origin("/".into()),
        host: true,
        headers: vec![],
        body: Body::None,
        leave: Leave::AfterAnswer,
    }
}

/// How long to wait for an answer: the servers under test answer at once or refuse.
const WAIT: Duration = Duration::from_secs(5);

/// Send `r` to `addr` on a new connection; the final status when the client waited for one
/// and one came (`None`: the client left, the server closed, or HTTP/2 refused to carry it).
pub fn send(addr: SocketAddr, r: &AnyRequest) -> Option<u16> {
    match r.client {
        Client::Http10 | Client::Http11 => send_h1(addr, r),
        Client::Http2 => send_h2(addr, r),
    }
}

fn send_h1(addr: SocketAddr, r: &AnyRequest) -> Option<u16> {
    let version = if r.client == Client::Http10 {
        "1.0"
    } else {
        "1.1"
    };
    let mut head = format!("{} {} HTTP/{version}\r\n", r.method, r.target.text());
    if r.host {
        head.push_str("host: a.example\r\n");
    }
    for (n, v) in &r.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    let body: Vec<u8> = match &r.body {
        Body::None => Vec::new(),
        Body::Length(b) => {
            head.push_str(&format!("content-length: {}\r\n", b.len()));
            b.clone()
        }
        Body::Chunked(b) => {
            head.push_str("transfer-encoding: chunked\r\n");
            let mut c = format!("{:x}\r\n", b.len()).into_bytes();
            c.extend_from_slice(b);
            c.extend_from_slice(b"\r\n0\r\n\r\n");
            c
        }
    };
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    let whole = bytes.len() + body.len();
    bytes.extend_from_slice(&body);
    if r.leave == Leave::MidBody {
        bytes.truncate(whole - body.len() / 2);
    }
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(WAIT)).ok()?;
    s.set_write_timeout(Some(WAIT)).ok()?;
    s.write_all(&bytes).ok()?;
    if r.leave != Leave::AfterAnswer {
        return None;
    }
    final_status(&mut s)
}

/// Read response heads until a final (non-1xx) one; its status.
fn final_status(s: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let code = resp.code?;
                    if !(100..200).contains(&code) {
                        return Some(code);
                    }
                    buf.drain(..n);
                }
                Ok(httparse::Status::Partial) => break,
                Err(_) => return None,
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn send_h2(addr: SocketAddr, r: &AnyRequest) -> Option<u16> {
    let method = http::Method::from_bytes(r.method.as_bytes()).ok()?;
    let authority = if r.host {
        Some(http::uri::Authority::try_from(addr.to_string()).ok()?)
    } else {
        None
    };
    let uri = match &r.target {
        Target::Absolute(s) => s.parse::<http::Uri>().ok()?,
        Target::Authority(a) => http::Uri::builder().authority(a.as_str()).build().ok()?,
        t => {
            let mut parts = http::uri::Parts::default();
            if let Some(a) = authority {
                parts.scheme = Some(http::uri::Scheme::HTTP);
                parts.authority = Some(a);
            }
            parts.path_and_query = Some(t.text().parse().ok()?);
            http::Uri::from_parts(parts).ok()?
        }
    };
    let mut req = http::Request::builder().method(method).uri(uri);
    for (n, v) in &r.headers {
        req = req.header(n.as_str(), v.as_str());
    }
    let data: Option<Vec<u8>> = match &r.body {
        Body::None => None,
        Body::Length(b) => {
            req = req.header("content-length", b.len());
            Some(b.clone())
        }
        Body::Chunked(b) => Some(b.clone()),
    };
    let req = req.body(()).ok()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (client, conn) = h2::client::handshake(tcp).await.ok()?;
        let driver = tokio::spawn(conn);
        let mut client = client.ready().await.ok()?;
        // h2 refuses what HTTP/2 cannot carry (connection headers, say): nothing is sent.
        let (resp, mut stream) = client.send_request(req, data.is_none()).ok()?;
        if let Some(mut d) = data {
            if r.leave == Leave::MidBody {
                d.truncate(d.len() / 2);
                let _ = stream.send_data(Bytes::from(d), false);
                flush().await;
                return None;
            }
            stream.send_data(Bytes::from(d), true).ok()?;
        }
        if r.leave != Leave::AfterAnswer {
            flush().await;
            driver.abort();
            return None;
        }
        let code = tokio::time::timeout(WAIT, resp)
            .await
            .ok()?
            .ok()?
            .status()
            .as_u16();
        Some(code)
    })
}

/// Let the connection task (on this current-thread runtime) write what is queued: writes to
/// a loopback socket do not block, so a few turns are enough.
async fn flush() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}
