//! How changes reach the watches, as the API server's watch cache dispatches them: one channel
//! per collection, and for pods one per `spec.nodeName` (the cache's "triggers"), so a
//! kubelet's watch is woken by its own node's pods only; each event is encoded once however
//! many watches send it.

use crate::store::Event;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// A change on its way to the watches: serialized once, however many watches send it (as the
/// API server's watch cache caches an event's encoding).
pub(crate) struct Dispatched {
    pub(crate) e: Event,
    line: std::sync::OnceLock<Bytes>,
}

impl Dispatched {
    pub(crate) fn line(&self) -> Bytes {
        self.line
            .get_or_init(|| line(self.e.kind, &self.e.object))
            .clone()
    }
}

/// The field a collection's watches are indexed by, as the API server's watch cache indexes
/// them ("triggers"): pods by `spec.nodeName`, so a kubelet's watch is woken by its own
/// node's pods only.
pub(crate) fn trigger_field(coll: &str) -> Option<&'static str> {
    (coll == "/v1/pods").then_some("spec.nodeName")
}

type Sender = broadcast::Sender<Arc<Dispatched>>;

/// A node's share of a collection's changes is small: a short ring per trigger value.
const TRIGGER_RING: usize = 512;

/// Changes, one channel per collection, and one per trigger value for the indexed ones: a
/// watch is woken only by changes of what it watches (as the API server's watch cache
/// dispatches per resource and by trigger), so thousands of node watches are not woken by
/// every lease renewal, nor by every other node's pods.
#[derive(Default)]
pub(crate) struct Feed {
    by_coll: Mutex<BTreeMap<String, Sender>>,
    /// Created when a watch subscribes: (collection, trigger value).
    by_trigger: Mutex<BTreeMap<(String, String), Sender>>,
}

impl Feed {
    fn channel(&self, coll: &str) -> Sender {
        self.by_coll
            .lock()
            .expect("lock")
            .entry(coll.to_string())
            .or_insert_with(|| broadcast::channel(1 << 16).0)
            .clone()
    }

    pub(crate) fn send(&self, e: Event) {
        let e = Arc::new(Dispatched {
            e,
            line: Default::default(),
        });
        if let Some(field) = trigger_field(&e.e.coll) {
            // The object's value of the trigger field (a pod's node never changes once set).
            let value = field
                .split('.')
                .try_fold(&e.e.object, |v, k| v.get(k))
                .and_then(Value::as_str);
            if let Some(v) = value {
                let key = (e.e.coll.clone(), v.to_string());
                if let Some(tx) = self.by_trigger.lock().expect("lock").get(&key) {
                    let _ = tx.send(e.clone());
                }
            }
        }
        let _ = self.channel(&e.e.coll).send(e);
    }

    /// The changes of `coll`; only those whose trigger field has the value `trigger` when
    /// given (the watch's field selector requires it).
    pub(crate) fn subscribe(
        &self,
        coll: &str,
        trigger: Option<&str>,
    ) -> broadcast::Receiver<Arc<Dispatched>> {
        match trigger {
            Some(v) => self
                .by_trigger
                .lock()
                .expect("lock")
                .entry((coll.to_string(), v.to_string()))
                .or_insert_with(|| broadcast::channel(TRIGGER_RING).0)
                .subscribe(),
            None => self.channel(coll).subscribe(),
        }
    }
}

/// One line of a watch stream: `{"type": KIND, "object": OBJECT}` and a newline.
pub(crate) fn line(kind: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("json");
    v.push(b'\n');
    Bytes::from(v)
}
