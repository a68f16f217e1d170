//! What happens to a request before its verb runs: authentication (401 without the bearer
//! token a test required, before any routing, as the API server's authentication), then for
//! a call the request log, RBAC refusals a test set (403), delays, and injected failures of
//! writes (429 as API Priority and Fairness answers, 403, or any other status).

use crate::reply::{reply, status, Body};
use crate::route::{Target, Verb};
use crate::state::Shared;
use hyper::{Request, Response};
use serde_json::json;

/// 401 Unauthorized when a token is required and the request does not carry it.
pub(crate) fn authenticate<B>(
    shared: &Shared,
    req: &Request<B>,
) -> Result<(), Box<Response<Body>>> {
    let want = shared.token.lock().expect("lock").clone();
    let Some(token) = want else {
        return Ok(());
    };
    let got = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if got == Some(format!("Bearer {token}").as_str()) {
        Ok(())
    } else {
        Err(Box::new(status(401, "Unauthorized", "Unauthorized")))
    }
}

/// Log the call, then refuse, delay or fail it as the test asked.
pub(crate) async fn admit(
    shared: &Shared,
    verb: Verb,
    t: &Target,
) -> Result<(), Box<Response<Body>>> {
    let name = verb.name();
    let sub = t.sub(verb);
    {
        let mut calls = shared.calls.lock().expect("lock");
        *calls
            .entry(format!("{name} {}{sub}", t.r.plural))
            .or_default() += 1;
        if let Some(ns) = &t.ns {
            *calls
                .entry(format!("{name} {}{sub} in {ns}", t.r.plural))
                .or_default() += 1;
        }
    }
    if shared
        .forbidden
        .lock()
        .expect("lock")
        .contains(&(name.to_string(), t.r.plural.clone()))
    {
        return Err(Box::new(forbidden(name, t, sub)));
    }
    let delay = shared.delays.lock().expect("lock").get(name).copied();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if verb.mutates() {
        let mut rej = shared.reject.lock().expect("lock");
        if rej.0 > 0 {
            rej.0 -= 1;
            let code = rej.1;
            drop(rej);
            return Err(Box::new(injected(code, name, t, sub)));
        }
    }
    Ok(())
}

/// RBAC's refusal of an anonymous caller, worded and shaped as the API server words it.
fn forbidden(verb: &str, t: &Target, sub: &str) -> Response<Body> {
    let group = t.r.group.as_str();
    let what = match &t.name {
        Some(n) => format!("{}{sub} \"{n}\"", t.r.plural),
        None => format!("{}{sub}", t.r.plural),
    };
    let msg = format!(
        "{what} is forbidden: User \"system:anonymous\" cannot {verb} resource \"{}{sub}\" in API group \"{group}\" {}",
        t.r.plural,
        scope(t)
    );
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": msg, "reason": "Forbidden", "details": {"kind": t.r.plural}, "code": 403});
    if let Some(n) = &t.name {
        body["details"]["name"] = json!(n);
    }
    reply(403, &body)
}

/// The failure a test injected with `FakeApi::reject_next`.
fn injected(code: u16, verb: &str, t: &Target, sub: &str) -> Response<Body> {
    match code {
        429 => {
            let mut resp = status(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
            );
            resp.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from_static("1"),
            );
            resp
        }
        // As the authorizer words it when RBAC allows no rule for the request.
        403 => status(
            403,
            "Forbidden",
            &format!(
                "{}{sub} is forbidden: User \"scaletest\" cannot {verb} resource \"{}{sub}\" in API group \"{}\" {}",
                t.r.plural,
                t.r.plural,
                t.r.group,
                scope(t)
            ),
        ),
        _ => status(code, "InternalError", "injected failure"),
    }
}

/// Where RBAC says a refused call was: "in the namespace \"NS\"" or "at the cluster scope".
fn scope(t: &Target) -> String {
    match &t.ns {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    }
}
