//! The bot's side of the wire: [`Link`], what the bot asks of its aggregator, and [`Agg`],
//! the aggregator over HTTP or HTTPS (JSON bodies, the bearer token, a timeout per request).
//! Over HTTPS the aggregator's certificate is checked against `--cacert` (or the public
//! roots); a certificate that does not verify is [`Fail::Tls`], never retried.

use super::{BotError, REQUEST_TIMEOUT};
use crate::wire::{Ack, Assignment, Push, Register, Registered, PUSH_TYPE};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What a bot asks of its aggregator (tests answer in memory, on tokio's paused clock).
pub(crate) trait Link {
    /// `POST /api/bots`.
    async fn register(&self, r: &Register) -> Result<Registered, Fail>;
    /// `POST /api/bots/{id}/snapshots`.
    async fn push(&self, id: u64, p: &Push) -> Result<Ack, Fail>;
    /// `DELETE /api/bots/{id}`: true once the aggregator answered that it saved it.
    async fn leave(&self, id: u64) -> bool;
    /// Send bot `id`'s assignment into `tx` each time it changes, until the task is aborted.
    fn follow(&self, id: u64, tx: mpsc::UnboundedSender<Assignment>) -> JoinHandle<()>;
}

/// A call that failed.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The aggregator answered with this status and reason.
    Status(u16, String),
    /// No answer.
    Unreachable,
    /// The aggregator's TLS certificate does not verify: not transient, the bot gives up.
    Tls(String),
}

/// The aggregator over HTTP.
pub(crate) struct Agg {
    base: String,
    token: String,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Agg {
    /// The aggregator at `base` (`http://` or `https://`; over HTTPS trusting the CA
    /// certificates in `cacert`, else the public roots).
    pub(crate) fn new(
        base: &str,
        token: &str,
        cacert: Option<&std::path::Path>,
    ) -> Result<Agg, BotError> {
        let u = url::Url::parse(base).map_err(|e| BotError::Url(base.into(), e.to_string()))?;
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
            return Err(BotError::Url(
                base.into(),
                "expected http://HOST:PORT or https://HOST:PORT".into(),
            ));
        }
        if u.scheme() == "http" && cacert.is_some() {
            return Err(BotError::Url(
                base.into(),
                "--cacert is for an https:// aggregator".into(),
            ));
        }
        let opts = st_http::TlsOptions {
            insecure: false,
            ca_file: cacert.map(std::path::Path::to_path_buf),
        };
        let mut tls = st_http::tls::client_config(&opts, st_http::Protocol::Http1)
            .map_err(|e| BotError::Url(base.into(), e.to_string()))?;
        // hyper-rustls sets ALPN itself (enable_http1) and refuses a config that has it.
        tls.alpn_protocols.clear();
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(REQUEST_TIMEOUT));
        conn.enforce_http(false);
        let conn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(conn);
        Ok(Agg {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(conn),
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<T, Fail> {
        self.send(method, path, body, "application/json", timeout)
            .await
    }

    /// [`Agg::call`] with a body of type `ctype`.
    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
        ctype: &'static str,
        timeout: Duration,
    ) -> Result<T, Fail> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, ctype)
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| Fail::Unreachable)?;
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| certificate_error(&e).map_or(Fail::Unreachable, Fail::Tls))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|_| Fail::Unreachable)?
                .to_bytes();
            if status != 200 {
                let why = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
                return Err(Fail::Status(status, why));
            }
            serde_json::from_slice(&bytes).map_err(|e| Fail::Status(status, e.to_string()))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or(Err(Fail::Unreachable))
    }
}

impl Link for Rc<Agg> {
    async fn register(&self, r: &Register) -> Result<Registered, Fail> {
        let body = serde_json::to_vec(r).expect("serializable");
        self.call(http::Method::POST, "/api/bots", Some(body), REQUEST_TIMEOUT)
            .await
    }

    async fn push(&self, id: u64, p: &Push) -> Result<Ack, Fail> {
        let path = format!("/api/bots/{id}/snapshots");
        let body = Some(p.encode());
        self.send(http::Method::POST, &path, body, PUSH_TYPE, REQUEST_TIMEOUT)
            .await
    }

    async fn leave(&self, id: u64) -> bool {
        let path = format!("/api/bots/{id}");
        self.call::<serde_json::Value>(http::Method::DELETE, &path, None, REQUEST_TIMEOUT)
            .await
            .is_ok()
    }

    fn follow(&self, id: u64, tx: mpsc::UnboundedSender<Assignment>) -> JoinHandle<()> {
        tokio::task::spawn_local(poll(self.clone(), id, tx))
    }
}

/// What a failed request says of the aggregator's certificate, if that is why it failed.
fn certificate_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(
            t @ (rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType),
        ) = e.downcast_ref::<rustls::Error>()
        {
            return Some(t.to_string());
        }
        // An io::Error's source() skips the error it wraps: go into it instead.
        cur = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Follow the assignment: a long-poll that returns when it changes.
async fn poll(agg: Rc<Agg>, id: u64, tx: mpsc::UnboundedSender<Assignment>) {
    let mut after = u64::MAX;
    loop {
        match agg
            .call::<Assignment>(
                http::Method::GET,
                &format!("/api/bots/{id}/assignment?after={after}"),
                None,
                Duration::from_secs(30),
            )
            .await
        {
            Ok(a) => {
                after = a.generation;
                if tx.send(a).is_err() {
                    return;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
