//! Scenarios: a TOML list of phases, checked into typed values before any child is started.
//!
//! ```toml
//! name = "mine"
//! sustain_p99_ms = 10       # "highest rate sustained" counts phases with p99 under this
//! [[phase]]
//! name = "warm-up"
//! duration = "10s"          # or a number of seconds
//! rate = 1000               # total req/s over the bots (or `connections`: a closed loop),
//!                           # or a schedule: "stages:10s:1000,20s:5000" (one for the fleet,
//!                           # starting 2–3 s into the phase; its last rate holds after it
//!                           # until a phase changes the load)
//! servers = 1               # replicas wanted by the end of the phase (unset: unchanged)
//! bots = 1
//! rollout = "v2"            # replace every server not on this version, one at a time
//! [phase.checks]
//! max_failed = 0            # shorthand of the threshold failed<=0
//! max_p99_ms = 50           # shorthand of p99<=50ms
//! thresholds = ["error_rate<0.1%", "p99.9<200ms"]   # any `--threshold` expression
//! ```
//!
//! Replica and rate changes are spread over the phase in steps of one replica, so
//! "servers 1 → 4, bots 1 → 4, rate 1000 → 4000" is three steps; a rollout replaces one
//! server per step.

use report::threshold::Threshold;
use serde::Deserialize;
use std::time::Duration;

/// A scenario file that cannot be used; one line, naming the field when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScenarioError(pub String);

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Shown in the header and the results.
    pub name: String,
    /// In order.
    pub phases: Vec<Phase>,
    /// The p99 (ms) under which an open-loop phase counts as sustained (see
    /// [`crate::phases::sustained`]).
    pub sustain_p99_ms: f64,
    /// After the phases, keep stepping the rate up until a step is not sustained.
    pub search: Option<Search>,
}

/// `[search]`: after the listed phases, steps of `duration` at the last rate × `factor`, then
/// × `factor` again, … until a step is not sustained (see [`crate::phases::sustains`]) or the
/// rate would pass `until_rate`: the ceiling is found, not assumed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Search {
    /// Each step's rate over the last one's (> 1).
    pub factor: f64,
    /// The highest rate tried.
    pub until_rate: f64,
    /// Each step's length.
    pub duration: Duration,
}

/// What the load is in a phase.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// Open loop, total requests/s over all bots.
    Rate(f64),
    /// Open loop, a total rate in stages or steps (a ramp: as stages over the phase): one
    /// schedule for the fleet, which the aggregator starts on a whole second 2–3 s after it
    /// is set; after it, its last rate holds until a phase changes the load.
    Schedule(pace::RateShape),
    /// Closed loop, connections in total (split over the bots, rounded up).
    Connections(u64),
}

/// One phase, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Shown in events and tables.
    pub name: String,
    /// Planned length (a rollout may take longer).
    pub duration: Duration,
    /// The load by the end of the phase; `None`: unchanged.
    pub load: Option<Load>,
    /// Server replicas by the end of the phase; `None`: unchanged.
    pub servers: Option<u32>,
    /// Loadbots by the end of the phase; `None`: unchanged.
    pub bots: Option<u32>,
    /// Replace every server not on this version.
    pub rollout: Option<String>,
    /// What the phase must meet, as thresholds on its seconds ([`report::threshold`]).
    pub checks: Vec<Threshold>,
}

/// A phase's pass conditions as written; [`Scenario::parse`] turns them into thresholds.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Checks {
    /// Most failed requests (transport errors and 4xx/5xx answers): `failed<=N`.
    max_failed: Option<u64>,
    /// Highest p99 of the corrected latency, in ms: `p99<=Mms`.
    max_p99_ms: Option<f64>,
    /// Any threshold expressions.
    #[serde(default)]
    thresholds: Vec<Threshold>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    sustain_p99_ms: Option<f64>,
    #[serde(default)]
    phase: Vec<RawPhase>,
    #[serde(default)]
    search: Option<RawSearch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    factor: f64,
    until_rate: f64,
    duration: RawDuration,
}

/// A phase's rate: a number, or `--rate`'s text (`stages:…`, `steps:…`, `ramp:…`).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawRate {
    Number(f64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Secs(f64),
    Text(String),
}

impl RawDuration {
    /// A phase's length: > 0 and at most [`MAX_PHASE`].
    fn get(self) -> Result<Duration, String> {
        let d = match self {
            RawDuration::Secs(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
            RawDuration::Secs(s) => return Err(format!("{s} is not > 0")),
            RawDuration::Text(t) => {
                humantime::parse_duration(&t).map_err(|e| format!("{t:?}: {e}"))?
            }
        };
        if d.is_zero() || d > MAX_PHASE {
            return Err("must be > 0 and at most 24h".into());
        }
        Ok(d)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    name: Option<String>,
    duration: RawDuration,
    rate: Option<RawRate>,
    connections: Option<u64>,
    servers: Option<u32>,
    bots: Option<u32>,
    rollout: Option<String>,
    #[serde(default)]
    checks: Checks,
}

/// A phase's open-loop load: a rate in (0, [`MAX_RATE`]], or a schedule peaking there (a ramp
/// walks the phase's `duration`).
fn load_of(r: RawRate, duration: Duration) -> Result<Load, String> {
    let shape = match r {
        RawRate::Number(rate) => pace::RateShape::Constant { rate },
        RawRate::Text(t) => t.parse::<pace::RateShape>().map_err(|e| e.to_string())?,
    };
    let shape = shape
        .without_ramp(Some(duration))
        .expect("a ramp is given the phase's duration");
    match shape {
        pace::RateShape::Constant { rate }
            if rate.is_finite() && rate > 0.0 && rate <= MAX_RATE =>
        {
            Ok(Load::Rate(rate))
        }
        pace::RateShape::Constant { rate } => Err(format!("{rate} is not in (0, {MAX_RATE}]")),
        s if s.peak() > MAX_RATE => Err(format!("{} peaks above {MAX_RATE}", s.text())),
        s => Ok(Load::Schedule(s)),
    }
}

impl Load {
    /// What the aggregator is given for an open loop (`--rate`, `PUT /api/load`'s `rate`): a
    /// schedule gets a last stage holding its last rate for as long as a phase may last, so
    /// the load stays until a phase changes it, as a constant rate's does.
    pub fn rate_text(&self) -> Option<String> {
        match self {
            Load::Rate(r) => Some(r.to_string()),
            Load::Schedule(s) => Some(s.held_for(MAX_PHASE).text()),
            Load::Connections(_) => None,
        }
    }
}

/// A threshold made from a checked number: it always parses.
fn threshold(text: String) -> Threshold {
    text.parse()
        .unwrap_or_else(|e| unreachable!("a threshold from checked numbers: {e}"))
}

/// Most replicas of one kind: every one is a process on this machine.
pub const MAX_REPLICAS: u32 = 64;
/// Highest total rate a scenario may ask for.
pub const MAX_RATE: f64 = 5_000_000.0;
/// Longest phase.
pub const MAX_PHASE: Duration = Duration::from_secs(24 * 3600);
/// The p99 under which a rate counts as sustained, unless the scenario says otherwise.
pub const DEFAULT_SUSTAIN_P99_MS: f64 = 10.0;
/// The built-in scenarios' names.
pub const BUILTINS: &[&str] = &["default", "lb-replicas", "max-rate"];

impl Scenario {
    /// Parse and check a scenario file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!(" line {}", text[..s.start].matches('\n').count() + 1))
                .unwrap_or_default();
            ScenarioError(format!(
                "{origin}{line}: {}",
                e.message().trim().replace('\n', " ")
            ))
        })?;
        if raw.phase.is_empty() {
            return Err(ScenarioError(format!(
                "{origin}: no phases (add [[phase]] tables)"
            )));
        }
        let mut phases = Vec::new();
        for (i, p) in raw.phase.into_iter().enumerate() {
            let name = p.name.unwrap_or_else(|| format!("phase {}", i + 1));
            let at = |field: &str, why: String| {
                ScenarioError(format!(
                    "{origin}: phase {} ({name}): {field}: {why}",
                    i + 1
                ))
            };
            let duration = p.duration.get().map_err(|why| at("duration", why))?;
            let load = match (p.rate, p.connections) {
                (Some(_), Some(_)) => {
                    return Err(at("rate", "give rate or connections, not both".into()))
                }
                (Some(r), None) => Some(load_of(r, duration).map_err(|why| at("rate", why))?),
                (None, Some(c)) if (1..=100_000).contains(&c) => Some(Load::Connections(c)),
                (None, Some(c)) => {
                    return Err(at("connections", format!("{c} is not in 1..=100000")))
                }
                (None, None) => None,
            };
            for (field, v) in [("servers", p.servers), ("bots", p.bots)] {
                if let Some(n) = v {
                    if !(1..=MAX_REPLICAS).contains(&n) {
                        return Err(at(field, format!("{n} is not in 1..={MAX_REPLICAS}")));
                    }
                }
            }
            if let Some(v) = &p.rollout {
                check_version(v).map_err(|why| at("rollout", why))?;
            }
            let mut checks = Vec::new();
            if let Some(m) = p.checks.max_failed {
                checks.push(threshold(format!("failed<={m}")));
            }
            if let Some(m) = p.checks.max_p99_ms {
                if !(m.is_finite() && m > 0.0) {
                    return Err(at("checks.max_p99_ms", format!("{m} is not > 0")));
                }
                checks.push(threshold(format!("p99<={m}ms")));
            }
            checks.extend(p.checks.thresholds);
            phases.push(Phase {
                name,
                duration,
                load,
                servers: p.servers,
                bots: p.bots,
                rollout: p.rollout,
                checks,
            });
        }
        if phases[0].load.is_none() {
            return Err(ScenarioError(format!(
                "{origin}: phase 1 ({}): rate: the first phase needs a rate or connections",
                phases[0].name
            )));
        }
        let sustain_p99_ms = raw.sustain_p99_ms.unwrap_or(DEFAULT_SUSTAIN_P99_MS);
        if !(sustain_p99_ms.is_finite() && sustain_p99_ms > 0.0) {
            return Err(ScenarioError(format!(
                "{origin}: sustain_p99_ms: {sustain_p99_ms} is not > 0"
            )));
        }
        let search = match raw.search {
            None => None,
            Some(r) => {
                let at = |field: &str, why: String| {
                    ScenarioError(format!("{origin}: search: {field}: {why}"))
                };
                let last = phases.iter().rev().find_map(|p| p.load.clone());
                let Some(Load::Rate(last)) = last else {
                    return Err(at(
                        "rate",
                        "the last load before a search must be a rate".into(),
                    ));
                };
                if !(r.factor.is_finite() && r.factor > 1.0 && r.factor <= 4.0) {
                    return Err(at("factor", format!("{} is not in (1, 4]", r.factor)));
                }
                if !(r.until_rate.is_finite() && r.until_rate > last && r.until_rate <= MAX_RATE) {
                    return Err(at(
                        "until_rate",
                        format!("{} is not in ({last}, {MAX_RATE}]", r.until_rate),
                    ));
                }
                Some(Search {
                    factor: r.factor,
                    until_rate: r.until_rate,
                    duration: r.duration.get().map_err(|why| at("duration", why))?,
                })
            }
        };
        Ok(Scenario {
            name: raw.name.unwrap_or_else(|| origin.to_string()),
            phases,
            sustain_p99_ms,
            search,
        })
    }

    /// A built-in scenario by name: one of [`BUILTINS`].
    pub fn builtin(name: &str) -> Option<Scenario> {
        let text = match name {
            "default" => DEFAULT,
            "lb-replicas" => LB_REPLICAS,
            "max-rate" => MAX_RATE_SEARCH,
            _ => return None,
        };
        Some(Scenario::parse(text, name).expect("built-in scenarios are valid"))
    }

    /// Every phase's duration times `factor` (`--duration` on the default scenario).
    pub fn scaled(mut self, factor: f64) -> Scenario {
        for p in &mut self.phases {
            p.duration = p.duration.mul_f64(factor).max(Duration::from_secs(1));
        }
        if let Some(s) = &mut self.search {
            s.duration = s.duration.mul_f64(factor).max(Duration::from_secs(1));
        }
        self
    }

    /// The first phase that changes the servers after the start (replicas or a rollout), if
    /// any: a balancer with a fixed set of servers cannot run it.
    pub fn changes_servers(&self) -> Option<&Phase> {
        let first = self.phases[0].servers;
        self.phases.iter().enumerate().find_map(|(i, p)| {
            let changes =
                p.rollout.is_some() || (i > 0 && p.servers.is_some_and(|n| Some(n) != first));
            changes.then_some(p)
        })
    }

    /// Planned length of the whole scenario.
    pub fn planned(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }
}

/// A version label goes on a command line and in headers: short, plain characters.
pub fn check_version(v: &str) -> Result<(), String> {
    if v.is_empty()
        || v.len() > 32
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(format!(
            "{v:?} is not a version label (1–32 of A-Z a-z 0-9 . _ -)"
        ));
    }
    Ok(())
}

/// The built-in demo of seeds 000 and 003 at one machine's scale: 100 s in all.
pub const DEFAULT: &str = r#"
name = "default"

[[phase]]
name = "warm-up"
duration = "15s"
rate = 1000
servers = 1
bots = 1

[[phase]]
name = "scale-up"
duration = "30s"
rate = 4000
servers = 4
bots = 4

[[phase]]
name = "rolling-update"
duration = "30s"
rollout = "v2"
checks = { max_failed = 0 }

[[phase]]
name = "scale-down"
duration = "25s"
rate = 1000
servers = 1
bots = 1
"#;

/// Seed 002's experiment: one URL over 2, 5 and 10 replicas, 30 connections, 30 s each.
pub const LB_REPLICAS: &str = r#"
name = "lb-replicas"

[[phase]]
name = "2 replicas"
duration = "30s"
connections = 30
servers = 2
bots = 1

[[phase]]
name = "5 replicas"
duration = "30s"
servers = 5

[[phase]]
name = "10 replicas"
duration = "30s"
servers = 10
"#;

/// The highest rate the layout sustains: two servers behind the balancer, two loadbots, the
/// rate stepping up every 6 s, and past 24,000/s by a quarter each step until a step is not
/// sustained (or 1,000,000/s). `phases::sustained` picks the highest step served with p99
/// under `sustain_p99_ms`, no failures and at least 95 % of the rate asked. Servers are
/// fixed, so `--balancer haproxy` runs it too (`bench/demo.sh` compares the two).
pub const MAX_RATE_SEARCH: &str = r#"
name = "max-rate"
sustain_p99_ms = 10

[[phase]]
name = "2000/s"
duration = "6s"
rate = 2000
servers = 2
bots = 2

[[phase]]
name = "4000/s"
duration = "6s"
rate = 4000

[[phase]]
name = "6000/s"
duration = "6s"
rate = 6000

[[phase]]
name = "8000/s"
duration = "6s"
rate = 8000

[[phase]]
name = "10000/s"
duration = "6s"
rate = 10000

[[phase]]
name = "12000/s"
duration = "6s"
rate = 12000

[[phase]]
name = "14000/s"
duration = "6s"
rate = 14000

[[phase]]
name = "16000/s"
duration = "6s"
rate = 16000

[[phase]]
name = "20000/s"
duration = "6s"
rate = 20000

[[phase]]
name = "24000/s"
duration = "6s"
rate = 24000

# Then 30000/s, 37500/s, … until a step is not sustained: the ceiling, whatever the machine.
[search]
factor = 1.25
until_rate = 1000000
duration = "6s"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_scenarios_parse() {
        let d = Scenario::builtin("default").unwrap();
        assert_eq!(d.phases.len(), 4);
        assert_eq!(d.phases[2].rollout.as_deref(), Some("v2"));
        assert_eq!(d.phases[2].checks, vec![threshold("failed<=0".into())]);
        assert_eq!(d.planned(), Duration::from_secs(100));
        let l = Scenario::builtin("lb-replicas").unwrap();
        assert_eq!(l.phases[0].load, Some(Load::Connections(30)));
        assert_eq!(l.phases[2].servers, Some(10));
        assert!(d.changes_servers().is_some());
        assert!(l.changes_servers().is_some());
        let m = Scenario::builtin("max-rate").unwrap();
        assert!(m.changes_servers().is_none(), "haproxy can run it");
        assert_eq!(m.sustain_p99_ms, 10.0);
        for name in BUILTINS {
            assert!(Scenario::builtin(name).is_some(), "{name}");
        }
    }

    #[test]
    fn an_unknown_field_is_named_with_its_line() {
        let e = Scenario::parse("[[phase]]\nduration = 5\nrat = 10\n", "s.toml").unwrap_err();
        assert!(e.0.starts_with("s.toml line 3: "), "{e}");
        assert!(e.0.contains("`rat`"), "{e}");
        assert!(!e.0.contains('\n'));
    }

    #[test]
    fn a_bad_value_names_the_phase_and_field() {
        let e = Scenario::parse(
            "[[phase]]\nname = \"a\"\nduration = \"5x\"\nrate = 1\n",
            "s.toml",
        )
        .unwrap_err();
        assert!(e.0.contains("phase 1 (a): duration"), "{e}");
        let e =
            Scenario::parse("[[phase]]\nduration = 5\nrate = 1\nservers = 0\n", "s").unwrap_err();
        assert!(e.0.contains("servers: 0 is not in"), "{e}");
        let e = Scenario::parse(
            "[[phase]]\nduration = 5\nrate = 1\nrollout = \"v 2\"\n",
            "s",
        )
        .unwrap_err();
        assert!(e.0.contains("rollout:"), "{e}");
        let e = Scenario::parse("[[phase]]\nduration = 5\n", "s").unwrap_err();
        assert!(e.0.contains("needs a rate"), "{e}");
    }

    #[test]
    fn a_rate_is_a_number_or_a_schedule_for_the_fleet() {
        let load = |rate: &str| {
            Scenario::parse(&format!("[[phase]]\nduration = 10\nrate = {rate}\n"), "s")
                .map(|s| s.phases[0].load.clone().unwrap())
                .map_err(|e| e.0)
        };
        assert_eq!(load("1000"), Ok(Load::Rate(1000.0)));
        assert_eq!(load("\"1000\""), Ok(Load::Rate(1000.0)));
        let s = load("\"stages:2s:200,2s:200\"").unwrap();
        // Its last rate holds after it, for as long as a phase may last.
        assert_eq!(
            s.rate_text().as_deref(),
            Some("stages:2s:200,2s:200,1day:200")
        );
        let ramp = load("\"ramp:100..300\"").unwrap();
        assert_eq!(
            ramp,
            Load::Schedule("stages:0s:100,10s:300".parse().unwrap()),
            "a ramp walks the phase"
        );
        let e = load("\"stages:2s\"").unwrap_err();
        assert!(e.contains("phase 1 (phase 1): rate: invalid rate"), "{e}");
        let e = load("\"stages:1s:9000000\"").unwrap_err();
        assert!(e.contains("peaks above 5000000"), "{e}");
        assert!(load("0").unwrap_err().contains("0 is not in (0, 5000000]"));
    }

    #[test]
    fn scaling_keeps_phases_at_least_a_second() {
        let d = Scenario::builtin("default").unwrap().scaled(0.2);
        assert_eq!(d.planned(), Duration::from_secs(20));
        let tiny = Scenario::builtin("default").unwrap().scaled(0.001);
        assert!(tiny
            .phases
            .iter()
            .all(|p| p.duration >= Duration::from_secs(1)));
    }
}
