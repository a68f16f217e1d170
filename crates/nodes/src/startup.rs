//! Pod startup latency as clusterloader2's PodStartupLatency measures it, and the network
//! programming latency the hollow proxies observe.
//!
//! For each pod a hollow kubelet starts: **create** is the creation time (the `kapi`
//! `scaletest.dev/sent-at` annotation when the pod carries it, µs; else `creationTimestamp`,
//! whole seconds as the API server writes it); **scheduled** the `PodScheduled` condition's
//! transition time (whole seconds, set by the binding); **running** this process's clock when
//! its kubelet declared the containers started (just before the status patch); **seen** this
//! process's clock when an independent informer on all pods (not the node's own watch) first
//! saw the pod Running and Ready. The phases are create → scheduled, scheduled → running,
//! running → seen, and `pod_startup` = create → seen, checked against the 5 s p99 SLO.

use hdrhistogram::Histogram;
use hist::{histogram_codec, new_histogram};
use kapi::series::{Second, Seconds};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub use kapi::{POD_STARTUP, POD_STARTUP_SLO_S};

/// Latencies, µs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartupStats {
    /// Create → scheduled.
    #[serde(with = "histogram_codec")]
    pub create_to_schedule: Histogram<u64>,
    /// Scheduled → running.
    #[serde(with = "histogram_codec")]
    pub schedule_to_run: Histogram<u64>,
    /// Running → seen by a watch.
    #[serde(with = "histogram_codec")]
    pub run_to_watch: Histogram<u64>,
    /// Create → seen running (`pod_startup`).
    #[serde(with = "histogram_codec")]
    pub pod_startup: Histogram<u64>,
    /// EndpointSlice change (its last-change-trigger-time) → seen by a hollow proxy.
    #[serde(with = "histogram_codec")]
    pub network_programming: Histogram<u64>,
}

impl Default for StartupStats {
    fn default() -> StartupStats {
        StartupStats {
            create_to_schedule: new_histogram(),
            schedule_to_run: new_histogram(),
            run_to_watch: new_histogram(),
            pod_startup: new_histogram(),
            network_programming: new_histogram(),
        }
    }
}

impl StartupStats {
    /// Add another run's latencies (runs of hollow nodes at the same time).
    pub fn merge(&mut self, o: &StartupStats) {
        for (into, from) in [
            (&mut self.create_to_schedule, &o.create_to_schedule),
            (&mut self.schedule_to_run, &o.schedule_to_run),
            (&mut self.run_to_watch, &o.run_to_watch),
            (&mut self.pod_startup, &o.pod_startup),
            (&mut self.network_programming, &o.network_programming),
        ] {
            // Auto-resizing histograms of one precision always merge.
            let _ = into.add(from);
        }
    }
}

/// When a pod was created and scheduled (Unix seconds) and declared running.
#[derive(Debug, Clone, Copy)]
struct Marks {
    create: f64,
    scheduled: f64,
    running: Option<f64>,
}

/// The measurements in progress.
#[derive(Debug, Default)]
pub struct Startup {
    marks: Mutex<HashMap<String, Marks>>,
    stats: Mutex<StartupStats>,
    /// `pod_startup` by the second each pod was seen running.
    seconds: Mutex<Seconds>,
}

fn us(s: f64) -> u64 {
    (s.max(0.0) * 1e6).round() as u64
}

impl Startup {
    /// A kubelet admitted pod `uid`.
    pub fn admitted(&self, uid: &str, create: f64, scheduled: Option<f64>) {
        let scheduled = scheduled.unwrap_or(create).max(create);
        self.marks.lock().expect("lock").insert(
            uid.to_string(),
            Marks {
                create,
                scheduled,
                running: None,
            },
        );
    }

    /// Its kubelet declared it running at `at`.
    pub fn running(&self, uid: &str, at: f64) {
        if let Some(m) = self.marks.lock().expect("lock").get_mut(uid) {
            m.running = Some(at);
        }
    }

    /// The informer saw it running and ready at `at`; true when this completed a measurement.
    pub fn seen(&self, uid: &str, at: f64) -> bool {
        let m = {
            let mut marks = self.marks.lock().expect("lock");
            match marks.get(uid) {
                Some(m) if m.running.is_some() => marks.remove(uid),
                _ => None,
            }
        };
        let Some(m) = m else { return false };
        let run = m.running.unwrap_or(at);
        let mut s = self.stats.lock().expect("lock");
        let _ = s.create_to_schedule.record(us(m.scheduled - m.create));
        let _ = s.schedule_to_run.record(us(run - m.scheduled));
        let _ = s.run_to_watch.record(us(at - run));
        let _ = s.pod_startup.record(us(at - m.create));
        self.seconds.lock().expect("lock").record(
            Instant::now(),
            POD_STARTUP,
            Some(us(at - m.create)),
            false,
        );
        true
    }

    /// Forget a pod (deleted before it ran).
    pub fn forget(&self, uid: &str) {
        self.marks.lock().expect("lock").remove(uid);
    }

    /// A hollow proxy saw an EndpointSlice change `latency_s` after its trigger.
    pub fn programmed(&self, latency_s: f64) {
        let _ = self
            .stats
            .lock()
            .expect("lock")
            .network_programming
            .record(us(latency_s).max(1));
    }

    /// A copy of the figures so far.
    pub fn stats(&self) -> StartupStats {
        self.stats.lock().expect("lock").clone()
    }

    /// For the run's file: the figures, the pods measured in each second (key
    /// [`POD_STARTUP`]) and the second they stop at although pods went on starting
    /// ([`Seconds::cut`]); one copy (a measurement takes both locks, figures first), so that
    /// the seconds add up to the figures.
    pub fn with_seconds(&self) -> (StartupStats, Vec<Second>, Option<u64>) {
        let stats = self.stats.lock().expect("lock");
        let s = self.seconds.lock().expect("lock");
        (stats.clone(), s.all(), s.cut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_cut_from_the_marks() {
        let s = Startup::default();
        s.admitted("a", 100.0, Some(101.0));
        assert!(!s.seen("a", 102.0), "not running yet: nothing to measure");
        s.running("a", 103.5);
        assert!(s.seen("a", 103.75));
        assert!(!s.seen("a", 104.0), "measured once");
        let st = s.stats();
        let v = |h: &Histogram<u64>| h.max() as f64 / 1e6;
        assert!((v(&st.create_to_schedule) - 1.0).abs() < 0.01);
        assert!((v(&st.schedule_to_run) - 2.5).abs() < 0.01);
        assert!((v(&st.run_to_watch) - 0.25).abs() < 0.01);
        assert!((v(&st.pod_startup) - 3.75).abs() < 0.01);
    }

    #[test]
    fn a_scheduled_time_rounded_down_below_a_precise_create_counts_as_zero() {
        let s = Startup::default();
        // Created at 100.6 (µs annotation), bound in the same second: the condition says 100.
        s.admitted("a", 100.6, Some(100.0));
        s.running("a", 101.0);
        assert!(s.seen("a", 101.1));
        assert_eq!(s.stats().create_to_schedule.max(), 0);
    }
}
