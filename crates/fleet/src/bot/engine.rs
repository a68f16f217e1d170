//! The load a bot runs: a `load::run` with wall-clock ticks and a live rate, following the
//! assignment. A new share of the same schedule (the rate shape scaled: the fleet grew or
//! shrank) is applied to the running one (`load::RateControl`), and so is a new share of the
//! fleet's `{{seq}}` and rows (`load::template::ShareControl`); any other change of the spec,
//! or a schedule starting at another instant, ends the running run gracefully (in-flight
//! requests finish) and starts a new one, which joins the fleet's schedule where it is. Every
//! run sends its per-second snapshots into one channel.

use super::Config;
use crate::wire::Assignment;
use hist::Snapshot;
use load::template::{Share, ShareControl};
use load::{Live, RateControl, Shutdown, Spec};
use tokio::sync::mpsc;

/// The load as the bot drives it (tests stand in a fake that measures on tokio's clock).
pub(crate) trait Load {
    /// Make the running load match the assignment.
    fn apply(&mut self, a: &Assignment);
    /// Ask the running load (if any) to finish gracefully.
    fn wind_down(&mut self);
    /// No load running or draining: every second it measured is in the channel.
    fn idle(&mut self) -> bool;
}

/// The load engine: the running load and those still draining.
pub(crate) struct Engine {
    cfg: Config,
    snaps: mpsc::UnboundedSender<(u64, Snapshot)>,
    current: Option<Running>,
    finishing: Vec<Running>,
}

impl Engine {
    /// An engine sending what it measures into `snaps`.
    pub fn new(cfg: Config, snaps: mpsc::UnboundedSender<(u64, Snapshot)>) -> Engine {
        Engine {
            cfg,
            snaps,
            current: None,
            finishing: Vec::new(),
        }
    }
}

impl Load for Engine {
    fn apply(&mut self, a: &Assignment) {
        apply(
            a,
            &mut self.current,
            &mut self.finishing,
            &self.cfg,
            &self.snaps,
        );
    }

    fn wind_down(&mut self) {
        wind_down(&mut self.current, &mut self.finishing);
    }

    fn idle(&mut self) -> bool {
        // Runs that ended: their last intervals are in the channel already.
        self.finishing.retain(|r| !r.done.is_finished());
        self.current.is_none() && self.finishing.is_empty()
    }
}

/// The load a bot is running.
struct Running {
    /// The spec as assigned (its rate: this bot's share now).
    spec: Spec,
    /// The rate shape the run was started with (a new share is a factor over it).
    made_with: Option<pace::RateShape>,
    /// When the schedule started (the assignment's `rate_start_unix`).
    start: Option<f64>,
    shutdown: Shutdown,
    rate: Option<RateControl>,
    share: ShareControl,
    done: tokio::task::JoinHandle<()>,
}

/// Two specs that differ at most in their rate (a live change, not a new run).
fn same_but_rate(a: &Spec, b: &Spec) -> bool {
    a.rate.is_some()
        && b.rate.is_some()
        && Spec {
            rate: None,
            ..a.clone()
        } == Spec {
            rate: None,
            ..b.clone()
        }
}

/// Ask the running load (if any) to finish gracefully; it drains among `finishing`.
fn wind_down(current: &mut Option<Running>, finishing: &mut Vec<Running>) {
    if let Some(r) = current.take() {
        r.shutdown.finish();
        finishing.push(r);
    }
}

/// Make the running load match the assignment.
fn apply(
    a: &Assignment,
    current: &mut Option<Running>,
    finishing: &mut Vec<Running>,
    cfg: &Config,
    snaps: &mpsc::UnboundedSender<(u64, Snapshot)>,
) {
    let Some(spec) = a.spec.as_deref() else {
        wind_down(current, finishing);
        return;
    };
    let share = a.share.unwrap_or(Share::ALL);
    if let Some(r) = current.as_mut().filter(|r| r.start == a.rate_start_unix) {
        r.share.set(share);
        if &r.spec == spec {
            return;
        }
        if same_but_rate(&r.spec, spec) {
            let factor = (spec.rate.as_ref())
                .zip(r.made_with.as_ref())
                .and_then(|(new, old)| new.ratio_to(old));
            if let (Some(ctl), Some(f)) = (&r.rate, factor) {
                ctl.set(f);
                r.spec = spec.clone();
                return;
            }
        }
    }
    wind_down(current, finishing);
    let assigned = spec.clone();
    let spec = Spec {
        threads: spec.threads.or(cfg.threads),
        ..spec.clone()
    };
    let rate = spec.rate.as_ref().map(|_| RateControl::new());
    let share = ShareControl::new(share);
    let live = Live {
        wall_clock_ticks: true,
        rate: rate.clone(),
        until_stopped: true,
        shape_start_unix: a.rate_start_unix,
        share: share.clone(),
        // Each second's names go to the aggregator with the rest.
        names_each_second: true,
    };
    let config = match spec.build(live) {
        Ok(c) => c,
        Err(e) => {
            (cfg.warn)(&format!("cannot run the assigned load: {e}"));
            return;
        }
    };
    let shutdown = Shutdown::new();
    let tx = snaps.clone();
    let sd = shutdown.clone();
    let warn = cfg.warn;
    let done = tokio::task::spawn_local(async move {
        let r = load::run(config, sd, move |p| {
            let _ = tx.send((p.wall_second, p.snapshot.clone()));
        })
        .await;
        if let Err(e) = r {
            warn(&format!("the load stopped: {e}"));
        }
    });
    *current = Some(Running {
        made_with: assigned.rate.clone(),
        spec: assigned,
        start: a.rate_start_unix,
        shutdown,
        rate,
        share,
        done,
    });
}
