//! Pass/fail verdicts a CI job can use: `--threshold EXPR` on every command that ends a run,
//! evaluated on the run's exact merged totals (the same histograms the tables read).
//!
//! An expression is `METRIC OP VALUE`, spaces allowed:
//! - latency (corrected, from the intended send time): `p50`, `p99`, `p99.9`, any `pN` with
//!   0 < N ≤ 100, `mean`, `max`; the value needs a unit: `800us`, `50ms`, `1.5s`;
//! - `error_rate`: failed / ended requests, as `0.1%` or a fraction `0.001`;
//! - `rps`: successful (1xx–3xx) answers per second of the run;
//! - counts: `failed` (transport errors and 4xx/5xx answers), `errors` (transport errors only),
//!   `requests` (ended: answered or failed), `ok`, `status_5xx` (a class), `status_503` (a code);
//! - OP: `<`, `<=`, `>`, `>=`, `==`, `!=`.
//!
//! A threshold is kept as its text (serde goes through it), so a run file, a TOML scenario and
//! a flag all hold the same thing and are checked by the one parser here.

use hist::Snapshot;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    /// A latency percentile (0 < p ≤ 100), µs.
    Percentile(f64),
    /// Mean latency, µs.
    Mean,
    /// Largest latency, µs.
    Max,
    /// Failed / ended, a fraction.
    ErrorRate,
    /// Successful answers per second.
    Rps,
    /// Transport errors and 4xx/5xx answers.
    Failed,
    /// Transport errors.
    Errors,
    /// Ended requests.
    Requests,
    /// 1xx–3xx answers.
    Ok,
    /// Answers in a status class (1–5).
    Class(u16),
    /// Answers with one status code.
    Status(u16),
}

impl Metric {
    fn latency(self) -> bool {
        matches!(self, Metric::Percentile(_) | Metric::Mean | Metric::Max)
    }

    /// Counts only grow during a run.
    fn count(self) -> bool {
        matches!(
            self,
            Metric::Failed
                | Metric::Errors
                | Metric::Requests
                | Metric::Ok
                | Metric::Class(_)
                | Metric::Status(_)
        )
    }
}

/// The comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }
}

/// One parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    text: String,
    metric: Metric,
    op: Op,
    /// In the metric's unit: µs for latencies, a fraction for the error rate.
    value: f64,
}

/// A threshold that does not parse: the text and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("threshold {text:?}: {why}")]
pub struct ThresholdError {
    /// The expression as given.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

const METRICS: &str = "p50, p99, p99.9 (any pN), mean, max, error_rate, rps, failed, errors, \
                       requests, ok, status_5xx, status_503";

fn metric(name: &str) -> Result<Metric, String> {
    let m = match name {
        "mean" => Metric::Mean,
        "max" => Metric::Max,
        "error_rate" => Metric::ErrorRate,
        "rps" => Metric::Rps,
        "failed" => Metric::Failed,
        "errors" => Metric::Errors,
        "requests" => Metric::Requests,
        "ok" => Metric::Ok,
        _ => {
            if let Some(p) = name.strip_prefix('p') {
                match p.parse::<f64>() {
                    Ok(p) if p > 0.0 && p <= 100.0 && !p.is_nan() => Metric::Percentile(p),
                    _ => return Err(format!("{name:?} is not a percentile (p0 < pN ≤ p100)")),
                }
            } else if let Some(s) = name.strip_prefix("status_") {
                let b = s.as_bytes();
                match b {
                    [c @ b'1'..=b'5', b'x', b'x'] => Metric::Class(u16::from(c - b'0')),
                    _ => match s.parse::<u16>() {
                        Ok(code) if (100..=599).contains(&code) => Metric::Status(code),
                        _ => {
                            return Err(format!(
                                "{name:?}: a status is a class (status_5xx) or a code 100-599"
                            ))
                        }
                    },
                }
            } else {
                return Err(format!("unknown metric {name:?} (known: {METRICS})"));
            }
        }
    };
    Ok(m)
}

fn number(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number ≥ 0")),
    }
}

/// A latency with its unit, in µs.
fn latency(s: &str) -> Result<f64, String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?}: a latency needs a unit (us, ms or s)"))?;
    let (n, unit) = s.split_at(split);
    let scale = match unit {
        "us" | "µs" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (us, ms or s)")),
    };
    Ok(number(n)? * scale)
}

impl FromStr for Threshold {
    type Err = ThresholdError;
    fn from_str(text: &str) -> Result<Threshold, ThresholdError> {
        let err = |why: String| ThresholdError {
            text: text.to_string(),
            why,
        };
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let at = compact
            .find(['<', '>', '=', '!'])
            .ok_or_else(|| err("no comparison (<, <=, >, >=, ==, !=)".into()))?;
        let (name, rest) = compact.split_at(at);
        let (op, value) = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .iter()
        .find_map(|(s, op)| rest.strip_prefix(s).map(|v| (*op, v)))
        .ok_or_else(|| err(format!("{rest:?} does not start with a comparison")))?;
        if name.is_empty() {
            return Err(err(format!("no metric (known: {METRICS})")));
        }
        if value.is_empty() {
            return Err(err("no value".into()));
        }
        let metric = metric(name).map_err(err)?;
        let value = match metric {
            m if m.latency() => latency(value),
            Metric::ErrorRate => match value.strip_suffix('%') {
                Some(pc) => number(pc).map(|v| v / 100.0),
                None => number(value),
            }
            .and_then(|v| {
                if v <= 1.0 {
                    Ok(v)
                } else {
                    Err(format!("{value:?}: a rate is at most 100% (1.0)"))
                }
            }),
            _ => number(value),
        }
        .map_err(err)?;
        Ok(Threshold {
            text: text.trim().to_string(),
            metric,
            op,
            value,
        })
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Threshold {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Threshold, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One threshold's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The threshold as given.
    pub threshold: String,
    /// What was measured, in the threshold's unit (ms for latencies, % for the error rate);
    /// `None` when there was nothing to measure (a latency with no answers).
    pub measured: Option<f64>,
    /// The measured value as shown.
    pub shown: String,
    /// Whether the threshold held.
    pub pass: bool,
}

impl Threshold {
    /// The measured value in the threshold's own unit (µs, fraction, count, per second).
    fn measure(&self, total: &Snapshot, elapsed_s: f64) -> Option<f64> {
        let h = &total.latency;
        let ended = total.completed();
        Some(match self.metric {
            Metric::Percentile(p) if !h.is_empty() => h.value_at_quantile(p / 100.0) as f64,
            Metric::Mean if !h.is_empty() => h.mean(),
            Metric::Max if !h.is_empty() => h.max() as f64,
            Metric::Percentile(_) | Metric::Mean | Metric::Max => return None,
            Metric::ErrorRate if ended == 0 => return None,
            Metric::ErrorRate => total.failed() as f64 / ended as f64,
            Metric::Rps if elapsed_s <= 0.0 => return None,
            Metric::Rps => total.ok() as f64 / elapsed_s,
            Metric::Failed => total.failed() as f64,
            Metric::Errors => total.error_count() as f64,
            Metric::Requests => ended as f64,
            Metric::Ok => total.ok() as f64,
            Metric::Class(c) => total
                .status
                .range(c * 100..c * 100 + 100)
                .map(|(_, n)| *n)
                .sum::<u64>() as f64,
            Metric::Status(code) => total.status.get(&code).copied().unwrap_or(0) as f64,
        })
    }

    /// The verdict on `total`, measured over `elapsed_s` seconds.
    pub fn judge(&self, total: &Snapshot, elapsed_s: f64) -> Verdict {
        let measured = self.measure(total, elapsed_s);
        let pass = measured.is_some_and(|m| self.op.holds(m, self.value));
        let (measured, shown) = match measured {
            None if self.metric.latency() => (None, "no answers".to_string()),
            None => (None, "nothing ended".to_string()),
            Some(us) if self.metric.latency() => (Some(us / 1e3), crate::format::ms(us / 1e3)),
            Some(f) if self.metric == Metric::ErrorRate => (
                Some(f * 100.0),
                format!("{}%", crate::format::trim(f * 100.0, 3)),
            ),
            Some(v) if self.metric == Metric::Rps => (Some(v), crate::format::trim(v, 1)),
            Some(v) => (Some(v), crate::format::count(v as u64)),
        };
        Verdict {
            threshold: self.text.clone(),
            measured,
            shown,
            pass,
        }
    }

    /// Whether it measures `failed` (a check of failed requests of its own).
    pub fn counts_failed(&self) -> bool {
        self.metric == Metric::Failed
    }

    /// Whether the threshold has failed for good on the totals so far: a count that only
    /// grows is past a `<`, `<=` or `==` bound. Used by `--abort-on-fail`; percentiles and
    /// rates can still recover, so they are judged at the end only.
    pub fn failed_for_good(&self, so_far: &Snapshot) -> bool {
        let Some(m) = self.measure(so_far, 0.0).filter(|_| self.metric.count()) else {
            return false;
        };
        match self.op {
            Op::Lt | Op::Le => !self.op.holds(m, self.value),
            Op::Eq => m > self.value,
            Op::Gt | Op::Ge | Op::Ne => false,
        }
    }
}

/// The verdicts of `thresholds` on `total`, measured over `elapsed_s` seconds (a run's
/// totals, a window of its seconds, the run so far).
pub fn judge(thresholds: &[Threshold], total: &Snapshot, elapsed_s: f64) -> Vec<Verdict> {
    thresholds
        .iter()
        .map(|t| t.judge(total, elapsed_s))
        .collect()
}

/// Whether every verdict passed (true for none).
pub fn all_pass(verdicts: &[Verdict]) -> bool {
    verdicts.iter().all(|v| v.pass)
}

/// The verdict lines, after the tables: `✓ p99<50ms  (p99 = 4.2 ms)`.
pub fn write_verdicts(verdicts: &[Verdict], out: &mut dyn std::io::Write) -> std::io::Result<()> {
    if verdicts.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let width = verdicts
        .iter()
        .map(|v| v.threshold.chars().count())
        .max()
        .unwrap_or(0);
    for v in verdicts {
        writeln!(
            out,
            "{} {:width$}  measured {}",
            if v.pass { "pass" } else { "FAIL" },
            v.threshold,
            v.shown
        )?;
    }
    let failed = verdicts.iter().filter(|v| !v.pass).count();
    if failed > 0 {
        writeln!(out, "{failed} of {} thresholds failed", verdicts.len())?;
    } else {
        writeln!(out, "all {} thresholds passed", verdicts.len())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn t(s: &str) -> Threshold {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    /// 100 answers: 90 × 200 with latencies 1..=90 ms, 10 × 503 at 100 ms; 5 transport errors.
    fn run() -> Snapshot {
        let mut s = Snapshot::default();
        for i in 1..=90u64 {
            s.latency.record(i * 1000).unwrap();
        }
        for _ in 0..10 {
            s.latency.record(100_000).unwrap();
        }
        s.responses = 100;
        s.status = BTreeMap::from([(200, 90), (503, 10)]);
        s.errors = BTreeMap::from([("reset".to_string(), 5)]);
        s
    }

    #[test]
    fn each_metric_is_measured_on_the_totals() {
        let s = run();
        // (threshold, passes, shown)
        let table = [
            ("p50 < 51ms", true, "50.02 ms"),
            ("p50<50ms", false, "50.02 ms"),
            ("p99.9 <= 100.1ms", true, "100.03 ms"),
            ("p100<=0.1s", false, "100.03 ms"),
            ("max < 100ms", false, "100.03 ms"),
            ("mean > 50ms", true, "50.95 ms"),
            ("error_rate < 15%", true, "14.286%"),
            ("error_rate<0.1", false, "14.286%"),
            ("failed == 15", true, "15"),
            ("errors==5", true, "5"),
            ("requests >= 105", true, "105"),
            ("ok == 90", true, "90"),
            ("rps >= 9", true, "9"),
            ("rps > 9", false, "9"),
            ("status_5xx < 10", false, "10"),
            ("status_503 != 0", true, "10"),
            ("status_404 == 0", true, "0"),
            ("status_2xx>=90", true, "90"),
        ];
        for (expr, pass, shown) in table {
            let v = t(expr).judge(&s, 10.0);
            assert_eq!((v.pass, v.shown.as_str()), (pass, shown), "{expr}");
            assert_eq!(v.threshold, expr);
        }
    }

    #[test]
    fn nothing_measured_fails_and_says_so() {
        let s = Snapshot::default();
        let v = t("p99<1s").judge(&s, 1.0);
        assert_eq!(
            (v.pass, v.measured, v.shown.as_str()),
            (false, None, "no answers")
        );
        assert!(!t("error_rate<1%").judge(&s, 1.0).pass);
        assert!(t("failed==0").judge(&s, 1.0).pass);
    }

    #[test]
    fn malformed_expressions_name_the_text_and_the_fault() {
        for (expr, why) in [
            ("p99", "no comparison"),
            ("p99<50", "needs a unit"),
            ("p99<50m", "unknown unit"),
            ("p0<1ms", "not a percentile"),
            ("p101<1ms", "not a percentile"),
            ("latency<1ms", "unknown metric"),
            ("<1ms", "no metric"),
            ("p99<", "no value"),
            ("p99=<1ms", "does not start with a comparison"),
            ("error_rate<150%", "at most 100%"),
            ("rps>=-1", "not a number"),
            ("status_6xx<1", "a status is a class"),
            ("status_abc<1", "a status is a class"),
        ] {
            let e = expr.parse::<Threshold>().unwrap_err();
            assert_eq!(e.text, expr);
            assert!(e.to_string().contains(why), "{expr}: {e}");
            assert!(
                e.to_string().starts_with(&format!("threshold {expr:?}")),
                "{e}"
            );
        }
    }

    #[test]
    fn only_counts_past_an_upper_bound_fail_for_good() {
        let s = run();
        assert!(t("failed==0").failed_for_good(&s));
        assert!(t("status_5xx<10").failed_for_good(&s));
        assert!(!t("status_5xx<=10").failed_for_good(&s));
        assert!(!t("failed>=100").failed_for_good(&s));
        assert!(!t("p50<1ms").failed_for_good(&s));
        assert!(!t("error_rate<1%").failed_for_good(&s));
    }

    #[test]
    fn thresholds_travel_as_their_text() {
        let th = t(" p99 < 50ms ");
        assert_eq!(serde_json::to_string(&th).unwrap(), "\"p99 < 50ms\"");
        let back: Threshold = serde_json::from_str("\"p99 < 50ms\"").unwrap();
        assert_eq!(back, th);
        let bad = serde_json::from_str::<Threshold>("\"p99 < 50\"").unwrap_err();
        assert!(bad.to_string().contains("needs a unit"), "{bad}");
    }
}
