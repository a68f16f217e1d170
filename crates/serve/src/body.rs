//! Response bodies without boxing: a fixed buffer, `n` bytes cut from one shared chunk, or
//! blocks paced by a timer (go_httperf's `/blocks`). Memory per response is bounded by the chunk,
//! whatever `n` is.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Largest piece a streamed body hands to hyper at once.
pub const CHUNK: usize = 64 * 1024;

/// A response body.
pub enum ServeBody {
    /// All at once.
    Once(Option<Bytes>),
    /// `left` bytes taken from `chunk` (repeated).
    Repeat {
        /// The shared source chunk.
        chunk: Bytes,
        /// Bytes still to send.
        left: u64,
    },
    /// `left` blocks of `block`, one every `period` (the first at once).
    Blocks {
        /// One block.
        block: Bytes,
        /// Blocks still to send.
        left: u64,
        /// Gap between blocks.
        period: Duration,
        /// The wait for the next block.
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

impl ServeBody {
    /// A body of these bytes.
    pub fn bytes(b: impl Into<Bytes>) -> Self {
        ServeBody::Once(Some(b.into()))
    }
}

impl Body for ServeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ServeBody::Once(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ServeBody::Repeat { chunk, left } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                let n = (*left).min(chunk.len() as u64) as usize;
                *left -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk.slice(..n)))))
            }
            ServeBody::Blocks {
                block,
                left,
                period,
                sleep,
            } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                if let Some(s) = sleep.as_mut() {
                    if s.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                *left -= 1;
                *sleep = (*left > 0).then(|| Box::pin(tokio::time::sleep(*period)));
                Poll::Ready(Some(Ok(Frame::data(block.clone()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ServeBody::Once(b) => b.is_none(),
            ServeBody::Repeat { left, .. } | ServeBody::Blocks { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ServeBody::Once(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ServeBody::Repeat { left, .. } => SizeHint::with_exact(*left),
            ServeBody::Blocks { block, left, .. } => {
                SizeHint::with_exact(block.len() as u64 * left)
            }
        }
    }
}

use std::future::Future as _;
