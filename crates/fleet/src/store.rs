//! The aggregator's run directory (`--out`), written as the run goes (every second, on its
//! own thread: `agg::saver`) so that a crash or Ctrl-C loses at most the seconds since the
//! last save (one, unless the disk is slow: at most 30 before the aggregator waits for it; or
//! while saves fail), which the bots send again, and a restart with the same directory picks
//! the run up:
//!
//! - `intervals.jsonl`: one line per closed second (and again when a late snapshot revised
//!   it; the last line of a second wins), appended and flushed every second. A torn last line
//!   (a crash mid-write) is cut off when the run is picked up; what an append that failed
//!   left is cut off before the next, which appends its seconds again.
//! - `state.json`: bots, their high-water marks and assignments, events, and the seconds still
//!   open; replaced atomically every second (a crash's temporary file is removed).
//! - `results.json` and `report.html` at the end of the run.

use crate::state::{Closed, Saved};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// A run directory that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A file in it is not what this build writes.
    #[error("{0} is not a scaletest aggregator file: {1}")]
    Parse(String, String),
    /// It holds a finished run.
    #[error("{0} holds a finished run (results.json); choose another --out")]
    Finished(String),
}

#[derive(Serialize, Deserialize)]
struct Line {
    t: u64,
    #[serde(flatten)]
    closed: Closed,
}

/// An open run directory.
pub struct Store {
    dir: PathBuf,
    journal: File,
    /// The journal's length after its last whole append: anything past it is a torn line.
    journal_len: u64,
}

/// What a run directory held.
pub struct Loaded {
    /// State saved at the last second.
    pub saved: Saved,
    /// Closed seconds.
    pub closed: BTreeMap<u64, Closed>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io(path.display().to_string(), e)
}

impl Store {
    /// Open (creating) `dir`; returns what an unfinished run left there, if anything.
    pub fn open(dir: &Path) -> Result<(Store, Option<Loaded>), StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        if dir.join("results.json").exists() {
            return Err(StoreError::Finished(dir.display().to_string()));
        }
        let state_path = dir.join("state.json");
        let journal_path = dir.join("intervals.jsonl");
        let loaded = if state_path.exists() {
            let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
            let saved: Saved = serde_json::from_str(&text)
                .map_err(|e| StoreError::Parse(state_path.display().to_string(), e.to_string()))?;
            let closed = read_journal(&journal_path)?;
            Some(Loaded { saved, closed })
        } else {
            // A fresh run: an old journal without a state file is stale.
            let _ = std::fs::remove_file(&journal_path);
            None
        };
        remove_temporaries(dir, "state.tmp");
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(io(&journal_path))?;
        let journal_len = journal.metadata().map_err(io(&journal_path))?.len();
        Ok((
            Store {
                dir: dir.to_path_buf(),
                journal,
                journal_len,
            },
            loaded,
        ))
    }

    /// Append closed (or revised) seconds, then replace the state: in this order, so a crash
    /// between the two finds each second in at least one of them.
    pub fn save(&mut self, closed: &[(u64, Closed)], saved: &Saved) -> Result<(), StoreError> {
        self.append(closed)?;
        self.write_state(saved)
    }

    /// Append closed (or revised) seconds to the journal, synced. One that fails leaves no
    /// part of its lines before the next append's (a restart stops reading at a torn line):
    /// it is cut off at once, or, if that fails too, before the next append.
    pub fn append(&mut self, closed: &[(u64, Closed)]) -> Result<(), StoreError> {
        if closed.is_empty() {
            return Ok(());
        }
        let jp = self.dir.join("intervals.jsonl");
        let mut buf = Vec::new();
        for (t, c) in closed {
            let line = Line {
                t: *t,
                closed: c.clone(),
            };
            serde_json::to_writer(&mut buf, &line).expect("serializing into a Vec cannot fail");
            buf.push(b'\n');
        }
        if self.journal.metadata().map_err(io(&jp))?.len() != self.journal_len {
            self.journal.set_len(self.journal_len).map_err(io(&jp))?;
        }
        let wrote = self
            .journal
            .write_all(&buf)
            .and_then(|()| self.journal.sync_data());
        if let Err(e) = wrote {
            let _ = self.journal.set_len(self.journal_len);
            return Err(io(&jp)(e));
        }
        self.journal_len += buf.len() as u64;
        Ok(())
    }

    /// Replace state.json (atomically, synced).
    pub fn write_state(&self, saved: &Saved) -> Result<(), StoreError> {
        let sp = self.dir.join("state.json");
        write_atomic(&sp, &serde_json::to_vec(saved).expect("state serializes"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The closed seconds in the journal at `path`. A torn line (a crash mid-write: no newline,
/// or not a line this build writes) ends the usable journal and is cut off, so that the next
/// line appended starts a line of its own instead of joining it (and being lost with it at
/// the next restart).
fn read_journal(path: &Path) -> Result<BTreeMap<u64, Closed>, StoreError> {
    let mut closed = BTreeMap::new();
    let Ok(f) = File::open(path) else {
        return Ok(closed);
    };
    let mut r = BufReader::new(f);
    let (mut line, mut good) = (Vec::new(), 0u64);
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).map_err(io(path))?;
        let parsed = line
            .strip_suffix(b"\n")
            .and_then(|l| serde_json::from_slice::<Line>(l).ok());
        let Some(l) = parsed else {
            break;
        };
        closed.insert(l.t, l.closed);
        good += n as u64;
    }
    let len = std::fs::metadata(path).map_err(io(path))?.len();
    if good < len {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io(path))?;
        f.set_len(good).map_err(io(path))?;
    }
    Ok(closed)
}

/// Remove what [`write_atomic`] of a crashed process left in `dir` (`PREFIX<pid>` files).
fn remove_temporaries(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Write `bytes` to `path` atomically (a temporary file beside it, then a rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let r = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map_err(io(path))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::state::{Config, Plan, State};
    use report::FleetSecond;

    /// A closed second `t` (an empty snapshot).
    pub(crate) fn second(t: u64) -> (u64, Closed) {
        let fleet = FleetSecond {
            t,
            offered: 10.0,
            reported: 1,
            live: 1,
        };
        let packed = serde_json::to_string(&hist::Snapshot::default()).unwrap();
        (t, Closed { packed, fleet })
    }

    /// The state of a new idle run `run_id`, as saved.
    pub(crate) fn saved(run_id: &str) -> Saved {
        let mut s = State::new(
            Config::default(),
            run_id.into(),
            1000.0,
            load::Spec::default(),
            Plan::Idle,
        );
        s.saved()
    }

    /// A new run directory `name` whose journal holds second 1000.
    fn started(name: &str) -> (PathBuf, Store) {
        let dir = std::env::temp_dir().join(format!("st-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut store, _) = Store::open(&dir).unwrap();
        store.save(&[second(1000)], &saved("r")).unwrap();
        (dir, store)
    }

    /// The closed seconds a restart from `dir` finds.
    fn closed_at_restart(dir: &Path) -> Vec<u64> {
        let (_, loaded) = Store::open(dir).unwrap();
        loaded.unwrap().closed.keys().copied().collect()
    }

    /// A crash mid-write leaves half a journal line and a temporary state file: the run is
    /// picked up, the half line cut off, so the seconds closed after the restart are still
    /// there at the next one.
    #[test]
    fn a_torn_journal_line_is_cut_off_and_later_seconds_survive_the_next_restart() {
        let (dir, store) = started("torn");
        drop(store);
        let journal = dir.join("intervals.jsonl");
        let line = std::fs::read_to_string(&journal).unwrap();
        let torn = format!("{line}{}", &line[..line.len() / 2]);
        std::fs::write(&journal, torn).unwrap();
        std::fs::write(dir.join("state.tmp12345"), "{\"run_id\":").unwrap();
        let (mut store, loaded) = Store::open(&dir).unwrap();
        assert_eq!(loaded.unwrap().closed.len(), 1);
        assert!(!dir.join("state.tmp12345").exists());
        store.save(&[second(1001)], &saved("r")).unwrap();
        drop(store);
        assert_eq!(closed_at_restart(&dir), vec![1000, 1001]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Bytes past the last whole append (a write that failed half way, and whose cut-back
    /// failed too) are cut off before the next append, which would otherwise join them and
    /// be lost with them at the next restart.
    #[test]
    fn a_half_append_is_cut_off_before_the_next() {
        let (dir, mut store) = started("half");
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join("intervals.jsonl"))
            .unwrap();
        f.write_all(b"{\"t\":1001,\"pa").unwrap();
        store.save(&[second(1002)], &saved("r")).unwrap();
        drop(store);
        assert_eq!(closed_at_restart(&dir), vec![1000, 1002]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
