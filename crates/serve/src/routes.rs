//! The endpoints. Every parameter has a server-side bound; a request past one gets 400 (413 for
//! an echo body) with the reason in the body. Every response carries `x-scaletest-version`.

use crate::body::{ServeBody, CHUNK};
use crate::State;
use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Server-side bounds on what a request may ask for.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Longest `/delay?ms=`.
    pub max_delay: Duration,
    /// Largest `/bytes/{n}`.
    pub max_bytes: u64,
    /// Largest `/echo` body.
    pub max_echo: usize,
    /// Largest `/blocks` block.
    pub max_block: usize,
    /// Most `/blocks` blocks.
    pub max_blocks: u64,
    /// Longest `/blocks` period.
    pub max_period: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_delay: Duration::from_secs(60),
            max_bytes: 1 << 30,
            max_echo: 1 << 20,
            max_block: 1 << 20,
            max_blocks: 100_000,
            max_period: Duration::from_secs(60),
        }
    }
}

type Resp = Response<ServeBody>;

/// The content type of text answers.
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

fn text(state: &State, code: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(ServeBody::bytes(body));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT));
    r.headers_mut()
        .insert("x-scaletest-version", state.version.clone());
    r
}

/// An answer that needs nothing but the path. The quick path (`st_http::quick`) sends these
/// without hyper, and [`handle`] through it; both take them from here.
pub(crate) struct Fixed<'a> {
    pub status: StatusCode,
    /// Sent with the text content type ([`TEXT`]); otherwise with none (as nginx's `return
    /// 200`, for the benchmark path).
    pub text: bool,
    pub body: &'a Bytes,
}

static OK: Bytes = Bytes::from_static(b"ok\n");
static READY: Bytes = Bytes::from_static(b"ready\n");
static DRAINING: Bytes = Bytes::from_static(b"draining\n");

/// The fixed answer for `path`, if it has one.
pub(crate) fn fixed<'a>(state: &'a State, path: &str) -> Option<Fixed<'a>> {
    let (status, text, body) = match path {
        "/" => (StatusCode::OK, false, &state.body),
        "/version" => (StatusCode::OK, true, &state.label_line),
        "/healthz" => (StatusCode::OK, true, &OK),
        "/readyz" if state.ready.load(Ordering::Relaxed) => (StatusCode::OK, true, &READY),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, true, &DRAINING),
        _ => return None,
    };
    Some(Fixed { status, text, body })
}

fn bad(state: &State, why: String) -> Resp {
    text(state, StatusCode::BAD_REQUEST, why + "\n")
}

/// `name=value` from the query string, parsed as `T` and at most `max`.
fn param<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    query: &str,
    name: &str,
    max: T,
    default: Option<T>,
) -> Result<T, String> {
    let raw = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned());
    let v = match (raw, default) {
        (Some(s), _) => s
            .parse::<T>()
            .map_err(|_| format!("{name}={s:?} is not a valid number"))?,
        (None, Some(d)) => d,
        (None, None) => return Err(format!("missing parameter {name}")),
    };
    if v > max {
        return Err(format!("{name}={v} is over the server's limit of {max}"));
    }
    Ok(v)
}

/// Answer one request.
pub async fn handle(state: &State, req: Request<Incoming>) -> Resp {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    if let Some(f) = fixed(state, path) {
        if f.text {
            return text(state, f.status, f.body.clone());
        }
        let mut r = Response::new(ServeBody::bytes(f.body.clone()));
        *r.status_mut() = f.status;
        r.headers_mut()
            .insert("x-scaletest-version", state.version.clone());
        return r;
    }
    match path {
        "/metrics" => {
            let mut r = text(state, StatusCode::OK, state.metrics.render());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        "/delay" => match param(query, "ms", state.bounds.max_delay.as_millis() as u64, None) {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(state, StatusCode::OK, state.body.clone())
            }
            Err(why) => bad(state, why),
        },
        "/echo" => echo(state, req).await,
        "/blocks" => {
            let size = param(query, "size", state.bounds.max_block as u64, Some(1024));
            let n = param(query, "n", state.bounds.max_blocks, Some(1));
            let period = param(
                query,
                "periodMS",
                state.bounds.max_period.as_millis() as u64,
                Some(0),
            );
            match (size, n, period) {
                (Ok(size), Ok(n), Ok(period)) => {
                    let mut r = text(state, StatusCode::OK, Bytes::new());
                    *r.body_mut() = ServeBody::Blocks {
                        block: state.chunk.slice(..size as usize),
                        left: n,
                        period: Duration::from_millis(period),
                        sleep: None,
                    };
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    r
                }
                (Err(why), _, _) | (_, Err(why), _) | (_, _, Err(why)) => bad(state, why),
            }
        }
        _ => {
            if let Some(code) = path.strip_prefix("/status/") {
                match code
                    .parse::<u16>()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .filter(|c| c.as_u16() >= 200)
                {
                    Some(c) => text(state, c, format!("{}\n", c.as_u16())),
                    None => bad(
                        state,
                        format!("status {code:?} is not a final HTTP status (200-999)"),
                    ),
                }
            } else if let Some(n) = path.strip_prefix("/bytes/") {
                match n.parse::<u64>() {
                    Ok(n) if n <= state.bounds.max_bytes => {
                        let mut r = text(state, StatusCode::OK, Bytes::new());
                        *r.body_mut() = ServeBody::Repeat {
                            chunk: state.chunk.clone(),
                            left: n,
                        };
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/octet-stream"),
                        );
                        r
                    }
                    Ok(n) => bad(
                        state,
                        format!(
                            "{n} bytes is over the server's limit of {}",
                            state.bounds.max_bytes
                        ),
                    ),
                    Err(_) => bad(state, format!("{n:?} is not a byte count")),
                }
            } else {
                text(state, StatusCode::NOT_FOUND, "not found\n")
            }
        }
    }
}

async fn echo(state: &State, req: Request<Incoming>) -> Resp {
    if !matches!(*req.method(), Method::POST | Method::PUT) {
        let mut r = text(state, StatusCode::METHOD_NOT_ALLOWED, "use POST or PUT\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, PUT"));
        return r;
    }
    let max = state.bounds.max_echo;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_big = || {
        text(
            state,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is over the server's limit of {max} bytes\n"),
        )
    };
    if declared.is_some_and(|n| n > max as u64) {
        return too_big();
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    match Limited::new(req.into_body(), max).collect().await {
        Ok(body) => {
            let mut r = text(state, StatusCode::OK, body.to_bytes());
            match content_type {
                Some(ct) => r.headers_mut().insert(header::CONTENT_TYPE, ct),
                None => r.headers_mut().remove(header::CONTENT_TYPE),
            };
            r
        }
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            too_big()
        }
        Err(_) => bad(state, "could not read the request body".into()),
    }
}

/// A shared chunk that bodies are cut from.
pub(crate) fn chunk() -> Bytes {
    Bytes::from(vec![b'x'; CHUNK.max(1 << 20)])
}
