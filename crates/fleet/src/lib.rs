//! Loadbots and the aggregator: the data plane of seed 000's "one million requests per
//! second" demo.
//!
//! - [`bot`]: `scaletest bot`, a long-running load generator on the `load` engine that takes
//!   its load spec from the aggregator and pushes one [`hist::Snapshot`] per wall-clock second.
//! - [`agg`]: `scaletest aggregate`, which merges the bots' snapshots second by second
//!   ([`state`]: cluster-wide percentiles of all samples from merged histograms, within
//!   0.1 % as the histograms keep 3 significant digits; coverage, bots live /
//!   stale / gone with their share of a total rate re-split, and what a lost bot's unreported
//!   seconds may hold), serves the live UI ([`ui`]), the
//!   read and control APIs and `/metrics` ([`metrics`]), saves the run as it goes ([`store`])
//!   and writes `results.json` and `report.html` at the end.
//! - [`wire`]: what they say to each other, checked on arrival.

pub mod agg;
pub mod bot;
pub mod metrics;
pub mod state;
pub mod store;
pub mod ui;
pub mod wire;

/// The wall clock as Unix seconds: what bots and the aggregator cut their seconds by.
pub use st_http::stamp::now_unix;
