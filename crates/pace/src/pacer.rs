//! [`Pacer`]: a rate shape walked send by send, in the shape's own time. A run may join the
//! shape late (a loadbot joining a fleet whose stages started before it: [`Pacer::join_at`])
//! and change its rate while it runs (a bot's share when the fleet grows:
//! [`Pacer::rescale_at`]); either way the sends follow `scale × N(t)` from that moment, so
//! the bots of a fleet add up to the fleet's schedule.

use crate::{Arrival, PaceError, RateShape};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// The open-loop schedule: yields intended send times, as offsets from the run's start.
#[derive(Debug, Clone)]
pub struct Pacer {
    shape: RateShape,
    arrival: Arrival,
    /// End of the schedule, in the shape's time; `None` runs until the caller stops asking.
    end: Option<f64>,
    /// Used by ramps as the time to ramp over.
    total: f64,
    /// Count position since the last (re)start, in sends: k for uniform, Σ Eᵢ for Poisson.
    position: f64,
    /// The shape's count N(t) at the last (re)start.
    base: f64,
    /// The rate is `scale ×` the shape's since the last (re)start.
    scale: f64,
    /// The shape's time at the run's offset 0 (negative: the shape starts later).
    shift: f64,
    rng: SmallRng,
}

impl Pacer {
    /// A schedule for `shape` over `duration` (None: unbounded, not allowed for ramps; for
    /// stages, as long as they last).
    /// `seed` makes Poisson arrivals reproducible; each worker should get its own.
    pub fn new(
        shape: RateShape,
        arrival: Arrival,
        duration: Option<Duration>,
        seed: u64,
    ) -> Result<Self, PaceError> {
        if matches!(shape, RateShape::Ramp { .. }) && duration.is_none() {
            return Err(PaceError::RampWithoutDuration);
        }
        // Stages last as long as they say unless the run's duration says otherwise.
        let end = duration.or(shape.own_duration()).map(|d| d.as_secs_f64());
        let mut p = Pacer {
            shape,
            arrival,
            end,
            total: end.unwrap_or(f64::INFINITY),
            position: 0.0,
            base: 0.0,
            scale: 1.0,
            shift: 0.0,
            rng: SmallRng::seed_from_u64(seed),
        };
        p.position = p.first_position();
        Ok(p)
    }

    fn first_position(&mut self) -> f64 {
        match self.arrival {
            Arrival::Uniform => 0.0,
            Arrival::Poisson => self.exp1(),
        }
    }

    fn exp1(&mut self) -> f64 {
        // 1 - U is in (0, 1], so the log is finite.
        let u: f64 = self.rng.gen();
        -(1.0 - u).ln()
    }

    /// The run starts `at` seconds into the shape (negative: before the shape starts): the
    /// run's offset 0 is the shape's time `at`, and sends due before it are not this run's.
    /// Call before the first [`Pacer::next`].
    pub fn join_at(&mut self, at: f64) {
        if !at.is_finite() {
            return;
        }
        self.shift = at;
        self.base = self.shape.count_until(at.max(0.0), self.total);
        self.position = self.first_position();
    }

    /// The scheduled rate (requests/s) at `offset` into the run.
    pub fn rate_at(&self, offset: Duration) -> f64 {
        let t = offset.as_secs_f64() + self.shift;
        if t < 0.0 {
            return 0.0;
        }
        self.scale * self.shape.rate_at(t, self.total)
    }

    /// From `at` (an offset from the run's start) on, send at `factor ×` the shape's rate (a
    /// live rate change; the factor is over the shape this pacer was made with, not over
    /// the last one). A factor ≤ 0 is ignored.
    pub fn rescale_at(&mut self, at: Duration, factor: f64) {
        if !(factor.is_finite() && factor > 0.0) {
            return;
        }
        let t = (at.as_secs_f64() + self.shift).max(0.0);
        self.base = self.shape.count_until(t, self.total);
        self.scale = factor;
        self.position = self.first_position();
    }
}

/// Intended send times, as offsets from the start of the run, in order.
impl Iterator for Pacer {
    type Item = Duration;

    /// The intended time of the next send, or `None` once the schedule has passed its end.
    fn next(&mut self) -> Option<Duration> {
        let n = self.base + self.position / self.scale;
        let t = self.shape.time_of_count(n, self.total);
        if t.is_infinite() {
            return None; // the schedule ended at rate 0
        }
        if let Some(end) = self.end {
            if t >= end {
                return None;
            }
        }
        self.position += match self.arrival {
            Arrival::Uniform => 1.0,
            Arrival::Poisson => self.exp1(),
        };
        Some(Duration::from_secs_f64((t - self.shift).max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(p: &mut Pacer) -> Vec<f64> {
        std::iter::from_fn(|| p.next())
            .map(|d| d.as_secs_f64())
            .collect()
    }

    fn stages(text: &str) -> Pacer {
        Pacer::new(text.parse().unwrap(), Arrival::Uniform, None, 7).unwrap()
    }

    #[test]
    fn a_late_joiner_sends_only_what_is_due_after_it_joined() {
        // 0→100/s over 2 s (100 sends), then 100/s for 2 s (200 sends).
        let mut whole = stages("stages:2s:100,2s:100");
        let whole = times(&mut whole);
        assert_eq!(whole.len(), 300);
        let mut late = stages("stages:2s:100,2s:100");
        late.join_at(1.0);
        let late = times(&mut late);
        // N(1) = 25: the 275 sends after it, at the same times less the second it joined at.
        assert_eq!(late.len(), 275);
        for (a, b) in late.iter().zip(&whole[25..]) {
            assert!((a - (b - 1.0)).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn joining_before_the_shape_starts_waits_for_it() {
        let mut p = stages("stages:0s:10,1s:10");
        p.join_at(-2.0);
        let t = times(&mut p);
        assert_eq!(t.len(), 10);
        assert!(
            (t[0] - 2.0).abs() < 1e-9 && (t[9] - 2.9).abs() < 1e-9,
            "{t:?}"
        );
        assert_eq!(p.rate_at(Duration::from_secs(1)), 0.0);
        assert_eq!(p.rate_at(Duration::from_millis(2500)), 10.0);
    }

    #[test]
    fn shares_rescaled_mid_stage_add_up_to_the_schedule() {
        // One bot alone for the first second, then two bots with half each.
        let shape: RateShape = "stages:4s:400".parse().unwrap();
        let total = shape.count_until(4.0, 4.0);
        let mut alone = Pacer::new(shape.clone(), Arrival::Uniform, None, 1).unwrap();
        let mut first: Vec<f64> = Vec::new();
        for t in alone.by_ref() {
            let t = t.as_secs_f64();
            if t >= 1.0 {
                break;
            }
            first.push(t);
        }
        alone.rescale_at(Duration::from_secs(1), 0.5);
        let rest_a = times(&mut alone);
        let mut joiner = Pacer::new(shape.scaled(0.5), Arrival::Uniform, None, 2).unwrap();
        joiner.join_at(1.0);
        let rest_b = times(&mut joiner);
        let sent = (first.len() + rest_a.len() + rest_b.len()) as f64;
        assert!((sent - total).abs() <= 2.0, "{sent} of {total}");
        assert_eq!(first.len(), 50, "N(1) = 400/4 × 1² / 2");
    }

    #[test]
    fn a_share_of_the_same_schedule_is_found_and_another_is_not() {
        let a: RateShape = "stages:5s:2000,5s:2000,5s:6000".parse().unwrap();
        assert_eq!(
            a.scaled(1.0 / 3.0).ratio_to(&a.scaled(0.5)),
            Some(2.0 / 3.0)
        );
        assert_eq!(
            a.ratio_to(&"stages:5s:2000,5s:2000,4s:6000".parse().unwrap()),
            None
        );
        assert_eq!(
            a.ratio_to(&"stages:5s:2000,5s:2000,5s:5000".parse().unwrap()),
            None
        );
        let c: RateShape = "300".parse().unwrap();
        assert_eq!(c.ratio_to(&"100".parse().unwrap()), Some(3.0));
        assert_eq!(c.ratio_to(&a), None);
        assert_eq!(a.peak(), 6000.0);
    }

    #[test]
    fn a_ramp_over_a_known_time_becomes_stages() {
        let r: RateShape = "ramp:100..300".parse().unwrap();
        assert_eq!(r.without_ramp(None), None);
        let s = r.without_ramp(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(s.text(), "stages:0s:100,10s:300");
        assert_eq!(s.count_until(10.0, 10.0), r.count_until(10.0, 10.0));
    }
}
