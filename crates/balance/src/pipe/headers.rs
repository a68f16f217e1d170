//! Hop-by-hop headers: the fixed set, the ones a Connection header names, and the copy
//! that leaves both out; shared by both directions of the relay.

use bytes::{BufMut, BytesMut};

/// Headers that belong to one connection and are never relayed (RFC 9110 §7.6.1), besides
/// those the Connection header names. Transfer-Encoding is relayed: bodies keep their framing.
pub(crate) fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Read a Connection header's tokens: `close` and `keep-alive` set `keep_alive`; any other
/// token names a hop-by-hop header, collected in `named`.
pub(crate) fn connection_tokens<'a>(
    value: &'a [u8],
    keep_alive: &mut bool,
    named: &mut Vec<&'a [u8]>,
) {
    for t in value.split(|&b| b == b',').map(|t| t.trim_ascii()) {
        if t.eq_ignore_ascii_case(b"close") {
            *keep_alive = false;
        } else if t.eq_ignore_ascii_case(b"keep-alive") {
            *keep_alive = true;
        } else {
            named.push(t);
        }
    }
}

/// Copy headers as `name: value` lines, leaving out those `skip` names and those the
/// Connection header named (hop-by-hop either way). Shared by both directions of the relay.
pub(crate) fn put_headers(
    out: &mut BytesMut,
    headers: &[httparse::Header<'_>],
    skip: fn(&str) -> bool,
    named: &[&[u8]],
) {
    for h in headers {
        if skip(h.name)
            || named
                .iter()
                .any(|n| n.eq_ignore_ascii_case(h.name.as_bytes()))
        {
            continue;
        }
        out.put_slice(h.name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(h.value);
        out.put_slice(b"\r\n");
    }
}
