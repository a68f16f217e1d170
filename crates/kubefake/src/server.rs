//! The fake API over HTTP on loopback: the paths, verbs, list and watch wire formats and
//! discovery documents that kube-rs (and kubectl) use, over the [`Store`]; a create or update
//! whose body names another apiVersion or kind than its path is refused as the API server
//! refuses it. Tests reach it through a kubeconfig it writes, exactly as they would reach a
//! real API server. It speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c), so many watches
//! can share a connection as over TLS with ALPN, with kube-apiserver v1.28.7's HTTP/2 SETTINGS:
//! 100 concurrent streams per connection (as every server ≥ 1.28.3 / 1.27.7 / 1.26.10; older
//! ones allowed 250: [`Options::max_concurrent_streams`] chooses), its stream and connection
//! windows, frame and header-list sizes. A client that opens a 101st stream waits, as on the
//! real server. Watches are fed as the API server's watch cache feeds them: per
//! collection, pod watches of one node (`spec.nodeName=X`) by that node's pods only, each event
//! encoded once for all its watches.

use crate::store::{ApiError, Event, Resource, Selectors, Store};
use bytes::Bytes;
use http_body::Frame;
use hyper::{body::Incoming, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// How the fake behaves where a real API server is configurable.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often an idle watch that asked for bookmarks gets one (the real server: about a minute).
    pub bookmark_every: Duration,
    /// How many changes the event log keeps for watches to resume from.
    pub log_cap: usize,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` advertised on every connection: 100, as
    /// kube-apiserver v1.28.7 (and every server ≥ 1.28.3 / 1.27.7 / 1.26.10) advertises by
    /// default; 250 for older servers (Go's default), 1000 for aggregated API servers or a
    /// raised `--http2-max-streams-per-connection`.
    pub max_concurrent_streams: u32,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            bookmark_every: Duration::from_millis(500),
            log_cap: 100_000,
            max_concurrent_streams: H2_MAX_CONCURRENT_STREAMS,
        }
    }
}

/// kube-apiserver v1.28.7's HTTP/2 SETTINGS (`nghttp -v`, docs/hollow-nodes.md), copied where
/// hyper lets a server set them: MAX_CONCURRENT_STREAMS (the default of
/// [`Options::max_concurrent_streams`]), INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE,
/// MAX_HEADER_LIST_SIZE, and the connection window its first WINDOW_UPDATE (26148865) raises
/// from 65535 to 25 MiB. HEADER_TABLE_SIZE 4096 is the protocol's default, which hyper keeps.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
const H2_INITIAL_WINDOW: u32 = 262_144;
const H2_MAX_FRAME: u32 = 262_144;
const H2_MAX_HEADER_LIST: u32 = 1_048_896;
const H2_CONNECTION_WINDOW: u32 = 65_535 + 26_148_865;

/// A change on its way to the watches: serialized once, however many watches send it (as the
/// API server's watch cache caches an event's encoding).
struct Dispatched {
    e: Event,
    line: std::sync::OnceLock<Bytes>,
}

impl Dispatched {
    fn line(&self) -> Bytes {
        self.line
            .get_or_init(|| line(self.e.kind, &self.e.object))
            .clone()
    }
}

/// The field a collection's watches are indexed by, as the API server's watch cache indexes
/// them ("triggers"): pods by `spec.nodeName`, so a kubelet's watch is woken by its own
/// node's pods only.
fn trigger_field(coll: &str) -> Option<&'static str> {
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
struct Feed {
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

    fn send(&self, e: Event) {
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
    fn subscribe(&self, coll: &str, trigger: Option<&str>) -> broadcast::Receiver<Arc<Dispatched>> {
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

pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    resources: Mutex<Vec<Resource>>,
    events: Feed,
    calls: Mutex<BTreeMap<String, u64>>,
    /// The next n mutating calls are answered with this status (as API Priority and Fairness
    /// answers 429).
    reject: Mutex<(u64, u16)>,
    delays: Mutex<BTreeMap<String, Duration>>,
    /// Container logs by (namespace, pod), as the kubelet would serve them (`pods/NAME/log`).
    logs: Mutex<BTreeMap<(String, String), String>>,
    /// Where a pod's port is reachable, by (namespace, pod, port) (`pods/NAME/portforward`).
    pub(crate) forwards: Mutex<BTreeMap<(String, String, u16), SocketAddr>>,
    /// The bearer token every request must carry, once one is required (401 otherwise).
    token: Mutex<Option<String>>,
    /// "verb plural" pairs the caller may not do (403, as RBAC answers).
    forbidden: Mutex<std::collections::BTreeSet<(String, String)>>,
    /// Bumped to end every open watch.
    watch_gen: tokio::sync::watch::Sender<u64>,
    opts: Options,
    addr: SocketAddr,
}

/// A running fake API server; stops when dropped.
pub struct FakeApi {
    /// Where it listens (127.0.0.1, an ephemeral port).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn core(version: &str, plural: &str, kind: &str, namespaced: bool) -> Resource {
    Resource {
        group: String::new(),
        version: version.into(),
        plural: plural.into(),
        kind: kind.into(),
        namespaced,
    }
}

/// The built-in resources every fake serves.
pub fn builtins() -> Vec<Resource> {
    vec![
        core("v1", "namespaces", "Namespace", false),
        core("v1", "configmaps", "ConfigMap", true),
        core("v1", "secrets", "Secret", true),
        core("v1", "pods", "Pod", true),
        core("v1", "nodes", "Node", false),
        core("v1", "events", "Event", true),
        core("v1", "services", "Service", true),
        Resource {
            group: "discovery.k8s.io".into(),
            version: "v1".into(),
            plural: "endpointslices".into(),
            kind: "EndpointSlice".into(),
            namespaced: true,
        },
        core("v1", "serviceaccounts", "ServiceAccount", true),
        Resource {
            group: "apps".into(),
            version: "v1".into(),
            plural: "deployments".into(),
            kind: "Deployment".into(),
            namespaced: true,
        },
        Resource {
            group: "coordination.k8s.io".into(),
            version: "v1".into(),
            plural: "leases".into(),
            kind: "Lease".into(),
            namespaced: true,
        },
    ]
}

fn namespaces() -> Resource {
    core("v1", "namespaces", "Namespace", false)
}

impl FakeApi {
    /// Start with the built-in resources and the `default` namespace.
    pub fn start() -> FakeApi {
        FakeApi::start_with(Options::default())
    }

    /// Start with options.
    pub fn start_with(opts: Options) -> FakeApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let mut store = Store::new(opts.log_cap);
        for ns in ["default", "kube-system", "kube-node-lease"] {
            store
                .create(&namespaces(), "", json!({"metadata": {"name": ns}}))
                .expect("fresh store");
        }
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            resources: Mutex::new(builtins()),
            events: Feed::default(),
            calls: Mutex::new(BTreeMap::new()),
            reject: Mutex::new((0, 429)),
            delays: Mutex::new(BTreeMap::new()),
            logs: Mutex::new(BTreeMap::new()),
            forwards: Mutex::new(BTreeMap::new()),
            token: Mutex::new(None),
            forbidden: Mutex::new(Default::default()),
            watch_gen: tokio::sync::watch::channel(0).0,
            opts,
            addr,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("kubefake".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept_loop(listener, sh) => {}
                    }
                });
            })
            .expect("spawn kubefake");
        FakeApi {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serve another resource type (a custom resource, say).
    pub fn register(&self, r: Resource) {
        self.shared.resources.lock().expect("lock").push(r);
    }

    /// Calls served so far, keyed "verb plural" ("create configmaps", "update pods/status"),
    /// and for namespaced paths also "verb plural in namespace".
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.shared.calls.lock().expect("lock").clone()
    }

    /// Calls of one key so far.
    pub fn count(&self, key: &str) -> u64 {
        self.calls().get(key).copied().unwrap_or(0)
    }

    /// Answer the next `n` mutating calls with `status` (429: as API Priority and Fairness does;
    /// 403: as the authorizer does when RBAC does not allow the call).
    pub fn reject_next(&self, n: u64, status: u16) {
        *self.shared.reject.lock().expect("lock") = (n, status);
    }

    /// Delay every call of a verb ("create", "list", ...) by `d`.
    pub fn delay(&self, verb: &str, d: Duration) {
        self.shared
            .delays
            .lock()
            .expect("lock")
            .insert(verb.into(), d);
    }

    /// From now on, answer every request that does not carry `Authorization: Bearer TOKEN`
    /// with 401 Unauthorized, as the API server's authentication does (before any routing).
    pub fn require_token(&self, token: &str) {
        *self.shared.token.lock().expect("lock") = Some(token.to_string());
    }

    /// From now on, answer `verb` ("get", "list", "patch", ...) on `plural` with 403
    /// Forbidden and RBAC's message, as for a user without that permission.
    pub fn forbid(&self, verb: &str, plural: &str) {
        self.shared
            .forbidden
            .lock()
            .expect("lock")
            .insert((verb.to_string(), plural.to_string()));
    }

    /// Set what `GET pods/NAME/log` answers for a pod (playing the kubelet's part).
    pub fn set_log(&self, ns: &str, pod: &str, text: &str) {
        self.shared
            .logs
            .lock()
            .expect("lock")
            .insert((ns.into(), pod.into()), text.into());
    }

    /// Say where a pod's port is reachable, for `pods/NAME/portforward` (playing the kubelet's
    /// part, which connects to the port inside the pod's network namespace).
    pub fn forward(&self, ns: &str, pod: &str, port: u16, to: SocketAddr) {
        self.shared
            .forwards
            .lock()
            .expect("lock")
            .insert((ns.into(), pod.into(), port), to);
    }

    /// Lose all watch history, as an etcd compaction past every watcher does: open watches get
    /// an ERROR event with 410 Gone and end, and resuming from any earlier version gets 410 too,
    /// so watchers must list again.
    pub fn expire_history(&self) {
        self.shared.store.lock().expect("lock").compact();
        self.shared.watch_gen.send_modify(|g| *g += 1);
    }

    /// The objects of a resource (by plural), everywhere.
    pub fn objects(&self, plural: &str) -> Vec<Value> {
        let Some(r) = self.find_plural(plural) else {
            return Vec::new();
        };
        self.shared
            .store
            .lock()
            .expect("lock")
            .list(&r, None, &Selectors::default())
    }

    /// Create an object directly (test set-up).
    pub fn create(&self, plural: &str, ns: &str, obj: Value) -> Result<Value, ApiError> {
        let r = self
            .find_plural(plural)
            .ok_or_else(|| ApiError::NotFound(plural.into()))?;
        let mut st = self.shared.store.lock().expect("lock");
        let (o, e) = st.create(&r, ns, obj)?;
        self.shared.events.send(e);
        Ok(o)
    }

    /// Delete an object directly (playing a controller's part).
    pub fn delete(&self, plural: &str, ns: &str, name: &str) -> Result<Value, ApiError> {
        let r = self
            .find_plural(plural)
            .ok_or_else(|| ApiError::NotFound(plural.into()))?;
        let mut st = self.shared.store.lock().expect("lock");
        let (o, e) = st.delete(&r, ns, name)?;
        self.shared.events.send(e);
        Ok(o)
    }

    /// Replace an object's status directly (playing a controller's or the kubelet's part).
    pub fn set_status(
        &self,
        plural: &str,
        ns: &str,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        let r = self
            .find_plural(plural)
            .ok_or_else(|| ApiError::NotFound(plural.into()))?;
        let mut st = self.shared.store.lock().expect("lock");
        let (o, e) = st.update(&r, ns, name, json!({ "status": status }), false, true)?;
        self.shared.events.send(e);
        Ok(o)
    }

    fn find_plural(&self, plural: &str) -> Option<Resource> {
        self.shared
            .resources
            .lock()
            .expect("lock")
            .iter()
            .find(|r| r.plural == plural)
            .cloned()
    }

    /// Write a kubeconfig for this server into `dir`; returns its path.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        write_kubeconfig(
            dir,
            &format!("kubeconfig-{}", self.addr.port()),
            &self.url(),
        )
    }
}

/// Write a kubeconfig named `file` in `dir` for an API server at `server` (no credentials,
/// namespace `default`); returns its path. Tests also point one at a port nothing listens on.
pub fn write_kubeconfig(dir: &std::path::Path, file: &str, server: &str) -> std::path::PathBuf {
    write_kubeconfig_with_token(dir, file, server, None)
}

/// [`write_kubeconfig`] whose user sends `token` as a bearer token (see
/// [`FakeApi::require_token`]).
pub fn write_kubeconfig_with_token(
    dir: &std::path::Path,
    file: &str,
    server: &str,
    token: Option<&str>,
) -> std::path::PathBuf {
    let path = dir.join(file);
    let user = match token {
        Some(t) => format!("\n    token: {t}\n"),
        None => " {}\n".to_string(),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
         current-context: fake\nusers:\n- name: fake\n  user:{user}"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((io, _)) = listener.accept().await else {
            continue;
        };
        let _ = io.set_nodelay(true);
        let sh = shared.clone();
        let streams = shared.opts.max_concurrent_streams;
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let sh = sh.clone();
                async move { Ok::<_, Infallible>(handle(sh, req).await) }
            });
            let mut b =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            b.http2()
                .max_concurrent_streams(streams)
                .initial_stream_window_size(H2_INITIAL_WINDOW)
                .initial_connection_window_size(H2_CONNECTION_WINDOW)
                .max_frame_size(H2_MAX_FRAME)
                .max_header_list_size(H2_MAX_HEADER_LIST);
            let _ = b
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), svc)
                .await;
        });
    }
}

/// A whole JSON document, or a watch's stream of lines.
pub enum Body {
    /// One buffer.
    Full(Option<Bytes>),
    /// Newline-delimited JSON events until the sender is dropped.
    Stream(mpsc::Receiver<Bytes>),
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
        }
    }
}

fn reply(code: u16, v: &Value) -> Response<Body> {
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

pub(crate) fn status(code: u16, reason: &str, msg: &str) -> Response<Body> {
    reply(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": msg, "reason": reason, "code": code}),
    )
}

/// RBAC's refusal, worded and shaped as the API server words it.
fn forbidden(verb: &str, t: &Target, sub: &str) -> Response<Body> {
    let group = t.r.group.as_str();
    let what = match &t.name {
        Some(n) => format!("{}{sub} \"{n}\"", t.r.plural),
        None => format!("{}{sub}", t.r.plural),
    };
    let scope = match &t.ns {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let msg = format!(
        "{what} is forbidden: User \"system:anonymous\" cannot {verb} resource \"{}{sub}\" in API group \"{group}\" {scope}",
        t.r.plural
    );
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": msg, "reason": "Forbidden", "details": {"kind": t.r.plural}, "code": 403});
    if let Some(n) = &t.name {
        body["details"]["name"] = json!(n);
    }
    reply(403, &body)
}

pub(crate) fn error(e: &ApiError) -> Response<Body> {
    reply(e.code(), &e.status())
}

/// Where a request goes.
pub(crate) struct Target {
    pub(crate) r: Resource,
    pub(crate) ns: Option<String>,
    pub(crate) name: Option<String>,
    status: bool,
    /// `pods/NAME/binding`.
    binding: bool,
    /// `pods/NAME/log`.
    log: bool,
    /// `pods/NAME/portforward`.
    portforward: bool,
    /// `serviceaccounts/NAME/token` (a TokenRequest).
    token: bool,
}

fn find(shared: &Shared, group: &str, version: &str, plural: &str) -> Option<Resource> {
    shared
        .resources
        .lock()
        .expect("lock")
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
        .cloned()
}

fn resource_list(shared: &Shared, group: &str, version: &str) -> Option<Value> {
    let rs: Vec<Resource> = shared
        .resources
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .cloned()
        .collect();
    if rs.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for r in &rs {
        out.push(json!({"name": r.plural, "singularName": r.kind.to_lowercase(),
            "namespaced": r.namespaced, "kind": r.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]}));
        out.push(
            json!({"name": format!("{}/status", r.plural), "singularName": "",
            "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}),
        );
    }
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": rs[0].api_version(), "resources": out}))
}

fn groups(shared: &Shared) -> Vec<(String, Vec<String>)> {
    let mut g: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in shared.resources.lock().expect("lock").iter() {
        if !r.group.is_empty() {
            let vs = g.entry(r.group.clone()).or_default();
            if !vs.contains(&r.version) {
                vs.push(r.version.clone());
            }
        }
    }
    g.into_iter().collect()
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": vs,
           "preferredVersion": vs[0]})
}

/// Discovery documents, or the resource a path names.
/// What a path names; the Err side is a finished response (discovery documents, 404s).
enum Routed {
    Resource(Target),
    Done(Response<Body>),
}

fn route(shared: &Shared, path: &str) -> Routed {
    match route_inner(shared, path) {
        Ok(t) => Routed::Resource(t),
        Err(r) => Routed::Done(*r),
    }
}

fn route_inner(shared: &Shared, path: &str) -> Result<Target, Box<Response<Body>>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let not_found = || {
        Box::new(status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ))
    };
    let ok = |v: &Value| Box::new(reply(200, v));
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => {
            return Err(ok(
                &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-scaletest-fake",
                        "platform": "linux/amd64"}),
            ))
        }
        ["api"] => {
            return Err(ok(&json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                    "serverAddress": shared.addr.to_string()}]})))
        }
        ["apis"] => {
            let gs: Vec<Value> = groups(shared)
                .iter()
                .map(|(n, vs)| group_doc(n, vs))
                .collect();
            return Err(ok(
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs}),
            ));
        }
        ["apis", g] => {
            return Err(match groups(shared).iter().find(|(n, _)| n == g) {
                Some((n, vs)) => ok(&group_doc(n, vs)),
                None => not_found(),
            })
        }
        ["api", "v1"] => {
            return Err(resource_list(shared, "", "v1").map_or_else(not_found, |d| ok(&d)))
        }
        ["apis", g, v] => {
            return Err(resource_list(shared, g, v).map_or_else(not_found, |d| ok(&d)))
        }
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found()),
    };
    let (r, ns, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !ns.is_empty() => {
            match find(shared, group, version, plural) {
                Some(r) if r.namespaced => (r, Some(ns.to_string()), tail),
                _ => return Err(not_found()),
            }
        }
        [plural, tail @ ..] => match find(shared, group, version, plural) {
            Some(r) if !r.namespaced || tail.is_empty() => (r, None, tail),
            _ => return Err(not_found()),
        },
        [] => return Err(not_found()),
    };
    let pod = r.plural == "pods" && r.group.is_empty();
    let sa = r.plural == "serviceaccounts" && r.group.is_empty();
    let token = matches!(tail, [_, "token"]) && sa;
    let (name, status, binding, log, portforward) = match tail {
        [] => (None, false, false, false, false),
        [name] => (Some(name.to_string()), false, false, false, false),
        [name, "status"] => (Some(name.to_string()), true, false, false, false),
        [name, "binding"] if pod => (Some(name.to_string()), false, true, false, false),
        [name, "log"] if pod => (Some(name.to_string()), false, false, true, false),
        [name, "portforward"] if pod => (Some(name.to_string()), false, false, false, true),
        [name, "token"] if sa => (Some(name.to_string()), false, false, false, false),
        _ => return Err(not_found()),
    };
    if name.as_deref() == Some("") {
        return Err(not_found());
    }
    Ok(Target {
        r,
        ns,
        name,
        status,
        binding,
        log,
        portforward,
        token,
    })
}

fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

const MAX_BODY: usize = 3 << 20;

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let want = shared.token.lock().expect("lock").clone();
    if let Some(token) = want {
        let got = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if got != Some(format!("Bearer {token}").as_str()) {
            return status(401, "Unauthorized", "Unauthorized");
        }
    }
    let t = match route(&shared, req.uri().path()) {
        Routed::Resource(t) => t,
        Routed::Done(resp) => return resp,
    };
    let q = query(&req);
    if t.log {
        return pod_log(&shared, &t, &q, req.method()).await;
    }
    if t.portforward {
        return crate::portforward::upgrade(&shared, &t, &q, req);
    }
    let is_watch = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let sub_only = t.binding || t.token;
    let verb = match (req.method(), t.name.is_some()) {
        (&Method::POST, true) if sub_only => "create",
        (&Method::GET, true) if !sub_only => "get",
        (&Method::GET, false) if is_watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) if !sub_only => "update",
        (&Method::PATCH, true) if !sub_only => "patch",
        (&Method::DELETE, true) if !sub_only => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => {
            return status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method",
            )
        }
    };
    let sub = if t.status {
        "/status"
    } else if t.binding {
        "/binding"
    } else if t.token {
        "/token"
    } else {
        ""
    };
    {
        let mut calls = shared.calls.lock().expect("lock");
        *calls
            .entry(format!("{verb} {}{sub}", t.r.plural))
            .or_default() += 1;
        if let Some(ns) = &t.ns {
            *calls
                .entry(format!("{verb} {}{sub} in {ns}", t.r.plural))
                .or_default() += 1;
        }
    }
    if shared
        .forbidden
        .lock()
        .expect("lock")
        .contains(&(verb.to_string(), t.r.plural.clone()))
    {
        return forbidden(verb, &t, sub);
    }
    let delay = shared.delays.lock().expect("lock").get(verb).copied();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    ) {
        let mut rej = shared.reject.lock().expect("lock");
        if rej.0 > 0 {
            rej.0 -= 1;
            let code = rej.1;
            drop(rej);
            let mut resp = match code {
                429 => status(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                ),
                // As the authorizer words it when RBAC allows no rule for the request.
                403 => {
                    let scope = match &t.ns {
                        Some(ns) => format!("in the namespace \"{ns}\""),
                        None => "at the cluster scope".into(),
                    };
                    status(
                        403,
                        "Forbidden",
                        &format!(
                            "{}{sub} is forbidden: User \"scaletest\" cannot {verb} resource \"{}{sub}\" in API group \"{}\" {scope}",
                            t.r.plural, t.r.plural, t.r.group
                        ),
                    )
                }
                _ => status(code, "InternalError", "injected failure"),
            };
            if code == 429 {
                resp.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    hyper::header::HeaderValue::from_static("1"),
                );
            }
            return resp;
        }
    }
    let sel = match Selectors::parse(
        q.get("labelSelector").map(String::as_str),
        q.get("fieldSelector").map(String::as_str),
    ) {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let body = if matches!(verb, "create" | "update" | "patch" | "delete") {
        use http_body_util::BodyExt;
        let bytes = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return status(
                    413,
                    "RequestEntityTooLarge",
                    "request entity too large (limit 3 MiB)",
                )
            }
        };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => v,
            // DELETE may come without DeleteOptions.
            Err(_) if verb == "delete" && bytes.iter().all(u8::is_ascii_whitespace) => Value::Null,
            // An apply patch may be YAML (JSON is YAML too, and what kube-rs sends).
            Err(_) if content_type == "application/apply-patch+yaml" => {
                match std::str::from_utf8(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_saphyr::from_str::<Value>(t).map_err(|e| e.to_string()))
                {
                    Ok(v) => v,
                    Err(e) => return status(400, "BadRequest", &format!("invalid YAML body: {e}")),
                }
            }
            Err(e) => return status(400, "BadRequest", &format!("invalid JSON body: {e}")),
        }
    } else {
        Value::Null
    };
    if t.token {
        return token_request(&shared, &t, body);
    }
    if matches!(verb, "create" | "update") {
        // pods/NAME/binding takes a v1 Binding, not a Pod.
        let expected = if t.binding {
            Resource {
                kind: "Binding".into(),
                ..t.r.clone()
            }
        } else {
            t.r.clone()
        };
        if let Err(refused) = check_type(&expected, &body) {
            return *refused;
        }
    }
    let ns = t.ns.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    match verb {
        "watch" => watch(&shared, &t, &q, sel),
        "list" => list(&shared, &t, &q, &sel),
        "get" => match shared.store.lock().expect("lock").get(&t.r, &ns, &name) {
            Ok(o) => reply(200, &o),
            Err(e) => error(&e),
        },
        "create" if t.binding => {
            // A Binding names its pod and the node; the pod's name in the path wins only if
            // they agree, as the API server checks.
            let target = body.pointer("/target/name").and_then(Value::as_str);
            let kind_ok = body
                .get("kind")
                .and_then(Value::as_str)
                .is_none_or(|k| k == "Binding");
            let named = body.pointer("/metadata/name").and_then(Value::as_str);
            let Some(node) = target.filter(|n| !n.is_empty()) else {
                return status(400, "BadRequest", "Binding: target.name is required");
            };
            if !kind_ok || named.is_some_and(|n| n != name) {
                return status(400, "BadRequest", "expected a Binding for this pod");
            }
            let mut st = shared.store.lock().expect("lock");
            match st.bind(&t.r, &ns, &name, node) {
                Ok((_, e)) => {
                    shared.events.send(e);
                    reply(
                        201,
                        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                       "status": "Success", "code": 201}),
                    )
                }
                Err(e) => error(&e),
            }
        }
        "create" => {
            if t.r.namespaced && t.ns.is_none() {
                return status(
                    405,
                    "MethodNotAllowed",
                    "create needs a namespace in the path",
                );
            }
            if let Some(bns) = body.pointer("/metadata/namespace").and_then(Value::as_str) {
                if t.r.namespaced && bns != ns {
                    return status(
                        400,
                        "BadRequest",
                        "the namespace of the object does not match the namespace on the request",
                    );
                }
            }
            let mut st = shared.store.lock().expect("lock");
            if t.r.namespaced && st.get(&namespaces(), "", &ns).is_err() {
                return status(404, "NotFound", &format!("namespaces \"{ns}\" not found"));
            }
            match st.create(&t.r, &ns, body) {
                Ok((o, e)) => {
                    shared.events.send(e);
                    reply(201, &o)
                }
                Err(e) => error(&e),
            }
        }
        "update" | "patch" => {
            let patch = verb == "patch";
            if patch {
                match content_type.as_str() {
                    "application/merge-patch+json"
                    | "application/strategic-merge-patch+json"
                    | "application/apply-patch+yaml" => {}
                    other => {
                        return status(
                            415,
                            "UnsupportedMediaType",
                            &format!("the fake API does not support patches of type {other:?}"),
                        )
                    }
                }
            }
            if content_type == "application/apply-patch+yaml" && !t.status {
                return server_side_apply(&shared, &t, &q, &ns, &name, body);
            }
            let mut st = shared.store.lock().expect("lock");
            let strategic = content_type == "application/strategic-merge-patch+json";
            match st.update_as(&t.r, &ns, &name, body, patch, t.status, strategic) {
                Ok((o, e)) => {
                    shared.events.send(e);
                    reply(200, &o)
                }
                Err(e) => error(&e),
            }
        }
        "delete" if t.r.plural == "pods" && t.r.group.is_empty() => {
            let grace = q
                .get("gracePeriodSeconds")
                .and_then(|g| g.parse::<i64>().ok())
                .or_else(|| body.get("gracePeriodSeconds").and_then(Value::as_i64));
            let uid = body.pointer("/preconditions/uid").and_then(Value::as_str);
            if grace == Some(0) {
                // In the request log as an audit log has it: a finished pod goes at once
                // whatever grace is asked, so only the request shows a kubelet's grace 0.
                *shared
                    .calls
                    .lock()
                    .expect("lock")
                    .entry("delete pods gracePeriodSeconds=0".into())
                    .or_default() += 1;
            }
            let mut st = shared.store.lock().expect("lock");
            match st.delete_pod(&t.r, &ns, &name, grace, uid) {
                Ok((o, e, _gone)) => {
                    if let Some(e) = e {
                        shared.events.send(e);
                    }
                    reply(200, &o)
                }
                Err(e) => error(&e),
            }
        }
        "delete" => {
            let mut st = shared.store.lock().expect("lock");
            match st.delete(&t.r, &ns, &name) {
                Ok((o, e)) => {
                    shared.events.send(e);
                    if t.r.plural == "namespaces" && t.r.group.is_empty() {
                        cascade(&shared, &mut st, &name);
                    }
                    reply(200, &o)
                }
                Err(e) => error(&e),
            }
        }
        _ => {
            // deletecollection
            let mut st = shared.store.lock().expect("lock");
            let victims = st.list(&t.r, t.ns.as_deref(), &sel);
            let mut items = Vec::new();
            for v in victims {
                let vns = v
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let vname = v
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if let Ok((o, e)) = st.delete(&t.r, &vns, &vname) {
                    shared.events.send(e);
                    items.push(o);
                }
            }
            reply(
                200,
                &json!({"kind": format!("{}List", t.r.kind), "apiVersion": t.r.api_version(),
                        "metadata": {"resourceVersion": st.rv().to_string()}, "items": items}),
            )
        }
    }
}

/// A body's apiVersion and kind against the resource of the path, as the API server checks
/// them when it decodes a create or update: either may be left out (the path's are assumed);
/// another apiVersion is a 400 BadRequest; another kind is a 400 for a built-in type (it
/// cannot be converted) and a 422 Invalid for a custom resource (its validation says so).
fn check_type(r: &Resource, body: &Value) -> Result<(), Box<Response<Body>>> {
    let expected = r.api_version();
    let field = |f: &str| {
        body.get(f)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let api_version = field("apiVersion").unwrap_or(&expected);
    if api_version != expected {
        return Err(Box::new(status(
            400,
            "BadRequest",
            &format!(
                "the API version in the data ({api_version}) does not match the expected API \
                 version ({expected})"
            ),
        )));
    }
    match field("kind") {
        Some(kind) if kind != r.kind => {
            let builtin = builtins()
                .iter()
                .any(|b| (&b.group, &b.version, &b.plural) == (&r.group, &r.version, &r.plural));
            Err(Box::new(if builtin {
                status(
                    400,
                    "BadRequest",
                    &format!(
                        "{kind} in version \"{}\" cannot be handled as a {}: the kind in the data \
                         does not match the resource",
                        r.version, r.kind
                    ),
                )
            } else {
                let name = body
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                status(
                    422,
                    "Invalid",
                    &format!(
                        "{kind}.{} \"{name}\" is invalid: kind: Invalid value: \"{kind}\": must be {}",
                        r.group, r.kind
                    ),
                )
            }))
        }
        _ => Ok(()),
    }
}

/// `POST serviceaccounts/NAME/token`: a TokenRequest's answer in the shape of
/// kube-apiserver v1.28.7's (`authentication.k8s.io/v1` TokenRequest, 201: the request's spec
/// with the server's defaults, `status.token` and `status.expirationTimestamp`); 404 when the
/// service account does not exist, as the real server answers. The token is not a signed JWT
/// and the bound object is not checked.
fn token_request(shared: &Shared, t: &Target, body: Value) -> Response<Body> {
    let ns = t.ns.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    if let Err(e) = shared.store.lock().expect("lock").get(&t.r, &ns, &name) {
        return error(&e);
    }
    if body
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k != "TokenRequest")
    {
        return status(400, "BadRequest", "expected a TokenRequest");
    }
    let mut spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let seconds = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    spec["expirationSeconds"] = json!(seconds);
    if spec
        .get("audiences")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty())
    {
        // The server's --api-audiences (its --service-account-issuer when unset).
        spec["audiences"] = json!(["https://kubernetes.default.svc.cluster.local"]);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expires = crate::store::rfc3339(now + seconds.max(0) as u64);
    let token = format!("kubefake.{ns}.{name}.{now}");
    reply(
        201,
        &json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": expires}}),
    )
}

/// `GET pods/NAME/log`, as kube-apiserver v1.28.7 serves it (`pod.LogLocation`): the pod
/// (404), its container (`container`, or its only one; 400 otherwise), then the kubelet's
/// `/containerLogs/NS/POD/CONTAINER` at the node's address, chosen in the server's default
/// `--kubelet-preferred-address-types` order (Hostname, InternalDNS, InternalIP, ExternalDNS,
/// ExternalIP), on `daemonEndpoints.kubeletEndpoint.Port` (10250 when unset), over HTTPS
/// without verifying the kubelet's certificate (as with `--kubelet-certificate-authority`
/// unset), the query passed on. The kubelet's answer is relayed: 2xx as text/plain (read
/// whole: `follow` does not stream), 404 as NotFound, 400 as BadRequest, other codes as
/// InternalError, a failed dial as a 500. An unbound pod has an empty log. A pod whose log
/// the fake's own controllers set ([`FakeApi::set_log`], playing a kubelet of their own) is
/// answered from that, `tailLines` honoured.
async fn pod_log(
    shared: &Shared,
    t: &Target,
    q: &BTreeMap<String, String>,
    method: &Method,
) -> Response<Body> {
    if method != Method::GET {
        return status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method",
        );
    }
    let ns = t.ns.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let pod = match shared.store.lock().expect("lock").get(&t.r, &ns, &name) {
        Ok(p) => p,
        Err(e) => return error(&e),
    };
    let set = shared
        .logs
        .lock()
        .expect("lock")
        .get(&(ns.clone(), name.clone()))
        .cloned();
    if let Some(text) = set {
        return plain(200, tail(&text, q));
    }
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let container = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) if containers.contains(c) => c.clone(),
        Some(c) => {
            return status(
                400,
                "BadRequest",
                &format!("container {c} is not valid for pod {name}"),
            )
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return status(
                400,
                "BadRequest",
                &format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                ),
            )
        }
    };
    let Some(node) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
    else {
        return plain(200, String::new());
    };
    let nodes = core("v1", "nodes", "Node", false);
    let node = match shared.store.lock().expect("lock").get(&nodes, "", &node) {
        Ok(n) => n,
        Err(e) => return error(&e),
    };
    let Some(host) = kubelet_address(&node) else {
        return status(
            500,
            "InternalError",
            &format!(
                "Internal error occurred: no preferred addresses found; known addresses: {}",
                node.pointer("/status/addresses")
                    .cloned()
                    .unwrap_or(json!([]))
            ),
        );
    };
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| (1..=65535).contains(p))
        .unwrap_or(10250) as u16;
    let query = {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in q.iter().filter(|(k, _)| k.as_str() != "container") {
            query.append_pair(k, v);
        }
        query.finish()
    };
    let path = format!(
        "/containerLogs/{ns}/{name}/{container}{}{query}",
        if query.is_empty() { "" } else { "?" }
    );
    match kubelet_get(&host, port, &path).await {
        Ok((code, body)) if (200..300).contains(&code) => plain(200, body),
        Ok((404, body)) => status(404, "NotFound", body.trim_end()),
        Ok((400, body)) => status(400, "BadRequest", body.trim_end()),
        Ok((code, body)) => status(
            500,
            "InternalError",
            &format!("the kubelet answered {code}: {}", body.trim_end()),
        ),
        Err(e) => status(
            500,
            "InternalError",
            &format!("Get \"https://{host}:{port}{path}\": {e}"),
        ),
    }
}

/// The address kube-apiserver dials for a node's kubelet with its default
/// `--kubelet-preferred-address-types`: the first address of the first type present.
pub(crate) fn kubelet_address(node: &Value) -> Option<String> {
    let addrs = node.pointer("/status/addresses")?.as_array()?;
    [
        "Hostname",
        "InternalDNS",
        "InternalIP",
        "ExternalDNS",
        "ExternalIP",
    ]
    .iter()
    .find_map(|ty| {
        addrs
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(ty))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .map(str::to_string)
    })
}

/// One GET to a kubelet over HTTPS, its certificate not verified, as the API server makes it
/// (also for tests that ask a kubelet endpoint directly); (status, body).
pub async fn kubelet_get(host: &str, port: u16, path: &str) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let opts = st_http::tls::TlsOptions {
        insecure: true,
        ca_file: None,
    };
    let tls =
        st_http::tls::client_config(&opts, st_http::Protocol::Http1).map_err(|e| e.to_string())?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
        let name =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let code = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((code, String::from_utf8_lossy(&body).into_owned()))
    };
    // The API server's kubelet client timeout (`HTTPTimeout`, 5 s) for the dial.
    tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "i/o timeout".to_string())?
}

/// The last `tailLines` lines of `text`.
fn tail(text: &str, q: &BTreeMap<String, String>) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let keep = q
        .get("tailLines")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(lines.len())
        .min(lines.len());
    let mut out = lines[lines.len() - keep..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

fn plain(code: u16, text: String) -> Response<Body> {
    let mut r = Response::new(Body::Full(Some(Bytes::from(text))));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    r
}

/// `PATCH` with `application/apply-patch+yaml`: checked as the API server checks it (a field
/// manager, the object's apiVersion, kind and name), then [`Store::apply`]; 201 when it
/// created the object, 200 otherwise (also for a no-op, which writes nothing).
fn server_side_apply(
    shared: &Shared,
    t: &Target,
    q: &BTreeMap<String, String>,
    ns: &str,
    name: &str,
    body: Value,
) -> Response<Body> {
    let Some(manager) = q.get("fieldManager").filter(|m| !m.is_empty()) else {
        return status(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        );
    };
    let force = q.get("force").map(String::as_str) == Some("true");
    let field = |p: &str| body.pointer(p).and_then(Value::as_str).unwrap_or("");
    if field("/apiVersion") != t.r.api_version() || field("/kind") != t.r.kind {
        return status(
            400,
            "BadRequest",
            &format!(
                "the apply patch is for {} {}, not {} {}",
                field("/apiVersion"),
                field("/kind"),
                t.r.api_version(),
                t.r.kind
            ),
        );
    }
    if !field("/metadata/name").is_empty() && field("/metadata/name") != name {
        return status(
            400,
            "BadRequest",
            &format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                field("/metadata/name")
            ),
        );
    }
    let mut st = shared.store.lock().expect("lock");
    if t.r.namespaced && st.get(&namespaces(), "", ns).is_err() {
        return status(404, "NotFound", &format!("namespaces \"{ns}\" not found"));
    }
    let mut config = body;
    config["metadata"]["name"] = json!(name);
    let existed = st.get(&t.r, ns, name).is_ok();
    match st.apply(&t.r, ns, name, &config, manager, force) {
        Ok((o, e)) => {
            if let Some(e) = e {
                shared.events.send(e);
            }
            reply(if existed { 200 } else { 201 }, &o)
        }
        Err(e) => error(&e),
    }
}

/// Deleting a namespace deletes what is in it (at once; a real server does it in the background).
fn cascade(shared: &Shared, st: &mut Store, ns: &str) {
    let rs: Vec<Resource> = shared
        .resources
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r.namespaced)
        .cloned()
        .collect();
    for r in rs {
        for (ons, name) in st.keys(&r) {
            if ons == ns {
                if let Ok((_, e)) = st.delete(&r, &ons, &name) {
                    shared.events.send(e);
                }
            }
        }
    }
}

fn list(
    shared: &Shared,
    t: &Target,
    q: &BTreeMap<String, String>,
    sel: &Selectors,
) -> Response<Body> {
    let st = shared.store.lock().expect("lock");
    let all = st.list(&t.r, t.ns.as_deref(), sel);
    // Pages: the continue token is the list's version and the last key handed out.
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|&l| l > 0);
    let (rv, after) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => match c.split_once('|') {
            Some((rv, key)) => (rv.to_string(), Some(key.to_string())),
            None => return status(400, "BadRequest", "invalid continue token"),
        },
        None => (st.rv().to_string(), None),
    };
    drop(st);
    let key = |o: &Value| {
        format!(
            "{}/{}",
            o.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(""),
            o.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
        )
    };
    let mut items: Vec<Value> = all
        .into_iter()
        .filter(|o| after.as_ref().is_none_or(|a| key(o).as_str() > a.as_str()))
        .collect();
    let mut meta = json!({"resourceVersion": rv});
    if let Some(l) = limit {
        if items.len() > l {
            items.truncate(l);
            meta["continue"] = json!(format!("{rv}|{}", key(&items[l - 1])));
            meta["remainingItemCount"] = json!(0);
        }
    }
    reply(
        200,
        &json!({"kind": format!("{}List", t.r.kind), "apiVersion": t.r.api_version(),
                "metadata": meta, "items": items}),
    )
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("json");
    v.push(b'\n');
    Bytes::from(v)
}

fn in_scope(t: &Target, sel: &Selectors, o: &Value) -> bool {
    let ns_ok = t.ns.as_ref().is_none_or(|want| {
        o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(want.as_str())
    });
    ns_ok && sel.matches(o)
}

fn watch(
    shared: &Arc<Shared>,
    t: &Target,
    q: &BTreeMap<String, String>,
    sel: Selectors,
) -> Response<Body> {
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
        let first: Result<Vec<Bytes>, ApiError> = if from.is_none() || send_initial {
            Ok(st
                .list(&t.r, t.ns.as_deref(), &sel)
                .iter()
                .map(|o| line("ADDED", o))
                .collect())
        } else {
            st.since(&coll, from.unwrap_or(0)).map(|evs| {
                evs.filter(|e| in_scope(t, &sel, &e.object))
                    .map(|e| line(e.kind, &e.object))
                    .collect()
            })
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
    let bookmark = {
        let (kind, api_version) = (t.r.kind.clone(), t.r.api_version());
        move |rv: u64, end: bool| {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            line(
                "BOOKMARK",
                &json!({"kind": kind, "apiVersion": api_version, "metadata": meta}),
            )
        }
    };
    let t = Target {
        r: t.r.clone(),
        ns: t.ns.clone(),
        name: None,
        status: false,
        binding: false,
        log: false,
        portforward: false,
        token: false,
    };
    let every = shared.opts.bookmark_every;
    let mut gen = shared.watch_gen.subscribe();
    tokio::spawn(async move {
        let mut events = events;
        for l in first {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        if send_initial && bookmarks && tx.send(bookmark(start_rv, true)).await.is_err() {
            return;
        }
        let mut seen = start_rv;
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(every);
        tick.reset();
        loop {
            tokio::select! {
                // Checked first: once history is gone, nothing more goes out on this stream.
                biased;
                _ = gen.changed() => {
                    let gone = ApiError::Gone("the watch's history was compacted".into());
                    let _ = tx.send(line("ERROR", &gone.status())).await;
                    return;
                }
                e = events.recv() => match e {
                    Ok(d) => {
                        seen = seen.max(d.e.rv);
                        if d.e.coll == coll && in_scope(&t, &sel, &d.e.object)
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
                _ = tick.tick(), if bookmarks => {
                    if tx.send(bookmark(seen, false)).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = tx.closed() => return,
            }
        }
    });
    resp
}
