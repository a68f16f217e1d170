//! Chunked framing from outside, built from the pieces it is made of (hex sizes of any length,
//! extensions, CRs and LFs, stray bytes) rather than uniform random bytes, so that the cases
//! reach every state of the decoder: sizes past 64 bits, bare CRs, trailers. Whatever arrives,
//! no panic, a piece is never over-read, and where a body ends does not depend on how the
//! bytes were split into reads.

use proptest::collection::vec;
use proptest::prelude::*;
use st_http::wire::{BodyFraming, Framing};

/// Bytes shaped like a chunked body, valid or not.
fn chunkish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        "[0-9a-fA-F]{1,24}".prop_map(String::into_bytes),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b";name=value".to_vec()),
        Just(b" ".to_vec()),
        Just(b"0\r\n\r\n".to_vec()),
        Just(b"X-Trailer: t\r\n".to_vec()),
        vec(any::<u8>(), 1..40),
    ];
    vec(token, 0..40).prop_map(|t| t.concat())
}

/// Feed `pieces` in turn; the bytes taken, and whether the body ended (`Some(false)`: an
/// error). Checks that no piece is over-read and that an unfinished body takes all it is given.
fn feed(pieces: &[&[u8]]) -> Result<(usize, Option<bool>), TestCaseError> {
    let mut body = BodyFraming::new(Framing::Chunked);
    let mut taken = 0;
    for p in pieces {
        match body.feed(p) {
            Ok((n, done)) => {
                prop_assert!(n <= p.len());
                taken += n;
                if done {
                    return Ok((taken, Some(true)));
                }
                prop_assert_eq!(n, p.len(), "an unfinished body takes all it is given");
            }
            Err(_) => return Ok((taken, Some(false))),
        }
    }
    Ok((taken, None))
}

proptest! {
    #[test]
    fn chunked_framing_does_not_depend_on_how_reads_split_the_bytes(
        data in chunkish(),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let whole = feed(&[&data])?;
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        at.push(data.len());
        at.sort();
        let mut pieces = Vec::new();
        let mut from = 0;
        for to in at {
            pieces.push(&data[from..to]);
            from = to;
        }
        let split = feed(&pieces)?;
        // The same outcome: an end at the same byte, an error, or still waiting.
        match (whole.1, split.1) {
            (Some(true), Some(true)) => prop_assert_eq!(whole.0, split.0),
            (a, b) => prop_assert_eq!(a, b),
        }
    }
}
