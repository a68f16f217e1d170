//! Test-only: an in-process fake of the Kubernetes API server, faithful where scaletest's
//! control-plane tools depend on it. Every behaviour copies kube-apiserver v1.28.7 (the
//! recordings in `k8s-reference/`): `/version` and discovery, HTTP/2 SETTINGS, watch headers,
//! bookmarks and 410s, error bodies and messages, pod binding and graceful deletion, the
//! TokenRequest, pod logs through the kubelet; what it chose instead is listed, with the real
//! server's behaviour, in docs/hollow-nodes.md. Never part of the shipped binary.
//!
//! Modules, from the bottom: [`error`], [`resource`], [`patch`], [`selectors`] and [`apply`]
//! under the [`store`]; the feed of changes to watches; the shared state; [`server`] starts the
//! listener whose handler parses each request once into a verb (`route`) and answers it from
//! discovery, one function per verb, the watch stream, or the subresources (binding, token,
//! log, portforward), counting what it served in `/metrics` as that server does.
//! [`controllers`] play the controller-manager's, scheduler's and kubelets' parts when a test
//! asks.

// Test-only: the fake API server keeps its store under a lock, as a real one serializes writes.
#![allow(clippy::disallowed_types)]

mod admit;
pub mod apply;
pub mod controllers;
mod discovery;
pub mod error;
mod feed;
mod handler;
mod listen;
mod metrics;
pub mod patch;
mod podlog;
mod portforward;
mod reply;
pub mod resource;
mod route;
pub mod selectors;
pub mod server;
mod state;
pub mod store;
mod subresources;
mod verbs;
mod watch;

pub use error::ApiError;
pub use resource::Resource;
pub use server::{write_kubeconfig, write_kubeconfig_with_token, FakeApi, Options};
