//! When to send: the schedule of an open-loop run.
//!
//! A [`Pacer`] is a pure function of "how many sends so far" (and a seeded RNG for Poisson
//! arrivals): [`Pacer::next`] returns the *intended* send time of the next request as an offset
//! from the start of the run, or `None` when the schedule is over. No clock is read and nothing
//! sleeps; the load engine owns the clock and measures latency from these intended times, which
//! is what corrects for coordinated omission.
//!
//! Every rate shape is described by its cumulative count `N(t) = ∫₀ᵗ r(s) ds`. Uniform arrivals
//! put the k-th send at `N⁻¹(k)`; Poisson arrivals put it at `N⁻¹(E₁ + … + E_k)` with `E_i`
//! unit-exponential (the time-rescaling construction of a non-homogeneous Poisson process), so
//! ramps and steps work with either arrival law without special cases.
//!
//! Every shape is a piecewise-linear rate (see [`RateShape::walk`]): a constant is one level, a
//! ramp one segment, steps are jumps and holds, and stages (k6's ramping arrival rate) are a
//! list of segments, each moving in a straight line to its rate over its duration.
//!
//! ```
//! use pace::{Arrival, Pacer, RateShape};
//! use std::time::Duration;
//! let shape: RateShape = "1000".parse().unwrap();
//! let mut p = Pacer::new(shape, Arrival::Uniform, Some(Duration::from_secs(1)), 0).unwrap();
//! assert_eq!(p.next(), Some(Duration::ZERO));
//! assert_eq!(p.next(), Some(Duration::from_millis(1)));
//! ```

mod concurrency;
mod pacer;
pub use concurrency::Concurrency;
pub use pacer::Pacer;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A rate shape could not be parsed or makes no sense. Never retryable: it is bad input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PaceError {
    /// The text is not one of the accepted forms.
    #[error(
        "invalid rate {text:?}: {why} (expected R, ramp:FROM..TO, steps:R1,R2,...@DURATION or \
         stages:DURATION:RATE,...)"
    )]
    Syntax {
        /// What the user wrote.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// Stages of connections that cannot be parsed.
    #[error("invalid connection stages {text:?}: {why} (expected DURATION:Nc,..., e.g. 30s:10c,2m:100c)")]
    Connections {
        /// What the user wrote.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// A rate of zero or less, or not a finite number.
    #[error("rate must be a number > 0, got {0}")]
    NotPositive(String),
    /// A ramp needs a duration to ramp over.
    #[error("a ramp rate needs a run duration to ramp over")]
    RampWithoutDuration,
}

/// How the request rate (requests per second) changes over the run. It is written and read
/// (serde, `--rate`) in one text form, `1000`, `ramp:A..B`, `steps:A,B@10s` or
/// `stages:30s:1000,…`, parsed once wherever it comes from ([`RateShape::text`] gives it back).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum RateShape {
    /// The same rate for the whole run.
    Constant {
        /// Requests per second.
        rate: f64,
    },
    /// A straight line from `from` to `to` over the run's duration.
    Ramp {
        /// Rate at the start, requests per second.
        from: f64,
        /// Rate at the end, requests per second.
        to: f64,
    },
    /// Each level held for `every`; the last level holds until the run ends.
    Steps {
        /// The rates, in order, requests per second.
        levels: Vec<f64>,
        /// How long each level lasts.
        every: Duration,
    },
    /// From 0, each stage moves in a straight line to its rate over its duration (a stage
    /// of 0 s is a jump); after the last stage its rate holds while the run lasts. With no
    /// run duration given, the run lasts as long as the stages.
    Stages {
        /// The stages, in order.
        stages: Vec<Stage>,
    },
}

/// One stage of [`RateShape::Stages`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// How long the stage lasts.
    pub over: Duration,
    /// The rate at its end, requests per second (≥ 0).
    pub to: f64,
}

impl From<RateShape> for String {
    fn from(shape: RateShape) -> String {
        shape.text()
    }
}

impl TryFrom<String> for RateShape {
    type Error = PaceError;
    fn try_from(text: String) -> Result<Self, PaceError> {
        text.parse()
    }
}

fn positive(s: &str) -> Result<f64, PaceError> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| PaceError::NotPositive(format!("{s:?}")))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(PaceError::NotPositive(s.trim().to_string()))
    }
}

impl FromStr for RateShape {
    type Err = PaceError;
    fn from_str(text: &str) -> Result<Self, PaceError> {
        let syntax = |why: &str| PaceError::Syntax {
            text: text.to_string(),
            why: why.to_string(),
        };
        if let Some(rest) = text.strip_prefix("ramp:") {
            let (a, b) = rest
                .split_once("..")
                .ok_or_else(|| syntax("a ramp is ramp:FROM..TO"))?;
            return Ok(RateShape::Ramp {
                from: positive(a)?,
                to: positive(b)?,
            });
        }
        if let Some(rest) = text.strip_prefix("steps:") {
            let (levels, every) = rest
                .split_once('@')
                .ok_or_else(|| syntax("steps need @DURATION, e.g. steps:100,200@10s"))?;
            let levels = levels
                .split(',')
                .map(positive)
                .collect::<Result<Vec<_>, _>>()?;
            let every = humantime::parse_duration(every.trim())
                .map_err(|e| syntax(&format!("step duration {every:?}: {e}")))?;
            if every.is_zero() {
                return Err(syntax("step duration must be > 0"));
            }
            return Ok(RateShape::Steps { levels, every });
        }
        if let Some(rest) = text.strip_prefix("stages:") {
            return stages(rest).map_err(|why| syntax(&why));
        }
        Ok(RateShape::Constant {
            rate: positive(text)?,
        })
    }
}

/// `DURATION:RATE,...` (k6's stages): e.g. `30s:1000,5m:1000,10s:0`.
fn stages(text: &str) -> Result<RateShape, String> {
    Ok(RateShape::Stages {
        stages: stage_list_of(text, Unit::Rate)?,
    })
}

/// What the number of a stage counts.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    /// Requests per second: `30s:1000`.
    Rate,
    /// Connections, a whole number with a `c`: `30s:10c`.
    Connections,
}

/// `DURATION:N,...`, the one parser of stages (rates or connections). Errors name the stage.
pub(crate) fn stage_list_of(text: &str, unit: Unit) -> Result<Vec<Stage>, String> {
    let (nothing, example) = match unit {
        Unit::Rate => ("every stage's rate is 0", "DURATION:RATE"),
        Unit::Connections => ("every stage has 0 connections", "DURATION:Nc"),
    };
    let mut stages = Vec::new();
    for (i, part) in text.split(',').enumerate() {
        let n = i + 1;
        let (over, to) = part
            .split_once(':')
            .ok_or_else(|| format!("stage {n} ({part:?}) needs a duration: {example}"))?;
        let over = humantime::parse_duration(over.trim())
            .map_err(|e| format!("stage {n}'s duration {over:?}: {e}"))?;
        let to: f64 = match unit {
            Unit::Rate => to
                .trim()
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                .ok_or_else(|| format!("stage {n}'s rate {to:?} is not a number ≥ 0"))?,
            Unit::Connections => to
                .trim()
                .strip_suffix(['c', 'C'])
                .and_then(|c| c.parse::<u32>().ok())
                .ok_or_else(|| {
                    format!("stage {n}'s connections {to:?} are not a whole number ≥ 0 with a c")
                })?
                .into(),
        };
        stages.push(Stage { over, to });
    }
    if stages.iter().all(|s| s.to == 0.0) {
        return Err(format!("{nothing}: nothing would be sent"));
    }
    if stages.iter().all(|s| s.over.is_zero()) {
        return Err("the stages last 0 s".into());
    }
    Ok(stages)
}

impl fmt::Display for RateShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateShape::Constant { rate } => write!(f, "{rate}/s"),
            RateShape::Ramp { from, to } => write!(f, "ramp {from}/s → {to}/s"),
            RateShape::Steps { levels, every } => write!(
                f,
                "steps {}/s every {}",
                level_list(levels),
                humantime::format_duration(*every)
            ),
            RateShape::Stages { stages } => write!(f, "stages {}", stage_list(stages, Unit::Rate)),
        }
    }
}

fn level_list(levels: &[f64]) -> String {
    let l: Vec<String> = levels.iter().map(|r| format!("{r}")).collect();
    l.join(",")
}

/// Stages as [`stage_list_of`] reads them: `30s:1000,…` or, of connections, `30s:10c,…`.
pub(crate) fn stage_list(stages: &[Stage], unit: Unit) -> String {
    let suffix = match unit {
        Unit::Rate => "",
        Unit::Connections => "c",
    };
    let l: Vec<String> = stages
        .iter()
        .map(|s| format!("{}:{}{suffix}", humantime::format_duration(s.over), s.to))
        .collect();
    l.join(",")
}

impl RateShape {
    /// The text form `--rate` takes and serde writes: parsing it gives this shape back.
    pub fn text(&self) -> String {
        match self {
            RateShape::Constant { rate } => format!("{rate}"),
            RateShape::Ramp { from, to } => format!("ramp:{from}..{to}"),
            RateShape::Steps { levels, every } => format!(
                "steps:{}@{}",
                level_list(levels),
                humantime::format_duration(*every)
            ),
            RateShape::Stages { stages } => format!("stages:{}", stage_list(stages, Unit::Rate)),
        }
    }

    /// The same shape with every rate multiplied by `factor` (a worker's share of the total).
    pub fn scaled(&self, factor: f64) -> RateShape {
        match self {
            RateShape::Constant { rate } => RateShape::Constant {
                rate: rate * factor,
            },
            RateShape::Ramp { from, to } => RateShape::Ramp {
                from: from * factor,
                to: to * factor,
            },
            RateShape::Steps { levels, every } => RateShape::Steps {
                levels: levels.iter().map(|r| r * factor).collect(),
                every: *every,
            },
            RateShape::Stages { stages } => RateShape::Stages {
                stages: stages
                    .iter()
                    .map(|s| Stage {
                        over: s.over,
                        to: s.to * factor,
                    })
                    .collect(),
            },
        }
    }

    /// The factor `f` with `self == other.scaled(f)` (the same shape with every rate
    /// multiplied), if there is one: a bot's new share of the same fleet schedule.
    pub fn ratio_to(&self, other: &RateShape) -> Option<f64> {
        let (a, b) = (self.levels(), other.levels());
        if a.len() != b.len() || self.scaled(0.0) != other.scaled(0.0) {
            return None;
        }
        let f = a
            .iter()
            .zip(&b)
            .find(|(_, y)| **y > 0.0)
            .map(|(x, y)| x / y)?;
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-12);
        (f > 0.0 && a.iter().zip(&b).all(|(x, y)| close(*x, y * f))).then_some(f)
    }

    /// Every rate the shape names, in order.
    fn levels(&self) -> Vec<f64> {
        match self {
            RateShape::Constant { rate } => vec![*rate],
            RateShape::Ramp { from, to } => vec![*from, *to],
            RateShape::Steps { levels, .. } => levels.clone(),
            RateShape::Stages { stages } => stages.iter().map(|s| s.to).collect(),
        }
    }

    /// The highest rate the shape reaches.
    pub fn peak(&self) -> f64 {
        self.levels().into_iter().fold(0.0, f64::max)
    }

    /// The same schedule in a form that needs no run duration: a ramp over `total` becomes
    /// its two stages (a jump to its start, the line to its end); `None` for a ramp without
    /// one. A fleet's schedule is walked by bots that do not know the run's length.
    pub fn without_ramp(&self, total: Option<Duration>) -> Option<RateShape> {
        match self {
            RateShape::Ramp { from, to } => Some(RateShape::Stages {
                stages: vec![
                    Stage {
                        over: Duration::ZERO,
                        to: *from,
                    },
                    Stage {
                        over: total?,
                        to: *to,
                    },
                ],
            }),
            other => Some(other.clone()),
        }
    }

    /// Stages whose last rate (when above 0) then holds for `d` more: a fleet's schedule
    /// that keeps its load until something changes it (`aggregate --run-for`, a demo phase);
    /// other shapes hold their last rate anyway.
    pub fn held_for(&self, d: Duration) -> RateShape {
        match self {
            RateShape::Stages { stages } => {
                let mut stages = stages.clone();
                let last = stages.last().map_or(0.0, |s| s.to);
                if last > 0.0 {
                    stages.push(Stage { over: d, to: last });
                }
                RateShape::Stages { stages }
            }
            other => other.clone(),
        }
    }

    /// How long the shape itself lasts, if it says: the stages' total.
    pub fn own_duration(&self) -> Option<Duration> {
        match self {
            RateShape::Stages { stages, .. } => Some(stages.iter().map(|s| s.over).sum()),
            _ => None,
        }
    }

    /// The shape as straight segments: `f(start, seconds, from, to)` for each, in order,
    /// until `f` returns `Some`; then the last rate holds. A ramp lasts `total` seconds (the
    /// run's duration). Nothing is allocated: the pacer calls this for every send.
    pub fn walk<R>(
        &self,
        total: f64,
        mut f: impl FnMut(f64, f64, f64, f64) -> Option<R>,
    ) -> Result<R, (f64, f64)> {
        let mut at = 0.0;
        let mut seg = |from: f64, secs: f64, to: f64, at: &mut f64| {
            let r = f(*at, secs, from, to);
            *at += secs;
            r
        };
        let last = match self {
            RateShape::Constant { rate } => *rate,
            RateShape::Ramp { from, to } => {
                if let Some(r) = seg(*from, total, *to, &mut at) {
                    return Ok(r);
                }
                *to
            }
            RateShape::Steps { levels, every } => {
                let w = every.as_secs_f64();
                for (i, l) in levels.iter().enumerate() {
                    // The last level holds: it is the rate after the walk.
                    if i + 1 < levels.len() {
                        if let Some(r) = seg(*l, w, *l, &mut at) {
                            return Ok(r);
                        }
                    }
                }
                *levels.last().expect("levels is never empty")
            }
            RateShape::Stages { stages } => {
                let mut rate = 0.0;
                for s in stages {
                    if let Some(r) = seg(rate, s.over.as_secs_f64(), s.to, &mut at) {
                        return Ok(r);
                    }
                    rate = s.to;
                }
                rate
            }
        };
        Err((at, last))
    }

    /// The stages of a run lasting `total` seconds, for a per-stage report: each straight
    /// segment that lasts (jumps are not stages) and the hold of the last rate until `total`;
    /// `(start, end, sends due)`. A constant rate has none.
    pub fn stages_over(&self, total: f64) -> Vec<(f64, f64, f64)> {
        let mut bounds = Vec::new();
        let held = self.walk(total, |start, secs, _, _| {
            if secs > 0.0 && start < total {
                bounds.push((start, (start + secs).min(total)));
            }
            None::<()>
        });
        if let Err((end, _)) = held {
            if !bounds.is_empty() && end < total {
                bounds.push((end, total));
            }
        }
        let due = |t| self.count_until(t, total);
        bounds
            .into_iter()
            .map(|(a, b)| (a, b, due(b) - due(a)))
            .collect()
    }

    /// The rate at time `t` (seconds) of a run lasting `total` seconds.
    pub fn rate_at(&self, t: f64, total: f64) -> f64 {
        let inside = self.walk(total, |start, secs, from, to| {
            (t < start + secs).then(|| from + (to - from) * ((t - start) / secs).clamp(0.0, 1.0))
        });
        inside.unwrap_or_else(|(_, last)| last)
    }

    /// Sends due in `[0, t)` (the cumulative count N(t)).
    pub fn count_until(&self, t: f64, total: f64) -> f64 {
        let mut done = 0.0;
        let inside = self.walk(total, |start, secs, from, to| {
            if t < start + secs {
                let x = t - start;
                return Some(done + from * x + (to - from) * x * x / (2.0 * secs));
            }
            done += (from + to) / 2.0 * secs;
            None
        });
        inside.unwrap_or_else(|(end, last)| done + (t - end).max(0.0) * last)
    }

    /// Inverse of the cumulative count: the time (seconds) at which `n` sends are due, or
    /// infinity when the schedule ends at rate 0 before that. `total` is the run's duration
    /// in seconds (used by ramps). Past the shape's end its final rate holds.
    pub(crate) fn time_of_count(&self, n: f64, total: f64) -> f64 {
        let mut left = n;
        let inside = self.walk(total, |start, secs, from, to| {
            let in_seg = (from + to) / 2.0 * secs;
            if left >= in_seg {
                left -= in_seg;
                return None;
            }
            if left <= 0.0 {
                return Some(start); // also keeps 0/0 out of a segment starting at rate 0
            }
            // left = from·x + a·x² with a = (to − from) / (2·secs).
            let a = (to - from) / (2.0 * secs);
            if a.abs() < 1e-12 {
                return Some(start + left / from);
            }
            // Numerically stable root (also for from = 0, and for a < 0 within the segment).
            let disc = (from * from + 4.0 * a * left).max(0.0);
            Some(start + 2.0 * left / (from + disc.sqrt()))
        });
        inside.unwrap_or_else(|(end, last)| {
            if last > 0.0 {
                end + left / last
            } else {
                f64::INFINITY
            }
        })
    }
}

/// How gaps between sends are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Evenly spaced sends (wrk2, vegeta).
    Uniform,
    /// Exponentially distributed gaps: a Poisson process, as real independent users make.
    Poisson,
}

impl FromStr for Arrival {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(Arrival::Uniform),
            "poisson" => Ok(Arrival::Poisson),
            _ => Err(format!(
                "unknown arrival {s:?} (expected uniform or poisson)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(shape: &str, arrival: Arrival, secs: f64, seed: u64) -> Vec<f64> {
        let mut p = Pacer::new(
            shape.parse().unwrap(),
            arrival,
            Some(Duration::from_secs_f64(secs)),
            seed,
        )
        .unwrap();
        std::iter::from_fn(|| p.next())
            .map(|d| d.as_secs_f64())
            .collect()
    }

    #[test]
    fn a_rescale_continues_from_that_moment_at_the_new_rate() {
        let mut p = Pacer::new(
            "10".parse().unwrap(),
            Arrival::Uniform,
            Some(Duration::from_secs(4)),
            1,
        )
        .unwrap();
        let first: Vec<f64> = (0..10).map(|_| p.next().unwrap().as_secs_f64()).collect();
        assert!((first[9] - 0.9).abs() < 1e-9);
        p.rescale_at(Duration::from_secs(2), 10.0);
        assert_eq!(p.rate_at(Duration::from_secs(3)), 100.0);
        let rest: Vec<f64> = std::iter::from_fn(|| p.next())
            .map(|d| d.as_secs_f64())
            .collect();
        // 2 s at 100/s until the schedule's end at 4 s, starting exactly at 2 s.
        assert_eq!(rest.len(), 200);
        assert!((rest[0] - 2.0).abs() < 1e-9 && (rest[1] - 2.01).abs() < 1e-9);
    }

    #[test]
    fn constant_uniform_sends_exactly_rate_times_duration_evenly() {
        let t = all("100", Arrival::Uniform, 2.0, 0);
        assert_eq!(t.len(), 200);
        for (k, x) in t.iter().enumerate() {
            assert!((x - k as f64 / 100.0).abs() < 1e-9);
        }
    }

    #[test]
    fn ramp_counts_match_the_area_under_the_line() {
        // 100 → 300 over 10 s: area = 2000.
        let t = all("ramp:100..300", Arrival::Uniform, 10.0, 0);
        assert!((t.len() as i64 - 2000).abs() <= 1, "{}", t.len());
        // The first second holds ≈ 110 sends (mean rate 110), the last ≈ 290.
        let first = t.iter().filter(|&&x| x < 1.0).count();
        let last = t.iter().filter(|&&x| x >= 9.0).count();
        assert!((first as i64 - 110).abs() <= 1, "{first}");
        assert!((last as i64 - 290).abs() <= 1, "{last}");
        assert!(t.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn descending_ramp_works_too() {
        let t = all("ramp:300..100", Arrival::Uniform, 10.0, 0);
        assert!((t.len() as i64 - 2000).abs() <= 1);
        let first = t.iter().filter(|&&x| x < 1.0).count();
        assert!((first as i64 - 290).abs() <= 1, "{first}");
    }

    #[test]
    fn steps_hold_each_level_and_then_the_last() {
        let t = all("steps:10,20,40@1s", Arrival::Uniform, 5.0, 0);
        let per_sec: Vec<usize> = (0..5)
            .map(|s| {
                t.iter()
                    .filter(|&&x| x >= s as f64 && x < s as f64 + 1.0)
                    .count()
            })
            .collect();
        assert_eq!(per_sec, vec![10, 20, 40, 40, 40]);
    }

    #[test]
    fn poisson_has_the_right_mean_and_exponential_gaps() {
        let t = all("1000", Arrival::Poisson, 20.0, 42);
        let n = t.len() as f64;
        assert!((n - 20_000.0).abs() < 4.0 * 20_000f64.sqrt(), "{n}");
        let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        // Exponential: stdev == mean.
        assert!((mean - 0.001).abs() < 0.00005, "{mean}");
        assert!(
            (var.sqrt() / mean - 1.0).abs() < 0.05,
            "{}",
            var.sqrt() / mean
        );
    }

    #[test]
    fn poisson_is_reproducible_from_its_seed() {
        assert_eq!(
            all("50", Arrival::Poisson, 1.0, 7),
            all("50", Arrival::Poisson, 1.0, 7)
        );
        assert_ne!(
            all("50", Arrival::Poisson, 1.0, 7),
            all("50", Arrival::Poisson, 1.0, 8)
        );
    }

    #[test]
    fn poisson_follows_a_ramp() {
        let t = all("ramp:1000..3000", Arrival::Poisson, 10.0, 1);
        let first = t.iter().filter(|&&x| x < 1.0).count() as f64;
        let last = t.iter().filter(|&&x| x >= 9.0).count() as f64;
        assert!((first - 1100.0).abs() < 150.0, "{first}");
        assert!((last - 2900.0).abs() < 250.0, "{last}");
    }

    #[test]
    fn unbounded_constant_keeps_going() {
        let mut p = Pacer::new("10".parse().unwrap(), Arrival::Uniform, None, 0).unwrap();
        let last = (0..1000).map(|_| p.next().unwrap()).last().unwrap();
        assert_eq!(last, Duration::from_secs_f64(99.9));
    }

    #[test]
    fn bad_rates_are_rejected_with_a_reason() {
        for bad in [
            "0",
            "-5",
            "abc",
            "nan",
            "inf",
            "ramp:10",
            "ramp:0..5",
            "steps:1,2",
            "steps:1,0@1s",
            "steps:1@0s",
            "steps:1@x",
        ] {
            assert!(bad.parse::<RateShape>().is_err(), "{bad} parsed");
        }
        let e = Pacer::new("ramp:1..2".parse().unwrap(), Arrival::Uniform, None, 0).unwrap_err();
        assert_eq!(e, PaceError::RampWithoutDuration);
    }

    #[test]
    fn stages_send_the_area_under_each_stage() {
        // 0 → 100 over 2 s (100), hold 100 for 3 s (300), jump to 50 for 2 s (100), → 0 over 2 s (50).
        let t = all(
            "stages:2s:100,3s:100,0s:50,2s:50,2s:0",
            Arrival::Uniform,
            60.0,
            0,
        );
        let in_range = |a: f64, b: f64| t.iter().filter(|&&x| x >= a && x < b).count() as i64;
        assert_eq!(t.len(), 550);
        for (a, b, want) in [
            (0.0, 2.0, 100),
            (2.0, 5.0, 300),
            (5.0, 7.0, 100),
            (7.0, 9.0, 50),
        ] {
            assert!(
                (in_range(a, b) - want).abs() <= 1,
                "{a}..{b}: {}",
                in_range(a, b)
            );
        }
        // The ramp from 0 is quadratic: a quarter of the first stage's sends in its first half.
        assert!((in_range(0.0, 1.0) - 25).abs() <= 1);
        assert!(t.windows(2).all(|w| w[0] < w[1]));
        let s: RateShape = "stages:2s:100,3s:100,0s:50,2s:50,2s:0".parse().unwrap();
        assert_eq!(s.own_duration(), Some(Duration::from_secs(9)));
        assert_eq!(
            (
                s.rate_at(1.0, 9.0),
                s.rate_at(5.5, 9.0),
                s.rate_at(8.0, 9.0)
            ),
            (50.0, 50.0, 25.0)
        );
        assert!((s.count_until(9.0, 9.0) - 550.0).abs() < 1e-9);
        // Without a run duration the schedule lasts as long as the stages.
        let mut p = Pacer::new(s, Arrival::Uniform, None, 0).unwrap();
        assert_eq!(std::iter::from_fn(|| p.next()).count(), 550);
    }

    #[test]
    fn stages_hold_their_last_rate_while_the_run_lasts() {
        let t = all("stages:1s:10", Arrival::Uniform, 3.0, 0);
        assert_eq!(t.len(), 5 + 20);
        assert_eq!(
            "stages:1s:10,1s:0"
                .parse::<RateShape>()
                .unwrap()
                .to_string(),
            "stages 1s:10,1s:0"
        );
    }

    #[test]
    fn ramps_and_steps_count_as_before() {
        for (shape, secs) in [("ramp:100..300", 10.0), ("steps:10,20,40@1s", 5.0)] {
            let s: RateShape = shape.parse().unwrap();
            let n = all(shape, Arrival::Uniform, secs, 0).len() as f64;
            assert!((s.count_until(secs, secs) - n).abs() <= 1.0, "{shape}: {n}");
        }
    }

    #[test]
    fn stages_over_a_run_are_its_segments_and_the_last_hold() {
        let s: RateShape = "stages:2s:100,0s:50,2s:50".parse().unwrap();
        assert_eq!(
            s.stages_over(6.0),
            vec![(0.0, 2.0, 100.0), (2.0, 4.0, 100.0), (4.0, 6.0, 100.0)]
        );
        assert_eq!(s.stages_over(1.0), vec![(0.0, 1.0, 25.0)]);
        let steps: RateShape = "steps:10,20@1s".parse().unwrap();
        assert_eq!(
            steps.stages_over(3.0),
            vec![(0.0, 1.0, 10.0), (1.0, 3.0, 40.0)]
        );
        assert!("100"
            .parse::<RateShape>()
            .unwrap()
            .stages_over(5.0)
            .is_empty());
    }

    #[test]
    fn bad_stages_are_rejected_with_a_reason() {
        for (bad, why) in [
            ("stages:1000", "needs a duration"),
            ("stages:5x:100", "duration"),
            ("stages:5s:-1", "not a number ≥ 0"),
            ("stages:5s:0,1s:0", "nothing would be sent"),
            ("stages:0s:10", "last 0 s"),
        ] {
            let e = bad.parse::<RateShape>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn the_text_form_reads_back_as_the_same_shape() {
        for text in [
            "1000",
            "0.5",
            "ramp:10..20.5",
            "steps:100,200@10s",
            "steps:1@1s 500ms",
            "stages:30s:1000,5m:1000,0s:3000,10s:0",
        ] {
            let shape: RateShape = text.parse().unwrap();
            assert_eq!(shape.text().parse::<RateShape>().unwrap(), shape, "{text}");
            // serde goes through the same text: a spec's JSON holds what --rate takes.
            let json = serde_json::to_string(&shape).unwrap();
            assert_eq!(json, format!("{:?}", shape.text()));
            assert_eq!(serde_json::from_str::<RateShape>(&json).unwrap(), shape);
        }
        let scaled = "stages:10s:3,1s:1"
            .parse::<RateShape>()
            .unwrap()
            .scaled(1.0 / 3.0);
        assert_eq!(scaled.text().parse::<RateShape>().unwrap(), scaled);
        let e = serde_json::from_str::<RateShape>("\"ramp:5\"").unwrap_err();
        assert!(e.to_string().contains("ramp:FROM..TO"), "{e}");
    }

    #[test]
    fn scaling_splits_a_rate_over_workers() {
        let s: RateShape = "steps:100,200@1s".parse().unwrap();
        assert_eq!(
            s.scaled(0.5),
            RateShape::Steps {
                levels: vec![50.0, 100.0],
                every: Duration::from_secs(1)
            }
        );
        assert_eq!(s.rate_at(1.5, 10.0), 200.0);
    }
}
