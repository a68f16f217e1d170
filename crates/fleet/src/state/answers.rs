//! What the read APIs and the end of the run answer from the state: the run's totals and
//! summary, a window of seconds, the published series, and the run file.

use super::seconds::unpack;
use super::{State, PUBLISH_DELAY};
use hist::Snapshot;
use report::point::Point;
use report::{FleetSecond, Summary};

impl State {
    /// Whole-run figures.
    pub fn summary(&self, now: f64) -> Summary {
        self.summary_of(now, &self.total())
    }

    /// Whole-run figures from `total`, this state's [`State::total`] (for a caller that
    /// needs the total too: it is merged once).
    pub fn summary_of(&self, now: f64, total: &Snapshot) -> Summary {
        let (live, stale, gone) = self.bot_counts();
        Summary {
            requests: total.responses,
            errors: total.failed(),
            ok: total.ok(),
            live,
            stale,
            gone,
            p50_ms: total.quantile_ms(0.5),
            p99_ms: total.quantile_ms(0.99),
            versions: total.versions.clone(),
            elapsed_s: (now - self.started_unix).max(0.0),
            names: report::names::rows(&self.named, (now - self.started_unix).max(0.0)),
        }
    }

    /// What was measured in the Unix seconds `from..to`, merged (exact percentiles), and
    /// whether the window has settled by `now`: every second in it ended at least the
    /// publishing delay ago, so the bots' pushes for it have arrived.
    pub fn window(&self, from: u64, to: u64, now: f64) -> report::Window {
        let mut w = Snapshot::default();
        for c in self.closed.range(from..to).map(|(_, c)| c) {
            w.merge(&unpack(&c.packed));
        }
        for t in self.intervals.keys().filter(|t| (from..to).contains(t)) {
            if let Some((_, s)) = self.intervals.get(t) {
                w.merge(s);
            }
        }
        w.start = 0.0;
        w.end = to.saturating_sub(from) as f64;
        report::Window {
            from,
            to,
            settled: (to as f64) <= (now - PUBLISH_DELAY).floor(),
            snapshot: w,
        }
    }

    /// Everything measured so far, merged (named requests aside: see `named`).
    pub fn total(&self) -> Snapshot {
        let mut t = self.closed_total.clone();
        for k in self.intervals.keys() {
            if let Some((_, s)) = self.intervals.get(k) {
                t.merge(s);
            }
        }
        t
    }

    /// Published seconds after `since`, oldest first, at most `limit` (the newest ones).
    pub fn points_since(&self, since: u64, limit: usize) -> Vec<Point> {
        let mut out: Vec<Point> = self
            .history
            .range(since.saturating_add(1)..)
            .map(|(_, p)| p.clone())
            .collect();
        for (t, o) in self.open.range(since.saturating_add(1)..) {
            if o.published {
                let (reported, snap) = self.intervals.get(*t).unwrap_or((0, &self.empty));
                out.push(Point::of(*t, snap, Some(&o.fleet(*t, reported, &self.ran))));
            }
        }
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
        out
    }

    /// The run as a run file (after [`State::close_all`], every second is in it). Seconds
    /// from the first to the last with data, gaps filled with empty ones.
    pub fn results(&self, now: f64, info: report::RunInfo) -> report::RunFile {
        let (first, last) = match (self.closed.keys().next(), self.closed.keys().last()) {
            (Some(a), Some(b)) => (*a, *b),
            _ => (0, 0),
        };
        let mut intervals = Vec::new();
        let mut seconds = Vec::new();
        if !self.closed.is_empty() {
            for t in first..=last {
                match self.closed.get(&t) {
                    Some(c) => {
                        let mut s = unpack(&c.packed);
                        s.start = (t - first) as f64;
                        s.end = s.start + 1.0;
                        intervals.push(s);
                        seconds.push(c.fleet);
                    }
                    None => {
                        intervals.push(Snapshot {
                            start: (t - first) as f64,
                            end: (t - first) as f64 + 1.0,
                            ..Default::default()
                        });
                        seconds.push(FleetSecond {
                            t,
                            ..Default::default()
                        });
                    }
                }
            }
        }
        let mut total = self.total();
        total.start = 0.0;
        total.end = intervals.len() as f64;
        total.names = self.named.clone();
        for n in total.names.values_mut() {
            (n.start, n.end) = (total.start, total.end);
        }
        // A fleet schedule's stages, cut from the same seconds (they start on a whole second).
        let end = self.finished_at.unwrap_or(now);
        let stages = report::stages::rows(&self.ran.stages(first, end), &intervals);
        report::RunFile {
            version: report::RUNFILE_VERSION,
            tool: concat!("scaletest ", env!("CARGO_PKG_VERSION")).into(),
            started_unix: self.started_unix,
            info,
            elapsed_s: (now - self.started_unix).max(0.0),
            interrupted: false,
            peak_lanes: 0,
            in_flight_at_end: 0,
            total,
            series: report::runfile::series_of(&intervals),
            intervals,
            fleet: Some(report::Fleet {
                seconds,
                events: self.events.clone(),
                bots: self.bots.values().map(|b| b.record.clone()).collect(),
                previous_runs: self.previous_runs.clone(),
            }),
            summary: Some(self.summary(now)),
            verdicts: Vec::new(),
            stages,
        }
    }
}
