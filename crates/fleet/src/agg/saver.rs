//! The run directory written off the serving thread: a save is an `fdatasync` of the journal
//! and of state.json (milliseconds on a local disk, tens on a network volume) and, with 10,000
//! bots, ~6 MB of JSON to make; on the serving thread every push that arrived meanwhile
//! waited (BENCHMARKS.md, 2026-12-07 08:45: push latency max 55–124 ms at 10,000 bots).
//!
//! One thread owns the [`Store`] and takes the saves in order. When it falls behind (a slow
//! disk), it appends every closed second of the saves waiting, in order, and writes only the
//! newest state: the journal loses nothing, and state.json is always the latest whole copy.
//! A save counts as done ([`Shared::saved`](super::Shared)) once both are on disk.

use super::{sse, Shared};
use crate::state::{Closed, Saved};
use crate::store::Store;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

/// One save: the seconds closed (or revised) since the last, the state, and its number.
pub(super) struct Job {
    pub closed: Vec<(u64, Closed)>,
    pub saved: Saved,
    pub n: u64,
}

/// The saving thread.
pub(super) struct Saver {
    tx: mpsc::Sender<Job>,
    thread: JoinHandle<Store>,
}

impl Saver {
    pub fn start(store: Store, sh: Arc<Shared>) -> std::io::Result<Saver> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("aggregate-save".into())
            .spawn(move || {
                let done = |n| {
                    sh.saved.send_replace(n);
                };
                let failed = |why: String| {
                    // Keep serving: the run is in memory and the next second tries again.
                    let event = report::Event {
                        t: crate::now_unix(),
                        kind: "error".into(),
                        text: format!("cannot save the run: {why}"),
                    };
                    let _ = sh.stream.send(sse("event", &event));
                };
                run(store, &rx, done, failed)
            })?;
        Ok(Saver { tx, thread })
    }

    /// Queue a save; it is done when [`Shared::saved`](super::Shared) reaches `job.n`.
    pub fn save(&self, job: Job) {
        // The thread ends only when this sender is dropped (`finish`).
        let _ = self.tx.send(job);
    }

    /// Wait for the saves queued so far and take the store back (the run's last save is made
    /// where it is used).
    pub fn finish(self) -> Store {
        drop(self.tx);
        match self.thread.join() {
            Ok(store) => store,
            Err(_) => panic!("the aggregator's saving thread panicked"),
        }
    }
}

/// Save each job, or each run of jobs that waited, until the sender is gone; `done(n)` after
/// save `n` (failed or not), `failed(why)` for a save that failed.
fn run(
    mut store: Store,
    rx: &mpsc::Receiver<Job>,
    done: impl Fn(u64),
    failed: impl Fn(String),
) -> Store {
    while let Ok(mut job) = rx.recv() {
        for next in rx.try_iter() {
            job.closed.extend(next.closed);
            job.saved = next.saved;
            job.n = next.n;
        }
        if let Err(e) = store.save(&job.closed, &job.saved) {
            failed(e.to_string());
        }
        done(job.n);
    }
    store
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Config, Plan, State};
    use std::sync::Mutex;

    fn second(t: u64) -> (u64, Closed) {
        let fleet = report::FleetSecond {
            t,
            offered: 10.0,
            reported: 1,
            live: 1,
        };
        let packed = serde_json::to_string(&hist::Snapshot::default()).unwrap();
        (t, Closed { packed, fleet })
    }

    fn saved(run_id: &str) -> Saved {
        let mut s = State::new(
            Config::default(),
            run_id.into(),
            1000.0,
            load::Spec::default(),
            Plan::Idle,
        );
        s.saved()
    }

    /// Saves that queued behind a slow one are made as one: every closed second reaches the
    /// journal, in order (a revised second again, after its first line), and state.json is
    /// the newest; each save's number is reported done once, the last one last.
    #[test]
    fn saves_that_waited_keep_every_second_and_the_newest_state() {
        let dir = std::env::temp_dir().join(format!("st-saver-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(&dir).unwrap();
        let (tx, rx) = mpsc::channel();
        // Queued before the thread starts: it finds all three waiting.
        let jobs = [
            (vec![second(1000)], "r1"),
            (vec![second(1001), second(1002)], "r2"),
            (vec![second(1001), second(1003)], "r3"),
        ];
        for (n, (closed, id)) in jobs.into_iter().enumerate() {
            let (saved, n) = (saved(id), n as u64 + 1);
            tx.send(Job { closed, saved, n }).unwrap();
        }
        drop(tx);
        let dones = Mutex::new(Vec::new());
        let store = run(
            store,
            &rx,
            |n| dones.lock().unwrap().push(n),
            |why| panic!("{why}"),
        );
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
        assert_eq!(
            loaded.closed.keys().copied().collect::<Vec<_>>(),
            vec![1000, 1001, 1002, 1003]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
