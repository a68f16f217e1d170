//! Walking the scenario: each phase in steps of one replica (servers, bots and load moved
//! together), its rolling update, `[search]`'s rising steps judged on the aggregator's
//! window, and `keep`; each phase's [`Span`] for the results.

use super::{describe, now_unix, Demo, DemoError, Halt, Span};
use crate::scenario::{Load, Phase, Search};
use crate::{api, phases};
use std::time::{Duration, Instant};

impl Demo<'_> {
    /// One phase: its steps of one replica, its rollout, events, and its span.
    pub(super) fn run_phase(
        &mut self,
        label: &str,
        first: bool,
        p: &Phase,
        spans: &mut Vec<Span>,
    ) -> Result<(), Halt> {
        self.phase = format!("{label} {}", p.name);
        let start = now_unix();
        let t0 = Instant::now();
        let from_s = self.servers.len() as u32;
        let from_b = self.bots.len() as u32;
        let to_s = p.servers.unwrap_or(from_s);
        let to_b = p.bots.unwrap_or(from_b);
        let from_l = self.load.clone();
        let to_l = p.load.clone().unwrap_or(from_l.clone());
        let mut desc = format!(
            "phase {label}: {} ({:.1} s)",
            p.name,
            p.duration.as_secs_f64()
        );
        if from_s != to_s || first {
            desc += &format!(", servers {from_s}→{to_s}");
        }
        if from_b != to_b || first {
            desc += &format!(", bots {from_b}→{to_b}");
        }
        desc += &format!(", load {}", describe(&to_l));
        if let Some(v) = &p.rollout {
            desc += &format!(", rolling update to {v}");
        }
        self.event(&desc)?;
        let span_of = |a: u32, b: u32| {
            if a == b {
                format!("{b}")
            } else {
                format!("{a}→{b}")
            }
        };
        let ran = format!(
            "servers {}, bots {}, load {}{}",
            span_of(from_s, to_s),
            span_of(from_b, to_b),
            if from_l == to_l {
                describe(&to_l)
            } else {
                format!("{} → {}", describe(&from_l), describe(&to_l))
            },
            p.rollout
                .as_ref()
                .map_or(String::new(), |v| format!(", rolling update to {v}"))
        );
        let steps = from_s.abs_diff(to_s).max(from_b.abs_diff(to_b));
        let steps = if steps == 0 && from_l != to_l {
            1
        } else {
            steps
        };
        // One slot per replacement; servers added by the steps are replaced too.
        let rolls = if p.rollout.is_some() {
            from_s.max(to_s)
        } else {
            0
        };
        let slot = p.duration / (steps + rolls).max(1);
        for k in 1..=steps {
            self.pump(t0 + slot * (k - 1))?;
            let f = k as f64 / steps as f64;
            let s = step(from_s, to_s, f);
            let b = step(from_b, to_b, f);
            let l = between(&from_l, &to_l, f);
            let lower = rate_of(&l) < rate_of(&self.load);
            if lower {
                self.set_load(l.clone())?;
            }
            if s > self.servers.len() as u32 {
                self.scale_servers(s)?;
            }
            self.scale_bots(b)?;
            if s < self.servers.len() as u32 {
                self.scale_servers(s)?;
            }
            if !lower && l != self.load {
                self.set_load(l)?;
            }
        }
        if let Some(v) = &p.rollout {
            self.version = v.clone();
            let mut k = steps;
            while let Some(j) = self.servers.iter().position(|s| &s.version != v) {
                self.pump(t0 + slot * k)?;
                let old = self.servers[j].child.name.clone();
                self.replace_server(j)?;
                let new = self
                    .servers
                    .last()
                    .map(|s| s.child.name.clone())
                    .unwrap_or_default();
                self.event(&format!("{old} replaced by {new} ({v})"))?;
                k += 1;
            }
        }
        self.pump(t0 + p.duration)?;
        spans.push(Span {
            name: p.name.clone(),
            start,
            end: now_unix(),
            load: Some(self.load.clone()),
            checks: p.checks.clone(),
            ran,
        });
        Ok(())
    }

    /// `[search]`: steps of the last rate × factor until one is not sustained, judged on the
    /// aggregator's merged seconds of each step as the sustained rate is.
    pub(super) fn search(&mut self, search: Search, spans: &mut Vec<Span>) -> Result<(), Halt> {
        let Load::Rate(mut rate) = self.load else {
            return Ok(());
        };
        let p99 = self.cfg.scenario.sustain_p99_ms;
        for k in 1.. {
            // Round to hundreds: step names stay readable.
            rate = ((rate * search.factor) / 100.0).round() * 100.0;
            if rate > search.until_rate {
                self.event(&format!(
                    "search: {rate}/s would pass until_rate {}: the search stops there",
                    search.until_rate
                ))?;
                break;
            }
            let step = Phase {
                name: format!("{rate}/s"),
                duration: search.duration,
                load: Some(Load::Rate(rate)),
                servers: None,
                bots: None,
                rollout: None,
                checks: Vec::new(),
            };
            let cpu_before = self.cpu_by_role();
            self.run_phase(&format!("search {k}"), false, &step, spans)?;
            let cpu_after = self.cpu_by_role();
            // Judged as the sustained rate is: on the step's seconds after the take-up.
            let (start, end) = spans.last().map_or((0.0, 0.0), |s| (s.start, s.end));
            let take_up = phases::TAKE_UP_S as f64;
            let (total, seconds) = self.window((start + take_up).min(end - 1.0), end)?;
            if !phases::sustains(&total, seconds, rate, p99) {
                self.event(&format!(
                    "search: {rate}/s not sustained ({:.0}/s served, {} failed, {} resets, p99 {:.2} ms): the search stops",
                    total.responses as f64 / seconds.max(1.0),
                    total.failed(),
                    phases::resets(&total),
                    total.quantile_ms(0.99)
                ))?;
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                let secs = search.duration.as_secs_f64();
                self.event(&format!(
                    "search: at {rate}/s, {}",
                    super::saturated(&cpu_before, &cpu_after, secs, cores)
                ))?;
                break;
            }
        }
        Ok(())
    }

    /// What the aggregator measured in the seconds whose middle falls in `start..end` (as
    /// [`phases::slice`] cuts a phase), once it has heard every one of them.
    pub(super) fn window(&mut self, start: f64, end: f64) -> Result<(hist::Snapshot, f64), Halt> {
        let from = (start - 0.5).ceil() as u64;
        let to = ((end - 0.5).ceil() as u64).max(from + 1);
        let path = format!("/api/window?from={from}&to={to}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = api::ok(self.agg(), "GET", &path, Some(&self.token), "")?;
            let w: report::Window = serde_json::from_str(&text)
                .map_err(|e| DemoError::Results(format!("GET {path}"), e.to_string()))?;
            if w.settled || Instant::now() >= deadline {
                return Ok((w.snapshot, (to - from) as f64));
            }
            self.pump(Instant::now() + Duration::from_millis(250))?;
        }
    }

    pub(super) fn scenario(&mut self, spans: &mut Vec<Span>) -> Result<(), Halt> {
        let cfg = self.cfg;
        let n = cfg.scenario.phases.len();
        for (i, p) in cfg.scenario.phases.iter().enumerate() {
            self.run_phase(&format!("{}/{n}", i + 1), i == 0, p, spans)?;
        }
        if let Some(search) = cfg.scenario.search {
            self.search(search, spans)?;
        }
        if self.cfg.keep {
            self.phase = "kept".into();
            let start = now_unix();
            self.event("scenario done; everything keeps running (scaletest ctl acts on it); Ctrl-C ends the run")?;
            let r = self.pump(Instant::now() + Duration::from_secs(365 * 24 * 3600));
            spans.push(Span {
                name: "kept".into(),
                start,
                end: now_unix(),
                load: Some(self.load.clone()),
                checks: Default::default(),
                ran: format!(
                    "servers {}, bots {}, load {} (as ctl left them)",
                    self.servers.len(),
                    self.bots.len(),
                    describe(&self.load)
                ),
            });
            return r;
        }
        Ok(())
    }
}

fn step(from: u32, to: u32, f: f64) -> u32 {
    (from as f64 + (to as f64 - from as f64) * f).round() as u32
}

/// How much load, to order changes (a schedule by its peak).
fn rate_of(l: &Load) -> f64 {
    match l {
        Load::Rate(r) => *r,
        Load::Schedule(s) => s.peak(),
        Load::Connections(c) => *c as f64,
    }
}

/// The load a fraction `f` of the way from `a` to `b`; a change of kind (or to a schedule,
/// which says how it moves) happens at once.
fn between(a: &Load, b: &Load, f: f64) -> Load {
    match (a, b) {
        (Load::Rate(x), Load::Rate(y)) => Load::Rate((x + (y - x) * f).round()),
        (Load::Connections(x), Load::Connections(y)) => {
            Load::Connections((*x as f64 + (*y as f64 - *x as f64) * f).round() as u64)
        }
        (_, b) => b.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_move_one_replica_at_a_time_and_the_rate_with_them() {
        let f = |k: u32| k as f64 / 3.0;
        assert_eq!(
            (1..=3).map(|k| step(1, 4, f(k))).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(
            (1..=3).map(|k| step(4, 1, f(k))).collect::<Vec<_>>(),
            [3, 2, 1]
        );
        assert_eq!(
            between(&Load::Rate(1000.0), &Load::Rate(4000.0), f(1)),
            Load::Rate(2000.0)
        );
        assert_eq!(
            between(&Load::Rate(1.0), &Load::Connections(5), 0.5),
            Load::Connections(5)
        );
    }
}
