//! HTTP plumbing shared by every scaletest component that talks HTTP.
//!
//! Client side (used by the load engine, later by loadbots):
//! - [`Origin`]: a validated `scheme://host:port` with its resolved socket address.
//! - [`Request`]: a request prepared once (HTTP/1.1 wire bytes, HTTP/2 parts) and sent many times.
//! - [`Connector`] opens a [`Lane`]: a connection (HTTP/1.1) or one stream slot of a shared
//!   connection (HTTP/2) that carries one request at a time. Adding a protocol means adding a
//!   lane type here; the engine's driver loop does not change.
//! - [`ErrorClass`]: how a failed request is counted. A failure is data, not an `Err` to
//!   propagate: the engine counts it and carries on.
//!
//! HTTP/1.1 on the wire ([`wire`], with [`Chunked`]): response heads, body framing and chunked
//! bodies, for the client here and the balancer's upstream connections alike.
//!
//! Server side (used by `serve` and `balance`): [`runner`] starts the threads and runtimes and
//! moves them through their phases; [`server`] binds SO_REUSEPORT listeners and runs the accept
//! loop with its limits and graceful drain, serving connections with hyper; [`front`] runs
//! hand-written HTTP/1 connections (the sweeper's timeouts, the hand-off to hyper): the
//! balancer's client side, and [`quick`], `serve`'s fixed answers; [`tls`] builds server
//! configs. Every server accepts through [`server::accept`] (`serve`, `balance` with its own
//! HTTP/1 client side and admin API, `kapi`'s watch metrics); client sockets are opened here for the load
//! engine, and by the balancer itself (pipelined upstream connections, hyper-util's pool,
//! health checks) and by kube-rs.
//!
//! [`stamp`]: the wall clock as Unix seconds and random tokens, and [`spec::SpecError`]: why a
//! spec cannot run, naming its fields, for every crate above.

pub mod blocking;
mod chunked;
mod error;
pub mod front;
mod h1;
mod h2lane;
mod origin;
pub mod quick;
mod request;
pub mod runner;
pub mod server;
pub mod spec;
pub mod stamp;
mod stream;
pub mod tls;
pub mod wire;

pub use chunked::{BadChunk, Chunked};
pub use error::ErrorClass;
pub use h1::H1Conn;
pub use h2lane::H2Conn;
pub use origin::{Origin, OriginError, Scheme};
pub use request::Request;
pub use tls::TlsOptions;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Methods that may be sent twice (RFC 9110 §9.2.2): retried after a connection failure that
/// the server may not have seen.
pub fn idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE" | b"TRACE"
    )
}

/// Bytes read from and written to the network, counted at the socket by the lanes of one
/// worker thread (over TLS: the plaintext, after decryption and before encryption).
pub type ByteCounter = Rc<ByteCounts>;

/// The counts behind a [`ByteCounter`].
#[derive(Debug, Default)]
pub struct ByteCounts {
    /// Bytes read.
    pub read: Cell<u64>,
    /// Bytes written.
    pub written: Cell<u64>,
}

/// Which HTTP version a connector speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2: ALPN `h2` over TLS, prior-knowledge h2c over cleartext.
    Http2,
}

/// Opens connections to one origin.
#[derive(Clone)]
pub struct Connector {
    origin: Origin,
    protocol: Protocol,
    tls: Option<tokio_rustls::TlsConnector>,
    connect_timeout: Duration,
}

/// The result of one request that got a complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The answering server's version, from its [`VERSION_HEADER`] (empty when absent).
    pub version: VersionTag,
}

/// The response header in which a server names its version (`scaletest serve` sends it), so a
/// rolling update can be watched from the client side.
pub const VERSION_HEADER: &str = "x-scaletest-version";

/// A short header value held inline, so reading it costs no allocation per response. Longer
/// values are cut at [`VersionTag::MAX`] bytes (version labels are short).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VersionTag {
    len: u8,
    bytes: [u8; VersionTag::MAX],
}

impl VersionTag {
    /// Longest value kept, in bytes.
    pub const MAX: usize = 31;

    /// A tag holding `value` (cut at [`VersionTag::MAX`] bytes).
    pub fn new(value: &[u8]) -> VersionTag {
        let n = value.len().min(Self::MAX);
        let mut bytes = [0u8; Self::MAX];
        bytes[..n].copy_from_slice(&value[..n]);
        VersionTag {
            len: n as u8,
            bytes,
        }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// No version header was sent.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value as text (invalid UTF-8 replaced).
    pub fn to_text(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

impl std::fmt::Debug for VersionTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_text())
    }
}

impl Connector {
    /// A connector for `origin`. TLS settings apply only to `https` origins.
    pub fn new(
        origin: Origin,
        protocol: Protocol,
        tls: &TlsOptions,
        connect_timeout: Duration,
    ) -> Result<Self, tls::TlsError> {
        let tls = match origin.scheme {
            Scheme::Https => Some(tokio_rustls::TlsConnector::from(Arc::new(
                tls::client_config(tls, protocol)?,
            ))),
            Scheme::Http => None,
        };
        Ok(Connector {
            origin,
            protocol,
            tls,
            connect_timeout,
        })
    }

    /// The protocol this connector speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Open a TCP (and TLS) connection, classifying failures.
    pub async fn connect_stream(&self, bytes: &ByteCounter) -> Result<stream::Stream, ErrorClass> {
        let tcp =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.origin.addr))
                .await
            {
                Err(_) => return Err(ErrorClass::ConnectTimeout),
                Ok(Err(e)) => return Err(ErrorClass::from_connect_error(&e)),
                Ok(Ok(s)) => s,
            };
        // Small requests and responses: never wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let inner = match &self.tls {
            None => stream::Inner::Plain(tcp),
            Some(tls) => {
                let hs = tls.connect(self.origin.server_name.clone(), tcp);
                let s = match tokio::time::timeout(self.connect_timeout, hs).await {
                    Err(_) => return Err(ErrorClass::ConnectTimeout),
                    Ok(Err(_)) => return Err(ErrorClass::Tls),
                    Ok(Ok(s)) => s,
                };
                if self.protocol == Protocol::Http2 && s.get_ref().1.alpn_protocol() != Some(b"h2")
                {
                    // The server would not speak HTTP/2: a TLS-level negotiation failure.
                    return Err(ErrorClass::Tls);
                }
                stream::Inner::Tls(Box::new(s))
            }
        };
        Ok(stream::Stream::new(inner, bytes.clone()))
    }

    /// Open an HTTP/1.1 connection.
    pub async fn connect_h1(&self, bytes: &ByteCounter) -> Result<H1Conn, ErrorClass> {
        Ok(H1Conn::new(self.connect_stream(bytes).await?))
    }

    /// Open an HTTP/2 connection; its driver task is spawned on the current `LocalSet`.
    pub async fn connect_h2(&self, bytes: &ByteCounter) -> Result<H2Conn, ErrorClass> {
        let s = self.connect_stream(bytes).await?;
        H2Conn::handshake(s, self.connect_timeout).await
    }
}

/// One request at a time over one connection (HTTP/1.1) or one stream slot (HTTP/2). A lane
/// reconnects by itself: after a failure or a `Connection: close` the next request opens a new
/// connection, and the connect time counts in that request's latency.
pub enum Lane {
    /// An HTTP/1.1 lane owns its connection.
    H1(Option<H1Conn>),
    /// An HTTP/2 lane shares a connection with the other stream slots of the same connection.
    H2(Rc<H2Shared>),
}

/// The connection the stream slots of one HTTP/2 lane group share.
#[derive(Default)]
pub struct H2Shared {
    conn: std::cell::RefCell<Option<H2Conn>>,
    // Only one slot reconnects; the others wait for it and reuse its connection.
    connecting: tokio::sync::Mutex<()>,
}

impl H2Shared {
    fn ready(&self) -> Option<H2Conn> {
        self.conn
            .borrow()
            .as_ref()
            .filter(|c| c.is_ready())
            .cloned()
    }

    async fn get(&self, conn: &Connector, bytes: &ByteCounter) -> Result<H2Conn, ErrorClass> {
        if let Some(c) = self.ready() {
            return Ok(c);
        }
        let _guard = self.connecting.lock().await;
        if let Some(c) = self.ready() {
            return Ok(c);
        }
        let c = conn.connect_h2(bytes).await?;
        *self.conn.borrow_mut() = Some(c.clone());
        Ok(c)
    }
}

impl Lane {
    /// A lane that connects on its first request.
    pub fn new(protocol: Protocol) -> Lane {
        match protocol {
            Protocol::Http1 => Lane::H1(None),
            Protocol::Http2 => Lane::H2(Rc::new(H2Shared::default())),
        }
    }

    /// Another stream slot on the same HTTP/2 connection (for HTTP/1.1, a new lane).
    pub fn sibling(&self) -> Lane {
        match self {
            Lane::H1(_) => Lane::H1(None),
            Lane::H2(shared) => Lane::H2(shared.clone()),
        }
    }

    /// Connect now if not connected (used to warm a pool before the clock starts).
    pub async fn ensure_connected(
        &mut self,
        conn: &Connector,
        bytes: &ByteCounter,
    ) -> Result<(), ErrorClass> {
        match self {
            Lane::H1(c) => {
                if c.is_none() {
                    *c = Some(conn.connect_h1(bytes).await?);
                }
            }
            Lane::H2(shared) => {
                shared.get(conn, bytes).await?;
            }
        }
        Ok(())
    }

    /// Send `req` and read the whole response.
    pub async fn send(
        &mut self,
        conn: &Connector,
        req: &Request,
        bytes: &ByteCounter,
    ) -> Result<Response, ErrorClass> {
        match self {
            Lane::H1(slot) => {
                let (mut c, reused) = match slot.take() {
                    Some(c) => (c, true),
                    None => (conn.connect_h1(bytes).await?, false),
                };
                let mut r = c.request(req).await;
                // A kept-alive connection the server had closed while idle (its keep-alive
                // timeout): nothing came back, so the server never took the request. Send it
                // once more on a new connection, as HTTP clients do for idempotent requests;
                // counting it as a failure would report the generator's stale connection.
                if reused
                    && matches!(r, Err(ErrorClass::Reset))
                    && idempotent(req.method.as_str().as_bytes())
                {
                    c = conn.connect_h1(bytes).await?;
                    r = c.request(req).await;
                }
                // The connection goes back into the slot only if it stays usable.
                if r.as_ref().is_ok_and(|(_, keep)| *keep) {
                    *slot = Some(c);
                }
                r.map(|(resp, _)| resp)
            }
            Lane::H2(shared) => shared.get(conn, bytes).await?.request(req).await,
        }
    }
}
