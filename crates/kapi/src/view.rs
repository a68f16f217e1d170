//! Control-plane runs (`api`, `nodes`) as `report --html` pages and `report --compare`
//! tables: the same pieces for both kinds, from a [`View`] of the run — its calls, their
//! seconds ([`crate::series`]), the server's scrapes ([`ServerSide::intervals`]) and the
//! run's own latencies (pod startup, start lateness). Pages use `report::html`'s layout and
//! charts (calls/s by call, client p99 per second beside the server's per scrape, APF queue
//! waits, failures, the run's own latencies, percentile spectra).

use crate::series::{Second, Tally};
use crate::server_metrics::{self, call_text, ServerSide};
use crate::stats::{call_key, CallStats};
use hdrhistogram::Histogram;
use report::compare::change;
use report::format::{count, ms, trim};
use report::html::{color, spectrum_chart, Chart, Line};
use report::table::boxed;
use std::collections::{BTreeMap, BTreeSet};

/// Most lines a chart of calls draws (the busiest calls); a run of hollow nodes makes a dozen.
const MAX_LINES: usize = 16;

/// What a page or a comparison shows of one control-plane run.
pub struct View<'a> {
    /// What ran, in a line (the report's first).
    pub heading: String,
    /// Setup and outcome, for the page's header.
    pub facts: Vec<(&'static str, String)>,
    /// Calls by verb and resource, whole run.
    pub calls: &'a [CallStats],
    /// Their seconds (and those of `latency_seconds`)...
    pub seconds: &'a [Second],
    /// ...up to this second from the start, though the run went on (a run's
    /// [`crate::series::MAX_SECONDS`]; merged runs, where the first of them stopped).
    pub seconds_cut: Option<u64>,
    /// The server's view.
    pub server: Option<&'a ServerSide>,
    /// Start, Unix seconds (the server's scrapes are placed from it).
    pub started_unix: f64,
    /// Wall time, s.
    pub elapsed_s: f64,
    /// The run's own latencies beside the calls' (`pod_startup`, start lateness), whole run.
    pub latencies: Vec<(&'static str, &'a Histogram<u64>)>,
    /// Per-second records of those, where kept.
    pub latency_seconds: Vec<(&'static str, &'a [Second])>,
    /// Counts worth comparing (`Pods running`, `Lifecycles completed`).
    pub counts: Vec<(&'static str, u64)>,
    /// The text report.
    pub text: String,
}

/// The facts every control-plane page opens with: when, how long, how many calls, and
/// whether the per-second records stop before the end (`seconds_cut`).
pub fn run_facts(
    started_unix: f64,
    elapsed_s: f64,
    interrupted: bool,
    calls: &[CallStats],
    seconds_cut: Option<u64>,
) -> Vec<(&'static str, String)> {
    let (n, failed) = calls
        .iter()
        .fold((0, 0), |(n, e), c| (n + c.total(), e + c.errors()));
    let mut facts = vec![
        ("Started", report::format::utc(started_unix)),
        (
            "Duration",
            format!(
                "{} s{}",
                trim(elapsed_s, 2),
                if interrupted { ", interrupted" } else { "" }
            ),
        ),
        (
            "Calls",
            format!(
                "{} ({}/s), {} failed",
                count(n),
                trim(n as f64 / elapsed_s.max(1e-9), 1),
                count(failed)
            ),
        ),
    ];
    if let Some(cut) = seconds_cut {
        facts.push(("Per second", cut_note(cut)));
    }
    facts
}

/// What a page says of per-second records that stop at `cut`.
fn cut_note(cut: u64) -> String {
    format!(
        "kept for the first {} s only (charts end there; the totals cover the whole run)",
        count(cut)
    )
}

/// `lines` of `v`'s own seconds without values past its cut: no second was kept there, and
/// drawing them as seconds without calls would show the run as idle.
fn cut_off(v: &View, mut lines: Vec<Line>) -> Vec<Line> {
    if let Some(cut) = v.seconds_cut {
        for l in &mut lines {
            l.values
                .iter_mut()
                .skip(cut as usize)
                .for_each(|x| *x = None);
        }
    }
    lines
}

fn x_axis(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64).collect()
}

/// Keys of `seconds`, busiest first (at most [`MAX_LINES`]).
fn busiest(seconds: &[Second]) -> Vec<String> {
    let mut n: BTreeMap<&str, u64> = BTreeMap::new();
    for s in seconds {
        for (k, t) in &s.0 {
            let e = n.entry(k).or_default();
            *e = e.saturating_add(t.n);
        }
    }
    let mut keys: Vec<(&str, u64)> = n.into_iter().collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    keys.into_iter()
        .take(MAX_LINES)
        .map(|(k, _)| k.to_string())
        .collect()
}

fn per_key(
    seconds: &[Second],
    keys: &[String],
    dashed: bool,
    f: impl Fn(Option<&Tally>) -> Option<f64>,
) -> Vec<Line> {
    keys.iter()
        .zip(color::CYCLE.iter().cycle())
        .map(|(k, c)| {
            let v = seconds.iter().map(|s| f(s.0.get(k))).collect();
            let l = Line::new(k.clone(), c, v);
            if dashed {
                l.dashed()
            } else {
                l
            }
        })
        .collect()
}

/// Every key of a second merged: calls, failed, latency.
fn whole(s: &Second) -> Tally {
    let mut out = Tally::default();
    let mut h = hist::new_histogram();
    for t in s.0.values() {
        out.n = out.n.saturating_add(t.n);
        out.failed = out.failed.saturating_add(t.failed);
        let _ = t.latency.add_into(&mut h);
    }
    out.latency = hist::sparse::Buckets::of(&h);
    out
}

/// The second (since `started_unix`) an interval ending at `end_unix` is drawn in: the one
/// its end falls in; None past `len`.
fn slot(end_unix: f64, started_unix: f64, len: usize) -> Option<usize> {
    let at = (end_unix - started_unix).floor();
    (at >= 0.0 && at < len as f64).then_some(at as usize)
}

/// The server's p99 per call and scrape, on the client's x axis (whole seconds since the
/// start): one value at each scrape's end, joined; of two scrapes ending in one second, the
/// one with more requests. The busiest calls; long-running verbs (watches) left out: they
/// last as long as they are open, as in the SLO.
fn server_p99(sv: &ServerSide, started_unix: f64, len: usize) -> Vec<Line> {
    let mut n: BTreeMap<&String, u64> = BTreeMap::new();
    for (k, c) in sv.intervals.iter().flat_map(|i| i.calls.iter()) {
        if c.p99_s.is_some() && !server_metrics::long_running(k) {
            let e = n.entry(k).or_default();
            *e = e.saturating_add(c.count);
        }
    }
    let mut keys: Vec<(&String, u64)> = n.into_iter().collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    keys.into_iter()
        .take(MAX_LINES)
        .zip(color::CYCLE.iter().rev().cycle())
        .map(|((k, _), c)| {
            let mut v: Vec<Option<(u64, f64)>> = vec![None; len];
            for i in &sv.intervals {
                let (Some(at), Some(call)) = (slot(i.end_unix, started_unix, len), i.calls.get(k))
                else {
                    continue;
                };
                if let Some(p) = call.p99_s {
                    if v[at].is_none_or(|(n, _)| call.count > n) {
                        v[at] = Some((call.count, p * 1000.0));
                    }
                }
            }
            let v = v.into_iter().map(|x| x.map(|(_, p)| p)).collect();
            Line::new(format!("server: {k}"), c, v).dashed().joined()
        })
        .collect()
}

/// The x axis long enough for the client's seconds and the server's last scrape (at most an
/// hour past the client's: a damaged file must not size the page).
fn span(v: &View) -> usize {
    let server = v.server.and_then(|s| s.intervals.last()).map_or(0, |i| {
        let end = (i.end_unix - v.started_unix).floor();
        let most = (v.seconds.len() + 3_600) as f64;
        if end >= 0.0 {
            end.min(most) as usize + 1
        } else {
            0
        }
    });
    v.seconds.len().max(server).max(
        v.latency_seconds
            .iter()
            .map(|(_, s)| s.len())
            .max()
            .unwrap_or(0),
    )
}

/// The charts of one run.
pub fn charts(v: &View) -> Vec<Chart> {
    let len = span(v);
    let x = x_axis(len);
    let mut seconds = v.seconds.to_vec();
    seconds.resize(len, Second::default());
    let cut = |lines| cut_off(v, lines);
    let keys = busiest(&seconds);
    let mut charts = Vec::new();
    let server = v
        .server
        .map_or_else(Vec::new, |sv| server_p99(sv, v.started_unix, len));
    if !keys.is_empty() || !server.is_empty() {
        let rate = cut(per_key(&seconds, &keys, false, |t| {
            Some(t.map_or(0.0, |t| t.n as f64))
        }));
        charts.push(Chart::over_time(
            "API calls per second",
            "calls/s",
            false,
            x.clone(),
            rate,
        ));
        let mut p99 = cut(per_key(&seconds, &keys, false, |t| t?.quantile_ms(0.99)));
        let title = if !server.is_empty() {
            "Latency p99 by call: client each second, server each scrape (dashed)"
        } else {
            "Latency p99 by call (client)"
        };
        p99.extend(server);
        charts.push(Chart::over_time(title, "ms", true, x.clone(), p99));
        let all: Vec<Tally> = seconds.iter().map(whole).collect();
        let mut failed = vec![Line::new(
            "failed",
            color::FAILED,
            all.iter().map(|t| Some(t.failed as f64)).collect(),
        )];
        let failing: Vec<String> = keys
            .iter()
            .filter(|k| {
                seconds
                    .iter()
                    .any(|s| s.0.get(*k).is_some_and(|t| t.failed > 0))
            })
            .cloned()
            .collect();
        failed.extend(per_key(&seconds, &failing, true, |t| {
            Some(t.map_or(0.0, |t| t.failed as f64))
        }));
        charts.push(Chart::over_time(
            "Failed calls per second",
            "calls/s",
            false,
            x.clone(),
            cut(failed),
        ));
    }
    if let Some(sv) = v.server {
        charts.extend(apf_charts(sv, v.started_unix, &x));
    }
    for (name, s) in &v.latency_seconds {
        let mut s = s.to_vec();
        s.resize(len, Second::default());
        let at = |q: f64| {
            s.iter()
                .map(|s| s.0.get(*name).and_then(|t| t.quantile_ms(q)))
                .collect()
        };
        // Seconds with nothing measured are gaps the line crosses.
        let lines = vec![
            Line::new("p50", color::P50, at(0.5)).joined(),
            Line::new("p99", color::P99, at(0.99)).joined(),
        ];
        charts.push(Chart::over_time(
            format!("{name} (by the second measured)"),
            "ms",
            true,
            x.clone(),
            cut(lines),
        ));
    }
    let mut spectra: Vec<(String, &Histogram<u64>)> = v
        .calls
        .iter()
        .filter(|c| !c.latency.is_empty())
        .map(|c| (call_key(c.verb, &c.resource), &c.latency))
        .collect();
    spectra.sort_by_key(|(_, h)| std::cmp::Reverse(h.len()));
    spectra.truncate(MAX_LINES);
    spectra.extend(
        v.latencies
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(n, h)| (n.to_string(), *h)),
    );
    if !spectra.is_empty() {
        let list: Vec<(&str, &Histogram<u64>, &'static str)> = spectra
            .iter()
            .zip(color::CYCLE.iter().cycle())
            .map(|((n, h), c)| (n.as_str(), *h, *c))
            .collect();
        charts.push(spectrum_chart(&list));
    }
    charts
}

/// APF queue-wait p99 and rejections by priority level, per scrape (when any was seen).
fn apf_charts(sv: &ServerSide, started_unix: f64, x: &[f64]) -> Vec<Chart> {
    let levels: BTreeSet<&String> = sv.intervals.iter().flat_map(|i| i.apf.keys()).collect();
    if levels.is_empty() {
        return Vec::new();
    }
    let line = |f: &dyn Fn(&crate::server_metrics::IntervalApf, f64) -> Option<f64>| {
        levels
            .iter()
            .zip(color::CYCLE.iter().cycle())
            .map(|(pl, c)| {
                let mut v = vec![None; x.len()];
                for i in &sv.intervals {
                    let at = slot(i.end_unix, started_unix, x.len());
                    if let (Some(at), Some(a)) = (at, i.apf.get(*pl)) {
                        v[at] = f(a, i.seconds);
                    }
                }
                Line::new(pl.to_string(), c, v).joined()
            })
            .collect::<Vec<_>>()
    };
    let mut out = vec![Chart::over_time(
        "API Priority and Fairness: queue wait p99 by priority level (each scrape)",
        "ms",
        false,
        x.to_vec(),
        line(&|a, _| Some(a.wait_p99_s.unwrap_or(0.0) * 1000.0)),
    )];
    if sv
        .intervals
        .iter()
        .any(|i| i.apf.values().any(|a| a.rejected > 0))
    {
        out.push(Chart::over_time(
            "API Priority and Fairness: rejections (429) per second",
            "req/s",
            false,
            x.to_vec(),
            line(&|a, secs| Some(a.rejected as f64 / secs.max(1e-9))),
        ));
    }
    out
}

/// The whole page.
pub fn html(v: &View) -> String {
    report::html::page(&v.heading, &v.facts, charts(v), &v.text)
}

fn total_calls(v: &View) -> (u64, u64) {
    v.calls
        .iter()
        .fold((0, 0), |(n, e), c| (n + c.total(), e + c.errors()))
}

/// Two runs side by side, with the change from the first to the second: totals and the
/// run's own counts and latencies, then each call's client latency, then each call as the
/// server timed it.
pub fn compare(a: &View, b: &View, names: [&str; 2]) -> String {
    let mut rows = vec![vec![
        "Stat".to_string(),
        names[0].to_string(),
        names[1].to_string(),
        "Change".to_string(),
    ]];
    let mut row = |name: &str, x: f64, y: f64, show: &dyn Fn(f64) -> String| {
        rows.push(vec![name.to_string(), show(x), show(y), change(x, y)]);
    };
    let ((ca, ea), (cb, eb)) = (total_calls(a), total_calls(b));
    let whole = |n: f64| count(n as u64);
    row("API calls", ca as f64, cb as f64, &whole);
    let rate = |n: u64, s: f64| n as f64 / s.max(1e-9);
    row(
        "Calls/s",
        rate(ca, a.elapsed_s),
        rate(cb, b.elapsed_s),
        &|v| trim(v, 1),
    );
    row("Failed calls", ea as f64, eb as f64, &whole);
    let counts: BTreeSet<&str> = a.counts.iter().chain(&b.counts).map(|(n, _)| *n).collect();
    for n in counts {
        let get = |v: &View| {
            v.counts
                .iter()
                .find(|(k, _)| *k == n)
                .map_or(0, |(_, c)| *c)
        };
        row(n, get(a) as f64, get(b) as f64, &whole);
    }
    let lats: BTreeSet<&str> = a
        .latencies
        .iter()
        .chain(&b.latencies)
        .map(|(n, _)| *n)
        .collect();
    for n in lats {
        // A latency one run did not measure is "–" there, not 0 ms.
        let q = |v: &View, q: f64| {
            v.latencies
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, h)| hist::quantile_ms(h, q))
        };
        for (label, at) in [("p50", 0.5), ("p99", 0.99)] {
            let (x, y) = (q(a, at), q(b, at));
            rows.push(vec![
                format!("{n} {label}"),
                show(x),
                show(y),
                changed(x, y),
            ]);
        }
    }
    let mut out = boxed(&rows);
    out += "\nCalls, client side (latency of answered calls):\n";
    out += &client_calls(a, b, names);
    match (a.server, b.server) {
        (Some(x), Some(y)) if x.has_metrics() || y.has_metrics() => {
            out += "\nCalls, server side (apiserver_request_duration_seconds):\n";
            out += &server_calls(x, y, names);
        }
        _ => out += "\nNo server metrics in one run or both: no server-side comparison.\n",
    }
    let version = |v: &View| {
        v.server
            .and_then(|s| s.version.clone())
            .unwrap_or_else(|| "unknown".into())
    };
    out += &format!(
        "Server versions: {} {}, {} {}\n",
        names[0],
        version(a),
        names[1],
        version(b)
    );
    out
}

fn show(v: Option<f64>) -> String {
    v.map_or("–".to_string(), ms)
}

fn changed(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(x), Some(y)) => change(x, y),
        _ => "–".into(),
    }
}

fn client_calls(a: &View, b: &View, names: [&str; 2]) -> String {
    let find = |v: &View, k: &str| {
        v.calls
            .iter()
            .find(|c| call_key(c.verb, &c.resource) == k)
            .map(|c| (c.clone(), c.total()))
    };
    let keys: BTreeSet<String> = a
        .calls
        .iter()
        .chain(b.calls)
        .map(|c| call_key(c.verb, &c.resource))
        .collect();
    let mut rows = vec![vec![
        "Call".to_string(),
        format!("p50 {}", names[0]),
        format!("p50 {}", names[1]),
        format!("p99 {}", names[0]),
        format!("p99 {}", names[1]),
        "p99 change".into(),
        format!("Calls {}", names[0]),
        format!("Calls {}", names[1]),
        format!("Failed {}", names[0]),
        format!("Failed {}", names[1]),
    ]];
    for k in keys {
        let (x, y) = (find(a, &k), find(b, &k));
        let q = |c: &Option<(CallStats, u64)>, q: f64| {
            c.as_ref()
                .filter(|(c, _)| !c.latency.is_empty())
                .map(|(c, _)| hist::quantile_ms(&c.latency, q))
        };
        let n = |c: &Option<(CallStats, u64)>| c.as_ref().map_or("–".into(), |(_, n)| count(*n));
        let f = |c: &Option<(CallStats, u64)>| {
            c.as_ref().map_or("–".into(), |(c, _)| count(c.errors()))
        };
        rows.push(vec![
            k,
            show(q(&x, 0.5)),
            show(q(&y, 0.5)),
            show(q(&x, 0.99)),
            show(q(&y, 0.99)),
            changed(q(&x, 0.99), q(&y, 0.99)),
            n(&x),
            n(&y),
            f(&x),
            f(&y),
        ]);
    }
    boxed(&rows)
}

fn server_calls(a: &ServerSide, b: &ServerSide, names: [&str; 2]) -> String {
    let rows_of = |s: &ServerSide| -> BTreeMap<String, (Option<f64>, u64)> {
        s.calls
            .iter()
            .map(|c| {
                let k = call_text(&c.verb, &c.resource, &c.subresource, &c.scope);
                (k, (c.p99_s.map(|p| p * 1000.0), c.count))
            })
            .collect()
    };
    let (x, y) = (rows_of(a), rows_of(b));
    let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
    let mut rows = vec![vec![
        "Call (server)".to_string(),
        format!("p99 {}", names[0]),
        format!("p99 {}", names[1]),
        "p99 change".into(),
        format!("Calls {}", names[0]),
        format!("Calls {}", names[1]),
    ]];
    for k in keys {
        let (p, q) = (x.get(k), y.get(k));
        let p99 = |r: Option<&(Option<f64>, u64)>| r.and_then(|r| r.0);
        let n = |r: Option<&(Option<f64>, u64)>| r.map_or("–".into(), |r| count(r.1));
        rows.push(vec![
            k.clone(),
            show(p99(p)),
            show(p99(q)),
            changed(p99(p), p99(q)),
            n(p),
            n(q),
        ]);
    }
    boxed(&rows)
}

/// Two runs' charts overlaid, seconds from each one's start: calls/s, client p99 of all
/// calls, and each own latency's p99.
pub fn compare_charts(a: &View, b: &View, names: [&str; 2]) -> Vec<Chart> {
    let len = span(a).max(span(b));
    let x = x_axis(len);
    let mut calls = Vec::new();
    let mut p99 = Vec::new();
    for (v, (light, dark), name) in [
        (a, color::COMPARE[0], names[0]),
        (b, color::COMPARE[1], names[1]),
    ] {
        let mut all: Vec<Tally> = v.seconds.iter().map(whole).collect();
        all.resize(len, Tally::default());
        let line = Line::new(name, dark, all.iter().map(|t| Some(t.n as f64)).collect());
        calls.extend(cut_off(v, vec![line]));
        p99.push(Line::new(
            format!("{name} p99"),
            dark,
            all.iter().map(|t| t.quantile_ms(0.99)).collect(),
        ));
        p99.push(
            Line::new(
                format!("{name} p50"),
                light,
                all.iter().map(|t| t.quantile_ms(0.5)).collect(),
            )
            .dashed(),
        );
    }
    let mut charts = vec![
        Chart::over_time("API calls per second", "calls/s", false, x.clone(), calls),
        Chart::over_time("Latency of all calls (client)", "ms", true, x.clone(), p99),
    ];
    let own: BTreeSet<&str> = a
        .latency_seconds
        .iter()
        .chain(&b.latency_seconds)
        .map(|(n, _)| *n)
        .collect();
    for n in own {
        let mut lines = Vec::new();
        for (v, (_, dark), name) in [
            (a, color::COMPARE[0], names[0]),
            (b, color::COMPARE[1], names[1]),
        ] {
            let s = v
                .latency_seconds
                .iter()
                .find(|(k, _)| *k == n)
                .map_or(&[][..], |(_, s)| s);
            let mut vals: Vec<Option<f64>> = s
                .iter()
                .map(|s| s.0.get(n).and_then(|t| t.quantile_ms(0.99)))
                .collect();
            vals.resize(len, None);
            let line = Line::new(format!("{name} p99"), dark, vals);
            lines.extend(cut_off(v, vec![line]));
        }
        charts.push(Chart::over_time(
            format!("{n} p99"),
            "ms",
            true,
            x.clone(),
            lines,
        ));
    }
    charts
}

/// The comparison as a page: both headings, the table, the overlaid charts.
pub fn compare_html(a: &View, b: &View, names: [&str; 2]) -> String {
    let mut facts = vec![
        ("First", format!("{}: {}", names[0], a.heading)),
        ("Second", format!("{}: {}", names[1], b.heading)),
    ];
    for (v, name) in [(a, names[0]), (b, names[1])] {
        if let Some(cut) = v.seconds_cut {
            facts.push(("Per second", format!("{name}: {}", cut_note(cut))));
        }
    }
    report::html::page(
        "scaletest comparison",
        &facts,
        compare_charts(a, b, names),
        &compare(a, b, names),
    )
}
