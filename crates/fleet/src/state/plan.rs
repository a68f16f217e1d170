//! The load and its split: how much load ([`Plan`], asked for by a [`LoadRequest`] or the
//! aggregator's flags), what one bot runs of it ([`bot_spec`]), and the re-split over the
//! live bots whenever that set or the plan changes (a bot whose share changed gets a new
//! assignment generation).

use super::{Bot, Refused, State};
use crate::wire::Assignment;
use load::Spec;
use serde::{Deserialize, Serialize};

/// Up to this many bots, a joining bot re-splits everyone at once (its cost is per bot);
/// beyond, the re-split waits for the next tick.
const IMMEDIATE_SPLIT: usize = 1000;

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
        let live = self.live_cache;
        let (plan, finished) = (self.plan, self.finished);
        let spec = bot_spec(&self.spec, plan, live);
        let rate = match plan {
            Plan::Total { rate } => rate / live as f64,
            Plan::PerBot { rate } => rate,
            _ => 0.0,
        };
        if let Some(b) = self.bots.get_mut(&id) {
            b.set_rate(now, rate);
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
        self.resplit(now);
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
        self.resplit(now);
    }

    /// Give every live bot its share; bump the generation of those whose share changed.
    pub(super) fn resplit(&mut self, now: f64) {
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
            b.set_rate(now, rate);
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
        // Folded from +0.0: f64's `sum` starts at -0.0, which no bots would show as "-0".
        self.offered_cache = live.iter().fold(0.0, |a, b| a + b.record.rate);
        self.split_dirty = false;
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
    if spec.connection_stages.is_some() {
        // Each bot would start its stages when it joins: the fleet's sum would follow none.
        return Err(load::SpecError::new(
            "{connection_stages} are for `scaletest load`: bots run a fixed number of connections each",
        ));
    }
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
