//! `scaletest demo`: seed 000's one-million-requests demo on one machine. Target servers
//! (`scaletest serve`) behind `scaletest balance`, loadbots (`scaletest bot`) and the
//! aggregator with its web UI (`scaletest aggregate`), each a child process on loopback,
//! driven through a scenario of phases (warm-up, scale up, a rolling update under load,
//! scale down), each phase an event on the UI; at the end, per-phase tables and checks from
//! the aggregator's run file, and CPU per request for sizing.
//!
//! - [`scenario`]: the TOML phases, validated before anything starts; the built-ins.
//! - [`supervise`]: child processes that cannot outlive the demo.
//! - [`run`](mod@run): the phase runner.
//! - [`phases`]: per-phase results cut from the run file.
//! - [`ctl`]: the file channel `scaletest ctl` uses to act on a running demo.
//! - [`api`]: the blocking control calls to the children.
//!
//! The CLI (`crates/cli/src/cmd/demo.rs`, `ctl.rs`) parses flags, handles signals and
//! prints; everything else is here.

pub mod api;
pub mod ctl;
pub mod phases;
pub mod run;
pub mod scenario;
pub mod supervise;

pub use run::{prepare_run_dir, run, Balancer, Config, DemoError, Outcome, Sizing};
pub use scenario::{Load, Scenario, ScenarioError};
