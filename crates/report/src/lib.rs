//! How a run is shown and stored; no network, no clock.
//!
//! - [`table`]: the autocannon tables of seed 002 (Latency; Req/Sec and Bytes/Sec over
//!   per-second samples), the summary line, status and error counts, and `--percentiles`,
//!   laid out from [`summary`]: the figures computed once from a run.
//! - [`runfile`]: the versioned JSON run file, written atomically, read back for `report`.
//! - [`html`]: one self-contained HTML page per run (charts with event markers, the percentile
//!   spectrum, the tables); [`compare`]: two runs side by side, as text or HTML.
//! - [`threshold`]: `--threshold` expressions and their verdicts on a run's totals.
//! - [`point`]: one second as charts draw it, shared with the aggregator's live UI;
//!   [`assets`]: the embedded chart library; `example` (tests, feature `example`): a synthetic
//!   run for tests.
//!
//! All take a [`RunFile`], the one record every reader shares, so a new format only adds a
//! module here.

pub mod assets;
pub mod compare;
#[cfg(any(test, feature = "example"))]
pub mod example;
pub mod format;
pub mod html;
pub mod names;
pub mod point;
pub mod runfile;
pub mod stages;
pub mod summary;
pub mod table;
pub mod threshold;

pub use runfile::{
    write_bytes_atomic, write_json_atomic, BotRecord, Event, Fleet, FleetSecond, Kind, RunFile,
    RunInfo, Summary, Window, RUNFILE_VERSION,
};
