//! Cleartext connections served by a hand-written HTTP/1 loop: the balancer's client side, and
//! the quick answers ([`crate::quick`]) of `serve` and of the aggregator's ingest. [`serve`]
//! accepts (through [`server::accept`]), gives connections that open
//! with the HTTP/2 preface to hyper, and every other one to the caller's loop, which may hand
//! its connection to hyper at any point, with the bytes it has read but not answered
//! ([`Handoff`]).
//!
//! Timeouts cost no timer per request: a sweeper per thread looks at every connection a few
//! times per header timeout and closes those that started no request in that time (slowloris,
//! idle keep-alive), and, once the server stops, those with nothing in flight. A connection
//! handed to hyper leaves the sweeper: [`server::serve_connection`] keeps its timeouts.

use crate::server::{self, Activity, ConnService, Limits, Phase, Stats};
use bytes::{Buf, BytesMut};
use hyper_util::rt::TokioIo;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// What the sweeper knows of one connection; its loop reports through it.
pub struct Conn {
    started: Cell<u64>,
    busy: Cell<bool>,
    /// Served by hyper, which keeps its own timeouts.
    hyper: Cell<bool>,
    seen: Cell<u64>,
    quiet_since: Cell<Option<Instant>>,
    abort: RefCell<Option<AbortHandle>>,
    phase: watch::Receiver<Phase>,
}

impl Conn {
    /// Something arrived that counts as activity: a request head, or a piece of a body (a
    /// body that keeps arriving is activity; one that stops is cut off like a slow head).
    pub fn started(&self) {
        self.started.set(self.started.get() + 1);
    }

    /// Whether a request is in flight (a busy connection is neither quiet nor closed on stop).
    pub fn busy(&self, busy: bool) {
        self.busy.set(busy);
    }

    /// Whether the server is stopping: answer what is in hand with `Connection: close`.
    pub fn stopping(&self) -> bool {
        *self.phase.borrow() == Phase::Stopping
    }
}

/// The connections of one thread.
struct Registry {
    conns: RefCell<HashMap<u64, Rc<Conn>>>,
    next: Cell<u64>,
    /// The accept loop has ended: the sweeper closes every idle connection.
    stopping: Cell<bool>,
}

/// Removes a connection from the registry however its task ends (finished or aborted).
struct Registered {
    id: u64,
    reg: Rc<Registry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.reg.conns.borrow_mut().remove(&self.id);
    }
}

/// What a connection's loop returns: `Some` hands the connection to hyper, with the bytes read
/// and not answered (hyper reads them first); `None` closes it.
pub type Handoff = Option<(TcpStream, BytesMut)>;

/// Accept and serve connections until the phase is `Stopping` and every connection has
/// finished. `client` runs each HTTP/1 connection; `make` builds the hyper service for the
/// connections that speak HTTP/2 and those `client` hands over; `tick` runs at every sweep
/// (the balancer sweeps its upstream pool there). Must run inside a `LocalSet`.
pub async fn serve<F, S, C, Fut>(
    listener: std::net::TcpListener,
    limits: Limits,
    stats: Arc<Stats>,
    phase: watch::Receiver<Phase>,
    make: F,
    client: C,
    tick: impl FnMut() + 'static,
) -> io::Result<()>
where
    F: Fn(SocketAddr, Arc<Activity>) -> S + 'static,
    S: ConnService,
    C: Fn(TcpStream, SocketAddr, Rc<Conn>) -> Fut + 'static,
    Fut: Future<Output = Handoff> + 'static,
{
    let (make, client, limits) = (Rc::new(make), Rc::new(client), Rc::new(limits));
    let reg = Rc::new(Registry {
        conns: RefCell::new(HashMap::new()),
        next: Cell::new(0),
        stopping: Cell::new(false),
    });
    let sweeper = tokio::task::spawn_local(sweep(reg.clone(), limits.header_timeout, tick));
    let phases = phase.clone();
    let conns = server::accept(listener, &limits, &stats, phase, |stream, peer, open| {
        let id = reg.next.get();
        reg.next.set(id + 1);
        let conn = Rc::new(Conn {
            started: Cell::new(0),
            busy: Cell::new(false),
            hyper: Cell::new(false),
            seen: Cell::new(0),
            quiet_since: Cell::new(None),
            abort: RefCell::new(None),
            phase: phases.clone(),
        });
        reg.conns.borrow_mut().insert(id, conn.clone());
        let registered = Registered {
            id,
            reg: reg.clone(),
        };
        let (make, client, limits, phase) =
            (make.clone(), client.clone(), limits.clone(), phases.clone());
        let c = conn.clone();
        let task = tokio::task::spawn_local(async move {
            let _guards = (open, registered);
            let (stream, read) = if opens_with_h2_preface(&stream).await {
                (stream, BytesMut::new())
            } else {
                match client(stream, peer, c.clone()).await {
                    Some(handoff) => handoff,
                    None => return,
                }
            };
            c.hyper.set(true);
            let activity = Arc::new(Activity::default());
            let svc = make(peer, activity.clone());
            let io = TokioIo::new(Prefixed { read, stream });
            server::serve_connection(io, svc, &limits, activity, phase).await;
        });
        *conn.abort.borrow_mut() = Some(task.abort_handle());
    })
    .await?;
    reg.stopping.set(true);
    close_quiet(&reg, true, Instant::now(), Duration::MAX);
    conns.finished().await;
    sweeper.abort();
    Ok(())
}

/// Whether the client's first bytes are the HTTP/2 connection preface (`PRI * HTTP/2.0`).
async fn opens_with_h2_preface(s: &TcpStream) -> bool {
    let mut p = [0u8; 3];
    for _ in 0..100 {
        match s.peek(&mut p).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if p[..n] != b"PRI"[..n] => return false,
            Ok(3) => return true,
            // A prefix of "PRI" so far: wait for more (rare; the sweeper bounds it).
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    false
}

/// Close connections that started no request for `limit`, or, once stopping, that have
/// nothing in flight.
fn close_quiet(reg: &Registry, stopping: bool, now: Instant, limit: Duration) {
    for c in reg.conns.borrow().values() {
        if c.hyper.get() {
            continue;
        }
        let idle = !c.busy.get();
        let started = c.started.get();
        let close = if stopping && idle {
            true
        } else if !idle || started != c.seen.get() || c.quiet_since.get().is_none() {
            c.seen.set(started);
            c.quiet_since.set(Some(now));
            false
        } else {
            c.quiet_since
                .get()
                .is_some_and(|q| now.duration_since(q) >= limit)
        };
        if close {
            if let Some(a) = c.abort.borrow().as_ref() {
                a.abort();
            }
        }
    }
}

async fn sweep(reg: Rc<Registry>, limit: Duration, mut tick: impl FnMut()) {
    let every = (limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        close_quiet(&reg, reg.stopping.get(), Instant::now(), limit);
        tick();
    }
}

/// How long a client may go on sending after its connection was closed for writing.
const LINGER: Duration = Duration::from_secs(2);

/// Close a connection whose answer was written without losing the answer: the client may
/// still be sending (a head too large, pipelined requests), and closing a socket with unread
/// input resets the connection, which can destroy the answer before the client reads it. So
/// send FIN and discard input until the client closes too, for at most 2 s (`LINGER`; what nginx
/// calls a lingering close).
pub async fn close_lingering(mut s: TcpStream) {
    if s.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Read more bytes into `buf`; false when the client closed or failed.
pub async fn read_more(s: &mut TcpStream, buf: &mut BytesMut) -> bool {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    matches!(s.read_buf(buf).await, Ok(n) if n > 0)
}

/// A stream that first yields bytes already read from it.
struct Prefixed {
    read: BytesMut,
    stream: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;

    /// A request handed to hyper when the server is already stopping is answered: hyper reads
    /// it before the stop asks the connection to close (without that order, about half of
    /// these would be dropped).
    #[tokio::test]
    async fn a_request_handed_over_while_stopping_is_answered() {
        for _ in 0..20 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let client = tokio::spawn(async move {
                let mut c = TcpStream::connect(addr).await.unwrap();
                let mut all = Vec::new();
                c.read_to_end(&mut all).await.unwrap();
                String::from_utf8_lossy(&all).into_owned()
            });
            let (stream, _) = l.accept().await.unwrap();
            let (_tx, phase) = watch::channel(Phase::Stopping);
            let read =
                BytesMut::from(&b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"[..]);
            let svc = hyper::service::service_fn(|_req| async {
                let body = http_body_util::Full::new(Bytes::from_static(b"answered"));
                Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
            });
            let io = TokioIo::new(Prefixed { read, stream });
            let activity = Arc::new(Activity::default());
            server::serve_connection(io, svc, &Limits::default(), activity, phase).await;
            let answer = client.await.unwrap();
            assert!(
                answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("answered"),
                "{answer:?}"
            );
        }
    }
}
