//! The aggregator's state, with no I/O and no clock of its own (every call gets `now`, Unix
//! seconds), so every rule here is tested directly.
//!
//! - **Intervals**: bots' snapshots merge by wall-clock second ([`hist::Intervals`], the merge
//!   the load engine's controller uses too). A second is published (a [`Point`] for the UI)
//!   once it has ended and bots had [`PUBLISH_DELAY`] to report it; a snapshot arriving later
//!   still lands in its own second (a *revision*), for [`Config::late_window`] seconds while
//!   the second is kept decoded, and after that by decoding its packed copy, up to
//!   [`Config::max_late`]. Seconds older than the late window are *closed*: packed (their JSON,
//!   histograms compressed) for the results and the journal.
//! - **No double count**: each bot's intervals arrive in order, so one number per bot, its
//!   high-water mark, tells what has been counted; a retried push at or below it is ignored.
//! - **Bots**: live while they push (every second, even when idle), stale after 3 s without
//!   ([`Config::stale_after`]), gone after 30 s ([`Config::gone_after`]);
//!   a total rate is re-split over the live bots whenever that set changes.
//! - **Names**: a push's named requests go straight into the run's per-name totals (at most
//!   [`crate::wire::MAX_NAMES`] and `other`); seconds are kept without them.
//!
//! One module per idea: `plan` (the load and its split over the live bots), `bots`
//! (registration, liveness, the bots table), `seconds` (pushes merged per second,
//! publishing, closing), `persist` (what is saved, and the restore), `events` (the run's
//! log), `answers` (summaries, windows, series and the run file).

mod answers;
mod bots;
mod events;
mod persist;
mod plan;
mod seconds;
#[cfg(test)]
mod tests;

pub use bots::{Bot, SKEW_WARN_S};
pub use persist::Saved;
pub use plan::{bot_spec, check_plan, LoadRequest, Plan};
pub use seconds::Closed;

use hist::{Intervals, Snapshot};
use load::Spec;
use report::point::Point;
use report::Event;
use seconds::Open;
use std::collections::BTreeMap;

/// A second is published this long after it ends (bots push ~0.25 s after a second ends).
pub const PUBLISH_DELAY: f64 = 1.5;

/// Limits and windows.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seconds a second stays decoded for late snapshots (≥ 60).
    pub late_window: u64,
    /// Oldest interval accepted, in seconds before now (late: from a bot's buffer).
    pub max_late: u64,
    /// Most bots registered at once.
    pub max_bots: usize,
    /// A bot with no push for this long (seconds) is stale: its share of a total rate moves
    /// to the others.
    pub stale_after: f64,
    /// A bot with no push for this long is gone.
    pub gone_after: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            late_window: 60,
            max_late: 15 * 60,
            max_bots: 20_000,
            stale_after: 3.0,
            gone_after: 30.0,
        }
    }
}

/// Why a request was refused: an HTTP status and one line.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused(pub u16, pub String);

/// What happened in a tick, for the live stream.
#[derive(Debug, Default)]
pub struct Tick {
    /// Newly published seconds.
    pub points: Vec<Point>,
    /// Published seconds that changed.
    pub revisions: Vec<Point>,
    /// New events.
    pub events: Vec<Event>,
    /// Seconds closed in this tick (for the journal), oldest first.
    pub closed: Vec<(u64, Closed)>,
}

/// Everything the aggregator knows.
pub struct State {
    cfg: Config,
    /// This run.
    pub run_id: String,
    /// Unix time the run started.
    pub started_unix: f64,
    /// The load spec bots get (rate/connections replaced by their share).
    pub spec: Spec,
    /// How the load is split.
    pub plan: Plan,
    /// The last plan that was not idle (what the run's results describe).
    pub ran: Plan,
    /// The run has ended.
    pub finished: bool,
    /// When it ended (the stage table is cut there, not after the bots' flush).
    finished_at: Option<f64>,
    /// The run was started with a schedule (stages): it ends with them, or `--run-for` after
    /// the schedule's first start (kept across restarts, whatever the new process's flags).
    scheduled_run: bool,
    /// When the run's first schedule started.
    first_schedule_start: Option<f64>,
    bots: BTreeMap<u64, Bot>,
    next_id: u64,
    generation: u64,
    intervals: Intervals,
    open: BTreeMap<u64, Open>,
    closed: BTreeMap<u64, Closed>,
    /// Points of closed seconds (the UI's history).
    history: BTreeMap<u64, Point>,
    /// Everything in closed seconds (an open second joins it when it closes: merging every
    /// push into a run total too would double the ingest cost).
    closed_total: Snapshot,
    /// Named requests, the whole run: merged as pushes arrive (each counted once, as the
    /// high-water marks keep a second from counting twice), never kept per second (a second
    /// of each name for the late window would be most of the memory).
    named: BTreeMap<String, Snapshot>,
    events: Vec<Event>,
    /// Runs the bots were in before this one (they said so registering): it restarted.
    previous_runs: Vec<String>,
    events_dropped: u64,
    new_events: Vec<Event>,
    /// Closed seconds revised by a late snapshot since the last tick.
    late_closed: Vec<u64>,
    /// An empty snapshot, for open seconds nobody reported yet.
    empty: Snapshot,
    /// Live bots, and the rate they are asked for: kept current so that a push costs nothing
    /// per bot (with 10,000 bots, counting them on every push was most of the CPU).
    live_cache: u32,
    offered_cache: f64,
    /// The set of live bots changed: re-split at the next tick (once a second, not once per
    /// joining bot: with N bots joining, N re-splits of N bots each).
    split_dirty: bool,
    /// Snapshots ignored as already counted.
    pub duplicates: u64,
    /// Pushes refused.
    pub refused: u64,
    /// Snapshots accepted.
    pub accepted: u64,
}

impl State {
    /// A new run.
    pub fn new(cfg: Config, run_id: String, now: f64, spec: Spec, plan: Plan) -> State {
        let mut s = State {
            cfg,
            run_id,
            started_unix: now,
            spec,
            ran: plan.clone(),
            plan,
            finished: false,
            finished_at: None,
            scheduled_run: false,
            first_schedule_start: None,
            bots: BTreeMap::new(),
            next_id: 1,
            generation: 0,
            intervals: Intervals::new(),
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            history: BTreeMap::new(),
            closed_total: Snapshot::default(),
            named: BTreeMap::new(),
            events: Vec::new(),
            previous_runs: Vec::new(),
            events_dropped: 0,
            new_events: Vec::new(),
            late_closed: Vec::new(),
            empty: Snapshot::default(),
            live_cache: 0,
            offered_cache: 0.0,
            split_dirty: false,
            duplicates: 0,
            refused: 0,
            accepted: 0,
        };
        s.scheduled_run = matches!(s.plan, Plan::Shaped { .. });
        s.event(now, "run", format!("run {} started", s.run_id));
        s
    }

    /// The newest assignment generation handed out.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Once a second: bot states, publishing, closing. `now` is Unix seconds.
    pub fn tick(&mut self, now: f64) -> Tick {
        self.liveness(now);
        self.follow_schedule(now);
        let mut out = self.publish(now);
        out.events = std::mem::take(&mut self.new_events);
        out
    }
}
