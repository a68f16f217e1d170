//! What the handlers answer with: a response body (one buffer, or a watch's stream of lines),
//! JSON documents, `Status` failures worded as the API server words them, and plain text; a
//! long-running call's body carries its place in the metrics.

use crate::error::ApiError;
use crate::metrics::LongRunning;
use bytes::Bytes;
use http_body::Frame;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// The largest body the fake reads: a request's (the API server's limit, 3 MiB), or a
/// kubelet's answer.
pub(crate) const MAX_BODY: usize = 3 << 20;

/// A whole JSON document, or a watch's stream of lines.
pub(crate) enum Body {
    /// One buffer.
    Full(Option<Bytes>),
    /// Newline-delimited JSON events until the sender is dropped.
    Stream(mpsc::Receiver<Bytes>),
    /// A long-running call's body, counted in the metrics until it is dropped.
    Tracked {
        body: Box<Body>,
        _place: LongRunning,
    },
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
            Body::Tracked { body, .. } => Pin::new(&mut **body).poll_frame(cx),
        }
    }
}

/// `v` as JSON with status `code`.
pub(crate) fn reply(code: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::Full(Some(Bytes::from(
        serde_json::to_vec(v).expect("json"),
    ))));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A failure `Status` with its reason and message.
pub(crate) fn status(code: u16, reason: &str, msg: &str) -> Response<Body> {
    reply(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": msg, "reason": reason, "code": code}),
    )
}

/// The store's refusal as the API server sends it.
pub(crate) fn error(e: &ApiError) -> Response<Body> {
    reply(e.code(), &e.status())
}

/// `text` as text/plain with status `code` (a container's log).
pub(crate) fn plain(code: u16, text: String) -> Response<Body> {
    let mut r = Response::new(Body::Full(Some(Bytes::from(text))));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    r
}
