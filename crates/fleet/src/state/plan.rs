//! The load and its split: how much load ([`Plan`], asked for by a [`LoadRequest`] or the
//! aggregator's flags), what one bot runs of it ([`bot_spec`]), and the re-split over the
//! live bots whenever that set or the plan changes (a bot whose share changed gets a new
//! assignment generation).
//!
//! A total rate that changes by plan (stages, steps) is one schedule for the whole fleet: it
//! starts on the first whole Unix second at least [`SCHEDULE_LEAD`] after the plan is set
//! with bots live (or after the first bot becomes live), every bot walks `shape / live` from that instant, a bot
//! joining later joins the schedule where it is, and a re-split rescales the bots' shares
//! from that moment (`load::RateControl`): the fleet's sends add up to the schedule.

use super::{Bot, Refused, State};
use crate::wire::Assignment;
use load::Spec;
use pace::RateShape;
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;

/// Up to this many bots, a joining bot re-splits everyone at once (its cost is per bot);
/// beyond, the re-split waits for the next tick.
const IMMEDIATE_SPLIT: usize = 1000;

/// A fleet's schedule starts this long after it is set (rounded up to a whole second, so the
/// stages' bounds fall on the seconds the results are cut in): time for the bots to fetch
/// their assignments and open their connections.
pub const SCHEDULE_LEAD: f64 = 2.0;

/// How the load is split over the bots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// A total rate that changes by plan (stages, steps), split evenly over the live bots,
    /// who all walk it from `start_unix`.
    Shaped {
        /// The fleet's schedule (never a ramp: [`RateShape::without_ramp`]).
        shape: RateShape,
        /// The Unix second the schedule starts at; `None` until a bot is live.
        start_unix: Option<f64>,
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
    /// Total requests/s over all live bots: a number, or a schedule in `--rate`'s text
    /// (`stages:30s:1000,1m:1000`, `steps:…`; a ramp needs a duration: give it as stages).
    #[serde(default, deserialize_with = "number_or_shape")]
    pub rate: Option<RateShape>,
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
    pub fn plan(&self, current: &Plan) -> Result<Plan, String> {
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
        } else if let Some(r) = &self.rate {
            match r.without_ramp(None) {
                Some(RateShape::Constant { rate }) => Plan::Total { rate },
                Some(shape) => Plan::Shaped {
                    shape,
                    start_unix: None,
                },
                None => {
                    return Err(format!(
                        "rate {r}: a ramp needs a duration; give it as stages \
                         (stages:0s:FROM,DURATION:TO)"
                    ))
                }
            }
        } else if let Some(r) = self.per_bot_rate {
            Plan::PerBot { rate: r }
        } else if let Some(c) = self.connections_per_bot {
            Plan::Connections { per_bot: c }
        } else if self.spec.is_some() {
            current.clone()
        } else {
            return Err("give one of rate, per_bot_rate, connections_per_bot, idle or spec".into());
        };
        match &plan {
            Plan::Total { rate } => check_rate("rate", *rate)?,
            Plan::PerBot { rate } => check_rate("per_bot_rate", *rate)?,
            Plan::Connections { per_bot: 0 } => {
                return Err("connections_per_bot must be ≥ 1".into());
            }
            _ => {}
        }
        Ok(plan)
    }
}

/// `rate` as a JSON number (`400`) or as `--rate`'s text (`"stages:5s:2000"`).
fn number_or_shape<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RateShape>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Number(f64),
        Text(String),
    }
    match Option::<Given>::deserialize(d)? {
        None => Ok(None),
        Some(Given::Number(rate)) => Ok(Some(RateShape::Constant { rate })),
        Some(Given::Text(t)) => t.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

fn check_rate(field: &str, rate: f64) -> Result<(), String> {
    if rate.is_finite() && rate > 0.0 {
        Ok(())
    } else {
        Err(format!("{field} must be a number > 0, got {rate}"))
    }
}

impl State {
    pub(super) fn live_count(&self) -> u32 {
        self.live_cache
    }

    /// The total rate asked of the live bots now, requests/s.
    pub fn offered(&self) -> f64 {
        self.offered_cache
    }

    /// A bot became live (joined, came back): it gets its share now, computed with the live
    /// count including it; everyone else is re-split at the next tick.
    pub(super) fn joined_live(&mut self, now: f64, id: u64) {
        if self.bots.len() <= IMMEDIATE_SPLIT {
            // Few bots: re-split everyone now, so the offered total holds at once.
            self.resplit(now);
            return;
        }
        self.live_cache += 1;
        self.split_dirty = true;
        self.start_schedule(now);
        let live = self.live_cache;
        let finished = self.finished;
        let spec = bot_spec(&self.spec, &self.plan, live).map(Arc::new);
        let rate = self.plan.share(live);
        let start = self.plan.start_unix();
        // The last place until the re-split deals the places again.
        let share = spec
            .as_ref()
            .filter(|s| s.varies())
            .map(|_| load::template::Share {
                index: live.saturating_sub(1),
                of: live.max(1),
            });
        if let Some(b) = self.bots.get_mut(&id) {
            b.set_rate(now, rate);
            if b.assignment.spec != spec
                || b.assignment.finished != finished
                || b.assignment.rate_start_unix != start
                || b.assignment.share != share
            {
                self.generation += 1;
                b.assignment = Assignment {
                    generation: self.generation,
                    spec,
                    finished,
                    rate_start_unix: start,
                    share,
                };
            }
        }
        self.offered_cache += rate;
        self.follow_schedule(now);
    }

    /// Set how the load is split (and optionally what it is); bots get new assignments.
    pub fn set_load(&mut self, now: f64, req: &LoadRequest) -> Result<(), Refused> {
        let plan = req.plan(&self.plan).map_err(|e| Refused(400, e))?;
        let spec = req.spec.clone().unwrap_or_else(|| self.spec.clone());
        check_plan(&spec, &plan).map_err(|e| Refused(400, e.to_string()))?;
        self.spec = spec;
        self.event(now, "load", describe(&plan));
        self.plan = plan;
        self.resplit(now);
        Ok(())
    }

    /// End the run: bots idle and are told the run is over.
    pub fn finish(&mut self, now: f64) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.finished_at = Some(now);
        self.plan = Plan::Idle;
        self.event(now, "run", "run finished".into());
        self.resplit(now);
    }

    /// Give every live bot its share; bump the generation of those whose share changed.
    pub(super) fn resplit(&mut self, now: f64) {
        if self.plan != Plan::Idle {
            self.ran = self.plan.clone();
        }
        let live_now = self
            .bots
            .values()
            .filter(|b| b.record.state == "live")
            .count() as u32;
        if live_now > 0 {
            self.start_schedule(now);
        }
        let live = live_now.max(1);
        let finished = self.finished;
        let spec = bot_spec(&self.spec, &self.plan, live).map(Arc::new);
        let rate = self.plan.share(live);
        let start = self.plan.start_unix();
        let mut generation = self.generation;
        // Each live bot's place among them, by id: its share of the sequence and the rows
        // (given only when the requests vary: a change of places is a new assignment).
        let mut index = 0;
        for b in self.bots.values_mut() {
            if b.record.state != "live" {
                continue;
            }
            b.set_rate(now, rate);
            let share = (spec.as_ref())
                .filter(|s| s.varies())
                .map(|_| load::template::Share { index, of: live });
            index += 1;
            if b.assignment.spec != spec
                || b.assignment.finished != finished
                || b.assignment.rate_start_unix != start
                || b.assignment.share != share
            {
                generation += 1;
                b.assignment = Assignment {
                    generation,
                    spec: spec.clone(),
                    finished,
                    rate_start_unix: start,
                    share,
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
        // Folded from +0.0: f64's `sum` starts at -0.0, which no bots would show as "-0".
        self.offered_cache = live.iter().fold(0.0, |a, b| a + b.record.rate);
        self.split_dirty = false;
        self.follow_schedule(now);
    }

    /// A schedule set with no bot live starts once one is: [`SCHEDULE_LEAD`] from now, on a
    /// whole second.
    fn start_schedule(&mut self, now: f64) {
        if let Plan::Shaped {
            shape,
            start_unix: None,
        } = &self.plan
        {
            let start = (now + SCHEDULE_LEAD).ceil();
            let text = format!("schedule {shape} starts at second {start:.0} (Unix)");
            self.plan = Plan::Shaped {
                shape: shape.clone(),
                start_unix: Some(start),
            };
            self.first_schedule_start.get_or_insert(start);
            self.ran = self.plan.clone();
            self.event(now, "load", text);
        }
    }

    /// Under a schedule, what is asked now: each live bot's share and the total (a bot's
    /// recorded rate stays its peak share, the bound on what its unreported seconds hold).
    pub(super) fn follow_schedule(&mut self, now: f64) {
        let Some((shape, start, length)) = self.plan.started() else {
            return;
        };
        // The bots' schedules end with the stages: nothing is asked after them.
        let t = now - start;
        self.offered_cache = if t < 0.0 || t >= length || self.live_cache == 0 {
            0.0
        } else {
            shape.rate_at(t, f64::INFINITY)
        };
    }

    /// When a run started with a schedule ends: `run_for` seconds after the schedule first
    /// started (from the run's start while no bot has come), or with its stages; `None` for
    /// other runs (their `--run-for` counts from the run's start) and for a schedule with no
    /// end of its own (steps) and no `run_for`.
    pub fn scheduled_end(&self, run_for: Option<f64>) -> Option<f64> {
        if !self.scheduled_run {
            return None;
        }
        match run_for {
            Some(d) => Some(self.first_schedule_start.unwrap_or(self.started_unix) + d),
            None => self.schedule_end(),
        }
    }

    /// The run was started with a schedule (see [`State::scheduled_end`]).
    pub fn scheduled_run(&self) -> bool {
        self.scheduled_run
    }

    /// When the schedule ends, if the plan is one with an end of its own (stages).
    pub fn schedule_end(&self) -> Option<f64> {
        let (_, start, length) = self.plan.started()?;
        length.is_finite().then_some(start + length)
    }
}

impl Plan {
    /// What one of `live` bots is asked for, requests/s (under a schedule: its peak).
    pub fn share(&self, live: u32) -> f64 {
        match self {
            Plan::Total { rate } => rate / live.max(1) as f64,
            Plan::Shaped { shape, .. } => shape.peak() / live.max(1) as f64,
            Plan::PerBot { rate } => *rate,
            Plan::Idle | Plan::Connections { .. } => 0.0,
        }
    }

    /// The Unix second a schedule starts at.
    pub fn start_unix(&self) -> Option<f64> {
        match self {
            Plan::Shaped { start_unix, .. } => *start_unix,
            _ => None,
        }
    }

    /// A started schedule: its shape, its start (Unix) and how long it lasts in seconds (its
    /// stages'; infinite for steps). The bots' schedules end there: nothing is asked after.
    fn started(&self) -> Option<(&RateShape, f64, f64)> {
        let Plan::Shaped {
            shape,
            start_unix: Some(start),
        } = self
        else {
            return None;
        };
        let length = shape
            .own_duration()
            .map_or(f64::INFINITY, |d| d.as_secs_f64());
        Some((shape, *start, length))
    }

    /// Under a started schedule, the sends it asks for in the Unix second `t` (all bots).
    pub fn scheduled_in(&self, t: u64) -> Option<f64> {
        let (shape, start, length) = self.started()?;
        // Nothing before the start, nor after the stages.
        let n = |x: f64| shape.count_until((x - start).clamp(0.0, length), f64::INFINITY);
        Some(n(t as f64 + 1.0) - n(t as f64))
    }

    /// The planned stages of a started schedule that ran until `end` (Unix), as seconds from
    /// `first` (the run file's first second): what each asked for.
    pub fn stages(&self, first: u64, end: f64) -> Vec<report::stages::StagePlan> {
        let Some((shape, start, length)) = self.started() else {
            return Vec::new();
        };
        let from = start - first as f64;
        // No hold after the stages: the bots' schedules end there.
        let ran = (end - start).min(length);
        shape
            .stages_over(ran.max(0.0))
            .into_iter()
            .map(|(a, b, planned)| report::stages::StagePlan {
                start_s: from + a,
                end_s: from + b,
                planned: Some(planned),
                connections: None,
            })
            .collect()
    }
}

fn describe(plan: &Plan) -> String {
    match plan {
        Plan::Idle => "load: idle".into(),
        Plan::Total { rate } => format!("load: {rate} req/s in total"),
        Plan::Shaped { shape, .. } => format!("load: {shape} in total"),
        Plan::PerBot { rate } => format!("load: {rate} req/s per bot"),
        Plan::Connections { per_bot } => format!("load: {per_bot} connections per bot"),
    }
}

/// What one of `live` bots runs under `plan`: the spec with its share of the load and no end
/// of its own (the aggregator ends the run).
pub fn bot_spec(spec: &Spec, plan: &Plan, live: u32) -> Option<Spec> {
    let base = Spec {
        duration_s: None,
        requests: None,
        ..spec.clone()
    };
    match plan {
        Plan::Idle => None,
        Plan::Total { rate } => Some(base.with_rate(rate / live.max(1) as f64)),
        Plan::Shaped { shape, .. } => Some(Spec {
            rate: Some(shape.scaled(1.0 / live.max(1) as f64)),
            ..base
        }),
        Plan::PerBot { rate } => Some(base.with_rate(*rate)),
        Plan::Connections { per_bot } => Some(Spec {
            rate: None,
            connections: *per_bot,
            ..base
        }),
    }
}

/// Whether bots can run `spec` under `plan` (a plan [`LoadRequest::plan`] made: its rates are
/// checked there): what one bot will run must be something `scaletest load` would run.
/// `PUT /api/load` and the aggregator's flags both ask here.
pub fn check_plan(spec: &Spec, plan: &Plan) -> Result<(), load::SpecError> {
    if spec.connection_stages.is_some() {
        // Each bot would start its stages when it joins: the fleet's sum would follow none.
        return Err(load::SpecError::new(
            "{connection_stages} are for `scaletest load`: bots run a fixed number of connections each",
        ));
    }
    if spec.max_names.is_some_and(|n| n > crate::wire::MAX_NAMES) {
        return Err(load::SpecError::new(format!(
            "{{max_names}}: a fleet keeps at most {} names apart",
            crate::wire::MAX_NAMES
        )));
    }
    match bot_spec(spec, plan, 1) {
        Some(s) => s
            .build(load::Live {
                wall_clock_ticks: true,
                rate: s.rate.as_ref().map(|_| load::RateControl::new()),
                until_stopped: true,
                shape_start_unix: plan.start_unix(),
                ..Default::default()
            })
            .map(|_| ()),
        None => Ok(()),
    }
}
