//! The reading side of an upstream connection: response heads parsed and rewritten for
//! the client in one pass, each response handed to the request at the head of the queue,
//! bodies whole or relayed as they arrive, and how the connection ended.

use super::{connection_tokens, hop_by_hop, put_headers, Conn, Reply, ReplyBody, State};
use crate::retry::Fail;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use st_http::wire::{self, BodyFraming, Framing};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// How a connection's reading ended, which says what became of the requests still queued.
pub(super) enum End {
    Announced,
    Lost(String),
    Malformed(String),
}

struct Head {
    len: usize,
    status: u16,
    interim: bool,
    keep_alive: bool,
    framing: Framing,
    /// Status line and end-to-end headers for the client.
    out: Bytes,
}

/// Parse a backend's response head (the wire rules are `st_http::wire`'s) and write the head
/// the client gets, in the same pass over the headers.
fn parse_head(data: &[u8], head_request: bool) -> Result<Option<Head>, String> {
    let mut headers = wire::headers();
    let mut named: Vec<&[u8]> = Vec::new();
    let mut ignored = true;
    let head = wire::parse_response(data, head_request, &mut headers, |h| {
        if h.name.eq_ignore_ascii_case("connection") {
            connection_tokens(h.value, &mut ignored, &mut named);
        }
    })
    .map_err(|e| e.to_string())?;
    let Some(head) = head else { return Ok(None) };
    if head.status == 101 {
        // The client's Upgrade never reaches a backend (it is hop-by-hop), and the balancer
        // relays no other protocol.
        return Err("the backend switched protocols, which the balancer does not relay".into());
    }
    let mut out = BytesMut::new();
    if !head.interim {
        out.reserve(head.len + 16);
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(head.status.to_string().as_bytes());
        out.put_u8(b' ');
        out.put_slice(head.reason.as_bytes());
        out.put_slice(b"\r\n");
        put_headers(&mut out, head.headers, hop_by_hop, &named);
    }
    Ok(Some(Head {
        len: head.len,
        status: head.status,
        interim: head.interim,
        keep_alive: head.keep_alive,
        framing: head.framing,
        out: out.freeze(),
    }))
}

async fn fill(rd: &mut tokio::net::tcp::OwnedReadHalf, buf: &mut BytesMut) -> Result<bool, String> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
    match rd.read_buf(buf).await {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(e) => Err(e.to_string()),
    }
}

/// Read responses in order and hand each to the request at the head of the queue, until the
/// connection ends.
pub(super) async fn read_responses(c: &Conn, rd: &mut tokio::net::tcp::OwnedReadHalf) -> End {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        // Every complete response in the buffer.
        while !buf.is_empty() {
            let head_request = match c.queue.borrow().front() {
                Some(p) => p.head_request,
                None => return End::Malformed("bytes from the backend with no request".into()),
            };
            let head = match parse_head(&buf, head_request) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    if let Some(p) = c.queue.borrow_mut().pop_front() {
                        let _ = p.tx.send(Err(Fail::Malformed(e.clone())));
                    }
                    return End::Malformed(e);
                }
            };
            buf.advance(head.len);
            if head.interim {
                continue;
            }
            let p = c.queue.borrow_mut().pop_front().expect("checked above");
            if !head.keep_alive {
                c.state.set(State::Closing);
            }
            let mut reply = Reply {
                status: head.status,
                head: head.out,
                body: ReplyBody::Done(Bytes::new()),
                close_delimited: matches!(head.framing, Framing::UntilClose),
            };
            let mut body = BodyFraming::new(head.framing);
            match body.feed(&buf) {
                // The common case: the whole body is here already.
                Ok((n, true)) => {
                    reply.body = ReplyBody::Done(buf.split_to(n).freeze());
                    let _ = p.tx.send(Ok(reply));
                }
                Ok((n, false)) => {
                    let (tx, rx) = mpsc::channel(8);
                    reply.body = ReplyBody::Stream(rx);
                    let _ = p.tx.send(Ok(reply));
                    let first = buf.split_to(n).freeze();
                    if let Err(e) = relay_body(body, first, &mut buf, rd, tx).await {
                        return End::Lost(e);
                    }
                    if head.framing == Framing::UntilClose {
                        return End::Lost("closed after a close-delimited body".into());
                    }
                }
                Err(_) => {
                    let _ = p.tx.send(Err(Fail::Malformed("bad chunked body".into())));
                    return End::Malformed("bad chunked body".into());
                }
            }
            if !head.keep_alive {
                return End::Announced;
            }
        }
        match fill(rd, &mut buf).await {
            Ok(true) => {}
            Ok(false) if buf.is_empty() => return End::Lost("closed by the backend".into()),
            Ok(false) => return End::Lost("closed in the middle of a response".into()),
            Err(e) => return End::Lost(e),
        }
    }
}

/// Pass a body that is not all here yet to the client as it arrives, starting with `first`,
/// the part that was. A client that went away does not stop the reading: the connection must
/// stay in step for the requests behind.
async fn relay_body(
    mut body: BodyFraming,
    first: Bytes,
    buf: &mut BytesMut,
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    tx: mpsc::Sender<Result<Bytes, ()>>,
) -> Result<(), String> {
    let mut tx = Some(tx);
    let (mut piece, mut done) = (first, false);
    loop {
        if !piece.is_empty() {
            if let Some(t) = &tx {
                if t.send(Ok(piece)).await.is_err() {
                    tx = None;
                }
            }
        }
        if done {
            return Ok(());
        }
        match fill(rd, buf).await {
            Ok(true) => {}
            Ok(false) if body.until_close() => return Ok(()),
            Ok(false) | Err(_) => {
                if let Some(t) = &tx {
                    let _ = t.send(Err(())).await;
                }
                return Err("closed in the middle of a body".into());
            }
        }
        let (take, end) = body.feed(buf).map_err(|_| "bad chunked body".to_string())?;
        (piece, done) = (buf.split_to(take).freeze(), end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_lose_hop_by_hop_headers_and_keep_their_framing() {
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: t=5\r\nContent-Length: 2\r\nX-Version: v1\r\n\r\nhi",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive && matches!(h.framing, Framing::Length(2)));
        assert_eq!(
            &h.out[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Version: v1\r\n"
        );
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(h.keep_alive && matches!(h.framing, Framing::Chunked));
        assert!(h.out.ends_with(b"Transfer-Encoding: chunked\r\n"));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert!(matches!(h.framing, Framing::None));
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive && matches!(h.framing, Framing::UntilClose));
        let h = parse_head(b"HTTP/1.1 100 Continue\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(h.interim);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le", false)
            .unwrap()
            .is_none());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        assert!(parse_head(b"HTTP/1.1 101 Switching\r\n\r\n", false).is_err());
    }
}

/// Arbitrary bytes from a backend: no panic, and a head, a wait or an error that fits them;
/// the head written for the client is a head of its own, without one hop-by-hop header.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Bytes, or a response head with the headers the rewriting treats specially (Connection
    /// and what it names, the fixed hop-by-hop set) among arbitrary ones.
    fn response_bytes() -> impl Strategy<Value = Vec<u8>> {
        let special = prop_oneof![
            Just(b"Connection: close, X-A".to_vec()),
            Just(b"connection: keep-alive,x-b , ,".to_vec()),
            Just(b"X-A: 1".to_vec()),
            Just(b"x-b: 2".to_vec()),
            Just(b"Keep-Alive: timeout=5".to_vec()),
            Just(b"Proxy-Connection: close".to_vec()),
            Just(b"TE: trailers".to_vec()),
            Just(b"Upgrade: h2c".to_vec()),
            Just(b"Content-Length: 5".to_vec()),
            Just(b"Transfer-Encoding: chunked".to_vec()),
        ];
        // Mostly valid lines, so that many heads parse and their rewriting is checked.
        let line = prop_oneof![
            40 => special,
            20 => "[A-Za-z][A-Za-z0-9-]{0,11}:[ \t]?[ -~]{0,20}".prop_map(String::into_bytes),
            1 => "[ -~]{0,40}".prop_map(String::into_bytes),
            1 => vec(any::<u8>(), 0..40),
        ];
        prop_oneof![
            1 => vec(any::<u8>(), 0..2048),
            3 => (
                "HTTP/1\\.[01]",
                "(1[0-9][0-9]|101|[2-5][0-9][0-9]|[2-5][0-9][0-9]|0[0-9][0-9]|[0-9]{1,4})",
                "[ -~]{0,12}",
                vec(line, 0..12),
                prop_oneof![1 => Just(1), 3 => Just(2)],
            )
                .prop_map(|(v, code, reason, mut lines, ends)| {
                    // CRLF-joined; two empty lines at the end make a complete head.
                    lines.insert(0, format!("{v} {code} {reason}").into_bytes());
                    lines.extend(std::iter::repeat_n(Vec::new(), ends));
                    lines.join(&b"\r\n"[..])
                }),
        ]
    }

    /// The names the Connection headers of the complete head at the start of `data` list.
    fn connection_named(data: &[u8]) -> Vec<String> {
        let mut headers = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
        let mut r = httparse::Response::new(&mut headers);
        let _ = r.parse(data);
        r.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
            .filter(|t| !t.is_empty() && t != "close" && t != "keep-alive")
            .collect()
    }

    proptest! {
        #[test]
        fn a_backend_head_parses_waits_or_fails_and_is_rewritten_clean(
            data in response_bytes(),
            head_request: bool,
        ) {
            match parse_head(&data, head_request) {
                Ok(Some(h)) => {
                    prop_assert!(h.len <= data.len());
                    prop_assert_ne!(h.status, 101);
                    if h.interim {
                        prop_assert!(h.out.is_empty());
                        return Ok(());
                    }
                    // With the blank line the relay adds, the client's head parses on its own.
                    let mut out = h.out.to_vec();
                    out.extend_from_slice(b"\r\n");
                    let mut headers = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
                    let mut r = httparse::Response::new(&mut headers);
                    let n = r.parse(&out);
                    prop_assert!(
                        matches!(n, Ok(httparse::Status::Complete(n)) if n == out.len()),
                        "{:?} from {:?}",
                        String::from_utf8_lossy(&out),
                        String::from_utf8_lossy(&data)
                    );
                    prop_assert_eq!(r.code, Some(h.status));
                    let named = connection_named(&data);
                    for kept in r.headers.iter() {
                        prop_assert!(!hop_by_hop(kept.name), "{} relayed", kept.name);
                        prop_assert!(
                            !named.contains(&kept.name.to_ascii_lowercase()),
                            "{} relayed though Connection named it",
                            kept.name
                        );
                    }
                }
                Ok(None) => prop_assert!(data.len() <= wire::MAX_HEAD),
                Err(e) => prop_assert!(!e.is_empty()),
            }
        }
    }
}
