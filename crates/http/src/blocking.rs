//! One blocking HTTP/1.1 request on a fresh connection (`Connection: close`), for control
//! calls off every load path: the demo's calls to its children, and tests poking an API or
//! /metrics. The status, the head and the body (a chunked body is decoded); over TLS too
//! ([`call_tls`]: a server of ours with a self-signed certificate).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// What came back.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    /// The body, de-chunked.
    pub body: String,
}

/// `method path` to `addr` with an optional bearer token and a JSON body; connecting, writing
/// and each read are bounded by `timeout`.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
    timeout: Duration,
) -> io::Result<Reply> {
    let s = connect(addr, timeout)?;
    exchange(s, addr, method, path, token, body)
}

/// [`call`] over TLS, trusting the CA certificates in `ca` (PEM) and checking the
/// certificate names `addr`'s IP address (as a self-signed certificate of ours does).
pub fn call_tls(
    addr: SocketAddr,
    ca: &std::path::Path,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
    timeout: Duration,
) -> io::Result<Reply> {
    let opts = crate::TlsOptions {
        insecure: false,
        ca_file: Some(ca.to_path_buf()),
    };
    let cfg = crate::tls::client_config(&opts, crate::Protocol::Http1)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let s = rustls::StreamOwned::new(conn, connect(addr, timeout)?);
    exchange(s, addr, method, path, token, body)
}

fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

fn exchange(
    mut s: impl Read + Write,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> io::Result<Reply> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        // A TLS peer that closes without close_notify: what came is the answer.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        r => {
            r?;
        }
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    let (head, rest) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no complete response".into()))?;
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {:?}", head.lines().next())))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok(Reply {
        status,
        head: head.to_string(),
        body,
    })
}

/// The chunks' data joined; a malformed size ends the body there.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        let tail = &after[n..];
        rest = tail.strip_prefix("\r\n").unwrap_or(tail);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_are_joined() {
        assert_eq!(
            super::dechunk("3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n"),
            "abcde"
        );
        // A chunk may hold a CRLF of its own.
        assert_eq!(super::dechunk("4\r\na\r\nb\r\n0\r\n\r\n"), "a\r\nb");
    }
}
