//! The HTTP/1.1 client connection: write the prepared bytes, read the head and skip the body by
//! its framing ([`crate::wire`]). One request at a time (no pipelining), keep-alive by default.

use crate::stream::Stream;
use crate::wire::{self, BodyFraming, Framing};
use crate::{ErrorClass, Request, Response, VersionTag, VERSION_HEADER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Read buffer per connection: small, so that thousands of idle connections cost little; it
/// grows to [`MAX_BUF`] for a large head, or to skip a large body in fewer reads.
const BUF: usize = 8 * 1024;
const MAX_BUF: usize = 64 * 1024;

/// An open HTTP/1.1 connection.
pub struct H1Conn {
    stream: Stream,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

struct Head {
    status: u16,
    version: VersionTag,
    len: usize,
    body: Framing,
    keep_alive: bool,
    interim: bool,
}

/// The head at the start of `data`, with the server's version tag, read in the same pass.
fn parse_head(data: &[u8], is_head_request: bool) -> Result<Option<Head>, ErrorClass> {
    let mut headers = wire::headers();
    let mut version = VersionTag::default();
    let head = wire::parse_response(data, is_head_request, &mut headers, |h| {
        if h.name.eq_ignore_ascii_case(VERSION_HEADER) {
            version = VersionTag::new(h.value.trim_ascii());
        }
    })
    .map_err(|_| ErrorClass::Malformed)?;
    Ok(head.map(|h| Head {
        status: h.status,
        version,
        len: h.len,
        body: h.framing,
        keep_alive: h.keep_alive,
        interim: h.interim,
    }))
}

impl H1Conn {
    pub(crate) fn new(stream: Stream) -> Self {
        H1Conn {
            stream,
            buf: vec![0u8; BUF],
            start: 0,
            end: 0,
        }
    }

    fn grow(&mut self) {
        self.buf.resize(MAX_BUF, 0);
    }

    /// Read more bytes into the buffer; `Ok(false)` on EOF.
    async fn fill(&mut self) -> Result<bool, ErrorClass> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                if self.buf.len() >= MAX_BUF {
                    // A head that does not fit in 64 KiB.
                    return Err(ErrorClass::Malformed);
                }
                self.grow();
            }
        }
        match self.stream.read(&mut self.buf[self.end..]).await {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.end += n;
                Ok(true)
            }
            Err(e) => Err(ErrorClass::from_io(&e)),
        }
    }

    /// Send one request and read its whole response. Returns the response and whether the
    /// connection may be reused.
    pub async fn request(&mut self, req: &Request) -> Result<(Response, bool), ErrorClass> {
        if self.start != self.end {
            // Bytes nobody asked for: the server is not speaking HTTP/1.1 properly.
            return Err(ErrorClass::Malformed);
        }
        self.stream
            .write_all(req.h1_bytes())
            .await
            .map_err(|e| ErrorClass::from_io(&e))?;
        let head = loop {
            match parse_head(&self.buf[self.start..self.end], req.head)? {
                Some(h) if h.interim => self.start += h.len,
                Some(h) => break h,
                None => {
                    if !self.fill().await? {
                        // Closed before a complete head: a reset keep-alive connection, or
                        // garbage followed by close.
                        return Err(if self.start == self.end {
                            ErrorClass::Reset
                        } else {
                            ErrorClass::Malformed
                        });
                    }
                }
            }
        };
        self.start += head.len;
        let response = Response {
            status: head.status,
            version: head.version,
        };
        let mut body = BodyFraming::new(head.body);
        loop {
            let (n, done) = body
                .feed(&self.buf[self.start..self.end])
                .map_err(|_| ErrorClass::Malformed)?;
            self.start += n;
            if done {
                break;
            }
            if matches!(head.body, Framing::Length(n) if n > self.buf.len() as u64)
                && self.buf.len() < MAX_BUF
            {
                // A large body is skipped in fewer reads.
                self.grow();
            }
            if !self.fill().await? {
                if head.body == Framing::UntilClose {
                    break;
                }
                return Err(ErrorClass::Reset);
            }
        }
        Ok((response, head.keep_alive))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_and_picks_the_body_framing() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nhello", false)
            .unwrap()
            .unwrap();
        assert!(
            matches!(h.body, Framing::Length(13)) && h.keep_alive && h.status == 200 && h.len == 39
        );
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(matches!(h.body, Framing::Chunked));
        let h = parse_head(
            b"HTTP/1.1 500 X\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive && h.status == 500 && h.version.is_empty());
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nX-Scaletest-Version:  v2 \r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.version.as_bytes(), b"v2");
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(matches!(h.body, Framing::UntilClose) && !h.keep_alive);
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert!(matches!(h.body, Framing::None));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-", false)
            .unwrap()
            .is_none());
        // A 101 is the last HTTP/1.1 on the connection: counted, no body, then closed.
        let h = parse_head(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(h.status == 101 && !h.interim && h.body == Framing::None && !h.keep_alive);
        assert!(parse_head(b"garbage\r\n\r\n", false).is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
    }
}
