//! `scaletest serve`: the target service of the demo and of every benchmark.
//!
//! [`start`] validates nothing (the CLI did) and starts `st_http::runner`'s threads (one
//! SO_REUSEPORT listener, one single-threaded runtime each). Cleartext connections start on
//! `st_http::quick`, which answers bodiless GETs and HEADs of the routes `routes::fixed` names
//! itself and hands everything else to hyper and [`routes::handle`]; TLS connections (and all
//! with `hyper_only`) go to hyper on `st_http::server`'s accept loop from the start.
//!
//! [`Running`] drives the graceful shutdown: [`Running::drain`] turns `/readyz` to 503 at once
//! while everything is still served, [`Running::stop`] closes the listeners and asks
//! connections to finish, and [`Running::wait`] waits for them up to a timeout.

pub mod body;
pub mod metrics;
pub mod routes;

use bytes::Bytes;
use http::HeaderValue;
use st_http::quick;
use st_http::runner::{self, Servers, StartError};
use st_http::server::{self, Limits, Phase, Stats};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use routes::Bounds;

/// A validated server configuration.
#[derive(Clone)]
pub struct Config {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Worker threads, each with its own listener and runtime.
    pub threads: usize,
    /// Size of the body `/` answers.
    pub body_size: usize,
    /// Answered by `/version` and sent in `x-scaletest-version` on every response.
    pub version_label: String,
    /// Connection limits.
    pub limits: Limits,
    /// Request parameter bounds.
    pub bounds: Bounds,
    /// TLS (ALPN h2 and http/1.1); cleartext serves HTTP/1.1 and h2c.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Serve cleartext HTTP/1.1 with hyper only, without the quick path (for comparisons).
    pub hyper_only: bool,
}

impl Config {
    /// One thread on an ephemeral 127.0.0.1 port, a 13-byte body and default limits: the
    /// backend tests and examples start.
    pub fn loopback(version_label: &str) -> Config {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            threads: 1,
            body_size: 13,
            version_label: version_label.into(),
            limits: Limits::default(),
            bounds: Bounds::default(),
            tls: None,
            hyper_only: false,
        }
    }
}

/// What every request handler reads.
pub struct State {
    body: Bytes,
    chunk: Bytes,
    /// The version label and a newline: `/version`'s body.
    label_line: Bytes,
    version: HeaderValue,
    /// The quick path's header lines for plain and for text answers.
    plain_head: Vec<u8>,
    text_head: Vec<u8>,
    ready: AtomicBool,
    bounds: Bounds,
    metrics: metrics::Metrics,
}

/// A server that could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The version label cannot be an HTTP header value.
    #[error("--version-label {0:?} must be printable ASCII")]
    Label(String),
    /// The listeners or threads could not start.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// A running server.
pub struct Running {
    /// The bound address (the real port when 0 was asked for).
    pub addr: SocketAddr,
    state: Arc<State>,
    stats: Arc<Stats>,
    servers: Servers,
}

/// Bind and start serving.
pub fn start(cfg: Config) -> Result<Running, ServeError> {
    let version = HeaderValue::from_str(&cfg.version_label)
        .map_err(|_| ServeError::Label(cfg.version_label.clone()))?;
    let (listeners, addr) = runner::bind(cfg.bind, cfg.threads)?;
    let stats = Arc::new(Stats::default());
    let chunk = routes::chunk();
    let body = if cfg.body_size <= 13 {
        Bytes::from_static(&b"hello, world\n"[..cfg.body_size])
    } else {
        Bytes::from(vec![b'x'; cfg.body_size])
    };
    let state = Arc::new(State {
        body,
        chunk,
        label_line: Bytes::from(format!("{}\n", cfg.version_label)),
        plain_head: format!("x-scaletest-version: {}\r\n", cfg.version_label).into_bytes(),
        text_head: format!(
            "content-type: {}\r\nx-scaletest-version: {}\r\n",
            routes::TEXT,
            cfg.version_label
        )
        .into_bytes(),
        version,
        ready: AtomicBool::new(true),
        bounds: cfg.bounds.clone(),
        metrics: metrics::Metrics::new(stats.clone()),
    });
    let tls = cfg.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let mut servers = Servers::new();
    let (st, limits, hyper_only) = (state.clone(), cfg.limits.clone(), cfg.hyper_only);
    servers.per_thread("serve", listeners, stats.clone(), move |w| {
        let state = st.clone();
        let make = move |_peer: SocketAddr, activity: Arc<server::Activity>| {
            let state = state.clone();
            hyper::service::service_fn(move |req| {
                let (state, activity) = (state.clone(), activity.clone());
                async move {
                    let t0 = Instant::now();
                    activity.begin(req.version() == http::Version::HTTP_2);
                    state.metrics.begin();
                    let resp = routes::handle(&state, req).await;
                    state
                        .metrics
                        .end(resp.status().as_u16(), t0.elapsed().as_secs_f64());
                    activity.end();
                    Ok::<_, std::convert::Infallible>(resp)
                }
            })
        };
        let (tls, limits) = (tls.clone(), limits.clone());
        let quick = (tls.is_none() && !hyper_only).then(|| Rc::new(Quick(st.clone())));
        async move {
            let _ = match quick {
                Some(q) => quick::serve(w.listener, limits, w.stats, w.phase, make, q).await,
                None => server::serve(w.listener, tls, limits, w.stats, w.phase, make).await,
            };
        }
    })?;
    Ok(Running {
        addr,
        state,
        stats,
        servers,
    })
}

/// The quick path's answers: [`routes::fixed`], with the header lines made once.
struct Quick(Arc<State>);

impl quick::Responder for Quick {
    /// Never built: every POST is hyper's.
    type Admitted = ();

    fn answer(&self, target: &str) -> Option<quick::Answer<'_>> {
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        let f = routes::fixed(&self.0, path)?;
        Some(quick::Answer {
            status: f.status,
            headers: if f.text {
                &self.0.text_head
            } else {
                &self.0.plain_head
            },
            body: f.body,
        })
    }

    fn answered(&self, status: u16, took: Duration) {
        self.0.metrics.quick(status, took.as_secs_f64());
    }
}

impl Running {
    /// Start draining: `/readyz` answers 503 from now on; everything else is still served.
    pub fn drain(&self) {
        self.state.ready.store(false, Ordering::SeqCst);
        self.servers.set_phase(Phase::Draining);
    }

    /// Close the listeners and ask every connection to finish what it has and close.
    pub fn stop(&self) {
        self.state.ready.store(false, Ordering::SeqCst);
        self.servers.set_phase(Phase::Stopping);
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.stats.open.load(Ordering::Relaxed)
    }

    /// Wait for every connection to finish after [`Running::stop`], up to `timeout`. Returns
    /// how many connections were still open when it gave up (0: a clean stop).
    pub fn wait(self, timeout: Duration) -> usize {
        let open = self.stats.clone();
        if self.servers.wait(timeout) {
            0
        } else {
            open.open.load(Ordering::Relaxed).max(1)
        }
    }
}
