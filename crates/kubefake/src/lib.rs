//! Test-only: an in-process fake of the Kubernetes API server, faithful where scaletest's
//! control-plane tools depend on it: it copies kube-apiserver v1.28.7 (HTTP/2 SETTINGS, watch
//! headers, 410s, error messages); what it chose instead is listed, with the real server's
//! behaviour, in docs/hollow-nodes.md. Never part of the shipped binary.

// Test-only: the fake API server keeps its store under a lock, as a real one serializes writes.
#![allow(clippy::disallowed_types)]

pub mod apply;
pub mod controllers;
mod portforward;
pub mod server;
pub mod store;

pub use server::{write_kubeconfig, write_kubeconfig_with_token, FakeApi, Options};
pub use store::{ApiError, Resource};
