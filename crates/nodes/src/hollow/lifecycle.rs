//! An admitted pod's life as its kubelet writes it: Pending, tokens, Running and Ready
//! after the run delay, a Job's Succeeded; a rejection (`OutOfpods`); the termination of a
//! pod with a deletion timestamp (final status, grace-0 delete); its container events.

use super::{pod_key, Hollow};
use crate::objects::{self, PodPhase};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kapi::stats::Verb;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::Api;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;

impl Hollow {
    /// The service-account tokens a starting pod's projected volumes need, each a
    /// TokenRequest bound to the pod (the kubelet's token manager; its answer is not waited
    /// on further: a hollow pod mounts nothing).
    pub(super) async fn request_tokens(&self, p: &Pod) {
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

    pub(super) fn set_phase(&self, i: usize, uid: &str, phase: PodPhase) {
        if let Some(s) = self.nodes[i].st.lock().expect("lock").pods.get_mut(uid) {
            s.phase = Some(phase);
        }
    }

    /// The status manager's sync: GET the pod, then PATCH its status; false when the pod is
    /// gone.
    pub(super) async fn sync_status(&self, ns: &str, name: &str, patch: Value) -> bool {
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
    pub(super) fn pod_events(
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
    pub(super) async fn life(self: Arc<Self>, i: usize, p: Pod, ip: String) {
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
    pub(super) async fn reject(self: Arc<Self>, i: usize, p: Pod, used: u32) {
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
    pub(super) async fn terminate(self: Arc<Self>, i: usize, p: Pod, was: Option<PodPhase>) {
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
}

/// Names and images of a pod's containers.
pub(super) fn containers(p: &Pod) -> Vec<(String, String)> {
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
pub(super) fn is_job(p: &Pod) -> bool {
    p.metadata
        .owner_references
        .as_ref()
        .is_some_and(|o| o.iter().any(|r| r.kind == "Job"))
        || p.metadata.labels.as_ref().is_some_and(|l| {
            l.contains_key("batch.kubernetes.io/job-name") || l.contains_key("job-name")
        })
}
