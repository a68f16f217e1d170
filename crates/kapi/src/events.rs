//! A watch's event stream, cheap enough to hold tens of thousands open: the request and the
//! events of kube-rs's `Api::watch`, decoded straight from the response body's frames.
//!
//! kube-rs reads each watch through a `FramedRead`, which allocates an 8 KiB buffer up front
//! and keeps it for the life of the watch. A watch is quiet for minutes between events, so
//! that buffer is idle memory: 30,000 hollow-node watches held ~240 MB of it
//! (`bench/nodes.sh`, 5,000 nodes in per-node mode). Here a line that arrives whole in one
//! frame (nearly every line) is parsed where it lies, and bytes are held only while a line is
//! incomplete; the holding buffer is released as soon as its line is done.

use bytes::Bytes;
use http_body_util::BodyExt;
use kube::api::{WatchEvent, WatchParams};
use kube::client::Body;
use kube::core::{Request, Status};
use kube::Api;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// The longest event line accepted (an object is at most ~1.5 MiB in etcd; its JSON, with
/// the event around it, stays well below this).
pub const MAX_LINE: usize = 16 << 20;

/// Open a watch on `api`'s collection from version `from`: the same request `Api::watch`
/// sends. A non-2xx answer is `kube::Error::Api` with the server's `Status`, as kube-rs
/// reports it (a 410 Gone included).
pub async fn watch<K>(api: &Api<K>, wp: &WatchParams, from: &str) -> kube::Result<Events<K>>
where
    K: kube::Resource + Clone + DeserializeOwned,
{
    let mut req = Request::new(api.resource_url())
        .watch(wp, from)
        .map_err(kube::Error::BuildRequest)?;
    // As kube-rs: no compression on a watch (one gzip member per event is not decoded).
    req.headers_mut().insert(
        http::header::ACCEPT_ENCODING,
        http::HeaderValue::from_static("identity"),
    );
    let client = api.clone().into_client();
    let res = client.send(req.map(Body::from)).await?;
    let code = res.status();
    if code.is_client_error() || code.is_server_error() {
        let bytes = res.into_body().collect().await?.to_bytes();
        return Err(api_error(code.as_u16(), &bytes));
    }
    Ok(Events {
        body: res.into_body(),
        chunk: Bytes::new(),
        partial: Vec::new(),
        _kind: PhantomData,
    })
}

fn api_error(code: u16, body: &[u8]) -> kube::Error {
    let status = serde_json::from_slice::<Status>(body).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(body);
        Status::failure(text.trim(), "Failed to parse error data").with_code(code)
    });
    kube::Error::Api(status.boxed())
}

/// An open watch: one event per call to [`Events::next`]. `B` is the response body (another
/// only in tests).
pub struct Events<K, B = Body> {
    body: B,
    /// The rest of the last frame, not yet split into lines.
    chunk: Bytes,
    /// The start of a line that did not end in its frame (empty, with no allocation, between
    /// lines).
    partial: Vec<u8>,
    _kind: PhantomData<fn() -> K>,
}

impl<K, B> Events<K, B>
where
    K: DeserializeOwned,
    B: http_body::Body<Data = Bytes, Error = kube::Error> + Unpin,
{
    /// The next event; `None` when the server ended the watch. Cancel-safe: a call dropped
    /// while it waits loses nothing.
    pub async fn next(&mut self) -> Option<kube::Result<WatchEvent<K>>> {
        loop {
            let line = match self.next_line().await? {
                Ok(l) => l,
                Err(e) => return Some(Err(e)),
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(decode(&line));
        }
    }

    async fn next_line(&mut self) -> Option<kube::Result<Bytes>> {
        loop {
            if let Some(i) = self.chunk.iter().position(|&b| b == b'\n') {
                let head = self.chunk.split_to(i + 1);
                if self.partial.is_empty() {
                    return Some(Ok(head));
                }
                self.partial.extend_from_slice(&head);
                return Some(Ok(Bytes::from(std::mem::take(&mut self.partial))));
            }
            if !self.chunk.is_empty() {
                if self.partial.len() + self.chunk.len() > MAX_LINE {
                    return Some(Err(kube::Error::ReadEvents(std::io::Error::other(
                        format!("a watch event line longer than {MAX_LINE} bytes"),
                    ))));
                }
                self.partial.extend_from_slice(&self.chunk);
                self.chunk = Bytes::new();
            }
            match self.body.frame().await {
                // A line cut off by the end of the stream is dropped, as kube-rs drops it.
                None => return None,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.chunk = data;
                    }
                }
            }
        }
    }
}

/// One line: an event, or the server's `Status` when the line is one (as kube-rs reads it).
fn decode<K: DeserializeOwned>(line: &[u8]) -> kube::Result<WatchEvent<K>> {
    serde_json::from_slice::<WatchEvent<K>>(line).map_err(|e| {
        match serde_json::from_slice::<Status>(line) {
            Ok(s) if s.code != 0 || !s.message.is_empty() => kube::Error::Api(s.boxed()),
            _ => kube::Error::SerdeError(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn ev(name: &str, rv: &str) -> String {
        format!(
            r#"{{"type":"ADDED","object":{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","resourceVersion":"{rv}"}}}}}}"#
        )
    }

    type Frames = http_body_util::StreamBody<
        futures::stream::Iter<std::vec::IntoIter<kube::Result<hyper::body::Frame<Bytes>>>>,
    >;

    /// A body of these frames, as a watch's response would arrive.
    fn events(frames: Vec<Vec<u8>>) -> Events<ConfigMap, Frames> {
        let frames: Vec<_> = frames
            .into_iter()
            .map(|f| Ok(hyper::body::Frame::data(Bytes::from(f))))
            .collect();
        Events {
            body: http_body_util::StreamBody::new(futures::stream::iter(frames)),
            chunk: Bytes::new(),
            partial: Vec::new(),
            _kind: PhantomData,
        }
    }

    fn name(e: &WatchEvent<ConfigMap>) -> String {
        match e {
            WatchEvent::Added(o) => o.metadata.name.clone().unwrap_or_default(),
            other => panic!("not ADDED: {other:?}"),
        }
    }

    #[tokio::test]
    async fn lines_split_across_frames_and_frames_holding_many_lines_all_decode() {
        let all = format!("{}\n{}\n{}\n", ev("a", "1"), ev("b", "2"), ev("c", "3"));
        // Every split point of the same bytes gives the same three events.
        for cut in 0..all.len() {
            let (x, y) = all.as_bytes().split_at(cut);
            let mut e = events(vec![x.to_vec(), y.to_vec()]);
            let mut got = Vec::new();
            while let Some(r) = e.next().await {
                got.push(name(&r.expect("an event")));
            }
            assert_eq!(got, ["a", "b", "c"], "cut at {cut}");
            assert_eq!(e.partial.capacity(), 0, "nothing held after the last line");
        }
    }

    #[tokio::test]
    async fn an_error_status_line_is_an_api_error_and_a_cut_off_line_is_dropped() {
        let gone = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old","reason":"Expired","code":410}}"#;
        let mut e = events(vec![format!("{gone}\n{}", ev("x", "9")).into_bytes()]);
        match e.next().await {
            Some(Ok(WatchEvent::Error(s))) => assert_eq!(s.code, 410),
            other => panic!("{other:?}"),
        }
        assert!(
            e.next().await.is_none(),
            "the unfinished line is not an event"
        );
    }

    #[tokio::test]
    async fn a_line_that_is_not_an_event_is_an_error_not_a_panic() {
        let mut e = events(vec![
            b"{\"type\":\"ADDED\",\"object\":7}\nnot json\n".to_vec()
        ]);
        assert!(matches!(
            e.next().await,
            Some(Err(kube::Error::SerdeError(_)))
        ));
        assert!(matches!(
            e.next().await,
            Some(Err(kube::Error::SerdeError(_)))
        ));
        assert!(e.next().await.is_none());
    }
}
