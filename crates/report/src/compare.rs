//! Two runs side by side: the figures that decide whether a change helped (requests, rates,
//! failures, corrected latency percentiles, bytes), each with its relative change from the
//! first run to the second; as a text table in [`crate::table::boxed`]'s style, or as an HTML
//! page with both runs' series overlaid, counted in seconds from each run's start.

use crate::format::{bytes, count, ms, trim};
use crate::html::{self, color, Chart, Line, Page};
use crate::point::Point;
use crate::table::{boxed, per_second, sample_stats};
use crate::RunFile;
use hist::quantile_ms;

/// The compared figures of one run.
struct Figures {
    requests: u64,
    mean_rps: f64,
    failed: u64,
    error_pct: f64,
    latency: [f64; 5],
    bytes_per_s: f64,
}

impl Figures {
    fn of(run: &RunFile) -> Figures {
        let t = &run.total;
        let (reqs, byts) = per_second(run);
        let completed = t.completed();
        let h = &t.latency;
        Figures {
            requests: t.responses,
            mean_rps: sample_stats(&reqs).1,
            failed: t.failed(),
            error_pct: if completed > 0 {
                100.0 * t.failed() as f64 / completed as f64
            } else {
                0.0
            },
            latency: [
                quantile_ms(h, 0.5),
                quantile_ms(h, 0.9),
                quantile_ms(h, 0.99),
                quantile_ms(h, 0.999),
                h.max() as f64 / 1000.0,
            ],
            bytes_per_s: sample_stats(&byts).1,
        }
    }
}

/// The relative change from `a` to `b`: `+12.3%`, `-4.0%`, `0%`; `n/a` from zero.
pub fn change(a: f64, b: f64) -> String {
    if a == b {
        "0%".into()
    } else if a == 0.0 {
        "n/a".into()
    } else {
        format!("{:+.1}%", (b - a) / a * 100.0)
    }
}

/// The figures of runs `a` and `b` (columns headed by `names`) with the change of each.
pub fn table(a: &RunFile, b: &RunFile, names: [&str; 2]) -> String {
    let (fa, fb) = (Figures::of(a), Figures::of(b));
    let mut rows = vec![vec![
        "Stat".to_string(),
        names[0].to_string(),
        names[1].to_string(),
        "Change".to_string(),
    ]];
    let mut row = |name: &str, x: f64, y: f64, show: &dyn Fn(f64) -> String| {
        rows.push(vec![name.to_string(), show(x), show(y), change(x, y)]);
    };
    row("Requests", fa.requests as f64, fb.requests as f64, &|v| {
        count(v as u64)
    });
    row("Mean req/s", fa.mean_rps, fb.mean_rps, &|v| trim(v, 2));
    row("Failed", fa.failed as f64, fb.failed as f64, &|v| {
        count(v as u64)
    });
    row("Error %", fa.error_pct, fb.error_pct, &|v| {
        format!("{}%", trim(v, 3))
    });
    let pcts = ["p50", "p90", "p99", "p99.9", "max"];
    for (i, n) in pcts.iter().enumerate() {
        row(&format!("Latency {n}"), fa.latency[i], fb.latency[i], &ms);
    }
    row("Bytes/s", fa.bytes_per_s, fb.bytes_per_s, &|v| {
        bytes(v) + "/s"
    });
    let mut out = boxed(&rows);
    if !(a.total.names.is_empty() && b.total.names.is_empty()) {
        out += "\nBy name (slowest p99 in the second run first):\n";
        out += &by_name(a, b, names);
    }
    out
}

/// Named requests side by side: each name's p50, p99 (with its change) and failures in both
/// runs; a name only one run has shows `–` for the other.
fn by_name(a: &RunFile, b: &RunFile, names: [&str; 2]) -> String {
    let mut keys: Vec<&String> = a.total.names.keys().chain(b.total.names.keys()).collect();
    keys.sort();
    keys.dedup();
    let q = |run: &RunFile, k: &str, p: f64| run.total.names.get(k).map(|s| s.quantile_ms(p));
    keys.sort_by(|x, y| {
        let (px, py) = (q(b, x, 0.99).unwrap_or(-1.0), q(b, y, 0.99).unwrap_or(-1.0));
        py.total_cmp(&px).then(x.cmp(y))
    });
    let show = |v: Option<f64>| v.map_or("–".to_string(), ms);
    let failed = |run: &RunFile, k: &str| {
        run.total
            .names
            .get(k)
            .map_or("–".to_string(), |s| count(s.failed()))
    };
    let mut rows = vec![vec![
        "Name".to_string(),
        format!("p50 {}", names[0]),
        format!("p50 {}", names[1]),
        format!("p99 {}", names[0]),
        format!("p99 {}", names[1]),
        "p99 change".to_string(),
        format!("Failed {}", names[0]),
        format!("Failed {}", names[1]),
    ]];
    for k in keys {
        let (pa, pb) = (q(a, k, 0.99), q(b, k, 0.99));
        rows.push(vec![
            k.clone(),
            show(q(a, k, 0.5)),
            show(q(b, k, 0.5)),
            show(pa),
            show(pb),
            match (pa, pb) {
                (Some(x), Some(y)) => change(x, y),
                _ => "–".into(),
            },
            failed(a, k),
            failed(b, k),
        ]);
    }
    boxed(&rows)
}

/// One second of a run for the overlaid charts.
struct Second {
    /// Seconds since the run's start.
    at: usize,
    /// Answers/s.
    rate: f64,
    /// Corrected p50 and p99, ms; `None` when nothing was answered.
    p50: Option<f64>,
    p99: Option<f64>,
}

/// Every second of a run counted from its start (version 1 files too).
fn overlay(run: &RunFile) -> Vec<Second> {
    let some = |n: u64, v: f64| (n > 0 && v > 0.0).then_some(v);
    let per_s = |n: u64, s: f64| n as f64 / if s > 0.0 { s } else { 1.0 };
    if !run.has_intervals() {
        return run
            .series
            .iter()
            .map(|s| Second {
                at: s.second as usize,
                rate: per_s(s.requests, s.seconds),
                p50: some(s.requests, s.p50_ms),
                p99: some(s.requests, s.p99_ms),
            })
            .collect();
    }
    let points = Point::all(run);
    let first = points.first().map_or(0, |p| p.t);
    points
        .iter()
        .map(|p| Second {
            at: (p.t - first) as usize,
            rate: per_s(p.second.responses, p.seconds),
            p50: some(p.second.responses, p.second.latency.p50),
            p99: some(p.second.responses, p.second.latency.p99),
        })
        .collect()
}

/// Both runs on one page: headers, overlaid charts and [`table`].
pub fn html(a: &RunFile, b: &RunFile, names: [&str; 2]) -> String {
    let (oa, ob) = (overlay(a), overlay(b));
    let len = oa.iter().chain(&ob).map(|o| o.at + 1).max().unwrap_or(0);
    let column = |o: &[Second], f: fn(&Second) -> Option<f64>| {
        let mut v = vec![None; len];
        for s in o {
            v[s.at] = f(s).map(|v| (v * 1000.0).round() / 1000.0);
        }
        v
    };
    let x: Vec<f64> = (0..len).map(|i| i as f64).collect();
    let [(a_light, a_dark), (b_light, b_dark)] = color::COMPARE;
    let qps = Chart {
        title: "Answers per second".into(),
        unit: "req/s",
        log: false,
        spectrum: false,
        x: x.clone(),
        series: vec![
            Line::new(names[0], a_dark, column(&oa, |s| Some(s.rate))),
            Line::new(names[1], b_dark, column(&ob, |s| Some(s.rate))).dashed(),
        ],
    };
    let latency = Chart {
        title: "Latency (corrected)".into(),
        unit: "ms",
        log: true,
        spectrum: false,
        x,
        series: vec![
            Line::new(format!("{} p50", names[0]), a_light, column(&oa, |s| s.p50)),
            Line::new(format!("{} p99", names[0]), a_dark, column(&oa, |s| s.p99)),
            Line::new(format!("{} p50", names[1]), b_light, column(&ob, |s| s.p50)).dashed(),
            Line::new(format!("{} p99", names[1]), b_dark, column(&ob, |s| s.p99)).dashed(),
        ],
    };
    let spectrum = html::spectrum_chart(&[
        (names[0], &a.total.latency, a_dark),
        (names[1], &b.total.latency, b_dark),
    ]);
    let page = Page {
        time: false,
        events: Vec::new(),
        charts: vec![qps, latency, spectrum],
    };
    let (fa, fb) = (html::run_facts(a), html::run_facts(b));
    let mut body =
        String::from("<header><h1>scaletest comparison</h1><table class=\"compare-runs\">");
    body += &format!(
        "<tr><th></th><th>{}</th><th>{}</th></tr>",
        html::esc(names[0]),
        html::esc(names[1])
    );
    // Rows by name: one run may have a fact the other lacks (bots, for an aggregator's run).
    let mut keys: Vec<&str> = fa.iter().map(|(k, _)| *k).collect();
    keys.extend(
        fb.iter()
            .map(|(k, _)| *k)
            .filter(|k| !fa.iter().any(|(a, _)| a == k)),
    );
    let fact = |facts: &[(&str, String)], key: &str| {
        facts
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("–".to_string(), |(_, v)| html::esc(v))
    };
    for k in keys {
        body += &format!(
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            html::esc(k),
            fact(&fa, k),
            fact(&fb, k)
        );
    }
    body += "</table></header><main><div class=\"charts\" id=\"charts\"></div>";
    body += "<h2>Figures</h2><pre class=\"tables\">";
    body += &html::esc(&table(a, b, names));
    body += "</pre></main>";
    html::document(
        &format!("scaletest: {} vs {}", names[0], names[1]),
        &body,
        &page,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example;

    #[test]
    fn change_is_relative_to_the_first_run() {
        assert_eq!(change(100.0, 112.3), "+12.3%");
        assert_eq!(change(200.0, 150.0), "-25.0%");
        assert_eq!(change(3.0, 3.0), "0%");
        assert_eq!(change(0.0, 0.0), "0%");
        assert_eq!(change(0.0, 5.0), "n/a");
    }

    #[test]
    fn the_table_puts_both_runs_side_by_side_with_the_change() {
        let a = example::rolling_update(20);
        let b = example::rolling_update(40);
        let t = table(&a, &b, ["a.json", "b.json"]);
        let line = |name: &str| {
            t.lines()
                .find(|l| l.starts_with(&format!("│ {name} ")))
                .unwrap_or_else(|| panic!("no {name} in\n{t}"))
                .split('│')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
        };
        assert_eq!(line("Stat"), ["Stat", "a.json", "b.json", "Change"]);
        let (ra, rb) = (a.total.responses, b.total.responses);
        assert_eq!(
            line("Requests"),
            [
                "Requests".to_string(),
                count(ra),
                count(rb),
                change(ra as f64, rb as f64)
            ]
        );
        for name in [
            "Mean req/s",
            "Failed",
            "Error %",
            "Latency p50",
            "Latency p90",
            "Latency p99",
            "Latency p99.9",
            "Latency max",
            "Bytes/s",
        ] {
            assert_eq!(line(name).len(), 4, "{name}");
        }
        // Same box style as the report's tables.
        assert!(t.starts_with('┌') && t.trim_end().ends_with('┘'));
        // Half the seconds at 2000/s, half at 3000/s, less 2 to 4 unanswered sends a second.
        assert_eq!(line("Mean req/s")[1], "2497.05");
    }

    #[test]
    fn named_requests_are_compared_name_by_name() {
        let a = example::rolling_update(20);
        let mut b = example::rolling_update(20);
        assert!(
            !table(&a, &b, ["a", "b"]).contains("By name"),
            "no names, no rows"
        );
        let mut slow = hist::Snapshot::default();
        for _ in 0..10 {
            slow.latency.record(20_000).unwrap();
            slow.responses += 1;
        }
        let mut fast = slow.clone();
        fast.latency = hist::new_histogram();
        fast.latency.record(1_000).unwrap();
        b.total.names.insert("slow".into(), slow.clone());
        b.total.names.insert("fast".into(), fast.clone());
        let mut faster = fast.clone();
        faster.latency = hist::new_histogram();
        faster.latency.record(500).unwrap();
        let mut a = a;
        a.total.names.insert("fast".into(), faster);
        let t = table(&a, &b, ["a", "b"]);
        let row = |name: &str| {
            t.lines()
                .position(|l| l.starts_with(&format!("│ {name} ")))
                .unwrap_or_else(|| panic!("no {name} in\n{t}"))
        };
        assert!(row("slow") < row("fast"), "{t}");
        let fast_row = t.lines().nth(row("fast")).unwrap();
        assert!(fast_row.contains("+100.0%"), "{fast_row}");
        let slow_row = t.lines().nth(row("slow")).unwrap();
        assert!(
            slow_row.contains('–'),
            "only the second run has it: {slow_row}"
        );
    }

    #[test]
    fn the_page_overlays_both_runs_from_their_start() {
        let a = example::rolling_update(20);
        let mut b = example::rolling_update(30);
        b.version = 1;
        b.intervals.clear();
        b.fleet = None;
        let page = html(&a, &b, ["<a>", "b.json"]);
        assert!(page.contains("&lt;a&gt;") && !page.contains("<a>"));
        assert!(page.contains("│ Latency p99.9 │"));
        // Facts line up by name although only the first run has bots.
        let answers = |r: &RunFile| {
            format!(
                "{}, {} failed",
                count(r.total.responses),
                count(r.total.failed())
            )
        };
        assert!(page.contains(&format!(
            "<tr><th>Answers</th><td>{}</td><td>{}</td></tr>",
            answers(&a),
            answers(&b)
        )));
        assert!(page.contains("<tr><th>Bots</th><td>4</td><td>–</td></tr>"));
        let open = "<script type=\"application/json\" id=\"data\">";
        let start = page.find(open).unwrap() + open.len();
        let end = start + page[start..].find("</script>").unwrap();
        let d: serde_json::Value = serde_json::from_str(&page[start..end]).unwrap();
        let qps = &d["charts"][0];
        assert_eq!(qps["x"].as_array().unwrap().len(), 30);
        assert_eq!(qps["x"][0], 0.0);
        // The shorter run ends early; the longer fills the axis.
        assert!(qps["series"][0]["values"][25].is_null());
        assert!(qps["series"][1]["values"][25].as_f64().unwrap() > 0.0);
        assert_eq!(d["charts"].as_array().unwrap().len(), 3);
    }
}
