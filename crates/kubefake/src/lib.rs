//! Test-only: an in-process fake of the Kubernetes API server, faithful where scaletest's
//! control-plane tools depend on it. Never part of the shipped binary.

// Test-only: the fake API server keeps its store under a lock, as a real one serializes writes.
#![allow(clippy::disallowed_types)]

pub mod apply;
pub mod controllers;
mod portforward;
pub mod server;
pub mod store;

pub use server::{write_kubeconfig, write_kubeconfig_with_token, FakeApi, Options};
pub use store::{ApiError, Resource};
