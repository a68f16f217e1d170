//! The churn spec: what `api churn` is asked to do, as plain data, checked once by
//! [`ChurnSpec::build`] (as `load::Spec::build` checks a load spec). Its errors name the
//! spec's fields (`{run_id}`); a caller shows them under its own names
//! ([`SpecError::naming`]: the CLI's flags), so the rules live here and the words there.

use crate::churn::{Lifetime, Mode};
use crate::output::ApiInfo;
use pace::{Arrival, RateShape};
use std::time::Duration;

/// A churn run as asked for. Field names are the ones errors name.
#[derive(Debug, Clone)]
pub struct ChurnSpec {
    /// Open loop: lifecycles/s. Absent: closed loop.
    pub rate: Option<RateShape>,
    /// Open loop: gaps between lifecycle starts.
    pub arrival: Arrival,
    /// Open loop: seed for Poisson arrivals.
    pub seed: u64,
    /// Open loop: objects to keep in existence (lifetime = population / rate).
    pub population: Option<u64>,
    /// Open loop: how long each object lives [default: 10 s].
    pub lifetime: Option<Duration>,
    /// Closed loop: concurrent workers [default: 10].
    pub workers: Option<u64>,
    /// Closed loop: lifecycles in all.
    pub lifecycles: Option<u64>,
    /// Open loop: how long lifecycles keep starting. Closed loop: a time limit.
    pub duration: Option<Duration>,
    /// Patches per lifecycle.
    pub updates: u32,
    /// The run's label value [default: random].
    pub run_id: Option<String>,
    /// Client-side limit on calls per second.
    pub qps: Option<f64>,
    /// Burst for `qps`.
    pub burst: u32,
}

pub use st_http::spec::SpecError;

/// A checked churn: what `churn::Config` and the session take.
#[derive(Debug, Clone)]
pub struct Churn {
    /// Open or closed loop.
    pub mode: Mode,
    /// The run's label value (given, or random).
    pub run_id: String,
    /// Client-side QPS/burst limit.
    pub limit: Option<(f64, u32)>,
}

/// A run id as labels and names take it: 1-40 lowercase letters, digits and '-', not at
/// either end.
pub fn valid_run_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A random run id: six lowercase letters and digits.
pub fn random_run_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..6)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)]))
        .collect()
}

impl ChurnSpec {
    /// The fields every use checks, cleanup included: the run id and the QPS limit.
    pub fn check(&self) -> Result<(), SpecError> {
        if let Some(id) = &self.run_id {
            if !valid_run_id(id) {
                return Err(SpecError::new(format!(
                    "{{run_id}} {}: use 1-40 lowercase letters, digits and '-' (it goes into names and labels)",
                    st_http::spec::quote(&format!("{id:?}"))
                )));
            }
        }
        if let Some(q) = self.qps {
            if !(q.is_finite() && q > 0.0) {
                return Err(SpecError::new("{qps} must be > 0"));
            }
        }
        Ok(())
    }

    /// The checked churn: open loop with `rate` (and `duration`), closed loop without.
    pub fn build(&self) -> Result<Churn, SpecError> {
        self.check()?;
        let mode = match &self.rate {
            Some(shape) => {
                if self.duration.is_none() {
                    return Err(SpecError::new("open loop ({rate}) needs {duration}"));
                }
                let lifetime = match (self.population, self.lifetime) {
                    (Some(p), _) => Lifetime::Population(p as f64),
                    (None, Some(l)) => Lifetime::Fixed(l),
                    (None, None) => Lifetime::Fixed(Duration::from_secs(10)),
                };
                Mode::Open {
                    shape: shape.clone(),
                    arrival: self.arrival,
                    seed: self.seed,
                    lifetime,
                }
            }
            None => {
                if self.population.is_some() || self.lifetime.is_some() {
                    return Err(SpecError::new(
                        "{population} and {lifetime} are for open loop ({rate})",
                    ));
                }
                if self.duration.is_none() && self.lifecycles.is_none() {
                    return Err(SpecError::new(
                        "give {rate} (open loop) with {duration}, or {duration} and/or {lifecycles} (closed loop)",
                    ));
                }
                Mode::Closed {
                    workers: self.workers.unwrap_or(10) as usize,
                    lifecycles: self.lifecycles,
                }
            }
        };
        Ok(Churn {
            mode,
            run_id: self.run_id.clone().unwrap_or_else(random_run_id),
            limit: self.qps.map(|q| (q, self.burst)),
        })
    }
}

impl Churn {
    /// The run's description for its report, on `resource`, as `spec` asked.
    pub fn info(&self, spec: &ChurnSpec, resource: String) -> ApiInfo {
        let mut info = ApiInfo {
            command: "churn".into(),
            resource,
            updates: Some(spec.updates),
            duration_s: spec.duration.map(|d| d.as_secs_f64()),
            qps: spec.qps,
            ..Default::default()
        };
        match &self.mode {
            Mode::Open {
                shape,
                arrival,
                lifetime,
                ..
            } => {
                info.mode = Some("open".into());
                info.rate = Some(shape.to_string());
                info.arrival = Some(format!("{arrival:?}").to_lowercase());
                match lifetime {
                    Lifetime::Population(p) => info.population = Some(*p),
                    Lifetime::Fixed(d) => info.lifetime_s = Some(d.as_secs_f64()),
                }
            }
            Mode::Closed { workers, .. } => {
                info.mode = Some("closed".into());
                info.workers = Some(*workers);
            }
        }
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ChurnSpec {
        ChurnSpec {
            rate: None,
            arrival: Arrival::Poisson,
            seed: 1,
            population: None,
            lifetime: None,
            workers: None,
            lifecycles: Some(5),
            duration: None,
            updates: 1,
            run_id: None,
            qps: None,
            burst: 10,
        }
    }

    #[test]
    fn errors_name_fields_for_the_caller_to_word() {
        let open = ChurnSpec {
            rate: Some(RateShape::Constant { rate: 5.0 }),
            ..spec()
        };
        let e = open.build().unwrap_err();
        assert_eq!(e.to_string(), "open loop (rate) needs duration");
        assert_eq!(
            e.naming(|f| format!("--{}", f.replace('_', "-"))),
            "open loop (--rate) needs --duration"
        );
        let bad_id = ChurnSpec {
            run_id: Some("Bad_ID".into()),
            ..spec()
        };
        assert!(bad_id
            .build()
            .unwrap_err()
            .to_string()
            .starts_with("run_id \"Bad_ID\""));
        let lifetime = ChurnSpec {
            lifetime: Some(Duration::from_secs(1)),
            ..spec()
        };
        assert!(lifetime.build().is_err());
        let qps = ChurnSpec {
            qps: Some(0.0),
            ..spec()
        };
        assert_eq!(qps.check().unwrap_err().to_string(), "qps must be > 0");
    }

    #[test]
    fn a_closed_loop_gets_ten_workers_and_a_random_run_id() {
        let c = spec().build().unwrap();
        assert!(matches!(
            c.mode,
            Mode::Closed {
                workers: 10,
                lifecycles: Some(5)
            }
        ));
        assert!(valid_run_id(&c.run_id), "{}", c.run_id);
    }
}
