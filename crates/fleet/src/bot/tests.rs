//! The bot's driver on tokio's paused clock, against an aggregator in memory that counts a
//! bot's seconds as the real one does (above its high-water mark, in order) and a load that
//! measures one answer a second.

use super::driver::{Clock, Driver};
use super::engine::Load;
use super::link::{Fail, Link};
use super::{Config, Outcome, OUTBOX, STOP_GRACE};
use crate::wire::{Ack, Assignment, Push, Register, Registered};
use hist::Snapshot;
use load::Shutdown;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

/// The Unix second the tests start at.
const T0: u64 = 1_000_000;
/// The id the aggregator gives.
const ID: u64 = 7;

/// The aggregator's side of one bot.
#[derive(Debug)]
struct Agg {
    up: bool,
    instance: String,
    hwm: u64,
    /// Seconds counted, in the order they were.
    counted: Vec<u64>,
    /// Seconds received at or below the high-water mark.
    duplicates: u64,
    registrations: Vec<Register>,
    /// Count the next pushes but lose their answers.
    lose_answers: u32,
    /// Answer the next pushes with the high-water mark from before them, counting nothing
    /// (an acknowledgement already seen).
    stale_acks: u32,
    /// The last push's count of dropped seconds.
    dropped: u64,
    /// Pushes that said the bot is idle with everything pushed.
    idle_pushes: u32,
    left: bool,
    /// At the bot's leave, die before saving its last `n` seconds (a new process, restarted
    /// from the save before them, answers from then on).
    die_on_leave: Option<usize>,
    /// Where the bot follows its assignments.
    follower: Option<mpsc::UnboundedSender<Assignment>>,
}

#[derive(Clone)]
struct Fake(Rc<RefCell<Agg>>);

impl Fake {
    fn new() -> Fake {
        Fake(Rc::new(RefCell::new(Agg {
            up: true,
            instance: "first".into(),
            hwm: 0,
            counted: Vec::new(),
            duplicates: 0,
            registrations: Vec::new(),
            lose_answers: 0,
            stale_acks: 0,
            dropped: 0,
            idle_pushes: 0,
            left: false,
            die_on_leave: None,
            follower: None,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Agg) -> T) -> T {
        f(&mut self.0.borrow_mut())
    }
}

impl Link for Fake {
    async fn register(&self, r: &Register) -> Result<Registered, Fail> {
        let mut a = self.0.borrow_mut();
        if !a.up {
            return Err(Fail::Unreachable);
        }
        a.registrations.push(r.clone());
        Ok(Registered {
            id: ID,
            hwm: a.hwm,
            instance: a.instance.clone(),
            run: "run-1".into(),
        })
    }

    async fn push(&self, id: u64, p: &Push) -> Result<Ack, Fail> {
        let mut a = self.0.borrow_mut();
        if !a.up {
            return Err(Fail::Unreachable);
        }
        assert_eq!(id, ID);
        if p.instance != a.instance {
            return Err(Fail::Status(409, "this aggregator restarted".into()));
        }
        p.check().map_err(|e| Fail::Status(400, e))?;
        if a.stale_acks > 0 {
            // An answer that acknowledges none of this push: nothing of it is counted.
            a.stale_acks -= 1;
            return Ok(Ack {
                hwm: a.hwm,
                generation: 0,
                instance: a.instance.clone(),
            });
        }
        for i in &p.intervals {
            if i.t <= a.hwm {
                a.duplicates += 1;
            } else {
                a.counted.push(i.t);
                a.hwm = i.t;
            }
        }
        a.dropped = p.dropped;
        a.idle_pushes += u32::from(p.idle);
        if a.lose_answers > 0 {
            a.lose_answers -= 1;
            return Err(Fail::Unreachable);
        }
        Ok(Ack {
            hwm: a.hwm,
            generation: 0,
            instance: a.instance.clone(),
        })
    }

    async fn leave(&self, id: u64) -> bool {
        assert_eq!(id, ID);
        let mut a = self.0.borrow_mut();
        if let Some(n) = a.die_on_leave.take() {
            a.instance = "second".into();
            a.hwm -= n as u64;
            let keep = a.counted.len() - n;
            a.counted.truncate(keep);
            return false;
        }
        a.left = a.up;
        a.up
    }

    fn follow(&self, _id: u64, tx: mpsc::UnboundedSender<Assignment>) -> JoinHandle<()> {
        self.0.borrow_mut().follower = Some(tx);
        tokio::spawn(std::future::pending())
    }
}

/// A load that measures one answer in each second, reported just after the second ends; on
/// wind-down it reports the second it is in and stops.
struct Measure {
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Measure {
    fn start(at: Instant, tx: mpsc::UnboundedSender<(u64, Snapshot)>) -> Measure {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            for k in 0.. {
                tokio::time::sleep_until(
                    at + Duration::from_secs(k + 1) + Duration::from_millis(10),
                )
                .await;
                let _ = tx.send((T0 + k, one_answer()));
                if s.load(Ordering::SeqCst) {
                    return;
                }
            }
        });
        Measure { stop, task }
    }
}

impl Load for Measure {
    fn apply(&mut self, _: &Assignment) {}

    fn wind_down(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn idle(&mut self) -> bool {
        self.task.is_finished()
    }
}

fn one_answer() -> Snapshot {
    let mut s = Snapshot {
        end: 1.0,
        responses: 1,
        ..Default::default()
    };
    s.status.insert(200, 1);
    s.latency.record(1000).unwrap();
    s.service.record(900).unwrap();
    s
}

/// Run a bot with an outbox of `outbox` seconds against `fake` while `scenario` plays
/// (it gets the stop signal); the bot's outcome.
async fn run_bot(
    fake: &Fake,
    outbox: usize,
    scenario: impl std::future::Future<Output = ()>,
    stop: &Shutdown,
) -> Outcome {
    run_bot_exiting(fake, outbox, scenario, stop, false).await
}

/// [`run_bot`], with `--exit-when-finished` or not.
async fn run_bot_exiting(
    fake: &Fake,
    outbox: usize,
    scenario: impl std::future::Future<Output = ()>,
    stop: &Shutdown,
    exit_when_finished: bool,
) -> Outcome {
    let at = Instant::now();
    let (tx, rx) = mpsc::unbounded_channel();
    let cfg = Config {
        aggregator: String::new(),
        cacert: None,
        token: String::new(),
        name: "b".into(),
        threads: None,
        exit_when_finished,
        outbox,
        warn: |w| panic!("warned: {w}"),
    };
    let clock = Clock::Tokio {
        at,
        unix: T0 as f64,
    };
    let bot = Driver::new(
        &cfg,
        fake.clone(),
        Measure::start(at, tx),
        rx,
        stop.clone(),
        clock,
    );
    let (out, ()) = tokio::join!(bot.run(), scenario);
    out.unwrap()
}

/// Every second from the first counted on arrived once, in order, up to the last measured.
fn in_order_once(counted: &[u64], measured: u64) {
    let first = counted[0];
    let want: Vec<u64> = (first..T0 + measured).collect();
    assert_eq!(counted, want);
}

#[tokio::test(start_paused = true)]
async fn an_aggregator_down_for_five_minutes_gets_every_second_once_in_order() {
    let fake = Fake::new();
    let stop = Shutdown::new();
    let scenario = async {
        sleep(Duration::from_secs(10)).await;
        fake.with(|a| a.up = false);
        sleep(Duration::from_secs(300)).await;
        fake.with(|a| a.up = true);
        sleep(Duration::from_secs(10)).await;
        stop.finish();
    };
    let out = run_bot(&fake, OUTBOX, scenario, &stop).await;
    let a = fake.0.borrow();
    assert!(out.responses > 315, "{out:?}");
    assert_eq!(a.counted[0], T0);
    in_order_once(&a.counted, out.responses);
    assert_eq!((out.dropped, out.undelivered, a.duplicates), (0, 0, 0));
    assert_eq!(a.registrations.len(), 1, "down is not a restart");
    assert!(a.left);
}

#[tokio::test(start_paused = true)]
async fn lost_answers_and_stale_acks_count_nothing_twice_and_lose_nothing() {
    let fake = Fake::new();
    let stop = Shutdown::new();
    let scenario = async {
        sleep(Duration::from_secs(5)).await;
        fake.with(|a| a.lose_answers = 3);
        sleep(Duration::from_secs(5)).await;
        fake.with(|a| a.stale_acks = 3);
        sleep(Duration::from_secs(5)).await;
        // Both at once: a push counted with its answer lost, then acknowledgements of nothing.
        fake.with(|a| (a.lose_answers, a.stale_acks) = (2, 2));
        sleep(Duration::from_secs(5)).await;
        stop.finish();
    };
    let out = run_bot(&fake, OUTBOX, scenario, &stop).await;
    let a = fake.0.borrow();
    assert!(a.duplicates >= 3, "the bot sent again what was counted");
    assert_eq!(a.counted[0], T0);
    in_order_once(&a.counted, out.responses);
    assert_eq!((out.dropped, out.undelivered), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_restarted_aggregator_gets_again_what_it_had_not_saved() {
    let fake = Fake::new();
    let stop = Shutdown::new();
    let scenario = async {
        sleep(Duration::from_secs(20)).await;
        // A new process on the same directory: its last save was 5 s before the old one died.
        fake.with(|a| {
            a.instance = "second".into();
            a.hwm -= 5;
            let keep = a.counted.len() - 5;
            a.counted.truncate(keep);
        });
        sleep(Duration::from_secs(10)).await;
        stop.finish();
    };
    let out = run_bot(&fake, OUTBOX, scenario, &stop).await;
    let a = fake.0.borrow();
    assert_eq!(a.registrations.len(), 2);
    let again = &a.registrations[1];
    assert_eq!(again.id, Some(ID));
    assert_eq!(again.previous_run.as_deref(), Some("run-1"));
    assert_eq!(a.registrations[0].previous_run, None);
    assert_eq!(a.counted[0], T0);
    in_order_once(&a.counted, out.responses);
    assert_eq!(a.duplicates, 0, "sent again only what it had not saved");
    assert_eq!(out.undelivered, 0);
}

#[tokio::test(start_paused = true)]
async fn a_stopped_bot_drains_flushes_leaves_and_exits() {
    let fake = Fake::new();
    let stop = Shutdown::new();
    let stopped = std::cell::Cell::new(None);
    let scenario = async {
        sleep(Duration::from_millis(5500)).await;
        stop.finish();
        stopped.set(Some(Instant::now()));
    };
    let out = run_bot(&fake, OUTBOX, scenario, &stop).await;
    let took = stopped.get().unwrap().elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    let a = fake.0.borrow();
    // The second it was in when stopped (T0 + 5) is measured and delivered too.
    assert_eq!(out.responses, 6);
    in_order_once(&a.counted, out.responses);
    assert_eq!(
        a.idle_pushes, 1,
        "the last push says idle, everything pushed"
    );
    assert!(a.left);
    assert_eq!(out.undelivered, 0);
}

/// The aggregator dies as the bot leaves, before saving its last two seconds: the bot does
/// not exit on a leave nobody recorded; the restarted aggregator gets those seconds, then the
/// leave.
#[tokio::test(start_paused = true)]
async fn a_bot_whose_leave_dies_with_its_aggregator_delivers_again_and_leaves() {
    let fake = Fake::new();
    let stop = Shutdown::new();
    let scenario = async {
        sleep(Duration::from_millis(5500)).await;
        fake.with(|a| a.die_on_leave = Some(2));
        stop.finish();
    };
    let out = run_bot(&fake, OUTBOX, scenario, &stop).await;
    let a = fake.0.borrow();
    assert_eq!(a.registrations.len(), 2);
    assert_eq!(out.responses, 6);
    in_order_once(&a.counted, out.responses);
    assert!(a.left);
    assert_eq!(out.undelivered, 0);
}

/// Down for longer than the outbox holds: the oldest seconds are dropped and counted, the
/// newest delivered.
#[tokio::test(start_paused = true)]
async fn a_full_outbox_drops_the_oldest_seconds_and_counts_them() {
    let fake = Fake::new();
    let stop = Shutdown::new();
    let scenario = async {
        sleep(Duration::from_millis(5500)).await;
        fake.with(|a| a.up = false);
        sleep(Duration::from_secs(6)).await;
        fake.with(|a| a.up = true);
        sleep(Duration::from_secs(3)).await;
        stop.finish();
    };
    let out = run_bot(&fake, 2, scenario, &stop).await;
    let a = fake.0.borrow();
    // Pushes fail at 6.25 s … 11.25 s: seconds 5 to 10 are sealed while down, and 11 at the
    // push that gets through; seven with room for two: the five oldest dropped.
    assert_eq!(out.dropped, 5, "{out:?}");
    assert_eq!(a.dropped, 5, "pushes carry the count");
    let want: Vec<u64> = (0..5).chain(10..out.responses).map(|k| T0 + k).collect();
    assert_eq!(a.counted, want);
}

/// Stopped while the aggregator is down: it tries for the grace, then exits with what it
/// could not deliver.
#[tokio::test(start_paused = true)]
async fn a_bot_stopped_while_its_aggregator_is_down_exits_after_the_grace() {
    let fake = Fake::new();
    let stop = Shutdown::new();
    let stopped = std::cell::Cell::new(None);
    let scenario = async {
        sleep(Duration::from_millis(3500)).await;
        fake.with(|a| a.up = false);
        sleep(Duration::from_secs(2)).await;
        stop.finish();
        stopped.set(Some(Instant::now()));
    };
    let out = run_bot(&fake, OUTBOX, scenario, &stop).await;
    let took = stopped.get().unwrap().elapsed();
    assert!(took > STOP_GRACE && took < STOP_GRACE + Duration::from_secs(2));
    assert!(out.undelivered >= 2, "{out:?}");
    assert!(!fake.0.borrow().left);
}

/// `--exit-when-finished`: told the run is over, and the aggregator gone before the bot's
/// leave (it ended the run and exited): the bot tries for the grace, then exits; it does not
/// wait for an aggregator that will not come back.
#[tokio::test(start_paused = true)]
async fn a_finished_bot_whose_aggregator_is_gone_exits_after_the_grace() {
    let fake = Fake::new();
    let stop = Shutdown::new();
    let finished = std::cell::Cell::new(None);
    let scenario = async {
        sleep(Duration::from_millis(3500)).await;
        let tx = fake.with(|a| {
            a.up = false;
            a.follower.clone().expect("the bot follows its assignments")
        });
        let over = Assignment {
            generation: 2,
            spec: None,
            finished: true,
            rate_start_unix: None,
            share: None,
        };
        tx.send(over).unwrap();
        finished.set(Some(Instant::now()));
    };
    let bot = run_bot_exiting(&fake, OUTBOX, scenario, &stop, true);
    let out = tokio::time::timeout(Duration::from_secs(60), bot)
        .await
        .expect("the bot exits");
    let took = finished.get().unwrap().elapsed();
    assert!(
        took > STOP_GRACE && took < STOP_GRACE + Duration::from_secs(2),
        "{took:?}"
    );
    assert!(!stop.is_triggered());
    assert!(out.undelivered >= 1, "{out:?}");
    assert!(!fake.0.borrow().left);
}
