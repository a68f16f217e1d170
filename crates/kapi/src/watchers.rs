//! Watches as load (seed 004's flunder-watch): N watchers, each a loop of time-limited watch
//! requests on one resource, as a ReplicaSet of watch clients loads an API server.
//!
//! Each watcher lists once (pages of 500) for a resourceVersion, then watches from it with
//! `timeoutSeconds` = `--watch-timeout` ± 10 % (jitter, so that the watchers do not all come
//! back at once) and bookmarks on; when the server ends a watch it watches again from the last
//! resourceVersion it saw (an event's or a bookmark's), so nothing is seen twice; on 410 Gone
//! (its version was compacted away) it lists again: a relist, counted. Other errors back off
//! (200 ms doubling to 5 s) and resume from the same version.
//!
//! Measured: watch requests and their establishment (request → response head, the server has
//! started the watch) and first-event latency (request → first event or bookmark); events by
//! type for every watcher; delivery latency of creates and updates (receipt − the writer's
//! [`ANN_SENT`], wall clocks; an event is timed by its object's [`ANN_OP`], so a change by
//! someone else that kept churn's annotations would be timed from churn's last write);
//! duplicates (an event at or below the last version the watcher saw: resourceVersions are
//! compared as integers, as etcd issues them), 410s, relists, and errors by HTTP status with
//! the server's first message.
//!
//! Watches share a bounded number of connections: [`clients`] makes one kube client per connection
//! ([`crate::conn`]), each speaking HTTP/2 when the server does, so every watch of a client is a
//! stream on its one connection; the stream is read by [`crate::events`]. A server that only speaks
//! HTTP/1.1 gets one connection per concurrent watch, as it must; the report says which protocol
//! was used and how many connections were opened.

use crate::conn::Connector;
use crate::stats::{keep_first, ErrorMessage, Recorder, Verb};
use crate::{wall_ns, Error, Target, ANN_OP, ANN_SENT};
use hdrhistogram::Histogram;
use hist::{histogram_codec, new_histogram};
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::core::DynamicObject;
use kube::Client;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch as signal;
use tokio::time::Instant;

/// Watches beyond their timeout by this much are ended by the client (a lost connection that
/// HTTP/2 pings have not caught yet, or a server that ignores `timeoutSeconds`).
const OVERDUE: Duration = Duration::from_secs(30);
/// Items per page of a list.
const PAGE: u32 = 500;

/// What the watchers watch, and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// The resource.
    pub target: Target,
    /// One namespace, or all when None.
    pub namespace: Option<String>,
    /// Label selector.
    pub selector: Option<String>,
    /// Concurrent watchers.
    pub watchers: usize,
    /// `timeoutSeconds` of each watch request, before jitter (whole seconds, at least 1).
    pub timeout: Duration,
    /// Seed of the jitter.
    pub seed: u64,
}

/// One watcher's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherCounts {
    /// Watch requests made.
    pub requests: u64,
    /// Lists (the first and every relist).
    pub lists: u64,
    /// ADDED events.
    pub added: u64,
    /// MODIFIED events.
    pub modified: u64,
    /// DELETED events.
    pub deleted: u64,
    /// BOOKMARK events.
    pub bookmarks: u64,
    /// Events at or below a version already seen (not counted above).
    pub duplicates: u64,
}

impl WatcherCounts {
    /// ADDED, MODIFIED and DELETED events.
    pub fn events(&self) -> u64 {
        self.added + self.modified + self.deleted
    }

    fn merge(&mut self, o: &WatcherCounts) {
        self.requests += o.requests;
        self.lists += o.lists;
        self.added += o.added;
        self.modified += o.modified;
        self.deleted += o.deleted;
        self.bookmarks += o.bookmarks;
        self.duplicates += o.duplicates;
    }
}

/// What the watch loops measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopStats {
    /// Watchers.
    pub watchers: usize,
    /// `timeoutSeconds` asked for, before jitter.
    pub watch_timeout_s: f64,
    /// The protocol the watches used (`HTTP/2` or `HTTP/1.1`).
    pub protocol: String,
    /// TCP connections opened.
    pub connections: u64,
    /// Watch requests that got no response head or an error status.
    pub failed_requests: u64,
    /// Request → response head of each watch that started, µs.
    #[serde(with = "histogram_codec")]
    pub established: Histogram<u64>,
    /// Request → first event or bookmark, µs.
    #[serde(with = "histogram_codec")]
    pub first_event: Histogram<u64>,
    /// Receipt − sent-at of ADDED events of churn's creates, µs.
    #[serde(with = "histogram_codec")]
    pub delivery_create: Histogram<u64>,
    /// Receipt − sent-at of MODIFIED events of churn's updates, µs.
    #[serde(with = "histogram_codec")]
    pub delivery_update: Histogram<u64>,
    /// 410 Gone answers (as a status or an ERROR event).
    pub gone: u64,
    /// Lists after a watcher's first.
    pub relists: u64,
    /// Watches the client ended, 30 s past their `timeoutSeconds` with no end from the server.
    pub overdue: u64,
    /// Failed watch requests and ERROR events by HTTP status (0: no HTTP answer), 410s
    /// included.
    pub errors: BTreeMap<u16, u64>,
    /// The first message of each of those statuses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub messages: BTreeMap<u16, ErrorMessage>,
    /// The sums over all watchers.
    pub total: WatcherCounts,
    /// Each watcher's counts.
    pub per_watcher: Vec<WatcherCounts>,
}

impl LoopStats {
    fn new(cfg: &Config) -> LoopStats {
        LoopStats {
            watchers: cfg.watchers,
            watch_timeout_s: cfg.timeout.as_secs_f64(),
            protocol: String::new(),
            connections: 0,
            failed_requests: 0,
            established: new_histogram(),
            first_event: new_histogram(),
            delivery_create: new_histogram(),
            delivery_update: new_histogram(),
            gone: 0,
            relists: 0,
            overdue: 0,
            errors: BTreeMap::new(),
            messages: BTreeMap::new(),
            total: WatcherCounts::default(),
            per_watcher: vec![WatcherCounts::default(); cfg.watchers],
        }
    }

    /// Add another run's (watchers of both are kept side by side).
    pub fn merge(&mut self, o: &LoopStats) {
        self.watchers += o.watchers;
        self.connections += o.connections;
        self.failed_requests += o.failed_requests;
        let _ = self.established.add(&o.established);
        let _ = self.first_event.add(&o.first_event);
        let _ = self.delivery_create.add(&o.delivery_create);
        let _ = self.delivery_update.add(&o.delivery_update);
        self.gone += o.gone;
        self.relists += o.relists;
        self.overdue += o.overdue;
        for (k, v) in &o.errors {
            *self.errors.entry(*k).or_default() += v;
        }
        for (k, m) in &o.messages {
            keep_first(&mut self.messages, Some(*k), m.clone());
        }
        self.total.merge(&o.total);
        self.per_watcher.extend(o.per_watcher.iter().cloned());
    }

    /// Events per watcher: (min, median, max).
    pub fn events_per_watcher(&self) -> (u64, u64, u64) {
        let mut v: Vec<u64> = self.per_watcher.iter().map(WatcherCounts::events).collect();
        v.sort_unstable();
        match (v.first(), v.last()) {
            (Some(&lo), Some(&hi)) => (lo, v[v.len() / 2], hi),
            _ => (0, 0, 0),
        }
    }

    /// The OpenMetrics text of these numbers (`scaletest_watchers_*`), histograms in
    /// seconds with the buckets the HDR histograms give exactly.
    pub fn encode_metrics(&self) -> String {
        let mut s = String::new();
        let counter = |s: &mut String, name: &str, help: &str, rows: &[(String, u64)]| {
            let _ = writeln!(s, "# HELP scaletest_watchers_{name} {help}");
            let _ = writeln!(s, "# TYPE scaletest_watchers_{name} counter");
            for (labels, v) in rows {
                let _ = writeln!(s, "scaletest_watchers_{name}_total{labels} {v}");
            }
        };
        let t = &self.total;
        counter(
            &mut s,
            "watch_requests",
            "Watch requests made",
            &[(String::new(), t.requests)],
        );
        counter(
            &mut s,
            "lists",
            "Lists, first and relists",
            &[(String::new(), t.lists)],
        );
        counter(
            &mut s,
            "relists",
            "Lists after a 410 Gone",
            &[(String::new(), self.relists)],
        );
        counter(
            &mut s,
            "events",
            "Events received by all watchers, by type",
            &[
                ("{type=\"added\"}".into(), t.added),
                ("{type=\"modified\"}".into(), t.modified),
                ("{type=\"deleted\"}".into(), t.deleted),
                ("{type=\"bookmark\"}".into(), t.bookmarks),
            ],
        );
        counter(
            &mut s,
            "duplicates",
            "Events of a version already seen",
            &[(String::new(), t.duplicates)],
        );
        let errors: Vec<(String, u64)> = self
            .errors
            .iter()
            .map(|(k, v)| (format!("{{status=\"{k}\"}}"), *v))
            .collect();
        counter(
            &mut s,
            "errors",
            "Watch errors by HTTP status (0: no answer), 410 included",
            &errors,
        );
        let _ = writeln!(
            s,
            "# HELP scaletest_watchers_connections Connections opened"
        );
        let _ = writeln!(s, "# TYPE scaletest_watchers_connections gauge");
        let _ = writeln!(s, "scaletest_watchers_connections {}", self.connections);
        for (name, help, h) in [
            (
                "established_seconds",
                "Watch request to response head",
                &self.established,
            ),
            (
                "first_event_seconds",
                "Watch request to first event or bookmark",
                &self.first_event,
            ),
            (
                "delivery_create_seconds",
                "Receipt minus sent-at of creates",
                &self.delivery_create,
            ),
            (
                "delivery_update_seconds",
                "Receipt minus sent-at of updates",
                &self.delivery_update,
            ),
        ] {
            histogram_text(&mut s, &format!("scaletest_watchers_{name}"), help, h);
        }
        s += "# EOF\n";
        s
    }
}

/// A histogram of µs as an OpenMetrics histogram in seconds: buckets 250 µs × 2^k.
fn histogram_text(s: &mut String, name: &str, help: &str, h: &Histogram<u64>) {
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} histogram");
    let mut le = 250u64;
    for _ in 0..18 {
        let n = if h.is_empty() {
            0
        } else {
            h.count_between(0, le)
        };
        let _ = writeln!(s, "{name}_bucket{{le=\"{}\"}} {n}", le as f64 / 1e6);
        le *= 2;
    }
    let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {}", h.len());
    let sum = h.mean() * h.len() as f64 / 1e6;
    let _ = writeln!(s, "{name}_sum {sum}");
    let _ = writeln!(s, "{name}_count {}", h.len());
}

/// The watch loops' state, shared with the report, the progress line and `/metrics`.
pub struct Shared {
    stats: Mutex<LoopStats>,
    connections: Arc<AtomicU64>,
}

impl Shared {
    /// Fresh state for `cfg`; `connections` counts the clients' connections (from [`clients`]).
    pub fn new(cfg: &Config, protocol: &str, connections: Arc<AtomicU64>) -> Arc<Shared> {
        let mut stats = LoopStats::new(cfg);
        stats.protocol = protocol.to_string();
        Arc::new(Shared {
            stats: Mutex::new(stats),
            connections,
        })
    }

    /// What was measured so far.
    pub fn stats(&self) -> LoopStats {
        let mut s = self.stats.lock().expect("watchers lock").clone();
        s.connections = self.connections.load(Ordering::Relaxed);
        s
    }

    fn with(&self, f: impl FnOnce(&mut LoopStats)) {
        f(&mut self.stats.lock().expect("watchers lock"));
    }

    fn error(&self, status: Option<u16>, m: ErrorMessage) {
        self.with(|s| {
            *s.errors.entry(status.unwrap_or(0)).or_default() += 1;
            if status == Some(410) {
                s.gone += 1;
            }
            keep_first(&mut s.messages, status, m);
        });
    }

    fn count(&self, i: usize, f: impl Fn(&mut WatcherCounts)) {
        self.with(|s| {
            f(&mut s.total);
            if let Some(w) = s.per_watcher.get_mut(i) {
                f(w);
            }
        });
    }
}

/// `n` clients, each to hold one connection, and the protocol they speak: HTTP/2 when the
/// server takes it (each client's first request, GET /version, opens its connection and
/// tells), else HTTP/1.1. The counter counts connections opened.
pub async fn clients(
    config: &kube::Config,
    n: usize,
) -> Result<(Vec<Client>, &'static str, Arc<AtomicU64>), Error> {
    let conn = Connector::new(config)?;
    let probe = |c: Client| async move {
        let req = http::Request::get("/version")
            .body(kube::client::Body::empty())
            .expect("a valid request");
        match tokio::time::timeout(Duration::from_secs(10), c.send(req)).await {
            Ok(Ok(r)) => Ok((c, r.version())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer in 10 s".to_string()),
        }
    };
    let first = probe(conn.client(true)?).await;
    let (h2, first) = match first {
        Ok((c, v)) if v == http::Version::HTTP_2 => (true, c),
        // The server did not take HTTP/2 (over TLS it chose http/1.1; over http:// it
        // refused the preface): HTTP/1.1 it is.
        _ => {
            let c = conn.client(false)?;
            let (c, _) = probe(c).await.map_err(|e| {
                Error::Usage(format!("cannot reach the API server for watches: {e}"))
            })?;
            (false, c)
        }
    };
    let mut out = vec![first];
    for _ in 1..n.max(1) {
        let c = conn.client(h2)?;
        if h2 {
            // Open its connection now, so that its watchers share it from the first.
            let c = probe(c)
                .await
                .map_err(|e| Error::Usage(format!("a watch connection failed: {e}")))?
                .0;
            out.push(c);
        } else {
            out.push(c);
        }
    }
    Ok((out, if h2 { "HTTP/2" } else { "HTTP/1.1" }, conn.opened))
}

fn us(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// `timeoutSeconds` for one watch: the configured timeout ± 10 %, whole seconds, at least 1.
fn jittered(timeout: Duration, rng: &mut rand::rngs::SmallRng) -> u32 {
    let f: f64 = rng.gen_range(0.9..=1.1);
    (timeout.as_secs_f64() * f)
        .round()
        .clamp(1.0, f64::from(u32::MAX)) as u32
}

/// Wait `d`, or until the stop; false when stopped.
async fn pause(d: Duration, stop: &mut signal::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// One watcher's loop; see the module doc.
struct Watcher {
    i: usize,
    api: kube::Api<DynamicObject>,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    rec: Arc<Recorder>,
    stop: signal::Receiver<bool>,
    /// Where to resume; None: list first.
    rv: Option<String>,
    /// The highest version seen, to tell duplicates.
    last: Option<u64>,
    backoff: Duration,
    rng: rand::rngs::SmallRng,
}

impl Watcher {
    /// List (in pages) for a version to watch from; None when it failed.
    async fn list(&self) -> Option<String> {
        let verb = match (&self.cfg.namespace, self.cfg.target.namespaced) {
            (Some(_), true) => Verb::ListNamespace,
            _ => Verb::ListCluster,
        };
        let res = self.cfg.target.display();
        let mut lp = ListParams::default().limit(PAGE);
        if let Some(s) = &self.cfg.selector {
            lp = lp.labels(s);
        }
        let mut version = None;
        loop {
            let page = crate::churn::timed(&self.rec, verb, &res, self.api.list(&lp)).await?;
            // The version of a paged list is its first page's.
            version.get_or_insert(page.metadata.resource_version.clone().unwrap_or_default());
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => break,
            }
        }
        version
    }

    fn seen(&mut self, rv: Option<&str>) -> bool {
        let Some(n) = rv.and_then(|v| v.parse::<u64>().ok()) else {
            return true;
        };
        if self.last.is_some_and(|l| n <= l) {
            return false;
        }
        self.last = Some(n);
        true
    }

    fn on_object(&mut self, kind: &str, o: &DynamicObject) {
        let now = wall_ns();
        let rv = o.metadata.resource_version.clone();
        if !self.seen(rv.as_deref()) {
            self.shared.count(self.i, |w| w.duplicates += 1);
            return;
        }
        if let Some(rv) = rv {
            self.rv = Some(rv);
        }
        let ann = o.metadata.annotations.as_ref();
        let sent = ann
            .and_then(|a| a.get(ANN_SENT))
            .and_then(|s| s.parse::<u128>().ok());
        let op = ann.and_then(|a| a.get(ANN_OP)).map(String::as_str);
        let late = sent.map(|s| (now.saturating_sub(s) / 1000).min(u128::from(u64::MAX)) as u64);
        let i = self.i;
        self.shared.with(|s| {
            let (t, w) = (&mut s.total, s.per_watcher.get_mut(i));
            let bump = |c: &mut WatcherCounts| match kind {
                "added" => c.added += 1,
                "modified" => c.modified += 1,
                _ => c.deleted += 1,
            };
            bump(t);
            if let Some(w) = w {
                bump(w);
            }
            match (kind, op, late) {
                ("added", Some("create"), Some(l)) => {
                    let _ = s.delivery_create.record(l.max(1));
                }
                ("modified", Some(op), Some(l)) if op.starts_with("update") => {
                    let _ = s.delivery_update.record(l.max(1));
                }
                _ => {}
            }
        });
    }

    /// One watch request, to its end. False when the run is stopping.
    async fn watch(&mut self) -> bool {
        let Some(from) = self.rv.clone() else {
            return true;
        };
        let secs = jittered(self.cfg.timeout, &mut self.rng);
        let mut wp = WatchParams::default().timeout(secs);
        wp.bookmarks = true;
        if let Some(s) = &self.cfg.selector {
            wp = wp.labels(s);
        }
        self.shared.count(self.i, |w| w.requests += 1);
        let t0 = Instant::now();
        let started = tokio::select! {
            r = Box::pin(crate::events::watch(&self.api, &wp, &from)) => r,
            _ = self.stop.wait_for(|s| *s) => return false,
        };
        let mut stream = match started {
            Ok(s) => s,
            Err(e) => {
                let (status, m) = ErrorMessage::of(&e);
                self.shared.with(|s| s.failed_requests += 1);
                self.shared.error(status, m);
                if status == Some(410) {
                    self.rv = None;
                    return true;
                }
                return self.back_off().await;
            }
        };
        let took = t0.elapsed();
        self.shared.with(|s| {
            let _ = s.established.record(us(took).max(1));
        });
        self.backoff = Duration::from_millis(200);
        let overdue = tokio::time::sleep(Duration::from_secs(u64::from(secs)) + OVERDUE);
        tokio::pin!(overdue);
        let mut first = true;
        loop {
            let item = tokio::select! {
                biased;
                _ = self.stop.wait_for(|s| *s) => return false,
                _ = &mut overdue => {
                    self.shared.with(|s| s.overdue += 1);
                    return true;
                }
                item = stream.next() => item,
            };
            let Some(item) = item else {
                // The server ended the watch at its timeout: watch again from `rv`.
                return true;
            };
            if first {
                first = false;
                let took = t0.elapsed();
                self.shared.with(|s| {
                    let _ = s.first_event.record(us(took).max(1));
                });
            }
            match item {
                Ok(WatchEvent::Added(o)) => self.on_object("added", &o),
                Ok(WatchEvent::Modified(o)) => self.on_object("modified", &o),
                Ok(WatchEvent::Deleted(o)) => self.on_object("deleted", &o),
                Ok(WatchEvent::Bookmark(b)) => {
                    self.shared.count(self.i, |w| w.bookmarks += 1);
                    // All events up to the bookmark's version have been sent: resume there.
                    let rv = b.metadata.resource_version;
                    if self.seen(Some(&rv)) {
                        self.rv = Some(rv);
                    }
                }
                Ok(WatchEvent::Error(s)) => {
                    let code = s.code;
                    self.shared.error(
                        Some(code),
                        ErrorMessage {
                            reason: s.reason.clone(),
                            message: s.message.clone(),
                        },
                    );
                    if code == 410 {
                        self.rv = None;
                        return true;
                    }
                    return self.back_off().await;
                }
                Err(e) => {
                    // A broken stream: resume from the last version seen.
                    let (status, m) = ErrorMessage::of(&e);
                    self.shared.error(status, m);
                    return self.back_off().await;
                }
            }
        }
    }

    async fn back_off(&mut self) -> bool {
        let d = self.backoff;
        self.backoff = (d * 2).min(Duration::from_secs(5));
        pause(d, &mut self.stop).await
    }

    async fn run(mut self) {
        while !*self.stop.borrow() {
            if self.rv.is_none() {
                let mut stop = self.stop.clone();
                let listed = tokio::select! {
                    l = self.list() => l,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match listed {
                    Some(v) => {
                        let i = self.i;
                        self.shared.with(|s| {
                            s.total.lists += 1;
                            if let Some(w) = s.per_watcher.get_mut(i) {
                                w.lists += 1;
                                if w.lists > 1 {
                                    s.relists += 1;
                                }
                            }
                        });
                        self.last = v.parse().ok();
                        self.rv = Some(v);
                        self.backoff = Duration::from_millis(200);
                    }
                    None => {
                        if !self.back_off().await {
                            return;
                        }
                        continue;
                    }
                }
            }
            if !self.watch().await {
                return;
            }
        }
    }
}

/// Run `cfg.watchers` watchers over `clients` (watcher i on client i mod len) until `stop`
/// turns true. Watch requests and errors go to `shared`; lists are API calls, timed in `rec`.
pub async fn run(
    clients: Vec<Client>,
    cfg: Config,
    shared: Arc<Shared>,
    rec: Arc<Recorder>,
    stop: signal::Receiver<bool>,
) {
    let cfg = Arc::new(cfg);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..cfg.watchers {
        let client = &clients[i % clients.len().max(1)];
        let w = Watcher {
            i,
            api: cfg.target.api(client, cfg.namespace.as_deref()),
            cfg: cfg.clone(),
            shared: shared.clone(),
            rec: rec.clone(),
            stop: stop.clone(),
            rv: None,
            last: None,
            backoff: Duration::from_millis(200),
            rng: rand::rngs::SmallRng::seed_from_u64(cfg.seed.wrapping_add(i as u64)),
        };
        tasks.spawn(w.run());
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent_in_whole_seconds() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let v: Vec<u32> = (0..1000)
            .map(|_| jittered(Duration::from_secs(60), &mut rng))
            .collect();
        assert!(v.iter().all(|s| (54..=66).contains(s)));
        assert!(v.iter().min() < Some(&57) && v.iter().max() > Some(&63));
        assert_eq!(jittered(Duration::from_millis(300), &mut rng), 1);
    }

    #[test]
    fn the_metrics_text_has_counters_buckets_and_an_end() {
        let cfg = Config {
            target: crate::Target {
                ar: kube::core::ApiResource {
                    group: String::new(),
                    version: "v1".into(),
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    plural: "configmaps".into(),
                },
                namespaced: true,
            },
            namespace: None,
            selector: None,
            watchers: 2,
            timeout: Duration::from_secs(2),
            seed: 1,
        };
        let mut s = LoopStats::new(&cfg);
        s.total.requests = 5;
        s.errors.insert(410, 2);
        let _ = s.established.record(1000);
        let text = s.encode_metrics();
        assert!(
            text.contains("scaletest_watchers_watch_requests_total 5\n"),
            "{text}"
        );
        assert!(text.contains("scaletest_watchers_errors_total{status=\"410\"} 2\n"));
        assert!(text.contains("scaletest_watchers_established_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("scaletest_watchers_established_seconds_bucket{le=\"0.0005\"} 0\n"));
        assert!(text.ends_with("# EOF\n"));
    }
}
