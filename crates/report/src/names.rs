//! The per-name table of a run whose requests are named (a targets file's `# name:` lines or
//! JSON lines' `name`): one row a name, slowest p99 first, so the slow endpoint a mix's total
//! averages away is the first row. The names' rows add up to the total.

use crate::format::{count, ms, trim};
use hist::Snapshot;
use std::collections::BTreeMap;

/// One name's figures, computed from its snapshot (the whole run).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NameRow {
    /// The name.
    pub name: String,
    /// Sends started.
    pub sent: u64,
    /// Answers (any status).
    pub responses: u64,
    /// Answers per second over the run.
    pub rate: f64,
    /// Transport errors plus 4xx/5xx answers.
    pub failed: u64,
    /// Median corrected latency, ms.
    pub p50_ms: f64,
    /// 99th percentile corrected latency, ms.
    pub p99_ms: f64,
}

/// The rows, slowest p99 first (then by name).
pub fn rows(names: &BTreeMap<String, Snapshot>, seconds: f64) -> Vec<NameRow> {
    let mut rows: Vec<NameRow> = names
        .iter()
        .map(|(name, s)| NameRow {
            name: name.clone(),
            sent: s.sent,
            responses: s.responses,
            rate: if seconds > 0.0 {
                s.responses as f64 / seconds
            } else {
                0.0
            },
            failed: s.failed(),
            p50_ms: s.quantile_ms(0.5),
            p99_ms: s.quantile_ms(0.99),
        })
        .collect();
    rows.sort_by(|a, b| b.p99_ms.total_cmp(&a.p99_ms).then(a.name.cmp(&b.name)));
    rows
}

/// The table.
pub fn table(rows: &[NameRow]) -> String {
    let head = ["Name", "Sent", "Answered", "Req/s", "Failed", "p50", "p99"];
    let mut t = vec![head.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for r in rows {
        t.push(vec![
            r.name.clone(),
            count(r.sent),
            count(r.responses),
            trim(r.rate, 1),
            count(r.failed),
            ms(r.p50_ms),
            ms(r.p99_ms),
        ]);
    }
    crate::table::boxed(&t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(values_us: &[u64], failed: u64) -> Snapshot {
        let mut s = Snapshot::default();
        for v in values_us {
            s.latency.record(*v).unwrap();
            s.responses += 1;
            s.sent += 1;
            *s.status.entry(200).or_default() += 1;
        }
        if failed > 0 {
            s.errors.insert("timeout".into(), failed);
            s.sent += failed;
        }
        s
    }

    #[test]
    fn the_slowest_name_comes_first() {
        let mut names = BTreeMap::new();
        names.insert("fast".to_string(), named(&[500; 10], 0));
        names.insert("slow".to_string(), named(&[20_000; 4], 1));
        let r = rows(&names, 2.0);
        assert_eq!(r[0].name, "slow");
        assert_eq!(
            (r[0].sent, r[0].responses, r[0].failed, r[0].rate),
            (5, 4, 1, 2.0)
        );
        assert!((r[0].p99_ms - 20.0).abs() < 0.1 && (r[1].p50_ms - 0.5).abs() < 0.01);
        let t = table(&r);
        let slow = t.lines().position(|l| l.contains("slow")).unwrap();
        let fast = t.lines().position(|l| l.contains("fast")).unwrap();
        assert!(slow < fast, "{t}");
    }
}
