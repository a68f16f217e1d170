//! `GET ...?watch=true`: a stream of newline-delimited events, as kube-apiserver v1.28.7
//! streams them: the headers at once; from version 0 (or with `sendInitialEvents`) the current
//! objects as ADDED first, else the changes after the version asked for (a 200 with one ERROR
//! event, 410 Expired, when the log no longer reaches back that far); then the live changes
//! from the [`crate::feed`], BOOKMARKs when asked for (one marking the initial events' end),
//! an ERROR event with 410 when history is compacted or the watch falls behind, and the end
//! at `timeoutSeconds` (1800 by default).

use crate::error::ApiError;
use crate::feed::{line, trigger_field, Dispatched};
use crate::reply::{status, Body};
use crate::route::{Query, Target};
use crate::selectors::Selectors;
use crate::state::Shared;
use bytes::Bytes;
use hyper::Response;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Start a watch: its first events are taken, and its feed subscribed, under the store's lock.
pub(crate) fn watch(shared: &Arc<Shared>, t: &Target, q: &Query, sel: Selectors) -> Response<Body> {
    let bookmarks = q.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let send_initial = q.get("sendInitialEvents").map(String::as_str) == Some("true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(1800);
    let from = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(v) => match v.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => return status(400, "BadRequest", &format!("invalid resourceVersion {v:?}")),
        },
    };
    let coll = t.r.key();
    let (events, first, start_rv) = {
        // Subscribing under the store's lock: nothing falls between the snapshot and the feed.
        let st = shared.store.lock().expect("lock");
        let trigger = trigger_field(&coll).and_then(|f| sel.field_equals(f));
        let events = shared.events.subscribe(&coll, trigger);
        let start_rv = st.rv();
        let first: Result<Vec<Bytes>, ApiError> = match from {
            Some(from) if !send_initial => st.since(&coll, from).map(|evs| {
                evs.filter(|e| in_scope(t.ns.as_deref(), &sel, &e.object))
                    .map(|e| line(e.kind, &e.object))
                    .collect()
            }),
            _ => Ok(st
                .list(&t.r, t.ns.as_deref(), &sel)
                .iter()
                .map(|o| line("ADDED", o))
                .collect()),
        };
        (events, first, start_rv)
    };
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let mut resp = Response::new(Body::Stream(rx));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    let first = match first {
        Ok(f) => f,
        Err(e) => {
            // A watch from a version that is gone: 200, then one ERROR event, then the end.
            let _ = tx.try_send(line("ERROR", &e.status()));
            return resp;
        }
    };
    let open = Open {
        tx,
        events,
        end: shared.watch_gen.subscribe(),
        coll,
        ns: t.ns.clone(),
        sel,
        kind: t.r.kind.clone(),
        api_version: t.r.api_version(),
        bookmarks,
        bookmark_every: shared.bookmark_every,
        timeout: Duration::from_secs(timeout),
    };
    tokio::spawn(open.stream(first, send_initial.then_some(start_rv), start_rv));
    resp
}

/// A watch once its response has started.
struct Open {
    tx: mpsc::Sender<Bytes>,
    events: broadcast::Receiver<Arc<Dispatched>>,
    /// Changes when history is compacted: every open watch ends.
    end: tokio::sync::watch::Receiver<u64>,
    coll: String,
    ns: Option<String>,
    sel: Selectors,
    kind: String,
    api_version: String,
    /// Whether the watch asked for bookmarks, and how often one goes out.
    bookmarks: bool,
    bookmark_every: Duration,
    timeout: Duration,
}

impl Open {
    /// Send the first events (and, when `initial_end` and bookmarks, the bookmark that marks
    /// their end), then the live changes after `start_rv`, until the client leaves, the
    /// timeout, or an ERROR.
    async fn stream(mut self, first: Vec<Bytes>, initial_end: Option<u64>, start_rv: u64) {
        let tx = self.tx.clone();
        for l in first {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        if let Some(rv) = initial_end.filter(|_| self.bookmarks) {
            if tx.send(self.bookmark(rv, true)).await.is_err() {
                return;
            }
        }
        let mut seen = start_rv;
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(self.bookmark_every);
        tick.reset();
        loop {
            tokio::select! {
                // Checked first: once history is gone, nothing more goes out on this stream.
                biased;
                _ = self.end.changed() => {
                    let gone = ApiError::Gone("the watch's history was compacted".into());
                    let _ = tx.send(line("ERROR", &gone.status())).await;
                    return;
                }
                e = self.events.recv() => match e {
                    Ok(d) => {
                        seen = seen.max(d.e.rv);
                        if d.e.coll == self.coll
                            && in_scope(self.ns.as_deref(), &self.sel, &d.e.object)
                            && tx.send(d.line()).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let gone = ApiError::Gone("the watch fell behind".into());
                        let _ = tx.send(line("ERROR", &gone.status())).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if self.bookmarks => {
                    if tx.send(self.bookmark(seen, false)).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = tx.closed() => return,
            }
        }
    }

    /// A BOOKMARK at `rv`; `end`: the one that marks the end of the initial events.
    fn bookmark(&self, rv: u64, end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            &json!({"kind": self.kind, "apiVersion": self.api_version, "metadata": meta}),
        )
    }
}

/// Whether a watch of namespace `ns` (all when `None`) with selectors `sel` sees `o`.
fn in_scope(ns: Option<&str>, sel: &Selectors, o: &Value) -> bool {
    let ns_ok = ns
        .is_none_or(|want| o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(want));
    ns_ok && sel.matches(o)
}
