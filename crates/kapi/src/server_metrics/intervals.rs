//! The server's figures scrape by scrape, for charts over time: requests and p99 by call,
//! and API Priority and Fairness' queue-wait p99 and rejections by priority level, in each
//! interval between two good scrapes (every `--scrape-interval`).

use super::{observations, quantile, Series};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One interval between two good scrapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInterval {
    /// Its end, Unix seconds.
    pub end_unix: f64,
    /// Its length, s.
    pub seconds: f64,
    /// By call, keyed as the server table's rows are (`POST configmaps (namespace)`).
    pub calls: BTreeMap<String, IntervalCalls>,
    /// By APF priority level.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub apf: BTreeMap<String, IntervalApf>,
}

/// One call's requests in an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalCalls {
    /// Requests counted.
    pub count: u64,
    /// p99, s (None with no timed request).
    pub p99_s: Option<f64>,
}

/// One priority level in an interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalApf {
    /// Requests whose queue wait was observed.
    pub waited: u64,
    /// p99 queue wait, s.
    pub wait_p99_s: Option<f64>,
    /// Rejections (429), every reason.
    pub rejected: u64,
}

/// A call's row text: `POST configmaps/status (namespace)`.
pub fn call_text(verb: &str, resource: &str, subresource: &str, scope: &str) -> String {
    let sub = if subresource.is_empty() {
        String::new()
    } else {
        format!("/{subresource}")
    };
    format!("{verb} {resource}{sub} ({scope})")
}

/// The interval from `from` to `at` s (the first scrape having been at `began_unix` + 0),
/// from its `deltas`.
pub(super) fn row(began_unix: f64, from: f64, at: f64, deltas: &Series) -> ServerInterval {
    ServerInterval {
        end_unix: began_unix + at,
        seconds: at - from,
        calls: super::calls(deltas)
            .into_iter()
            .map(|c| {
                let k = call_text(&c.verb, &c.resource, &c.subresource, &c.scope);
                let n = IntervalCalls {
                    count: c.count,
                    p99_s: c.p99_s,
                };
                (k, n)
            })
            .collect(),
        apf: super::apf_by_level(deltas)
            .into_iter()
            .map(|(pl, (b, rejected))| {
                let a = IntervalApf {
                    waited: observations(&b),
                    wait_p99_s: quantile(0.99, &b),
                    rejected: rejected.values().sum(),
                };
                (pl, a)
            })
            .collect(),
    }
}
