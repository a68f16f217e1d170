//! The bots: registration (again, after an aggregator restart, with the id a bot had),
//! leaving, liveness (live while they push, stale after [`Config::stale_after`], gone after
//! [`Config::gone_after`]; a stale one's unreported seconds and the most they may hold, at
//! the highest rate it was assigned in them), their assignments and the bots table.
//!
//! [`Config::stale_after`]: super::Config::stale_after
//! [`Config::gone_after`]: super::Config::gone_after

use super::{Refused, State};
use crate::wire::{Assignment, Register, Registered};
use report::BotRecord;
use serde::{Deserialize, Serialize};

/// Clock skew above this is warned about (intervals are cut by the bots' clocks).
pub const SKEW_WARN_S: f64 = 1.0;

/// A bot as the state knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bot {
    /// What the UI and results show.
    pub record: BotRecord,
    /// Highest interval counted.
    pub hwm: u64,
    /// Its assignment now (saved without its spec, which is the run's: a restored run deals
    /// the spec again, with a new generation).
    #[serde(serialize_with = "without_spec")]
    pub assignment: Assignment,
    /// Aggregator time of its last contact (push or registration).
    pub seen: f64,
    /// The bot said it is idle with everything pushed, following this generation.
    #[serde(default)]
    pub flushed: Option<u64>,
    /// Rates it was assigned (aggregator time from which, requests/s), from the one in
    /// effect when its first unreported second began: what those seconds may have run at.
    #[serde(default)]
    pub rates: Vec<(f64, f64)>,
    /// The second it went stale in, while it stays silent: its unreported seconds end there.
    #[serde(default)]
    pub stale_in: Option<u64>,
}

/// An assignment as saved: its spec is the run's, saved once.
fn without_spec<S: serde::Serializer>(a: &Assignment, s: S) -> Result<S::Ok, S::Error> {
    Assignment {
        spec: None,
        ..a.clone()
    }
    .serialize(s)
}

impl Bot {
    /// Its rate from `now` on, requests/s (kept for the bound on its unreported seconds).
    pub(super) fn set_rate(&mut self, now: f64, rate: f64) {
        self.record.rate = rate;
        if self.rates.last().map(|r| r.1) != Some(rate) {
            self.rates.push((now, rate));
        }
    }

    /// It has reported every second up to `hwm`: only rates in effect from then on can
    /// have run the seconds it has not (a second of margin for the bot's clock and for an
    /// assignment on its way).
    pub(super) fn reported(&mut self) {
        let from = self.hwm as f64;
        let keep = self.rates.iter().rposition(|r| r.0 <= from).unwrap_or(0);
        self.rates.drain(..keep);
    }

    /// It went silent (`Some(second)`, stale) or spoke again (`None`): its record's
    /// unreported seconds, from the first it has not reported to the one it went stale in,
    /// and the most they may hold, at the highest rate it was assigned since.
    pub(super) fn silent_since(&mut self, stale_in: Option<u64>) {
        self.stale_in = stale_in;
        let (seconds, most) = match stale_in {
            Some(until) => {
                let from = (self.hwm + 1).max(self.record.joined.floor() as u64);
                let seconds = (until + 1).saturating_sub(from);
                let rate = self.rates.iter().map(|r| r.1).fold(0.0, f64::max);
                (seconds, (seconds as f64 * rate).ceil() as u64)
            }
            None => (0, 0),
        };
        self.record.unreported_s = seconds;
        self.record.unreported_max = most;
    }
}

impl State {
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
        if r.wire != crate::wire::WIRE {
            return Err(Refused(400, crate::wire::other_wire(r.wire)));
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
            assignment: Assignment::default(),
            seen: now,
            flushed: None,
            rates: Vec::new(),
            stale_in: None,
        });
        let was = std::mem::replace(&mut bot.record.state, "live".into());
        bot.record.name = r.name.clone();
        bot.record.host = r.host.clone();
        bot.record.pid = r.pid;
        bot.record.version = r.version.clone();
        bot.record.skew_ms = skew_ms;
        bot.record.last_seen = now;
        bot.seen = now;
        bot.silent_since(None);
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
            self.joined_live(now, id);
        }
        let mut hwm = hwm;
        if let Some(prev) = r.previous_run.as_ref().filter(|p| **p != self.run_id) {
            // The first second this run takes (push's window): the bot's older retained
            // seconds are skipped, not sent to be refused in batches with ones it takes.
            let first = (self.started_unix - 5.0).floor().max(1.0) as u64;
            let bot = self.bots.get_mut(&id).expect("registered above");
            bot.hwm = bot.hwm.max(first - 1);
            hwm = bot.hwm;
            if !self.previous_runs.contains(prev) && self.previous_runs.len() < 16 {
                self.previous_runs.push(prev.clone());
                self.event(
                    now,
                    "restarted",
                    format!(
                        "aggregator restarted with no saved state (a new pod or an empty --out): bot {name} (#{id}) was in run {prev}; seconds before {} are missing from this run",
                        report::format::utc(first as f64)
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
            self.resplit(now);
        }
        self.event(now, "bot_left", format!("bot {name} (#{id}) left"));
        Ok(())
    }

    /// Live bots that fell silent go stale (their share moves to the others), stale ones
    /// gone; the split follows.
    pub(super) fn liveness(&mut self, now: f64) {
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
                b.silent_since(Some(now.floor() as u64));
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
            self.resplit(now);
        }
    }

    /// Every live bot is idle under its current assignment with everything pushed (after
    /// [`State::finish`]: nothing more will come).
    pub fn all_flushed(&self) -> bool {
        self.bots
            .values()
            .filter(|b| b.record.state == "live")
            .all(|b| b.flushed == Some(b.assignment.generation))
    }

    /// A bot's assignment.
    pub fn assignment(&self, id: u64) -> Option<&Assignment> {
        self.bots.get(&id).map(|b| &b.assignment)
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
}
