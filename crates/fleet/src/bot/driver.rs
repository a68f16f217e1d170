//! The bot as plain code over its [`Outbox`]: a small state machine of registration (with
//! backoff), one push time a second (seconds sealed and pushed in order, several pushes when
//! catching up, each acknowledgement moving what it covers to the retained ones), and the
//! wind-down (the load drains, the last seconds are flushed, the bot leaves and exits).
//!
//! - The aggregator down: pushes fail and the sealed seconds wait in the outbox (bounded; see
//!   [`Outbox`]); when it answers again they go, oldest first.
//! - The aggregator restarted (its instance changed, or it says 404/409): the bot registers
//!   again, with its old id and the run it was in (`Register.previous_run`), and re-sends
//!   every retained or waiting second above the high-water mark the new process answers with.
//! - An acknowledgement that moves nothing (a duplicate, or an older one) changes nothing:
//!   what it does not cover goes again at the next push time.
//! - Leaving: the bot exits once the aggregator answers that it saved the leave; an
//!   aggregator that died before (its last seconds unsaved) gets them again from the next one,
//!   within the grace.
//!
//! Every wait and deadline is on tokio's clock, and the Unix seconds come from the [`Clock`],
//! so tests run the whole machine on tokio's paused clock.

use super::engine::Load;
use super::link::{Fail, Link};
use super::outbox::Outbox;
use super::{host_name, BotError, Config, Outcome, PUSH_DELAY, RETAIN, STOP_GRACE};
use crate::wire::{Assignment, Push, Register};
use hist::Snapshot;
use load::Shutdown;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// First wait after a failed registration; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between two registration attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where the Unix seconds the bot cuts come from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// The system clock, which the load engine cuts its seconds by too.
    Wall,
    /// `unix` at tokio's instant `at`, moving with tokio's (paused, in tests) clock.
    #[cfg(test)]
    Tokio { at: Instant, unix: f64 },
}

impl Clock {
    /// Now, as Unix seconds.
    pub fn unix(self) -> f64 {
        match self {
            Clock::Wall => crate::now_unix(),
            #[cfg(test)]
            Clock::Tokio { at, unix } => unix + at.elapsed().as_secs_f64(),
        }
    }
}

/// The aggregator process the bot is registered with.
struct Session {
    id: u64,
    instance: String,
}

/// What a registration attempt came to.
enum Registration {
    Done,
    /// Not reachable: waited a backoff, try again.
    Retry,
    /// Not reachable and out of time (or never registered, and stopped): exit.
    GiveUp,
}

/// A bot: its link to the aggregator, its load, its outbox.
pub(crate) struct Driver<L: Link, E: Load> {
    link: L,
    load: E,
    /// The aggregator's URL, for an error naming it.
    aggregator: String,
    name: String,
    exit_when_finished: bool,
    warn: fn(&str),
    clock: Clock,
    stop: Shutdown,
    snaps: mpsc::UnboundedReceiver<(u64, Snapshot)>,
    assignments: (
        mpsc::UnboundedSender<Assignment>,
        mpsc::UnboundedReceiver<Assignment>,
    ),
    outbox: Outbox,
    session: Option<Session>,
    /// The id this bot had: asked for again after the aggregator forgot or restarted.
    last_id: Option<u64>,
    /// The run it was in: said when registering again, so that a new aggregator on an empty
    /// directory knows the run restarted.
    run: String,
    backoff: Duration,
    generation: u64,
    finished: bool,
    /// When SIGTERM came: the last delivery is bounded by [`STOP_GRACE`] from then.
    stop_at: Option<Instant>,
    follower: Option<JoinHandle<()>>,
    /// A push found the aggregator's certificate untrusted: the bot stops with this.
    untrusted: Option<String>,
}

impl<L: Link, E: Load> Driver<L, E> {
    /// A bot on `link` running `load`, whose seconds arrive on `snaps`.
    pub fn new(
        cfg: &Config,
        link: L,
        load: E,
        snaps: mpsc::UnboundedReceiver<(u64, Snapshot)>,
        stop: Shutdown,
        clock: Clock,
    ) -> Self {
        Driver {
            link,
            load,
            aggregator: cfg.aggregator.clone(),
            name: cfg.name.clone(),
            exit_when_finished: cfg.exit_when_finished,
            warn: cfg.warn,
            clock,
            stop,
            snaps,
            assignments: mpsc::unbounded_channel(),
            outbox: Outbox::new(cfg.outbox, RETAIN),
            session: None,
            last_id: None,
            run: String::new(),
            backoff: FIRST_BACKOFF,
            generation: 0,
            finished: false,
            stop_at: None,
            follower: None,
            untrusted: None,
        }
    }

    /// Run until stopped (SIGTERM) or, with `exit_when_finished`, the run is over.
    pub async fn run(mut self) -> Result<Outcome, BotError> {
        loop {
            if self.session.is_none() {
                match self.register().await? {
                    Registration::Done => {}
                    Registration::Retry => continue,
                    Registration::GiveUp => break,
                }
            }
            if !self.wait_for_push_time().await {
                continue;
            }
            let idle = self.load.idle();
            while let Ok((t, s)) = self.snaps.try_recv() {
                self.outbox.measured(t, &s);
            }
            // Complete seconds are sealed (all of them once idle).
            let complete = if idle {
                u64::MAX
            } else {
                (self.clock.unix() - PUSH_DELAY).floor() as u64
            };
            self.outbox.seal(complete);
            let delivered = self.deliver(idle).await;
            if let Some(why) = self.untrusted.take() {
                if let Some(f) = self.follower.take() {
                    f.abort();
                }
                return Err(BotError::Certificate(self.aggregator.clone(), why));
            }
            // Exit: stopped (SIGTERM) or told the run is over, once idle and delivered (or
            // out of time to deliver).
            let done_asked = self.stop_at.is_some() || (self.finished && self.exit_when_finished);
            if done_asked && idle && (delivered || self.out_of_time()) {
                // Gone once the aggregator saved the leave: one that died first (and restarts
                // from its last save, without the last seconds) gets them again, then the leave.
                let left = match &self.session {
                    Some(s) => self.link.leave(s.id).await,
                    None => true,
                };
                if left || self.out_of_time() {
                    break;
                }
                self.session = None;
                continue;
            }
            if done_asked {
                self.load.wind_down();
            }
        }
        if let Some(f) = self.follower.take() {
            f.abort();
        }
        Ok(Outcome {
            responses: self.outbox.responses,
            dropped: self.outbox.dropped,
            undelivered: self.outbox.unacked(),
        })
    }

    /// Register (again); on success the seconds the aggregator does not have go again.
    async fn register(&mut self) -> Result<Registration, BotError> {
        let r = Register {
            id: self.last_id,
            name: self.name.clone(),
            host: host_name(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            clock_unix: self.clock.unix(),
            previous_run: (!self.run.is_empty()).then(|| self.run.clone()),
            wire: crate::wire::WIRE,
        };
        match self.link.register(&r).await {
            Ok(reg) => {
                self.outbox.rewind(reg.hwm);
                self.session = Some(Session {
                    id: reg.id,
                    instance: reg.instance,
                });
                self.last_id = Some(reg.id);
                self.run = reg.run;
                self.backoff = FIRST_BACKOFF;
                if let Some(f) = self.follower.take() {
                    f.abort();
                }
                let tx = self.assignments.0.clone();
                self.follower = Some(self.link.follow(reg.id, tx));
                Ok(Registration::Done)
            }
            Err(Fail::Status(400 | 401, why)) => Err(BotError::Refused(why)),
            // Not transient: another try meets the same certificate.
            Err(Fail::Tls(why)) => Err(BotError::Certificate(self.aggregator.clone(), why)),
            Err(_) => {
                // SIGTERM while the aggregator cannot be reached: the load stops as it would
                // registered, and delivery gets the same grace.
                if self.stop_at.is_none() && self.stop.is_finishing() {
                    self.stopping();
                }
                // A bot that never registered ran no load: nothing to deliver, it exits.
                let give_up =
                    self.stop_at.is_some() && (self.last_id.is_none() || self.out_of_time());
                if self.stop.is_triggered() || give_up {
                    return Ok(Registration::GiveUp);
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.backoff) => {}
                    _ = self.stop.finishing(), if self.stop_at.is_none() => {}
                }
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Ok(Registration::Retry)
            }
        }
    }

    /// Wait for the next push time (true), or handle what came first (false): a measured
    /// second, an assignment, the stop signal.
    async fn wait_for_push_time(&mut self) -> bool {
        let now = self.clock.unix();
        let mut next = now.floor() + 1.0 + PUSH_DELAY - now;
        if next > 1.0 {
            next -= 1.0;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(next)) => return true,
            Some((t, s)) = self.snaps.recv() => self.outbox.measured(t, &s),
            Some(a) = self.assignments.1.recv() => {
                if a.generation != self.generation {
                    self.generation = a.generation;
                    self.finished = a.finished;
                    // A stopping bot starts no load again (an aggregator it registers with
                    // again assigns it its share): it only delivers and leaves.
                    if self.stop_at.is_none() {
                        self.load.apply(&a);
                        // Told the run is over and to exit then: from now on as stopped, with
                        // the same grace to deliver and leave (an aggregator that ended the
                        // run and exited before the leave came is not waited for forever).
                        if a.finished && self.exit_when_finished {
                            self.stopping();
                        }
                    }
                }
            }
            _ = self.stop.finishing(), if self.stop_at.is_none() => self.stopping(),
        }
        false
    }

    /// Push the outbox, oldest first (several pushes when catching up); true once the
    /// aggregator has all of it.
    async fn deliver(&mut self, idle: bool) -> bool {
        let Some(session) = &self.session else {
            return false;
        };
        let (id, instance) = (session.id, session.instance.clone());
        loop {
            let (intervals, all) = self.outbox.batch();
            let n = intervals.len();
            let p = Push {
                clock_unix: self.clock.unix(),
                dropped: self.outbox.dropped,
                intervals,
                generation: self.generation,
                idle: idle && all && !self.outbox.measuring(),
                instance: instance.clone(),
            };
            match self.link.push(id, &p).await {
                // Restarted aggregator: register again to learn what it kept.
                Ok(ack) if ack.instance != instance => break,
                Ok(ack) => {
                    let moved = self.outbox.acked(ack.hwm);
                    if self.outbox.unacked() == 0 {
                        return true;
                    }
                    if !moved {
                        // It acknowledged nothing of this push: again at the next push time.
                        return false;
                    }
                }
                // It does not know us, or it restarted: register again to learn what it has,
                // then re-send the rest in order.
                Err(Fail::Status(404 | 409, _)) => break,
                Err(Fail::Tls(why)) => {
                    self.untrusted = Some(why);
                    return false;
                }
                Err(Fail::Status(code, why)) if (400..500).contains(&code) && code != 429 => {
                    // A push it will never take: drop the batch rather than loop forever.
                    (self.warn)(&format!("the aggregator refused a push: {why}"));
                    self.outbox.refused(n.max(1));
                    if n == 0 {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        self.session = None;
        false
    }

    /// SIGTERM (or the run over, with `exit_when_finished`): the load winds down, and
    /// delivery has [`STOP_GRACE`] from now.
    fn stopping(&mut self) {
        self.stop_at = Some(Instant::now());
        self.load.wind_down();
    }

    /// Aborted, or past the grace after SIGTERM.
    fn out_of_time(&self) -> bool {
        self.stop.is_triggered() || self.stop_at.is_some_and(|t| t.elapsed() > STOP_GRACE)
    }
}
