//! One blocking HTTP/1.1 request on a fresh connection (`Connection: close`), for control
//! calls off every load path: the demo's calls to its children, and tests poking an API or
//! /metrics, or fetching a profile. The status, the head and the body (a chunked body is
//! decoded), as text and as bytes; over TLS too ([`call_tls`]: a server of ours with a
//! self-signed certificate).

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
    /// The body, de-chunked, as text (bytes that are not UTF-8 replaced).
    pub body: String,
    /// The body, de-chunked, as sent (a binary answer: a gzip'ed profile).
    pub bytes: Vec<u8>,
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
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no complete response".into()))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let rest = &raw[end + 4..];
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {:?}", head.lines().next())))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let bytes = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        head,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    })
}

/// The chunks' data joined; a malformed size ends the body there.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol]).unwrap_or("");
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        let after = &rest[eol + 2..];
        if n == 0 || after.len() < n {
            break;
        }
        out.extend_from_slice(&after[..n]);
        let tail = &after[n..];
        rest = tail.strip_prefix(b"\r\n").unwrap_or(tail);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_are_joined() {
        assert_eq!(
            super::dechunk(b"3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n"),
            b"abcde"
        );
        // A chunk may hold a CRLF of its own.
        assert_eq!(super::dechunk(b"4\r\na\r\nb\r\n0\r\n\r\n"), b"a\r\nb");
    }
}
