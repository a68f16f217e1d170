//! How a run is shown and stored; no network, no clock.
//!
//! - [`table`]: the autocannon tables of seed 002 (Latency; Req/Sec and Bytes/Sec over
//!   per-second samples), the summary line, status and error counts, and `--percentiles`.
//! - [`runfile`]: the versioned JSON run file, written atomically, read back for `report`.
//!
//! Both take a [`RunFile`], the one record every reader shares, so a new format only adds a
//! module here.

pub mod assets;
pub mod format;
pub mod point;
pub mod runfile;
pub mod table;

pub use runfile::{
    write_json_atomic, BotRecord, Event, Fleet, FleetSecond, RunFile, RunInfo, Summary,
    RUNFILE_VERSION,
};
