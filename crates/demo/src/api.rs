//! The few control calls the demo makes to its own children (the aggregator's API, the
//! balancer's admin API, a server's /readyz): one blocking HTTP/1.1 request per connection on
//! loopback, with a deadline (`st_http::blocking`). Nothing here is on a load path.

use std::net::SocketAddr;
use std::time::Duration;

/// A control call that failed.
#[derive(Debug, thiserror::Error)]
#[error("{method} http://{addr}{path}: {why}")]
pub struct ApiError {
    /// Method.
    pub method: String,
    /// Where.
    pub addr: SocketAddr,
    /// Path.
    pub path: String,
    /// What happened (transport error, or status and body).
    pub why: String,
}

/// Longest time one control call may take.
const CALL: Duration = Duration::from_secs(10);

/// Send one request; returns the status and the body.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<(u16, String), ApiError> {
    let fail = |why: String| ApiError {
        method: method.to_string(),
        addr,
        path: path.to_string(),
        why,
    };
    if !addr.ip().is_loopback() {
        return Err(fail("the demo talks to loopback only".into()));
    }
    let r = st_http::blocking::call(addr, method, path, token, body, CALL)
        .map_err(|e| fail(e.to_string()))?;
    Ok((r.status, r.body))
}

/// [`call`] that also wants a 2xx status.
pub fn ok(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<String, ApiError> {
    let (status, text) = call(addr, method, path, token, body)?;
    if !(200..300).contains(&status) {
        return Err(ApiError {
            method: method.to_string(),
            addr,
            path: path.to_string(),
            why: format!("{status}: {}", text.trim()),
        });
    }
    Ok(text)
}
