//! An informer (kube-rs watcher + reflector) with a work queue, as a controller has, timing
//! what it is told: notification latency (now − the writer's [`ANN_SENT`] time) for creates
//! and updates, queue wait (dequeue − enqueue), and the counts seed 004's cm-logger kept:
//! notifications coalesced in the queue, duplicates (a version seen twice, as after a relist),
//! and relists after 410 Gone. Timed notifications are also kept by the second
//! ([`crate::series`]) for the run's file.

use crate::series::{Second, Seconds};
use crate::stats::{keep_first, ErrorMessage};
use crate::{wall_ns, Target, ANN_OP, ANN_SENT};
use futures::StreamExt;
use hdrhistogram::Histogram;
use hist::{histogram_codec, new_histogram};
use kube::core::DynamicObject;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram as PromHistogram};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch as signal, Notify};
use tokio::time::Instant;

/// What to watch.
#[derive(Debug, Clone)]
pub struct Config {
    /// The resource.
    pub target: Target,
    /// One namespace, or all when None.
    pub namespace: Option<String>,
    /// Label selector (e.g. one run's `scaletest.dev/run=ID`).
    pub selector: Option<String>,
    /// Work-queue workers.
    pub workers: usize,
}

/// A create's notification latency: its key in a watch's per-second records.
pub const NOTIFY_CREATE: &str = "create notification";
/// An update's.
pub const NOTIFY_UPDATE: &str = "update notification";

/// What a watch measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchStats {
    /// Notification latency of creates, µs.
    #[serde(with = "histogram_codec")]
    pub notify_create: Histogram<u64>,
    /// Notification latency of updates, µs.
    #[serde(with = "histogram_codec")]
    pub notify_update: Histogram<u64>,
    /// Time keys waited in the work queue, µs.
    #[serde(with = "histogram_codec")]
    pub queue_wait: Histogram<u64>,
    /// Add/update notifications (including those of the initial list and relists).
    pub applied: u64,
    /// Delete notifications (and deletions a relist revealed).
    pub deleted: u64,
    /// Notifications whose key was already waiting in the queue (handled once).
    pub coalesced: u64,
    /// Notifications of a version already seen.
    pub duplicates: u64,
    /// Changes made by someone other than churn (no new send time).
    pub foreign: u64,
    /// Lists after the first (the watch could not resume).
    pub relists: u64,
    /// 410 Gone answers (an expired resourceVersion).
    pub gone: u64,
    /// Other watch errors (the watcher backs off and retries).
    pub errors: u64,
    /// Keys the queue workers processed.
    pub processed: u64,
    /// The first message of each kind of watch error, by HTTP status (0: no HTTP answer).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub messages: BTreeMap<u16, ErrorMessage>,
    /// The timed notifications of every second from the run's start ([`Shared::new_at`];
    /// [`NOTIFY_CREATE`], [`NOTIFY_UPDATE`]), in a run's file only ([`Shared::report`];
    /// absent in files of earlier builds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seconds: Vec<Second>,
}

impl Default for WatchStats {
    fn default() -> WatchStats {
        WatchStats {
            notify_create: new_histogram(),
            notify_update: new_histogram(),
            queue_wait: new_histogram(),
            applied: 0,
            deleted: 0,
            coalesced: 0,
            duplicates: 0,
            foreign: 0,
            relists: 0,
            gone: 0,
            errors: 0,
            processed: 0,
            messages: BTreeMap::new(),
            seconds: Vec::new(),
        }
    }
}

impl WatchStats {
    /// Add another watch's measurements; not the seconds, which only the caller can line up
    /// (by the runs' starts).
    pub fn merge(&mut self, o: &WatchStats) {
        let _ = self.notify_create.add(&o.notify_create);
        let _ = self.notify_update.add(&o.notify_update);
        let _ = self.queue_wait.add(&o.queue_wait);
        self.applied += o.applied;
        self.deleted += o.deleted;
        self.coalesced += o.coalesced;
        self.duplicates += o.duplicates;
        self.foreign += o.foreign;
        self.relists += o.relists;
        self.gone += o.gone;
        self.errors += o.errors;
        self.processed += o.processed;
        for (k, m) in &o.messages {
            keep_first(&mut self.messages, Some(*k), m.clone());
        }
    }
}

/// Prometheus metrics of a watch.
pub struct Metrics {
    registry: Registry,
    notifications: Family<Vec<(String, String)>, Counter>,
    latency: Family<Vec<(String, String)>, PromHistogram>,
    queue_wait: PromHistogram,
    coalesced: Counter,
    duplicates: Counter,
    relists: Counter,
    errors: Counter,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("scaletest_watch");
        let notifications = Family::<Vec<(String, String)>, Counter>::default();
        let latency = Family::<Vec<(String, String)>, PromHistogram>::new_with_constructor(|| {
            PromHistogram::new(exponential_buckets(0.000_25, 2.0, 18))
        });
        let queue_wait = PromHistogram::new(exponential_buckets(0.000_01, 2.0, 22));
        let (coalesced, duplicates, relists, errors) = Default::default();
        registry.register(
            "notifications",
            "Notifications by type (create, update, delete, initial)",
            notifications.clone(),
        );
        registry.register(
            "notification_latency_seconds",
            "Now minus the writer's send time, by operation",
            latency.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Time keys waited in the work queue",
            queue_wait.clone(),
        );
        registry.register(
            "coalesced",
            "Notifications merged into a key already queued",
            Counter::clone(&coalesced),
        );
        registry.register(
            "duplicates",
            "Notifications of a version already seen",
            Counter::clone(&duplicates),
        );
        registry.register(
            "relists",
            "Lists after the first (410 Gone)",
            Counter::clone(&relists),
        );
        registry.register("errors", "Watch errors", Counter::clone(&errors));
        Metrics {
            registry,
            notifications,
            latency,
            queue_wait,
            coalesced,
            duplicates,
            relists,
            errors,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn label(kind: &str) -> Vec<(String, String)> {
    vec![("type".to_string(), kind.to_string())]
}

/// A running watch's shared state: read by the report, the metrics endpoint and by
/// `churn --watch` (to know when it has seen every delete).
pub struct Shared {
    stats: Mutex<WatchStats>,
    /// Apart from `stats`, so that a copy of the totals does not copy every second.
    seconds: Mutex<Seconds>,
    /// Prometheus view of the same numbers.
    pub metrics: Metrics,
    deletes_seen: signal::Sender<u64>,
    synced: signal::Sender<bool>,
}

impl Shared {
    /// A fresh state, its seconds counted from now.
    pub fn new() -> Arc<Shared> {
        Shared::new_at(std::time::Instant::now())
    }

    /// A fresh state whose second 0 begins at `start` (a run's, with other series).
    pub fn new_at(start: std::time::Instant) -> Arc<Shared> {
        Arc::new(Shared {
            stats: Mutex::new(WatchStats::default()),
            seconds: Mutex::new(Seconds::new(start)),
            metrics: Metrics::new(),
            deletes_seen: signal::channel(0).0,
            synced: signal::channel(false).0,
        })
    }

    /// What was measured so far (for progress and `/metrics`: without the seconds).
    pub fn stats(&self) -> WatchStats {
        self.stats.lock().expect("watch stats lock").clone()
    }

    /// What was measured, with every second from this state's creation (for the run's
    /// file), and the second they stop at although notifications went on
    /// ([`Seconds::cut`]).
    pub fn report(&self) -> (WatchStats, Option<u64>) {
        let mut w = self.stats();
        let s = self.seconds.lock().expect("watch seconds lock");
        w.seconds = s.all();
        (w, s.cut())
    }

    /// Wait until `n` delete notifications have arrived.
    pub async fn wait_deletes(&self, n: u64) {
        let mut rx = self.deletes_seen.subscribe();
        let _ = rx.wait_for(|seen| *seen >= n).await;
    }

    /// Wait until the initial list is in.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// The work queue: a key is queued at most once (later notifications coalesce into it), as in
/// client-go's workqueue.
#[derive(Default)]
struct Queue {
    state: Mutex<(VecDeque<String>, HashMap<String, Instant>)>,
    ready: Notify,
}

impl Queue {
    /// Returns false when the key was already waiting.
    fn add(&self, key: String) -> bool {
        let mut s = self.state.lock().expect("queue lock");
        if s.1.contains_key(&key) {
            return false;
        }
        s.1.insert(key.clone(), Instant::now());
        s.0.push_back(key);
        drop(s);
        self.ready.notify_one();
        true
    }

    async fn pop(&self) -> (String, Instant) {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = self.state.lock().expect("queue lock");
                if let Some(k) = s.0.pop_front() {
                    let t = s.1.remove(&k).unwrap_or_else(Instant::now);
                    return (k, t);
                }
            }
            notified.await;
        }
    }
}

fn us(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

/// Per object: the last version and the last send time seen, to tell duplicates and foreign
/// changes from new churn operations.
#[derive(Default)]
struct Seen {
    by_key: HashMap<String, (String, String)>,
}

fn key_of(o: &DynamicObject) -> String {
    format!(
        "{}/{}",
        o.metadata.namespace.as_deref().unwrap_or(""),
        o.metadata.name.as_deref().unwrap_or("")
    )
}

fn on_apply(shared: &Shared, seen: &mut Seen, o: &DynamicObject, initial: bool) {
    let now = wall_ns();
    let key = key_of(o);
    let rv = o.metadata.resource_version.clone().unwrap_or_default();
    let ann = o.metadata.annotations.as_ref();
    let sent = ann
        .and_then(|a| a.get(ANN_SENT))
        .cloned()
        .unwrap_or_default();
    let op = ann
        .and_then(|a| a.get(ANN_OP))
        .map(String::as_str)
        .unwrap_or("");
    let m = &shared.metrics;
    let mut st = shared.stats.lock().expect("watch stats lock");
    st.applied += 1;
    let prev = seen.by_key.get(&key);
    if prev.is_some_and(|(prv, _)| *prv == rv) {
        st.duplicates += 1;
        m.duplicates.inc();
        return;
    }
    let new_op = !sent.is_empty() && prev.is_none_or(|(_, ps)| *ps != sent);
    if initial {
        m.notifications.get_or_create(&label("initial")).inc();
    }
    if new_op && !initial {
        let late = sent
            .parse::<u128>()
            .map(|s| now.saturating_sub(s))
            .unwrap_or(0);
        let late_us = (late / 1000).min(u128::from(u64::MAX)) as u64;
        let (kind, h, key) = if op == "create" {
            ("create", &mut st.notify_create, NOTIFY_CREATE)
        } else {
            ("update", &mut st.notify_update, NOTIFY_UPDATE)
        };
        let _ = h.record(late_us.max(1));
        shared.seconds.lock().expect("watch seconds lock").record(
            std::time::Instant::now(),
            key,
            Some(late_us),
            false,
        );
        m.notifications.get_or_create(&label(kind)).inc();
        m.latency
            .get_or_create(&label(kind))
            .observe(late_us as f64 / 1e6);
    } else if !new_op && !initial {
        st.foreign += 1;
        m.notifications.get_or_create(&label("foreign")).inc();
    }
    seen.by_key.insert(key, (rv, sent));
}

/// A watcher error's HTTP status (None: no answer) and what was said.
fn watch_error(e: &watcher::Error) -> (Option<u16>, ErrorMessage) {
    match e {
        watcher::Error::WatchError(s) => (
            Some(s.code),
            ErrorMessage {
                reason: s.reason.clone(),
                message: s.message.clone(),
            },
        ),
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => ErrorMessage::of(e),
        e => (
            None,
            ErrorMessage {
                reason: String::new(),
                message: e.to_string(),
            },
        ),
    }
}

/// Watch until `stop` turns true. Records into `shared`.
pub async fn run(client: Client, cfg: Config, shared: Arc<Shared>, stop: signal::Receiver<bool>) {
    let api = cfg.target.api(&client, cfg.namespace.as_deref());
    let mut wc = watcher::Config::default();
    if let Some(s) = &cfg.selector {
        wc = wc.labels(s);
    }
    let writer = reflector::store::Writer::new(cfg.target.ar.clone());
    let store: Store<DynamicObject> = writer.as_reader();
    let queue = Arc::new(Queue::default());
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..cfg.workers.max(1) {
        let (queue, store, shared, ar) = (
            queue.clone(),
            store.clone(),
            shared.clone(),
            cfg.target.ar.clone(),
        );
        workers.spawn(async move {
            loop {
                let (key, queued) = queue.pop().await;
                let waited = queued.elapsed();
                // The "work": look the object up in the informer's cache, as a controller does.
                let (ns, name) = key.split_once('/').unwrap_or(("", &key));
                let mut r = ObjectRef::<DynamicObject>::new_with(name, ar.clone());
                if !ns.is_empty() {
                    r = r.within(ns);
                }
                let _ = store.get(&r);
                shared.metrics.queue_wait.observe(waited.as_secs_f64());
                let mut st = shared.stats.lock().expect("watch stats lock");
                let _ = st.queue_wait.record(us(waited).max(1));
                st.processed += 1;
            }
        });
    }
    let stream = reflector::reflector(writer, watcher(api, wc).default_backoff());
    futures::pin_mut!(stream);
    let mut seen = Seen::default();
    let mut lists = 0u64;
    let mut listed = std::collections::HashSet::new();
    let mut stop = stop;
    loop {
        let ev = tokio::select! {
            ev = stream.next() => ev,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(ev) = ev else { break };
        match ev {
            Ok(watcher::Event::Init) => {
                lists += 1;
                listed.clear();
                if lists > 1 {
                    shared.stats.lock().expect("lock").relists += 1;
                    shared.metrics.relists.inc();
                }
            }
            Ok(watcher::Event::InitApply(o)) => {
                listed.insert(key_of(&o));
                on_apply(&shared, &mut seen, &o, lists == 1);
                if lists > 1 {
                    // Objects that changed while the watch was away are new to us.
                    let _ = queue.add(key_of(&o));
                }
            }
            Ok(watcher::Event::InitDone) => {
                // What a relist no longer has was deleted while the watch was away: that is
                // how the informer learns of it (the reflector's store drops it too).
                let gone: Vec<String> = seen
                    .by_key
                    .keys()
                    .filter(|k| !listed.contains(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    seen.by_key.remove(&k);
                    shared.stats.lock().expect("lock").deleted += 1;
                    shared.deletes_seen.send_modify(|n| *n += 1);
                    let _ = queue.add(k);
                }
                shared.synced.send_replace(true);
            }
            Ok(watcher::Event::Apply(o)) => {
                on_apply(&shared, &mut seen, &o, false);
                if !queue.add(key_of(&o)) {
                    shared.stats.lock().expect("lock").coalesced += 1;
                    shared.metrics.coalesced.inc();
                }
            }
            Ok(watcher::Event::Delete(o)) => {
                let key = key_of(&o);
                seen.by_key.remove(&key);
                shared.stats.lock().expect("lock").deleted += 1;
                shared.deletes_seen.send_modify(|n| *n += 1);
                shared
                    .metrics
                    .notifications
                    .get_or_create(&label("delete"))
                    .inc();
                if !queue.add(key) {
                    shared.stats.lock().expect("lock").coalesced += 1;
                    shared.metrics.coalesced.inc();
                }
            }
            Err(e) => {
                let (status, m) = watch_error(&e);
                let mut st = shared.stats.lock().expect("lock");
                if status == Some(410) {
                    st.gone += 1;
                } else {
                    st.errors += 1;
                }
                keep_first(&mut st.messages, status, m);
                shared.metrics.errors.inc();
            }
        }
    }
    // Let the queue drain (bounded), so queue waits of the last notifications count.
    let drain_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < drain_until {
        if queue.state.lock().expect("queue lock").0.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    workers.abort_all();
}

/// The OpenMetrics text of what is being measured, made at each scrape.
pub type Encode = Arc<dyn Fn() -> String + Send + Sync>;
