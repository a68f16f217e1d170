//! Upstream HTTP/1.1 connections that carry several requests at once (pipelining).
//!
//! Most of a proxy's cost on loopback is the kernel's: a send and a receive per request on each
//! side. Pipelining to the backends lets one write carry every request that arrived in one turn
//! of the event loop and one read bring back every response ready, which is what puts the
//! balancer well ahead of one-request-per-connection proxies (see BENCHMARKS.md).
//!
//! So a request goes first to a connection whose write is still pending in this turn (it joins
//! that write), then to the one with the fewest requests outstanding (an idle one first).
//!
//! Pipelining has one hazard, head-of-line blocking: a slow response delays those queued behind
//! it. So a request joins a busy connection only if that connection has fewer than `depth`
//! requests outstanding and its oldest one has waited less than [`STALL`]; otherwise it takes an
//! idle connection or opens a new one. Requests of one turn may still wait behind each other
//! (at most `depth` share a connection; `--pipeline 1` turns sharing off). A non-idempotent
//! request (and an HTTP/1.0 one) travels alone: it is sent on an idle connection and nothing
//! is queued behind it (RFC 9112 §9.3.2).
//!
//! Failures ([`crate::retry::Fail`]) carry what is known about the request, so that the retry
//! policy can tell: never sent (connect failed), announced unprocessed (the response before it
//! said `Connection: close`, after which a server must not process more), lost after sending
//! with no response byte, or answered with something that is not HTTP.

use crate::retry::Fail;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use st_http::wire::{self, BodyFraming, Framing};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::AbortHandle;

/// A busy connection whose oldest request has waited this long takes no more requests.
pub const STALL: Duration = Duration::from_millis(2);

/// How the upstream connections behave.
#[derive(Debug, Clone, Copy)]
pub struct PipeConfig {
    /// Most requests outstanding on one connection (1 turns pipelining off).
    pub depth: usize,
    /// Most connections per backend (per worker thread).
    pub max_conns: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// An unused connection is closed after this long.
    pub idle: Duration,
    /// A busy connection whose oldest request has waited this long takes no more ([`STALL`]).
    pub stall: Duration,
}

/// A request ready to go: its bytes as they go on the wire.
pub struct Outgoing {
    /// Request line, headers and body.
    pub bytes: Bytes,
    /// A HEAD request (its response has no body).
    pub head_request: bool,
    /// Travels alone: non-idempotent, or HTTP/1.0.
    pub exclusive: bool,
}

/// A response on its way to the client.
pub struct Reply {
    /// Its status code.
    pub status: u16,
    /// Status line and end-to-end headers, each ending in CRLF, without the blank line.
    pub head: Bytes,
    /// The body as framed on the wire (chunked bodies stay chunked).
    pub body: ReplyBody,
    /// The body ends when the connection does: the client connection must close after it.
    pub close_delimited: bool,
}

/// A response body: whole, or still arriving.
pub enum ReplyBody {
    /// All of it (possibly empty).
    Done(Bytes),
    /// Pieces as they arrive; an `Err` means the backend failed mid-body.
    Stream(mpsc::Receiver<Result<Bytes, ()>>),
}

struct Pending {
    tx: oneshot::Sender<Result<Reply, Fail>>,
    head_request: bool,
    exclusive: bool,
    since: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Takes no new requests (the backend announced close, or a request timed out).
    Closing,
    Dead,
}

/// One upstream connection.
pub struct Conn {
    out: RefCell<BytesMut>,
    queue: RefCell<VecDeque<Pending>>,
    wake_writer: Notify,
    state: Cell<State>,
    last_used: Cell<Instant>,
    tasks: RefCell<Vec<AbortHandle>>,
}

impl Conn {
    /// Take no new requests (e.g. one timed out: whatever is behind it would wait too).
    pub fn retire(&self) {
        if self.state.get() == State::Open {
            self.state.set(State::Closing);
        }
    }

    fn takes(&self, req: &Outgoing, cfg: &PipeConfig, now: Instant) -> Option<usize> {
        if self.state.get() != State::Open {
            return None;
        }
        let q = self.queue.borrow();
        let Some(oldest) = q.front() else {
            return Some(0);
        };
        let ok = !req.exclusive
            && q.len() < cfg.depth
            && now.duration_since(oldest.since) < cfg.stall
            && !q.iter().any(|p| p.exclusive);
        ok.then_some(q.len())
    }

    fn fail_all(&self, why: impl Fn() -> Fail) {
        for p in self.queue.borrow_mut().drain(..) {
            let _ = p.tx.send(Err(why()));
        }
    }
}

/// Every upstream connection of one worker thread.
pub struct Pool {
    cfg: PipeConfig,
    conns: RefCell<HashMap<SocketAddr, Vec<Rc<Conn>>>>,
}

/// What [`Pool::submit`] gives back: the response to come and the connection carrying it.
pub type Submitted = (oneshot::Receiver<Result<Reply, Fail>>, Rc<Conn>);

impl Pool {
    /// An empty pool.
    pub fn new(cfg: PipeConfig) -> Rc<Pool> {
        Rc::new(Pool {
            cfg,
            conns: RefCell::new(HashMap::new()),
        })
    }

    /// Queue a request to `addr`. Must run inside a `LocalSet`.
    pub fn submit(&self, addr: SocketAddr, req: Outgoing) -> Submitted {
        let now = Instant::now();
        let mut map = self.conns.borrow_mut();
        let list = map.entry(addr).or_default();
        list.retain(|c| c.state.get() != State::Dead);
        // A connection whose writer has not yet run in this turn comes first: the request
        // joins a write that happens anyway (one send, one receive for several requests);
        // then the one with the fewest requests outstanding.
        let mut best: Option<((bool, usize), &Rc<Conn>)> = None;
        for c in list.iter() {
            if let Some(n) = c.takes(&req, &self.cfg, now) {
                let key = (c.out.borrow().is_empty(), n);
                if best.is_none_or(|(m, _)| key < m) {
                    best = Some((key, c));
                }
            }
        }
        let conn = match best {
            Some((_, c)) => c.clone(),
            None if list.len() < self.cfg.max_conns => {
                let c = Conn::open(addr, self.cfg.connect_timeout);
                list.push(c.clone());
                c
            }
            // At the cap: queue on the least busy connection still open.
            None => match list
                .iter()
                .filter(|c| c.state.get() == State::Open)
                .min_by_key(|c| c.queue.borrow().len())
            {
                Some(c) => c.clone(),
                None => {
                    let c = Conn::open(addr, self.cfg.connect_timeout);
                    list.push(c.clone());
                    c
                }
            },
        };
        drop(map);
        let (tx, rx) = oneshot::channel();
        conn.out.borrow_mut().put_slice(&req.bytes);
        conn.queue.borrow_mut().push_back(Pending {
            tx,
            head_request: req.head_request,
            exclusive: req.exclusive,
            since: now,
        });
        conn.last_used.set(now);
        conn.wake_writer.notify_one();
        (rx, conn)
    }

    /// Close connections that are unused for the idle time or lead to backends no longer in
    /// `live`.
    pub fn sweep(&self, live: &[SocketAddr]) {
        let now = Instant::now();
        let mut map = self.conns.borrow_mut();
        map.retain(|addr, list| {
            let gone = !live.contains(addr);
            list.retain(|c| {
                let oldest = c.queue.borrow().front().map(|p| p.since);
                let unused = oldest.is_none()
                    && (gone || now.duration_since(c.last_used.get()) >= self.cfg.idle);
                // Retired after a timeout and still not answering (a black hole): its
                // requests were answered 504 already; free what it holds.
                let abandoned = c.state.get() == State::Closing
                    && oldest.is_some_and(|t| now.duration_since(t) >= self.cfg.idle);
                if c.state.get() == State::Dead || unused || abandoned {
                    c.state.set(State::Dead);
                    for t in c.tasks.borrow().iter() {
                        t.abort();
                    }
                    c.fail_all(|| Fail::Lost("abandoned: the backend stopped answering".into()));
                    return false;
                }
                true
            });
            !list.is_empty()
        });
    }

    /// Open connections to `addr` (for tests and metrics).
    pub fn open_to(&self, addr: SocketAddr) -> usize {
        self.conns.borrow().get(&addr).map_or(0, |l| {
            l.iter().filter(|c| c.state.get() != State::Dead).count()
        })
    }
}

impl Conn {
    fn open(addr: SocketAddr, connect_timeout: Duration) -> Rc<Conn> {
        let c = Rc::new(Conn {
            out: RefCell::new(BytesMut::with_capacity(4096)),
            queue: RefCell::new(VecDeque::new()),
            wake_writer: Notify::new(),
            state: Cell::new(State::Open),
            last_used: Cell::new(Instant::now()),
            tasks: RefCell::new(Vec::new()),
        });
        let task = tokio::task::spawn_local(run(c.clone(), addr, connect_timeout));
        c.tasks.borrow_mut().push(task.abort_handle());
        c
    }
}

async fn run(c: Rc<Conn>, addr: SocketAddr, connect_timeout: Duration) {
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            c.state.set(State::Dead);
            return c.fail_all(|| Fail::Connect(e.to_string()));
        }
        Err(_) => {
            c.state.set(State::Dead);
            return c.fail_all(|| Fail::Connect(format!("timed out after {connect_timeout:?}")));
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let c2 = c.clone();
    let writer = tokio::task::spawn_local(async move {
        loop {
            // Everything queued since the last write goes in one write.
            let bytes = c2.out.borrow_mut().split().freeze();
            if bytes.is_empty() {
                c2.wake_writer.notified().await;
                continue;
            }
            if wr.write_all(&bytes).await.is_err() {
                // The reader sees the failure too and fails what is queued.
                return;
            }
        }
    });
    c.tasks.borrow_mut().push(writer.abort_handle());
    let end = read_responses(&c, &mut rd).await;
    c.state.set(State::Dead);
    writer.abort();
    match end {
        // The backend said close: whatever is left was not processed.
        End::Announced => c.fail_all(|| Fail::Unsent),
        End::Lost(why) => c.fail_all(|| Fail::Lost(why.clone())),
        End::Malformed(why) => c.fail_all(|| Fail::Lost(format!("after a bad response: {why}"))),
    }
}

enum End {
    Announced,
    Lost(String),
    Malformed(String),
}

struct Head {
    len: usize,
    status: u16,
    interim: bool,
    keep_alive: bool,
    framing: Framing,
    /// Status line and end-to-end headers for the client.
    out: Bytes,
}

/// Headers that belong to one connection and are never relayed (RFC 9110 §7.6.1), besides
/// those the Connection header names. Transfer-Encoding is relayed: bodies keep their framing.
pub(crate) fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Read a Connection header's tokens: `close` and `keep-alive` set `keep_alive`; any other
/// token names a hop-by-hop header, collected in `named`.
pub(crate) fn connection_tokens<'a>(
    value: &'a [u8],
    keep_alive: &mut bool,
    named: &mut Vec<&'a [u8]>,
) {
    for t in value.split(|&b| b == b',').map(|t| t.trim_ascii()) {
        if t.eq_ignore_ascii_case(b"close") {
            *keep_alive = false;
        } else if t.eq_ignore_ascii_case(b"keep-alive") {
            *keep_alive = true;
        } else {
            named.push(t);
        }
    }
}

/// Copy headers as `name: value` lines, leaving out those `skip` names and those the
/// Connection header named (hop-by-hop either way). Shared by both directions of the relay.
pub(crate) fn put_headers(
    out: &mut BytesMut,
    headers: &[httparse::Header<'_>],
    skip: fn(&str) -> bool,
    named: &[&[u8]],
) {
    for h in headers {
        if skip(h.name)
            || named
                .iter()
                .any(|n| n.eq_ignore_ascii_case(h.name.as_bytes()))
        {
            continue;
        }
        out.put_slice(h.name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(h.value);
        out.put_slice(b"\r\n");
    }
}

/// Parse a backend's response head (the wire rules are `st_http::wire`'s) and write the head
/// the client gets, in the same pass over the headers.
fn parse_head(data: &[u8], head_request: bool) -> Result<Option<Head>, String> {
    let mut headers = wire::headers();
    let mut named: Vec<&[u8]> = Vec::new();
    let mut ignored = true;
    let head = wire::parse_response(data, head_request, &mut headers, |h| {
        if h.name.eq_ignore_ascii_case("connection") {
            connection_tokens(h.value, &mut ignored, &mut named);
        }
    })
    .map_err(|e| e.to_string())?;
    let Some(head) = head else { return Ok(None) };
    if head.status == 101 {
        // The client's Upgrade never reaches a backend (it is hop-by-hop), and the balancer
        // relays no other protocol.
        return Err("the backend switched protocols, which the balancer does not relay".into());
    }
    let mut out = BytesMut::new();
    if !head.interim {
        out.reserve(head.len + 16);
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(head.status.to_string().as_bytes());
        out.put_u8(b' ');
        out.put_slice(head.reason.as_bytes());
        out.put_slice(b"\r\n");
        put_headers(&mut out, head.headers, hop_by_hop, &named);
    }
    Ok(Some(Head {
        len: head.len,
        status: head.status,
        interim: head.interim,
        keep_alive: head.keep_alive,
        framing: head.framing,
        out: out.freeze(),
    }))
}

async fn fill(rd: &mut tokio::net::tcp::OwnedReadHalf, buf: &mut BytesMut) -> Result<bool, String> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
    match rd.read_buf(buf).await {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(e) => Err(e.to_string()),
    }
}

/// Read responses in order and hand each to the request at the head of the queue, until the
/// connection ends.
async fn read_responses(c: &Conn, rd: &mut tokio::net::tcp::OwnedReadHalf) -> End {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        // Every complete response in the buffer.
        while !buf.is_empty() {
            let head_request = match c.queue.borrow().front() {
                Some(p) => p.head_request,
                None => return End::Malformed("bytes from the backend with no request".into()),
            };
            let head = match parse_head(&buf, head_request) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    if let Some(p) = c.queue.borrow_mut().pop_front() {
                        let _ = p.tx.send(Err(Fail::Malformed(e.clone())));
                    }
                    return End::Malformed(e);
                }
            };
            buf.advance(head.len);
            if head.interim {
                continue;
            }
            let p = c.queue.borrow_mut().pop_front().expect("checked above");
            if !head.keep_alive {
                c.state.set(State::Closing);
            }
            let mut reply = Reply {
                status: head.status,
                head: head.out,
                body: ReplyBody::Done(Bytes::new()),
                close_delimited: matches!(head.framing, Framing::UntilClose),
            };
            let mut body = BodyFraming::new(head.framing);
            match body.feed(&buf) {
                // The common case: the whole body is here already.
                Ok((n, true)) => {
                    reply.body = ReplyBody::Done(buf.split_to(n).freeze());
                    let _ = p.tx.send(Ok(reply));
                }
                Ok((n, false)) => {
                    let (tx, rx) = mpsc::channel(8);
                    reply.body = ReplyBody::Stream(rx);
                    let _ = p.tx.send(Ok(reply));
                    let first = buf.split_to(n).freeze();
                    if let Err(e) = relay_body(body, first, &mut buf, rd, tx).await {
                        return End::Lost(e);
                    }
                    if head.framing == Framing::UntilClose {
                        return End::Lost("closed after a close-delimited body".into());
                    }
                }
                Err(_) => {
                    let _ = p.tx.send(Err(Fail::Malformed("bad chunked body".into())));
                    return End::Malformed("bad chunked body".into());
                }
            }
            if !head.keep_alive {
                return End::Announced;
            }
        }
        match fill(rd, &mut buf).await {
            Ok(true) => {}
            Ok(false) if buf.is_empty() => return End::Lost("closed by the backend".into()),
            Ok(false) => return End::Lost("closed in the middle of a response".into()),
            Err(e) => return End::Lost(e),
        }
    }
}

/// Pass a body that is not all here yet to the client as it arrives, starting with `first`,
/// the part that was. A client that went away does not stop the reading: the connection must
/// stay in step for the requests behind.
async fn relay_body(
    mut body: BodyFraming,
    first: Bytes,
    buf: &mut BytesMut,
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    tx: mpsc::Sender<Result<Bytes, ()>>,
) -> Result<(), String> {
    let mut tx = Some(tx);
    let (mut piece, mut done) = (first, false);
    loop {
        if !piece.is_empty() {
            if let Some(t) = &tx {
                if t.send(Ok(piece)).await.is_err() {
                    tx = None;
                }
            }
        }
        if done {
            return Ok(());
        }
        match fill(rd, buf).await {
            Ok(true) => {}
            Ok(false) if body.until_close() => return Ok(()),
            Ok(false) | Err(_) => {
                if let Some(t) = &tx {
                    let _ = t.send(Err(())).await;
                }
                return Err("closed in the middle of a body".into());
            }
        }
        let (take, end) = body.feed(buf).map_err(|_| "bad chunked body".to_string())?;
        (piece, done) = (buf.split_to(take).freeze(), end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_lose_hop_by_hop_headers_and_keep_their_framing() {
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: t=5\r\nContent-Length: 2\r\nX-Version: v1\r\n\r\nhi",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive && matches!(h.framing, Framing::Length(2)));
        assert_eq!(
            &h.out[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Version: v1\r\n"
        );
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(h.keep_alive && matches!(h.framing, Framing::Chunked));
        assert!(h.out.ends_with(b"Transfer-Encoding: chunked\r\n"));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert!(matches!(h.framing, Framing::None));
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive && matches!(h.framing, Framing::UntilClose));
        let h = parse_head(b"HTTP/1.1 100 Continue\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(h.interim);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le", false)
            .unwrap()
            .is_none());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        assert!(parse_head(b"HTTP/1.1 101 Switching\r\n\r\n", false).is_err());
    }

    use tokio::net::TcpListener;

    fn cfg() -> PipeConfig {
        PipeConfig {
            depth: 8,
            max_conns: 64,
            connect_timeout: Duration::from_secs(2),
            idle: Duration::from_secs(30),
            // Requests submitted back to back share a connection even on a loaded machine;
            // the test of stalls sets its own.
            stall: Duration::from_secs(1),
        }
    }

    fn get(path: &str) -> Outgoing {
        Outgoing {
            bytes: Bytes::from(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")),
            head_request: false,
            exclusive: false,
        }
    }

    /// A POST: it travels alone.
    fn post() -> Outgoing {
        Outgoing {
            bytes: Bytes::from_static(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
            head_request: false,
            exclusive: true,
        }
    }

    fn local_test(f: impl std::future::Future<Output = ()>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A test that waits for a connection that never comes fails instead of hanging CI.
        tokio::task::LocalSet::new()
            .block_on(&rt, async {
                tokio::time::timeout(Duration::from_secs(30), f).await
            })
            .expect("the test did not finish within 30 s");
    }

    /// Read from `s` until `n` request heads have arrived; returns the bytes.
    async fn read_requests(s: &mut TcpStream, n: usize) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while String::from_utf8_lossy(&got).matches("\r\n\r\n").count() < n {
            let k = s.read(&mut buf).await.unwrap();
            assert!(k > 0, "client closed early");
            got.extend_from_slice(&buf[..k]);
        }
        String::from_utf8(got).unwrap()
    }

    fn ok(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    async fn body(r: Result<Result<Reply, Fail>, oneshot::error::RecvError>) -> String {
        let reply = r.unwrap().unwrap();
        match reply.body {
            ReplyBody::Done(b) => String::from_utf8(b.to_vec()).unwrap(),
            ReplyBody::Stream(mut rx) => {
                let mut out = Vec::new();
                while let Some(p) = rx.recv().await {
                    out.extend_from_slice(&p.unwrap());
                }
                String::from_utf8(out).unwrap()
            }
        }
    }

    #[test]
    fn requests_of_one_turn_share_one_connection_and_answers_keep_their_order() {
        local_test(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let pool = Pool::new(cfg());
            let rxs: Vec<_> = (0..5)
                .map(|i| pool.submit(addr, get(&format!("/{i}"))).0)
                .collect();
            let (mut s, _) = l.accept().await.unwrap();
            let got = read_requests(&mut s, 5).await;
            let paths: Vec<&str> = got.lines().filter(|l| l.starts_with("GET")).collect();
            assert_eq!(paths.len(), 5, "{got}");
            assert!(paths
                .iter()
                .enumerate()
                .all(|(i, p)| p.starts_with(&format!("GET /{i} "))));
            // All answers in one write, the last one streamed in two pieces.
            let all: String = (0..4).map(|i| ok(&format!("r{i}"))).collect();
            s.write_all(format!("{all}HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nr4").as_bytes())
                .await
                .unwrap();
            let mut rxs = rxs.into_iter();
            let mut answers = Vec::new();
            for rx in rxs.by_ref().take(4) {
                answers.push(body(rx.await).await);
            }
            assert_eq!(answers, ["r0", "r1", "r2", "r3"]);
            assert_eq!(pool.open_to(addr), 1);
            s.write_all(b"tail").await.unwrap();
            assert_eq!(body(rxs.next().unwrap().await).await, "r4tail");
            // No second connection was made.
            assert!(tokio::time::timeout(Duration::from_millis(50), l.accept())
                .await
                .is_err());
        });
    }

    #[test]
    fn a_request_joins_the_write_pending_in_its_turn_before_an_idle_connection() {
        local_test(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let pool = Pool::new(cfg());
            // Two connections, then both idle: a POST travels alone, so the GET opens another.
            let (p, cp) = pool.submit(addr, post());
            let (g, cg) = pool.submit(addr, get("/g"));
            assert!(!Rc::ptr_eq(&cp, &cg));
            for _ in 0..2 {
                let (mut s, _) = l.accept().await.unwrap();
                read_requests(&mut s, 1).await;
                s.write_all(ok("w").as_bytes()).await.unwrap();
                // Keep the connection open for the rest of the test.
                tokio::task::spawn_local(async move {
                    let mut sink = [0u8; 1024];
                    while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
            assert_eq!(
                (body(p.await).await, body(g.await).await),
                ("w".into(), "w".into())
            );
            // Both idle now; two requests of one turn go out in one write on one of them.
            let (_x, cx) = pool.submit(addr, get("/x"));
            let (_y, cy) = pool.submit(addr, get("/y"));
            assert!(
                Rc::ptr_eq(&cx, &cy),
                "the second request took the other idle connection"
            );
            assert_eq!(pool.open_to(addr), 2);
        });
    }

    #[test]
    fn a_non_idempotent_request_travels_alone_and_a_stalled_connection_takes_no_more() {
        local_test(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            // A stall long enough that a loaded machine cannot make /a stale before /b is
            // submitted (the three submits below are synchronous), short enough to wait out.
            let stall = Duration::from_millis(300);
            let pool = Pool::new(PipeConfig { stall, ..cfg() });
            let (a, _) = pool.submit(addr, get("/a"));
            let (p, _) = pool.submit(addr, post());
            // Behind the POST nothing may queue: this GET joins the first connection.
            let (b, _) = pool.submit(addr, get("/b"));
            let (mut s1, _) = l.accept().await.unwrap();
            let (mut s2, _) = l.accept().await.unwrap();
            let g1 = read_requests(&mut s1, 1).await;
            let g2 = read_requests(&mut s2, 1).await;
            let (mut get_conn, mut post_conn, first) = if g1.starts_with("GET") {
                (s1, s2, g1)
            } else {
                (s2, s1, g2)
            };
            let mut gets = first;
            if gets.matches("\r\n\r\n").count() < 2 {
                gets.push_str(&read_requests(&mut get_conn, 1).await);
            }
            assert!(
                gets.contains("GET /a ") && gets.contains("GET /b "),
                "{gets}"
            );
            // Let the GET connection's oldest request go stale: the next one opens another.
            tokio::time::sleep(stall + Duration::from_millis(5)).await;
            let (c, _) = pool.submit(addr, get("/c"));
            let (mut s3, _) = l.accept().await.unwrap();
            assert!(read_requests(&mut s3, 1).await.starts_with("GET /c "));
            post_conn.write_all(ok("p").as_bytes()).await.unwrap();
            get_conn
                .write_all(format!("{}{}", ok("a"), ok("b")).as_bytes())
                .await
                .unwrap();
            s3.write_all(ok("c").as_bytes()).await.unwrap();
            assert_eq!(body(p.await).await, "p");
            assert_eq!(body(a.await).await, "a");
            assert_eq!(body(b.await).await, "b");
            assert_eq!(body(c.await).await, "c");
        });
    }

    #[test]
    fn failures_say_whether_the_backend_saw_the_request() {
        local_test(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let pool = Pool::new(cfg());
            // The first answer says close: the two behind it were not processed.
            let rxs: Vec<_> = (0..3)
                .map(|i| pool.submit(addr, get(&format!("/{i}"))).0)
                .collect();
            let (mut s, _) = l.accept().await.unwrap();
            read_requests(&mut s, 3).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx")
                .await
                .unwrap();
            drop(s);
            let mut rxs = rxs.into_iter();
            assert_eq!(body(rxs.next().unwrap().await).await, "x");
            for rx in rxs {
                assert!(matches!(rx.await.unwrap(), Err(Fail::Unsent)));
            }
            // Closed with no answer: lost, which only idempotent requests survive.
            let (rx, _) = pool.submit(addr, get("/lost"));
            let (mut s, _) = l.accept().await.unwrap();
            read_requests(&mut s, 1).await;
            drop(s);
            assert!(matches!(rx.await.unwrap(), Err(Fail::Lost(_))));
            // A bad head fails its request.
            let (rx, _) = pool.submit(addr, get("/bad"));
            let (mut s, _) = l.accept().await.unwrap();
            read_requests(&mut s, 1).await;
            s.write_all(b"NOT HTTP\r\n\r\n").await.unwrap();
            assert!(matches!(rx.await.unwrap(), Err(Fail::Malformed(_))));
            // Nobody listening: never sent.
            drop(l);
            let (rx, _) = pool.submit(addr, get("/refused"));
            assert!(matches!(rx.await.unwrap(), Err(Fail::Connect(_))));
        });
    }

    #[test]
    fn chunked_and_close_delimited_bodies_arrive_whole_as_framed() {
        local_test(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let pool = Pool::new(cfg());
            let (chunked, _) = pool.submit(addr, get("/chunked"));
            let (mut s, _) = l.accept().await.unwrap();
            read_requests(&mut s, 1).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n")
                .await
                .unwrap();
            let reply = chunked.await.unwrap().unwrap();
            assert!(!reply.close_delimited);
            let ReplyBody::Stream(mut rx) = reply.body else {
                panic!("half a body must stream")
            };
            s.write_all(b"5\r\npedia\r\n0\r\n\r\n").await.unwrap();
            let mut got = Vec::new();
            while let Some(p) = rx.recv().await {
                got.extend_from_slice(&p.unwrap());
            }
            assert_eq!(got, b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n");
            // The connection is still in step for the next request.
            let (until_close, _) = pool.submit(addr, get("/old"));
            read_requests(&mut s, 1).await;
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\nto the end")
                .await
                .unwrap();
            drop(s);
            let reply = until_close.await.unwrap();
            assert!(reply.as_ref().is_ok_and(|r| r.close_delimited));
            assert_eq!(body(Ok(reply)).await, "to the end");
        });
    }
}

/// Arbitrary bytes from a backend: no panic, and a head, a wait or an error that fits them;
/// the head written for the client is a head of its own, without one hop-by-hop header.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Bytes, or a response head with the headers the rewriting treats specially (Connection
    /// and what it names, the fixed hop-by-hop set) among arbitrary ones.
    fn response_bytes() -> impl Strategy<Value = Vec<u8>> {
        let special = prop_oneof![
            Just(b"Connection: close, X-A".to_vec()),
            Just(b"connection: keep-alive,x-b , ,".to_vec()),
            Just(b"X-A: 1".to_vec()),
            Just(b"x-b: 2".to_vec()),
            Just(b"Keep-Alive: timeout=5".to_vec()),
            Just(b"Proxy-Connection: close".to_vec()),
            Just(b"TE: trailers".to_vec()),
            Just(b"Upgrade: h2c".to_vec()),
            Just(b"Content-Length: 5".to_vec()),
            Just(b"Transfer-Encoding: chunked".to_vec()),
        ];
        // Mostly valid lines, so that many heads parse and their rewriting is checked.
        let line = prop_oneof![
            40 => special,
            20 => "[A-Za-z][A-Za-z0-9-]{0,11}:[ \t]?[ -~]{0,20}".prop_map(String::into_bytes),
            1 => "[ -~]{0,40}".prop_map(String::into_bytes),
            1 => vec(any::<u8>(), 0..40),
        ];
        prop_oneof![
            1 => vec(any::<u8>(), 0..2048),
            3 => (
                "HTTP/1\\.[01]",
                "(1[0-9][0-9]|101|[2-5][0-9][0-9]|[2-5][0-9][0-9]|0[0-9][0-9]|[0-9]{1,4})",
                "[ -~]{0,12}",
                vec(line, 0..12),
                prop_oneof![1 => Just(1), 3 => Just(2)],
            )
                .prop_map(|(v, code, reason, mut lines, ends)| {
                    // CRLF-joined; two empty lines at the end make a complete head.
                    lines.insert(0, format!("{v} {code} {reason}").into_bytes());
                    lines.extend(std::iter::repeat_n(Vec::new(), ends));
                    lines.join(&b"\r\n"[..])
                }),
        ]
    }

    /// The names the Connection headers of the complete head at the start of `data` list.
    fn connection_named(data: &[u8]) -> Vec<String> {
        let mut headers = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
        let mut r = httparse::Response::new(&mut headers);
        let _ = r.parse(data);
        r.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
            .filter(|t| !t.is_empty() && t != "close" && t != "keep-alive")
            .collect()
    }

    proptest! {
        #[test]
        fn a_backend_head_parses_waits_or_fails_and_is_rewritten_clean(
            data in response_bytes(),
            head_request: bool,
        ) {
            match parse_head(&data, head_request) {
                Ok(Some(h)) => {
                    prop_assert!(h.len <= data.len());
                    prop_assert_ne!(h.status, 101);
                    if h.interim {
                        prop_assert!(h.out.is_empty());
                        return Ok(());
                    }
                    // With the blank line the relay adds, the client's head parses on its own.
                    let mut out = h.out.to_vec();
                    out.extend_from_slice(b"\r\n");
                    let mut headers = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
                    let mut r = httparse::Response::new(&mut headers);
                    let n = r.parse(&out);
                    prop_assert!(
                        matches!(n, Ok(httparse::Status::Complete(n)) if n == out.len()),
                        "{:?} from {:?}",
                        String::from_utf8_lossy(&out),
                        String::from_utf8_lossy(&data)
                    );
                    prop_assert_eq!(r.code, Some(h.status));
                    let named = connection_named(&data);
                    for kept in r.headers.iter() {
                        prop_assert!(!hop_by_hop(kept.name), "{} relayed", kept.name);
                        prop_assert!(
                            !named.contains(&kept.name.to_ascii_lowercase()),
                            "{} relayed though Connection named it",
                            kept.name
                        );
                    }
                }
                Ok(None) => prop_assert!(data.len() <= wire::MAX_HEAD),
                Err(e) => prop_assert!(!e.is_empty()),
            }
        }
    }
}
