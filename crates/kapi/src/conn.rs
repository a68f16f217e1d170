//! Kube clients that each hold one connection of their own, for thousands of long-lived
//! watches as streams of a few connections: a hyper pool per client speaking HTTP/2 (ALPN h2
//! or http/1.1 over TLS, the server choosing; prior knowledge over http://) or HTTP/1.1, with
//! auth and headers as kube's own client does them (`ConfigExt`) and kube-rs's retries off.
//! kube-rs's stock client speaks HTTP/1.1 only, where every open watch holds a connection.
//!
//! One TLS configuration serves every client: built anew, each held its own copy of the root
//! certificates (~100 KB per connection; 30 MB for the 300 connections of 5,000 hollow nodes).

use crate::Error;
use kube::client::ConfigExt;
use kube::Client;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Makes clients of one kubeconfig and counts the connections they open.
pub struct Connector {
    config: kube::Config,
    tls: rustls::ClientConfig,
    /// Connections opened by all its clients.
    pub opened: Arc<AtomicU64>,
}

impl Connector {
    /// Checks the config's TLS settings and credentials once.
    pub fn new(config: &kube::Config) -> Result<Connector, Error> {
        let tls = config
            .rustls_client_config()
            .map_err(Error::api("TLS configuration"))?;
        Ok(Connector {
            config: config.clone(),
            tls,
            opened: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The connector every client of this kubeconfig dials through: TCP, then TLS (ALPN h2
    /// and http/1.1 when `h2`, else http/1.1) or cleartext, counted.
    fn connector(
        &self,
        h2: bool,
    ) -> Counting<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>>
    {
        let config = &self.config;
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(config.connect_timeout.or(Some(Duration::from_secs(30))));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http();
        Counting {
            inner: if h2 {
                https.enable_all_versions().wrap_connector(http)
            } else {
                https.enable_http1().wrap_connector(http)
            },
            opened: self.opened.clone(),
        }
    }

    /// The number of concurrent streams the server allows on one HTTP/2 connection (its
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`; `usize::MAX` when it sets none), read on one
    /// connection of its own through the same connector, then closed; `None` when the server
    /// speaks HTTP/1.1 only (ALPN over TLS). hyper-util's pool hides its connections' settings,
    /// so the clients cannot tell. A server's SETTINGS is the first frame it sends, so once
    /// any answer to one request has arrived (a 401 or 404 will do; the request carries no
    /// credentials) the limit is known.
    pub async fn max_streams(&self) -> Result<Option<usize>, Error> {
        use hyper_util::client::legacy::connect::Connection as _;
        let failed = |what: &str| {
            let what = what.to_string();
            move |e: tower::BoxError| {
                let source = kube::Error::Service(e);
                let (_, said) = crate::stats::ErrorMessage::of(&source);
                Error::Api {
                    what: format!("cannot reach the API server: {what}: {}", said.message),
                    source,
                }
            }
        };
        let url = &self.config.cluster_url;
        let cleartext = url.scheme_str() == Some("http");
        let wait = self.config.read_timeout.unwrap_or(Duration::from_secs(30));
        let mut connector = self.connector(true);
        let io = tower::ServiceExt::oneshot(&mut connector, url.clone())
            .await
            .map_err(failed(&format!("connect to {url}")))?;
        if !cleartext && !io.connected().is_negotiated_h2() {
            return Ok(None);
        }
        let (mut send, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .handshake::<_, http_body_util::Empty<bytes::Bytes>>(io)
                .await
                .map_err(|e| failed("HTTP/2 handshake")(e.into()))?;
        let path = format!("{}/version", url.path().trim_end_matches('/'));
        let uri = http::Uri::builder()
            .scheme(url.scheme_str().unwrap_or("https"))
            .authority(url.authority().map_or("localhost", |a| a.as_str()))
            .path_and_query(path)
            .build()
            .map_err(|e| failed("the /version URL")(e.into()))?;
        let req = http::Request::get(uri)
            .body(http_body_util::Empty::new())
            .map_err(|e| failed("the /version request")(e.into()))?;
        let mut conn = std::pin::pin!(conn);
        let answered = tokio::time::timeout(wait, async {
            tokio::select! {
                r = send.send_request(req) => r.map(|_| ()).map_err(tower::BoxError::from),
                r = &mut conn => Err(match r {
                    Ok(()) => "the server closed the connection".into(),
                    Err(e) => e.into(),
                }),
            }
        })
        .await
        .map_err(|_| failed("HTTP/2 SETTINGS")(format!("no answer in {wait:?}").into()))?;
        answered.map_err(failed("GET /version over HTTP/2"))?;
        Ok(Some(conn.current_max_send_streams()))
    }

    /// A client on a connection of its own: HTTP/2 when `h2` (and the server agrees over
    /// TLS), else HTTP/1.1.
    pub fn client(&self, h2: bool) -> Result<Client, Error> {
        let config = &self.config;
        let connector = self.connector(h2);
        let mut b =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
        b.timer(hyper_util::rt::TokioTimer::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            // The one connection stays through quiet minutes; a dead one under many quiet
            // watches is found by pings, not by waiting.
            .pool_idle_timeout(None)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .http2_keep_alive_while_idle(true)
            .http2_adaptive_window(true);
        if h2 && config.cluster_url.scheme_str() == Some("http") {
            b.http2_only(true);
        }
        let hyper = b.build(connector);
        let service = tower::ServiceBuilder::new()
            .layer(config.base_uri_layer())
            .option_layer(config.auth_layer().map_err(Error::api("credentials"))?)
            .layer(
                config
                    .extra_headers_layer()
                    .map_err(Error::api("headers"))?,
            )
            .map_err(tower::BoxError::from)
            .service(hyper);
        Ok(Client::new(service, config.default_namespace.clone()))
    }
}

/// A connector that counts the connections it opens.
#[derive(Clone)]
struct Counting<C> {
    inner: C,
    opened: Arc<AtomicU64>,
}

impl<C> tower::Service<http::Uri> for Counting<C>
where
    C: tower::Service<http::Uri>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let opened = self.opened.clone();
        let f = self.inner.call(uri);
        Box::pin(async move {
            let c = f.await?;
            opened.fetch_add(1, Ordering::Relaxed);
            Ok(c)
        })
    }
}
