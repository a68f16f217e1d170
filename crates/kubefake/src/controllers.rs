//! Test-only stand-ins for what a real control plane's controller-manager, scheduler and
//! kubelets do to Deployments, so tests can run `up`/`scale`/`rollout` to completion against
//! the fake. Nothing here runs unless a test asks: the fake API itself, like the real one,
//! stores objects and does not act on them.
//!
//! One [`step`] moves each Deployment of a namespace by at most one pod, the way a rolling
//! update with maxSurge ≥ 1 and maxUnavailable 0 does: start one pod of the newest template
//! while there are too few; once they are all ready, remove one old pod; then write the
//! Deployment's status from its pods, as the Deployment controller does. New pods end up as
//! [`Fate`] says (ready, or stuck the way real pods get stuck).

use crate::server::FakeApi;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How new pods turn out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Scheduled, running, ready.
    Ready,
    /// The image cannot be pulled.
    ImagePullBackOff,
    /// The container exits again and again (its log says why).
    CrashLoop,
    /// No node has room.
    Unschedulable,
    /// Left to the nodes: bound to the Ready Nodes in turn (the scheduler's part), then
    /// Pending until their kubelet (a hollow node's) runs them. Not created while no Node is
    /// Ready.
    Nodes,
}

/// The log a crash-looping pod's container leaves.
pub const CRASH_LOG: &str = "starting\nscaletest: cannot listen on 0.0.0.0:8080: Address in use\n";

fn hash(v: &Value) -> String {
    // FNV-1a over the template's JSON: a stand-in for the pod-template-hash label.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{:08x}", h as u32)
}

fn s(v: &Value, p: &str) -> String {
    v.pointer(p)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn pod_status(fate: Fate, container: &str, image: &str) -> Value {
    match fate {
        Fate::Ready => json!({"phase": "Running", "podIP": "127.0.0.1",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": container, "ready": true, "restartCount": 0, "image": image,
                                   "imageID": "", "state": {"running": {"startedAt": crate::apply::FAKE_TIME}}}]}),
        Fate::ImagePullBackOff => json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": container, "ready": false, "restartCount": 0, "image": image, "imageID": "",
                "state": {"waiting": {"reason": "ImagePullBackOff",
                                      "message": format!("Back-off pulling image \"{image}\"")}}}]}),
        Fate::CrashLoop => json!({"phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": container, "ready": false, "restartCount": 3, "image": image, "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                                      "message": "back-off 40s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
        Fate::Unschedulable => json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/1 nodes are available: 1 Insufficient cpu."}]}),
        Fate::Nodes => json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True",
                            "lastTransitionTime": crate::store::now_rfc3339()}]}),
    }
}

/// Objects of a kind in one namespace.
fn in_ns(api: &FakeApi, plural: &str, ns: &str) -> Vec<Value> {
    api.objects(plural)
        .into_iter()
        .filter(|o| s(o, "/metadata/namespace") == ns)
        .collect()
}

/// The pods of a Deployment: owned by one of its ReplicaSets (`NAME-HASH`).
fn owned<'a>(pods: &'a [Value], deployment: &str) -> Vec<&'a Value> {
    let prefix = format!("{deployment}-");
    pods.iter()
        .filter(|p| {
            s(p, "/metadata/ownerReferences/0/name")
                .strip_prefix(&prefix)
                .is_some_and(|r| !r.contains('-'))
        })
        .collect()
}

fn ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The Ready Nodes' names.
fn ready_nodes(api: &FakeApi) -> Vec<String> {
    api.objects("nodes")
        .iter()
        .filter(|n| ready(n))
        .map(|n| s(n, "/metadata/name"))
        .collect()
}

/// One step of every Deployment in `ns` (every namespace when empty); returns whether
/// anything changed.
pub fn step(api: &FakeApi, ns: &str, fate: Fate) -> bool {
    if !ns.is_empty() {
        return step_ns(api, ns, fate);
    }
    let namespaces: std::collections::BTreeSet<String> = api
        .objects("deployments")
        .iter()
        .map(|d| s(d, "/metadata/namespace"))
        .collect();
    let mut changed = false;
    for ns in namespaces {
        changed |= step_ns(api, &ns, fate);
    }
    changed
}

fn step_ns(api: &FakeApi, ns: &str, fate: Fate) -> bool {
    let mut changed = false;
    let pods = in_ns(api, "pods", ns);
    for d in in_ns(api, "deployments", ns) {
        let name = s(&d, "/metadata/name");
        let want = d
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1) as usize;
        let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let h = hash(&template);
        let mine = owned(&pods, &name);
        let (new, old): (Vec<&Value>, Vec<&Value>) = mine
            .iter()
            .partition(|p| s(p, "/metadata/labels/pod-template-hash") == h);
        let rs = format!("{name}-{h}");
        if new.len() < want {
            let mut labels = template
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            labels["pod-template-hash"] = json!(h);
            let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
            let container = s(&spec, "/containers/0/name");
            let image = s(&spec, "/containers/0/image");
            spec["nodeName"] = json!("fake-node");
            if fate == Fate::Nodes {
                let nodes = ready_nodes(api);
                if nodes.is_empty() {
                    continue;
                }
                spec["nodeName"] = json!(nodes[api.objects("pods").len() % nodes.len()]);
            }
            let pod = json!({"metadata": {"generateName": format!("{rs}-"), "labels": labels,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                                         "uid": "fake", "controller": true}]},
                "spec": spec});
            if let Ok(p) = api.create("pods", ns, pod) {
                let pname = s(&p, "/metadata/name");
                if fate == Fate::CrashLoop {
                    api.set_log(ns, &pname, CRASH_LOG);
                }
                let _ = api.set_status("pods", ns, &pname, pod_status(fate, &container, &image));
                changed = true;
            }
        } else if new.len() > want {
            let _ = api.delete("pods", ns, &s(new[0], "/metadata/name"));
            changed = true;
        } else if !old.is_empty() && new.iter().all(|p| ready(p)) {
            let _ = api.delete("pods", ns, &s(old[0], "/metadata/name"));
            changed = true;
        }
    }
    // Status from the pods as they are now.
    let pods = in_ns(api, "pods", ns);
    for d in in_ns(api, "deployments", ns) {
        let name = s(&d, "/metadata/name");
        let h = hash(&d.pointer("/spec/template").cloned().unwrap_or(json!({})));
        let mine = owned(&pods, &name);
        let updated = mine
            .iter()
            .filter(|p| s(p, "/metadata/labels/pod-template-hash") == h)
            .count();
        let ready_n = mine.iter().filter(|p| ready(p)).count();
        let status = json!({"observedGeneration": d["metadata"]["generation"],
            "replicas": mine.len(), "updatedReplicas": updated, "readyReplicas": ready_n,
            "availableReplicas": ready_n, "unavailableReplicas": mine.len() - ready_n});
        if d.get("status") != Some(&status) {
            let _ = api.set_status("deployments", ns, &name, status);
            changed = true;
        }
    }
    changed
}

/// A thread calling [`step`] every few milliseconds until dropped; the fate of new pods can
/// be changed while it runs.
pub struct Controllers {
    stop: Arc<AtomicBool>,
    /// While set, no step is taken (a test that must see a rollout mid-way holds it there).
    pub paused: Arc<AtomicBool>,
    /// How new pods turn out from now on.
    pub fate: Arc<Mutex<Fate>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Controllers {
    /// Start playing the controllers for `ns`.
    pub fn start(api: Arc<FakeApi>, ns: &str, fate: Fate) -> Controllers {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let fate = Arc::new(Mutex::new(fate));
        let (st, p, f, ns) = (stop.clone(), paused.clone(), fate.clone(), ns.to_string());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if !p.load(Ordering::Relaxed) {
                    let now = *f.lock().expect("lock");
                    step(&api, &ns, now);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Controllers {
            stop,
            paused,
            fate,
            thread: Some(thread),
        }
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
