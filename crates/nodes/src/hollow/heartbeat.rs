//! The one heartbeat scheduler: a heap of (due, node, lease | status) for every node, each
//! beat a short task (skipped while the node's previous one is in flight; at the stop, the
//! ones in flight are waited for, so that their calls are in the report); the lease renewal
//! and the node-status loop as the kubelet runs them.

use super::Hollow;
use crate::objects::{self, LEASE_NS};
use crate::traffic::CallError;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kapi::stats::Verb;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use rand::Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

impl Hollow {
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
        let mut beats = tokio::task::JoinSet::new();
        while let Some(Reverse((at, _, _))) = heap.peek().copied() {
            tokio::select! {
                // The stop first: no beat starts once it is given.
                biased;
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep_until(at) => {}
            }
            while beats.try_join_next().is_some() {}
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
                    beats.spawn(async move {
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
        // Within the stop's own deadline (Running::stop aborts this task, and so these).
        while beats.join_next().await.is_some() {}
    }

    /// Renew node `i`'s lease as the kubelet's lease controller does: an Update from the
    /// lease it last wrote (no GET); on failure (or at first) GET it, create it if missing.
    pub(super) async fn renew_lease(&self, i: usize) {
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
    pub(super) async fn put_lease(&self, name: &str, l: &Lease) -> Result<Lease, CallError> {
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
    pub(super) async fn node_status(&self, i: usize) {
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
}

fn jitter(d: Duration, factor: f64) -> Duration {
    d.mul_f64(1.0 + rand::thread_rng().gen_range(0.0..factor.max(1e-9)))
}
