//! `scaletest k8s`: the data-plane demo (target servers, loadbots, the aggregator) as pods on a
//! Kubernetes cluster, driven through the API with kube-rs. No cluster manager of our own:
//! Deployments, Services and rolling updates are Kubernetes' own.
//!
//! Pure parts first, as in kube-rs: [`spec`] (what a run is, sizing from measured per-core
//! figures), [`manifest`] (the typed k8s-openapi objects and their YAML), [`wait`] (rollout state
//! and why pods are not serving). [`cluster`] calls the API server: server-side apply with one
//! field manager, polling until ready within a deadline, scale, rollout, status and teardown;
//! [`aggregator`] reaches the run's aggregator through the API server's port-forward (status,
//! rollout events, rate, a window of seconds judged against thresholds: the rollout's verdict
//! and `check`, the UI on a local port).
//!
//! A run loads its own `serve` Deployment, or with [`spec::TargetSpec`] the user's service
//! (`up --target URL`): then only the bots and the aggregator run.
//!
//! A run owns its namespace (`scaletest-RUN` unless told otherwise); every object carries the
//! run's label ([`kapi::LABEL_RUN`]) and the namespace carries the run's [`spec::Spec`]
//! ([`ANN_SPEC`]), so later commands change what is deployed rather than starting again.
//!
//! ```
//! let spec = k8s::spec::Spec::new("demo");
//! let keys = k8s::manifest::Keys::complete(&spec, None).unwrap();
//! let yaml = k8s::manifest::render(&k8s::manifest::objects(&spec, &keys));
//! assert!(yaml.contains("kind: Deployment"));
//! ```

pub mod aggregator;
pub mod cluster;
pub mod launch;
pub mod manifest;
pub mod runner;
pub mod spec;
pub mod wait;

/// Annotation on a run's namespace: its [`spec::Spec`] as JSON.
pub const ANN_SPEC: &str = "scaletest.dev/spec";

/// Why a `k8s` command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's to fix (bad values, a namespace that is someone else's, no such run): exit 2.
    #[error("{0}")]
    Usage(String),
    /// A call to the API server failed (unreachable, unauthorized, forbidden, invalid):
    /// `what` names the object or step, `cause` what the server or the connection said.
    #[error("{what}: {cause}")]
    Api {
        /// What was being done.
        what: String,
        /// Why it failed.
        cause: String,
    },
    /// Objects did not become ready (or go away) in time; names each one and why.
    #[error("{0}")]
    NotReady(String),
}

impl Error {
    /// Wrap a kube-rs error: the server's message for API errors, the cause chain otherwise.
    pub fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |e| Error::Api {
            what,
            cause: describe(&e),
        }
    }
}

/// One line for a kube-rs error.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let kind = match s.code {
                401 => "unauthorized (check the kubeconfig's credentials)".to_string(),
                403 => "forbidden".to_string(),
                _ => format!("{} {}", s.code, s.reason),
            };
            format!("{kind}: {}", s.message)
        }
        other => {
            let mut parts = vec![other.to_string()];
            let mut src = std::error::Error::source(other);
            while let Some(s) = src {
                let t = s.to_string();
                if !parts.iter().any(|p| p.contains(&t)) {
                    parts.push(t);
                }
                src = s.source();
            }
            parts.join(": ")
        }
    }
}
