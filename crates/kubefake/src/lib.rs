//! Test-only: an in-process fake of the Kubernetes API server, faithful where scaletest's
//! control-plane tools depend on it. The HTTP layer (paths, watch streams, discovery) comes
//! next; [`store`] holds the semantics.

pub mod store;
