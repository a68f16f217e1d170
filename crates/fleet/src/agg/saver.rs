//! The run directory written off the serving thread: a save is an `fdatasync` of the journal
//! and of state.json (milliseconds on a local disk, tens on a network volume) and, with 10,000
//! bots, ~6 MB of JSON to make; on the serving thread every push that arrived meanwhile
//! waited (BENCHMARKS.md, 2026-12-07 08:40: push p99 40 ms with a 50 ms sync; 3–6 ms once
//! saved here).
//!
//! One thread owns the [`Store`]. The ticker leaves each second's save in a one-slot mailbox;
//! saves that arrive while one is being made are merged there (every closed second kept, in
//! order; only the newest state), so memory holds one state however slow the disk. A save is
//! done ([`Shared::saved`](super::Shared), which a bot's leave waits for) once written, or once
//! it failed: the failure is an event and serving goes on with the run in memory. The closed
//! seconds of a failed journal append go first in the next save (kept in memory meanwhile, a
//! few KB a second; no state is written without them in the journal); after a failed
//! state.json the next save's newer state is enough. The run's last save appends whatever
//! never reached the journal ([`Saver::finish`]).
//!
//! The disk may not fall far behind the bots: they keep acknowledged seconds for 120 s, to
//! send them again to an aggregator restarted from its last save. So the ticker reports a
//! save [`LAG_WARN`] seconds behind (once, until the disk catches up), and waits (holding up
//! serving, as saving on the serving thread did) while one is over [`LAG_MAX`] behind.

use super::{sse, Shared};
use crate::state::{Closed, Saved};
use crate::store::{Store, StoreError};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Saves behind (seconds, one a tick) at which the lag is reported.
const LAG_WARN: u64 = 5;

/// Saves behind at which the ticker waits for the disk: well within the bots' 120 s.
const LAG_MAX: u64 = 30;

/// One save: the seconds closed (or revised) since the last, the state, and its number.
pub(super) struct Job {
    pub closed: Vec<(u64, Closed)>,
    pub saved: Saved,
    pub n: u64,
}

/// Where saves go: the run directory ([`Store`]); tests put their own.
trait Sink: Send + 'static {
    fn append(&mut self, closed: &[(u64, Closed)]) -> Result<(), StoreError>;
    fn write_state(&mut self, saved: &Saved) -> Result<(), StoreError>;
}

impl Sink for Store {
    fn append(&mut self, closed: &[(u64, Closed)]) -> Result<(), StoreError> {
        Store::append(self, closed)
    }

    fn write_state(&mut self, saved: &Saved) -> Result<(), StoreError> {
        Store::write_state(self, saved)
    }
}

#[derive(Default)]
struct Mailbox {
    /// The next save (saves merged into it while the thread was busy).
    next: Option<Job>,
    /// Closed seconds of a save that failed: they go first in the next one.
    retry: Vec<(u64, Closed)>,
    /// The newest save done.
    done: u64,
    /// No more saves: the thread ends once `next` is empty.
    closing: bool,
    /// The lag was reported (until the disk has caught up).
    warned: bool,
    /// The thread's end was reported.
    told_stopped: bool,
}

impl Mailbox {
    /// Leave `job`, merged into the save not yet begun if there is one (whose state it
    /// returns, to be dropped outside the lock).
    fn put(&mut self, job: Job) -> Option<Saved> {
        match &mut self.next {
            Some(next) => {
                next.closed.extend(job.closed);
                next.n = job.n;
                Some(std::mem::replace(&mut next.saved, job.saved))
            }
            None => {
                self.next = Some(job);
                None
            }
        }
    }

    /// The next save, a failed append's seconds first.
    fn take_next(&mut self) -> Option<Job> {
        let mut job = self.next.take()?;
        job.closed.splice(0..0, std::mem::take(&mut self.retry));
        Some(job)
    }

    /// The closed seconds not in the journal: a failed append's, then those not saved yet.
    fn unsaved(&mut self) -> Vec<(u64, Closed)> {
        match self.take_next() {
            Some(job) => job.closed,
            None => std::mem::take(&mut self.retry),
        }
    }
}

#[derive(Default)]
struct Slot {
    mailbox: Mutex<Mailbox>,
    changed: Condvar,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Mailbox> {
        // Nothing panics while holding it; a poisoned lock's data is still whole.
        self.mailbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leave `job` for the thread (`alive`: it still runs). `tell` what the user should know:
    /// once, that the thread stopped; once per spell, a lag of [`LAG_WARN`] saves. Waits while
    /// over [`LAG_MAX`] saves behind.
    fn leave(&self, job: Job, alive: impl Fn() -> bool, tell: impl Fn(&str)) {
        let n = job.n;
        let mut m = self.lock();
        let old = m.put(job);
        self.changed.notify_all();
        drop(m);
        drop(old);
        let mut m = self.lock();
        if !alive() {
            if !std::mem::replace(&mut m.told_stopped, true) {
                drop(m);
                tell("the saving thread stopped: the run is not saved");
            }
            return;
        }
        let behind = n.saturating_sub(m.done);
        if behind >= LAG_WARN && !std::mem::replace(&mut m.warned, true) {
            drop(m);
            tell(&format!(
                "the disk is {behind} s behind: saves wait (slow volume?)"
            ));
            m = self.lock();
        }
        while n.saturating_sub(m.done) > LAG_MAX && alive() {
            let waited = self.changed.wait_timeout(m, Duration::from_secs(1));
            m = waited.unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// The saving thread.
pub(super) struct Saver {
    slot: Arc<Slot>,
    sh: Arc<Shared>,
    dir: PathBuf,
    thread: Option<JoinHandle<Store>>,
}

impl Saver {
    pub fn start(store: Store, sh: Arc<Shared>) -> std::io::Result<Saver> {
        let slot = Arc::new(Slot::default());
        let dir = store.dir().to_path_buf();
        let thread = {
            let (slot, sh) = (slot.clone(), sh.clone());
            std::thread::Builder::new()
                .name("aggregate-save".into())
                .spawn(move || {
                    let done = |n| {
                        sh.saved.send_replace(n);
                    };
                    run(store, &slot, done, |why| error_event(&sh, &why))
                })?
        };
        Ok(Saver {
            slot,
            sh,
            dir,
            thread: Some(thread),
        })
    }

    /// Leave a save for the thread; it is done when [`Shared::saved`](super::Shared) reaches
    /// `job.n`. Waits while the disk is over [`LAG_MAX`] saves behind.
    pub fn save(&self, job: Job) {
        let thread = self.thread.as_ref();
        let alive = || thread.is_some_and(|t| !t.is_finished());
        self.slot
            .leave(job, alive, |why| error_event(&self.sh, why));
    }

    /// The run directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Wait for the saves left so far and take the store back, with the closed seconds that
    /// did not reach the journal (a failed append's; all since the thread died, should it
    /// have): the run's last save appends them first. A dead thread's directory is opened
    /// again.
    pub fn finish(mut self) -> (Result<Store, StoreError>, Vec<(u64, Closed)>) {
        let joined = self.stop();
        let unsaved = self.slot.lock().unsaved();
        let store = match joined {
            Some(store) => Ok(store),
            None => Store::open(&self.dir).map(|(store, _)| store),
        };
        (store, unsaved)
    }

    /// End the thread once it has made the saves left; its store, unless it panicked.
    fn stop(&mut self) -> Option<Store> {
        self.slot.lock().closing = true;
        self.slot.changed.notify_all();
        self.thread.take()?.join().ok()
    }
}

impl Drop for Saver {
    /// A serving thread that ends early (a panic) still leaves no writer behind it.
    fn drop(&mut self) {
        self.stop();
    }
}

fn error_event(sh: &Shared, why: &str) {
    let event = report::Event {
        t: crate::now_unix(),
        kind: "error".into(),
        text: format!("cannot save the run: {why}"),
    };
    let _ = sh.stream.send(sse("event", &event));
}

/// Make the saves left in `slot` until it is closing and empty; `done(n)` after save `n`
/// (written or failed), `failed(why)` for a save that failed.
fn run<S: Sink>(mut store: S, slot: &Slot, done: impl Fn(u64), failed: impl Fn(String)) -> S {
    loop {
        let mut job = {
            let mut m = slot.lock();
            loop {
                if let Some(job) = m.take_next() {
                    break job;
                }
                if m.closing {
                    return store;
                }
                m = slot.changed.wait(m).unwrap_or_else(|e| e.into_inner());
            }
        };
        // The journal first: a state that no longer holds seconds as open is written only
        // once they are in the journal. Seconds whose append failed go again; after a failed
        // state.json, the next save's newer state is enough.
        let appended = store.append(&job.closed);
        let result = appended
            .as_ref()
            .map_err(|e| e.to_string())
            .and_then(|()| store.write_state(&job.saved).map_err(|e| e.to_string()));
        {
            let mut m = slot.lock();
            if appended.is_err() {
                m.retry = std::mem::take(&mut job.closed);
            }
            m.done = job.n;
            if m.next.is_none() {
                m.warned = false;
            }
        }
        slot.changed.notify_all();
        if let Err(why) = result {
            failed(why);
        }
        done(job.n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{saved, second};
    use std::sync::mpsc;

    fn job(n: u64, seconds: &[u64], run_id: &str) -> Job {
        let closed = seconds.iter().map(|&t| second(t)).collect();
        Job {
            closed,
            saved: saved(run_id),
            n,
        }
    }

    /// Saves left while the thread was busy are made as one: every closed second reaches the
    /// journal, in order (a revised second again, after its first line), and state.json is
    /// the newest; the merged save's number is reported done once.
    #[test]
    fn saves_that_waited_keep_every_second_and_the_newest_state() {
        let dir = std::env::temp_dir().join(format!("st-saver-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(&dir).unwrap();
        let slot = Slot::default();
        {
            let mut m = slot.lock();
            m.put(job(1, &[1000], "r1"));
            m.put(job(2, &[1001, 1002], "r2"));
            m.put(job(3, &[1001, 1003], "r3"));
            m.closing = true;
        }
        let dones = Mutex::new(Vec::new());
        let done = |n| dones.lock().unwrap().push(n);
        let store = run(store, &slot, done, |why| panic!("{why}"));
        assert_eq!(*dones.lock().unwrap(), vec![3]);
        drop(store);
        let journal = std::fs::read_to_string(dir.join("intervals.jsonl")).unwrap();
        let ts: Vec<u64> = journal
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["t"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(ts, vec![1000, 1001, 1002, 1001, 1003]);
        let (_, loaded) = Store::open(&dir).unwrap();
        let loaded = loaded.unwrap();
        assert_eq!(loaded.saved.run_id, "r3");
        let closed: Vec<u64> = loaded.closed.keys().copied().collect();
        assert_eq!(closed, vec![1000, 1001, 1002, 1003]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Saves as a test plans them: `plan[i]` says whether the i-th append and state write
    /// succeed; the first append also leaves the next save (job 2, second 1001) and closes.
    struct Scripted {
        slot: Arc<Slot>,
        plan: Vec<(bool, bool)>,
        appends: usize,
        log: Arc<Mutex<Vec<String>>>,
    }

    fn full() -> StoreError {
        StoreError::Io("disk".into(), std::io::ErrorKind::StorageFull.into())
    }

    impl Sink for Scripted {
        fn append(&mut self, closed: &[(u64, Closed)]) -> Result<(), StoreError> {
            let ts: Vec<u64> = closed.iter().map(|c| c.0).collect();
            self.log.lock().unwrap().push(format!("append {ts:?}"));
            if self.appends == 0 {
                let mut m = self.slot.lock();
                m.put(job(2, &[1001], "r2"));
                m.closing = true;
            }
            self.appends += 1;
            self.plan[self.appends - 1].0.then_some(()).ok_or_else(full)
        }

        fn write_state(&mut self, saved: &Saved) -> Result<(), StoreError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("state {}", saved.run_id));
            self.plan[self.appends - 1].1.then_some(()).ok_or_else(full)
        }
    }

    /// Run saves 1 (second 1000) and 2 (1001) through a sink that follows `plan`: what it
    /// was asked, the saves done, and the failures told.
    fn scripted(plan: Vec<(bool, bool)>) -> (Vec<String>, Vec<u64>, usize) {
        let slot = Arc::new(Slot::default());
        slot.lock().put(job(1, &[1000], "r1"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Scripted {
            slot: slot.clone(),
            plan,
            appends: 0,
            log: log.clone(),
        };
        let (dones, failures) = (Mutex::new(Vec::new()), Mutex::new(0));
        let done = |n| dones.lock().unwrap().push(n);
        run(sink, &slot, done, |_| *failures.lock().unwrap() += 1);
        let log = log.lock().unwrap().clone();
        let dones = dones.into_inner().unwrap();
        (log, dones, failures.into_inner().unwrap())
    }

    /// A failed append is told, counts as done (a leave is not held up by a broken disk),
    /// writes no state that would drop its seconds from the open ones, and its seconds go
    /// first in the next save: none is lost.
    #[test]
    fn a_failed_appends_seconds_go_again_with_the_next_save() {
        let (log, dones, failures) = scripted(vec![(false, true), (true, true)]);
        assert_eq!(log, ["append [1000]", "append [1000, 1001]", "state r2"]);
        assert_eq!((dones, failures), (vec![1, 2], 1));
    }

    /// After a failed state.json the seconds are in the journal already: the next save
    /// appends only its own (sent again every second, a lasting failure would grow the
    /// journal without bound), and its newer state replaces the one that failed.
    #[test]
    fn a_failed_state_write_sends_no_second_again() {
        let (log, dones, failures) = scripted(vec![(true, false), (true, true)]);
        assert_eq!(
            log,
            ["append [1000]", "state r1", "append [1001]", "state r2"]
        );
        assert_eq!((dones, failures), (vec![1, 2], 1));
    }

    /// What never reached the journal is handed to the run's last save: a failed append's
    /// seconds, then those of the save not made.
    #[test]
    fn the_unsaved_seconds_are_the_retried_then_the_waiting() {
        let slot = Slot::default();
        let mut m = slot.lock();
        m.retry = vec![second(1000), second(1001)];
        m.put(job(7, &[1002], "r"));
        let ts: Vec<u64> = m.unsaved().iter().map(|c| c.0).collect();
        assert_eq!(ts, vec![1000, 1001, 1002]);
        assert!(m.unsaved().is_empty());
    }

    /// Saves falling behind are told once (not every second), and once over `LAG_MAX` behind,
    /// the ticker waits until the disk is back within it.
    #[test]
    fn the_ticker_tells_a_lag_once_and_waits_when_far_behind() {
        let slot = Arc::new(Slot::default());
        let told = Mutex::new(Vec::new());
        let tell = |why: &str| told.lock().unwrap().push(why.to_string());
        slot.leave(job(LAG_WARN - 1, &[], "r"), || true, tell);
        assert!(told.lock().unwrap().is_empty());
        slot.leave(job(LAG_WARN, &[], "r"), || true, tell);
        slot.leave(job(LAG_MAX, &[], "r"), || true, tell);
        assert_eq!(
            *told.lock().unwrap(),
            vec![format!(
                "the disk is {LAG_WARN} s behind: saves wait (slow volume?)"
            )]
        );
        // One more is over the bound: it waits for a save to be done.
        let (tx, rx) = mpsc::channel();
        let waiting = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                slot.leave(job(LAG_MAX + 1, &[], "r"), || true, |_| {});
                tx.send(()).unwrap();
            })
        };
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        slot.lock().done = 1;
        slot.changed.notify_all();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("it stops waiting");
        waiting.join().unwrap();
        assert_eq!(slot.lock().next.as_ref().map(|j| j.n), Some(LAG_MAX + 1));
        // A stopped thread is told once, and never waited for.
        let dead = || false;
        slot.leave(job(LAG_MAX + 50, &[], "r"), dead, tell);
        slot.leave(job(LAG_MAX + 51, &[], "r"), dead, tell);
        let told = told.lock().unwrap();
        assert_eq!(told.len(), 2, "{told:?}");
        assert_eq!(told[1], "the saving thread stopped: the run is not saved");
    }
}
