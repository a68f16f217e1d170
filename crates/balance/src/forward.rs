//! Forwarding one request: pick a backend, send over a pooled keep-alive connection, and retry
//! once on another backend when that is safe.
//!
//! The retry rule: a request is moved to another backend when its connection failed before
//! anything was sent (connect refused or timed out: safe for any method), or when it failed
//! before any response byte arrived and the method is idempotent (the keep-alive race with a
//! backend that is closing). hyper's pool already resends a request that was canceled before
//! it was written. A draining backend's `Connection: close` or GOAWAY is handled by the pool
//! and never reaches the client as an error.

use crate::backends::{Backend, Backends, Health};
use crate::pick::{pick, Algorithm};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The pooled client to the backends (one per worker thread: pools are not shared).
pub type Upstream = Client<HttpConnector, Full<Bytes>>;

/// A pooled client: keep-alive connections, `nodelay`, plain HTTP/1.1 or h2c.
pub fn upstream(h2: bool, connect_timeout: Duration) -> Upstream {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1024)
        .retry_canceled_requests(true)
        .set_host(false)
        .http2_only(h2)
        .build(c)
}

/// What a worker thread needs to forward requests.
pub struct Forwarder {
    pub(crate) backends: Arc<Backends>,
    pub(crate) algorithm: Algorithm,
    pub(crate) turn: AtomicUsize,
    pub(crate) client: Upstream,
    pub(crate) timeout: Duration,
    pub(crate) max_body: usize,
    /// The backends speak h2c.
    pub(crate) h2: bool,
}

/// A response body: the backend's, streamed, or one the balancer made.
pub enum ProxyBody {
    /// Streamed from the backend.
    Upstream(Incoming),
    /// Made here (errors).
    Local(Full<Bytes>),
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Local(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
        }
    }
    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(b) => b.is_end_stream(),
            ProxyBody::Local(b) => b.is_end_stream(),
        }
    }
    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(b) => b.size_hint(),
            ProxyBody::Local(b) => b.size_hint(),
        }
    }
}

fn local(code: StatusCode, why: &str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::Local(Full::new(Bytes::from(format!("{why}\n")))));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(n);
    }
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Decrements a backend's in-flight count however the attempt ends.
struct InFlight<'a>(&'a Backend);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Forwarder {
    fn upstream_request(
        &self,
        parts: &http::request::Parts,
        body: &Bytes,
        to: SocketAddr,
        peer: SocketAddr,
    ) -> Request<Full<Bytes>> {
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri: Uri = format!("http://{to}{pq}")
            .parse()
            .expect("an address and a valid path make a URI");
        let mut headers = parts.headers.clone();
        strip_hop_by_hop(&mut headers);
        if !headers.contains_key(header::HOST) {
            // HTTP/2 clients send :authority instead.
            if let Some(a) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                headers.insert(header::HOST, a);
            }
        }
        if self.h2 {
            // Over HTTP/2 the backend's address is the :authority; a different Host header
            // makes the request malformed (RFC 9113 §8.3.1), so the client's goes here instead.
            if let Some(host) = headers.remove(header::HOST) {
                headers.insert(HeaderName::from_static("x-forwarded-host"), host);
            }
        }
        let ip = peer.ip().to_string();
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        let mut r = Request::new(Full::new(body.clone()));
        *r.method_mut() = parts.method.clone();
        *r.uri_mut() = uri;
        *r.version_mut() = Version::HTTP_11;
        *r.headers_mut() = headers;
        r
    }

    /// Forward one client request.
    pub async fn forward(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let (parts, body) = req.into_parts();
        // Bodies are read whole (bounded) so that a retry can send them again.
        let body = match Limited::new(body, self.max_body).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return local(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "request body over the balancer's limit of {} bytes",
                        self.max_body
                    ),
                );
            }
            Err(_) => return local(StatusCode::BAD_REQUEST, "could not read the request body"),
        };
        let mut tried = None;
        for attempt in 0..2 {
            let set = self.backends.snapshot();
            let Some(b) = pick(self.algorithm, &set, &self.turn, tried) else {
                return local(StatusCode::SERVICE_UNAVAILABLE, "no backend available");
            };
            b.in_flight.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight(&b);
            let up = self.upstream_request(&parts, &body, b.addr, peer);
            let result = tokio::time::timeout(self.timeout, self.client.request(up)).await;
            drop(guard);
            match result {
                Ok(Ok(resp)) => {
                    b.requests.fetch_add(1, Ordering::Relaxed);
                    let (mut rp, rb) = resp.into_parts();
                    strip_hop_by_hop(&mut rp.headers);
                    return Response::from_parts(rp, ProxyBody::Upstream(rb));
                }
                Ok(Err(e)) => {
                    b.errors.fetch_add(1, Ordering::Relaxed);
                    let connect = e.is_connect();
                    if connect {
                        // Passive ejection: the health checker brings it back.
                        b.set_health(Health::Down);
                        b.ok_streak.store(0, Ordering::Relaxed);
                    }
                    if attempt == 0 && (connect || idempotent(&parts.method)) {
                        b.retried.fetch_add(1, Ordering::Relaxed);
                        tried = Some(b.addr);
                        continue;
                    }
                    return local(
                        StatusCode::BAD_GATEWAY,
                        &format!("backend {} failed: {e}", b.addr),
                    );
                }
                Err(_) => {
                    b.errors.fetch_add(1, Ordering::Relaxed);
                    return local(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!(
                            "backend {} did not answer within {:?}",
                            b.addr, self.timeout
                        ),
                    );
                }
            }
        }
        local(StatusCode::BAD_GATEWAY, "no backend could take the request")
    }
}
