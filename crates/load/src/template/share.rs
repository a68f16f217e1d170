//! A loadbot's share of its fleet's `{{seq}}` and CSV rows (see the module above): bot
//! `index` of `of` takes every `of`-th value and row, starting at its own place.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A loadbot's part of its fleet's sequence and rows: bot `index` of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// This bot's place, 0-based.
    pub index: u32,
    /// How many bots share the run.
    pub of: u32,
}

impl Share {
    /// The whole of it (a run of its own).
    pub const ALL: Share = Share { index: 0, of: 1 };

    /// The `n`-th value of this share's part of a sequence.
    pub fn seq(self, n: u64) -> u64 {
        n * u64::from(self.of.max(1)) + u64::from(self.index)
    }

    /// The row of `rows` this share takes for its `n`-th request (in turn) or for a random
    /// `pick` (any number): one of its own rows, index, index + of, …
    pub fn row(self, n: u64, rows: usize) -> usize {
        let (index, of, rows) = (self.index as usize, self.of.max(1) as usize, rows.max(1));
        if index >= rows {
            return index % rows;
        }
        let own = (rows - index).div_ceil(of);
        index + of * (n % own as u64) as usize
    }
}

/// Changes the [`Share`] of a running load (a bot's, when its fleet grows or shrinks) without
/// restarting it: the next request takes its values from the new share.
#[derive(Debug, Clone)]
pub struct ShareControl(Arc<AtomicU64>);

impl Default for ShareControl {
    fn default() -> Self {
        ShareControl::new(Share::ALL)
    }
}

impl ShareControl {
    /// A control holding `s`.
    pub fn new(s: Share) -> ShareControl {
        let c = ShareControl(Arc::new(AtomicU64::new(0)));
        c.set(s);
        c
    }

    /// From now on, `s` (index and count change together: one word).
    pub fn set(&self, s: Share) {
        let word = (u64::from(s.index) << 32) | u64::from(s.of.max(1));
        self.0.store(word, Ordering::Relaxed);
    }

    /// The share now.
    pub fn get(&self) -> Share {
        let word = self.0.load(Ordering::Relaxed);
        Share {
            index: (word >> 32) as u32,
            of: word as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_the_sequence_and_the_rows_without_overlap() {
        let shares = (0..3).map(|index| Share { index, of: 3 });
        let mut seqs = std::collections::BTreeSet::new();
        for s in shares.clone() {
            for n in 0..100 {
                assert!(seqs.insert(s.seq(n)), "{s:?} repeats {}", s.seq(n));
            }
        }
        assert_eq!(seqs.len(), 300);
        assert_eq!(
            *seqs.iter().last().unwrap(),
            299,
            "together: 0..300, no gap"
        );
        // 7 rows over 3 bots: bot i takes rows ≡ i (mod 3) in turn, all of its own.
        let rows: Vec<Vec<usize>> = shares
            .map(|s| (0..6).map(|n| s.row(n, 7)).collect())
            .collect();
        assert_eq!(
            rows,
            [[0, 3, 6, 0, 3, 6], [1, 4, 1, 4, 1, 4], [2, 5, 2, 5, 2, 5]]
        );
        // More bots than rows: bot i takes row i mod rows; the whole takes every row.
        assert_eq!(Share { index: 4, of: 5 }.row(9, 3), 1);
        assert_eq!(
            (0..4).map(|n| Share::ALL.row(n, 3)).collect::<Vec<_>>(),
            [0, 1, 2, 0]
        );
        // A random pick stays in the share too.
        assert!((0..1000).all(|n| Share { index: 1, of: 3 }.row(n * 7919, 10) % 3 == 1));
        // The control changes index and count together.
        let c = ShareControl::default();
        assert_eq!(c.get(), Share::ALL);
        c.set(Share { index: 2, of: 5 });
        assert_eq!(c.get(), Share { index: 2, of: 5 });
    }
}
