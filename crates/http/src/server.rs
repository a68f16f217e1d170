//! Server side of the HTTP plumbing: listening sockets, the accept loop with its limits, and the
//! graceful drain that `serve` and `balance` share.
//!
//! Each worker thread ([`crate::runner`]) owns one SO_REUSEPORT listener on the same address and
//! its own runtime (the kernel spreads connections, nothing is shared on the hot path). [`accept`]
//! is the one accept loop (connection limit, open count, stop on `Stopping`): at the limit it
//! stops accepting and new connections wait in the listen backlog ([`BACKLOG`]) until one
//! closes, as nginx and haproxy do, rather than being accepted and closed; [`serve`] runs it
//! with hyper for every connection (HTTP/1.1 and HTTP/2, h2c by prior knowledge or TLS with
//! ALPN), and [`crate::front`] runs it for hand-written HTTP/1 connections (the balancer's
//! client side, `serve`'s quick answers), which hand HTTP/2 and what they do not answer to
//! [`serve_connection`] here. Limits bound what a
//! client can hold: open connections, time to send a request head (slowloris; for HTTP/1.1 it
//! also bounds keep-alive idle time), header size (431), idle time, and HTTP/2 streams.
//!
//! Draining goes through [`Phase`]: `Draining` only tells the application (e.g. readiness);
//! `Stopping` closes the listeners and asks every connection to finish gracefully
//! (`Connection: close` after the in-flight response on HTTP/1.1, GOAWAY on HTTP/2).

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

/// Where a server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Serving normally.
    Serving,
    /// Still serving everything, but telling health checks it is going away.
    Draining,
    /// Listeners closed; connections finish what they have and close.
    Stopping,
}

/// What a client may hold on to.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections per server (over all threads); at the limit the server stops
    /// accepting, and new connections wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Time to send a complete request head (and the TLS handshake); for HTTP/1.1 it also
    /// bounds the wait for the next request on a keep-alive connection.
    pub header_timeout: Duration,
    /// A connection with no request for this long is closed gracefully.
    pub idle_timeout: Duration,
    /// Largest request head, in bytes (at least 8 KiB); larger heads get 431.
    pub max_header_bytes: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub max_h2_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            max_h2_streams: 256,
        }
    }
}

/// Connections each listener's kernel queue holds that the server has not accepted yet (at
/// its connection limit, or between two turns of its accept loop). Linux caps it at
/// `net.core.somaxconn` (4096 by default since 5.4). When the queue is full the kernel drops
/// new SYNs (`net.ipv4.tcp_abort_on_overflow` = 0, the default) and clients send them again: a
/// slower connect, never a reset.
pub const BACKLOG: i32 = 4096;

/// Bind `threads` listeners to `addr` with SO_REUSEPORT (port 0 picks one port for all), each
/// with a listen backlog of [`BACKLOG`].
///
/// SO_REUSEPORT would also let this process silently share a port that another process holds,
/// splitting the traffic between them; a plain bind first makes that an "address in use" error.
pub fn bind(addr: SocketAddr, threads: usize) -> io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        let probe = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
    }
    let mut out = Vec::new();
    let mut addr = addr;
    for _ in 0..threads.max(1) {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(BACKLOG)?;
        let l: std::net::TcpListener = s.into();
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// Counts of what a server holds, shared by all its threads.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Times an accept loop stopped accepting at the connection limit (the connections that
    /// came meanwhile waited in the listen backlog).
    pub paused: AtomicU64,
    /// Wakes the accept loops paused at the limit when a connection closes.
    freed: Notify,
}

/// What a connection is doing, for its timeouts; touched by every request, so no clock reads:
/// a periodic check compares the request count with what it saw last time.
#[derive(Debug, Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    started: AtomicU64,
    h2: std::sync::atomic::AtomicBool,
}

impl Activity {
    /// `answer` counted as a request of this connection from start to end (`h2`: over
    /// HTTP/2): what a service does with each request, unless it counts them itself.
    pub async fn during<T>(&self, h2: bool, answer: impl std::future::Future<Output = T>) -> T {
        self.begin(h2);
        let out = answer.await;
        self.end();
        out
    }

    /// A request started on this connection (`h2`: over HTTP/2).
    pub fn begin(&self, h2: bool) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
    }

    /// A request's response head was handed to hyper.
    pub fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// How long this connection may go without starting a request: a request head must come
    /// within the header timeout (slowloris, and HTTP/1.1 keep-alive idle time); a connection
    /// known to speak HTTP/2 gets the idle timeout between requests.
    fn quiet_limit(&self, limits: &Limits) -> Duration {
        if self.h2.load(Ordering::Relaxed) {
            limits.idle_timeout
        } else {
            limits.header_timeout
        }
    }
}

/// An error a service or body may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A hyper service for one connection, as [`serve`] and [`serve_connection`] take it (any
/// `Service` whose futures and bodies can move between threads qualifies).
pub trait ConnService:
    Service<
        Request<Incoming>,
        Response = Response<Self::Body>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Send
    + 'static
{
    /// The response body.
    type Body: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> ConnService for S
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type Body = B;
}

/// Until the phase is `Stopping` (or its sender is gone).
pub async fn stopping(phase: &mut watch::Receiver<Phase>) {
    // The guard `wait_for` returns is dropped here, not held across the caller's awaits.
    let _ = phase.wait_for(|p| *p == Phase::Stopping).await;
}

/// The connections one accept loop handed out, so that its owner can wait for them to finish.
#[derive(Debug, Default)]
pub struct Conns {
    open: AtomicUsize,
    ended: Notify,
}

impl Conns {
    /// Wait until every connection handed out has finished (its [`Open`] was dropped).
    pub async fn finished(&self) {
        // One waiter (the loop's owner): a notification sent while it checks is kept for it.
        while self.open.load(Ordering::Acquire) > 0 {
            self.ended.notified().await;
        }
    }
}

/// One accepted connection, counted open (in [`Stats`] and in its loop's [`Conns`]) until it
/// is dropped: keep it in the connection's task.
#[derive(Debug)]
pub struct Open {
    stats: Arc<Stats>,
    conns: Arc<Conns>,
    /// The connection limit: closing at or over it wakes the paused accept loops.
    limit: usize,
}

impl Drop for Open {
    fn drop(&mut self) {
        // A loop pauses only when it sees the count at (or over) the limit, and until the next
        // close the count can only grow: that close sees it there too, so none is missed.
        if self.stats.open.fetch_sub(1, Ordering::AcqRel) >= self.limit {
            self.stats.freed.notify_waiters();
        }
        if self.conns.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.conns.ended.notify_one();
        }
    }
}

/// Until fewer than `limit` connections are open; false if the phase became `Stopping` first.
async fn room(stats: &Stats, limit: usize, phase: &mut watch::Receiver<Phase>) -> bool {
    // Below the limit (nearly always) without touching the Notify's lock.
    if stats.open.load(Ordering::Acquire) < limit {
        return true;
    }
    let mut paused = false;
    loop {
        // Registered before the count is read, so a close between the two still wakes it.
        let freed = stats.freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if stats.open.load(Ordering::Acquire) < limit {
            return true;
        }
        if !paused {
            paused = true;
            stats.paused.fetch_add(1, Ordering::Relaxed);
        }
        tokio::select! {
            _ = freed => {}
            _ = stopping(phase) => return false,
        }
    }
}

/// The accept loop every server here runs: accept from `listener` until the phase is
/// `Stopping`, and hand every connection to `conn` (which spawns its task). At the connection
/// limit it stops calling accept until a connection closes: new ones wait in the kernel's
/// backlog (a client sees a slower answer, not a reset). Then the listener is closed; the
/// connections are not waited for: that is what the returned [`Conns`] is for.
pub async fn accept(
    listener: std::net::TcpListener,
    limits: &Limits,
    stats: &Arc<Stats>,
    mut phase: watch::Receiver<Phase>,
    mut conn: impl FnMut(TcpStream, SocketAddr, Open),
) -> io::Result<Arc<Conns>> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let conns = Arc::new(Conns::default());
    let limit = limits.max_connections;
    loop {
        if !room(stats, limit, &mut phase).await {
            break;
        }
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    // Threads that saw room at once may each take one: the limit can be
                    // passed by at most the threads less one, never by a growing number.
                    stats.open.fetch_add(1, Ordering::AcqRel);
                    conns.open.fetch_add(1, Ordering::AcqRel);
                    let _ = stream.set_nodelay(true);
                    let open = Open { stats: stats.clone(), conns: conns.clone(), limit };
                    conn(stream, peer, open);
                }
                // Out of descriptors or similar: give the system a moment rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            _ = stopping(&mut phase) => break,
        }
    }
    Ok(conns)
}

/// Accept and serve connections from `listener` with hyper until the phase is `Stopping` and
/// every connection has finished. `make` builds the service for one connection. Runs on the
/// current tokio runtime.
pub async fn serve<F, S>(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    stats: Arc<Stats>,
    phase: watch::Receiver<Phase>,
    make: F,
) -> io::Result<()>
where
    F: Fn(SocketAddr, Arc<Activity>) -> S,
    S: ConnService,
{
    let limits = Arc::new(limits);
    let phases = phase.clone();
    let conns = accept(listener, &limits, &stats, phase, |stream, peer, open| {
        let activity = Arc::new(Activity::default());
        let svc = make(peer, activity.clone());
        let (tls, limits, phase) = (tls.clone(), limits.clone(), phases.clone());
        tokio::spawn(async move {
            let _open = open;
            match tls {
                None => serve_connection(TokioIo::new(stream), svc, &limits, activity, phase).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    if let Ok(Ok(s)) = tokio::time::timeout(limits.header_timeout, handshake).await
                    {
                        serve_connection(TokioIo::new(s), svc, &limits, activity, phase).await;
                    }
                }
            }
        });
    })
    .await?;
    conns.finished().await;
    Ok(())
}

/// Serve one accepted connection with hyper (HTTP/1.1 or HTTP/2), with the quiet-connection
/// timeouts and the graceful close on `Stopping` that [`serve`] gives its connections.
pub async fn serve_connection<I, S>(
    io: I,
    svc: S,
    limits: &Limits,
    activity: Arc<Activity>,
    mut phase: watch::Receiver<Phase>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: ConnService,
{
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // hyper's own header timer costs a timer per request; the check below does the same job
    // once per connection and period.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_h2_streams)
        .max_header_list_size(limits.max_header_bytes as u32);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    // Asked to close (quiet, or the server is stopping).
    let mut closing = false;
    // When a quiet connection that was asked to close is dropped if still open. A stopping
    // server sets no such time: its caller's shutdown timeout decides.
    let mut drop_at: Option<Instant> = None;
    // Quiet = no request in flight and none started since the last look.
    let mut seen = u64::MAX;
    let mut quiet_since = Instant::now();
    loop {
        let limit = activity.quiet_limit(limits);
        let next_look =
            drop_at.unwrap_or_else(|| Instant::now() + (limit / 4).max(Duration::from_millis(10)));
        // The connection first: one handed over with a request already read (`front`) is
        // read before a stop asks it to close, so that request is answered, not dropped.
        tokio::select! {
            biased;
            _ = conn.as_mut() => break,
            r = phase.wait_for(|p| *p == Phase::Stopping), if !closing => {
                let _ = r;
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(next_look.into()), if drop_at.is_some() || !closing => {
                if drop_at.is_some() {
                    // Asked to close and still here past the grace: drop it.
                    break;
                }
                let started = activity.started.load(Ordering::Relaxed);
                let busy = activity.in_flight.load(Ordering::Relaxed) > 0;
                if busy || started != seen {
                    seen = started;
                    quiet_since = Instant::now();
                } else if quiet_since.elapsed() >= limit {
                    closing = true;
                    drop_at = Some(Instant::now() + CLOSE_GRACE);
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// After a quiet connection is asked to close, how long it has before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Whether `headers` carry `Authorization: Bearer <token>` (control endpoints of serve's
/// peers: the balancer's admin API, the aggregator's writes). Compared without an early exit,
/// so that timing does not tell how much of a token was right.
pub fn bearer_ok(headers: &http::HeaderMap, token: &str) -> bool {
    bearer_value_ok(
        headers
            .get(http::header::AUTHORIZATION)
            .map(http::HeaderValue::as_bytes),
        token,
    )
}

/// [`bearer_ok`] of an `Authorization` header's value (`None`: no header), for servers that
/// read heads themselves ([`crate::quick`]).
pub fn bearer_value_ok(value: Option<&[u8]>, token: &str) -> bool {
    // As `HeaderValue::to_str` takes it: visible ASCII and tabs only.
    value
        .filter(|v| v.iter().all(|b| *b == b'\t' || (0x20..0x7f).contains(b)))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| token_eq(t.trim(), token))
}

/// `given == token`, in a time that does not depend on where they differ.
pub fn token_eq(given: &str, token: &str) -> bool {
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_held_by_another_socket_is_reported_in_use() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = bind(held.local_addr().unwrap(), 2).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // And a listener group of our own shares one port.
        let ls = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = ls[0].local_addr().unwrap().port();
        assert!(ls.iter().all(|l| l.local_addr().unwrap().port() == port));
        // Another process's group on that port is refused too.
        assert_eq!(
            bind(ls[0].local_addr().unwrap(), 1).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
    }
}
