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
//!
//! Here: the pool and its choice of connection, and each connection's writer; `read.rs`: its
//! reader (response heads, bodies, how it ended); `headers.rs`: hop-by-hop headers, for both
//! directions of the relay.

use crate::retry::Fail;
use bytes::{BufMut, Bytes, BytesMut};
use read::{read_responses, End};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::AbortHandle;

mod headers;
mod read;
#[cfg(test)]
mod tests;

pub(crate) use headers::{connection_tokens, hop_by_hop, put_headers};

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
