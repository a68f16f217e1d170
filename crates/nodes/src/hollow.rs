//! The hollow kubelets and kube-proxies: registration, one heartbeat scheduler for every
//! node's lease and status loops, the pod lifecycle, the proxies' watches, and stopping.
//!
//! Per node there is state (a few hundred bytes) and, with `WatchMode::PerNode`, the watch
//! tasks a real kubelet and kube-proxy have; there is no client per node. Every lease renewal
//! and status heartbeat of every node comes from ONE scheduler task (a binary heap of due
//! times), which starts each call as a short task bounded by the in-flight limit; a node whose
//! previous heartbeat is still in flight skips a beat, as the kubelet's loops run serially.
//!
//! Here: the per-node state and what reads it (the kubelet endpoint's pods, counts);
//! `register.rs`, `heartbeat.rs`, `admit.rs` (pod events, admission), `lifecycle.rs` (an
//! admitted pod's life and end) and `watches.rs` each own the step they are named for.

use crate::client::Pool;
use crate::objects::{self, ObjectRef, PodPhase};
use crate::startup::Startup;
use crate::traffic::{CallError, Traffic};
use crate::Config;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod};
use kapi::stats::Verb;
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use tokio::sync::watch as signal;
use tokio::task::AbortHandle;

mod admit;
mod heartbeat;
mod lifecycle;
mod register;
mod watches;

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
