//! Talking to a run's aggregator from outside the cluster, through the API server's
//! `pods/portforward` (kube-rs's port-forward, as `kubectl port-forward` does): its summary
//! (`status`), events (`rollout` posts its progress), the rate (`rate`), and its UI on a local
//! port (`ui`).
//!
//! Not the API server's service proxy: the API server strips the `Authorization` header of
//! requests it has authenticated, so the aggregator's bearer token would never arrive; over a
//! port-forward, the bytes are ours end to end. They are TLS when the run's Secret holds the
//! aggregator's certificate (every run since it has one): checked against that certificate
//! and the Service's name, so the local UI is plain HTTP on loopback and TLS beyond.

use crate::manifest::{self, Keys, AGGREGATE_PORT, TOKEN_SECRET};
use crate::spec::Spec;
use crate::Error;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use report::Window;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::time::Duration;

/// The longest an aggregator call may take (connect, request, answer).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A run's aggregator pod, its token, and how to reach it over TLS.
#[derive(Clone)]
pub struct Aggregator {
    pods: Api<Pod>,
    /// The pod forwarded to.
    pub pod: String,
    token: String,
    /// The run's CA and the name its certificate has; `None`: a run from before TLS.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

/// A connection to the aggregator: the port-forward's stream, or TLS over it.
pub trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conn for T {}

impl Aggregator {
    /// Find the run's ready aggregator pod and read its token.
    pub async fn find(client: &Client, spec: &Spec) -> Result<Aggregator, Error> {
        let ns = &spec.namespace;
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let list = pods
            .list(&ListParams::default().labels(&manifest::pod_selector(spec, "aggregate")))
            .await
            .map_err(Error::api(format!("list aggregator pods in {ns}")))?;
        let ready = |p: &Pod| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        let pod = list
            .items
            .iter()
            .find(|p| ready(p))
            .map(|p| p.name_any())
            .ok_or_else(|| Error::NotReady(format!("no ready aggregator pod in {ns}")))?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let secret = secrets
            .get(TOKEN_SECRET)
            .await
            .map_err(Error::api(format!("get secret {ns}/{TOKEN_SECRET}")))?;
        let (token, ca) = Keys::token_and_ca(&secret);
        let token = token
            .ok_or_else(|| Error::NotReady(format!("secret {ns}/{TOKEN_SECRET} has no token")))?;
        let tls = match ca {
            None => None,
            Some(ca) => {
                let bad = |cause: String| Error::Api {
                    what: format!("the CA in secret {ns}/{TOKEN_SECRET}"),
                    cause,
                };
                let cfg =
                    st_http::tls::client_config_trusting(ca.as_bytes(), st_http::Protocol::Http1)
                        .map_err(|e| bad(e.to_string()))?;
                let name = ServerName::try_from(manifest::aggregator_host(spec))
                    .map_err(|e| bad(e.to_string()))?;
                Some((std::sync::Arc::new(cfg).into(), name))
            }
        };
        Ok(Aggregator {
            pods,
            pod,
            token,
            tls,
        })
    }

    /// The bearer token (the UI's address carries it: reads need it off loopback).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A new forwarded connection to the aggregator's port, TLS when the run has a certificate.
    pub async fn connect(&self) -> Result<Box<dyn Conn>, Error> {
        let what = format!("port-forward to pod {}:{AGGREGATE_PORT}", self.pod);
        let mut pf = self
            .pods
            .portforward(&self.pod, &[AGGREGATE_PORT as u16])
            .await
            .map_err(Error::api(what.clone()))?;
        let stream = pf.take_stream(AGGREGATE_PORT as u16).ok_or(Error::Api {
            what: what.clone(),
            cause: "no stream for the port".into(),
        })?;
        let Some((connector, name)) = &self.tls else {
            return Ok(Box::new(stream));
        };
        let tls = connector
            .connect(name.clone(), stream)
            .await
            .map_err(|e| Error::Api {
                what: "TLS handshake".into(),
                cause: e.to_string(),
            })?;
        Ok(Box::new(tls))
    }

    /// One HTTP/1.1 request over a fresh port-forward; the answer's status and JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), Error> {
        let what = format!("{method} {path} on the aggregator (pod {})", self.pod);
        let fail = |cause: String| Error::Api {
            what: what.clone(),
            cause,
        };
        let work = async {
            let io = self.connect().await.map_err(|e| fail(e.to_string()))?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                    .await
                    .map_err(|e| fail(e.to_string()))?;
            tokio::spawn(conn);
            let bytes = body.map_or_else(Vec::new, |b| b.to_string().into_bytes());
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "aggregate")
                .header("authorization", format!("Bearer {}", self.token))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(bytes)))
                .map_err(|e| fail(e.to_string()))?;
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let code = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?
                .to_bytes();
            let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            if code >= 300 {
                return Err(fail(format!(
                    "{code}: {}",
                    v.get("error").and_then(|e| e.as_str()).unwrap_or("")
                )));
            }
            Ok((code, v))
        };
        tokio::time::timeout(CALL_TIMEOUT, work)
            .await
            .map_err(|_| fail(format!("no answer in {}s", CALL_TIMEOUT.as_secs())))?
    }

    /// `GET /api/summary`.
    pub async fn summary(&self) -> Result<serde_json::Value, Error> {
        Ok(self.call("GET", "/api/summary", None).await?.1)
    }

    /// `POST /api/events`: a line on the UI's timeline.
    pub async fn event(&self, text: &str) -> Result<(), Error> {
        self.call(
            "POST",
            "/api/events",
            Some(serde_json::json!({ "text": text })),
        )
        .await
        .map(|_| ())
    }

    /// `PUT /api/load`: a new total rate (0: the bots idle).
    pub async fn set_rate(&self, rate: f64) -> Result<serde_json::Value, Error> {
        let body = if rate > 0.0 {
            serde_json::json!({ "rate": rate })
        } else {
            serde_json::json!({ "idle": true })
        };
        Ok(self.call("PUT", "/api/load", Some(body)).await?.1)
    }
}

impl Aggregator {
    /// `GET /api/window`: what was measured in the Unix seconds `from..to`, asked again until
    /// the window has settled or `settle` has passed (then unsettled, as it is).
    pub async fn window(&self, from: u64, to: u64, settle: Duration) -> Result<Window, Error> {
        let deadline = tokio::time::Instant::now() + settle;
        loop {
            let (_, v) = self
                .call("GET", &format!("/api/window?from={from}&to={to}"), None)
                .await?;
            let w: Window = serde_json::from_value(v).map_err(|e| Error::Api {
                what: format!("the aggregator's window (pod {})", self.pod),
                cause: e.to_string(),
            })?;
            if w.settled || tokio::time::Instant::now() >= deadline {
                return Ok(w);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// What the aggregator says now: the rate asked for, the last published second, the run so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    /// Requests/s the bots are asked for.
    pub offered: f64,
    /// Responses/s in the last published second.
    pub rate: f64,
    /// p99 latency (ms, from the intended send time) of that second.
    pub p99_ms: f64,
    /// Bots pushing.
    pub bots: u64,
    /// Responses over the run.
    pub requests: u64,
    /// Failed requests over the run.
    pub errors: u64,
}

impl Aggregator {
    /// `GET /api/summary` and the newest second of `GET /api/series`.
    pub async fn live(&self) -> Result<Live, Error> {
        let s = self.summary().await?;
        let (_, series) = self.call("GET", "/api/series", None).await?;
        let last = series["points"]
            .as_array()
            .and_then(|p| p.last())
            .cloned()
            .unwrap_or_default();
        let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
        let secs = f(&last["seconds"]);
        Ok(Live {
            offered: f(&s["offered"]),
            rate: if secs > 0.0 {
                f(&last["responses"]) / secs
            } else {
                0.0
            },
            p99_ms: f(&last["latency"]["p99"]),
            bots: s["live"].as_u64().unwrap_or(0),
            requests: s["requests"].as_u64().unwrap_or(0),
            errors: s["errors"].as_u64().unwrap_or(0),
        })
    }
}

/// Serve the aggregator's UI on `bind` (127.0.0.1 by default in the CLI): each local
/// connection gets its own port-forward, as `kubectl port-forward` does. Returns the bound
/// address at once through `bound`, then runs until `stop` resolves.
pub async fn forward_ui(
    agg: Aggregator,
    bind: SocketAddr,
    bound: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on {bind}: {e}")))?;
    bound(listener.local_addr().unwrap_or(bind));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            a = listener.accept() => {
                let Ok((mut local, _)) = a else { continue };
                let agg = agg.clone();
                tokio::spawn(async move {
                    if let Ok(mut remote) = agg.connect().await {
                        let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
                    }
                });
            }
        }
    }
}
