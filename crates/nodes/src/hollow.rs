//! The hollow kubelets and kube-proxies: registration, one heartbeat scheduler for every
//! node's lease and status loops, the pod lifecycle, the proxies' watches, and stopping.
//!
//! Per node there is state (a few hundred bytes) and, with `WatchMode::PerNode`, the watch
//! tasks a real kubelet and kube-proxy have; there is no client per node. Every lease renewal
//! and status heartbeat of every node comes from ONE scheduler task (a binary heap of due
//! times), which starts each call as a short task bounded by the in-flight limit; a node whose
//! previous heartbeat is still in flight skips a beat, as the kubelet's loops run serially.

use crate::client::Pool;
use crate::objects::{self, ObjectRef, PodPhase, LABEL_HOLLOW, LEASE_NS};
use crate::reflect::{self, Ev, Query};
use crate::startup::Startup;
use crate::traffic::{CallError, Traffic};
use crate::{Config, Error, WatchMode};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kapi::stats::Verb;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::Api;
use rand::Rng;
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch as signal;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Pod counts.
#[derive(Debug, Default)]
pub struct PodCounts {
    /// Admitted by a hollow kubelet.
    pub admitted: AtomicU64,
    /// Declared running.
    pub running: AtomicU64,
    /// Jobs' pods that succeeded.
    pub succeeded: AtomicU64,
    /// Rejected by admission (no room).
    pub rejected: AtomicU64,
    /// Deleted with grace 0 after their deletion timestamp.
    pub finalized: AtomicU64,
}

struct PodSlot {
    phase: Option<PodPhase>,
    task: Option<AbortHandle>,
    terminating: bool,
    /// The Secrets and ConfigMaps (in `ns`) this pod holds a reflector of.
    refs: Vec<ObjectRef>,
    ns: String,
    /// Name, containers and IP (for the kubelet endpoint's `/pods` and `containerLogs`).
    name: String,
    containers: Vec<(String, String)>,
    ip: String,
}

impl PodSlot {
    /// A pod this kubelet does not run (finished, rejected, or only being deleted).
    fn idle(terminating: bool) -> PodSlot {
        PodSlot {
            phase: None,
            task: None,
            terminating,
            refs: Vec::new(),
            ns: String::new(),
            name: String::new(),
            containers: Vec::new(),
            ip: String::new(),
        }
    }

    fn active(&self) -> bool {
        matches!(self.phase, Some(PodPhase::Pending | PodPhase::Running)) && !self.terminating
    }
}

/// A reflector of one Secret or ConfigMap, shared by the node's pods that name it.
struct ObjectWatch {
    pods: u32,
    task: AbortHandle,
}

#[derive(Default)]
struct NodeState {
    uid: String,
    lease: Option<Lease>,
    last_report: f64,
    pods: HashMap<String, PodSlot>,
    ips: u32,
    /// By (kind, namespace, name): the kubelet's watch-based Secret and ConfigMap managers.
    objects: HashMap<(&'static str, String, String), ObjectWatch>,
}

struct NodeSlot {
    name: String,
    st: Mutex<NodeState>,
    lease_busy: AtomicBool,
    status_busy: AtomicBool,
}

/// The running hollow nodes.
pub struct Hollow {
    pub(crate) cfg: Config,
    pub(crate) pool: Pool,
    pub(crate) traffic: Arc<Traffic>,
    nodes: Vec<NodeSlot>,
    by_name: HashMap<String, usize>,
    pub(crate) startup: Startup,
    pub(crate) pods: PodCounts,
    stop: signal::Receiver<bool>,
    /// The kubelet endpoint every node advertises, when there is one.
    endpoint: Option<objects::Endpoint>,
}

fn pod_key(p: &Pod) -> Option<(String, String, String)> {
    Some((
        p.metadata.uid.clone()?,
        p.metadata.namespace.clone()?,
        p.metadata.name.clone()?,
    ))
}

fn jitter(d: Duration, factor: f64) -> Duration {
    d.mul_f64(1.0 + rand::thread_rng().gen_range(0.0..factor.max(1e-9)))
}

impl Hollow {
    pub(crate) fn new(
        cfg: Config,
        pool: Pool,
        traffic: Arc<Traffic>,
        stop: signal::Receiver<bool>,
        endpoint: Option<objects::Endpoint>,
    ) -> Hollow {
        let nodes: Vec<NodeSlot> = (0..cfg.nodes)
            .map(|i| NodeSlot {
                name: cfg.node_name(i),
                st: Mutex::new(NodeState::default()),
                lease_busy: AtomicBool::new(false),
                status_busy: AtomicBool::new(false),
            })
            .collect();
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        Hollow {
            cfg,
            pool,
            traffic,
            nodes,
            by_name,
            startup: Startup::default(),
            pods: PodCounts::default(),
            stop,
            endpoint,
        }
    }

    /// The pods the hollow kubelets run (admitted, not finished), as a kubelet's `/pods`
    /// lists them: metadata, node, containers, phase and IPs.
    pub(crate) fn kubelet_pods(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let st = n.st.lock().expect("lock");
            for (uid, s) in &st.pods {
                let Some(phase) = s.phase.filter(|_| !s.name.is_empty()) else {
                    continue;
                };
                let phase = match phase {
                    PodPhase::Pending => "Pending",
                    PodPhase::Running | PodPhase::Terminating => "Running",
                    PodPhase::Succeeded => "Succeeded",
                    PodPhase::Killed => "Failed",
                };
                let cs: Vec<Value> = s
                    .containers
                    .iter()
                    .map(|(name, image)| json!({"name": name, "image": image}))
                    .collect();
                let host = self.host_ip(i);
                out.push(
                    json!({"metadata": {"name": s.name, "namespace": s.ns, "uid": uid},
                    "spec": {"nodeName": n.name, "containers": cs},
                    "status": {"phase": phase, "hostIP": host, "podIP": s.ip,
                               "podIPs": [{"ip": s.ip}]}}),
                );
            }
        }
        out
    }

    /// The node that runs pod `ns/name`, and the pod's container names.
    pub(crate) fn pod_on(&self, ns: &str, name: &str) -> Option<(String, Vec<String>)> {
        self.nodes.iter().find_map(|n| {
            let st = n.st.lock().expect("lock");
            st.pods
                .values()
                .find(|s| s.phase.is_some() && s.ns == ns && s.name == name)
                .map(|s| {
                    let cs = s.containers.iter().map(|(c, _)| c.clone()).collect();
                    (n.name.clone(), cs)
                })
        })
    }

    /// Node `i`'s address as its pods' hostIP: the kubelet endpoint's, or its own
    /// unroutable one.
    fn host_ip(&self, i: usize) -> String {
        self.endpoint
            .as_ref()
            .map_or_else(|| objects::node_ip(i), |e| e.ip.to_string())
    }

    /// Node names.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    async fn call<T, F, Fut>(&self, verb: Verb, resource: &str, f: F) -> Result<T, CallError>
    where
        F: Fn(kube::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        self.traffic.call(&self.pool, verb, resource, &f).await
    }

    /// Check for clashes, then create every node (or adopt one a previous run left). Nothing
    /// is left behind when this fails: nodes it created are deleted again.
    pub(crate) async fn register(self: &Arc<Self>) -> Result<(), Error> {
        let listed = self
            .call(Verb::ListCluster, "nodes", |c| async move {
                Api::<Node>::all(c).list(&ListParams::default()).await
            })
            .await
            .map_err(|e| Error::from_call("cannot list nodes", e))?;
        for n in &listed.items {
            let name = n.metadata.name.as_deref().unwrap_or("");
            let ours = n
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(LABEL_HOLLOW));
            if !ours && self.by_name.contains_key(name) {
                return Err(Error::Usage(format!(
                    "node {name:?} exists and is not a hollow node (no {LABEL_HOLLOW} label); \
                     choose another --prefix"
                )));
            }
        }
        use futures::StreamExt;
        let started = objects::unix_now();
        // Per node: its UID and whether this run created it (false: adopted).
        type Registered = (usize, Result<(String, bool), CallError>);
        let results: Vec<Registered> = futures::stream::iter(0..self.nodes.len())
            .map(|i| {
                let h = self.clone();
                async move {
                    let body = objects::node(
                        &h.nodes[i].name,
                        i,
                        &h.cfg.shape,
                        started,
                        h.endpoint.as_ref(),
                        &h.cfg.kubelet.node_info(),
                    );
                    let node: Node = serde_json::from_value(body).expect("a valid Node");
                    let r = h
                        .call(Verb::Create, "nodes", |c| {
                            let node = node.clone();
                            async move {
                                Api::<Node>::all(c)
                                    .create(&PostParams::default(), &node)
                                    .await
                            }
                        })
                        .await;
                    let r = match r {
                        Ok(n) => Ok((n.metadata.uid.unwrap_or_default(), true)),
                        Err(e) if e.code() == Some(409) => {
                            // Left by an earlier run (its label was checked above): adopt.
                            let name = h.nodes[i].name.clone();
                            h.call(Verb::Get, "nodes", |c| {
                                let name = name.clone();
                                async move { Api::<Node>::all(c).get(&name).await }
                            })
                            .await
                            .map(|n| (n.metadata.uid.unwrap_or_default(), false))
                        }
                        Err(e) => Err(e),
                    };
                    (i, r)
                }
            })
            .buffer_unordered(self.cfg.inflight.clamp(1, 64))
            .collect()
            .await;
        let mut failed = None;
        let mut created = Vec::new();
        for (i, r) in results {
            match r {
                Ok((uid, new)) => {
                    self.nodes[i].st.lock().expect("lock").uid = uid;
                    if new {
                        created.push(self.nodes[i].name.clone());
                    }
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            for name in created {
                let _ = self
                    .call(Verb::Delete, "nodes", |c| {
                        let name = name.clone();
                        async move {
                            Api::<Node>::all(c)
                                .delete(&name, &DeleteParams::default())
                                .await
                        }
                    })
                    .await;
            }
            return Err(Error::from_call("cannot register nodes", e));
        }
        if self.cfg.events {
            for i in 0..self.nodes.len() {
                let h = self.clone();
                tokio::spawn(async move { h.node_events(i).await });
            }
        }
        Ok(())
    }

    async fn post_event(&self, ev: Value) {
        let Ok(ev) = serde_json::from_value::<Event>(ev) else {
            return;
        };
        let ns = ev
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let _ = self
            .call(Verb::Create, "events", |c| {
                let (ev, ns) = (ev.clone(), ns.clone());
                async move {
                    Api::<Event>::namespaced(c, &ns)
                        .create(&PostParams::default(), &ev)
                        .await
                }
            })
            .await;
    }

    async fn node_events(&self, i: usize) {
        let name = &self.nodes[i].name;
        let uid = self.nodes[i].st.lock().expect("lock").uid.clone();
        let involved = json!({"kind": "Node", "name": name, "uid": name, "apiVersion": "v1"});
        let _ = uid;
        for (reason, msg) in [
            ("Starting", "Starting kubelet."),
            (
                "NodeHasSufficientMemory",
                "Node status is now: NodeHasSufficientMemory",
            ),
            (
                "NodeHasNoDiskPressure",
                "Node status is now: NodeHasNoDiskPressure",
            ),
            (
                "NodeHasSufficientPID",
                "Node status is now: NodeHasSufficientPID",
            ),
            (
                "NodeAllocatableEnforced",
                "Updated Node Allocatable limit across pods",
            ),
        ] {
            let ev = objects::event(
                "default",
                involved.clone(),
                reason,
                msg,
                false,
                name,
                objects::unix_now(),
            );
            self.post_event(ev).await;
        }
    }

    /// The one heartbeat scheduler: every node's lease renewal and node-status loop.
    pub(crate) async fn heartbeats(self: Arc<Self>) {
        #[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
        enum Beat {
            Lease,
            Status,
        }
        let iv = self.cfg.intervals.clone();
        let now = Instant::now();
        let mut heap = BinaryHeap::new();
        {
            let mut rng = rand::thread_rng();
            for i in 0..self.nodes.len() {
                // Spread over one period: no two nodes' heartbeats are synchronized.
                let (l, s) = (rng.gen_range(0.0..1.0), rng.gen_range(0.0..1.0));
                heap.push(Reverse((now + iv.lease_renew.mul_f64(l), i, Beat::Lease)));
                heap.push(Reverse((
                    now + iv.status_update.mul_f64(s),
                    i,
                    Beat::Status,
                )));
            }
        }
        let mut stop = self.stop.clone();
        while let Some(Reverse((at, _, _))) = heap.peek().copied() {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = Instant::now();
            while let Some(Reverse((at, i, beat))) = heap.peek().copied() {
                if at > now {
                    break;
                }
                heap.pop();
                let (busy, period) = match beat {
                    Beat::Lease => (&self.nodes[i].lease_busy, iv.lease_renew),
                    Beat::Status => (&self.nodes[i].status_busy, iv.status_update),
                };
                if !busy.swap(true, Ordering::AcqRel) {
                    let h = self.clone();
                    tokio::spawn(async move {
                        match beat {
                            Beat::Lease => h.renew_lease(i).await,
                            Beat::Status => h.node_status(i).await,
                        }
                        let slot = &h.nodes[i];
                        match beat {
                            Beat::Lease => slot.lease_busy.store(false, Ordering::Release),
                            Beat::Status => slot.status_busy.store(false, Ordering::Release),
                        }
                    });
                }
                // The kubelet's loops: wait.JitterUntil(period, jitter factor 0.04).
                heap.push(Reverse((at.max(now) + jitter(period, iv.jitter), i, beat)));
            }
        }
    }

    /// Renew node `i`'s lease as the kubelet's lease controller does: an Update from the
    /// lease it last wrote (no GET); on failure (or at first) GET it, create it if missing.
    async fn renew_lease(&self, i: usize) {
        let slot = &self.nodes[i];
        let (cached, uid) = {
            let st = slot.st.lock().expect("lock");
            (st.lease.clone(), st.uid.clone())
        };
        let renew = |mut l: Lease| {
            l.spec.get_or_insert_with(Default::default).renew_time =
                Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
            l
        };
        if let Some(l) = cached {
            let l = renew(l);
            let r = self.put_lease(&slot.name, &l).await;
            match r {
                Ok(l) => {
                    slot.st.lock().expect("lock").lease = Some(l);
                    return;
                }
                Err(_) => slot.st.lock().expect("lock").lease = None,
            }
        }
        // ensureLease: GET, and create when not found.
        let got = self
            .call(Verb::Get, "leases", |c| {
                let name = slot.name.clone();
                async move { Api::<Lease>::namespaced(c, LEASE_NS).get(&name).await }
            })
            .await;
        let lease = match got {
            Ok(l) => {
                let l = renew(l);
                self.put_lease(&slot.name, &l).await
            }
            Err(e) if e.code() == Some(404) => {
                let body = objects::lease(
                    &slot.name,
                    &uid,
                    self.cfg.intervals.lease_duration,
                    objects::unix_now(),
                );
                let l: Lease = serde_json::from_value(body).expect("a valid Lease");
                self.call(Verb::Create, "leases", |c| {
                    let l = l.clone();
                    async move {
                        Api::<Lease>::namespaced(c, LEASE_NS)
                            .create(&PostParams::default(), &l)
                            .await
                    }
                })
                .await
            }
            Err(e) => Err(e),
        };
        if let Ok(l) = lease {
            slot.st.lock().expect("lock").lease = Some(l);
        }
    }

    /// PUT a node's lease (an Update: the lease's resourceVersion makes it conditional).
    async fn put_lease(&self, name: &str, l: &Lease) -> Result<Lease, CallError> {
        self.call(Verb::Update, "leases", |c| {
            let (l, name) = (l.clone(), name.to_string());
            async move {
                Api::<Lease>::namespaced(c, LEASE_NS)
                    .replace(&name, &PostParams::default(), &l)
                    .await
            }
        })
        .await
    }

    /// The node-status loop: the status is computed every `status_update` (from the node
    /// informer's copy, no GET) and patched when it changed or `status_report` has passed.
    /// A hollow node's status changes only in its heartbeat times, so in steady state this is
    /// one PATCH per `status_report`. Kubelets before 1.31 GET their Node first, every time
    /// ([`KubeletVersion::gets_own_node`](crate::profile::KubeletVersion::gets_own_node)).
    async fn node_status(&self, i: usize) {
        let slot = &self.nodes[i];
        if self.cfg.kubelet.gets_own_node() {
            let got = self
                .call(Verb::Get, "nodes", |c| {
                    let name = slot.name.clone();
                    async move { Api::<Node>::all(c).get(&name).await }
                })
                .await;
            if got.is_err() {
                return;
            }
        }
        let now = objects::unix_now();
        let due = {
            let st = slot.st.lock().expect("lock");
            st.last_report == 0.0
                || now - st.last_report >= self.cfg.intervals.status_report.as_secs_f64()
        };
        if !due {
            return;
        }
        let patch = objects::node_status_patch(now);
        let r = self
            .call(Verb::Patch, "nodes/status", |c| {
                let (name, patch) = (slot.name.clone(), patch.clone());
                async move {
                    Api::<Node>::all(c)
                        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                        .await
                }
            })
            .await;
        if r.is_ok() {
            slot.st.lock().expect("lock").last_report = now;
        }
    }

    /// A pod event from node `i`'s watch (or the shared watch, routed by node name).
    pub(crate) fn on_pod(self: &Arc<Self>, ev: Ev<Pod>, only: Option<usize>) {
        match ev {
            Ev::Listed(items) => {
                for p in items {
                    self.pod_applied(p, only);
                }
            }
            Ev::Applied(p) => self.pod_applied(p, only),
            Ev::Deleted(p) => {
                let Some(i) = self.node_of(&p, only) else {
                    return;
                };
                if let Some((uid, _, _)) = pod_key(&p) {
                    let mut st = self.nodes[i].st.lock().expect("lock");
                    if let Some(s) = st.pods.remove(&uid) {
                        if let Some(t) = s.task {
                            t.abort();
                        }
                        release_objects(&mut st, &s.ns, &s.refs);
                    }
                    drop(st);
                    self.startup.forget(&uid);
                }
            }
        }
    }

    fn node_of(&self, p: &Pod, only: Option<usize>) -> Option<usize> {
        let n = p.spec.as_ref()?.node_name.as_deref()?;
        match only {
            Some(i) if self.nodes[i].name == n => Some(i),
            Some(_) => None,
            None => self.by_name.get(n).copied(),
        }
    }

    fn pod_applied(self: &Arc<Self>, p: Pod, only: Option<usize>) {
        let Some(i) = self.node_of(&p, only) else {
            return;
        };
        let Some((uid, _, _)) = pod_key(&p) else {
            return;
        };
        let deleting = p.metadata.deletion_timestamp.is_some();
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let terminal = matches!(phase.as_str(), "Succeeded" | "Failed");
        let mut st = self.nodes[i].st.lock().expect("lock");
        if let Some(slot) = st.pods.get_mut(&uid) {
            if deleting && !slot.terminating {
                slot.terminating = true;
                if let Some(t) = slot.task.take() {
                    t.abort();
                }
                let was = slot.phase;
                drop(st);
                self.startup.forget(&uid);
                let h = self.clone();
                tokio::spawn(async move { h.terminate(i, p, was).await });
            }
            return;
        }
        if deleting {
            st.pods.insert(uid, PodSlot::idle(true));
            drop(st);
            let h = self.clone();
            tokio::spawn(async move { h.terminate(i, p, None).await });
            return;
        }
        if terminal {
            st.pods.insert(uid, PodSlot::idle(false));
            return;
        }
        // Admission: the pods resource, as the kubelet's predicate admit handler checks it.
        let used = st.pods.values().filter(|s| s.active()).count() as u32;
        if used >= self.cfg.shape.pods {
            st.pods.insert(uid, PodSlot::idle(false));
            drop(st);
            self.pods.rejected.fetch_add(1, Ordering::Relaxed);
            let h = self.clone();
            tokio::spawn(async move { h.reject(i, p, used).await });
            return;
        }
        let ip = objects::pod_ip(i, st.ips);
        st.ips += 1;
        let create = created_at(&p);
        let scheduled = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "True")
            })
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.as_nanosecond() as f64 / 1e9);
        self.startup.admitted(&uid, create, scheduled);
        self.pods.admitted.fetch_add(1, Ordering::Relaxed);
        let refs = objects::pod_refs(&p);
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        for (kind, name) in &refs.objects {
            self.hold_object(&mut st, kind, &ns, name);
        }
        let h = self.clone();
        let uid2 = uid.clone();
        let task = {
            let (p, ip) = (p.clone(), ip.clone());
            tokio::spawn(async move { h.life(i, p, ip).await })
        };
        st.pods.insert(
            uid2,
            PodSlot {
                phase: Some(PodPhase::Pending),
                task: Some(task.abort_handle()),
                terminating: false,
                refs: refs.objects,
                name: p.metadata.name.clone().unwrap_or_default(),
                containers: containers(&p),
                ns,
                ip,
            },
        );
    }

    /// One more pod of this node names a Secret or ConfigMap: the first starts the kubelet's
    /// reflector of it (a LIST and WATCH with `metadata.name=NAME` in its namespace, as the
    /// watch-based managers of `configMapAndSecretChangeDetectionStrategy: Watch`, the
    /// default, run one per object); it stops when the last such pod is gone.
    fn hold_object(&self, st: &mut NodeState, kind: &'static str, ns: &str, name: &str) {
        let key = (kind, ns.to_string(), name.to_string());
        if let Some(w) = st.objects.get_mut(&key) {
            w.pods += 1;
            return;
        }
        let q = Query {
            resource: kind,
            fields: Some(format!("metadata.name={name}")),
            labels: None,
            timeout: self.cfg.watch_timeout,
        };
        let stream = self.pool.object_watch();
        let (traffic, stop) = (self.traffic.clone(), self.stop.clone());
        let ns = ns.to_string();
        let task = if kind == "secrets" {
            tokio::spawn(async move {
                let api = Api::<Secret>::namespaced(stream.client.clone(), &ns);
                reflect::run(api, q, traffic, stop, |_| {}).await;
                drop(stream);
            })
        } else {
            tokio::spawn(async move {
                let api = Api::<ConfigMap>::namespaced(stream.client.clone(), &ns);
                reflect::run(api, q, traffic, stop, |_| {}).await;
                drop(stream);
            })
        };
        st.objects.insert(
            key,
            ObjectWatch {
                pods: 1,
                task: task.abort_handle(),
            },
        );
    }

    /// The service-account tokens a starting pod's projected volumes need, each a
    /// TokenRequest bound to the pod (the kubelet's token manager; its answer is not waited
    /// on further: a hollow pod mounts nothing).
    async fn request_tokens(&self, p: &Pod) {
        let Some((uid, ns, name)) = pod_key(p) else {
            return;
        };
        let refs = objects::pod_refs(p);
        for t in &refs.tokens {
            let body = objects::token_request(t, &name, &uid);
            let _ = self
                .call(Verb::Create, "serviceaccounts/token", |c| {
                    let (ns, sa, body) = (ns.clone(), refs.service_account.clone(), body.clone());
                    async move {
                        Api::<ServiceAccount>::namespaced(c, &ns)
                            .create_subresource::<Value, Value>(
                                "token",
                                &sa,
                                &PostParams::default(),
                                &body,
                            )
                            .await
                    }
                })
                .await;
        }
    }

    fn set_phase(&self, i: usize, uid: &str, phase: PodPhase) {
        if let Some(s) = self.nodes[i].st.lock().expect("lock").pods.get_mut(uid) {
            s.phase = Some(phase);
        }
    }

    /// The status manager's sync: GET the pod, then PATCH its status; false when the pod is
    /// gone.
    async fn sync_status(&self, ns: &str, name: &str, patch: Value) -> bool {
        let got = self
            .call(Verb::Get, "pods", |c| {
                let (ns, name) = (ns.to_string(), name.to_string());
                async move { Api::<Pod>::namespaced(c, &ns).get(&name).await }
            })
            .await;
        if got.is_err() {
            return false;
        }
        self.call(Verb::Patch, "pods/status", |c| {
            let (ns, name, patch) = (ns.to_string(), name.to_string(), patch.clone());
            async move {
                Api::<Pod>::namespaced(c, &ns)
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                    .await
            }
        })
        .await
        .is_ok()
    }

    /// Post a pod's container events in the background: a kubelet's event recorder queues
    /// them for its broadcaster and never waits for them, so they do not delay its status
    /// patches.
    fn pod_events(
        self: &Arc<Self>,
        i: usize,
        p: &Pod,
        which: &'static [(&'static str, &'static str)],
    ) {
        if !self.cfg.events {
            return;
        }
        let Some((uid, ns, name)) = pod_key(p) else {
            return;
        };
        let mut evs = Vec::new();
        for (cname, image) in containers(p) {
            for (reason, what) in which {
                let msg = match *what {
                    "pulled" => format!("Container image \"{image}\" already present on machine"),
                    "created" => format!("Created container: {cname}"),
                    "started" => format!("Started container {cname}"),
                    _ => format!("Stopping container {cname}"),
                };
                let involved = json!({"kind": "Pod", "namespace": ns, "name": name, "uid": uid,
                    "apiVersion": "v1", "fieldPath": format!("spec.containers{{{cname}}}")});
                evs.push(objects::event(
                    &ns,
                    involved,
                    reason,
                    &msg,
                    false,
                    &self.nodes[i].name,
                    objects::unix_now(),
                ));
            }
        }
        let h = self.clone();
        tokio::spawn(async move {
            for ev in evs {
                h.post_event(ev).await;
            }
        });
    }

    /// An admitted pod: Pending (containers being created), Running and Ready after the run
    /// delay, and a Job's pod Succeeded after the job duration.
    async fn life(self: Arc<Self>, i: usize, p: Pod, ip: String) {
        let Some((uid, ns, name)) = pod_key(&p) else {
            return;
        };
        let t0 = Instant::now();
        let started = objects::unix_now();
        let host = self.host_ip(i);
        let cs = containers(&p);
        let pending =
            objects::pod_status(PodPhase::Pending, &uid, &cs, &host, &ip, started, started);
        if !self.sync_status(&ns, &name, pending).await {
            return;
        }
        self.request_tokens(&p).await;
        tokio::time::sleep_until(t0 + self.cfg.pods.run_delay).await;
        self.pod_events(
            i,
            &p,
            &[
                ("Pulled", "pulled"),
                ("Created", "created"),
                ("Started", "started"),
            ],
        );
        let now = objects::unix_now();
        self.startup.running(&uid, now);
        let running = objects::pod_status(PodPhase::Running, &uid, &cs, &host, &ip, started, now);
        if !self.sync_status(&ns, &name, running).await {
            return;
        }
        self.set_phase(i, &uid, PodPhase::Running);
        self.pods.running.fetch_add(1, Ordering::Relaxed);
        if is_job(&p) {
            tokio::time::sleep(self.cfg.pods.job_duration).await;
            let now = objects::unix_now();
            let done =
                objects::pod_status(PodPhase::Succeeded, &uid, &cs, &host, &ip, started, now);
            if self.sync_status(&ns, &name, done).await {
                self.set_phase(i, &uid, PodPhase::Succeeded);
                self.pods.succeeded.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Admission said no: the pod fails with `OutOfpods`.
    async fn reject(self: Arc<Self>, i: usize, p: Pod, used: u32) {
        let Some((uid, ns, name)) = pod_key(&p) else {
            return;
        };
        if self.cfg.events {
            let involved = json!({"kind": "Pod", "namespace": ns, "name": name, "uid": uid, "apiVersion": "v1"});
            let msg = format!(
                "Node didn't have enough resource: pods, requested: 1, used: {used}, capacity: {}",
                self.cfg.shape.pods
            );
            let ev = objects::event(
                &ns,
                involved,
                "OutOfpods",
                &msg,
                true,
                &self.nodes[i].name,
                objects::unix_now(),
            );
            self.post_event(ev).await;
        }
        let patch = objects::pod_rejected(&uid, used, self.cfg.shape.pods);
        self.sync_status(&ns, &name, patch).await;
    }

    /// A pod with a deletion timestamp: its containers are stopped (Killing events, a final
    /// status), then it is deleted with grace 0, preconditioned on its UID.
    async fn terminate(self: Arc<Self>, i: usize, p: Pod, was: Option<PodPhase>) {
        let Some((uid, ns, name)) = pod_key(&p) else {
            return;
        };
        let syncs = self.cfg.kubelet.deletion_syncs();
        if matches!(was, Some(PodPhase::Pending | PodPhase::Running)) {
            self.pod_events(i, &p, &[("Killing", "killing")]);
            let cs = containers(&p);
            for k in 1..=syncs.status_patches {
                let now = objects::unix_now();
                let phase = if k < syncs.status_patches {
                    PodPhase::Terminating
                } else {
                    PodPhase::Killed
                };
                let st = objects::pod_status(phase, &uid, &cs, &self.host_ip(i), "", now, now);
                self.sync_status(&ns, &name, st).await;
            }
        }
        if syncs.get_before_delete {
            let _ = self
                .call(Verb::Get, "pods", |c| {
                    let (ns, name) = (ns.clone(), name.clone());
                    async move { Api::<Pod>::namespaced(c, &ns).get(&name).await }
                })
                .await;
        }
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let r = self
            .call(Verb::Delete, "pods", |c| {
                let (ns, name, dp) = (ns.clone(), name.clone(), dp.clone());
                async move { Api::<Pod>::namespaced(c, &ns).delete(&name, &dp).await }
            })
            .await;
        if r.is_ok() {
            self.pods.finalized.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Start the watches of `mode`: per node (a kubelet's pods, node and services; a proxy's
    /// services, endpointslices and node), or one of each for all nodes. Plus one informer on
    /// all pods, the instrument that times pod startup.
    pub(crate) fn start_watches(self: &Arc<Self>, tasks: &mut tokio::task::JoinSet<()>) {
        // The instrument: one informer on all pods.
        let h = self.clone();
        self.watch::<Pod>(tasks, "pods (startup informer)", None, None, move |ev| {
            h.observe(ev)
        });
        match self.cfg.watch {
            WatchMode::PerNode => {
                for i in 0..self.nodes.len() {
                    let name = &self.nodes[i].name;
                    let by_name = Some(format!("metadata.name={name}"));
                    let h = self.clone();
                    let pods = Some(format!("spec.nodeName={name}"));
                    self.watch::<Pod>(tasks, "pods", pods, None, move |ev| h.on_pod(ev, Some(i)));
                    self.watch::<Node>(tasks, "nodes", by_name.clone(), None, |_| {});
                    self.watch::<Service>(tasks, "services", None, None, |_| {});
                    self.proxy_watches(tasks, by_name);
                }
            }
            WatchMode::Shared => {
                let h = self.clone();
                let bound = Some("spec.nodeName!=".to_string());
                self.watch::<Pod>(tasks, "pods", bound, None, move |ev| h.on_pod(ev, None));
                self.proxy_watches(tasks, None);
            }
        }
    }

    /// A kube-proxy's informers: services and endpointslices (those it serves), and its node
    /// (`by_name`; none in shared mode).
    fn proxy_watches(
        self: &Arc<Self>,
        tasks: &mut tokio::task::JoinSet<()>,
        by_name: Option<String>,
    ) {
        if !self.cfg.proxy {
            return;
        }
        const SERVICES: &str = "!service.kubernetes.io/service-proxy-name";
        const SLICES: &str =
            "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name";
        self.watch::<Service>(tasks, "services (proxy)", None, Some(SERVICES), |_| {});
        let h = self.clone();
        self.watch::<EndpointSlice>(tasks, "endpointslices", None, Some(SLICES), move |ev| {
            h.on_slice(ev)
        });
        if by_name.is_some() {
            self.watch::<Node>(tasks, "nodes (proxy)", by_name, None, |_| {});
        }
    }

    /// Start one informer (cluster-wide, with selectors) on a connection of the pool.
    fn watch<K>(
        &self,
        tasks: &mut tokio::task::JoinSet<()>,
        resource: &'static str,
        fields: Option<String>,
        labels: Option<&str>,
        on: impl FnMut(Ev<K>) + Send + 'static,
    ) where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
        K::DynamicType: Default,
    {
        let q = Query {
            resource,
            fields,
            labels: labels.map(str::to_string),
            timeout: self.cfg.watch_timeout,
        };
        let api = Api::<K>::all(self.pool.watch());
        tasks.spawn(reflect::run(
            api,
            q,
            self.traffic.clone(),
            self.stop.clone(),
            on,
        ));
    }

    /// The startup informer: a pod on one of our nodes seen Running and Ready.
    fn observe(&self, ev: Ev<Pod>) {
        let apply = |p: &Pod| {
            let ready = p.status.as_ref().is_some_and(|s| {
                s.phase.as_deref() == Some("Running")
                    && s.conditions.as_ref().is_some_and(|cs| {
                        cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                    })
            });
            if ready {
                if let Some(uid) = &p.metadata.uid {
                    self.startup.seen(uid, objects::unix_now());
                }
            }
        };
        match ev {
            Ev::Listed(items) => items.iter().for_each(apply),
            Ev::Applied(p) => apply(&p),
            Ev::Deleted(_) => {}
        }
    }

    /// A hollow proxy's EndpointSlice event: network programming latency from the slice's
    /// last-change-trigger-time (the proxy "programs" as soon as it knows).
    fn on_slice(&self, ev: Ev<EndpointSlice>) {
        if let Ev::Applied(s) = ev {
            let trigger = s
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("endpoints.kubernetes.io/last-change-trigger-time"))
                .and_then(|t| objects::parse_time(t));
            if let Some(t) = trigger {
                self.startup.programmed(objects::unix_now() - t);
            }
        }
    }

    /// Pods on hollow nodes right now, by phase as the kubelets see them.
    pub(crate) fn pods_active(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| {
                n.st.lock()
                    .expect("lock")
                    .pods
                    .values()
                    .filter(|s| s.active())
                    .count() as u64
            })
            .sum()
    }

    /// Nodes whose lease has been written at least once.
    pub(crate) fn leases_held(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.st.lock().expect("lock").lease.is_some())
            .count()
    }
}

/// A pod is gone: its holds on Secret and ConfigMap reflectors are released; a reflector no
/// pod holds stops.
fn release_objects(st: &mut NodeState, ns: &str, refs: &[ObjectRef]) {
    for (kind, name) in refs {
        let key = (*kind, ns.to_string(), name.clone());
        if let Some(w) = st.objects.get_mut(&key) {
            w.pods -= 1;
            if w.pods == 0 {
                w.task.abort();
                st.objects.remove(&key);
            }
        }
    }
}

/// Names and images of a pod's containers.
fn containers(p: &Pod) -> Vec<(String, String)> {
    p.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// A pod of a Job (owned by one, or labelled as the Job controller labels them).
fn is_job(p: &Pod) -> bool {
    p.metadata
        .owner_references
        .as_ref()
        .is_some_and(|o| o.iter().any(|r| r.kind == "Job"))
        || p.metadata.labels.as_ref().is_some_and(|l| {
            l.contains_key("batch.kubernetes.io/job-name") || l.contains_key("job-name")
        })
}

/// When a pod was created: `kapi`'s sent-at annotation (ns) if it has one, else its
/// creationTimestamp.
fn created_at(p: &Pod) -> f64 {
    let sent = p
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(kapi::ANN_SENT))
        .and_then(|v| v.parse::<u128>().ok())
        .map(|ns| ns as f64 / 1e9);
    sent.or_else(|| {
        p.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_nanosecond() as f64 / 1e9)
    })
    .unwrap_or_else(objects::unix_now)
}
