//! The few control calls the demo makes to its own children (the aggregator's API, the
//! balancer's admin API, a server's /readyz): one blocking HTTP/1.1 request per connection on
//! loopback, with a deadline. Nothing here is on a load path.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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
    let mut s = TcpStream::connect_timeout(&addr, CALL).map_err(|e| fail(e.to_string()))?;
    let _ = s.set_read_timeout(Some(CALL));
    let _ = s.set_write_timeout(Some(CALL));
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&out);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("no complete response".into()))?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail(format!("bad status line {:?}", head.lines().next())))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, body))
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

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(super::dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
