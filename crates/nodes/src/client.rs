//! Clients for thousands of hollow nodes: a bounded pool of kube-rs clients, each over ONE
//! HTTP/2 connection ([`kapi::conn`]: ALPN over TLS, prior knowledge over `http://`), so that
//! every watch is a stream and never a connection of its own. kube-rs's stock client
//! negotiates HTTP/1.1 only, where each open watch holds a connection; `Transport::Http1`
//! keeps that client for servers that do not speak HTTP/2.
//!
//! Watches and short calls never share a connection. A server caps the streams open at once
//! on a connection (`SETTINGS_MAX_CONCURRENT_STREAMS`: 100 on kube-apiserver ≥ 1.28.3 /
//! 1.27.7 / 1.26.10, 250 before, 1000 on aggregated API servers), and a request over the cap
//! is not sent at all until a stream ends: behind watches that is minutes. So the pool reads
//! the cap once on a probe connection ([`kapi::conn::Connector::max_streams`]), fills watch
//! connections to a tenth below it ([`budget`]), and gives calls connections of their own,
//! enough for every call the traffic lanes let through at once, each call holding one of its
//! connection's stream permits. A call that finds no permit free waits, and is counted apart
//! ([`StreamWaits`]). Watches that come and go (a kubelet's reflector per Secret or
//! ConfigMap its pods mount, [`Pool::object_watch`]) take a stream permit on connections of
//! their own, opened as they are needed.

use crate::Error;
use kube::Client;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How the clients reach the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP/2: watches fill connections of their own, calls have others.
    Http2 {
        /// Long-lived streams (watches) per connection; `None`: the server's limit less a
        /// tenth ([`budget`]), which is also the most this may be.
        streams_per_connection: Option<usize>,
    },
    /// kube-rs's own client: HTTP/1.1, a connection per concurrent request (and per watch).
    Http1,
}

/// Watches per connection when the server names no limit (and over HTTP/1.1, where the
/// figure only sizes the pool).
pub const DEFAULT_STREAMS: usize = 100;

/// Streams to use on a connection whose server allows `limit` at once: a tenth fewer (at least
/// one fewer), so that a stream still closing, or a server whose limit is lowered, never makes
/// a request wait; at least 1.
pub fn budget(limit: usize) -> usize {
    limit.saturating_sub((limit / 10).max(1)).max(1)
}

/// Calls that found no free stream on their connection.
#[derive(Debug, Default)]
pub struct StreamWaits {
    /// Calls that waited for a stream (then were sent, or not).
    pub waited: AtomicU64,
    /// Of those, calls that got none within the per-call timeout: never sent.
    pub none: AtomicU64,
}

/// One connection for calls, and its stream permits.
struct CallConn {
    client: Client,
    streams: Arc<Semaphore>,
}

/// A connection's stream, held for one call; its permit goes back when this is dropped.
pub struct Stream {
    /// The client to make the call with.
    pub client: Client,
    _permit: OwnedSemaphorePermit,
}

/// Clients to share: watches fill their connections one after another, calls go round-robin
/// over connections of their own and take a stream permit each.
pub struct Pool {
    calls: Vec<CallConn>,
    watch_clients: Vec<Client>,
    /// Connections for watches that come and go, opened as needed (HTTP/2 with a limit).
    object_conns: Mutex<Vec<CallConn>>,
    connector: Option<kapi::conn::Connector>,
    next_call: AtomicUsize,
    watches: AtomicUsize,
    per_conn: usize,
    /// Calls that waited for a stream.
    pub waits: StreamWaits,
    described: String,
    warning: Option<String>,
}

impl Pool {
    /// A pool for `watches` long-lived watches and `calls` calls at once at most (see
    /// [`crate::Config::watches`] and [`crate::Config::calls_at_once`]). Over HTTP/2 it first reads the server's stream limit on a
    /// connection of its own; fails when the server cannot be reached.
    pub async fn connect(
        config: &kube::Config,
        transport: Transport,
        watches: usize,
        calls: usize,
    ) -> Result<Pool, Error> {
        let bad = |e: kapi::Error| Error::Usage(format!("kube client: {e}"));
        let streams_per_connection = match transport {
            Transport::Http1 => {
                let mut c = config.clone();
                // A watch is quiet for minutes between events; the read timeout must not end it.
                c.read_timeout = None;
                let client =
                    Client::try_from(c).map_err(|e| Error::Usage(format!("kube client: {e}")))?;
                return Ok(Pool::of(vec![client], "http/1.1 (a connection per watch)"));
            }
            Transport::Http2 {
                streams_per_connection,
            } => streams_per_connection,
        };
        let conn = kapi::conn::Connector::new(config).map_err(bad)?;
        let limit = conn
            .max_streams()
            .await
            .map_err(|e| Error::Api(e.to_string()))?;
        let (per_conn, call_budget, warning, limit_text) = match limit {
            // ALPN chose HTTP/1.1: hyper's pool opens a connection per request at once.
            None => (
                streams_per_connection.unwrap_or(DEFAULT_STREAMS),
                Semaphore::MAX_PERMITS,
                None,
                "the server chose HTTP/1.1".to_string(),
            ),
            Some(limit) if limit > 1_000_000 => (
                streams_per_connection.unwrap_or(DEFAULT_STREAMS),
                streams_per_connection.unwrap_or(DEFAULT_STREAMS),
                None,
                "the server sets no stream limit".to_string(),
            ),
            Some(limit) => {
                let most = budget(limit);
                let warning = streams_per_connection.filter(|&n| n > most).map(|n| {
                    format!(
                        "--streams-per-connection {n}: the server allows {limit} streams per \
                         HTTP/2 connection; using {most}, a tenth below its limit"
                    )
                });
                (
                    streams_per_connection.unwrap_or(most).min(most),
                    most,
                    warning,
                    format!("the server allows {limit} streams per connection"),
                )
            }
        };
        let per_conn = per_conn.max(1);
        let watch_conns = watches.div_ceil(per_conn).max(1);
        let call_conns = calls.max(1).div_ceil(call_budget).max(1);
        let client = || conn.client(true).map_err(bad);
        let watch_clients = (0..watch_conns)
            .map(|_| client())
            .collect::<Result<Vec<_>, _>>()?;
        let calls = (0..call_conns)
            .map(|_| {
                Ok(CallConn {
                    client: client()?,
                    streams: Arc::new(Semaphore::new(call_budget)),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let budget_text = if call_budget == Semaphore::MAX_PERMITS {
            String::new()
        } else {
            format!(" (≤ {call_budget} streams each)")
        };
        let connector = (call_budget != Semaphore::MAX_PERMITS).then_some(conn);
        Ok(Pool {
            object_conns: Mutex::new(Vec::new()),
            connector,
            described: format!(
                "http/2 ({limit_text}): ≤ {per_conn} watches on each of {watch_conns} \
                 connections, calls on {call_conns} of their own{budget_text}"
            ),
            calls,
            watch_clients,
            next_call: AtomicUsize::new(0),
            watches: AtomicUsize::new(0),
            per_conn,
            waits: StreamWaits::default(),
            warning,
        })
    }

    /// A pool of existing clients (tests; or one client shared with other work): calls and
    /// watches on all of them, no stream budget.
    pub fn of(clients: Vec<Client>, described: &str) -> Pool {
        let calls = clients
            .iter()
            .map(|c| CallConn {
                client: c.clone(),
                streams: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            })
            .collect();
        Pool {
            calls,
            watch_clients: clients,
            object_conns: Mutex::new(Vec::new()),
            connector: None,
            next_call: AtomicUsize::new(0),
            watches: AtomicUsize::new(0),
            per_conn: usize::MAX,
            waits: StreamWaits::default(),
            described: described.into(),
            warning: None,
        }
    }

    /// A stream for the next short call, if one is free now: round-robin, then any
    /// connection with a permit left.
    pub fn try_call(&self) -> Option<Stream> {
        let start = self.next_call.fetch_add(1, Ordering::Relaxed);
        (0..self.calls.len()).find_map(|k| {
            let c = &self.calls[(start + k) % self.calls.len()];
            c.streams.clone().try_acquire_owned().ok().map(|p| Stream {
                client: c.client.clone(),
                _permit: p,
            })
        })
    }

    /// A stream for the next short call, waiting for one when all are taken.
    pub async fn call(&self) -> Stream {
        if let Some(s) = self.try_call() {
            return s;
        }
        let i = self.next_call.fetch_add(1, Ordering::Relaxed) % self.calls.len();
        let c = &self.calls[i];
        let p = c
            .streams
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        Stream {
            client: c.client.clone(),
            _permit: p,
        }
    }

    /// The client for one more long-lived watch.
    pub fn watch(&self) -> Client {
        let n = self.watches.fetch_add(1, Ordering::Relaxed);
        let i = if self.per_conn == usize::MAX {
            n % self.watch_clients.len()
        } else {
            (n / self.per_conn) % self.watch_clients.len()
        };
        self.watch_clients[i].clone()
    }

    /// A stream for a watch that comes and goes (a kubelet's reflector of one Secret or
    /// ConfigMap), held as long as the watch runs: on a connection of such watches with a
    /// permit free, or on a new one (at most as many streams as on a watch connection).
    /// Without a stream limit (HTTP/1.1, HTTP/2 without one): the watch clients in turn.
    pub fn object_watch(&self) -> Stream {
        let unlimited = || {
            let n = self.watches.fetch_add(1, Ordering::Relaxed);
            Stream {
                client: self.watch_clients[n % self.watch_clients.len()].clone(),
                _permit: Arc::new(Semaphore::new(1))
                    .try_acquire_owned()
                    .expect("a fresh permit"),
            }
        };
        let Some(connector) = &self.connector else {
            return unlimited();
        };
        let mut conns = self.object_conns.lock().expect("lock");
        for c in conns.iter() {
            if let Ok(p) = c.streams.clone().try_acquire_owned() {
                return Stream {
                    client: c.client.clone(),
                    _permit: p,
                };
            }
        }
        let Ok(client) = connector.client(true) else {
            return unlimited();
        };
        let streams = Arc::new(Semaphore::new(self.per_conn.max(1)));
        let p = streams.clone().try_acquire_owned().expect("a fresh permit");
        conns.push(CallConn {
            client: client.clone(),
            streams,
        });
        Stream { client, _permit: p }
    }

    /// Connections (HTTP/2: for watches, for calls, and for watches that come and go) or
    /// clients (HTTP/1.1).
    pub fn len(&self) -> usize {
        if self.per_conn == usize::MAX {
            self.watch_clients.len()
        } else {
            self.watch_clients.len()
                + self.calls.len()
                + self.object_conns.lock().expect("lock").len()
        }
    }

    /// Never: a pool has at least one client.
    pub fn is_empty(&self) -> bool {
        self.watch_clients.is_empty()
    }

    /// As reported: the protocol, the server's limit, how the connections are used.
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// One line for the user when `--streams-per-connection` asked for more streams than
    /// the server allows with headroom.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }
}
