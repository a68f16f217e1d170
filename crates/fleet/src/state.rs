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

use crate::wire::{Assignment, Interval, Push, Register, Registered};
use hist::sparse::WireSnapshot;
use hist::{Intervals, Snapshot};
use load::Spec;
use report::point::Point;
use report::{BotRecord, Event, FleetSecond, Summary};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A second is published this long after it ends (bots push ~0.25 s after a second ends).
pub const PUBLISH_DELAY: f64 = 1.5;
/// Clock skew above this is warned about (intervals are cut by the bots' clocks).
pub const SKEW_WARN_S: f64 = 1.0;
/// Up to this many bots, a joining bot re-splits everyone at once (its cost is per bot);
/// beyond, the re-split waits for the next tick.
const IMMEDIATE_SPLIT: usize = 1000;
/// Events kept in memory (and in the results); older ones are counted, not kept.
const MAX_EVENTS: usize = 20_000;

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

/// How the load is split over the bots.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Plan {
    /// No load.
    Idle,
    /// A total open-loop rate, split evenly over the live bots.
    Total {
        /// Requests/s over all bots.
        rate: f64,
    },
    /// Every live bot sends at this rate (seed 000: 1,000 req/s each).
    PerBot {
        /// Requests/s per bot.
        rate: f64,
    },
    /// Every bot runs a closed loop with this many connections.
    Connections {
        /// Connections per bot.
        per_bot: u64,
    },
}

/// `PUT /api/load` body: one of the three ways to say how much load, and optionally a new spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// Total requests/s over all live bots.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Requests/s per bot.
    #[serde(default)]
    pub per_bot_rate: Option<f64>,
    /// Closed loop, connections per bot.
    #[serde(default)]
    pub connections_per_bot: Option<u64>,
    /// Stop the load (bots idle).
    #[serde(default)]
    pub idle: bool,
    /// A new load spec (target, method, headers, …); its own rate/connections are ignored.
    #[serde(default)]
    pub spec: Option<Spec>,
}

impl LoadRequest {
    /// The plan it asks for (`current` when it changes only the spec): the one rule for
    /// `PUT /api/load` and `scaletest aggregate`'s flags, its errors naming these fields.
    pub fn plan(&self, current: Plan) -> Result<Plan, String> {
        let given = [
            self.rate.is_some(),
            self.per_bot_rate.is_some(),
            self.connections_per_bot.is_some(),
            self.idle,
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if given > 1 {
            return Err("give one of rate, per_bot_rate, connections_per_bot or idle".into());
        }
        let plan = if self.idle {
            Plan::Idle
        } else if let Some(r) = self.rate {
            Plan::Total { rate: r }
        } else if let Some(r) = self.per_bot_rate {
            Plan::PerBot { rate: r }
        } else if let Some(c) = self.connections_per_bot {
            Plan::Connections { per_bot: c }
        } else if self.spec.is_some() {
            current
        } else {
            return Err("give one of rate, per_bot_rate, connections_per_bot, idle or spec".into());
        };
        match plan {
            Plan::Total { rate } => check_rate("rate", rate)?,
            Plan::PerBot { rate } => check_rate("per_bot_rate", rate)?,
            Plan::Connections { per_bot: 0 } => {
                return Err("connections_per_bot must be ≥ 1".into());
            }
            _ => {}
        }
        Ok(plan)
    }
}

fn check_rate(field: &str, rate: f64) -> Result<(), String> {
    if rate.is_finite() && rate > 0.0 {
        Ok(())
    } else {
        Err(format!("{field} must be a number > 0, got {rate}"))
    }
}

/// A bot as the state knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bot {
    /// What the UI and results show.
    pub record: BotRecord,
    /// Highest interval counted.
    pub hwm: u64,
    /// Its assignment now.
    pub assignment: Assignment,
    /// Aggregator time of its last contact (push or registration).
    pub seen: f64,
    /// The bot said it is idle with everything pushed, following this generation.
    #[serde(default)]
    pub flushed: Option<u64>,
}

/// A second still decoded.
#[derive(Debug, Clone, Default)]
struct Open {
    /// Its snapshot packed for saving, until it changes (saving every open second every second
    /// would spend most of the ingest budget on re-compressing unchanged histograms).
    packed: Option<String>,
    published: bool,
    /// Got data since it was published: send a revision.
    dirty: bool,
    offered: f64,
    live: u32,
}

impl Open {
    /// The second's cluster-wide extras. A bot that reported a second was live in it, and a
    /// second bots reported while the aggregator's offered rate read 0 (its first seconds
    /// after a restart, before the bots' shares were split again: their retained outboxes
    /// re-sent it) was offered what the plan asks of the bots that reported it: coverage
    /// never passes 100 % and offered follows the plan through a restart.
    fn fleet(&self, t: u64, reported: u32, plan: Plan) -> FleetSecond {
        let offered = if self.offered == 0.0 && reported > 0 {
            match plan {
                Plan::Total { rate } => rate,
                Plan::PerBot { rate } => rate * reported as f64,
                Plan::Connections { .. } | Plan::Idle => 0.0,
            }
        } else {
            self.offered
        };
        FleetSecond {
            t,
            offered,
            reported,
            live: self.live.max(reported),
        }
    }
}

/// A closed second: packed, with its point for the UI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Closed {
    /// The merged snapshot as JSON (histograms compressed).
    pub packed: String,
    /// Offered rate, coverage.
    pub fleet: FleetSecond,
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

/// What is persisted besides the closed seconds (see `store`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    /// This run.
    pub run_id: String,
    /// Unix time the run started.
    pub started_unix: f64,
    /// The load spec.
    pub spec: Spec,
    /// The split.
    pub plan: Plan,
    /// The bots.
    pub bots: Vec<Bot>,
    /// Next bot id.
    pub next_id: u64,
    /// Assignment generation counter.
    pub generation: u64,
    /// Seconds still open, packed.
    pub open: Vec<(u64, Closed)>,
    /// Events.
    pub events: Vec<Event>,
    /// Runs the bots were in before this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_runs: Vec<String>,
}

fn pack(s: &Snapshot) -> String {
    serde_json::to_string(s).expect("a snapshot serializes")
}

fn unpack(p: &str) -> Snapshot {
    serde_json::from_str(p).unwrap_or_default()
}

impl State {
    /// A new run.
    pub fn new(cfg: Config, run_id: String, now: f64, spec: Spec, plan: Plan) -> State {
        let mut s = State {
            cfg,
            run_id,
            started_unix: now,
            spec,
            plan,
            ran: plan,
            finished: false,
            bots: BTreeMap::new(),
            next_id: 1,
            generation: 0,
            intervals: Intervals::new(),
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            history: BTreeMap::new(),
            closed_total: Snapshot::default(),
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
        s.event(now, "run", format!("run {} started", s.run_id));
        s
    }

    /// Pick up a run from what was saved and the closed seconds of the journal.
    pub fn restore(cfg: Config, saved: Saved, closed: BTreeMap<u64, Closed>, now: f64) -> State {
        let mut s = State::new(
            cfg,
            saved.run_id,
            saved.started_unix,
            saved.spec,
            saved.plan,
        );
        s.events = saved.events;
        s.previous_runs = saved.previous_runs;
        s.new_events.clear();
        s.next_id = saved.next_id;
        s.generation = saved.generation;
        for b in saved.bots {
            s.bots.insert(b.record.id, b);
        }
        for (t, c) in closed {
            let snap = unpack(&c.packed);
            s.closed_total.merge(&snap);
            s.history.insert(t, Point::of(t, &snap, Some(&c.fleet)));
            s.closed.insert(t, c);
        }
        for (t, c) in saved.open {
            if s.closed.contains_key(&t) {
                // Closed in the journal after this was saved: the journal's copy is complete.
                continue;
            }
            s.intervals.restore(t, c.fleet.reported, unpack(&c.packed));
            s.open.insert(
                t,
                Open {
                    packed: None,
                    published: false,
                    dirty: false,
                    offered: c.fleet.offered,
                    live: c.fleet.live,
                },
            );
        }
        // The restarted aggregator has not heard from anyone yet; nobody goes stale for the
        // downtime itself.
        for b in s.bots.values_mut() {
            if b.record.state == "live" || b.record.state == "stale" {
                b.seen = now;
            }
        }
        s.event(
            now,
            "run",
            "aggregator restarted; run picked up from disk".into(),
        );
        s
    }

    /// What to persist now (the closed seconds are in the journal already).
    pub fn saved(&mut self) -> Saved {
        for (t, o) in self.open.iter_mut() {
            if o.packed.is_none() {
                let (_, snap) = self.intervals.get(*t).unwrap_or((0, &self.empty));
                o.packed = Some(pack(snap));
            }
        }
        Saved {
            run_id: self.run_id.clone(),
            started_unix: self.started_unix,
            spec: self.spec.clone(),
            plan: self.plan,
            bots: self.bots.values().cloned().collect(),
            next_id: self.next_id,
            generation: self.generation,
            open: self
                .open
                .iter()
                .map(|(t, o)| {
                    let reported = self.intervals.get(*t).map_or(0, |x| x.0);
                    (
                        *t,
                        Closed {
                            packed: o.packed.clone().expect("packed above"),
                            fleet: o.fleet(*t, reported, self.ran),
                        },
                    )
                })
                .collect(),
            events: self.events.clone(),
            previous_runs: self.previous_runs.clone(),
        }
    }

    fn event(&mut self, now: f64, kind: &str, text: String) {
        let e = Event {
            t: now,
            kind: kind.into(),
            text,
        };
        if self.events.len() >= MAX_EVENTS {
            self.events.remove(0);
            self.events_dropped += 1;
        }
        self.events.push(e.clone());
        self.new_events.push(e);
    }

    /// A threshold that can no longer pass ended the run (`--abort-on-fail`).
    pub fn threshold_failed(&mut self, now: f64, threshold: &str) {
        self.event(
            now,
            "threshold",
            format!("threshold {threshold} can no longer pass: the run ends"),
        );
    }

    /// Post an event from outside (`POST /api/events`).
    pub fn post_event(&mut self, now: f64, text: &str) -> Result<(), Refused> {
        let text = text.trim();
        if text.is_empty() || text.len() > 500 || text.contains('\n') {
            return Err(Refused(
                400,
                "an event is one line of 1 to 500 bytes".into(),
            ));
        }
        self.event(now, "posted", text.to_string());
        Ok(())
    }

    /// A bot registers (or registers again with its old id).
    pub fn register(
        &mut self,
        now: f64,
        r: &Register,
        instance: &str,
    ) -> Result<Registered, Refused> {
        if r.name.len() > 128 || r.host.len() > 256 || r.version.len() > 64 {
            return Err(Refused(400, "name, host or version too long".into()));
        }
        let known = r.id.filter(|id| self.bots.contains_key(id));
        let id = match known {
            Some(id) => id,
            None => {
                let active = self
                    .bots
                    .values()
                    .filter(|b| b.record.state != "gone" && b.record.state != "left")
                    .count();
                if self.bots.len() >= self.cfg.max_bots {
                    // Forget the oldest gone bot to make room, or refuse.
                    let old = self
                        .bots
                        .iter()
                        .filter(|(_, b)| b.record.state == "gone" || b.record.state == "left")
                        .min_by(|a, b| a.1.record.last_seen.total_cmp(&b.1.record.last_seen))
                        .map(|(id, _)| *id);
                    match old {
                        Some(id) if active < self.cfg.max_bots => {
                            self.bots.remove(&id);
                        }
                        _ => {
                            return Err(Refused(
                                429,
                                format!("{} bots registered: the limit", self.cfg.max_bots),
                            ))
                        }
                    }
                }
                let id = self.next_id;
                self.next_id += 1;
                id
            }
        };
        let skew_ms = (r.clock_unix - now) * 1000.0;
        let bot = self.bots.entry(id).or_insert_with(|| Bot {
            record: BotRecord {
                id,
                joined: now,
                ..Default::default()
            },
            hwm: 0,
            assignment: Assignment {
                generation: 0,
                spec: None,
                finished: false,
            },
            seen: now,
            flushed: None,
        });
        let was = std::mem::replace(&mut bot.record.state, "live".into());
        bot.record.name = r.name.clone();
        bot.record.host = r.host.clone();
        bot.record.pid = r.pid;
        bot.record.version = r.version.clone();
        bot.record.skew_ms = skew_ms;
        bot.record.last_seen = now;
        bot.seen = now;
        let hwm = bot.hwm;
        let name = r.name.clone();
        if known.is_some() && was == "live" {
            self.event(
                now,
                "bot_back",
                format!("bot {name} (#{id}) registered again"),
            );
        } else if known.is_some() {
            self.event(now, "bot_back", format!("bot {name} (#{id}) is back"));
        } else {
            self.event(now, "bot_joined", format!("bot {name} (#{id}) joined"));
        }
        if skew_ms.abs() > SKEW_WARN_S * 1000.0 {
            self.event(
                now,
                "skew",
                format!("bot {name} (#{id}) clock is {skew_ms:.0} ms off the aggregator's"),
            );
        }
        if was != "live" {
            self.joined_live(id);
        }
        if let Some(prev) = r.previous_run.as_ref().filter(|p| **p != self.run_id) {
            if !self.previous_runs.contains(prev) && self.previous_runs.len() < 16 {
                self.previous_runs.push(prev.clone());
                self.event(
                    now,
                    "restarted",
                    format!(
                        "the run restarted: bot {name} (#{id}) was in run {prev}, which this aggregator does not have (a new pod or an empty --out); what was measured before {} is not in this run",
                        report::format::utc(self.started_unix)
                    ),
                );
            }
        }
        Ok(Registered {
            id,
            hwm,
            instance: instance.to_string(),
            run: self.run_id.clone(),
        })
    }

    /// A bot leaves (SIGTERM, after its last push).
    pub fn deregister(&mut self, now: f64, id: u64) -> Result<(), Refused> {
        let bot = self
            .bots
            .get_mut(&id)
            .ok_or_else(|| Refused(404, format!("unknown bot {id}")))?;
        let was = std::mem::replace(&mut bot.record.state, "left".into());
        let rate = std::mem::take(&mut bot.record.rate);
        let name = bot.record.name.clone();
        if was == "live" {
            // A bot leaving is rare: its share moves to the others now.
            let _ = rate;
            self.resplit();
        }
        self.event(now, "bot_left", format!("bot {name} (#{id}) left"));
        Ok(())
    }

    /// A bot's push: check, count what is new, ignore what was counted. Returns the bot's
    /// high-water mark and assignment generation.
    pub fn push(&mut self, now: f64, id: u64, p: Push) -> Result<(u64, u64), Refused> {
        let refuse = |s: &mut State, code: u16, why: String| {
            s.refused += 1;
            Err(Refused(code, why))
        };
        if !self.bots.contains_key(&id) {
            return refuse(self, 404, format!("unknown bot {id}: register first"));
        }
        if let Err(e) = p.check() {
            return refuse(self, 400, e);
        }
        let oldest = (now - self.cfg.max_late as f64).max(self.started_unix - 5.0);
        let newest = now + 10.0;
        if let Some(i) = p
            .intervals
            .iter()
            .find(|i| (i.t as f64) < oldest.floor() || (i.t as f64) > newest)
        {
            return refuse(
                self,
                422,
                format!(
                    "interval {} is outside the accepted window {:.0}..{:.0} (bot clock skew?)",
                    i.t, oldest, newest
                ),
            );
        }
        let bot = self.bots.get_mut(&id).expect("checked above");
        let back = bot.record.state != "live";
        let hwm = bot.hwm;
        bot.seen = now;
        bot.record.last_seen = now;
        bot.record.skew_ms = (p.clock_unix - now) * 1000.0;
        bot.record.dropped = p.dropped;
        bot.flushed = (p.idle && p.generation == bot.assignment.generation).then_some(p.generation);
        if back {
            bot.record.state = "live".into();
        }
        let mut fresh: Vec<Interval> = Vec::new();
        for i in p.intervals {
            if i.t <= hwm {
                self.duplicates += 1;
            } else {
                fresh.push(i);
            }
        }
        let bot = self.bots.get_mut(&id).expect("checked above");
        if let Some(last) = fresh.last() {
            bot.hwm = last.t;
        }
        for i in &fresh {
            bot.record.responses += i.snap.responses;
            bot.record.errors += i.snap.failed();
        }
        let (hwm, generation, name) = (bot.hwm, bot.assignment.generation, bot.record.name.clone());
        for mut i in fresh {
            // A bot's interval bounds count from its own run's start; on the aggregator's
            // timeline the second starts at t (seconds since the run began) and keeps the
            // bot's length (short for a bot's first or last second).
            let len = (i.snap.end - i.snap.start).clamp(0.0, 1.0);
            i.snap.start = (i.t as f64 - self.started_unix.floor()).max(0.0);
            i.snap.end = i.snap.start + len;
            self.add(i.t, &i.snap);
        }
        if back {
            self.event(now, "bot_back", format!("bot {name} (#{id}) is back"));
            self.joined_live(id);
        }
        Ok((hwm, generation))
    }

    fn add(&mut self, t: u64, snap: &WireSnapshot) {
        self.accepted += 1;
        // Checked on arrival (counts agree, values are numbers): the merge cannot fail, and
        // if it did the second would only miss this bot, never count it twice.
        if let Some(c) = self.closed.get_mut(&t) {
            let _ = snap.merge_into(&mut self.closed_total);
            // Past the late window: merge into the packed copy.
            let mut s = unpack(&c.packed);
            let _ = snap.merge_into(&mut s);
            c.fleet.reported += 1;
            c.packed = pack(&s);
            self.history.insert(t, Point::of(t, &s, Some(&c.fleet)));
            self.late_closed.push(t);
            return;
        }
        self.intervals.add_with(t, |s| {
            let _ = snap.merge_into(s);
        });
        let live = self.live_count();
        let offered = self.offered();
        let o = self.open.entry(t).or_insert_with(|| Open {
            offered,
            live,
            ..Default::default()
        });
        o.packed = None;
        if o.published {
            o.dirty = true;
        }
    }

    fn live_count(&self) -> u32 {
        self.live_cache
    }

    /// The total rate asked of the live bots now, requests/s.
    pub fn offered(&self) -> f64 {
        self.offered_cache
    }

    /// A bot became live (joined, came back): it gets its share now, computed with the live
    /// count including it; everyone else is re-split at the next tick.
    fn joined_live(&mut self, id: u64) {
        if self.bots.len() <= IMMEDIATE_SPLIT {
            // Few bots: re-split everyone now, so the offered total holds at once.
            self.resplit();
            return;
        }
        self.live_cache += 1;
        self.split_dirty = true;
        let live = self.live_cache;
        let (plan, finished) = (self.plan, self.finished);
        let spec = bot_spec(&self.spec, plan, live);
        let rate = match plan {
            Plan::Total { rate } => rate / live as f64,
            Plan::PerBot { rate } => rate,
            _ => 0.0,
        };
        if let Some(b) = self.bots.get_mut(&id) {
            b.record.rate = rate;
            if b.assignment.spec != spec || b.assignment.finished != finished {
                self.generation += 1;
                b.assignment = Assignment {
                    generation: self.generation,
                    spec,
                    finished,
                };
            }
        }
        self.offered_cache += rate;
    }

    /// Set how the load is split (and optionally what it is); bots get new assignments.
    pub fn set_load(&mut self, now: f64, req: &LoadRequest) -> Result<(), Refused> {
        let plan = req.plan(self.plan).map_err(|e| Refused(400, e))?;
        let spec = req.spec.clone().unwrap_or_else(|| self.spec.clone());
        check_plan(&spec, plan).map_err(|e| Refused(400, e.to_string()))?;
        self.spec = spec;
        self.plan = plan;
        if plan != Plan::Idle {
            self.ran = plan;
        }
        self.event(now, "load", describe(plan));
        self.resplit();
        Ok(())
    }

    /// End the run: bots idle and are told the run is over.
    pub fn finish(&mut self, now: f64) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.plan = Plan::Idle;
        self.event(now, "run", "run finished".into());
        self.resplit();
    }

    /// Give every live bot its share; bump the generation of those whose share changed.
    fn resplit(&mut self) {
        let live = (self
            .bots
            .values()
            .filter(|b| b.record.state == "live")
            .count() as u32)
            .max(1);
        let finished = self.finished;
        let (plan, spec) = (self.plan, self.spec.clone());
        let mut generation = self.generation;
        for b in self.bots.values_mut() {
            if b.record.state != "live" {
                continue;
            }
            let spec = bot_spec(&spec, plan, live);
            let rate = match plan {
                Plan::Total { rate } => rate / live as f64,
                Plan::PerBot { rate } => rate,
                _ => 0.0,
            };
            b.record.rate = rate;
            if b.assignment.spec != spec || b.assignment.finished != finished {
                generation += 1;
                b.assignment = Assignment {
                    generation,
                    spec,
                    finished,
                };
            }
        }
        self.generation = generation;
        let live: Vec<&Bot> = self
            .bots
            .values()
            .filter(|b| b.record.state == "live")
            .collect();
        self.live_cache = live.len() as u32;
        self.offered_cache = live.iter().map(|b| b.record.rate).sum();
        self.split_dirty = false;
    }

    /// Every live bot is idle under its current assignment with everything pushed (after
    /// [`State::finish`]: nothing more will come).
    pub fn all_flushed(&self) -> bool {
        self.bots
            .values()
            .filter(|b| b.record.state == "live")
            .all(|b| b.flushed == Some(b.assignment.generation))
    }

    /// The newest assignment generation handed out.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A bot's assignment.
    pub fn assignment(&self, id: u64) -> Option<&Assignment> {
        self.bots.get(&id).map(|b| &b.assignment)
    }

    /// Once a second: bot states, publishing, closing. `now` is Unix seconds.
    pub fn tick(&mut self, now: f64) -> Tick {
        let mut out = Tick::default();
        // Bot states.
        let mut changed = false;
        let mut notes = Vec::new();
        let (stale_after, gone_after) = (self.cfg.stale_after, self.cfg.gone_after);
        for b in self.bots.values_mut() {
            let quiet = now - b.seen;
            let state = b.record.state.as_str();
            let next = match state {
                "live" if quiet >= stale_after => "stale",
                "stale" if quiet >= gone_after => "gone",
                _ => continue,
            };
            b.record.state = next.into();
            if next == "stale" {
                b.record.rate = 0.0;
            }
            changed = true;
            notes.push((
                format!("bot_{next}"),
                format!(
                    "bot {} (#{}) is {next}: no report for {quiet:.0} s",
                    b.record.name, b.record.id
                ),
            ));
        }
        for (k, t) in notes {
            self.event(now, &k, t);
        }
        if changed || self.split_dirty {
            self.resplit();
        }
        // Publish seconds that ended long enough ago; revise published ones that changed.
        let due = (now - PUBLISH_DELAY).floor() as u64;
        let live = self.live_count();
        let offered = self.offered();
        let keys: Vec<u64> = self.open.keys().copied().collect();
        for t in keys {
            let o = self.open.get_mut(&t).expect("key from the map");
            if !o.published && t < due {
                o.published = true;
                let (reported, snap) = self.intervals.get(t).unwrap_or((0, &self.empty));
                out.points
                    .push(Point::of(t, snap, Some(&o.fleet(t, reported, self.ran))));
            } else if o.dirty {
                o.dirty = false;
                let (reported, snap) = self.intervals.get(t).unwrap_or((0, &self.empty));
                out.revisions
                    .push(Point::of(t, snap, Some(&o.fleet(t, reported, self.ran))));
            }
        }
        let mut revised_closed = Vec::new();
        for t in std::mem::take(&mut self.late_closed) {
            if let (Some(p), Some(c)) = (self.history.get(&t), self.closed.get(&t)) {
                out.revisions.push(p.clone());
                revised_closed.push((t, c.clone()));
            }
        }
        // Make sure a second exists for every second while bots are live, even one nobody
        // reported (coverage 0 is worth seeing).
        if live > 0 && !self.finished {
            let t = (now - 1.0).floor() as u64;
            self.open.entry(t).or_insert_with(|| Open {
                offered,
                live,
                ..Default::default()
            });
        }
        // Close seconds past the late window.
        let cut = (now as u64).saturating_sub(self.cfg.late_window);
        out.closed = revised_closed;
        out.closed.extend(self.close_before(cut));
        out.events = std::mem::take(&mut self.new_events);
        out
    }

    /// Close every second (the run is over).
    pub fn close_all(&mut self) -> Vec<(u64, Closed)> {
        self.close_before(u64::MAX)
    }

    /// Bots by state: live, stale, gone (or left).
    pub fn bot_counts(&self) -> (u32, u32, u32) {
        let mut c = (0, 0, 0);
        for b in self.bots.values() {
            match b.record.state.as_str() {
                "live" => c.0 += 1,
                "stale" => c.1 += 1,
                _ => c.2 += 1,
            }
        }
        c
    }

    /// Whole-run figures.
    pub fn summary(&self, now: f64) -> Summary {
        self.summary_of(now, &self.total())
    }

    /// Whole-run figures from `total`, this state's [`State::total`] (for a caller that
    /// needs the total too: it is merged once).
    pub fn summary_of(&self, now: f64, total: &Snapshot) -> Summary {
        let (live, stale, gone) = self.bot_counts();
        Summary {
            requests: total.responses,
            errors: total.failed(),
            ok: total.ok(),
            live,
            stale,
            gone,
            p50_ms: total.quantile_ms(0.5),
            p99_ms: total.quantile_ms(0.99),
            versions: total.versions.clone(),
            elapsed_s: (now - self.started_unix).max(0.0),
        }
    }

    /// What was measured in the Unix seconds `from..to`, merged (exact percentiles), and
    /// whether the window has settled by `now`: every second in it ended at least the
    /// publishing delay ago, so the bots' pushes for it have arrived.
    pub fn window(&self, from: u64, to: u64, now: f64) -> report::Window {
        let mut w = Snapshot::default();
        for c in self.closed.range(from..to).map(|(_, c)| c) {
            w.merge(&unpack(&c.packed));
        }
        for t in self.intervals.keys().filter(|t| (from..to).contains(t)) {
            if let Some((_, s)) = self.intervals.get(t) {
                w.merge(s);
            }
        }
        w.start = 0.0;
        w.end = to.saturating_sub(from) as f64;
        report::Window {
            from,
            to,
            settled: (to as f64) <= (now - PUBLISH_DELAY).floor(),
            snapshot: w,
        }
    }

    /// Everything measured so far, merged.
    pub fn total(&self) -> Snapshot {
        let mut t = self.closed_total.clone();
        for k in self.intervals.keys() {
            if let Some((_, s)) = self.intervals.get(k) {
                t.merge(s);
            }
        }
        t
    }

    /// Published seconds after `since`, oldest first, at most `limit` (the newest ones).
    pub fn points_since(&self, since: u64, limit: usize) -> Vec<Point> {
        let mut out: Vec<Point> = self
            .history
            .range(since.saturating_add(1)..)
            .map(|(_, p)| p.clone())
            .collect();
        for (t, o) in self.open.range(since.saturating_add(1)..) {
            if o.published {
                let (reported, snap) = self.intervals.get(*t).unwrap_or((0, &self.empty));
                out.push(Point::of(*t, snap, Some(&o.fleet(*t, reported, self.ran))));
            }
        }
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
        out
    }

    /// One page of the bots table, sorted by `sort` (a column name), and the number of bots.
    pub fn bots_page(
        &self,
        offset: usize,
        limit: usize,
        sort: &str,
        desc: bool,
    ) -> (usize, Vec<BotRecord>) {
        let mut v: Vec<&BotRecord> = self.bots.values().map(|b| &b.record).collect();
        let key = |a: &&BotRecord, b: &&BotRecord| match sort {
            "name" => a.name.cmp(&b.name),
            "state" => a.state.cmp(&b.state),
            "responses" => a.responses.cmp(&b.responses),
            "errors" => a.errors.cmp(&b.errors),
            "rate" => a.rate.total_cmp(&b.rate),
            "last_seen" => a.last_seen.total_cmp(&b.last_seen),
            "skew_ms" => a.skew_ms.total_cmp(&b.skew_ms),
            _ => a.id.cmp(&b.id),
        };
        v.sort_by(|a, b| {
            let o = key(a, b).then(a.id.cmp(&b.id));
            if desc {
                o.reverse()
            } else {
                o
            }
        });
        let total = v.len();
        let page = v
            .into_iter()
            .skip(offset)
            .take(limit.min(1000))
            .cloned()
            .collect();
        (total, page)
    }

    /// The events log.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The run as a run file (after [`State::close_all`], every second is in it). Seconds
    /// from the first to the last with data, gaps filled with empty ones.
    pub fn results(&self, now: f64, info: report::RunInfo) -> report::RunFile {
        let (first, last) = match (self.closed.keys().next(), self.closed.keys().last()) {
            (Some(a), Some(b)) => (*a, *b),
            _ => (0, 0),
        };
        let mut intervals = Vec::new();
        let mut seconds = Vec::new();
        if !self.closed.is_empty() {
            for t in first..=last {
                match self.closed.get(&t) {
                    Some(c) => {
                        let mut s = unpack(&c.packed);
                        s.start = (t - first) as f64;
                        s.end = s.start + 1.0;
                        intervals.push(s);
                        seconds.push(c.fleet);
                    }
                    None => {
                        intervals.push(Snapshot {
                            start: (t - first) as f64,
                            end: (t - first) as f64 + 1.0,
                            ..Default::default()
                        });
                        seconds.push(FleetSecond {
                            t,
                            ..Default::default()
                        });
                    }
                }
            }
        }
        let mut total = self.total();
        total.start = 0.0;
        total.end = intervals.len() as f64;
        report::RunFile {
            version: report::RUNFILE_VERSION,
            tool: concat!("scaletest ", env!("CARGO_PKG_VERSION")).into(),
            started_unix: self.started_unix,
            info,
            elapsed_s: (now - self.started_unix).max(0.0),
            interrupted: false,
            peak_lanes: 0,
            in_flight_at_end: 0,
            total,
            series: report::runfile::series_of(&intervals),
            intervals,
            fleet: Some(report::Fleet {
                seconds,
                events: self.events.clone(),
                bots: self.bots.values().map(|b| b.record.clone()).collect(),
                previous_runs: self.previous_runs.clone(),
            }),
            summary: Some(self.summary(now)),
            verdicts: Vec::new(),
        }
    }

    fn close_before(&mut self, cut: u64) -> Vec<(u64, Closed)> {
        let mut out = Vec::new();
        let mut held: BTreeMap<u64, (u32, Snapshot)> = self
            .intervals
            .pop_before(cut)
            .into_iter()
            .map(|(t, n, s)| (t, (n, s)))
            .collect();
        let keep = self.open.split_off(&cut);
        let old = std::mem::replace(&mut self.open, keep);
        for t in old.keys() {
            held.entry(*t).or_default();
        }
        for (t, (reported, snap)) in held {
            let o = old.get(&t).cloned().unwrap_or_default();
            let fleet = o.fleet(t, reported, self.ran);
            self.history.insert(t, Point::of(t, &snap, Some(&fleet)));
            self.closed_total.merge(&snap);
            let c = Closed {
                packed: pack(&snap),
                fleet,
            };
            self.closed.insert(t, c.clone());
            out.push((t, c));
        }
        out
    }
}

fn describe(plan: Plan) -> String {
    match plan {
        Plan::Idle => "load: idle".into(),
        Plan::Total { rate } => format!("load: {rate} req/s in total"),
        Plan::PerBot { rate } => format!("load: {rate} req/s per bot"),
        Plan::Connections { per_bot } => format!("load: {per_bot} connections per bot"),
    }
}

/// What one of `live` bots runs under `plan`: the spec with its share of the load and no end
/// of its own (the aggregator ends the run).
pub fn bot_spec(spec: &Spec, plan: Plan, live: u32) -> Option<Spec> {
    let base = Spec {
        duration_s: None,
        requests: None,
        ..spec.clone()
    };
    match plan {
        Plan::Idle => None,
        Plan::Total { rate } => Some(base.with_rate(rate / live.max(1) as f64)),
        Plan::PerBot { rate } => Some(base.with_rate(rate)),
        Plan::Connections { per_bot } => Some(Spec {
            rate: None,
            connections: per_bot,
            ..base
        }),
    }
}

/// Whether bots can run `spec` under `plan` (a plan [`LoadRequest::plan`] made: its rates are
/// checked there): what one bot will run must be something `scaletest load` would run.
/// `PUT /api/load` and the aggregator's flags both ask here.
pub fn check_plan(spec: &Spec, plan: Plan) -> Result<(), load::SpecError> {
    match bot_spec(spec, plan, 1) {
        Some(s) => s
            .build(load::Live {
                wall_clock_ticks: true,
                rate: s.rate.as_ref().map(|_| load::RateControl::new(1.0)),
                until_stopped: true,
            })
            .map(|_| ()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Interval;
    use proptest::prelude::*;

    fn spec() -> Spec {
        Spec {
            url: Some("http://127.0.0.1:9/".into()),
            ..Spec::default()
        }
    }

    fn state() -> State {
        State::new(
            Config::default(),
            "r".into(),
            1000.0,
            spec(),
            Plan::Total { rate: 300.0 },
        )
    }

    fn reg(s: &mut State, now: f64, name: &str) -> u64 {
        register(s, now, name, None).id
    }

    /// A new bot named `name` that was in run `previous` before.
    fn register(s: &mut State, now: f64, name: &str, previous: Option<&str>) -> Registered {
        let r = Register {
            id: None,
            name: name.into(),
            host: "h".into(),
            pid: 1,
            version: "0".into(),
            clock_unix: now,
            previous_run: previous.map(str::to_string),
        };
        s.register(now, &r, "i").unwrap()
    }

    /// Bots that were in another run say so: this aggregator's run restarted (a new pod on an
    /// empty directory), once in the events and in the results; their own run is no news.
    #[test]
    fn a_bot_from_an_earlier_run_marks_the_run_as_restarted() {
        let mut s = state();
        let now = 1000.0;
        let reg = |s: &mut State, name: &str, prev: Option<&str>| register(s, now, name, prev);
        let own = s.run_id.clone();
        assert_eq!(reg(&mut s, "a", Some(&own)).run, own);
        assert_eq!(reg(&mut s, "b", None).run, own);
        reg(&mut s, "c", Some("old-run"));
        reg(&mut s, "d", Some("old-run"));
        let restarted: Vec<&Event> = s
            .events()
            .iter()
            .filter(|e| e.kind == "restarted")
            .collect();
        assert_eq!(restarted.len(), 1, "{restarted:?}");
        assert!(
            restarted[0].text.contains("was in run old-run"),
            "{}",
            restarted[0].text
        );
        let run = s.results(now, report::RunInfo::default());
        assert_eq!(
            run.fleet.unwrap().previous_runs,
            vec!["old-run".to_string()]
        );
        // It survives a restore from the saved state.
        let saved = s.saved();
        assert_eq!(saved.previous_runs, vec!["old-run".to_string()]);
    }

    fn snap(values: &[u64]) -> Snapshot {
        let mut s = Snapshot {
            end: 1.0,
            ..Default::default()
        };
        for v in values {
            s.latency.record(*v).unwrap();
            s.service.record(*v).unwrap();
            s.responses += 1;
            *s.status.entry(200).or_default() += 1;
        }
        s
    }

    fn push(
        s: &mut State,
        now: f64,
        id: u64,
        t: u64,
        values: &[u64],
    ) -> Result<(u64, u64), Refused> {
        s.push(
            now,
            id,
            Push {
                clock_unix: now,
                dropped: 0,
                intervals: vec![Interval {
                    t,
                    snap: (&snap(values)).into(),
                }],
                generation: 0,
                idle: false,
                instance: String::new(),
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Merged percentiles are the percentiles of all samples taken together, whatever
        /// the split over bots and whether they arrive through the wire format.
        #[test]
        fn merged_percentiles_equal_those_of_all_samples(
            per_bot in proptest::collection::vec(proptest::collection::vec(1u64..5_000_000, 0..200), 1..6)
        ) {
            let mut s = state();
            let mut all = hist::new_histogram();
            let ids: Vec<u64> = (0..per_bot.len()).map(|i| reg(&mut s, 1000.0, &format!("b{i}"))).collect();
            for (id, values) in ids.iter().zip(&per_bot) {
                // Through JSON, as a bot sends it.
                let p = Push { clock_unix: 1001.0, dropped: 0, intervals: vec![Interval { t: 1000, snap: (&snap(values)).into() }], generation: 0, idle: false, instance: String::new() };
                let p: Push = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
                s.push(1001.0, *id, p).unwrap();
                for v in values { all.record(*v).unwrap(); }
            }
            let t = s.tick(1002.6);
            let point = &t.points.iter().find(|p| p.t == 1000).unwrap();
            prop_assert_eq!(point.second.responses, all.len());
            for (q, got) in [(0.5, point.second.latency.p50), (0.9, point.second.latency.p90), (0.99, point.second.latency.p99), (0.999, point.second.latency.p999)] {
                let want = if all.is_empty() { 0.0 } else { all.value_at_quantile(q) as f64 / 1000.0 };
                prop_assert_eq!(got, want);
            }
            prop_assert_eq!(s.total().latency.value_at_quantile(0.99), all.value_at_quantile(0.99));
        }
    }

    /// A push as the aggregator takes it from a request body: parsed, then counted (true) or
    /// refused with a 4xx; and the state still ticks and totals.
    fn ingest(s: &mut State, id: u64, body: &[u8]) -> Result<bool, TestCaseError> {
        let mut counted = false;
        if let Ok(p) = serde_json::from_slice::<Push>(body) {
            match s.push(1001.0, id, p) {
                Ok(_) => counted = true,
                Err(Refused(code, why)) => {
                    prop_assert!((400..500).contains(&code), "{} {}", code, why)
                }
            }
        }
        let _ = s.tick(1002.6);
        let _ = s.total();
        Ok(counted)
    }

    /// A push of two seconds with a few hundred values each, as JSON.
    fn push_seed() -> serde_json::Value {
        let values: Vec<u64> = (1..300).map(|i| i * 7919 % 100_003 + 1).collect();
        let intervals = [1000, 1001]
            .map(|t| Interval {
                t,
                snap: (&snap(&values)).into(),
            })
            .to_vec();
        let p = Push {
            clock_unix: 1001.0,
            dropped: 0,
            intervals,
            generation: 0,
            idle: false,
            instance: String::new(),
        };
        serde_json::to_value(p).unwrap()
    }

    /// A consistent snapshot (it passes [`Push::check`]) whose every count is `n`.
    fn counted(n: u64) -> WireSnapshot {
        let h = hist::sparse::Buckets(vec![(1000, n)]);
        WireSnapshot {
            start: 0.0,
            end: 1.0,
            responses: n,
            bytes: n,
            status: [(200, n)].into(),
            errors: [("timeout".to_string(), n)].into(),
            latency: h.clone(),
            service: h.clone(),
            late: n,
            capped: n,
            unsent: n,
            lateness: h,
            versions: [("v1".to_string(), n)].into(),
            intended: n,
            sent: n,
            bytes_sent: n,
        }
    }

    proptest! {
        #[test]
        fn any_bytes_pushed_are_counted_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut s = state();
            let id = reg(&mut s, 1000.0, "a");
            ingest(&mut s, id, &bytes)?;
        }

        #[test]
        fn a_damaged_push_is_counted_or_refused(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in proptest::option::of(any::<usize>()),
        ) {
            let mut s = state();
            let id = reg(&mut s, 1000.0, "a");
            ingest(&mut s, id, testsupport::damaged(&push_seed(), &flips, cut).as_bytes())?;
        }

        /// A run directory damaged on disk (by hand, or a crash the journal's torn-line rule
        /// does not cover) restores or is refused; it never panics.
        #[test]
        fn a_damaged_run_directory_restores_or_is_refused(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in proptest::option::of(any::<usize>()),
        ) {
            // Built once: a minute and a half of pushes and ticks is not cheap.
            static SEED: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
            restart(&testsupport::damaged(SEED.get_or_init(saved_seed), &flips, cut));
        }

        /// Counts a bot may claim, however large: those a second can hold add up (two bots,
        /// the same second, then the run's total), the others are refused.
        #[test]
        fn pushes_of_any_counts_are_counted_or_refused(
            counts in proptest::collection::vec(
                prop_oneof![any::<u64>(), Just(u64::MAX), 0..=crate::wire::MAX_COUNT],
                2,
            ),
        ) {
            let mut s = state();
            let mut want = 0;
            for (i, n) in counts.into_iter().enumerate() {
                let id = reg(&mut s, 1000.0, &format!("b{i}"));
                let p = Push {
                    clock_unix: 1001.0,
                    dropped: n,
                    intervals: vec![Interval { t: 1000, snap: counted(n) }],
                    generation: 0,
                    idle: false,
                    instance: String::new(),
                };
                let took = ingest(&mut s, id, &serde_json::to_vec(&p).unwrap())?;
                // Refused exactly when past what a second can hold.
                prop_assert_eq!(took, n <= crate::wire::MAX_COUNT, "{}", n);
                want += if took { n } else { 0 };
            }
            prop_assert_eq!(s.total().responses, want);
        }
    }

    /// A run directory's state and journal after 90 s of one bot, as JSON: what a restarted
    /// aggregator reads back (the journal's seconds past the late window, the rest open).
    fn saved_seed() -> serde_json::Value {
        let mut s = state();
        let a = reg(&mut s, 1000.0, "a");
        let mut closed = Vec::new();
        for t in 1000..1090 {
            push(&mut s, t as f64 + 1.2, a, t, &[t, t + 7]).unwrap();
            closed.extend(s.tick(t as f64 + 1.3).closed);
        }
        serde_json::json!({"saved": s.saved(), "closed": closed})
    }

    /// Restart from `text` as `Store::open` reads it: anything that parses is restored, ticks
    /// and totals.
    fn restart(text: &str) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return;
        };
        let (Ok(saved), Ok(closed)) = (
            serde_json::from_value::<Saved>(v["saved"].clone()),
            serde_json::from_value::<Vec<(u64, Closed)>>(v["closed"].clone()),
        ) else {
            return;
        };
        let mut r = State::restore(
            Config::default(),
            saved,
            closed.into_iter().collect(),
            1095.0,
        );
        let _ = r.tick(1096.0);
        let _ = r.total();
        let _ = r.saved();
    }

    #[test]
    fn the_saved_seed_restores() {
        let v = saved_seed();
        let saved: Saved = serde_json::from_value(v["saved"].clone()).unwrap();
        let closed: Vec<(u64, Closed)> = serde_json::from_value(v["closed"].clone()).unwrap();
        assert!(
            closed.len() >= 20 && !saved.open.is_empty(),
            "{}",
            closed.len()
        );
        let r = State::restore(
            Config::default(),
            saved,
            closed.into_iter().collect(),
            1095.0,
        );
        assert_eq!(r.total().responses, 180);
    }

    #[test]
    fn the_push_seed_is_counted() {
        let mut s = state();
        let id = reg(&mut s, 1000.0, "a");
        assert!(ingest(&mut s, id, push_seed().to_string().as_bytes()).unwrap());
        assert_eq!(s.total().responses, 2 * 299);
    }

    #[test]
    fn seconds_of_bots_with_different_run_starts_stay_one_second_long() {
        let mut s = state();
        let (a, b) = (reg(&mut s, 1000.0, "a"), reg(&mut s, 1000.0, "b"));
        let mut old = snap(&[1]);
        (old.start, old.end) = (99.0, 100.0);
        s.push(
            1001.2,
            a,
            Push {
                clock_unix: 0.0,
                dropped: 0,
                intervals: vec![Interval {
                    t: 1000,
                    snap: (&old).into(),
                }],
                generation: 0,
                idle: false,
                instance: String::new(),
            },
        )
        .unwrap();
        push(&mut s, 1001.2, b, 1000, &[2]).unwrap();
        let t = s.tick(1002.6);
        let p = t.points.iter().find(|p| p.t == 1000).unwrap();
        assert_eq!((p.seconds, p.second.responses), (1.0, 2));
    }

    #[test]
    fn a_retried_push_is_counted_once() {
        let mut s = state();
        let id = reg(&mut s, 1000.0, "a");
        assert_eq!(push(&mut s, 1001.2, id, 1000, &[5, 6]).unwrap().0, 1000);
        assert_eq!(push(&mut s, 1001.3, id, 1000, &[5, 6]).unwrap().0, 1000);
        assert_eq!(s.total().responses, 2);
        assert_eq!(s.duplicates, 1);
    }

    #[test]
    fn a_silent_bot_goes_stale_then_gone_and_its_share_moves() {
        let mut s = state();
        let (a, b, c) = (
            reg(&mut s, 1000.0, "a"),
            reg(&mut s, 1000.0, "b"),
            reg(&mut s, 1000.0, "c"),
        );
        // A small fleet is re-split as each bot joins: the total holds at once.
        assert_eq!(s.offered(), 300.0);
        assert_eq!(s.bots[&a].record.rate, 100.0);
        let g = s.bots[&a].assignment.generation;
        // b and c keep pushing; a falls silent.
        for now in [1001.0, 1002.0, 1003.0] {
            push(&mut s, now, b, now as u64 - 1, &[1]).unwrap();
            push(&mut s, now, c, now as u64 - 1, &[1]).unwrap();
            s.tick(now);
        }
        assert_eq!(s.bots[&a].record.state, "stale");
        assert_eq!(s.bot_counts(), (2, 1, 0));
        // The total holds: b and c now have 150 each, under a new generation.
        assert_eq!(s.bots[&b].record.rate, 150.0);
        assert_eq!(s.offered(), 300.0);
        assert!(s.bots[&b].assignment.generation > g);
        let spec = s.bots[&b].assignment.spec.clone().unwrap();
        assert_eq!(spec.rate.as_deref(), Some("150"));
        for now in 1004..=1031 {
            push(&mut s, now as f64, b, now - 1, &[1]).unwrap();
            push(&mut s, now as f64, c, now - 1, &[1]).unwrap();
            s.tick(now as f64);
        }
        assert_eq!(s.bots[&a].record.state, "gone");
        let kinds: Vec<&str> = s.events().iter().map(|e| e.kind.as_str()).collect();
        assert!(
            kinds.contains(&"bot_stale") && kinds.contains(&"bot_gone"),
            "{kinds:?}"
        );
        // It comes back: live again, and the rate is split three ways again.
        push(&mut s, 1032.0, a, 1031, &[1]).unwrap();
        assert_eq!(s.bots[&a].record.state, "live");
        s.tick(1032.1);
        assert_eq!(s.bots[&b].record.rate, 100.0);
        assert_eq!(s.offered(), 300.0);
    }

    #[test]
    fn late_snapshots_land_in_their_own_second_and_revise_it() {
        let mut s = state();
        let (a, b) = (reg(&mut s, 1000.0, "a"), reg(&mut s, 1000.0, "b"));
        push(&mut s, 1001.2, a, 1000, &[10]).unwrap();
        let t = s.tick(1002.6);
        let p = t.points.iter().find(|p| p.t == 1000).unwrap();
        assert_eq!((p.second.responses, p.reported), (1, 1));
        // b's second 1000 arrives 20 s late: a revision of 1000, not part of 1020.
        push(&mut s, 1020.0, b, 1000, &[20, 30]).unwrap();
        let t = s.tick(1020.1);
        let r = t.revisions.iter().find(|p| p.t == 1000).unwrap();
        assert_eq!((r.second.responses, r.reported), (3, 2));
        // 100 s late: past the late window, the closed second is revised from its packed copy.
        s.tick(1070.0);
        let c = reg(&mut s, 1100.0, "c");
        push(&mut s, 1100.0, c, 1000, &[40]).unwrap();
        let t = s.tick(1100.1);
        assert!(t.closed.iter().any(|(k, _)| *k == 1000), "journaled again");
        let r = t.revisions.iter().find(|p| p.t == 1000).unwrap();
        assert_eq!((r.second.responses, r.reported), (4, 3));
        // Older than max_late (15 min) is refused and changes nothing.
        let e = push(&mut s, 2000.0, c, 1001, &[1]).unwrap_err();
        assert_eq!(e.0, 422);
        assert_eq!(s.total().responses, 4);
    }

    #[test]
    fn a_restored_run_keeps_totals_and_high_water_marks() {
        let mut s = state();
        let a = reg(&mut s, 1000.0, "a");
        for t in 1000..1070 {
            push(&mut s, t as f64 + 1.2, a, t, &[t]).unwrap();
            let tick = s.tick(t as f64 + 1.3);
            let _ = tick;
        }
        let closed: BTreeMap<u64, Closed> = s.closed.clone();
        let saved = s.saved();
        let total = s.total().responses;
        let r = State::restore(Config::default(), saved, closed, 1075.0);
        assert_eq!(r.total().responses, total);
        assert_eq!(r.bots[&a].hwm, 1069);
        // What the bot sends again after the restart is not counted twice.
        let mut r = r;
        push(&mut r, 1075.0, a, 1069, &[1]).unwrap();
        assert_eq!(r.total().responses, total);
    }

    /// Issue 27's restart: the seconds a restarted aggregator hears before the bots register
    /// again (their retained outboxes re-sent) follow the plan, and no second has more bots
    /// reporting than live.
    #[test]
    fn after_a_restart_offered_follows_the_plan_and_coverage_stays_within_100_percent() {
        let mut s = state();
        let (a, b) = (reg(&mut s, 1000.0, "a"), reg(&mut s, 1000.0, "b"));
        for t in 1000..1010 {
            for id in [a, b] {
                push(&mut s, t as f64 + 1.2, id, t, &[t]).unwrap();
            }
            let _ = s.tick(t as f64 + 1.3);
        }
        let closed: BTreeMap<u64, Closed> = s.closed.clone();
        let saved = s.saved();
        // Down from 1010 to 1014; the bots re-send 1010.. and go on.
        let mut r = State::restore(Config::default(), saved, closed, 1015.0);
        for t in 1010..1020 {
            for id in [a, b] {
                push(&mut r, (t as f64 + 1.2).max(1015.0), id, t, &[t]).unwrap();
            }
            let _ = r.tick((t as f64 + 1.3).max(1015.1));
        }
        r.finish(1021.0);
        r.close_all();
        let run = r.results(1021.0, report::RunInfo::default());
        let f = run.fleet.unwrap();
        for s in f.seconds.iter().filter(|s| s.reported > 0) {
            assert!(s.reported <= s.live, "{s:?}");
            assert_eq!(s.offered, 300.0, "{s:?}");
        }
        assert_eq!(f.seconds.iter().filter(|s| s.reported == 2).count(), 20);
    }

    #[test]
    fn load_requests_are_checked_like_load_flags() {
        let mut s = state();
        let bad = |s: &mut State, json: &str| {
            s.set_load(1.0, &serde_json::from_str(json).unwrap())
                .unwrap_err()
                .1
        };
        assert!(bad(&mut s, r#"{"rate": 0}"#).contains("> 0"));
        assert_eq!(
            bad(&mut s, r#"{"rate": 5, "per_bot_rate": 5}"#),
            "give one of rate, per_bot_rate, connections_per_bot or idle"
        );
        assert!(bad(&mut s, r#"{}"#).contains("one of"));
        assert!(bad(
            &mut s,
            r#"{"rate": 5, "spec": {"url": "http://127.0.0.1:9/", "http2": false, "streams": 3}}"#
        )
        .contains("--streams"));
        s.set_load(
            1.0,
            &serde_json::from_str(r#"{"connections_per_bot": 4}"#).unwrap(),
        )
        .unwrap();
        assert_eq!(s.plan, Plan::Connections { per_bot: 4 });
    }
}
