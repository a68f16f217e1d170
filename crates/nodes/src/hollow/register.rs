//! Registration: a clash with a node that is not ours refuses the run before anything is
//! made; every node is created (or adopted from an earlier run), and nothing is left behind
//! when one fails; then the kubelet's start-up events.

use super::Hollow;
use crate::objects::{self, LABEL_HOLLOW};
use crate::traffic::CallError;
use crate::Error;
use k8s_openapi::api::core::v1::Node;
use kapi::stats::Verb;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use serde_json::json;
use std::sync::Arc;

impl Hollow {
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

    pub(super) async fn node_events(&self, i: usize) {
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
}
