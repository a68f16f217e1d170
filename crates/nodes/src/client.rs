//! Clients for thousands of hollow nodes: a bounded pool of kube-rs clients, each over ONE
//! HTTP/2 connection (ALPN `h2` over TLS, prior knowledge over `http://`), so that every
//! watch is a stream and never a connection of its own. kube-rs's stock client negotiates
//! HTTP/1.1 only, where each open watch holds a connection; `Transport::Http1` keeps that
//! client for servers that do not speak HTTP/2.

use crate::Error;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use kube::Client;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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
                let mut v = Vec::new();
                for _ in 0..connections.max(1) {
                    v.push(h2_client(config)?);
                }
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

/// One kube-rs client over one HTTP/2 connection, with the config's TLS, auth and headers.
fn h2_client(config: &kube::Config) -> Result<Client, Error> {
    let bad = |e: &dyn std::fmt::Display| Error::Usage(format!("kube client: {e}"));
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout.or(Some(Duration::from_secs(30))));
    let tls = config.rustls_client_config().map_err(|e| bad(&e))?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http2()
        .wrap_connector(http);
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            // Keep the one connection alive through quiet minutes.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_while_idle(true)
            .pool_idle_timeout(None)
            .build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(|e| bad(&e))?)
        .layer(config.extra_headers_layer().map_err(|e| bad(&e))?)
        .map_err(|e: hyper_util::client::legacy::Error| {
            Box::new(e) as Box<dyn std::error::Error + Send + Sync>
        })
        .service(client);
    Ok(Client::new(service, config.default_namespace.clone()))
}
