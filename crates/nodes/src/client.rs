//! Clients for thousands of hollow nodes: a bounded pool of kube-rs clients, each over ONE
//! HTTP/2 connection ([`kapi::conn`]: ALPN over TLS, prior knowledge over `http://`), so that
//! every watch is a stream and never a connection of its own. kube-rs's stock client
//! negotiates HTTP/1.1 only, where each open watch holds a connection; `Transport::Http1`
//! keeps that client for servers that do not speak HTTP/2.

use crate::Error;
use kube::Client;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How the clients reach the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP/2, `streams_per_connection` watches per connection at most.
    Http2 {
        /// Long-lived streams (watches) per connection; below the server's limit (the Go
        /// server's default is 250, hyper's 200) so that calls always find a free stream.
        streams_per_connection: usize,
    },
    /// kube-rs's own client: HTTP/1.1, a connection per concurrent request (and per watch).
    Http1,
}

impl Transport {
    /// As reported.
    pub fn name(&self) -> String {
        match self {
            Transport::Http2 {
                streams_per_connection,
            } => format!("http/2 (≤ {streams_per_connection} watches per connection)"),
            Transport::Http1 => "http/1.1 (a connection per watch)".into(),
        }
    }
}

/// Clients to share: calls go round-robin over all of them, watches fill one connection after
/// another.
pub struct Pool {
    clients: Vec<Client>,
    next_call: AtomicUsize,
    watches: AtomicUsize,
    per_conn: usize,
}

impl Pool {
    /// A pool over `connections` connections (one for `Http1`: its client pools by itself).
    pub fn new(
        config: &kube::Config,
        transport: Transport,
        connections: usize,
    ) -> Result<Pool, Error> {
        let (clients, per_conn) = match transport {
            Transport::Http1 => {
                let mut c = config.clone();
                // A watch is quiet for minutes between events; the read timeout must not end it.
                c.read_timeout = None;
                let client =
                    Client::try_from(c).map_err(|e| Error::Usage(format!("kube client: {e}")))?;
                (vec![client], usize::MAX)
            }
            Transport::Http2 {
                streams_per_connection,
            } => {
                let bad = |e: kapi::Error| Error::Usage(format!("kube client: {e}"));
                let conn = kapi::conn::Connector::new(config).map_err(bad)?;
                let v = (0..connections.max(1))
                    .map(|_| conn.client(true).map_err(bad))
                    .collect::<Result<Vec<_>, _>>()?;
                (v, streams_per_connection.max(1))
            }
        };
        Ok(Pool {
            clients,
            next_call: AtomicUsize::new(0),
            watches: AtomicUsize::new(0),
            per_conn,
        })
    }

    /// A pool of existing clients (tests; or one client shared with other work).
    pub fn of(clients: Vec<Client>) -> Pool {
        Pool {
            clients,
            next_call: AtomicUsize::new(0),
            watches: AtomicUsize::new(0),
            per_conn: usize::MAX,
        }
    }

    /// The client for the next short call.
    pub fn call(&self) -> Client {
        let i = self.next_call.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        self.clients[i].clone()
    }

    /// The client for one more long-lived watch.
    pub fn watch(&self) -> Client {
        let n = self.watches.fetch_add(1, Ordering::Relaxed);
        let i = if self.per_conn == usize::MAX {
            n % self.clients.len()
        } else {
            (n / self.per_conn) % self.clients.len()
        };
        self.clients[i].clone()
    }

    /// Connections (HTTP/2) or clients (HTTP/1.1).
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Never: a pool has at least one client.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// Connections HTTP/2 needs for `watches` long-lived streams, plus one for calls.
pub fn connections_for(watches: usize, streams_per_connection: usize) -> usize {
    1 + watches.div_ceil(streams_per_connection.max(1))
}
