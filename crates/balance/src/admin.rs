//! The admin API (bearer token required): list, add, remove and drain backends; and `/metrics`
//! (no token, for scrapers) with per-backend counters in Prometheus text format.

use crate::backends::Backends;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

fn reply(code: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn text(code: StatusCode, body: &str) -> Response<Full<Bytes>> {
    reply(code, "text/plain; charset=utf-8", format!("{body}\n"))
}

fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    st_http::server::bearer_ok(req.headers(), token)
}

#[derive(serde::Serialize)]
struct BackendView {
    addr: SocketAddr,
    health: crate::backends::Health,
    drained: bool,
    in_flight: usize,
    requests: u64,
    errors: u64,
    retried: u64,
}

/// Answer one admin request.
pub async fn handle(
    backends: &Backends,
    token: &str,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if path == "/metrics" && req.method() == Method::GET {
        return reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics(backends),
        );
    }
    if !authorized(&req, token) {
        let mut r = text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let method = req.method().clone();
    let rest = path.strip_prefix("/backends").unwrap_or("\u{0}");
    match (method, rest) {
        (Method::GET, "" | "/") => {
            let list: Vec<BackendView> = backends
                .snapshot()
                .iter()
                .map(|b| BackendView {
                    addr: b.addr,
                    health: b.health(),
                    drained: b.admin_drained(),
                    in_flight: b.in_flight.load(Ordering::Relaxed),
                    requests: b.requests.load(Ordering::Relaxed),
                    errors: b.errors.load(Ordering::Relaxed),
                    retried: b.retried.load(Ordering::Relaxed),
                })
                .collect();
            reply(
                StatusCode::OK,
                "application/json",
                serde_json::to_vec_pretty(&list).expect("serializable"),
            )
        }
        (Method::POST, "" | "/") => {
            let body = match Limited::new(req.into_body(), 4096).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "body must be an address under 4 KiB",
                    )
                }
            };
            let s = String::from_utf8_lossy(&body);
            // Either a bare address or {"addr": "..."}.
            let raw = serde_json::from_str::<serde_json::Value>(&s)
                .ok()
                .and_then(|v| v.get("addr").and_then(|a| a.as_str()).map(str::to_string))
                .unwrap_or_else(|| s.trim().to_string());
            match raw.parse::<SocketAddr>() {
                Ok(a) if backends.add(a) => text(StatusCode::CREATED, &format!("added {a}")),
                Ok(a) => text(StatusCode::OK, &format!("{a} is already a backend")),
                Err(_) => text(
                    StatusCode::BAD_REQUEST,
                    &format!("{raw:?} is not an address like 127.0.0.1:8081"),
                ),
            }
        }
        (m, r) if r.len() > 1 => {
            let (addr, action) = match r[1..].split_once('/') {
                Some((a, act)) => (a, act),
                None => (&r[1..], ""),
            };
            let Ok(addr) = addr.parse::<SocketAddr>() else {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("{addr:?} is not an address"),
                );
            };
            let found = match (m, action) {
                (Method::DELETE, "") => backends.remove(addr),
                (Method::POST, "drain") => backends.drain(addr, true),
                (Method::POST, "undrain") => backends.drain(addr, false),
                _ => return text(StatusCode::NOT_FOUND, "no such admin endpoint"),
            };
            if found {
                let done = match action {
                    "" => "removed",
                    "drain" => "drained",
                    _ => "undrained",
                };
                text(StatusCode::OK, &format!("{done} {addr}"))
            } else {
                text(StatusCode::NOT_FOUND, &format!("{addr} is not a backend"))
            }
        }
        _ => text(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Label {
    backend: String,
}

/// Per-backend metrics, encoded by prometheus-client from the live counters.
fn metrics(backends: &Backends) -> String {
    let mut registry = Registry::with_prefix("scaletest_balance");
    let requests = Family::<Label, Counter>::default();
    let errors = Family::<Label, Counter>::default();
    let retried = Family::<Label, Counter>::default();
    let in_flight = Family::<Label, Gauge>::default();
    let up = Family::<Label, Gauge>::default();
    registry.register(
        "backend_requests",
        "Requests answered by the backend",
        requests.clone(),
    );
    registry.register(
        "backend_errors",
        "Requests that failed on the backend",
        errors.clone(),
    );
    registry.register(
        "backend_retries",
        "Requests moved from the backend to another",
        retried.clone(),
    );
    registry.register(
        "backend_in_flight",
        "Requests in flight to the backend",
        in_flight.clone(),
    );
    registry.register(
        "backend_up",
        "1 if the backend takes new requests",
        up.clone(),
    );
    for b in backends.snapshot().iter() {
        let l = Label {
            backend: b.addr.to_string(),
        };
        requests
            .get_or_create(&l)
            .inc_by(b.requests.load(Ordering::Relaxed));
        errors
            .get_or_create(&l)
            .inc_by(b.errors.load(Ordering::Relaxed));
        retried
            .get_or_create(&l)
            .inc_by(b.retried.load(Ordering::Relaxed));
        in_flight
            .get_or_create(&l)
            .set(b.in_flight.load(Ordering::Relaxed) as i64);
        up.get_or_create(&l).set(i64::from(b.eligible()));
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}
