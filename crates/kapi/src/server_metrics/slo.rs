//! The SLO check (ClusterLoader2's APIResponsivenessPrometheus), kept as the scrapes come: an
//! interval's judged request-duration buckets are kept only while a 5-minute window ending at
//! a later scrape can still reach them, and each window's p99s are taken once, when it ends.
//! A summary (the live `/metrics` asks for one at every scrape) then sorts a number per call
//! per window ended rather than merging every interval's buckets again.

use super::{
    add_bucket, call_key, family, judged, promql, quantile, Buckets, CallKey, Series, ServerSlo,
};
use std::collections::{BTreeMap, VecDeque};

/// A window's length, s.
pub(super) const WINDOW_S: f64 = 300.0;

#[derive(Debug, Default)]
pub(super) struct Slo {
    /// Judged buckets by call of each interval (by its end, s) the last window reaches.
    recent: VecDeque<(f64, BTreeMap<CallKey, Buckets>)>,
    /// Each ended window's p99 by call, in time order: one window ends at each interval's end
    /// from [`WINDOW_S`] after the first scrape on.
    p99s: BTreeMap<CallKey, Vec<f64>>,
}

impl Slo {
    /// The interval ending at `at` s (the first good scrape was at `first`), its `deltas`.
    pub(super) fn add(&mut self, first: f64, at: f64, deltas: &Series) {
        let mut m: BTreeMap<CallKey, Buckets> = BTreeMap::new();
        for (s, v) in family(deltas, "apiserver_request_duration_seconds_bucket") {
            if judged(&s) {
                add_bucket(m.entry(call_key(&s)).or_default(), &s, v);
            }
        }
        self.recent.push_back((at, m));
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| *t <= at - WINDOW_S)
        {
            self.recent.pop_front();
        }
        if at - first >= WINDOW_S {
            for (k, p) in self.window() {
                self.p99s.entry(k).or_default().push(p);
            }
        }
    }

    /// Intervals kept (at most a window's worth).
    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        self.recent.len()
    }

    /// The p99 by call of the window ending at the last interval.
    fn window(&self) -> BTreeMap<CallKey, f64> {
        let mut sum: BTreeMap<&CallKey, Buckets> = BTreeMap::new();
        for (_, m) in &self.recent {
            for (k, b) in m {
                let into = sum.entry(k).or_default();
                for (le, n) in b {
                    *into.entry(*le).or_default() += n;
                }
            }
        }
        sum.into_iter()
            .filter_map(|(k, b)| Some((k.clone(), quantile(0.99, &b)?)))
            .collect()
    }

    /// The verdicts of a run from `first` to `end` s: the 99th percentile of its windows'
    /// p99s; a run shorter than a window is one window, the whole run.
    pub(super) fn verdicts(&self, first: f64, end: f64) -> Vec<ServerSlo> {
        let whole: BTreeMap<CallKey, Vec<f64>>;
        let p99s = if end - first < WINDOW_S {
            whole = self
                .window()
                .into_iter()
                .map(|(k, p)| (k, vec![p]))
                .collect();
            &whole
        } else {
            &self.p99s
        };
        p99s.iter()
            .filter_map(|((verb, resource, subresource, scope), v)| {
                let p99_s = promql::quantile(0.99, v)?;
                let limit_s = match scope.as_str() {
                    "resource" => 1.0,
                    "namespace" => 5.0,
                    _ => 30.0,
                };
                Some(ServerSlo {
                    verb: verb.clone(),
                    resource: resource.clone(),
                    subresource: subresource.clone(),
                    scope: scope.clone(),
                    p99_s,
                    limit_s,
                    windows: v.len() as u32,
                    pass: p99_s <= limit_s,
                })
            })
            .collect()
    }
}
