//! The watches: per node (a kubelet's pods, node and services; a kube-proxy's services,
//! endpointslices and node) or shared, plus the startup informer on all pods and the
//! proxies' network programming latency.

use super::Hollow;
use crate::objects;
use crate::reflect::{self, Ev, Query};
use crate::WatchMode;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use std::sync::Arc;

impl Hollow {
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
    pub(super) fn proxy_watches(
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
    pub(super) fn watch<K>(
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
    pub(super) fn observe(&self, ev: Ev<Pod>) {
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
    pub(super) fn on_slice(&self, ev: Ev<EndpointSlice>) {
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
}
