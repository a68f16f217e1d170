//! `/metrics` as kube-apiserver v1.28.7 writes it, for the calls the fake serves: the metric
//! names, HELP texts, label sets, label values and bucket boundaries of k8s.io/apiserver
//! v0.28.7 (`pkg/endpoints/metrics`, `pkg/util/flowcontrol/metrics`,
//! `pkg/storage/etcd3/metrics`) and k8s.io/component-base v0.28.7 (`kubernetes_build_info`),
//! as `k8s-reference/metrics-sample.txt` shows them written.
//!
//! What it counts, as that server does: every call that reaches a verb (`apiserver_request_total`
//! and `apiserver_request_duration_seconds`, from the request's arrival to its answer; a watch
//! when it ends); a 429 that [`crate::admit`] injects as API Priority and Fairness' refusal
//! (counted with code 429 and no duration, and in `apiserver_flowcontrol_rejected_requests_total`);
//! not a 401 or a 403 (authentication and authorization answer before the instrumented
//! handler), a 404 for an unknown path, discovery, `/version`, `/metrics` itself, or the
//! log and port-forward relays. What it chose instead: no queueing, so every API Priority and
//! Fairness wait is 0 in the flow schema and priority level `global-default` (v1.28's
//! suggested configuration for any user no other schema matches); `etcd_request_duration_seconds`
//! times the in-memory store, one operation per call as v1.28.7's watch cache delegates it to
//! etcd (a collection delete counts its list, not each object's delete; a graceful pod delete
//! counts as a delete); `apiserver_current_inflight_requests` is the most at once since the
//! last scrape (the real one: in the last second).

use crate::reply::{plain, status, Body};
use crate::route::{Query, Target, Verb};
use crate::state::Shared;
use crate::verbs::APPLY_PATCH;
use hyper::Response;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `apiserver_request_duration_seconds`' and `etcd_request_duration_seconds`' buckets.
pub const LATENCY_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];
/// `apiserver_flowcontrol_request_wait_duration_seconds`' buckets.
const APF_WAIT_BUCKETS: [f64; 13] = [
    0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0,
];
/// The flow schema and priority level every call is classified into.
const FLOW: &str = "global-default";

/// One call's labels (`apiserver_request_total`'s, without `code` and `component`, which is
/// always `apiserver` for a resource request).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Call {
    verb: &'static str,
    dry_run: String,
    group: String,
    version: String,
    resource: String,
    subresource: &'static str,
    scope: &'static str,
}

impl Call {
    /// As v0.28.7's `MonitorRequest` labels it: the HTTP method (GET of a collection is LIST,
    /// with `watch` WATCH; an apply patch is APPLY; a collection's DELETE is DELETE), and the
    /// route's scope (`resource` for a named object or any POST, `namespace` for a collection
    /// in a namespace, `cluster` otherwise).
    pub(crate) fn of(verb: Verb, t: &Target, q: &Query, content_type: &str) -> Call {
        let reported = match verb {
            Verb::Get => "GET",
            Verb::List => "LIST",
            Verb::Watch => "WATCH",
            Verb::Create | Verb::Bind | Verb::Token => "POST",
            Verb::Update => "PUT",
            Verb::Patch if content_type == APPLY_PATCH => "APPLY",
            Verb::Patch => "PATCH",
            Verb::Delete | Verb::DeleteCollection => "DELETE",
        };
        let scope = if t.name.is_some() || reported == "POST" {
            "resource"
        } else if t.ns.is_some() {
            "namespace"
        } else {
            "cluster"
        };
        Call {
            verb: reported,
            dry_run: q.get("dryRun").cloned().unwrap_or_default(),
            group: t.r.group.clone(),
            version: t.r.version.clone(),
            resource: t.r.plural.clone(),
            subresource: t.sub(verb).trim_start_matches('/'),
            scope,
        }
    }

    /// What the inflight gauge counts it as: `readOnly` (0) or `mutating` (1).
    fn kind(&self) -> usize {
        usize::from(!matches!(self.verb, "GET" | "LIST" | "WATCH"))
    }

    fn long_running(&self) -> bool {
        self.verb == "WATCH"
    }

    /// `apiserver_longrunning_requests`' labels.
    fn lr_labels(&self) -> Vec<(&str, &str)> {
        vec![
            ("component", "apiserver"),
            ("group", &self.group),
            ("resource", &self.resource),
            ("scope", self.scope),
            ("subresource", self.subresource),
            ("verb", self.verb),
            ("version", &self.version),
        ]
    }

    /// `apiserver_request_duration_seconds`' labels.
    fn labels(&self) -> Vec<(&str, &str)> {
        let mut l = self.lr_labels();
        l.insert(1, ("dry_run", &self.dry_run));
        l
    }
}

/// A histogram of fixed buckets.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, the last for +Inf.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    fn observe(&mut self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
    }

    fn write(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        let mut cum = 0;
        for (i, n) in self.counts.iter().enumerate() {
            cum += n;
            let le = self
                .bounds
                .get(i)
                .map_or("+Inf".to_string(), f64::to_string);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            let _ = writeln!(out, "{name}_bucket{{{}}} {cum}", render_labels(&l));
        }
        let l = render_labels(labels);
        let _ = writeln!(out, "{name}_sum{{{l}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{l}}} {cum}");
    }
}

/// `k="v",...` in the given order, values escaped as the text format asks.
fn render_labels(l: &[(&str, &str)]) -> String {
    l.iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Default)]
struct Inner {
    /// By call, then status.
    requests: BTreeMap<Call, BTreeMap<u16, u64>>,
    durations: BTreeMap<Call, Histogram>,
    long_running: BTreeMap<Call, i64>,
    /// Calls executing now and the most since the last scrape, readOnly and mutating.
    executing: [u64; 2],
    watermark: [u64; 2],
    /// By `execute` ("true", "false").
    apf_wait: BTreeMap<&'static str, Histogram>,
    /// By reason.
    apf_rejected: BTreeMap<&'static str, u64>,
    etcd: BTreeMap<(&'static str, String), Histogram>,
}

impl Inner {
    fn count(&mut self, call: Call, code: u16) {
        match self.requests.get_mut(&call) {
            Some(codes) => *codes.entry(code).or_default() += 1,
            None => {
                self.requests.insert(call, BTreeMap::from([(code, 1)]));
            }
        }
    }
}

/// The server's metrics.
#[derive(Default)]
pub(crate) struct Metrics(Mutex<Inner>);

/// A call under way, from its arrival.
pub(crate) struct Started {
    call: Call,
    at: Instant,
}

/// How a call ended, for the metrics.
pub(crate) enum Ended {
    /// Answered by its handler with this status.
    Served(u16),
    /// Refused with 429 by API Priority and Fairness (here: injected).
    Throttled,
    /// Answered before the instrumented handler (RBAC's 403): not counted.
    Unrecorded,
}

impl Metrics {
    /// A call arrived (`at`) and is executing.
    pub(crate) fn start(&self, call: Call, at: Instant) -> Started {
        let mut m = self.0.lock().expect("lock");
        if !call.long_running() {
            let k = call.kind();
            m.executing[k] += 1;
            m.watermark[k] = m.watermark[k].max(m.executing[k]);
        }
        Started { call, at }
    }

    /// A call ended.
    pub(crate) fn end(&self, s: Started, how: Ended) {
        let mut m = self.0.lock().expect("lock");
        if !s.call.long_running() {
            m.executing[s.call.kind()] -= 1;
        }
        match how {
            Ended::Served(code) => {
                m.apf_wait
                    .entry("true")
                    .or_insert_with(|| Histogram::new(&APF_WAIT_BUCKETS))
                    .observe(0.0);
                let took = s.at.elapsed().as_secs_f64();
                // Looked up before inserting: most calls repeat a series, and a key is costly
                // to clone on the fake's one thread.
                match m.durations.get_mut(&s.call) {
                    Some(h) => h.observe(took),
                    None => {
                        let mut h = Histogram::new(&LATENCY_BUCKETS);
                        h.observe(took);
                        m.durations.insert(s.call.clone(), h);
                    }
                }
                m.count(s.call, code);
            }
            Ended::Throttled => {
                *m.apf_rejected.entry("queue-full").or_default() += 1;
                m.count(s.call, 429);
            }
            Ended::Unrecorded => {}
        }
    }

    /// One etcd operation (`get`, `list`, `create`, `update`, `delete`) on a resource
    /// (`configmaps`, `leases.coordination.k8s.io`) that took `d`.
    pub(crate) fn etcd(&self, op: &'static str, resource: String, d: Duration) {
        self.0
            .lock()
            .expect("lock")
            .etcd
            .entry((op, resource))
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(d.as_secs_f64());
    }

    /// The text of `/metrics` (the inflight watermark starts again from what executes now).
    pub(crate) fn render(&self, build: &[(&str, &str)]) -> String {
        let mut m = self.0.lock().expect("lock");
        let mut s = String::new();
        family(&mut s, "apiserver_current_inflight_requests", "gauge",
            "[STABLE] Maximal number of currently used inflight request limit of this apiserver per request kind in last second.");
        for (i, kind) in ["readOnly", "mutating"].into_iter().enumerate() {
            let _ = writeln!(
                s,
                "apiserver_current_inflight_requests{{request_kind=\"{kind}\"}} {}",
                m.watermark[i]
            );
        }
        m.watermark = m.executing;
        let flow = [("flow_schema", FLOW), ("priority_level", FLOW)];
        family(&mut s, "apiserver_flowcontrol_current_inqueue_requests", "gauge",
            "[BETA] Number of requests currently pending in queues of the API Priority and Fairness subsystem");
        if !m.apf_wait.is_empty() {
            let _ = writeln!(
                s,
                "apiserver_flowcontrol_current_inqueue_requests{{{}}} 0",
                render_labels(&flow)
            );
        }
        family(
            &mut s,
            "apiserver_flowcontrol_rejected_requests_total",
            "counter",
            "[BETA] Number of requests rejected by API Priority and Fairness subsystem",
        );
        for (reason, n) in &m.apf_rejected {
            let mut l = flow.to_vec();
            l.push(("reason", reason));
            let _ = writeln!(
                s,
                "apiserver_flowcontrol_rejected_requests_total{{{}}} {n}",
                render_labels(&l)
            );
        }
        family(
            &mut s,
            "apiserver_flowcontrol_request_wait_duration_seconds",
            "histogram",
            "[BETA] Length of time a request spent waiting in its queue",
        );
        for (execute, h) in &m.apf_wait {
            let l = [flow[0], flow[1], ("execute", *execute)];
            // The Go client sorts label names: execute, flow_schema, priority_level.
            let l = [l[2], l[0], l[1]];
            h.write(
                &mut s,
                "apiserver_flowcontrol_request_wait_duration_seconds",
                &l,
            );
        }
        family(&mut s, "apiserver_longrunning_requests", "gauge",
            "[STABLE] Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way.");
        for (c, n) in &m.long_running {
            let _ = writeln!(
                s,
                "apiserver_longrunning_requests{{{}}} {n}",
                render_labels(&c.lr_labels())
            );
        }
        family(&mut s, "apiserver_request_duration_seconds", "histogram",
            "[STABLE] Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.");
        for (c, h) in &m.durations {
            h.write(&mut s, "apiserver_request_duration_seconds", &c.labels());
        }
        family(&mut s, "apiserver_request_total", "counter",
            "[STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.");
        for (c, codes) in &m.requests {
            for (code, n) in codes {
                let code = code.to_string();
                let mut l = c.labels();
                l.insert(0, ("code", &code));
                let _ = writeln!(s, "apiserver_request_total{{{}}} {n}", render_labels(&l));
            }
        }
        family(
            &mut s,
            "etcd_request_duration_seconds",
            "histogram",
            "[ALPHA] Etcd request latency in seconds for each operation and object type.",
        );
        for ((op, ty), h) in &m.etcd {
            h.write(
                &mut s,
                "etcd_request_duration_seconds",
                &[("operation", op), ("type", ty)],
            );
        }
        family(&mut s, "kubernetes_build_info", "gauge",
            "[ALPHA] A metric with a constant '1' value labeled by major, minor, git version, git commit, git tree state, build date, Go version, and compiler from which Kubernetes was built, and platform on which it is running.");
        let _ = writeln!(s, "kubernetes_build_info{{{}}} 1", render_labels(build));
        s
    }
}

fn family(s: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The etcd operation v1.28.7 makes for a call (its watch cache answers the rest): a GET
/// without `resourceVersion` and a LIST the cache delegates (no `resourceVersion`, a continue
/// token, a limit with a version other than "0", or `resourceVersionMatch=Exact`) read etcd;
/// writes write it (a binding updates the pod; a TokenRequest stores nothing).
pub(crate) fn etcd_op(verb: Verb, q: &Query) -> Option<&'static str> {
    let rv = q.get("resourceVersion").map_or("", String::as_str);
    match verb {
        Verb::Get if rv.is_empty() => Some("get"),
        Verb::List | Verb::DeleteCollection
            if rv.is_empty()
                || q.get("continue").is_some_and(|c| !c.is_empty())
                || (q.contains_key("limit") && rv != "0")
                || q.get("resourceVersionMatch").map(String::as_str) == Some("Exact") =>
        {
            Some("list")
        }
        Verb::Create => Some("create"),
        Verb::Update | Verb::Patch | Verb::Bind => Some("update"),
        Verb::Delete => Some("delete"),
        _ => None,
    }
}

/// A watch's place in `apiserver_longrunning_requests` while its stream is open; when the
/// stream ends it is counted and timed, as the real server counts a watch when it ends.
pub(crate) struct LongRunning {
    shared: Arc<Shared>,
    started: Option<Started>,
}

impl LongRunning {
    /// `resp`'s body, tracked as a long-running call until it is dropped.
    pub(crate) fn track(shared: &Arc<Shared>, s: Started, resp: Response<Body>) -> Response<Body> {
        *shared
            .metrics
            .0
            .lock()
            .expect("lock")
            .long_running
            .entry(s.call.clone())
            .or_default() += 1;
        let guard = LongRunning {
            shared: shared.clone(),
            started: Some(s),
        };
        resp.map(|b| Body::Tracked {
            body: Box::new(b),
            _place: guard,
        })
    }
}

impl Drop for LongRunning {
    fn drop(&mut self) {
        if let Some(s) = self.started.take() {
            if let Some(n) = self
                .shared
                .metrics
                .0
                .lock()
                .expect("lock")
                .long_running
                .get_mut(&s.call)
            {
                *n -= 1;
            }
            self.shared.metrics.end(s, Ended::Served(200));
        }
    }
}

/// `GET /metrics`: the text, or RBAC's 403 when the test's [`crate::Options`] forbid it (the
/// real server asks for `get` on the nonResourceURL `/metrics`).
pub(crate) fn answer(shared: &Shared) -> Response<Body> {
    if shared.forbid_metrics {
        let user = match shared.token.lock().expect("lock").as_ref() {
            Some(_) => "scaletest",
            None => "system:anonymous",
        };
        return status(
            403,
            "Forbidden",
            &format!("forbidden: User \"{user}\" cannot get path \"/metrics\""),
        );
    }
    let v = crate::discovery::version();
    let f = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let build = [
        ("build_date", f("buildDate")),
        ("compiler", f("compiler")),
        ("git_commit", f("gitCommit")),
        ("git_tree_state", f("gitTreeState")),
        ("git_version", f("gitVersion")),
        ("go_version", f("goVersion")),
        ("major", f("major")),
        ("minor", f("minor")),
        ("platform", f("platform")),
    ];
    let build: Vec<(&str, &str)> = build.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut resp = plain(200, shared.metrics.render(&build));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
