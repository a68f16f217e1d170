//! One request, start to end: authenticated ([`crate::admit`]), parsed once into what it asks
//! ([`crate::route`]), then answered by discovery, `/metrics`, relayed to the pod's kubelet,
//! or, for a verb on a resource, admitted (request log, faults), its selectors and body read,
//! and handed to that verb's function; counted and timed in [`crate::metrics`] from its
//! arrival.

use crate::admit::{admit, authenticate};
use crate::metrics::{self, Call, Ended, LongRunning};
use crate::reply::{error, status, Body, MAX_BODY};
use crate::route::{Connect, Query, Route, Target, Verb};
use crate::selectors::Selectors;
use crate::state::Shared;
use crate::verbs::APPLY_PATCH;
use crate::{discovery, podlog, portforward, subresources, verbs, watch};
use hyper::{body::Incoming, Request, Response};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// The answer to one request.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let arrived = Instant::now();
    if let Err(refused) = authenticate(&shared, &req) {
        return *refused;
    }
    let q: Query = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    match crate::route::parse(&shared, req.method(), req.uri().path(), &q) {
        Err(refused) => *refused,
        Ok(Route::Discovery(doc)) => discovery::answer(&shared, &doc),
        Ok(Route::Metrics) => metrics::answer(&shared),
        Ok(Route::Connect(Connect::Log, t)) => podlog::get(&shared, &t, &q).await,
        Ok(Route::Connect(Connect::PortForward, t)) => portforward::upgrade(&shared, &t, &q, req),
        Ok(Route::Call(verb, t)) => counted(&shared, verb, &t, &q, req, arrived).await,
    }
}

/// The request's media type, without parameters.
fn content_type(req: &Request<Incoming>) -> String {
    req.headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// A verb on a resource, admitted, answered, and counted in the metrics as the real server
/// counts it: a 403 (RBAC) is answered before the handler it instruments, a 429 by API
/// Priority and Fairness; any other failure injected is the handler's.
async fn counted(
    shared: &Arc<Shared>,
    verb: Verb,
    t: &Target,
    q: &Query,
    req: Request<Incoming>,
    arrived: Instant,
) -> Response<Body> {
    let content_type = content_type(&req);
    let started = shared
        .metrics
        .start(Call::of(verb, t, q, &content_type), arrived);
    if let Err(refused) = admit(shared, verb, t).await {
        let ended = match refused.status().as_u16() {
            403 => Ended::Unrecorded,
            429 => Ended::Throttled,
            code => Ended::Served(code),
        };
        shared.metrics.end(started, ended);
        return *refused;
    }
    let resp = call(shared, verb, t, q, &content_type, req).await;
    let code = resp.status().as_u16();
    if verb == Verb::Watch && code == 200 {
        return LongRunning::track(shared, started, resp);
    }
    shared.metrics.end(started, Ended::Served(code));
    resp
}

/// A verb on a resource, admitted.
async fn call(
    shared: &Arc<Shared>,
    verb: Verb,
    t: &Target,
    q: &Query,
    content_type: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let sel = match Selectors::parse(
        q.get("labelSelector").map(String::as_str),
        q.get("fieldSelector").map(String::as_str),
    ) {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    let body = if verb.reads_body() {
        match read_body(req, verb, content_type).await {
            Ok(b) => b,
            Err(refused) => return *refused,
        }
    } else {
        Value::Null
    };
    let began = Instant::now();
    let resp = match verb {
        Verb::Get => verbs::get(shared, t),
        Verb::List => verbs::list(shared, t, q, &sel),
        Verb::Watch => watch::watch(shared, t, q, sel),
        Verb::Create => verbs::create(shared, t, body),
        Verb::Update => verbs::update(shared, t, q, body, content_type),
        Verb::Patch => verbs::patch(shared, t, q, body, content_type),
        Verb::Delete => verbs::delete(shared, t, q, &body),
        Verb::DeleteCollection => verbs::delete_collection(shared, t, &sel),
        Verb::Bind => subresources::bind(shared, t, &body),
        Verb::Token => subresources::token(shared, t, body),
    };
    if let Some(op) = metrics::etcd_op(verb, q) {
        shared.metrics.etcd(op, t.r.qualified(), began.elapsed());
    }
    resp
}

/// A request's body as JSON (up to [`MAX_BODY`]); an apply patch may be YAML, and a DELETE
/// may come without DeleteOptions (null).
async fn read_body(
    req: Request<Incoming>,
    verb: Verb,
    content_type: &str,
) -> Result<Value, Box<Response<Body>>> {
    use http_body_util::BodyExt;
    let bytes = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(Box::new(status(
                413,
                "RequestEntityTooLarge",
                "request entity too large (limit 3 MiB)",
            )))
        }
    };
    let refuse = |what: &str, e: String| {
        Box::new(status(
            400,
            "BadRequest",
            &format!("invalid {what} body: {e}"),
        ))
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => Ok(v),
        Err(_) if verb == Verb::Delete && bytes.iter().all(u8::is_ascii_whitespace) => {
            Ok(Value::Null)
        }
        // JSON is YAML too, and what kube-rs sends.
        Err(_) if content_type == APPLY_PATCH => std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_saphyr::from_str::<Value>(t).map_err(|e| e.to_string()))
            .map_err(|e| refuse("YAML", e)),
        Err(e) => Err(refuse("JSON", e.to_string())),
    }
}
