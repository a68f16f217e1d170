//! The fake API server a test starts: [`FakeApi`] listens on loopback, serves the built-in
//! resources and any a test registers, and lets the test set up state and faults directly
//! (objects, statuses, 429s, delays, RBAC refusals, a required token, compaction, container
//! logs and port forwards playing the kubelet's part). Tests reach it through a kubeconfig it
//! writes, exactly as they would reach a real API server.

use crate::error::ApiError;
use crate::listen::accept_loop;
use crate::resource::{namespaces, Resource};
use crate::selectors::Selectors;
use crate::state::Shared;
use crate::store::Store;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use crate::listen::H2_MAX_CONCURRENT_STREAMS;
pub use crate::podlog::kubelet_get;

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
    /// Answer `GET /metrics` with 403, as the real server does for a user without RBAC's
    /// `get` on the nonResourceURL `/metrics`.
    pub forbid_metrics: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            bookmark_every: Duration::from_millis(500),
            log_cap: 100_000,
            max_concurrent_streams: H2_MAX_CONCURRENT_STREAMS,
            forbid_metrics: false,
        }
    }
}

/// A running fake API server; stops when dropped.
pub struct FakeApi {
    /// Where it listens (127.0.0.1, an ephemeral port).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
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
        let shared = Arc::new(Shared::new(
            store,
            opts.bookmark_every,
            addr,
            opts.forbid_metrics,
        ));
        let max_streams = opts.max_concurrent_streams;
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
                        _ = accept_loop(listener, sh, max_streams) => {}
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
        self.shared.register(r);
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
        self.shared.resource(|r| r.plural == plural)
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
