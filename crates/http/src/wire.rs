//! HTTP/1.1 on the wire, for every reader of responses: the load engine's client ([`crate::H1Conn`])
//! and the balancer's upstream connections. A response head is parsed in one pass (httparse,
//! headers on the caller's stack), which also decides the body's framing and whether the
//! connection can carry another request; [`BodyFraming`] then finds where the body ends, a
//! piece at a time, without copying it. What a reader does with the headers (count a version,
//! rewrite them for a client) stays with the reader: it sees each header in the same pass.
//!
//! Status 101 (Switching Protocols) is final and ends HTTP/1.1 on the connection: it has no
//! body, and whatever follows is another protocol. Neither reader asks for an upgrade, so
//! after a 101 the connection is closed; the load client counts the response, the balancer,
//! which removes `Upgrade` from requests and relays no other protocol, refuses it.

use crate::chunked::{BadChunk, Chunked};
use std::mem::MaybeUninit;

/// The largest response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most headers in a response head (on the stack of whoever parses it).
pub const MAX_HEADERS: usize = 100;

/// How a response's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// It has none (HEAD, 1xx, 204, 304).
    None,
    /// After this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// When the connection closes (no length given).
    UntilClose,
}

/// A response head, parsed.
#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    /// Bytes of the head, blank line included.
    pub len: usize,
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'b str,
    /// A 1xx other than 101: another head follows for the same request.
    pub interim: bool,
    /// The connection can carry another request after this response.
    pub keep_alive: bool,
    /// How the body ends.
    pub framing: Framing,
    /// The headers, in order.
    pub headers: &'h [httparse::Header<'b>],
}

/// A response head that is not valid HTTP/1.x.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    /// httparse refused it (including more than [`MAX_HEADERS`] headers).
    #[error("{0}")]
    Invalid(httparse::Error),
    /// Incomplete after [`MAX_HEAD`] bytes.
    #[error("response head over {MAX_HEAD} bytes")]
    TooLarge,
    /// A `Content-Length` that is not a number.
    #[error("bad content-length")]
    BadLength,
    /// Two different `Content-Length`s.
    #[error("conflicting content-length")]
    ConflictingLength,
}

/// Room for a head's headers, on the caller's stack. Left uninitialized: httparse writes the
/// ones it finds, so a parse costs nothing for the headers a response does not have.
pub type Headers<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// Room for [`parse_response`] to put the headers in.
pub fn headers<'b>() -> Headers<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Parse the response head at the start of `data` (`Ok(None)`: not all here yet). `each` sees
/// every header in the same pass. `head_request`: the response answers a HEAD (no body).
pub fn parse_response<'h, 'b>(
    data: &'b [u8],
    head_request: bool,
    headers: &'h mut Headers<'b>,
    mut each: impl FnMut(&httparse::Header<'b>),
) -> Result<Option<ResponseHead<'h, 'b>>, HeadError> {
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, data, headers);
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if data.len() > MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Invalid(e)),
    };
    let status = resp.code.unwrap_or(0);
    // httparse takes any three digits; below 100 is no status (RFC 9110 §15), and hyper, the
    // balancer's other path, refuses it too. Relayed, "000" would become "HTTP/1.1 0".
    if status < 100 {
        return Err(HeadError::Invalid(httparse::Error::Status));
    }
    let mut keep_alive = resp.version == Some(1);
    let mut length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or(HeadError::BadLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::ConflictingLength);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in h.value.split(|&b| b == b',').map(|t| t.trim_ascii()) {
                if t.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
        each(h);
    }
    let interim = (100..200).contains(&status) && status != 101;
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    if status == 101 || framing == Framing::UntilClose {
        keep_alive = false;
    }
    Ok(Some(ResponseHead {
        len,
        status,
        reason: resp.reason.unwrap_or(""),
        interim,
        keep_alive,
        framing,
        headers: resp.headers,
    }))
}

/// Where a body ends, found a piece at a time.
#[derive(Debug)]
pub struct BodyFraming {
    framing: Framing,
    left: u64,
    chunked: Chunked,
}

impl BodyFraming {
    /// At the start of a body framed so.
    pub fn new(framing: Framing) -> Self {
        BodyFraming {
            framing,
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunked: Chunked::new(),
        }
    }

    /// The body ends when the connection does.
    pub fn until_close(&self) -> bool {
        self.framing == Framing::UntilClose
    }

    /// How many of `input`'s first bytes belong to the body, and whether it is complete (bytes
    /// past its end are left for the caller). A close-delimited body is never complete here:
    /// its end is the connection's.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, bool), BadChunk> {
        match self.framing {
            Framing::None => Ok((0, true)),
            Framing::Length(_) => {
                let take = (input.len() as u64).min(self.left);
                self.left -= take;
                Ok((take as usize, self.left == 0))
            }
            Framing::Chunked => self.chunked.feed(input),
            Framing::UntilClose => Ok((input.len(), false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Status, interim, keep-alive, framing.
    type Parsed = (u16, bool, bool, Framing);

    fn parse(data: &[u8], head_request: bool) -> Result<Option<Parsed>, HeadError> {
        let mut h = headers();
        Ok(parse_response(data, head_request, &mut h, |_| {})?
            .map(|r| (r.status, r.interim, r.keep_alive, r.framing)))
    }

    #[test]
    fn heads_decide_framing_and_reuse() {
        let cases: &[(&[u8], bool, Parsed)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n",
                false,
                (200, false, true, Framing::Length(13)),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n",
                true,
                (200, false, true, Framing::None),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false,
                (200, false, true, Framing::Chunked),
            ),
            (
                b"HTTP/1.1 500 X\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                false,
                (500, false, false, Framing::Length(0)),
            ),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                false,
                (200, false, true, Framing::Length(1)),
            ),
            (
                b"HTTP/1.0 200 OK\r\n\r\n",
                false,
                (200, false, false, Framing::UntilClose),
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\n",
                false,
                (200, false, false, Framing::UntilClose),
            ),
            (
                b"HTTP/1.1 204 No Content\r\n\r\n",
                false,
                (204, false, true, Framing::None),
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false,
                (304, false, true, Framing::None),
            ),
            (
                b"HTTP/1.1 100 Continue\r\n\r\n",
                false,
                (100, true, true, Framing::None),
            ),
            (
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                false,
                (103, true, true, Framing::None),
            ),
        ];
        for (data, head, want) in cases {
            let got = parse(data, *head).unwrap().unwrap();
            assert_eq!(got, *want, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn a_101_is_final_has_no_body_and_ends_the_connection() {
        let got = parse(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05", false)
            .unwrap()
            .unwrap();
        assert_eq!(got, (101, false, false, Framing::None));
    }

    #[test]
    fn bad_and_partial_heads() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-", false), Ok(None));
        assert!(matches!(
            parse(b"garbage\r\n\r\n", false),
            Err(HeadError::Invalid(_))
        ));
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false),
            Err(HeadError::BadLength)
        );
        assert_eq!(
            parse(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            Err(HeadError::ConflictingLength)
        );
        for low in ["000", "099"] {
            let head = format!("HTTP/1.1 {low} X\r\nContent-Length: 0\r\n\r\n");
            assert_eq!(
                parse(head.as_bytes(), false),
                Err(HeadError::Invalid(httparse::Error::Status)),
                "{head}"
            );
        }
        let long = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse(long.as_bytes(), false), Err(HeadError::TooLarge));
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(matches!(
            parse(many.as_bytes(), false),
            Err(HeadError::Invalid(_))
        ));
    }

    #[test]
    fn every_header_is_seen_once_in_order_and_the_head_keeps_them() {
        let mut h = headers();
        let mut seen = Vec::new();
        let r = parse_response(
            b"HTTP/1.1 200 Fine\r\nA: 1\r\nContent-Length: 0\r\nB: 2\r\n\r\nNEXT",
            false,
            &mut h,
            |h| seen.push(h.name),
        )
        .unwrap()
        .unwrap();
        assert_eq!(seen, ["A", "Content-Length", "B"]);
        assert_eq!(r.headers.len(), 3);
        // Everything up to the next response.
        assert_eq!((r.reason, r.len), ("Fine", 52));
    }

    #[test]
    fn body_framing_finds_the_end_a_piece_at_a_time() {
        let mut b = BodyFraming::new(Framing::Length(5));
        assert_eq!(b.feed(b"abc"), Ok((3, false)));
        assert_eq!(b.feed(b"deNEXT"), Ok((2, true)));
        let mut b = BodyFraming::new(Framing::Chunked);
        assert_eq!(b.feed(b"3\r\nabc\r\n"), Ok((8, false)));
        assert_eq!(b.feed(b"0\r\n\r\nNEXT"), Ok((5, true)));
        assert_eq!(BodyFraming::new(Framing::None).feed(b"NEXT"), Ok((0, true)));
        assert_eq!(
            BodyFraming::new(Framing::UntilClose).feed(b"all"),
            Ok((3, false))
        );
        assert_eq!(
            BodyFraming::new(Framing::Chunked).feed(b"zz"),
            Err(BadChunk)
        );
    }
}

/// Arbitrary bytes from outside: no panic, and a head, a wait or an error that fits them.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Bytes, or something shaped like a head (a status line, header-ish lines, CRLFs), so
    /// that the cases reach past the first byte.
    fn head_bytes() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            Just(b"Content-Length: 5".to_vec()),
            Just(b"Transfer-Encoding: chunked".to_vec()),
            Just(b"Connection: close".to_vec()),
            "[ -~]{0,40}".prop_map(String::into_bytes),
            vec(any::<u8>(), 0..40),
        ];
        prop_oneof![
            vec(any::<u8>(), 0..2048),
            ("[0-9]{3}", vec(line, 0..120), 1..3usize).prop_map(|(code, mut lines, ends)| {
                // Lines joined by CRLF: one empty line at the end leaves the head open, two end it.
                lines.insert(0, format!("HTTP/1.1 {code} X").into_bytes());
                lines.extend(std::iter::repeat_n(Vec::new(), ends));
                lines.join(&b"\r\n"[..])
            }),
        ]
    }

    proptest! {
        #[test]
        fn a_response_head_parses_waits_or_fails(data in head_bytes(), head_request: bool) {
            let mut h = headers();
            let mut seen = 0;
            match parse_response(&data, head_request, &mut h, |_| seen += 1) {
                Ok(Some(r)) => {
                    prop_assert!(r.len <= data.len());
                    prop_assert_eq!(seen, r.headers.len());
                    prop_assert!(r.headers.len() <= MAX_HEADERS);
                    prop_assert!(!(r.keep_alive && r.framing == Framing::UntilClose));
                }
                Ok(None) => prop_assert!(data.len() <= MAX_HEAD),
                Err(_) => {}
            }
        }

        #[test]
        fn a_body_never_takes_more_than_it_is_given(
            pieces in vec(vec(any::<u8>(), 0..64), 0..64),
            framing in prop_oneof![
                Just(Framing::Chunked),
                Just(Framing::UntilClose),
                Just(Framing::None),
                any::<u64>().prop_map(Framing::Length),
            ],
        ) {
            let mut body = BodyFraming::new(framing);
            for p in &pieces {
                match body.feed(p) {
                    Ok((n, done)) => {
                        prop_assert!(n <= p.len());
                        if done {
                            break;
                        }
                        prop_assert_eq!(n, p.len(), "an unfinished body takes all it is given");
                    }
                    Err(_) => break,
                }
            }
        }

        #[test]
        fn a_chunked_body_ends_exactly_where_it_was_written_to_end(
            chunks in vec(vec(any::<u8>(), 1..300), 0..8),
            cuts in vec(any::<usize>(), 0..8),
            after in vec(any::<u8>(), 0..16),
        ) {
            let mut wire = Vec::new();
            for c in &chunks {
                wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                wire.extend_from_slice(c);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let end = wire.len();
            wire.extend_from_slice(&after);
            // Fed in pieces cut at arbitrary places.
            let mut at: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            at.push(wire.len());
            at.sort();
            let mut body = BodyFraming::new(Framing::Chunked);
            let (mut from, mut taken, mut done) = (0, 0, false);
            for to in at {
                let (n, d) = body.feed(&wire[from..to]).expect("valid chunked");
                taken += n;
                from += n;
                if d {
                    done = true;
                    break;
                }
                prop_assert_eq!(from, to);
            }
            prop_assert!(done);
            prop_assert_eq!(taken, end);
        }
    }
}
