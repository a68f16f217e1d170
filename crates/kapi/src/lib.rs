//! Control-plane load: drive the Kubernetes API with object churn (`churn`), time the
//! notifications an informer gets (`watch`), and load it with loops of watch requests
//! (`watchers`), through kube-rs against any cluster; read the API server's own view of it
//! from its `/metrics` (`server_metrics`). A churn is asked for as a [`spec::ChurnSpec`],
//! checked once.
//!
//! Objects carry the run's label ([`LABEL_RUN`]) so that a run can be cleaned up even after a
//! crash, and the client's wall-clock time of the call that last wrote them ([`ANN_SENT`]) so
//! that a watcher in another process can time the notification.

// Control plane, not data plane: a few hundred calls a second record under a lock.
#![allow(clippy::disallowed_types)]

pub mod churn;
pub mod conn;
pub mod events;
pub mod output;
pub mod series;
pub mod server_metrics;
pub mod session;
pub mod spec;
pub mod stats;
pub mod view;
pub mod watch;
pub mod watchers;
pub mod workload;

use kube::core::{ApiResource, DynamicObject, GroupVersion, GroupVersionKind};
use kube::discovery::Scope;
use kube::{Api, Client};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Pod startup latency's name (ClusterLoader2's `pod_startup`): its key in per-second
/// records and its row in tables, for `nodes` and `api run` alike.
pub const POD_STARTUP: &str = "pod_startup";

/// The pod startup SLO: p99 of create → seen running, for stateless pods, s.
pub const POD_STARTUP_SLO_S: f64 = 5.0;

/// Label on every object (and namespace) a churn run makes: the run's id.
pub const LABEL_RUN: &str = "scaletest.dev/run";
/// Annotation: the client's wall clock, ns since the Unix epoch, when the call that wrote this
/// version started.
pub const ANN_SENT: &str = "scaletest.dev/sent-at";
/// Annotation: which operation of the lifecycle wrote this version (`create`, `update-1`, ...).
pub const ANN_OP: &str = "scaletest.dev/op";

/// Why a control-plane operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's to fix: a kubeconfig, a template, a resource the server does not have.
    #[error("{0}")]
    Usage(String),
    /// A call to the API server (or making the client) failed.
    #[error("{what}")]
    Api {
        /// What was being done.
        what: String,
        /// What kube-rs said.
        #[source]
        source: kube::Error,
    },
    /// Something did not happen in time (an informer's first list).
    #[error("{0}")]
    Timeout(String),
}

impl Error {
    fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Api { what, source }
    }
}

use Error::Usage;

/// The resource a run works on, as discovery described it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Group, version, kind, plural.
    pub ar: ApiResource,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
}

impl Target {
    /// `configmaps`, or `flunders.wardle.example.com` for a non-core group.
    pub fn display(&self) -> String {
        if self.ar.group.is_empty() {
            self.ar.plural.clone()
        } else {
            format!("{}.{}", self.ar.plural, self.ar.group)
        }
    }

    /// The API for objects of this resource in `ns` (ignored when cluster-scoped), or in all
    /// namespaces when `ns` is None.
    pub fn api(&self, client: &Client, ns: Option<&str>) -> Api<DynamicObject> {
        match ns {
            Some(ns) if self.namespaced => Api::namespaced_with(client.clone(), ns, &self.ar),
            _ => Api::all_with(client.clone(), &self.ar),
        }
    }
}

/// A client from `--kubeconfig` (and `--context`), or inferred as kubectl does: `$KUBECONFIG`,
/// `~/.kube/config`, then the in-cluster service account. Returns the client and the default
/// namespace of its context. `retry`: let kube-rs retry 429/503/504 (a watcher should; churn
/// must not, or throttling would be hidden inside latencies).
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    timeout: Option<Duration>,
    retry: bool,
) -> Result<(Client, String), Error> {
    let config = config(kubeconfig, context, timeout, retry).await?;
    let ns = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(Error::api("kube client"))?;
    Ok((client, ns))
}

/// The client configuration [`connect`] makes a client from, for callers that build clients
/// of other shapes ([`watchers::clients`], the hollow nodes' HTTP/2 pool).
pub async fn config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    timeout: Option<Duration>,
    retry: bool,
) -> Result<kube::Config, Error> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let mut config = match kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .map_err(|e| Usage(format!("kubeconfig {}: {e}", p.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| Usage(format!("kubeconfig {}: {e}", p.display())))?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| Usage(format!("kubeconfig: {e}")))?,
        None => kube::Config::infer().await.map_err(|e| {
            Usage(format!(
                "no cluster configured (give --kubeconfig, set KUBECONFIG, or run in a pod): {e}"
            ))
        })?,
    };
    if let Some(t) = timeout {
        config.read_timeout = Some(t);
        config.write_timeout = Some(t);
        config.connect_timeout = Some(t);
    }
    // kube-rs retries 429, 503 and 504 by default; a load tool must see and count them.
    config.default_retry = retry;
    Ok(config)
}

/// Find a resource by what a user types: `configmaps` / `ConfigMap` (core v1), `v1/Kind`,
/// `GROUP/VERSION/Kind` or `GROUP/VERSION/plural`, via the server's discovery documents.
pub async fn resolve(client: &Client, spec: &str) -> Result<Target, Error> {
    let parts: Vec<&str> = spec.split('/').collect();
    let (group, version, name) = match parts.as_slice() {
        [name] => ("", "v1", *name),
        [version, name] => ("", *version, *name),
        [group, version, name] => (*group, *version, *name),
        _ => {
            return Err(Usage(format!(
            "--resource {spec:?}: give a plural (configmaps), VERSION/Kind or GROUP/VERSION/Kind"
        )))
        }
    };
    if name.is_empty() || version.is_empty() {
        return Err(Usage(format!("--resource {spec:?}: empty name or version")));
    }
    let gv = GroupVersion {
        group: group.to_string(),
        version: version.to_string(),
    };
    let found = kube::discovery::oneshot::pinned_group(client, &gv)
        .await
        .map_err(|e| discovery_error(spec, e))?;
    let lower = name.to_ascii_lowercase();
    let (ar, caps) = found
        .versioned_resources(version)
        .into_iter()
        .find(|(ar, _)| {
            ar.plural == name || ar.kind.eq_ignore_ascii_case(name) || ar.plural == lower
        })
        .ok_or_else(|| {
            Usage(format!(
                "--resource {spec:?}: the server has no such resource in {}",
                if group.is_empty() {
                    version.to_string()
                } else {
                    format!("{group}/{version}")
                }
            ))
        })?;
    Ok(Target {
        ar,
        namespaced: caps.scope == Scope::Namespaced,
    })
}

fn discovery_error(spec: &str, e: kube::Error) -> Error {
    match &e {
        kube::Error::Api(s) if s.code == 404 => Usage(format!(
            "--resource {spec:?}: the server does not serve that group/version"
        )),
        _ => Error::api("cannot reach the API server")(e),
    }
}

/// The GVK a template object names, if it names one.
pub fn template_gvk(template: &serde_json::Value) -> Option<GroupVersionKind> {
    let api_version = template.get("apiVersion")?.as_str()?;
    let kind = template.get("kind")?.as_str()?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Some(GroupVersionKind::gvk(group, version, kind))
}

/// A GVK as [`resolve`] takes it: `v1/Kind` (core) or `GROUP/VERSION/Kind`.
pub fn gvk_spec(g: &GroupVersionKind) -> String {
    if g.group.is_empty() {
        format!("{}/{}", g.version, g.kind)
    } else {
        format!("{}/{}/{}", g.group, g.version, g.kind)
    }
}

/// Wall-clock time now, ns since the Unix epoch (the value of [`ANN_SENT`]).
pub fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Read an object template: YAML or JSON, one object with apiVersion and kind.
pub fn load_template(path: &Path) -> Result<serde_json::Value, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Usage(format!("template {}: {e}", path.display())))?;
    let v: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| {
        // The parser draws the spot over several lines; the first says it all.
        let e = e.to_string();
        let first = e.lines().next().unwrap_or("").trim_start_matches("error: ");
        Usage(format!(
            "template {}: not YAML or JSON: {first}",
            path.display()
        ))
    })?;
    if !v.is_object() || template_gvk(&v).is_none() {
        return Err(Usage(format!(
            "template {}: must be one object with apiVersion and kind",
            path.display()
        )));
    }
    Ok(v)
}

/// Serve `/metrics` (OpenMetrics text from `render`, called per request) on `listener`, on the
/// shared accept loop with its limits (`st_http::server`), until `phase` is `Stopping` or its
/// sender is gone. Other paths get 404.
pub async fn serve_text(
    listener: std::net::TcpListener,
    phase: tokio::sync::watch::Receiver<st_http::server::Phase>,
    render: std::sync::Arc<dyn Fn() -> String + Send + Sync>,
) {
    use st_http::server;
    let make = move |_peer, _activity| {
        let render = render.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let render = render.clone();
            async move {
                let (code, body) = if req.uri().path() == "/metrics" {
                    (200, render())
                } else {
                    (404, "not found: try /metrics\n".to_string())
                };
                let mut resp =
                    hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
                *resp.status_mut() = hyper::StatusCode::from_u16(code).expect("valid status");
                resp.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let stats = std::sync::Arc::new(server::Stats::default());
    let _ = server::serve(
        listener,
        None,
        server::Limits::default(),
        stats,
        phase,
        make,
    )
    .await;
}
