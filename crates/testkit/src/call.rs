//! One blocking HTTP/1.1 request on a fresh connection (`Connection: close`), for tests that
//! talk to a server's API or metrics without an async client: the status, the head and the
//! body (a chunked body is decoded).

use std::io::{Read, Write};
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

impl Reply {
    /// The body as JSON; panics (naming the body) if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `method path` to `addr` with an optional bearer token and a JSON body; a reply within 10 s.
pub fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no complete head in {raw:?}"));
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status in {head:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Reply {
        status,
        head: head.to_string(),
        body,
    }
}

/// GET `path`; the body, which must come with a 200.
pub fn get(addr: SocketAddr, path: &str) -> String {
    let r = call(addr, "GET", path, None, "");
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r.body
}

/// GET `path` as JSON, which must come with a 200.
pub fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let r = call(addr, "GET", path, None, "");
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r.json()
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
        if n == 0 {
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
