//! Where requests go: a URL checked and resolved once, before any connection is made.

use rustls::pki_types::ServerName;
use std::net::{SocketAddr, ToSocketAddrs};

/// A URL's scheme; only these two are supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Cleartext.
    Http,
    /// TLS.
    Https,
}

/// A URL that cannot be a load target. Bad input: never retryable.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// Not a URL at all.
    #[error("invalid URL {0:?}: {1}")]
    Parse(String, String),
    /// A scheme other than http or https.
    #[error("unsupported scheme {0:?} in {1:?} (use http:// or https://)")]
    Scheme(String, String),
    /// No host part.
    #[error("URL {0:?} has no host")]
    NoHost(String),
    /// The host does not resolve.
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
}

/// A URL's parts short of its address (see [`Origin::check`]).
struct Parts {
    scheme: Scheme,
    /// As written (IPv6 in brackets).
    host: String,
    bare: String,
    port: u16,
    authority: String,
    server_name: ServerName<'static>,
    path: String,
}

/// Where requests go: scheme, host, port, resolved once before the run.
#[derive(Debug, Clone)]
pub struct Origin {
    /// http or https.
    pub scheme: Scheme,
    /// Host as written in the URL (used for `Host` / `:authority` and SNI).
    pub host: String,
    /// Port, explicit or the scheme's default.
    pub port: u16,
    /// The address connections are made to.
    pub addr: SocketAddr,
    /// `host[:port]` as sent in `Host`.
    pub authority: String,
    pub(crate) server_name: ServerName<'static>,
}

impl Origin {
    /// Check a URL as [`Origin::parse`] does, without resolving its host: for URLs that
    /// resolve only where the load runs (a Service's name in a cluster).
    pub fn check(text: &str) -> Result<(), OriginError> {
        Self::split(text).map(|_| ())
    }

    /// Parse a URL into its origin and its path-and-query.
    pub fn parse(text: &str) -> Result<(Origin, String), OriginError> {
        let p = Self::split(text)?;
        let addr = (p.bare.as_str(), p.port)
            .to_socket_addrs()
            .map_err(|e| OriginError::Resolve(p.host.clone(), e.to_string()))?
            .next()
            .ok_or_else(|| OriginError::Resolve(p.host.clone(), "no addresses".into()))?;
        Ok((
            Origin {
                scheme: p.scheme,
                host: p.bare,
                port: p.port,
                addr,
                authority: p.authority,
                server_name: p.server_name,
            },
            p.path,
        ))
    }

    /// Everything of a URL but its address.
    fn split(text: &str) -> Result<Parts, OriginError> {
        let url = url::Url::parse(text)
            .map_err(|e| OriginError::Parse(text.to_string(), e.to_string()))?;
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(OriginError::Scheme(other.to_string(), text.to_string())),
        };
        let host = url
            .host_str()
            .ok_or_else(|| OriginError::NoHost(text.to_string()))?;
        let port = url
            .port_or_known_default()
            .expect("http(s) has a default port");
        // Brackets are part of an IPv6 URL host but not of the address or SNI name.
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let server_name = ServerName::try_from(bare.clone())
            .map_err(|e| OriginError::Parse(text.to_string(), e.to_string()))?;
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Parts {
            scheme,
            host: host.to_string(),
            bare,
            port,
            authority,
            server_name,
            path,
        })
    }

    /// Whether two origins are the same place (targets files must stay on one origin).
    pub fn same_as(&self, other: &Origin) -> bool {
        self.scheme == other.scheme && self.host == other.host && self.port == other.port
    }

    /// `scheme://authority`.
    pub fn url(&self) -> String {
        let s = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{s}://{}", self.authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loopback_urls_with_defaults() {
        let (o, p) = Origin::parse("http://127.0.0.1:8080/a/b?x=1").unwrap();
        assert_eq!(
            (o.port, o.authority.as_str(), p.as_str()),
            (8080, "127.0.0.1:8080", "/a/b?x=1")
        );
        let (o, p) = Origin::parse("https://localhost").unwrap();
        assert_eq!((o.scheme, o.port, p.as_str()), (Scheme::Https, 443, "/"));
        let (o, _) = Origin::parse("http://[::1]:9/").unwrap();
        assert!(o.addr.is_ipv6());
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        assert!(matches!(
            Origin::parse("ftp://x/"),
            Err(OriginError::Scheme(..))
        ));
        assert!(matches!(
            Origin::parse("not a url"),
            Err(OriginError::Parse(..))
        ));
        assert!(matches!(
            Origin::parse("http://"),
            Err(OriginError::Parse(..)) | Err(OriginError::NoHost(..))
        ));
    }
}
