//! Per-second records of a control-plane run, as load runs keep theirs: for every second from
//! the recorder's start (within milliseconds of the run's `started_unix`), the calls,
//! failures and latency histogram of each key (`create configmaps`, `pod_startup`, an
//! informer's `update notification`). The second in progress is held as HDR histograms; a
//! finished second keeps only its non-empty buckets ([`hist::sparse::Buckets`], the loadbots'
//! wire form: exact, and a few hundred bytes where a whole histogram array takes tens of
//! kilobytes), so an hour's run of thousands of hollow nodes stays small in memory and in its
//! file. A run keeps its first [`MAX_SECONDS`] and records where it stopped keeping them.

use hdrhistogram::Histogram;
use hist::new_histogram;
use hist::sparse::Buckets;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// One key's events in one second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Events (calls made, pods measured).
    pub n: u64,
    /// Of those, failed (an error status or no answer).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: u64,
    /// Latency of the timed ones, µs, as non-empty buckets.
    pub latency: Buckets,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Tally {
    /// The latency histogram (for percentiles).
    pub fn histogram(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        // A bucket's own value always fits an auto-resizing histogram.
        let _ = self.latency.add_into(&mut h);
        h
    }

    /// Latency percentile `q` in ms; None with nothing timed.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let h = self.histogram();
        (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
    }

    fn add(&mut self, o: &Tally) {
        self.n += o.n;
        self.failed += o.failed;
        if !o.latency.0.is_empty() {
            let mut h = self.histogram();
            let _ = o.latency.add_into(&mut h);
            self.latency = Buckets::of(&h);
        }
    }
}

/// One second: a tally per key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Second(pub BTreeMap<String, Tally>);

/// Add `from` into `into`, `from`'s second 0 being `into`'s second `offset` (runs that ran at
/// the same time, started that many whole seconds apart).
pub fn merge(into: &mut Vec<Second>, from: &[Second], offset: usize) {
    if into.len() < offset + from.len() {
        into.resize(offset + from.len(), Second::default());
    }
    for (i, s) in from.iter().enumerate() {
        let to = &mut into[offset + i].0;
        for (k, t) in &s.0 {
            to.entry(k.clone()).or_default().add(t);
        }
    }
}

/// The furthest apart merged runs' starts may be (a day): they ran together (callers
/// refuse runs further apart, [`starts_apart`]); a damaged start must not size the series.
pub const MAX_OFFSET_S: f64 = 86_400.0;

/// Seconds kept per run (two hours; past them a run's seconds are not kept, its totals
/// are): a day of thousands of hollow nodes would otherwise hold gigabytes. A run that went
/// on records where its seconds stop ([`Seconds::cut`]), so that reports show the rest as
/// not kept rather than as seconds without calls.
pub const MAX_SECONDS: u64 = 7_200;

/// The earliest of a run's cuts ([`Seconds::cut`] of each of its series).
pub fn first_cut(cuts: impl IntoIterator<Item = Option<u64>>) -> Option<u64> {
    cuts.into_iter().flatten().min()
}

/// Where the per-second records of merged runs stop covering every run: the earliest
/// second, counted from the earliest start, past which one run kept no seconds (each given
/// with its start, Unix seconds, and its own [`Seconds::cut`]). Offsets as [`merge_runs`].
pub fn merged_cut(runs: impl Iterator<Item = (f64, Option<u64>)> + Clone) -> Option<u64> {
    let start = earliest(runs.clone().map(|(s, _)| s));
    runs.filter_map(|(s, cut)| Some(offset(start, s) as u64 + cut?))
        .min()
}

/// The earliest of runs' starts (infinite with none).
fn earliest(starts: impl Iterator<Item = f64>) -> f64 {
    starts.fold(f64::INFINITY, f64::min)
}

/// Whole seconds from the earliest start to a run's start `s` (at most [`MAX_OFFSET_S`]).
fn offset(start: f64, s: f64) -> usize {
    (s - start).round().clamp(0.0, MAX_OFFSET_S) as usize
}

/// Why runs cannot be lined up by their starts (not finite, or further apart than
/// [`MAX_OFFSET_S`]); None when they can.
pub fn starts_apart(starts: &[f64]) -> Option<String> {
    if starts.iter().any(|s| !s.is_finite()) {
        return Some("a run's start is not a number".into());
    }
    let lo = starts.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = starts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (hi - lo > MAX_OFFSET_S).then(|| {
        format!(
            "the runs started {} s apart: merge runs that ran together (at most a day apart)",
            (hi - lo).round()
        )
    })
}

/// The merged runs' wall time: from the earliest start to the latest end, s.
pub fn merged_elapsed(runs: impl Iterator<Item = (f64, f64)> + Clone) -> f64 {
    let start = earliest(runs.clone().map(|(s, _)| s));
    let end = runs.map(|(s, e)| s + e).fold(f64::NEG_INFINITY, f64::max);
    if end.is_finite() && start.is_finite() {
        (end - start).max(0.0)
    } else {
        0.0
    }
}

/// The seconds of runs that ran at the same time, each given with its start (Unix
/// seconds), merged from the earliest start: that start, and the seconds.
pub fn merge_runs<'a>(
    runs: impl Iterator<Item = (f64, &'a [Second])> + Clone,
) -> (f64, Vec<Second>) {
    let start = earliest(runs.clone().map(|(s, _)| s));
    let mut out = Vec::new();
    for (s, seconds) in runs {
        merge(&mut out, seconds, offset(start, s));
    }
    (if start.is_finite() { start } else { 0.0 }, out)
}

/// Where a second's tallies go as they happen.
#[derive(Debug)]
pub struct Seconds {
    start: Instant,
    /// The second in progress, and its tallies: events, failed, latency.
    current: u64,
    open: BTreeMap<String, (u64, u64, Histogram<u64>)>,
    done: Vec<Second>,
    /// An event came past [`MAX_SECONDS`] and was left out.
    cut: bool,
}

impl Default for Seconds {
    fn default() -> Seconds {
        Seconds::new(Instant::now())
    }
}

impl Seconds {
    /// Second 0 starts at `start`.
    pub fn new(start: Instant) -> Seconds {
        Seconds {
            start,
            current: 0,
            open: BTreeMap::new(),
            done: Vec::new(),
            cut: false,
        }
    }

    /// When second 0 began.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The second from which events went unrecorded ([`MAX_SECONDS`]), if any did.
    pub fn cut(&self) -> Option<u64> {
        self.cut.then_some(MAX_SECONDS)
    }

    /// One event of `key` at `now`: timed (`latency_us`) or not, failed or not.
    pub fn record(&mut self, now: Instant, key: &str, latency_us: Option<u64>, failed: bool) {
        let second = now.saturating_duration_since(self.start).as_secs();
        if second >= MAX_SECONDS {
            self.cut = true;
            return;
        }
        // Callers stamp events under their own lock, so seconds never go back; an event
        // stamped before one already sealed counts in the open second.
        if second > self.current {
            self.seal();
            // Quiet seconds in between are kept, empty.
            let gap = (second - self.current - 1) as usize;
            self.done
                .extend(std::iter::repeat_n(Second::default(), gap));
            self.current = second;
        }
        let t = match self.open.get_mut(key) {
            Some(t) => t,
            None => self
                .open
                .entry(key.to_string())
                .or_insert_with(|| (0, 0, new_histogram())),
        };
        t.0 += 1;
        t.1 += u64::from(failed);
        if let Some(us) = latency_us {
            let _ = t.2.record(us.max(1));
        }
    }

    fn seal(&mut self) {
        let s = std::mem::take(&mut self.open)
            .into_iter()
            .map(|(k, (n, failed, h))| {
                let latency = Buckets::of(&h);
                (k, Tally { n, failed, latency })
            })
            .collect();
        self.done.push(Second(s));
    }

    /// Every second so far, the one in progress last (it may be partial).
    pub fn all(&self) -> Vec<Second> {
        let mut out = self.done.clone();
        if !self.open.is_empty() {
            let s = self
                .open
                .iter()
                .map(|(k, (n, failed, h))| {
                    let t = Tally {
                        n: *n,
                        failed: *failed,
                        latency: Buckets::of(h),
                    };
                    (k.clone(), t)
                })
                .collect();
            out.push(Second(s));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn events_land_in_their_second_with_quiet_seconds_kept() {
        let t0 = Instant::now();
        let mut s = Seconds::new(t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        s.record(at(10), "create pods", Some(2_000), false);
        s.record(at(900), "create pods", Some(4_000), false);
        s.record(at(950), "create pods", None, true);
        s.record(at(3_100), "delete pods", Some(1_000), false);
        let all = s.all();
        assert_eq!(all.len(), 4);
        let c = &all[0].0["create pods"];
        assert_eq!((c.n, c.failed), (3, 1));
        assert_eq!(c.histogram().len(), 2);
        assert!((c.quantile_ms(0.99).unwrap() - 4.0).abs() < 0.01);
        assert!(all[1].0.is_empty() && all[2].0.is_empty());
        assert_eq!(all[3].0["delete pods"].n, 1);
    }

    #[test]
    fn merging_adds_seconds_at_their_offset_exactly() {
        let t0 = Instant::now();
        let mut a = Seconds::new(t0);
        let mut b = Seconds::new(t0);
        for i in 1..=100u64 {
            a.record(t0, "get nodes", Some(i * 10), false);
            b.record(
                t0 + Duration::from_secs(1),
                "get nodes",
                Some(i * 1_000),
                i == 1,
            );
        }
        let mut into = a.all();
        merge(&mut into, &b.all(), 1);
        assert_eq!(into.len(), 3, "b's seconds 0 and 1 at 1 and 2");
        let m = &into[2].0["get nodes"];
        assert_eq!((m.n, m.failed), (100, 1));
        merge(&mut into, &b.all(), 1);
        let m = &into[2].0["get nodes"];
        assert_eq!((m.n, m.failed, m.histogram().len()), (200, 2, 200));
        assert!((m.quantile_ms(0.5).unwrap() - 50.0).abs() < 0.1);
    }

    #[test]
    fn runs_line_up_by_their_starts_whichever_comes_first() {
        let t0 = Instant::now();
        let mut a = Seconds::new(t0);
        a.record(t0, "k", Some(1_000), false);
        let (a, b) = (a.all(), a.all());
        // b started 3 s before a, and is given first.
        let (start, s) = merge_runs([(103.2, &b[..]), (100.1, &a[..])].into_iter());
        assert_eq!(start, 100.1);
        assert_eq!(s.len(), 4);
        assert_eq!((s[0].0["k"].n, s[3].0["k"].n), (1, 1));
        assert!(s[1].0.is_empty() && s[2].0.is_empty());
        let e = merged_elapsed([(103.2, 3.0), (100.1, 2.0)].into_iter());
        assert!((e - 6.1).abs() < 1e-9, "{e}");
        assert!(starts_apart(&[100.0, 103.0]).is_none());
        assert!(starts_apart(&[100.0, 100.0 + 2.0 * MAX_OFFSET_S]).is_some());
        assert!(starts_apart(&[f64::NAN]).is_some());
    }

    #[test]
    fn seconds_past_the_bound_are_not_kept() {
        let t0 = Instant::now();
        let mut s = Seconds::new(t0);
        s.record(t0 + Duration::from_secs(MAX_SECONDS - 1), "k", None, false);
        assert_eq!(s.all().len(), MAX_SECONDS as usize);
        assert_eq!(s.cut(), None, "every event so far kept");
        s.record(t0 + Duration::from_secs(MAX_SECONDS), "k", None, false);
        assert_eq!(s.all().len(), MAX_SECONDS as usize);
        assert_eq!(s.cut(), Some(MAX_SECONDS));
    }

    #[test]
    fn merged_runs_are_cut_where_the_first_run_stops_being_kept() {
        assert_eq!(merged_cut([(100.0, None), (160.0, None)].into_iter()), None);
        // The later run stops at its own 7,200th second, 60 s after the merged start.
        assert_eq!(
            merged_cut([(100.0, None), (160.0, Some(MAX_SECONDS))].into_iter()),
            Some(60 + MAX_SECONDS)
        );
        assert_eq!(
            merged_cut([(160.0, Some(MAX_SECONDS)), (100.0, Some(MAX_SECONDS))].into_iter()),
            Some(MAX_SECONDS)
        );
        // Offsets rounded as merge_runs rounds them: 60.2 s apart is 60 s.
        assert_eq!(
            merged_cut([(100.4, None), (160.6, Some(10))].into_iter()),
            Some(70)
        );
    }

    #[test]
    fn a_second_reads_back_from_its_json() {
        let t0 = Instant::now();
        let mut a = Seconds::new(t0);
        a.record(t0, "patch leases", Some(1_234), false);
        let all = a.all();
        let text = serde_json::to_string(&all).unwrap();
        let back: Vec<Second> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, all);
        assert!(serde_json::from_str::<Vec<Second>>(r#"[{"x":{"n":1,"latency":"!!"}}]"#).is_err());
    }
}
