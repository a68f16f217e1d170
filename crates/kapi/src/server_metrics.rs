//! The API server's own view of a run, as ClusterLoader2 and kube-burner read it: its
//! `/metrics` scraped through the run's own client at the start, every `--scrape-interval` and
//! at the end ([`Scraper`]), taken in as deltas between scrapes (a counter that went down is a
//! restarted server: its new value is the delta) that are summed, charted per interval
//! ([`intervals`]) and kept for the SLO's windows only as long as a window reaches them
//! (the `slo` module), so a summary never re-reads the run's history, and summarized into a
//! [`ServerSide`]:
//! requests and their codes by verb/resource/subresource/scope with p50/p99 from
//! `apiserver_request_duration_seconds`' bucket deltas, API Priority and Fairness' queue waits
//! and rejections by priority level, the most inflight and long-running requests seen, etcd
//! request latency by operation and type, and the server's version from `/version`.
//!
//! Percentiles are Prometheus's `histogram_quantile` ([`promql`]): linear interpolation within
//! the bucket the rank falls in, from the bound of the one below (empty buckets of a histogram
//! that counted are kept, as a `rate()` of every bucket keeps them), so they are only as fine
//! as the server's buckets. The SLO
//! check copies ClusterLoader2's APIResponsivenessPrometheus: the p99 of each
//! verb/resource/subresource/scope over 5-minute windows (one ending at each scrape from 5
//! minutes in; a shorter run is one window), then the 99th percentile of those
//! (`quantile_over_time`), against 1 s for single objects, 5 s for namespace-scoped and 30 s
//! for cluster-scoped collections; WATCH, CONNECT, log/exec/attach/portforward/proxy, custom
//! resources and aggregated APIs (any group kube-apiserver v1.28 does not serve itself) left
//! out. An unreachable or forbidden `/metrics` leaves a one-line [`ServerSide::warning`].

mod exposition;
pub mod intervals;
pub mod promql;
mod slo;
pub mod text;

use crate::stats::ErrorMessage;
pub use intervals::{call_text, IntervalApf, IntervalCalls, ServerInterval};
use kube::Client;
use report::format::{count, ms};
use report::table::boxed;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use text::Sample;

/// `--scrape-interval`'s default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);

/// The metric families read; the rest of a scrape is skipped unparsed.
const FAMILIES: [&str; 9] = [
    "apiserver_request_total",
    "apiserver_request_duration_seconds_bucket",
    "apiserver_flowcontrol_request_wait_duration_seconds_bucket",
    "apiserver_flowcontrol_rejected_requests_total",
    "apiserver_flowcontrol_current_inqueue_requests",
    "apiserver_current_inflight_requests",
    "apiserver_longrunning_requests",
    "etcd_request_duration_seconds_bucket",
    "kubernetes_build_info",
];

/// The API groups kube-apiserver v1.28 serves itself; any other is a custom resource's or an
/// aggregated API's.
const BUILT_IN_GROUPS: [&str; 22] = [
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
];

/// Calls of one verb/resource/subresource/scope, as the server counted and timed them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerCalls {
    /// As the server reports it: POST, PUT, PATCH, APPLY, DELETE, GET, LIST, WATCH, ...
    pub verb: String,
    /// `configmaps`, `deployments.apps`; a non-resource path (`/readyz`) as itself.
    pub resource: String,
    /// `status`, `binding`, ... or "".
    pub subresource: String,
    /// `resource`, `namespace`, `cluster` (or "" for a non-resource path).
    pub scope: String,
    /// Requests counted.
    pub count: u64,
    /// Requests by HTTP status.
    pub codes: BTreeMap<String, u64>,
    /// Median and p99 latency, s (None with no timed request).
    pub p50_s: Option<f64>,
    /// p99, s.
    pub p99_s: Option<f64>,
}

/// One API Priority and Fairness priority level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApfLevel {
    /// `global-default`, `workload-low`, ...
    pub priority_level: String,
    /// Requests whose queue wait was observed.
    pub waited: u64,
    /// Median queue wait, s.
    pub wait_p50_s: Option<f64>,
    /// p99 queue wait, s.
    pub wait_p99_s: Option<f64>,
    /// Rejections (429) by reason (`queue-full`, `time-out`, ...).
    pub rejected: BTreeMap<String, u64>,
    /// The most requests seen in its queues at a scrape.
    pub inqueue_max: f64,
}

/// A gauge's most and last value over the scrapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gauge {
    /// What it counts: `readOnly`, `WATCH configmaps (namespace)`, ...
    pub what: String,
    /// The most seen.
    pub max: f64,
    /// At the last scrape.
    pub last: f64,
}

/// etcd requests of one operation on one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdOps {
    /// `get`, `list`, `create`, `update`, `delete`, ...
    pub operation: String,
    /// The resource (`configmaps`, `leases.coordination.k8s.io`).
    pub resource: String,
    /// Requests.
    pub count: u64,
    /// Median, s.
    pub p50_s: Option<f64>,
    /// p99, s.
    pub p99_s: Option<f64>,
}

/// One verb/resource/subresource/scope against the API-call latency SLO, on the server's
/// latency (ClusterLoader2's APIResponsivenessPrometheus).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSlo {
    /// Verb.
    pub verb: String,
    /// Resource.
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Scope.
    pub scope: String,
    /// The 99th percentile over the windows of each window's p99, s.
    pub p99_s: f64,
    /// The limit, s.
    pub limit_s: f64,
    /// 5-minute windows judged.
    pub windows: u32,
    /// p99 ≤ limit.
    pub pass: bool,
}

/// What the API server said about the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSide {
    /// The server's `gitVersion` from `/version` (None when it could not be read).
    pub version: Option<String>,
    /// Scrapes of `/metrics` that succeeded.
    pub scrapes: u32,
    /// Scrapes that failed after a first one succeeded.
    #[serde(default)]
    pub failed_scrapes: u32,
    /// From the first good scrape to the last, s.
    pub span_s: f64,
    /// Why there are no server-side figures (`/metrics` unreachable, forbidden, unreadable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// Requests by verb/resource/subresource/scope.
    pub calls: Vec<ServerCalls>,
    /// API Priority and Fairness by priority level.
    pub apf: Vec<ApfLevel>,
    /// `apiserver_current_inflight_requests` by request kind.
    pub inflight: Vec<Gauge>,
    /// `apiserver_longrunning_requests` by verb/resource/scope.
    pub long_running: Vec<Gauge>,
    /// etcd requests by operation and resource.
    pub etcd: Vec<EtcdOps>,
    /// The SLO check on the server's latency (empty without metrics).
    pub slo: Vec<ServerSlo>,
    /// Scrape by scrape (absent in files of earlier builds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<ServerInterval>,
}

impl ServerSide {
    /// Whether `/metrics` was read at the start and the end, so the figures cover the run.
    pub fn has_metrics(&self) -> bool {
        self.unavailable.is_none() && self.scrapes >= 2
    }

    /// The one line to print when server-side figures are missing.
    pub fn warning(&self) -> Option<String> {
        self.unavailable
            .as_ref()
            .map(|why| format!("server metrics: {why}; the report has the client's figures only"))
    }

    /// Whether every call judged met the SLO (true with none).
    pub fn slo_pass(&self) -> bool {
        self.slo.iter().all(|s| s.pass)
    }
}

/// A series: metric name and sorted labels.
type Key = (String, Vec<(String, String)>);
type Series = BTreeMap<Key, f64>;

/// What the scrapes gathered so far.
struct Record {
    /// When the scraper started, Unix seconds: scrape times are counted from it.
    began_unix: f64,
    /// Seconds since the scraper started, of the first good scrape.
    first_at: Option<f64>,
    last: Option<(f64, Series)>,
    /// The deltas of counters and buckets between consecutive good scrapes, summed.
    total: Series,
    /// Each interval between two good scrapes, as the report charts it.
    rows: Vec<ServerInterval>,
    /// The SLO windows so far.
    slo: slo::Slo,
    /// Gauges summed per what they count, by kind: (max, last).
    gauges: BTreeMap<(&'static str, String), (f64, f64)>,
    scrapes: u32,
    failed: u32,
    unavailable: Option<String>,
}

impl Record {
    fn new(began_unix: f64) -> Record {
        Record {
            began_unix,
            first_at: None,
            last: None,
            total: Series::new(),
            rows: Vec::new(),
            slo: slo::Slo::default(),
            gauges: BTreeMap::new(),
            scrapes: 0,
            failed: 0,
            unavailable: None,
        }
    }

    /// One scrape at `at` s.
    async fn scrape(&mut self, client: &Client, at: f64) {
        match fetch(client).await {
            Ok(samples) => self.add(at, samples),
            Err(why) if self.scrapes == 0 => self.unavailable = Some(why),
            Err(_) => self.failed += 1,
        }
    }

    fn add(&mut self, at: f64, samples: Vec<Sample>) {
        let mut series = Series::new();
        let mut gauges: BTreeMap<(&'static str, String), f64> = BTreeMap::new();
        for s in samples {
            let gauge = match s.name.as_str() {
                "apiserver_current_inflight_requests" => {
                    Some(("inflight", s.label("request_kind").to_string()))
                }
                "apiserver_flowcontrol_current_inqueue_requests" => {
                    Some(("inqueue", s.label("priority_level").to_string()))
                }
                "apiserver_longrunning_requests" => Some((
                    "long-running",
                    format!(
                        "{} {} ({})",
                        s.label("verb"),
                        resource(&s),
                        s.label("scope")
                    ),
                )),
                "kubernetes_build_info" => continue,
                _ => None,
            };
            match gauge {
                Some(g) => *gauges.entry(g).or_default() += s.value,
                None => {
                    series.insert((s.name, s.labels), s.value);
                }
            }
        }
        for (g, v) in gauges {
            let e = self.gauges.entry(g).or_insert((v, v));
            *e = (e.0.max(v), v);
        }
        if let (Some((from, prev)), Some(first)) = (&self.last, self.first_at) {
            let delta = |k: &Key, v: f64| {
                let before = prev.get(k).copied().unwrap_or(0.0);
                if v >= before {
                    v - before
                } else {
                    v
                }
            };
            // A histogram that counted anything in the interval keeps its empty buckets too:
            // the one below the first that counted is where `histogram_quantile` starts its
            // interpolation, as it does over Prometheus's `rate()` of every bucket.
            let counted: BTreeSet<(&str, Vec<&(String, String)>)> = series
                .iter()
                .filter(|(k, v)| {
                    k.0.ends_with("_bucket")
                        && k.1.iter().any(|(l, b)| l == "le" && b == "+Inf")
                        && delta(k, **v) > 0.0
                })
                .map(|(k, _)| (k.0.as_str(), without_le(&k.1)))
                .collect();
            let deltas: Series = series
                .iter()
                .filter_map(|(k, &v)| {
                    let d = delta(k, v);
                    let keep = d > 0.0
                        || (k.0.ends_with("_bucket")
                            && counted.contains(&(k.0.as_str(), without_le(&k.1))));
                    keep.then(|| (k.clone(), d))
                })
                .collect();
            // Taken in now, so that a summary never walks the run's history.
            self.rows
                .push(intervals::row(self.began_unix, *from, at, &deltas));
            self.slo.add(first, at, &deltas);
            for (k, v) in deltas {
                *self.total.entry(k).or_default() += v;
            }
        }
        self.first_at.get_or_insert(at);
        self.last = Some((at, series));
        self.scrapes += 1;
    }

    /// Everything the scrapes add up to.
    fn summary(&self, version: Option<String>) -> ServerSide {
        let mut out = self.figures(version);
        out.intervals = self.rows.clone();
        out
    }

    /// As [`Record::summary`] without the intervals (which only the report charts): what the
    /// live `/metrics` shows.
    fn figures(&self, version: Option<String>) -> ServerSide {
        let mut out = ServerSide {
            version,
            scrapes: self.scrapes,
            failed_scrapes: self.failed,
            unavailable: self.unavailable.clone(),
            ..ServerSide::default()
        };
        let (Some(first), Some((last, _))) = (self.first_at, &self.last) else {
            return out;
        };
        out.span_s = last - first;
        out.calls = calls(&self.total);
        out.apf = apf(&self.total, &self.gauges);
        out.etcd = etcd(&self.total);
        for ((kind, what), &(max, last)) in &self.gauges {
            let g = Gauge {
                what: what.clone(),
                max,
                last,
            };
            match *kind {
                "inflight" => out.inflight.push(g),
                "long-running" => out.long_running.push(g),
                _ => {}
            }
        }
        out.slo = self.slo.verdicts(first, *last);
        out
    }
}

/// `GET /metrics` through the client, parsed (the families read only); a one-line reason
/// when it cannot be had.
async fn fetch(client: &Client) -> Result<Vec<Sample>, String> {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = match tokio::time::timeout(SCRAPE_TIMEOUT, client.request_text(req)).await {
        Err(_) => return Err(format!("GET /metrics: no answer in {SCRAPE_TIMEOUT:?}")),
        Ok(Err(e)) => {
            let (code, said) = ErrorMessage::of(&e);
            let hint = if code == Some(403) {
                " (reading it needs RBAC's get on the nonResourceURL /metrics)"
            } else {
                ""
            };
            let code = code.map(|c| format!("{c} ")).unwrap_or_default();
            return Err(format!("GET /metrics: {code}{}{hint}", said.line(200)));
        }
        Ok(Ok(t)) => t,
    };
    text::parse(&text, |n| FAMILIES.contains(&n)).map_err(|e| format!("GET /metrics: {e}"))
}

/// A sample's resource as scaletest names it: `configmaps`, `deployments.apps`, or a
/// non-resource path.
fn resource(s: &Sample) -> String {
    match (s.label("resource"), s.label("group")) {
        ("", _) => s.label("subresource").to_string(),
        (r, "") => r.to_string(),
        (r, g) => format!("{r}.{g}"),
    }
}

/// A bucket's labels but its bound: the histogram it belongs to.
fn without_le(labels: &[(String, String)]) -> Vec<&(String, String)> {
    labels.iter().filter(|(k, _)| k != "le").collect()
}

/// A call's row key: verb, resource, subresource (none for a non-resource path), scope.
type CallKey = (String, String, String, String);

fn call_key(s: &Sample) -> CallKey {
    let sub = if s.label("resource").is_empty() {
        ""
    } else {
        s.label("subresource")
    };
    (
        s.label("verb").to_string(),
        resource(s),
        sub.to_string(),
        s.label("scope").to_string(),
    )
}

/// Buckets summed by their bound: bound's bits (order-preserving for bounds ≥ 0) → count.
type Buckets = BTreeMap<u64, f64>;

fn add_bucket(b: &mut Buckets, s: &Sample, v: f64) {
    if let Some(le) = text::float(s.label("le")) {
        *b.entry(le.max(0.0).to_bits()).or_default() += v;
    }
}

fn quantile(q: f64, b: &Buckets) -> Option<f64> {
    let pairs: Vec<(f64, f64)> = b.iter().map(|(&k, &v)| (f64::from_bits(k), v)).collect();
    promql::histogram_quantile(q, &pairs)
}

fn observations(b: &Buckets) -> u64 {
    b.get(&f64::INFINITY.to_bits())
        .map_or(0, |n| n.round() as u64)
}

/// The samples of one family in `series`, as [`Sample`]s.
fn family<'a>(series: &'a Series, name: &'a str) -> impl Iterator<Item = (Sample, f64)> + 'a {
    series
        .iter()
        .filter(move |((n, _), _)| n == name)
        .map(|((n, l), &v)| {
            (
                Sample {
                    name: n.clone(),
                    labels: l.clone(),
                    value: v,
                },
                v,
            )
        })
}

fn calls(total: &Series) -> Vec<ServerCalls> {
    let mut rows: BTreeMap<CallKey, (BTreeMap<String, f64>, Buckets)> = BTreeMap::new();
    for (s, v) in family(total, "apiserver_request_total") {
        let codes = &mut rows.entry(call_key(&s)).or_default().0;
        *codes.entry(s.label("code").to_string()).or_default() += v;
    }
    for (s, v) in family(total, "apiserver_request_duration_seconds_bucket") {
        add_bucket(&mut rows.entry(call_key(&s)).or_default().1, &s, v);
    }
    rows.into_iter()
        .map(|((verb, resource, subresource, scope), (codes, b))| {
            let codes: BTreeMap<String, u64> = codes
                .into_iter()
                .map(|(c, n)| (c, n.round() as u64))
                .collect();
            ServerCalls {
                verb,
                resource,
                subresource,
                scope,
                count: codes.values().sum(),
                codes,
                p50_s: quantile(0.5, &b),
                p99_s: quantile(0.99, &b),
            }
        })
        .collect()
}

/// API Priority and Fairness in `series` by priority level: queue-wait buckets, and
/// rejections by reason.
type ApfByLevel = BTreeMap<String, (Buckets, BTreeMap<String, u64>)>;

fn apf_by_level(series: &Series) -> ApfByLevel {
    let mut levels = ApfByLevel::new();
    for (s, v) in family(
        series,
        "apiserver_flowcontrol_request_wait_duration_seconds_bucket",
    ) {
        let pl = s.label("priority_level").to_string();
        add_bucket(&mut levels.entry(pl).or_default().0, &s, v);
    }
    for (s, v) in family(series, "apiserver_flowcontrol_rejected_requests_total") {
        let pl = s.label("priority_level").to_string();
        *levels
            .entry(pl)
            .or_default()
            .1
            .entry(s.label("reason").to_string())
            .or_default() += v.round() as u64;
    }
    levels
}

fn apf(total: &Series, gauges: &BTreeMap<(&'static str, String), (f64, f64)>) -> Vec<ApfLevel> {
    let mut levels = apf_by_level(total);
    for (kind, pl) in gauges.keys() {
        if *kind == "inqueue" {
            levels.entry(pl.clone()).or_default();
        }
    }
    levels
        .into_iter()
        .map(|(pl, (b, rejected))| ApfLevel {
            inqueue_max: gauges.get(&("inqueue", pl.clone())).map_or(0.0, |g| g.0),
            priority_level: pl,
            waited: observations(&b),
            wait_p50_s: quantile(0.5, &b),
            wait_p99_s: quantile(0.99, &b),
            rejected,
        })
        .collect()
}

fn etcd(total: &Series) -> Vec<EtcdOps> {
    let mut ops: BTreeMap<(String, String), Buckets> = BTreeMap::new();
    for (s, v) in family(total, "etcd_request_duration_seconds_bucket") {
        let k = (
            s.label("operation").to_string(),
            s.label("type").to_string(),
        );
        add_bucket(ops.entry(k).or_default(), &s, v);
    }
    ops.into_iter()
        .map(|((operation, resource), b)| EtcdOps {
            operation,
            resource,
            count: observations(&b),
            p50_s: quantile(0.5, &b),
            p99_s: quantile(0.99, &b),
        })
        .collect()
}

/// Verbs of requests that last as long as they are open: no latency SLO judges them.
const LONG_RUNNING_VERBS: [&str; 3] = ["WATCH", "WATCHLIST", "CONNECT"];

/// Whether a call's row text ([`call_text`]) is of a long-running verb.
pub fn long_running(call: &str) -> bool {
    call.split_once(' ')
        .is_some_and(|(verb, _)| LONG_RUNNING_VERBS.contains(&verb))
}

/// Whether ClusterLoader2's API-call latency SLO judges a request series.
fn judged(s: &Sample) -> bool {
    !LONG_RUNNING_VERBS.contains(&s.label("verb"))
        && !matches!(
            s.label("subresource"),
            "log" | "exec" | "portforward" | "attach" | "proxy"
        )
        && !s.label("resource").is_empty()
        && BUILT_IN_GROUPS.contains(&s.label("group"))
}

/// Scrapes the API server's `/metrics` around a run.
pub struct Scraper {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<ServerSide>,
    latest: Live,
}

/// The server's figures as of the last scrape, for the run's own `/metrics`: summed at
/// each scrape only once asked for ([`Scraper::live`]), as nothing else needs them.
#[derive(Clone, Default)]
pub struct Live(std::sync::Arc<LiveInner>);

#[derive(Default)]
struct LiveInner {
    latest: std::sync::Mutex<Option<ServerSide>>,
    wanted: std::sync::atomic::AtomicBool,
}

impl Live {
    /// Prometheus text of the figures so far (nothing before two good scrapes), to go in
    /// front of a run's own `# EOF` ([`with_eof`]).
    pub fn text(&self) -> String {
        match &*self.0.latest.lock().expect("lock") {
            Some(sv) if sv.has_metrics() => exposition::text(sv),
            _ => String::new(),
        }
    }
}

/// `text` (an exposition ending in `# EOF`) with `more` before its end.
pub fn with_eof(text: &str, more: &str) -> String {
    match text.strip_suffix("# EOF\n") {
        Some(body) => format!("{body}{more}# EOF\n"),
        None => format!("{text}{more}"),
    }
}

impl Scraper {
    /// Read `/version`, scrape once (before the run's load, so that the deltas cover it),
    /// then every `every` until [`Scraper::finish`].
    pub async fn start(client: Client, every: Duration) -> Scraper {
        // A zero interval would scrape in a tight loop.
        let every = every.max(Duration::from_millis(10));
        let began = Instant::now();
        let began_unix = st_http::stamp::now_unix();
        let version = tokio::time::timeout(SCRAPE_TIMEOUT, client.apiserver_version())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|v| v.git_version);
        let mut rec = Record::new(began_unix);
        // After /version, which may have taken a while.
        rec.scrape(&client, began.elapsed().as_secs_f64()).await;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let latest = Live::default();
        let live = latest.clone();
        let task = tokio::spawn(async move {
            if rec.unavailable.is_some() {
                let _ = stopped.await;
                return rec.summary(version);
            }
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {
                        rec.scrape(&client, began.elapsed().as_secs_f64()).await;
                        if live.0.wanted.load(std::sync::atomic::Ordering::Relaxed) {
                            let now = rec.figures(version.clone());
                            *live.0.latest.lock().expect("lock") = Some(now);
                        }
                    }
                    _ = &mut stopped => break,
                }
            }
            rec.scrape(&client, began.elapsed().as_secs_f64()).await;
            rec.summary(version)
        });
        Scraper { stop, task, latest }
    }

    /// The figures as of the last scrape, as they come (from the next scrape on: ask before
    /// the run, where a `/metrics` server will read them).
    pub fn live(&self) -> Live {
        self.latest
            .0
            .wanted
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.latest.clone()
    }

    /// The last scrape, and what they all add up to.
    pub async fn finish(self) -> ServerSide {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_else(|e| ServerSide {
            unavailable: Some(format!("the scraper failed: {e}")),
            ..ServerSide::default()
        })
    }
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |s| ms(s * 1000.0))
}

/// The server-side section of a report.
pub fn render(sv: &ServerSide) -> String {
    let mut s = String::new();
    let version = sv.version.as_deref().unwrap_or("version unknown");
    if !sv.has_metrics() {
        let _ = writeln!(
            s,
            "Server ({version}): no metrics{}",
            sv.unavailable
                .as_ref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default()
        );
        return s;
    }
    let _ = writeln!(
        s,
        "Server ({version}; /metrics scraped {} times over {}s{})",
        sv.scrapes,
        report::format::trim(sv.span_s, 1),
        if sv.failed_scrapes > 0 {
            format!(", {} scrapes failed", sv.failed_scrapes)
        } else {
            String::new()
        }
    );
    let mut rows = vec![vec![
        "Call (server)".to_string(),
        "50%".into(),
        "99%".into(),
        "Calls".into(),
        "Codes".into(),
    ]];
    for c in &sv.calls {
        let codes: Vec<String> = c
            .codes
            .iter()
            .map(|(k, n)| format!("{k}: {}", count(*n)))
            .collect();
        rows.push(vec![
            call_text(&c.verb, &c.resource, &c.subresource, &c.scope),
            secs(c.p50_s),
            secs(c.p99_s),
            count(c.count),
            codes.join(", "),
        ]);
    }
    if sv.calls.is_empty() {
        s += "No request counted by the server between the first scrape and the last.\n";
    } else {
        s += &boxed(&rows);
    }
    if !sv.apf.is_empty() {
        let mut rows = vec![vec![
            "Priority level".to_string(),
            "Wait 50%".into(),
            "Wait 99%".into(),
            "Waited".into(),
            "Rejected".into(),
            "Max in queue".into(),
        ]];
        for l in &sv.apf {
            let rejected: Vec<String> = l
                .rejected
                .iter()
                .map(|(r, n)| format!("{} {r}", count(*n)))
                .collect();
            rows.push(vec![
                l.priority_level.clone(),
                secs(l.wait_p50_s),
                secs(l.wait_p99_s),
                count(l.waited),
                if rejected.is_empty() {
                    "0".into()
                } else {
                    rejected.join(", ")
                },
                report::format::trim(l.inqueue_max, 0),
            ]);
        }
        s += &boxed(&rows);
    }
    if !sv.etcd.is_empty() {
        let mut rows = vec![vec![
            "etcd".to_string(),
            "50%".into(),
            "99%".into(),
            "Requests".into(),
        ]];
        for e in &sv.etcd {
            rows.push(vec![
                format!("{} {}", e.operation, e.resource),
                secs(e.p50_s),
                secs(e.p99_s),
                count(e.count),
            ]);
        }
        s += &boxed(&rows);
    }
    let gauges = |g: &[Gauge]| -> String {
        let parts: Vec<String> = g
            .iter()
            .filter(|g| g.max > 0.0)
            .map(|g| format!("{} {}", report::format::trim(g.max, 0), g.what))
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    };
    let _ = writeln!(
        s,
        "Most inflight at a scrape: {}; most long-running: {}",
        gauges(&sv.inflight),
        gauges(&sv.long_running)
    );
    s += "Server latency from the bucket deltas of apiserver_request_duration_seconds, \
          etcd_request_duration_seconds and API Priority and Fairness' queue wait, interpolated \
          linearly within a bucket as Prometheus's histogram_quantile does.\n";
    s
}

#[cfg(test)]
mod tests;
