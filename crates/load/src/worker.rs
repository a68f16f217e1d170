//! One worker thread: its share of the lanes and of the rate, on a single-threaded runtime.
//!
//! Closed loop: every lane is a task that sends, waits for the response, records, repeats.
//! Open loop: a dispatcher task follows the pacer and hands each intended send to an idle lane
//! (a stack, so warm connections are reused first); with none idle it adds a connection, and at
//! the cap it waits and records the send as late. Lanes never wait on the schedule and the
//! dispatcher never waits on a response.

use crate::clock::PreciseTimer;
use crate::recorder::Recorder;
use crate::template::{Prepared, Vars};
use crate::{Config, LoadError, Mode, Msg, Phase, Shared, Start};
use pace::Pacer;
use st_http::{ByteCounter, Connector, ErrorClass, Lane, Response};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

/// How long lanes may take to connect before the clock starts; the rest connect on first use.
const WARM_UP: Duration = Duration::from_secs(1);

/// Open loop: connections being opened at once, per worker. Without a bound, a short stall
/// makes hundreds of sends due together, each opens a connection, the connects eat the CPU the
/// sends needed, and the generator spirals into thousands of connections. Sends that find no
/// idle lane meanwhile wait for the first one free and are reported late.
const MAX_OPENING: usize = 8;

/// Open loop: a dispatcher this late may be short of CPU rather than of connections.
const BEHIND: Duration = Duration::from_millis(1);

/// Open loop: headroom over the lanes Little's law asks for (rate × recent service time).
const HEADROOM: f64 = 2.0;

/// Open loop with a live rate: a wait longer than this also watches for a rate change.
const WATCH_GAP: Duration = Duration::from_millis(5);

/// Closed loop in stages: how often the count of busy connections is brought up to date.
const RAMP_STEP: Duration = Duration::from_millis(10);

/// Worker `index`'s share of `n` over `threads` workers (the first `n % threads` take one more).
fn share(n: usize, index: usize, threads: usize) -> usize {
    n / threads + usize::from(index < n % threads)
}

/// Closed loop in stages: this worker's share of the busy connections over time.
struct Ramp {
    stages: pace::Concurrency,
    index: usize,
    threads: usize,
}

impl Ramp {
    fn busy(&self, t: Duration) -> usize {
        share(self.stages.at(t.as_secs_f64()), self.index, self.threads)
    }
}

pub(crate) struct Plan {
    connector: Connector,
    requests: Arc<Vec<Prepared>>,
    /// This worker's random numbers and share of the rows, for templates (taken by its Ctx).
    vars: Option<Vars>,
    connections: usize,
    streams: usize,
    timeout: Duration,
    drain: Duration,
    open: Option<(Pacer, usize)>,
    /// Closed loop in stages.
    ramp: Option<Ramp>,
    /// Open loop: live changes of the total rate, and this worker's share of it.
    rate: Option<watch::Receiver<f64>>,
}

impl Plan {
    pub(crate) fn new(cfg: &Config, index: usize, threads: usize) -> Result<Plan, LoadError> {
        let share = |n: usize| share(n, index, threads);
        let mut connections = share(cfg.connections);
        let ramp = match &cfg.mode {
            Mode::Closed {
                stages: Some(stages),
            } => Some(Ramp {
                stages: stages.clone(),
                index,
                threads,
            }),
            _ => None,
        };
        let open = match &cfg.mode {
            Mode::Closed { .. } => None,
            Mode::Open {
                shape,
                arrival,
                max_connections,
                seed,
            } => {
                let pacer = Pacer::new(
                    shape.scaled(1.0 / threads as f64),
                    *arrival,
                    cfg.duration,
                    seed.wrapping_add(index as u64 * 0x9E37_79B9_7F4A_7C15),
                )
                .map_err(|e| LoadError::Config(e.to_string()))?;
                let cap = share(*max_connections).max(1);
                connections = connections.min(cap);
                Some((pacer, cap))
            }
        };
        Ok(Plan {
            connector: cfg.connector.clone(),
            requests: cfg.requests.clone(),
            vars: Some(Vars::new()),
            connections,
            streams: cfg.streams.max(1),
            timeout: cfg.timeout,
            drain: cfg.timeout.min(crate::DRAIN_MAX),
            rate: match (&open, &cfg.live.rate) {
                (Some(_), Some(control)) => Some(control.subscribe()),
                _ => None,
            },
            open,
            ramp,
        })
    }
}

struct Ctx {
    connector: Connector,
    requests: Arc<Vec<Prepared>>,
    vars: RefCell<Vars>,
    rec: RefCell<Recorder>,
    bytes: ByteCounter,
    timeout: Duration,
    shared: Arc<Shared>,
    in_flight: Cell<u64>,
    /// Open loop: the dispatcher has claimed a send and not yet handed it to a lane.
    holding: Cell<bool>,
    /// Open loop: sends handed to a lane that has not started them yet (its task has not run,
    /// or its connection is still opening); never started if the run ends now.
    handed: Cell<u64>,
    /// Set when the run is draining or every request allowed is claimed: start no new one.
    stopping: Cell<bool>,
    /// Closed loop: lanes of connections `0..busy` send; those of connection `k ≥ busy` wait
    /// on `more[k]` (a ramp's connections open when first busy, and stay open, idle, when no
    /// longer busy).
    busy: Cell<usize>,
    /// Closed loop in stages, one per connection: signalled when `busy` grows past it or the
    /// run stops (so a step wakes only the lanes it makes busy).
    more: Vec<Notify>,
    /// When the drain began: the open-loop schedule still sends what was due before it.
    stopped_at: Cell<Option<Instant>>,
    /// Closed loop: every send is also an intended one (there is no schedule).
    closed: bool,
    /// Signalled whenever a request ends, for the drain.
    request_done: Notify,
    warmed: Cell<usize>,
    warm_done: Notify,
}

impl Ctx {
    /// Send request `index` on `lane` with the timeout, and record the outcome.
    async fn exchange(&self, lane: &mut Lane, index: usize, intended: Option<Instant>) {
        self.exchange_from(lane, index, intended, Instant::now())
            .await;
    }

    /// As [`Ctx::exchange`], with service time counted from `sent` (before a connect).
    async fn exchange_from(
        &self,
        lane: &mut Lane,
        index: usize,
        intended: Option<Instant>,
        sent: Instant,
    ) -> Duration {
        self.in_flight.set(self.in_flight.get() + 1);
        let name = self.shared.mix.name_of(index);
        {
            let mut rec = self.rec.borrow_mut();
            rec.sent(name);
            if self.closed {
                rec.intended();
            }
        }
        let r = tokio::time::timeout(self.timeout, async {
            let rendered;
            let req = match &self.requests[index] {
                Prepared::Fixed(r) => r,
                Prepared::Varying(t) => {
                    rendered = t.render_request(&mut self.vars.borrow_mut());
                    &rendered
                }
            };
            lane.send(&self.connector, req, &self.bytes).await
        })
        .await;
        self.in_flight.set(self.in_flight.get() - 1);
        self.request_done.notify_one();
        let done = Instant::now();
        let mut rec = self.rec.borrow_mut();
        match r {
            Ok(Ok(Response { status, version })) => rec.response(
                name,
                status,
                version,
                done - intended.unwrap_or(sent),
                done - sent,
            ),
            Ok(Err(class)) => rec.error(name, class),
            Err(_) => rec.error(name, ErrorClass::RequestTimeout),
        }
        done - sent
    }

    /// Start no new request (lanes waiting for their stage give up).
    fn stop(&self) {
        self.stopping.set(true);
        self.more.iter().for_each(Notify::notify_waiters);
    }

    /// Connect `lane` ahead of its first request, giving up after `limit` (a failure is left
    /// for the exchange to reproduce and classify).
    async fn connect(&self, lane: &mut Lane, limit: Duration) {
        let connecting = lane.ensure_connected(&self.connector, &self.bytes);
        let _ = tokio::time::timeout(limit, connecting).await;
    }

    async fn warm(&self, lane: &mut Lane) {
        self.connect(lane, WARM_UP).await;
        self.warmed.set(self.warmed.get() + 1);
        self.warm_done.notify_one();
    }
}

pub(crate) fn main(
    mut plan: Plan,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Msg>,
    start_rx: watch::Receiver<Option<Start>>,
    stop_rx: watch::Receiver<Phase>,
) {
    let bytes: ByteCounter = Rc::default();
    let ctx = Rc::new(Ctx {
        connector: plan.connector.clone(),
        requests: plan.requests.clone(),
        vars: RefCell::new(plan.vars.take().expect("a plan starts one worker")),
        rec: RefCell::new(Recorder::new(
            bytes.clone(),
            shared.mix.names(),
            shared.names_each_second,
        )),
        bytes,
        timeout: plan.timeout,
        shared,
        in_flight: Cell::new(0),
        holding: Cell::new(false),
        handed: Cell::new(0),
        stopping: Cell::new(false),
        busy: Cell::new(if plan.ramp.is_some() { 0 } else { usize::MAX }),
        more: match plan.ramp {
            Some(_) => (0..plan.connections).map(|_| Notify::new()).collect(),
            None => Vec::new(),
        },
        stopped_at: Cell::new(None),
        closed: plan.open.is_none(),
        request_done: Notify::new(),
        warmed: Cell::new(0),
        warm_done: Notify::new(),
    });
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => {
            // Report an empty worker rather than hang the controller.
            let _ = tx.send(Msg::Ready);
            let _ = tx.send(Msg::Done {
                snap: Box::default(),
                peak_lanes: 0,
                in_flight: 0,
            });
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, drive(plan, ctx, tx, start_rx, stop_rx));
}

async fn drive(
    plan: Plan,
    ctx: Rc<Ctx>,
    tx: mpsc::UnboundedSender<Msg>,
    mut start_rx: watch::Receiver<Option<Start>>,
    mut stop_rx: watch::Receiver<Phase>,
) {
    let protocol = plan.connector.protocol();
    // `work` ends when the worker has nothing more to do; `lanes` are aborted at the end.
    let mut work: JoinSet<()> = JoinSet::new();
    let mut lanes: JoinSet<()> = JoinSet::new();
    // Open loop: the schedule, shared so that the end can count the sends it never started.
    let schedule: Rc<RefCell<Option<Pacer>>> = Rc::new(RefCell::new(None));
    let pool = Rc::new(Pool::default());
    let mut expected_warm = 0;
    let open_loop = plan.open.is_some();
    match plan.open {
        None => {
            let lanes_of = Closed {
                connections: plan.connections,
                streams: plan.streams,
                protocol,
                ramp: plan.ramp,
            };
            expected_warm = closed_loop(&ctx, lanes_of, &start_rx, &mut work, &mut lanes);
        }
        Some((pacer, cap)) => {
            for _ in 0..plan.connections {
                expected_warm += pool.add_group(&ctx, &mut lanes, protocol, plan.streams, true);
            }
            *schedule.borrow_mut() = Some(pacer);
            let (ctx, pool, schedule) = (ctx.clone(), pool.clone(), schedule.clone());
            let streams = plan.streams;
            let mut srx = start_rx.clone();
            let rate = plan.rate;
            work.spawn_local(async move {
                let Some(Start { start, join, .. }) = started(&mut srx).await else {
                    return;
                };
                if let (Some(at), Some(p)) = (join, schedule.borrow_mut().as_mut()) {
                    p.join_at(at);
                }
                let d = Dispatch {
                    start,
                    cap,
                    protocol,
                    streams,
                };
                dispatch(&ctx, &pool, &schedule, d, rate).await;
            });
        }
    }
    // Ready once every lane has connected (or had its chance to).
    while ctx.warmed.get() < expected_warm {
        ctx.warm_done.notified().await;
    }
    // Bytes read while warming up (TLS handshakes) are not part of the run. Reset before Ready:
    // once the start is given, lanes may record before this task runs again.
    ctx.rec.borrow_mut().take(0.0);
    let _ = tx.send(Msg::Ready);
    let Some(Start { start, epoch, .. }) = started(&mut start_rx).await else {
        return;
    };

    // Interval k ends at epoch + k + 1 s; its end is stored in seconds since the start.
    let mut second = 0u32;
    let mut tick = || {
        let end = epoch + Duration::from_secs(second as u64 + 1);
        let snap = ctx.rec.borrow_mut().take((end - start).as_secs_f64());
        let _ = tx.send(Msg::Interval {
            second,
            snap: Box::new(snap),
        });
        second += 1;
        epoch + Duration::from_secs(second as u64 + 1)
    };
    let mut next_tick = epoch + Duration::from_secs(1);
    let mut phase = Phase::Run;
    // Run: until the work is done or the controller says drain or abort.
    while phase == Phase::Run {
        tokio::select! {
            _ = tokio::time::sleep_until(next_tick.into()) => next_tick = tick(),
            r = stop_rx.wait_for(|p| *p != Phase::Run) => phase = r.map_or(Phase::Abort, |p| *p),
            next = work.join_next() => if next.is_none() { break },
        }
    }
    // Drain: start nothing new, let what is in flight finish (the slowest answers are exactly
    // the ones a cut would hide), up to the drain limit.
    if phase == Phase::Drain {
        ctx.stop();
        ctx.stopped_at.set(Some(Instant::now()));
        let limit = Instant::now() + plan.drain;
        loop {
            if work.is_empty() && ctx.in_flight.get() == 0 {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(limit.into()) => break,
                _ = tokio::time::sleep_until(next_tick.into()) => next_tick = tick(),
                r = stop_rx.wait_for(|p| *p == Phase::Abort) => { let _ = r; break; }
                _ = work.join_next(), if !work.is_empty() => {}
                _ = ctx.request_done.notified() => {}
            }
        }
    }
    work.abort_all();
    lanes.abort_all();
    // Sends that were due before the end but never started (the run ended while they waited
    // for a connection, or for their lane to run or connect): not errors, not in flight, but
    // not to be lost either.
    if let Some(pacer) = schedule.borrow_mut().as_mut() {
        let cut = start.elapsed();
        let claimed = u64::from(ctx.holding.get()) + ctx.handed.get();
        let due = pacer.take_while(|t| *t < cut).count() as u64 + claimed;
        let unsent = ctx
            .shared
            .remaining()
            .map_or(due, |left| due.min(left + claimed));
        ctx.rec.borrow_mut().unsent(unsent);
    }
    let in_flight = ctx.in_flight.get();
    let end = start.elapsed().as_secs_f64();
    let snap = ctx.rec.borrow_mut().take_last(end);
    let peak = if open_loop {
        pool.slots.get()
    } else {
        plan.connections * plan.streams
    };
    let _ = tx.send(Msg::Done {
        snap: Box::new(snap),
        peak_lanes: peak,
        in_flight,
    });
}

/// A closed loop's lanes, as [`closed_loop`] starts them.
struct Closed {
    connections: usize,
    streams: usize,
    protocol: st_http::Protocol,
    ramp: Option<Ramp>,
}

/// Spawn a closed loop's lanes into `work` (and a ramp's controller into `lanes`); returns how
/// many lanes warm up before the start.
fn closed_loop(
    ctx: &Rc<Ctx>,
    c: Closed,
    start_rx: &watch::Receiver<Option<Start>>,
    work: &mut JoinSet<()>,
    lanes: &mut JoinSet<()>,
) -> usize {
    // A ramp starts from no connection: each connects when its stage first makes it busy.
    let warm = c.ramp.is_none();
    let mut expected_warm = 0;
    for k in 0..c.connections {
        let first = Lane::new(c.protocol);
        for _ in 0..c.streams {
            let mut lane = first.sibling();
            let (ctx, mut srx) = (ctx.clone(), start_rx.clone());
            if warm {
                expected_warm += 1;
            }
            work.spawn_local(async move {
                if warm {
                    ctx.warm(&mut lane).await;
                }
                if started(&mut srx).await.is_none() {
                    return;
                }
                let mut connected = warm;
                while !ctx.stopping.get() {
                    if ctx.busy.get() <= k {
                        ctx.more[k].notified().await;
                        continue;
                    }
                    if !connected {
                        // As a warm-up would: not part of the first request's latency.
                        connected = true;
                        ctx.connect(&mut lane, ctx.timeout).await;
                    }
                    let Some(i) = ctx.shared.claim() else {
                        ctx.stop();
                        break;
                    };
                    ctx.exchange(&mut lane, i, None).await;
                }
            });
        }
    }
    if let Some(ramp) = c.ramp {
        let (ctx, mut srx) = (ctx.clone(), start_rx.clone());
        lanes.spawn_local(async move {
            let Some(Start { start, .. }) = started(&mut srx).await else {
                return;
            };
            loop {
                // Every request of `-n` claimed: lanes waiting for their stage would wait for
                // the rest of the duration.
                if ctx.shared.remaining() == Some(0) {
                    ctx.stop();
                    return;
                }
                let n = ramp.busy(start.elapsed());
                let before = ctx.busy.replace(n);
                for more in ctx.more.get(before..n).unwrap_or_default() {
                    more.notify_waiters();
                }
                tokio::time::sleep(RAMP_STEP).await;
            }
        });
    }
    expected_warm
}

/// The run's start, once the controller gives it; `None` if the controller is gone.
async fn started(rx: &mut watch::Receiver<Option<Start>>) -> Option<Start> {
    rx.wait_for(|s| s.is_some()).await.ok().and_then(|s| *s)
}

/// Open loop: a stream slot or connection waiting for its next send.
struct Slot {
    job: Cell<Option<(Instant, usize)>>,
    wake: Notify,
}

#[derive(Default)]
struct Pool {
    idle: RefCell<Vec<Rc<Slot>>>,
    /// Lanes created so far (connections × streams); lanes are never dropped before the end.
    slots: Cell<usize>,
    groups: Cell<usize>,
    /// Connections added on demand that have not finished connecting.
    opening: Cell<usize>,
    /// Moving average of recent service times, in seconds (Little's law input): each answer
    /// moves it 1/32 of the way, so one stall of our own does not look like a slow server.
    service_s: Cell<f64>,
    free: Notify,
}

impl Pool {
    fn observe(&self, took: Duration) {
        let old = self.service_s.get();
        let x = took.as_secs_f64();
        self.service_s.set(if old == 0.0 {
            x
        } else {
            old + (x - old) / 32.0
        });
    }

    /// Fewer lanes than Little's law asks for at `rate` (requests/s): rate × the average
    /// service time × [`HEADROOM`]. With no answer seen yet there is no estimate, and growing
    /// is the safe guess.
    fn short_of_lanes(&self, rate: f64) -> bool {
        let service = self.service_s.get();
        service == 0.0 || (self.slots.get() as f64) < rate * service * HEADROOM
    }

    /// Add one connection's worth of lanes, all idle. Returns how many lanes were added.
    fn add_group(
        self: &Rc<Self>,
        ctx: &Rc<Ctx>,
        set: &mut JoinSet<()>,
        protocol: st_http::Protocol,
        streams: usize,
        warm: bool,
    ) -> usize {
        let first = Lane::new(protocol);
        // Set while this on-demand connection is still opening (shared by its stream slots).
        let opening = Rc::new(Cell::new(!warm));
        if !warm {
            self.opening.set(self.opening.get() + 1);
        }
        for _ in 0..streams {
            let mut lane = first.sibling();
            let slot = Rc::new(Slot {
                job: Cell::new(None),
                wake: Notify::new(),
            });
            self.idle.borrow_mut().push(slot.clone());
            let (ctx, pool, opening) = (ctx.clone(), self.clone(), opening.clone());
            set.spawn_local(async move {
                if warm {
                    ctx.warm(&mut lane).await;
                }
                loop {
                    slot.wake.notified().await;
                    let Some((intended, index)) = slot.job.take() else {
                        continue;
                    };
                    let sent = Instant::now();
                    if opening.get() {
                        // The connect counts in this request's latency (timed from `sent`).
                        ctx.connect(&mut lane, ctx.timeout).await;
                        if opening.replace(false) {
                            pool.opening.set(pool.opening.get() - 1);
                        }
                    }
                    // In flight from here (counted on the exchange's first poll, in this turn).
                    ctx.handed.set(ctx.handed.get() - 1);
                    let took = ctx
                        .exchange_from(&mut lane, index, Some(intended), sent)
                        .await;
                    pool.observe(took);
                    pool.idle.borrow_mut().push(slot.clone());
                    pool.free.notify_one();
                }
            });
        }
        self.slots.set(self.slots.get() + streams);
        self.groups.set(self.groups.get() + 1);
        streams
    }
}

/// What the open-loop dispatcher works with.
struct Dispatch {
    start: Instant,
    cap: usize,
    protocol: st_http::Protocol,
    streams: usize,
}

async fn dispatch(
    ctx: &Rc<Ctx>,
    pool: &Rc<Pool>,
    schedule: &RefCell<Option<Pacer>>,
    d: Dispatch,
    mut rate: Option<watch::Receiver<f64>>,
) {
    let Dispatch {
        start,
        cap,
        protocol,
        streams,
    } = d;
    let mut timer = PreciseTimer::new();
    // Lanes made on demand are spawned here; they live until the worker ends.
    let mut grown: JoinSet<()> = JoinSet::new();
    // Draining: sends due before the drain began still go (at the end of a duration that is
    // all of them); a live run ended from outside sends nothing due after that moment.
    let past_stop = |at: Instant| ctx.stopped_at.get().is_some_and(|s| at >= s);
    loop {
        let Some(mut offset) = schedule.borrow_mut().as_mut().and_then(|p| p.next()) else {
            break;
        };
        if past_stop(start + offset) {
            break;
        }
        let Some(index) = ctx.shared.claim() else {
            break;
        };
        ctx.holding.set(true);
        // A live rate change rescales the schedule from now; the send just taken from the
        // old schedule is replaced by the new schedule's first. Only a long gap is worth
        // watching for a change during the wait; a short one checks after it.
        // (`changed()` marks the value seen: a change it reported is kept in `told`.)
        let mut told = false;
        let mut ended = false;
        loop {
            if let Some(rx) = rate.as_mut() {
                if std::mem::take(&mut told) || rx.has_changed().unwrap_or(false) {
                    let factor = *rx.borrow_and_update();
                    if let Some(p) = schedule.borrow_mut().as_mut() {
                        p.rescale_at(start.elapsed(), factor);
                        match p.next() {
                            Some(o) => offset = o,
                            None => ended = true,
                        }
                    }
                }
            }
            if ended {
                break; // the rescaled schedule has nothing left: the claimed send is not made
            }
            let at = start + offset;
            match rate.as_mut() {
                Some(rx) if at.saturating_duration_since(Instant::now()) > WATCH_GAP => {
                    tokio::select! {
                        _ = timer.sleep_until(at) => break,
                        r = rx.changed() => match r { Ok(()) => told = true, Err(_) => rate = None },
                    }
                }
                _ => {
                    timer.sleep_until(at).await;
                    break;
                }
            }
        }
        if ended || past_stop(start + offset) {
            ctx.holding.set(false);
            break;
        }
        let intended = start + offset;
        ctx.rec.borrow_mut().intended();
        // Behind schedule means this thread is short of CPU; more connections would only cost
        // more of it. Grow only when on time and every lane is busy: then the server is slow.
        // But a lane count below what Little's law asks for is a shortage whatever the clock.
        let rate = schedule
            .borrow()
            .as_ref()
            .map_or(0.0, |p| p.rate_at(offset));
        let short = pool.short_of_lanes(rate);
        let on_time = Instant::now() - intended < BEHIND || short;
        let mut capped = false;
        let slot = loop {
            let idle = pool.idle.borrow_mut().pop();
            if let Some(s) = idle {
                break s;
            }
            if on_time && pool.groups.get() < cap && pool.opening.get() < MAX_OPENING {
                pool.add_group(ctx, &mut grown, protocol, streams, false);
                continue;
            }
            capped |= pool.groups.get() >= cap;
            pool.free.notified().await;
        };
        ctx.rec
            .borrow_mut()
            .send_delay(Instant::now() - intended, capped);
        slot.job.set(Some((intended, index)));
        ctx.handed.set(ctx.handed.get() + 1);
        slot.wake.notify_one();
        ctx.holding.set(false);
    }
    // The schedule is over: wait for the answers still outstanding.
    while pool.idle.borrow().len() < pool.slots.get() {
        pool.free.notified().await;
    }
    grown.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The growth rule: each answer moves the service-time average 1/32 of the way, and lanes
    /// are short below rate × average × 2.
    #[test]
    fn lanes_are_short_below_twice_what_littles_law_asks_for() {
        let pool = Pool::default();
        assert!(pool.short_of_lanes(100.0), "no estimate yet: grow");
        pool.observe(Duration::from_millis(100));
        assert_eq!(
            pool.service_s.get(),
            0.1,
            "the first answer is the estimate"
        );
        // 100/s × 0.1 s × 2 = 20 lanes.
        pool.slots.set(19);
        assert!(pool.short_of_lanes(100.0));
        pool.slots.set(20);
        assert!(!pool.short_of_lanes(100.0));
        // One stall of 3.3 s moves the average by 0.1 s, not to 3.3 s.
        pool.observe(Duration::from_millis(3300));
        assert!(
            (pool.service_s.get() - 0.2).abs() < 1e-12,
            "{}",
            pool.service_s.get()
        );
        assert!(pool.short_of_lanes(100.0), "now 40 lanes are asked for");
        pool.slots.set(40);
        assert!(!pool.short_of_lanes(100.0));
        // Fast answers bring it back down, 1/32 of the gap at a time.
        for _ in 0..32 * 8 {
            pool.observe(Duration::from_millis(100));
        }
        assert!(
            (pool.service_s.get() - 0.1).abs() < 0.001,
            "{}",
            pool.service_s.get()
        );
    }
}
