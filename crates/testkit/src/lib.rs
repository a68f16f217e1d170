//! Test servers for scaletest's own tests: each runs on its own thread and runtime, binds an
//! ephemeral port on 127.0.0.1, counts what it saw, and stops when dropped. Nothing here is part
//! of the shipped binary.
//!
//! - [`Server::start`] with a [`Behavior`]: answers over HTTP/1.1 and HTTP/2 (h2c by prior
//!   knowledge, or TLS with ALPN when given a [`TestCert`]).
//! - [`Misbehaving::start`]: refuses, resets, stalls or sends garbage, for error classes.
//! - [`browser`]: a headless Chromium over the DevTools Protocol, for the HTML pages.
//! - [`checks`]: checks that run only under a condition say whether they ran (CI shows it).

// Test-only: what a test server saw is counted under a lock, and a skipped browser test says
// so on stderr; speed does not matter here.
#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

pub mod browser;
pub mod checks;
mod misbehave;
pub use misbehave::{Misbehaving, Misbehavior};

/// A child process that is killed and reaped when dropped, so that a failing test never
/// leaves servers or balancers running.
pub struct Proc(pub std::process::Child);

impl std::ops::Deref for Proc {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The body every well-behaved test server answers with (13 bytes, as in the benchmarks).
pub const BODY: &[u8] = b"hello, world\n";

/// How a well-behaved test server answers.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// 200 with [`BODY`].
    Ok,
    /// 200 and 500 in turn (by arrival order), both with [`BODY`].
    Alternate,
    /// 200 after sleeping this long.
    Delay(Duration),
    /// Like `Ok`, except that every request arriving in the window starting `after` the first
    /// request and lasting `len` is held until the window ends: one stall, as a GC pause would.
    StallOnce {
        /// Time from the first request to the stall.
        after: Duration,
        /// Length of the stall.
        len: Duration,
    },
}

/// A self-signed certificate for `localhost` and `127.0.0.1`.
#[derive(Clone)]
pub struct TestCert {
    /// The certificate, PEM (also usable as a CA file: it is self-signed).
    pub cert_pem: String,
    cert_der: rustls::pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TestCert {
    /// Make a fresh certificate.
    pub fn new() -> TestCert {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("rcgen makes a certificate");
        TestCert {
            cert_pem: ck.cert.pem(),
            cert_der: ck.cert.der().clone(),
            key_der: ck.key_pair.serialize_der(),
        }
    }

    fn server_config(&self) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("default versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert_der.clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into()),
            )
            .expect("valid key");
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        cfg
    }
}

impl Default for TestCert {
    fn default() -> Self {
        Self::new()
    }
}

/// What a test server saw.
#[derive(Default)]
pub struct Seen {
    hits: AtomicU64,
    paths: Mutex<BTreeMap<String, u64>>,
    versions: Mutex<BTreeMap<String, u64>>,
    first: Mutex<Option<Instant>>,
    forwarded_for: Mutex<Option<String>>,
}

/// A running well-behaved test server; stops when dropped.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    tls: bool,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    /// Start a cleartext server (HTTP/1.1 and h2c).
    pub fn start(behavior: Behavior) -> Server {
        Self::launch(behavior, None)
    }

    /// Start a TLS server (ALPN h2 and http/1.1).
    pub fn start_tls(behavior: Behavior, cert: &TestCert) -> Server {
        Self::launch(behavior, Some(cert.clone()))
    }

    fn launch(behavior: Behavior, cert: Option<TestCert>) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Seen::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let tls = cert.is_some();
        let s = seen.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(serve(listener, behavior, cert, s, stop_rx));
        });
        Server {
            addr,
            seen,
            tls,
            _stop: stop_tx,
        }
    }

    /// `http(s)://127.0.0.1:PORT/` + `path` (without its leading slash).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Requests received.
    pub fn hits(&self) -> u64 {
        self.seen.hits.load(Ordering::SeqCst)
    }

    /// Requests received by path.
    pub fn paths(&self) -> BTreeMap<String, u64> {
        self.seen.paths.lock().expect("lock").clone()
    }

    /// The `x-forwarded-for` header of the last request that had one.
    pub fn last_forwarded_for(&self) -> Option<String> {
        self.seen.forwarded_for.lock().expect("lock").clone()
    }

    /// Requests received by HTTP version (`HTTP/1.1`, `HTTP/2.0`).
    pub fn versions(&self) -> BTreeMap<String, u64> {
        self.seen.versions.lock().expect("lock").clone()
    }
}

async fn serve(
    listener: std::net::TcpListener,
    behavior: Behavior,
    cert: Option<TestCert>,
    seen: Arc<Seen>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let acceptor = cert.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c.server_config())));
    let behavior = Arc::new(behavior);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = &mut stop => return,
        };
        let _ = stream.set_nodelay(true);
        let (behavior, seen, acceptor) = (behavior.clone(), seen.clone(), acceptor.clone());
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req| handle(req, behavior.clone(), seen.clone()));
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            match acceptor {
                None => {
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                }
                Some(a) => {
                    if let Ok(tls) = a.accept(stream).await {
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                            .await;
                    }
                }
            }
        });
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    behavior: Arc<Behavior>,
    seen: Arc<Seen>,
) -> Result<Response<TestBody>, std::convert::Infallible> {
    let arrived = Instant::now();
    let n = seen.hits.fetch_add(1, Ordering::SeqCst);
    *seen
        .paths
        .lock()
        .expect("lock")
        .entry(req.uri().path().to_string())
        .or_default() += 1;
    *seen
        .versions
        .lock()
        .expect("lock")
        .entry(format!("{:?}", req.version()))
        .or_default() += 1;
    let first = *seen.first.lock().expect("lock").get_or_insert(arrived);
    if let Some(v) = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        *seen.forwarded_for.lock().expect("lock") = Some(v.to_string());
    }
    let mut status = 200;
    match &*behavior {
        Behavior::Ok => {}
        Behavior::Alternate => {
            if n % 2 == 1 {
                status = 500;
            }
        }
        Behavior::Delay(d) => tokio::time::sleep(*d).await,
        Behavior::StallOnce { after, len } => {
            let (from, to) = (first + *after, first + *after + *len);
            if arrived >= from && arrived < to {
                tokio::time::sleep_until(to.into()).await;
            }
        }
    }
    let path = req.uri().path();
    let size = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|n| n.parse::<usize>().ok())
    };
    let body = if let Some(n) = size("/bytes/") {
        Full::new(Bytes::from(vec![b'x'; n])).boxed()
    } else if let Some(n) = size("/chunked/") {
        Chunks(n).boxed()
    } else {
        Full::new(Bytes::from_static(BODY)).boxed()
    };
    Ok(Response::builder()
        .status(status)
        .body(body)
        .expect("valid response"))
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// `n` bytes in 4 KiB frames with no size hint, so HTTP/1.1 sends them chunked.
struct Chunks(usize);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.0.min(4096);
        self.0 -= n;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(vec![
            b'y';
            n
        ])))))
    }
}
