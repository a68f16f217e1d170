//! The hyper path: forward one request (from an HTTP/2 or TLS client, or any client when the
//! backends speak h2c) over hyper-util's pooled keep-alive connections, with the retry policy
//! of [`crate::retry`]. hyper's pool itself resends a request canceled before it was written,
//! and handles a draining backend's `Connection: close` or GOAWAY without an error reaching
//! the client.

use crate::backends::Backends;
use crate::pick::Algorithm;
use crate::retry::{self, Fail, Refused};
use crate::target;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{self, PathAndQuery};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
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

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY)
}

/// A response made here (a 503 with `Retry-After`).
fn local(code: StatusCode, why: &str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::Local(Full::new(Bytes::from(format!("{why}\n")))));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if code == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(retry::RETRY_AFTER_S),
        );
    }
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

/// What the pool's error says about the request, for the retry policy. hyper-util has already
/// resent a request canceled before it was written, so what reaches here was sent, unless the
/// connection was never made.
fn failure(e: &hyper_util::client::legacy::Error) -> Fail {
    let source = std::error::Error::source(e);
    let why = match source {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    };
    if e.is_connect() {
        return if from_the_wire(e) {
            Fail::Connect(why)
        } else {
            Fail::Canceled(why)
        };
    }
    match source.and_then(|s| s.downcast_ref::<hyper::Error>()) {
        // hyper would not send it (a head HTTP/2 cannot carry, say): nothing was sent.
        Some(h) if h.is_user() => Fail::Unsendable(why),
        Some(h) if h.is_parse() || h.is_parse_status() => Fail::Malformed(why),
        _ => Fail::Lost(why),
    }
}

/// Whether an error came from a connection: an I/O or HTTP error under it. hyper-util
/// also reports as a connect error a request that waited for the connection another request
/// was opening when that request went away (HTTP/2's one connection at a time): the pool's
/// own "request was canceled", with neither under it.
fn from_the_wire(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.is::<std::io::Error>() || e.is::<hyper::Error>() {
            return true;
        }
        next = e.source();
    }
    false
}

impl Forwarder {
    /// The request to `to`: its address is the URI's authority, put there whole (a target
    /// glued to it as text could change the port: `http://IP:PORT*`).
    fn upstream_request(
        &self,
        parts: &http::request::Parts,
        target: &PathAndQuery,
        body: &Bytes,
        to: SocketAddr,
        peer: SocketAddr,
    ) -> Request<Full<Bytes>> {
        let mut up = uri::Parts::default();
        up.scheme = Some(uri::Scheme::HTTP);
        up.authority = Some(
            uri::Authority::try_from(to.to_string()).expect("a socket address is an authority"),
        );
        up.path_and_query = Some(target.clone());
        let uri = Uri::from_parts(up).expect("scheme, authority and path make a URI");
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
    pub async fn forward<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<ProxyBody>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let given = target::Given {
            absolute: parts.uri.scheme().is_some(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .filter(|p| !p.is_empty()),
        };
        let target = match target::upstream(parts.method.as_str().as_bytes(), given).and_then(|t| {
            t.parse::<PathAndQuery>()
                .map_err(|e| Refused(400, format!("bad request target: {e}")))
        }) {
            Ok(t) => t,
            Err(Refused(code, why)) => return local(status(code), &why),
        };
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
        let idempotent = retry::idempotent(parts.method.as_str().as_bytes());
        let sent = retry::attempt(
            &self.backends,
            self.algorithm,
            &self.turn,
            idempotent,
            |b| {
                let up = self.upstream_request(&parts, &target, &body, b.addr, peer);
                async move {
                    match tokio::time::timeout(self.timeout, self.client.request(up)).await {
                        Ok(Ok(resp)) => Ok(resp),
                        Ok(Err(e)) => Err(failure(&e)),
                        Err(_) => Err(Fail::Timeout(self.timeout)),
                    }
                }
            },
        )
        .await;
        match sent {
            Ok(resp) => {
                let (mut rp, rb) = resp.into_parts();
                strip_hop_by_hop(&mut rp.headers);
                Response::from_parts(rp, ProxyBody::Upstream(rb))
            }
            Err(Refused(code, why)) => local(status(code), &why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::Health;
    use testkit::{Misbehaving, Misbehavior};

    fn forwarder(addrs: &[SocketAddr], timeout: Duration) -> Forwarder {
        Forwarder {
            backends: Arc::new(Backends::new(addrs)),
            algorithm: Algorithm::RoundRobin,
            turn: AtomicUsize::new(0),
            client: upstream(false, Duration::from_secs(1)),
            timeout,
            max_body: 1024,
            h2: false,
        }
    }

    /// Send `method /` through `f`; the status and the body.
    fn send(f: &Forwarder, method: &str) -> (u16, String) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let req = Request::builder()
                .method(method)
                .uri("/")
                .header("host", "h")
                .body(Full::new(Bytes::from_static(b"x")))
                .unwrap();
            let r = f.forward(req, "10.0.0.1:9".parse().unwrap()).await;
            let code = r.status().as_u16();
            let body = r.into_body().collect().await.unwrap().to_bytes();
            (code, String::from_utf8_lossy(&body).into_owned())
        })
    }

    #[test]
    fn the_backend_gets_the_head_without_hop_by_hop_headers_and_with_forwarded_for() {
        let f = forwarder(&[], Duration::from_secs(1));
        let (parts, _) = Request::builder()
            .method("PUT")
            .uri("http://client.example/p?q=1")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("keep-alive", "5")
            .header("x-forwarded-for", "1.1.1.1")
            .header("accept", "*/*")
            .body(())
            .unwrap()
            .into_parts();
        let to: SocketAddr = "127.0.0.1:81".parse().unwrap();
        let pq = PathAndQuery::from_static("/p?q=1");
        let r = f.upstream_request(
            &parts,
            &pq,
            &Bytes::new(),
            to,
            "10.0.0.1:9".parse().unwrap(),
        );
        assert_eq!(r.uri(), "http://127.0.0.1:81/p?q=1");
        let star = PathAndQuery::from_static("*");
        let r = f.upstream_request(
            &parts,
            &star,
            &Bytes::new(),
            to,
            "10.0.0.1:9".parse().unwrap(),
        );
        assert_eq!(r.uri().port_u16(), Some(81));
        assert_eq!(r.uri().path_and_query().unwrap(), "*");
        assert_eq!(r.method(), "PUT");
        let h = r.headers();
        assert!(h.get("connection").is_none() && h.get("x-hop").is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.0.0.1");
        assert_eq!(h["host"], "client.example");
        assert_eq!(h["accept"], "*/*");
        // To h2c backends the client's host travels as x-forwarded-host.
        let f = Forwarder { h2: true, ..f };
        let r = f.upstream_request(
            &parts,
            &pq,
            &Bytes::new(),
            to,
            "10.0.0.1:9".parse().unwrap(),
        );
        assert!(r.headers().get("host").is_none());
        assert_eq!(r.headers()["x-forwarded-host"], "client.example");
    }

    #[test]
    fn a_refused_connection_is_retried_elsewhere_for_any_method_and_ejects_the_backend() {
        let bad = Misbehaving::start(Misbehavior::Refuse);
        let good = testkit::Server::start(testkit::Behavior::Ok);
        let f = forwarder(&[bad.addr, good.addr], Duration::from_secs(5));
        assert_eq!(send(&f, "POST").0, 200);
        assert_eq!(good.hits(), 1);
        let set = f.backends.snapshot();
        assert_eq!(set[0].health(), Health::Down);
        assert_eq!(set[0].retried.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn a_request_the_backend_may_have_seen_is_retried_only_if_idempotent() {
        for how in [Misbehavior::Reset, Misbehavior::Garbage] {
            let bad = Misbehaving::start(how);
            let good = testkit::Server::start(testkit::Behavior::Ok);
            // Round robin from the first: every request tries `bad` first.
            let f = forwarder(&[bad.addr, good.addr], Duration::from_secs(5));
            let (code, why) = send(&f, "POST");
            assert_eq!(code, 502, "{how:?}: {why}");
            assert_eq!(good.hits(), 0, "{how:?}: a POST was sent twice");
            f.turn.store(0, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(send(&f, "GET").0, 200, "{how:?}");
            assert_eq!(good.hits(), 1, "{how:?}");
            assert_eq!(f.backends.snapshot()[0].health(), Health::Up, "{how:?}");
        }
    }

    #[test]
    fn to_h2c_backends_requests_go_over_http2_with_forwarded_headers() {
        let b = testkit::Server::start(testkit::Behavior::Ok);
        let f = Forwarder {
            client: upstream(true, Duration::from_secs(1)),
            h2: true,
            ..forwarder(&[b.addr], Duration::from_secs(5))
        };
        for _ in 0..3 {
            assert_eq!(send(&f, "GET"), (200, "hello, world\n".to_string()));
        }
        assert_eq!(b.versions().get("HTTP/2.0"), Some(&3), "{:?}", b.versions());
        assert_eq!(b.last_forwarded_for().as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn no_answer_in_time_is_504_and_not_retried() {
        let bad = Misbehaving::start(Misbehavior::Stall);
        let good = testkit::Server::start(testkit::Behavior::Ok);
        let f = forwarder(&[bad.addr, good.addr], Duration::from_millis(200));
        assert_eq!(send(&f, "GET").0, 504);
        assert_eq!(good.hits(), 0);
    }
}
