//! A pod event on a hollow node: admission (the pods capacity), the life task it starts,
//! its deletion, and the Secret and ConfigMap reflectors its pods hold.

use super::lifecycle::containers;
use super::{pod_key, Hollow, NodeState, ObjectWatch, PodSlot};
use crate::objects::{self, ObjectRef, PodPhase};
use crate::reflect::{self, Ev, Query};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Hollow {
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

    pub(super) fn node_of(&self, p: &Pod, only: Option<usize>) -> Option<usize> {
        let n = p.spec.as_ref()?.node_name.as_deref()?;
        match only {
            Some(i) if self.nodes[i].name == n => Some(i),
            Some(_) => None,
            None => self.by_name.get(n).copied(),
        }
    }

    pub(super) fn pod_applied(self: &Arc<Self>, p: Pod, only: Option<usize>) {
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
    pub(super) fn hold_object(&self, st: &mut NodeState, kind: &'static str, ns: &str, name: &str) {
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
}

/// A pod is gone: its holds on Secret and ConfigMap reflectors are released; a reflector no
/// pod holds stops.
pub(super) fn release_objects(st: &mut NodeState, ns: &str, refs: &[ObjectRef]) {
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

/// When a pod was created: `kapi`'s sent-at annotation (ns) if it has one, else its
/// creationTimestamp.
pub(super) fn created_at(p: &Pod) -> f64 {
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
