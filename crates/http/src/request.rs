//! A request prepared once (HTTP/1.1 bytes and an HTTP/2 head) and sent many times.

use crate::origin::{Origin, Scheme};
use bytes::Bytes;

/// A request prepared once and sent many times: the HTTP/1.1 bytes are serialized up front,
/// so the hot path only writes them.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method, e.g. `GET`.
    pub method: http::Method,
    /// Path and query.
    pub path: String,
    h1: Bytes,
    h2: http::Request<()>,
    body: Bytes,
    /// A HEAD response has no body whatever its headers say.
    pub(crate) head: bool,
}

/// A request that cannot be built from what the user gave.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(String);

impl Request {
    /// Build a request. `headers` are sent as given; `Host` (HTTP/1.1) comes from the origin
    /// unless the caller sets one, and `Content-Length` is set from the body.
    pub fn new(
        origin: &Origin,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Request, RequestError> {
        let method = http::Method::from_bytes(method.as_bytes())
            .map_err(|_| RequestError(format!("invalid method {method:?}")))?;
        let user_host = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.clone());
        let mut h1 = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n",
            user_host.as_deref().unwrap_or(&origin.authority)
        );
        let mut has_ua = false;
        let mut builder = http::Request::builder().method(method.clone()).uri(
            http::Uri::builder()
                .scheme(match origin.scheme {
                    Scheme::Http => "http",
                    Scheme::Https => "https",
                })
                .authority(user_host.as_deref().unwrap_or(&origin.authority))
                .path_and_query(path)
                .build()
                .map_err(|e| RequestError(format!("invalid path {path:?}: {e}")))?,
        );
        for (k, v) in headers {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| RequestError(format!("invalid header name {k:?}")))?;
            let value = http::HeaderValue::from_str(v)
                .map_err(|_| RequestError(format!("invalid value for header {k:?}")))?;
            if name == http::header::HOST {
                continue;
            }
            if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
                return Err(RequestError(format!(
                    "header {k:?} is set from the body; do not give it"
                )));
            }
            has_ua |= name == http::header::USER_AGENT;
            h1.push_str(&format!("{k}: {v}\r\n"));
            // HTTP/2 forbids connection-specific headers.
            if !matches!(
                name.as_str(),
                "connection" | "keep-alive" | "proxy-connection" | "upgrade"
            ) {
                builder = builder.header(name, value);
            }
        }
        if !has_ua {
            let ua = concat!("scaletest/", env!("CARGO_PKG_VERSION"));
            h1.push_str(&format!("User-Agent: {ua}\r\n"));
            builder = builder.header(http::header::USER_AGENT, ua);
        }
        if !body.is_empty()
            || matches!(
                method,
                http::Method::POST | http::Method::PUT | http::Method::PATCH
            )
        {
            h1.push_str(&format!("Content-Length: {}\r\n", body.len()));
            builder = builder.header(http::header::CONTENT_LENGTH, body.len());
        }
        h1.push_str("\r\n");
        let mut wire = h1.into_bytes();
        wire.extend_from_slice(&body);
        let h2 = builder.body(()).map_err(|e| RequestError(e.to_string()))?;
        Ok(Request {
            head: method == http::Method::HEAD,
            method,
            path: path.to_string(),
            h1: Bytes::from(wire),
            h2,
            body,
        })
    }

    /// The same request with other HTTP/1.1 bytes (a template's rendering), for HTTP/1.1
    /// lanes only: it has no HTTP/2 head. Allocates nothing but what `h1` already holds.
    pub fn with_h1_wire(&self, h1: Bytes) -> Request {
        Request {
            method: self.method.clone(),
            path: String::new(),
            h1,
            h2: http::Request::new(()),
            body: Bytes::new(),
            head: self.head,
        }
    }

    /// The full HTTP/1.1 request, head and body.
    pub fn h1_bytes(&self) -> &[u8] {
        &self.h1
    }

    /// The HTTP/2 request head (cloned per stream; headers are reference-counted).
    pub(crate) fn h2_head(&self) -> http::Request<()> {
        let mut r = http::Request::new(());
        *r.method_mut() = self.h2.method().clone();
        *r.uri_mut() = self.h2.uri().clone();
        *r.headers_mut() = self.h2.headers().clone();
        r
    }

    /// The body (possibly empty).
    pub(crate) fn body(&self) -> &Bytes {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_http1_with_host_length_and_body() {
        let (o, p) = Origin::parse("http://127.0.0.1:9000/x").unwrap();
        let r = Request::new(
            &o,
            "POST",
            &p,
            &[("X-A".into(), "1".into())],
            Bytes::from_static(b"hi"),
        )
        .unwrap();
        let s = String::from_utf8(r.h1_bytes().to_vec()).unwrap();
        assert!(
            s.starts_with("POST /x HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nX-A: 1\r\n"),
            "{s}"
        );
        assert!(s.ends_with("Content-Length: 2\r\n\r\nhi"), "{s}");
        assert_eq!(r.h2_head().uri().to_string(), "http://127.0.0.1:9000/x");
    }

    #[test]
    fn rejects_bad_methods_and_headers() {
        let (o, p) = Origin::parse("http://127.0.0.1:9000/").unwrap();
        assert!(Request::new(&o, "G ET", &p, &[], Bytes::new()).is_err());
        assert!(Request::new(
            &o,
            "GET",
            &p,
            &[("bad name".into(), "v".into())],
            Bytes::new()
        )
        .is_err());
        assert!(Request::new(
            &o,
            "GET",
            &p,
            &[("Content-Length".into(), "3".into())],
            Bytes::new()
        )
        .is_err());
    }
}
