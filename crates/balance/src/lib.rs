//! `scaletest balance`: an L7 load balancer for HTTP/1.1 and HTTP/2, built to roll backends
//! under full load without failing a request.
//!
//! Flow, one module per step. Cleartext HTTP/1 clients, the main case, take the hand-written
//! path: [`front`] (parse, rewrite the head once) → [`pick`] (round-robin, least-requests, power
//! of two choices) → [`pipe`] (pipelined HTTP/1.1 connections to the backends). HTTP/2 and TLS
//! clients, and every client when the backends speak h2c, take the hyper path: accept
//! (`st_http::server`, shared with `serve`) → [`pick`] → [`forward`] (hyper-util's pool). Both
//! paths refuse the targets they cannot forward by one rule ([`target`]) and retry by one
//! policy ([`retry`]: once, on another backend, only when safe; only the backend's own
//! failures count against it). The
//! backend set ([`backends`]) changes from flags, a watched file and the admin API ([`admin`]),
//! and backend health from active checks of `/readyz` ([`health`]) and passive ejection on
//! connect errors; none of that touches the request path except through the swapped set and
//! per-backend atomics.

pub mod admin;
pub mod backends;
pub mod forward;
pub mod front;
pub mod health;
pub mod pick;
pub mod pipe;
pub mod retry;
pub mod target;

use backends::Backends;
use forward::Forwarder;
use health::HealthConfig;
use pick::Algorithm;
use st_http::runner::{self, Servers, StartError, Worker};
use st_http::server::{self, Limits, Phase};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

/// A validated balancer configuration.
#[derive(Clone)]
pub struct Config {
    /// Where clients connect.
    pub bind: SocketAddr,
    /// Worker threads.
    pub threads: usize,
    /// Backends to start with.
    pub backends: Vec<SocketAddr>,
    /// A file of backends, one per line, re-read when it changes.
    pub backends_file: Option<PathBuf>,
    /// How to pick.
    pub algorithm: Algorithm,
    /// Where the admin API listens.
    pub admin_bind: SocketAddr,
    /// The admin API's bearer token.
    pub admin_token: String,
    /// Active health checks.
    pub health: HealthConfig,
    /// Per-request timeout to a backend (connect included).
    pub timeout: Duration,
    /// Connect timeout to a backend.
    pub connect_timeout: Duration,
    /// Largest request body (bodies are buffered so that a retry can resend them).
    pub max_body: usize,
    /// Speak h2c to the backends instead of HTTP/1.1.
    pub backend_h2: bool,
    /// Most requests outstanding on one HTTP/1.1 backend connection (1: no pipelining).
    pub pipeline: usize,
    /// Serve HTTP/1 clients with hyper and the hyper-util pool too (the design the
    /// hand-written path replaced; kept so that benchmarks can compare the two).
    pub hyper_only: bool,
    /// Client connection limits.
    pub limits: Limits,
    /// TLS towards clients.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Config {
    /// A balancer in front of `backends`, its admin API guarded by `admin_token`, on ephemeral
    /// loopback ports (clients and admin API), one worker thread, and otherwise the defaults of
    /// `scaletest balance`: p2c, health checks of `/readyz` every second, 30 s per request,
    /// 2 s to connect, 8 MiB bodies, HTTP/1.1 to the backends pipelined 16 deep, cleartext.
    pub fn new(backends: Vec<SocketAddr>, admin_token: impl Into<String>) -> Config {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Config {
            bind: loopback,
            threads: 1,
            backends,
            backends_file: None,
            algorithm: Algorithm::PowerOfTwo,
            admin_bind: loopback,
            admin_token: admin_token.into(),
            health: HealthConfig::default(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            max_body: 8 << 20,
            backend_h2: false,
            pipeline: 16,
            hyper_only: false,
            limits: Limits::default(),
            tls: None,
        }
    }
}

/// A balancer that could not start.
#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    /// The backends file is unreadable or wrong.
    #[error("backends file {0}: {1}")]
    File(PathBuf, String),
    /// The listeners or threads could not start.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// A running balancer.
pub struct Running {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// The backend set (tests and embedders may change it directly).
    pub backends: Arc<Backends>,
    servers: Servers,
    file_errors: Option<tokio::sync::mpsc::Receiver<BalanceError>>,
}

fn read_file(p: &PathBuf) -> Result<Vec<SocketAddr>, BalanceError> {
    let text =
        std::fs::read_to_string(p).map_err(|e| BalanceError::File(p.clone(), e.to_string()))?;
    backends::parse_backends_file(&text).map_err(|e| BalanceError::File(p.clone(), e))
}

/// Bind and start balancing.
pub fn start(cfg: Config) -> Result<Running, BalanceError> {
    let mut initial = cfg.backends.clone();
    if let Some(p) = &cfg.backends_file {
        for a in read_file(p)? {
            if !initial.contains(&a) {
                initial.push(a);
            }
        }
    }
    let backends = Arc::new(Backends::new(&initial));
    let (listeners, addr) = runner::bind(cfg.bind, cfg.threads)?;
    let (admin, admin_addr) = runner::bind(cfg.admin_bind, 1)?;
    let tls = cfg.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let mut servers = Servers::new();
    let (c, b) = (cfg.clone(), backends.clone());
    servers.per_thread("balance", listeners, Arc::default(), move |w| {
        worker(c.clone(), b.clone(), tls.clone(), w)
    })?;
    // The control thread: admin API, health checks, file watch.
    let (file_tx, file_errors) = tokio::sync::mpsc::channel(16);
    let token = Arc::new(cfg.admin_token.clone());
    let (b, health_cfg, file, h2) = (
        backends.clone(),
        cfg.health.clone(),
        cfg.backends_file.clone(),
        cfg.backend_h2,
    );
    servers
        .per_thread("balance-control", admin, Arc::default(), move |w| {
            let health = tokio::spawn(health::run(b.clone(), health_cfg.clone(), h2));
            let watch = tokio::spawn(watch_file(b.clone(), file.clone(), file_tx.clone()));
            let (b, token) = (b.clone(), token.clone());
            let make = move |_peer: SocketAddr, _a: Arc<server::Activity>| {
                let (b, token) = (b.clone(), token.clone());
                hyper::service::service_fn(move |req| {
                    let (b, token) = (b.clone(), token.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(admin::handle(&b, &token, req).await)
                    }
                })
            };
            async move {
                let limits = Limits::default();
                let _ = server::serve(w.listener, None, limits, w.stats, w.phase, make).await;
                health.abort();
                watch.abort();
            }
        })
        ?;
    Ok(Running {
        addr,
        admin_addr,
        backends,
        servers,
        file_errors: Some(file_errors),
    })
}

/// One worker thread: its own upstream pools, and the client side that fits the config.
async fn worker(
    cfg: Config,
    backends: Arc<Backends>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    w: Worker,
) {
    let i = w.index;
    // One pool per thread: connections stay on the thread that made them.
    let fwd = Arc::new(Forwarder {
        backends: backends.clone(),
        algorithm: cfg.algorithm,
        turn: AtomicUsize::new(i),
        client: forward::upstream(cfg.backend_h2, cfg.connect_timeout),
        timeout: cfg.timeout,
        max_body: cfg.max_body,
        h2: cfg.backend_h2,
    });
    let make = move |peer: SocketAddr, activity: Arc<server::Activity>| {
        let fwd = fwd.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let (fwd, activity) = (fwd.clone(), activity.clone());
            async move {
                activity.begin(req.version() == http::Version::HTTP_2);
                let r = fwd.forward(req, peer).await;
                activity.end();
                Ok::<_, std::convert::Infallible>(r)
            }
        })
    };
    if tls.is_none() && !cfg.backend_h2 && !cfg.hyper_only {
        // Cleartext HTTP/1 clients take the hand-written path to pipelined HTTP/1.1
        // backends; HTTP/2 clients still reach hyper through `make`.
        let front = Rc::new(front::Front {
            backends,
            algorithm: cfg.algorithm,
            turn: AtomicUsize::new(i),
            pool: pipe::Pool::new(pipe::PipeConfig {
                depth: cfg.pipeline.max(1),
                max_conns: 1024,
                connect_timeout: cfg.connect_timeout,
                idle: Duration::from_secs(30),
                stall: pipe::STALL,
            }),
            timeout: cfg.timeout,
            max_body: cfg.max_body,
            limits: cfg.limits.clone(),
        });
        let _ = front::serve(w.listener, front, w.stats, w.phase, make).await;
    } else {
        let _ = server::serve(w.listener, tls, cfg.limits.clone(), w.stats, w.phase, make).await;
    }
}

/// Re-read the backends file when its modification time changes. A file that cannot be used
/// keeps the current set, and the error goes to `errors` (see [`Running::file_errors`]).
async fn watch_file(
    backends: Arc<Backends>,
    file: Option<PathBuf>,
    errors: tokio::sync::mpsc::Sender<BalanceError>,
) {
    let Some(path) = file else { return };
    let mut seen = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let now = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if now.is_some() && now != seen {
            seen = now;
            match read_file(&path) {
                Ok(addrs) => {
                    backends.replace_all(&addrs);
                }
                // Nobody reading, or too many unread: the set is kept either way.
                Err(e) => {
                    let _ = errors.try_send(e);
                }
            }
        }
    }
}

impl Running {
    /// Errors re-reading the backends file (each time it changed into something unusable and
    /// the current set was kept), for the caller to report; `None` after the first call.
    pub fn file_errors(&mut self) -> Option<tokio::sync::mpsc::Receiver<BalanceError>> {
        self.file_errors.take()
    }

    /// Close the listeners and let every connection finish.
    pub fn stop(&self) {
        self.servers.set_phase(Phase::Stopping);
    }

    /// Wait for the threads after [`Running::stop`], up to `timeout`; true if all finished.
    pub fn wait(self, timeout: Duration) -> bool {
        self.servers.wait(timeout)
    }
}
