//! What every request handler shares: the store, the resource types served, the watch feed,
//! the request log, the metrics, and what a test set up (faults to inject, logs and forwards
//! playing the kubelet's part, a required token, forbidden calls).

use crate::feed::Feed;
use crate::metrics::Metrics;
use crate::resource::{builtins, Resource};
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    resources: Mutex<Vec<Resource>>,
    pub(crate) events: Feed,
    /// Calls served, keyed "verb plural" and "verb plural in namespace".
    pub(crate) calls: Mutex<BTreeMap<String, u64>>,
    /// The next n mutating calls are answered with this status (as API Priority and Fairness
    /// answers 429).
    pub(crate) reject: Mutex<(u64, u16)>,
    pub(crate) delays: Mutex<BTreeMap<String, Duration>>,
    /// Container logs by (namespace, pod), as the kubelet would serve them (`pods/NAME/log`).
    pub(crate) logs: Mutex<BTreeMap<(String, String), String>>,
    /// Where a pod's port is reachable, by (namespace, pod, port) (`pods/NAME/portforward`).
    pub(crate) forwards: Mutex<BTreeMap<(String, String, u16), SocketAddr>>,
    /// The bearer token every request must carry, once one is required (401 otherwise).
    pub(crate) token: Mutex<Option<String>>,
    /// "verb plural" pairs the caller may not do (403, as RBAC answers).
    pub(crate) forbidden: Mutex<BTreeSet<(String, String)>>,
    /// Bumped to end every open watch.
    pub(crate) watch_gen: tokio::sync::watch::Sender<u64>,
    /// How often an idle watch that asked for bookmarks gets one.
    pub(crate) bookmark_every: Duration,
    /// Where the server listens (the `/api` discovery document names it).
    pub(crate) addr: SocketAddr,
    /// What `/metrics` shows.
    pub(crate) metrics: Metrics,
    /// Answer `/metrics` with 403, as for a user without RBAC's `get` on it.
    pub(crate) forbid_metrics: bool,
}

impl Shared {
    /// Serving the built-in resources from `store`.
    pub(crate) fn new(
        store: Store,
        bookmark_every: Duration,
        addr: SocketAddr,
        forbid_metrics: bool,
    ) -> Shared {
        Shared {
            store: Mutex::new(store),
            resources: Mutex::new(builtins()),
            events: Feed::default(),
            calls: Mutex::new(BTreeMap::new()),
            reject: Mutex::new((0, 429)),
            delays: Mutex::new(BTreeMap::new()),
            logs: Mutex::new(BTreeMap::new()),
            forwards: Mutex::new(BTreeMap::new()),
            token: Mutex::new(None),
            forbidden: Mutex::new(BTreeSet::new()),
            watch_gen: tokio::sync::watch::channel(0).0,
            bookmark_every,
            addr,
            metrics: Metrics::default(),
            forbid_metrics,
        }
    }

    /// Serve another resource type.
    pub(crate) fn register(&self, r: Resource) {
        self.resources.lock().expect("lock").push(r);
    }

    /// The resource types served that `keep` selects, in the order registered.
    pub(crate) fn resources(&self, keep: impl Fn(&Resource) -> bool) -> Vec<Resource> {
        self.resources
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| keep(r))
            .cloned()
            .collect()
    }

    /// The first resource type served that `pick` selects.
    pub(crate) fn resource(&self, pick: impl Fn(&Resource) -> bool) -> Option<Resource> {
        self.resources
            .lock()
            .expect("lock")
            .iter()
            .find(|r| pick(r))
            .cloned()
    }
}
