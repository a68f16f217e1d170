//! The request target a backend gets, for both paths (RFC 9112 §3.2): one rule, so that a
//! target the balancer cannot forward is its own answer and never reaches another address.
//!
//! - origin form (`/p?q`): as it is;
//! - absolute form (`http://h/p?q`, as sent to proxies): its path and query; an empty path is
//!   `/`, or `*` for OPTIONS (§3.2.4);
//! - asterisk form (`*`): OPTIONS only, forwarded as `*`;
//! - authority form (`h:443`): CONNECT only, and the balancer is no tunnel: 501;
//! - anything else: 400.

use crate::retry::Refused;
use std::borrow::Cow;

/// A target as the client's request carried it, already split (hyper splits HTTP/2's and
/// its own; [`split`] splits a raw HTTP/1 one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Given<'a> {
    /// It came with a scheme (absolute form, or any HTTP/2 request).
    pub(crate) absolute: bool,
    /// Its path and query (`None`: none at all, as in `http://h` or `h:443`).
    pub(crate) path_and_query: Option<&'a str>,
}

/// Split a raw HTTP/1 request target.
pub(crate) fn split(raw: &str) -> Given<'_> {
    let scheme = ["http://", "https://"]
        .iter()
        .find(|s| raw.len() >= s.len() && raw[..s.len()].eq_ignore_ascii_case(s));
    match scheme {
        Some(s) => {
            let rest = &raw[s.len()..];
            Given {
                absolute: true,
                path_and_query: rest.find(['/', '?']).map(|i| &rest[i..]),
            }
        }
        None if raw == "*" || raw.starts_with('/') => Given {
            absolute: false,
            path_and_query: Some(raw),
        },
        None => Given {
            absolute: false,
            path_and_query: None,
        },
    }
}

/// The target the backend gets for `method` and `given`, or the balancer's refusal.
pub(crate) fn upstream<'a>(method: &[u8], given: Given<'a>) -> Result<Cow<'a, str>, Refused> {
    if method == b"CONNECT" {
        return Err(Refused(501, "CONNECT is not supported".into()));
    }
    let options = method == b"OPTIONS";
    match given.path_and_query {
        Some("*") if options => Ok(Cow::Borrowed("*")),
        Some("*") => Err(Refused(
            400,
            "the asterisk-form target is for OPTIONS only".into(),
        )),
        Some(p) if p.starts_with('/') => Ok(Cow::Borrowed(p)),
        Some(q) if given.absolute && q.starts_with('?') => Ok(Cow::Owned(format!("/{q}"))),
        None if given.absolute => Ok(Cow::Borrowed(if options { "*" } else { "/" })),
        _ => Err(Refused(
            400,
            "the request target must be a path, an absolute URI, or * for OPTIONS".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_is_forwarded_or_refused() {
        // (method, raw target) → the backend's target, or the balancer's status
        let table: &[(&str, &str, Result<&str, u16>)] = &[
            ("GET", "/a?b=1", Ok("/a?b=1")),
            ("GET", "http://h/x?y", Ok("/x?y")),
            ("GET", "HTTPS://h:8443/x", Ok("/x")),
            ("GET", "http://h", Ok("/")),
            ("GET", "http://h?q=1", Ok("/?q=1")),
            ("OPTIONS", "http://h", Ok("*")),
            ("OPTIONS", "*", Ok("*")),
            ("OPTIONS", "/", Ok("/")),
            ("GET", "*", Err(400)),
            ("GET", "h:443", Err(400)),
            ("GET", "h", Err(400)),
            ("GET", "ftp://h/x", Err(400)),
            ("GET", "%2F", Err(400)),
            ("CONNECT", "h:443", Err(501)),
            ("CONNECT", "/", Err(501)),
        ];
        for (method, raw, want) in table {
            let got = upstream(method.as_bytes(), split(raw));
            match (got, want) {
                (Ok(t), Ok(w)) => assert_eq!(t, *w, "{method} {raw}"),
                (Err(Refused(c, _)), Err(w)) => assert_eq!(c, *w, "{method} {raw}"),
                (got, want) => panic!(
                    "{method} {raw}: {:?}, wanted {want:?}",
                    got.map_err(|r| r.0)
                ),
            }
        }
    }
}
