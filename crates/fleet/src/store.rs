//! The aggregator's run directory (`--out`), written as the run goes so that a crash or
//! Ctrl-C loses at most the last second, and a restart with the same directory picks the run
//! up:
//!
//! - `intervals.jsonl`: one line per closed second (and again when a late snapshot revised
//!   it; the last line of a second wins), appended and flushed every second. A torn last line
//!   (a crash mid-write) is skipped when reading.
//! - `state.json`: bots, their high-water marks and assignments, events, and the seconds still
//!   open; replaced atomically every second.
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
            let mut closed = BTreeMap::new();
            if let Ok(f) = File::open(&journal_path) {
                for line in BufReader::new(f).lines() {
                    let line = line.map_err(io(&journal_path))?;
                    // A torn line from a crash mid-write ends the usable journal.
                    let Ok(l) = serde_json::from_str::<Line>(&line) else {
                        break;
                    };
                    closed.insert(l.t, l.closed);
                }
            }
            Some(Loaded { saved, closed })
        } else {
            // A fresh run: an old journal without a state file is stale.
            let _ = std::fs::remove_file(&journal_path);
            None
        };
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(io(&journal_path))?;
        Ok((
            Store {
                dir: dir.to_path_buf(),
                journal,
            },
            loaded,
        ))
    }

    /// Append closed (or revised) seconds, then replace the state: in this order, so a crash
    /// between the two finds each second in at least one of them.
    pub fn save(&mut self, closed: &[(u64, Closed)], saved: &Saved) -> Result<(), StoreError> {
        let jp = self.dir.join("intervals.jsonl");
        if !closed.is_empty() {
            let mut buf = Vec::new();
            for (t, c) in closed {
                serde_json::to_writer(
                    &mut buf,
                    &Line {
                        t: *t,
                        closed: c.clone(),
                    },
                )
                .expect("serializing into a Vec cannot fail");
                buf.push(b'\n');
            }
            self.journal.write_all(&buf).map_err(io(&jp))?;
            self.journal.sync_data().map_err(io(&jp))?;
        }
        let sp = self.dir.join("state.json");
        write_atomic(&sp, &serde_json::to_vec(saved).expect("state serializes"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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
