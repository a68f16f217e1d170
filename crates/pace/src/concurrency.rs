//! How many connections a closed loop keeps busy as the run goes on: stages of connections,
//! as k6's ramping VUs, written `30s:10c,2m:100c`. From 0, each stage moves in a straight line
//! to its count over its duration (a stage of 0 s is a jump); after the last, its count holds.
//! The count at a moment is the line's value rounded to the nearest whole connection.

use crate::{stage_list, stage_list_of, PaceError, RateShape, Stage, Unit};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Stages of busy connections for a closed loop (see the module doc).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Concurrency {
    /// The stages as a piecewise-linear shape whose "rate" is the connection count: the one
    /// walk over segments serves both.
    shape: RateShape,
}

impl FromStr for Concurrency {
    type Err = PaceError;
    fn from_str(text: &str) -> Result<Self, PaceError> {
        let stages =
            stage_list_of(text, Unit::Connections).map_err(|why| PaceError::Connections {
                text: text.to_string(),
                why,
            })?;
        Ok(Concurrency {
            shape: RateShape::Stages { stages },
        })
    }
}

impl TryFrom<String> for Concurrency {
    type Error = PaceError;
    fn try_from(text: String) -> Result<Self, PaceError> {
        text.parse()
    }
}

impl From<Concurrency> for String {
    fn from(c: Concurrency) -> String {
        c.text()
    }
}

impl fmt::Display for Concurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl Concurrency {
    /// The stages, in order (each `to` a whole number of connections).
    pub fn stages(&self) -> &[Stage] {
        match &self.shape {
            RateShape::Stages { stages } => stages,
            _ => unreachable!("a Concurrency is made of stages only"),
        }
    }

    /// The text form (`30s:10c,2m:100c`) that parsing gives back.
    pub fn text(&self) -> String {
        stage_list(self.stages(), Unit::Connections)
    }

    /// How long the stages last.
    pub fn duration(&self) -> Duration {
        self.stages().iter().map(|s| s.over).sum()
    }

    /// The most connections any stage asks for.
    pub fn peak(&self) -> usize {
        self.stages()
            .iter()
            .map(|s| s.to as usize)
            .max()
            .unwrap_or(0)
    }

    /// Connections to keep busy `t` seconds into the run.
    pub fn at(&self, t: f64) -> usize {
        let total = self.duration().as_secs_f64();
        self.shape.rate_at(t, total).round() as usize
    }

    /// The stages of a run lasting `total` seconds, for a per-stage report: `(start, end,
    /// connections at the start, at the end)` of each stage that lasts, and of the hold of the
    /// last count until `total`.
    pub fn stages_over(&self, total: f64) -> Vec<(f64, f64, usize, usize)> {
        self.shape
            .stages_over(total)
            .into_iter()
            .map(|(a, b, _)| {
                // The count just inside each end: a jump at a bound belongs to its own stage.
                let inside = 1e-9 * (b - a);
                (a, b, self.at(a + inside), self.at(b - inside))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_rounds_and_holds() {
        let c: Concurrency = "10s:10c,0s:40c,5s:40c".parse().unwrap();
        assert_eq!(c.peak(), 40);
        assert_eq!(c.duration(), Duration::from_secs(15));
        assert_eq!(c.at(0.0), 0);
        assert_eq!(c.at(4.0), 4);
        assert_eq!(c.at(4.6), 5);
        assert_eq!(c.at(10.5), 40);
        assert_eq!(c.at(99.0), 40);
        assert_eq!(
            c.stages_over(20.0),
            vec![
                (0.0, 10.0, 0, 10),
                (10.0, 15.0, 40, 40),
                (15.0, 20.0, 40, 40)
            ]
        );
    }

    #[test]
    fn text_round_trips_and_bad_input_names_the_stage() {
        let c: Concurrency = "30s:10c,2m:100c".parse().unwrap();
        assert_eq!(c.text(), "30s:10c,2m:100c");
        assert_eq!(c.text().parse::<Concurrency>().unwrap(), c);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, "\"30s:10c,2m:100c\"");
        assert_eq!(serde_json::from_str::<Concurrency>(&json).unwrap(), c);
        for (bad, why) in [
            (
                "30s:10",
                "stage 1's connections \"10\" are not a whole number",
            ),
            ("30s:10c,1m:2.5c", "stage 2's connections"),
            ("10c", "stage 1 (\"10c\") needs a duration"),
            ("30s:0c", "every stage has 0 connections"),
            ("0s:5c", "the stages last 0 s"),
        ] {
            let e = bad.parse::<Concurrency>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
