//! A streaming decoder for `Transfer-Encoding: chunked` that only counts: the load engine needs
//! to know where a body ends, never its content, and the balancer relays chunked bodies as they
//! are.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size { digits: u8 },
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    FinalLf,
    Done,
}

/// Chunked-body framing state for one response.
#[derive(Debug)]
pub struct Chunked {
    state: State,
    size: u64,
}

/// The body is not valid chunked framing.
#[derive(Debug, PartialEq, Eq)]
pub struct BadChunk;

impl Default for Chunked {
    fn default() -> Self {
        Chunked::new()
    }
}

impl Chunked {
    /// Framing state at the start of a body.
    pub fn new() -> Self {
        Chunked {
            state: State::Size { digits: 0 },
            size: 0,
        }
    }

    /// Consume framing and data from `input`; returns how many bytes belonged to this body and
    /// whether the body is complete (bytes past the end are left for the caller).
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, bool), BadChunk> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Data {
                let take = (self.size.min((input.len() - i) as u64)) as usize;
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match self.state {
                State::Size { digits } => match (b as char).to_digit(16) {
                    Some(d) if digits < 15 => {
                        self.size = self.size * 16 + d as u64;
                        State::Size { digits: digits + 1 }
                    }
                    None if digits > 0 && matches!(b, b';' | b' ' | b'\t') => State::Ext,
                    None if digits > 0 && b == b'\r' => State::SizeLf,
                    _ => return Err(BadChunk),
                },
                State::Ext => {
                    if b == b'\r' {
                        State::SizeLf
                    } else {
                        State::Ext
                    }
                }
                State::SizeLf if b == b'\n' => {
                    if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    }
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size { digits: 0 },
                State::TrailerStart if b == b'\r' => State::FinalLf,
                State::TrailerStart | State::TrailerLine => {
                    if b == b'\n' {
                        State::TrailerStart
                    } else {
                        State::TrailerLine
                    }
                }
                State::FinalLf if b == b'\n' => State::Done,
                _ => return Err(BadChunk),
            };
            if self.state == State::Done {
                return Ok((i, true));
            }
        }
        Ok((i, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] =
        b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";

    #[test]
    fn decodes_a_body_in_one_piece_and_stops_at_its_end() {
        let mut c = Chunked::new();
        assert_eq!(c.feed(BODY), Ok((BODY.len() - 4, true)));
    }

    #[test]
    fn decodes_a_body_fed_one_byte_at_a_time() {
        let mut c = Chunked::new();
        let end = BODY.len() - 4;
        for (i, b) in BODY[..end].iter().enumerate() {
            let (n, done) = c.feed(std::slice::from_ref(b)).unwrap();
            assert_eq!(n, 1);
            assert_eq!(done, i == end - 1);
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"4\r\nWikiXX",
            b"ffffffffffffffffff\r\n",
        ] {
            assert_eq!(
                Chunked::new().feed(bad),
                Err(BadChunk),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
