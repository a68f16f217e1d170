//! The load engine: `run(Config, Shutdown)` drives HTTP load and returns what it measured.
//!
//! Flow: the controller ([`run`]) starts one OS thread per worker, each with its own
//! single-threaded tokio runtime (no cross-thread work stealing on the hot path, like wrk's
//! threads). Each worker owns a share of the lanes (connections or HTTP/2 stream slots) and of
//! the rate, records into its own `recorder::Recorder`, and every second hands a
//! [`hist::Snapshot`] to the controller, which merges them into the run total and the
//! per-second series. Stop conditions (duration, request count, Ctrl-C via [`Shutdown`]),
//! pacing (closed loop, or an open-loop [`pace::Pacer`]) and protocol (an `st_http::Lane`) are
//! independent values passed into the one driver, so no mode is a copy of another.
//!
//! Latency is recorded for every complete response, whatever its status. Failed requests are
//! counted by `ErrorClass` and do not enter the latency histograms.

mod clock;
pub mod mix;
mod recorder;
pub mod spec;
pub mod targets;
pub mod template;
mod worker;

use hist::{Intervals, SecondSample, Snapshot};
use pace::{Arrival, Concurrency, RateShape};
use st_http::Connector;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch, Notify};

pub use spec::{Spec, SpecError, Target};
pub use template::Prepared;

/// How requests are paced.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Each lane sends its next request as soon as the previous response arrives.
    Closed {
        /// Busy connections in stages (over all workers); `None`: all of them, all the run.
        stages: Option<Concurrency>,
    },
    /// Requests are sent on a schedule, whatever the responses do.
    Open {
        /// Total requests per second over all workers.
        shape: RateShape,
        /// Evenly spaced or Poisson arrivals.
        arrival: Arrival,
        /// Upper bound on connections (over all workers); sends that find every lane busy at
        /// the cap wait and are reported as late.
        max_connections: usize,
        /// Seed for Poisson arrivals.
        seed: u64,
    },
}

/// Everything a run needs, already validated.
#[derive(Clone)]
pub struct Config {
    /// Where and how to connect.
    pub connector: Connector,
    /// Requests (at least one), sent in the mix's order.
    pub requests: Arc<Vec<Prepared>>,
    /// Which request each send is, and the names figures are kept under.
    pub mix: Arc<mix::Mix>,
    /// Closed or open loop.
    pub mode: Mode,
    /// Connections opened before the clock starts (closed loop: the number of connections).
    pub connections: usize,
    /// Concurrent streams per HTTP/2 connection (1 for HTTP/1.1).
    pub streams: usize,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many requests have been sent.
    pub max_requests: Option<u64>,
    /// Per-request timeout (connect included). After the duration, in-flight requests get up
    /// to the smaller of this and [`DRAIN_MAX`] to finish.
    pub timeout: Duration,
    /// Worker threads.
    pub threads: usize,
    /// What a long-running caller (a loadbot) changes or needs while the run goes on.
    pub live: Live,
}

impl Config {
    /// The mean total rate the schedule asks for over the duration (1 s without one), open
    /// loop only: the schedule's count over it.
    pub fn mean_rate(&self) -> Option<f64> {
        let Mode::Open { shape, .. } = &self.mode else {
            return None;
        };
        let secs = self
            .duration
            .unwrap_or(Duration::from_secs(1))
            .as_secs_f64();
        Some(shape.count_until(secs, secs) / secs)
    }
}

/// Options for runs that live long and change while they run (loadbots).
#[derive(Clone, Default)]
pub struct Live {
    /// Cut intervals at wall-clock second boundaries (the first interval is then partial), so
    /// that intervals of many processes line up; [`Progress::wall_second`] names each.
    pub wall_clock_ticks: bool,
    /// Open loop: a handle through which the rate can be changed during the run.
    pub rate: Option<RateControl>,
    /// Run until [`Shutdown`] says stop, with neither a duration nor a request count (stages
    /// still end the schedule where they end: a fleet's schedule is the aggregator's).
    pub until_stopped: bool,
    /// Open loop: the Unix time at which the rate shape starts (a fleet's schedule, shared by
    /// bots that join it at different times): the run joins the shape where it is when the
    /// run starts, and sends nothing that was due before. `None`: the shape starts with the run.
    pub shape_start_unix: Option<f64>,
    /// A loadbot's share of its fleet's `{{seq}}` and CSV rows (see `template`), changed
    /// live when the fleet changes; the default: the whole.
    pub share: template::ShareControl,
    /// Named requests' figures in every second's snapshot (`--out jsonl`, loadbots); else
    /// only in the last (a run's totals), which spares taking and merging every name's
    /// histograms each second.
    pub names_each_second: bool,
}

/// Changes an open-loop run's rate while it runs: from the moment of a change the schedule
/// continues at `factor ×` the spec's rate shape (a bot's share of the fleet's schedule when
/// the set of bots changes), without touching requests in flight.
#[derive(Clone)]
pub struct RateControl(Arc<watch::Sender<f64>>);

impl Default for RateControl {
    fn default() -> Self {
        RateControl::new()
    }
}

impl RateControl {
    /// A control at factor 1: the spec's own rate.
    pub fn new() -> Self {
        RateControl(Arc::new(watch::channel(1.0).0))
    }
    /// From now on, `factor ×` the spec's rate (> 0).
    pub fn set(&self, factor: f64) {
        if factor.is_finite() && factor > 0.0 {
            self.0.send_replace(factor);
        }
    }
    /// The factor asked for now.
    pub fn get(&self) -> f64 {
        *self.0.borrow()
    }
    pub(crate) fn subscribe(&self) -> watch::Receiver<f64> {
        self.0.subscribe()
    }
}

/// Ends a run early from outside (Ctrl-C, SIGTERM). Cloning shares the signal.
#[derive(Clone, Default)]
pub struct Shutdown(Arc<(AtomicU8, Notify)>);

const FINISH: u8 = 1;
const ABORT: u8 = 2;

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask the run to stop now, dropping what is in flight; it still reports what it measured.
    pub fn trigger(&self) {
        self.raise(ABORT);
    }
    /// Ask the run to end gracefully: start nothing new and let requests in flight finish (up
    /// to the drain limit), as at the end of its duration.
    pub fn finish(&self) {
        self.raise(FINISH);
    }
    fn raise(&self, level: u8) {
        self.0 .0.fetch_max(level, Ordering::SeqCst);
        self.0 .1.notify_waiters();
    }
    /// Whether [`Shutdown::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        self.0 .0.load(Ordering::SeqCst) >= ABORT
    }
    /// Whether [`Shutdown::finish`] (or [`Shutdown::trigger`]) was called.
    pub fn is_finishing(&self) -> bool {
        self.0 .0.load(Ordering::SeqCst) >= FINISH
    }
    /// Wait until [`Shutdown::finish`] (or [`Shutdown::trigger`]) is called.
    pub async fn finishing(&self) {
        self.wait_for(FINISH).await
    }
    /// Wait until the signal reaches `level` or more.
    async fn wait_for(&self, level: u8) {
        loop {
            let n = self.0 .1.notified();
            if self.0 .0.load(Ordering::SeqCst) >= level {
                return;
            }
            n.await;
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Everything merged.
    pub total: Snapshot,
    /// One sample per second; the last may cover less than a second (see `seconds` on it).
    pub series: Vec<SecondSample>,
    /// Wall time from the first send to the end.
    pub elapsed: Duration,
    /// The run was stopped by [`Shutdown`].
    pub interrupted: bool,
    /// Most lanes open at once, summed over workers (connections × streams).
    pub peak_lanes: usize,
    /// Requests still in flight when the run ended (not counted as errors).
    pub in_flight_at_end: u64,
    /// Every interval, in order (the last may be partial); `series` is their summary. Without
    /// names: each second's went to the progress callback, their run totals are `total`'s.
    pub intervals: Vec<Snapshot>,
    /// Unix time of the start, in seconds.
    pub started_unix: f64,
    /// The wall-clock (Unix) second of interval 0.
    pub first_wall_second: u64,
}

/// Progress after each interval of the run, for live displays and loadbots.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// Seconds since start (at the end of this interval).
    pub elapsed: Duration,
    /// Number of this interval (0 is the first).
    pub second: u32,
    /// The Unix second this interval belongs to (exact with [`Live::wall_clock_ticks`]).
    pub wall_second: u64,
    /// What was measured in it, histograms included.
    pub snapshot: &'a Snapshot,
    /// Completed requests so far.
    pub responses: u64,
    /// Errors so far.
    pub errors: u64,
}

impl Progress<'_> {
    /// The per-second summary of this interval.
    pub fn sample(&self) -> SecondSample {
        self.snapshot.sample(self.second)
    }
}

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration is inconsistent.
    #[error("{0}")]
    Config(String),
    /// A worker thread could not be started.
    #[error("cannot start worker thread: {0}")]
    Thread(String),
}

/// When the run started, and the instant interval 0 is counted from (equal to the start unless
/// ticks follow the wall clock).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Start {
    pub start: Instant,
    pub epoch: Instant,
    /// Where in the rate shape the run starts, seconds ([`Live::shape_start_unix`]).
    pub join: Option<f64>,
}

/// Longest wait for in-flight requests after the duration ends.
pub const DRAIN_MAX: Duration = Duration::from_secs(2);

/// What the controller tells the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Send.
    Run,
    /// The duration is over: start nothing new, let in-flight requests finish.
    Drain,
    /// Stop now (Ctrl-C).
    Abort,
}

pub(crate) enum Msg {
    Ready,
    Interval {
        second: u32,
        snap: Box<Snapshot>,
    },
    Done {
        snap: Box<Snapshot>,
        peak_lanes: usize,
        in_flight: u64,
    },
}

/// Shared between the controller and the workers.
pub(crate) struct Shared {
    pub issued: AtomicU64,
    pub max_requests: Option<u64>,
    /// Which request each send of the global sequence is; with one, nobody needs the sequence.
    pub mix: Arc<mix::Mix>,
    /// Named requests' figures every second (else once, at the end).
    pub names_each_second: bool,
}

impl Shared {
    /// Claim the right to send one more request and say which one (the mix's order over all
    /// workers, so the split across targets is exact); `None` once the count limit is reached.
    pub(crate) fn claim(&self) -> Option<usize> {
        if self.max_requests.is_none() && self.mix.single() {
            return Some(self.mix.pick(0));
        }
        let seq = self.issued.fetch_add(1, Ordering::Relaxed);
        match self.max_requests {
            Some(n) if seq >= n => None,
            _ => Some(self.mix.pick(seq)),
        }
    }

    /// Requests still allowed by the count limit, if there is one.
    pub(crate) fn remaining(&self) -> Option<u64> {
        self.max_requests
            .map(|n| n.saturating_sub(self.issued.load(Ordering::Relaxed)))
    }
}

/// Run the load described by `cfg` until its stop condition or `shutdown`.
pub async fn run(
    cfg: Config,
    shutdown: Shutdown,
    mut progress: impl FnMut(&Progress),
) -> Result<RunResult, LoadError> {
    check(&cfg)?;
    let threads = match cfg.mode {
        // A closed-loop worker without lanes would have nothing to do.
        Mode::Closed { .. } => cfg.threads.clamp(1, cfg.connections.max(1)),
        Mode::Open { .. } => cfg.threads.max(1),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (start_tx, start_rx) = watch::channel(None::<Start>);
    let (stop_tx, stop_rx) = watch::channel(Phase::Run);
    let handles = spawn_workers(&cfg, threads, tx, start_rx, stop_rx)?;
    wait_ready(&mut rx, threads).await?;
    let clock = Clock::start(cfg.live.wall_clock_ticks);
    let join = cfg.live.shape_start_unix.map(|s| clock.started_unix - s);
    let _ = start_tx.send(Some(Start {
        join,
        ..clock.start
    }));
    let deadline = cfg.duration.map(|d| clock.start.start + d);

    let mut c = Collector::new(threads, clock.first_wall_second);
    let mut interrupted = false;
    let mut draining = false;
    while c.done < threads {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = sleep_opt(deadline), if !draining => { draining = true; let _ = stop_tx.send(Phase::Drain); continue; }
            _ = shutdown.wait_for(FINISH), if !draining => { draining = true; let _ = stop_tx.send(Phase::Drain); continue; }
            _ = shutdown.wait_for(ABORT), if !interrupted => {
                interrupted = true; let _ = stop_tx.send(Phase::Abort); continue;
            }
        };
        match msg {
            None => break,
            Some(msg) => c.receive(msg, &mut progress),
        }
    }
    let elapsed = clock.start.start.elapsed();
    for h in handles {
        let _ = h.join();
    }
    Ok(c.finish(elapsed, interrupted, clock.started_unix, &mut progress))
}

/// What every run needs before a thread starts.
fn check(cfg: &Config) -> Result<(), LoadError> {
    if cfg.requests.is_empty() {
        return Err(LoadError::Config("no requests to send".into()));
    }
    if cfg.duration.is_none() && cfg.max_requests.is_none() && !cfg.live.until_stopped {
        return Err(LoadError::Config(
            "a run needs a duration or a request count".into(),
        ));
    }
    Ok(())
}

/// Start `threads` workers; they report on `tx` and wait for the start instant.
fn spawn_workers(
    cfg: &Config,
    threads: usize,
    tx: mpsc::UnboundedSender<Msg>,
    start_rx: watch::Receiver<Option<Start>>,
    stop_rx: watch::Receiver<Phase>,
) -> Result<Vec<std::thread::JoinHandle<()>>, LoadError> {
    let shared = Arc::new(Shared {
        issued: AtomicU64::new(0),
        max_requests: cfg.max_requests,
        mix: cfg.mix.clone(),
        names_each_second: cfg.live.names_each_second,
    });
    let mut handles = Vec::new();
    for index in 0..threads {
        let plan = worker::Plan::new(cfg, index, threads)?;
        let (tx, start_rx, stop_rx, shared) = (
            tx.clone(),
            start_rx.clone(),
            stop_rx.clone(),
            shared.clone(),
        );
        let h = std::thread::Builder::new()
            .name(format!("load-{index}"))
            .spawn(move || worker::main(plan, shared, tx, start_rx, stop_rx))
            .map_err(|e| LoadError::Thread(e.to_string()))?;
        handles.push(h);
    }
    Ok(handles)
}

/// Until every worker is ready (its connections open).
async fn wait_ready(
    rx: &mut mpsc::UnboundedReceiver<Msg>,
    threads: usize,
) -> Result<(), LoadError> {
    let mut ready = 0;
    while ready < threads {
        match rx.recv().await {
            Some(Msg::Ready) => ready += 1,
            Some(_) => {}
            None => {
                return Err(LoadError::Thread(
                    "a worker thread died during start-up".into(),
                ))
            }
        }
    }
    Ok(())
}

/// The run's start: the instants the workers count from, and the wall clock then.
struct Clock {
    start: Start,
    first_wall_second: u64,
    started_unix: f64,
}

impl Clock {
    fn start(wall_clock_ticks: bool) -> Clock {
        let start = Instant::now();
        let now_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        // Interval k ends at epoch + k + 1 s: with wall-clock ticks the epoch is the start of
        // the current Unix second, so every process cuts its intervals at the same instants.
        let epoch = if wall_clock_ticks {
            let into = Duration::from_nanos(now_unix.subsec_nanos() as u64);
            start.checked_sub(into).unwrap_or(start)
        } else {
            start
        };
        Clock {
            start: Start {
                start,
                epoch,
                join: None,
            },
            first_wall_second: now_unix.as_secs(),
            started_unix: now_unix.as_secs_f64(),
        }
    }
}

/// The controller's merge of the workers' reports: the run total, and each second once every
/// worker has reported it (then passed to `progress`).
struct Collector {
    threads: usize,
    first_wall_second: u64,
    total: Snapshot,
    pending: Intervals,
    intervals: Vec<Snapshot>,
    series: Vec<SecondSample>,
    done: usize,
    peak_lanes: usize,
    in_flight_at_end: u64,
    finals: Vec<Snapshot>,
}

impl Collector {
    fn new(threads: usize, first_wall_second: u64) -> Collector {
        Collector {
            threads,
            first_wall_second,
            total: Snapshot::default(),
            pending: Intervals::new(),
            intervals: Vec::new(),
            series: Vec::new(),
            done: 0,
            peak_lanes: 0,
            in_flight_at_end: 0,
            finals: Vec::new(),
        }
    }

    fn receive(&mut self, msg: Msg, progress: &mut impl FnMut(&Progress)) {
        match msg {
            Msg::Ready => {}
            Msg::Interval { second, snap } => {
                self.total.merge(&snap);
                self.pending.add(second as u64, &snap);
                // An interval is final once every worker has reported it.
                while let Some((sec, s)) = self.pending.pop_complete(self.threads as u32) {
                    let elapsed = Duration::from_secs_f64(s.end);
                    self.publish(sec as u32, s, elapsed, progress);
                }
            }
            Msg::Done {
                snap,
                peak_lanes,
                in_flight,
            } => {
                self.total.merge(&snap);
                self.peak_lanes += peak_lanes;
                self.in_flight_at_end += in_flight;
                self.finals.push(*snap);
                self.done += 1;
            }
        }
    }

    /// A finished second: to `progress`, then into the series.
    fn publish(
        &mut self,
        second: u32,
        s: Snapshot,
        elapsed: Duration,
        progress: &mut impl FnMut(&Progress),
    ) {
        progress(&Progress {
            elapsed,
            second,
            wall_second: self.first_wall_second + second as u64,
            snapshot: &s,
            responses: self.total.responses,
            errors: self.total.error_count(),
        });
        self.series.push(s.sample(second));
        // The names' seconds went to `progress`; the run keeps their totals only (memory).
        let mut s = s;
        s.names.clear();
        self.intervals.push(s);
    }

    /// The seconds some worker had not finished, and the final partial interval, as one last
    /// second; then the result.
    fn finish(
        mut self,
        elapsed: Duration,
        interrupted: bool,
        started_unix: f64,
        progress: &mut impl FnMut(&Progress),
    ) -> RunResult {
        let mut tail = self.pending.drain_all();
        for s in &self.finals {
            tail.merge(s);
        }
        if tail.completed() > 0 && tail.seconds() > 0.0 {
            let second = self.series.last().map_or(0, |s| s.second + 1);
            self.publish(second, tail, elapsed, progress);
        }
        self.total.start = 0.0;
        self.total.end = elapsed.as_secs_f64();
        for n in self.total.names.values_mut() {
            (n.start, n.end) = (0.0, elapsed.as_secs_f64());
        }
        RunResult {
            total: self.total,
            series: self.series,
            elapsed,
            interrupted,
            peak_lanes: self.peak_lanes,
            in_flight_at_end: self.in_flight_at_end,
            intervals: self.intervals,
            started_unix,
            first_wall_second: self.first_wall_second,
        }
    }
}

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
