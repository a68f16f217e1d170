//! The human report, in the layout of autocannon (seed 002): the box tables every run kind
//! uses, and a load run's report laid out from its [`Summary`].

use crate::format::{bytes, count, ms, trim};
use crate::summary::{q_ms, Latency, PerSecond, Schedule, Summary};
use crate::RunFile;
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::io::{self, Write};

/// Draw a box table; the first row is the header. Separators between all rows, as autocannon.
pub fn boxed(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |l: &str, m: &str, r: &str| {
        let parts: Vec<String> = width.iter().map(|w| "─".repeat(w + 2)).collect();
        format!("{l}{}{r}\n", parts.join(m))
    };
    let mut out = line("┌", "┬", "┐");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out += &line("├", "┼", "┤");
        }
        out.push('│');
        for (c, w) in width.iter().enumerate() {
            let cell = row.get(c).map(String::as_str).unwrap_or("");
            let pad = w - cell.chars().count();
            let _ = write!(out, " {cell}{} │", " ".repeat(pad));
        }
        out.push('\n');
    }
    out + &line("└", "┴", "┘")
}

/// A row of the latency table (autocannon's columns: 2.5%, 50%, 97.5%, 99%, Avg, Stdev, Max),
/// from a histogram in µs.
pub fn latency_row(name: &str, h: &Histogram<u64>) -> Vec<String> {
    latency_cells(name, &Latency::of(h))
}

fn latency_cells(name: &str, l: &Latency) -> Vec<String> {
    let mut row = vec![name.to_string()];
    row.extend(l.quantiles.iter().map(|v| ms(*v)));
    row.extend([ms(l.mean), ms(l.stdev), ms(l.max)]);
    row
}

fn per_second_cells(name: &str, p: &PerSecond, f: impl Fn(f64, usize) -> String) -> Vec<String> {
    let mut row = vec![name.to_string()];
    row.extend(p.quantiles.iter().map(|v| f(*v, 0)));
    row.extend([f(p.mean, 2), f(p.stdev, 2), f(p.min, 0)]);
    row
}

/// Nearest-rank percentile, mean, standard deviation and minimum of per-second values.
pub(crate) fn sample_stats(values: &[f64]) -> ([f64; 4], f64, f64, f64) {
    if values.is_empty() {
        return ([0.0; 4], 0.0, 0.0, 0.0);
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    (
        [rank(0.01), rank(0.025), rank(0.5), rank(0.975)],
        mean,
        sd,
        v[0],
    )
}

/// Per-second rates used for the Req/Sec and Bytes/Sec rows. A short final sample is left out
/// when there are full seconds, since its rate is not comparable; a run shorter than a second
/// still gets its one sample.
pub(crate) fn per_second(run: &RunFile) -> (Vec<f64>, Vec<f64>) {
    let full: Vec<_> = run.series.iter().filter(|s| s.seconds >= 0.999).collect();
    let use_: Vec<_> = if full.is_empty() {
        run.series.iter().collect()
    } else {
        full
    };
    let rate = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    (
        use_.iter().map(|s| rate(s.requests, s.seconds)).collect(),
        use_.iter().map(|s| rate(s.bytes, s.seconds)).collect(),
    )
}

/// The full report: header, latency table, throughput table, summary line, status and errors.
pub fn write_report(run: &RunFile, percentiles: bool, out: &mut dyn Write) -> io::Result<()> {
    let sum = Summary::of(run);
    let mut s = header(run);
    s += &tables(&sum);
    s += &figures(&sum, run.info.max_connections.unwrap_or(0));
    if !run.stages.is_empty() {
        s += "\nStages (each second counted in the stage holding its middle, the drain in the last):\n";
        s += &crate::stages::table(&run.stages);
    }
    if !run.total.names.is_empty() {
        s += "\nBy name (slowest p99 first):\n";
        s += &crate::names::table(&crate::names::rows(&run.total.names, run.elapsed_s));
    }
    if percentiles {
        s.push('\n');
        s += &spectrum(run);
    }
    out.write_all(s.as_bytes())
}

/// What was run: mode, URL, plan, rate, connections, protocol.
fn header(run: &RunFile) -> String {
    let i = &run.info;
    let open = i.mode == "open";
    let loop_ = if open { "open-loop" } else { "closed-loop" };
    let mut s = String::new();
    if let Some(f) = &run.fleet {
        let _ = writeln!(
            s,
            "Aggregated {loop_} load test @ {}: {}, {}, {}",
            i.url,
            f.bots_text(),
            run.fleet_load_text()
                .unwrap_or_else(|| format!("{} connections per bot", i.connections)),
            proto(i)
        );
    } else {
        let _ = writeln!(s, "Running {loop_} load test @ {}{}", i.url, planned(i));
        if open {
            let _ = writeln!(
                s,
                "rate {} ({} arrivals), {} connections to start, up to {}, {}, {} thread(s)",
                i.rate.as_deref().unwrap_or("?"),
                i.arrival.as_deref().unwrap_or("uniform"),
                i.connections,
                i.max_connections.unwrap_or(0),
                proto(i),
                i.threads
            );
        } else if let Some(stages) = &i.connection_stages {
            let _ = writeln!(
                s,
                "connections in stages {stages} (up to {}), {}, {} thread(s)",
                i.connections,
                proto(i),
                i.threads
            );
        } else {
            let _ = writeln!(
                s,
                "{} connections, {}, {} thread(s)",
                i.connections,
                proto(i),
                i.threads
            );
        }
    }
    match &i.weights {
        Some(w) => {
            let _ = writeln!(s, "{} targets, weighted {w}", i.targets);
        }
        None if i.targets > 1 => {
            let _ = writeln!(s, "{} targets, round-robin", i.targets);
        }
        None => {}
    }
    s.push('\n');
    s
}

/// The latency and throughput tables, and what their rows mean.
fn tables(sum: &Summary) -> String {
    let header = |cols: &[&str]| {
        let mut h = vec!["Stat".to_string()];
        h.extend(cols.iter().map(|c| c.to_string()));
        h
    };
    let mut rows = vec![header(&[
        "2.5%", "50%", "97.5%", "99%", "Avg", "Stdev", "Max",
    ])];
    rows.push(latency_cells("Latency", &sum.latency));
    if let Some(service) = &sum.service {
        rows.push(latency_cells("Service", service));
    }
    let mut s = boxed(&rows);
    s += &boxed(&[
        header(&["1%", "2.5%", "50%", "97.5%", "Avg", "Stdev", "Min"]),
        per_second_cells("Req/Sec", &sum.requests, trim),
        per_second_cells("Bytes/Sec", &sum.bytes, |v, _| bytes(v)),
    ]);
    s.push('\n');
    if sum.open {
        s += "Latency: from each request's intended send time (coordinated omission corrected).\n";
        s += "Service: from when it was actually sent (uncorrected).\n";
    } else {
        s += "Latency: from send to complete response (closed loop: no schedule to correct against).\n";
    }
    s += "Req/Bytes counts sampled once per second.\n\n";
    s
}

/// The summary lines: totals, the fleet's or the schedule's figures, statuses, versions, errors.
fn figures(sum: &Summary, max_connections: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} requests in {}s, {} read{}",
        count(sum.responses),
        trim(sum.elapsed_s, 2),
        bytes(sum.bytes_read as f64),
        if sum.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    );
    if let Some(f) = &sum.fleet {
        // A closed loop offers no rate: only what was sent means anything.
        let offered = if f.offered > 0.0 {
            format!("offered {}/s on average, ", trim(f.offered, 1))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "{offered}sent {}/s; bots reported {} of their live seconds",
            trim(f.sent, 1),
            f.reported_pct
                .map_or("–".into(), |p| format!("{}%", trim(p, 1)))
        );
        if let Some(lost) = &f.lost {
            let _ = writeln!(s, "{lost}");
        }
    }
    if let Some(sch) = &sum.schedule {
        s += &schedule_lines(sch, max_connections);
    }
    let list = |items: Vec<String>, none: &str| {
        if items.is_empty() {
            none.to_string()
        } else {
            items.join(", ")
        }
    };
    let status = sum
        .status
        .iter()
        .map(|(c, n)| format!("{c}: {}", count(*n)));
    let _ = writeln!(s, "status codes: {}", list(status.collect(), "none"));
    if sum.non2xx > 0 {
        let _ = writeln!(s, "{} non-2xx responses", count(sum.non2xx));
    }
    if !sum.versions.is_empty() {
        let v = sum
            .versions
            .iter()
            .map(|(k, n, pct)| format!("{k}: {} ({}%)", count(*n), trim(*pct, 1)));
        let _ = writeln!(s, "server versions: {}", list(v.collect(), ""));
    }
    let errors = sum
        .errors
        .iter()
        .map(|(c, n)| format!("{c}: {}", count(*n)));
    let _ = writeln!(s, "errors: {}", list(errors.collect(), "0"));
    if sum.in_flight_at_end > 0 {
        let _ = writeln!(
            s,
            "{} requests still in flight at the end (not counted)",
            count(sum.in_flight_at_end)
        );
    }
    s
}

/// An open-loop run's schedule: rate achieved, lateness, and why sends were late.
fn schedule_lines(sch: &Schedule, max_connections: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "target rate {}/s, achieved {}/s; {} connections used at peak",
        trim(sch.target_rate, 1),
        trim(sch.achieved, 1),
        count(sch.peak_connections)
    );
    let [p50, p99, max] = sch.lateness_ms;
    let _ = writeln!(
        s,
        "schedule: {} sends, {} started more than 1 ms late (lateness p50 {}, p99 {}, max {})",
        count(sch.sends),
        count(sch.late),
        ms(p50),
        ms(p99),
        ms(max)
    );
    if sch.capped > 0 {
        let _ = writeln!(
            s,
            "connection cap of {max_connections} reached: {} sends waited for a free connection",
            count(sch.capped)
        );
    }
    if sch.unsent > 0 {
        let _ = writeln!(
            s,
            "{} scheduled sends never started: the run ended while they waited for a connection",
            count(sch.unsent)
        );
    }
    if sch.capped == 0 && sch.late > 0 {
        s += "late sends were the generator's own delay (short of CPU), not the connection cap\n";
    }
    s
}

/// " for 10s", " for 1,000 requests", or " for 10s or 1,000 requests".
fn planned(i: &crate::RunInfo) -> String {
    let d = i.duration_s.map(|d| format!("{}s", trim(d, 3)));
    let n = i.requests.map(|n| format!("{} requests", count(n)));
    match (d, n) {
        (Some(d), Some(n)) => format!(" for {d} or {n}, whichever comes first"),
        (Some(x), None) | (None, Some(x)) => format!(" for {x}"),
        (None, None) => String::new(),
    }
}

fn proto(i: &crate::RunInfo) -> String {
    if i.protocol == "HTTP/2" {
        format!("HTTP/2 × {} streams", i.streams)
    } else {
        i.protocol.clone()
    }
}

/// The percentile spectrum, p50 … p99.999 and max.
pub fn spectrum(run: &RunFile) -> String {
    let t = &run.total;
    let qs = [0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 0.99999];
    let mut head = vec!["Percentile".to_string()];
    head.extend(qs.iter().map(|q| format!("{}%", trim(q * 100.0, 3))));
    head.push("Max".into());
    let row = |name: &str, h: &Histogram<u64>| {
        let mut r = vec![name.to_string()];
        r.extend(qs.iter().map(|q| ms(q_ms(h, *q))));
        r.push(ms(h.max() as f64 / 1000.0));
        r
    };
    let mut rows = vec![head, row("Latency", &t.latency)];
    if run.info.mode == "open" {
        rows.push(row("Service", &t.service));
    }
    boxed(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RunInfo, RUNFILE_VERSION};
    use hist::{SecondSample, Snapshot};

    fn run() -> RunFile {
        let mut total = Snapshot::default();
        for v in 1..=1000u64 {
            total.latency.record(v * 100).unwrap();
            total.service.record(v * 10).unwrap();
        }
        total.responses = 1000;
        total.bytes = 13_000;
        total.status.insert(200, 990);
        total.status.insert(503, 10);
        total.errors.insert("reset".into(), 2);
        total.versions.insert("v1".into(), 750);
        total.versions.insert("v2".into(), 250);
        let series = (0..3)
            .map(|s| SecondSample {
                second: s,
                seconds: 1.0,
                requests: 300 + s as u64 * 10,
                errors: 0,
                bytes: 3900,
                bytes_sent: 0,
                p50_ms: 1.0,
                p99_ms: 2.0,
                max_ms: 3.0,
            })
            .chain(std::iter::once(SecondSample {
                second: 3,
                seconds: 0.1,
                requests: 70,
                errors: 0,
                bytes: 10,
                bytes_sent: 0,
                p50_ms: 1.0,
                p99_ms: 2.0,
                max_ms: 3.0,
            }))
            .collect();
        RunFile {
            version: RUNFILE_VERSION,
            tool: "scaletest".into(),
            started_unix: 0.0,
            info: RunInfo {
                url: "http://127.0.0.1:1/".into(),
                mode: "open".into(),
                protocol: "HTTP/1.1".into(),
                connections: 5,
                streams: 1,
                threads: 1,
                ..Default::default()
            },
            elapsed_s: 3.1,
            interrupted: false,
            peak_lanes: 7,
            in_flight_at_end: 0,
            total,
            series,
            intervals: Vec::new(),
            fleet: None,
            summary: None,
            verdicts: Vec::new(),
            stages: Vec::new(),
        }
    }

    #[test]
    fn report_has_autocannon_rows_with_right_numbers() {
        let mut out = Vec::new();
        write_report(&run(), true, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        // p50 of 100..100000 µs is 50 ms; p99 99 ms (within HDR precision).
        assert!(
            s.contains("│ Latency │ 2.5 ms  │ 50.02 ms │ 97.53 ms │ 99.01 ms │"),
            "{s}"
        );
        assert!(
            s.contains(
                "│ Req/Sec   │ 300    │ 300    │ 310    │ 320    │ 310    │ 8.16  │ 300    │"
            ),
            "{s}"
        );
        assert!(s.contains("1,000 requests in 3.1s, 13 kB read"), "{s}");
        assert!(s.contains("status codes: 200: 990, 503: 10"), "{s}");
        assert!(s.contains("errors: reset: 2"), "{s}");
        assert!(
            s.contains("server versions: v1: 750 (75%), v2: 250 (25%)"),
            "{s}"
        );
        assert!(s.contains("Service"), "{s}");
        assert!(s.contains("99.999%"), "{s}");
    }

    #[test]
    fn run_file_round_trips_and_rejects_other_versions() {
        let r = run();
        let dir = std::env::temp_dir().join(format!("st-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("run.json");
        r.write_atomic(&p).unwrap();
        assert_eq!(RunFile::read(&p).unwrap(), r);
        let text =
            std::fs::read_to_string(&p)
                .unwrap()
                .replacen("\"version\": 2", "\"version\": 99", 1);
        let e = RunFile::from_json("x", &text)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 99"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn merging_version_1_runs_adds_counts_and_bounds_percentiles() {
        let mut b = run();
        b.series[0].requests = 100;
        b.series[0].p99_ms = 7.0;
        b.total.responses = 400;
        let m = RunFile::merge(&[run(), b]).unwrap();
        assert_eq!(m.total.responses, 1400);
        assert_eq!(m.series[0].requests, 400);
        // Without histograms the merged p99 can only be the larger one.
        assert_eq!(m.series[0].p99_ms, 7.0);
        assert_eq!(m.total.latency.len(), 2000);
    }

    #[test]
    fn merging_version_2_runs_gives_exact_per_second_percentiles() {
        // Run a: second 0 answers 1..=99 ms once each; run b: 100 answers of 500 ms.
        let second = |values: &[u64]| {
            let mut s = Snapshot {
                end: 1.0,
                ..Default::default()
            };
            for v in values {
                s.latency.record(v * 1000).unwrap();
                s.responses += 1;
                *s.status.entry(200).or_default() += 1;
            }
            s
        };
        let mut a = run();
        a.intervals = vec![second(&(1..=99).collect::<Vec<_>>())];
        let mut b = run();
        b.intervals = vec![second(&[500; 100]), second(&[3])];
        let m = RunFile::merge(&[a, b]).unwrap();
        assert_eq!(m.intervals.len(), 2);
        assert_eq!(m.series[0].requests, 199);
        // 199 samples: the median (rank 100) is the first 500 ms answer, as is the p99; the
        // larger-of-two rule would have said 500 for both too, so check p50 of a lone run's
        // half: rank 50 of 199 is 50 ms.
        assert_eq!(m.series[0].p50_ms.round(), 500.0);
        let p25 = m.intervals[0].quantile_ms(0.25);
        assert!((p25 - 50.0).abs() < 0.1, "{p25}");
        assert_eq!(m.series[1].requests, 1);
        // A version 2 file read back gets its series from its intervals.
        let text = serde_json::to_string(&m).unwrap();
        let back = RunFile::from_json("m", &text).unwrap();
        assert_eq!(back.series, m.series);
    }
}
