//! The HTML report: one self-contained file (uPlot, styles, script and data inlined; nothing is
//! fetched) with the run's header, charts over time, event markers, the percentile spectrum and
//! the autocannon tables.
//!
//! Every number is computed here, from [`Point::all`] (or a version 1 file's `series`) and the
//! run's histograms; the page script (`assets/report.js`) only draws the `Page` it is given
//! as JSON. [`crate::compare`] builds its page from the same pieces.

use crate::assets::{CHARTS_JS, UPLOT_CSS, UPLOT_JS};
use crate::format::{count, trim, utc};
use crate::point::Point;
use crate::runfile::{Event, RunFile};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeSet;

const REPORT_JS: &str = include_str!("../assets/report.js");
const REPORT_CSS: &str = include_str!("../assets/report.css");

/// The furthest the spectrum goes: 99.9999%.
const SPECTRUM_DECADES: u32 = 6;
/// Points per decade of 1/(1-p) on the spectrum.
const SPECTRUM_STEPS: u32 = 20;

/// What the page script draws: charts sharing one x axis kind, and the events to mark on the
/// charts over time.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Page {
    /// The x axis of time charts is Unix time (an aggregator's run); otherwise seconds since
    /// the start.
    pub time: bool,
    /// Drawn as vertical markers on every time chart.
    pub events: Vec<Event>,
    pub charts: Vec<Chart>,
}

/// One chart: an x axis and lines over it (`None` leaves a gap).
#[derive(Debug, Serialize)]
pub struct Chart {
    /// Above the chart.
    pub title: String,
    /// Unit of the y axis.
    pub unit: &'static str,
    /// Logarithmic y axis.
    pub log: bool,
    /// A percentile spectrum: x is 1/(1-p) on a log axis rather than time.
    pub spectrum: bool,
    /// Seconds (since the start, or Unix), or a spectrum's 1/(1-p).
    pub x: Vec<f64>,
    /// The lines.
    pub series: Vec<Line>,
}

impl Chart {
    /// A chart over seconds since the start.
    pub fn over_time(
        title: impl Into<String>,
        unit: &'static str,
        log: bool,
        x: Vec<f64>,
        series: Vec<Line>,
    ) -> Chart {
        Chart {
            title: title.into(),
            unit,
            log,
            spectrum: false,
            x,
            series,
        }
    }
}

/// One line of a chart.
#[derive(Debug, Serialize)]
pub struct Line {
    /// In the legend.
    pub label: String,
    /// Stroke colour.
    pub color: &'static str,
    /// Dashed.
    pub dash: bool,
    /// Drawn across missing values (a series sampled more sparsely than the x axis).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub join: bool,
    /// One per x; `None` is no value.
    pub values: Vec<Option<f64>>,
}

impl Line {
    /// A solid line.
    pub fn new(label: impl Into<String>, color: &'static str, values: Vec<Option<f64>>) -> Line {
        Line {
            label: label.into(),
            color,
            dash: false,
            join: false,
            values,
        }
    }

    /// The same, dashed.
    pub fn dashed(mut self) -> Line {
        self.dash = true;
        self
    }

    /// The same, drawn across missing values.
    pub fn joined(mut self) -> Line {
        self.join = true;
        self
    }
}

/// Colours by meaning, the same on every page.
#[allow(missing_docs)]
pub mod color {
    pub const OFFERED: &str = "#8c8c8c";
    pub const SENT: &str = "#1f77b4";
    pub const OK: &str = "#2ca02c";
    pub const ANSWERS: &str = "#9467bd";
    pub const FAILED: &str = "#d62728";
    pub const P50: &str = "#2ca02c";
    pub const P90: &str = "#1f77b4";
    pub const P99: &str = "#ff7f0e";
    pub const P999: &str = "#d62728";
    pub const SERVICE: &str = "#7f7f7f";
    /// Two runs compared: (light, dark) for the first, then the second.
    pub const COMPARE: [(&str, &str); 2] = [("#6baed6", "#1f77b4"), ("#fdae6b", "#e6550d")];
    /// For lines whose number is not known in advance (error classes, versions).
    pub const CYCLE: [&str; 8] = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    ];
}

/// The whole report of one run as a self-contained HTML page.
pub fn render(run: &RunFile) -> String {
    let mut charts = time_charts(run);
    let mut spectra = vec![("corrected latency", &run.total.latency, color::P99)];
    if run.total.service != run.total.latency {
        spectra.push(("service time", &run.total.service, color::SERVICE));
    }
    charts.push(spectrum_chart(&spectra));
    let page = Page {
        time: is_wall_clock(run),
        events: run
            .fleet
            .as_ref()
            .map_or_else(Vec::new, |f| f.events.clone()),
        charts,
    };
    let mut tables = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = crate::table::write_report(run, true, &mut tables);
    let mut body = String::from("<header><h1>scaletest report</h1>");
    body += &facts_list(&run_facts(run));
    body += "</header><main><div class=\"charts\" id=\"charts\"></div>";
    body += &events_list(&page.events);
    body += "<h2>Tables</h2><pre class=\"tables\">";
    body += &esc(&String::from_utf8_lossy(&tables));
    body += "</pre></main>";
    document(&format!("scaletest: {}", run.info.url), &body, &page)
}

/// A page of any run: a heading, its facts, its charts over seconds since the start, and its
/// text report (as the terminal shows it).
pub fn page(heading: &str, facts: &[(&str, String)], charts: Vec<Chart>, tables: &str) -> String {
    let page = Page {
        time: false,
        events: Vec::new(),
        charts,
    };
    let mut body = format!("<header><h1>{}</h1>", esc(heading));
    body += &facts_list(facts);
    body += "</header><main><div class=\"charts\" id=\"charts\"></div>";
    body += "<h2>Tables</h2><pre class=\"tables\">";
    body += &esc(tables);
    body += "</pre></main>";
    document(&format!("scaletest: {heading}"), &body, &page)
}

/// The percentile spectrum of a µs histogram as HdrHistogram's plotter draws it: pairs of
/// (percentile p in 0..1, ms), evenly spaced in log(1/(1-p)) from p = 0 to the last whole
/// decade the number of samples supports (at most 99.9999%). Empty for an empty histogram.
pub fn spectrum_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    // With n samples, percentiles beyond 1 - 1/n only repeat the maximum.
    let decades = ((h.len() as f64).log10().floor() as u32).min(SPECTRUM_DECADES);
    (0..=decades * SPECTRUM_STEPS)
        .map(|i| {
            let x = 10f64.powf(f64::from(i) / f64::from(SPECTRUM_STEPS));
            let p = 1.0 - 1.0 / x;
            (p, h.value_at_quantile(p) as f64 / 1000.0)
        })
        .collect()
}

/// A spectrum chart of one or more histograms (label, histogram, colour).
pub fn spectrum_chart(hists: &[(&str, &Histogram<u64>, &'static str)]) -> Chart {
    let points: Vec<Vec<(f64, f64)>> = hists.iter().map(|(_, h, _)| spectrum_points(h)).collect();
    let longest = points.iter().map(Vec::len).max().unwrap_or(0);
    let x = (0..longest)
        .map(|i| round(10f64.powf(i as f64 / f64::from(SPECTRUM_STEPS)), 6))
        .collect();
    let series = hists
        .iter()
        .zip(&points)
        .map(|((label, _, c), pts)| {
            let mut values: Vec<Option<f64>> = pts.iter().map(|(_, ms)| positive(*ms)).collect();
            values.resize(longest, None);
            Line::new(*label, c, values)
        })
        .collect();
    Chart {
        title: "Latency by percentile (whole run)".into(),
        unit: "ms",
        log: true,
        spectrum: true,
        x,
        series,
    }
}

/// Whether a run's seconds are Unix seconds (an aggregator's run) rather than counted from 0.
pub(crate) fn is_wall_clock(run: &RunFile) -> bool {
    run.fleet.is_some() && run.has_intervals()
}

/// The charts over time: from the per-second histograms, or a version 1 file's summaries.
pub(crate) fn time_charts(run: &RunFile) -> Vec<Chart> {
    if !run.has_intervals() {
        return v1_charts(run);
    }
    let points = Point::all(run);
    let x: Vec<f64> = points.iter().map(|p| p.t as f64).collect();
    let chart = |title: &str, unit, log, series| Chart {
        title: title.into(),
        unit,
        log,
        spectrum: false,
        x: x.clone(),
        series,
    };
    let mut charts = vec![
        chart(
            "Requests per second",
            "req/s",
            false,
            qps_lines(run, &points),
        ),
        chart("Latency (corrected)", "ms", true, latency_lines(&points)),
        chart(
            "Failed requests per second",
            "req/s",
            false,
            failure_lines(&points),
        ),
    ];
    let versions = version_lines(&points);
    if !versions.is_empty() {
        charts.push(chart("Answers by server version", "%", false, versions));
    }
    if run.fleet.is_some() {
        let lines = vec![
            Line::new(
                "reported",
                color::OK,
                each(&points, |p| Some(f64::from(p.reported))),
            ),
            Line::new(
                "live",
                color::OFFERED,
                each(&points, |p| Some(f64::from(p.live))),
            )
            .dashed(),
        ];
        charts.push(chart("Bots: reported vs live", "bots", false, lines));
    }
    charts
}

fn each(points: &[Point], f: impl Fn(&Point) -> Option<f64>) -> Vec<Option<f64>> {
    points.iter().map(|p| f(p).map(|v| round(v, 3))).collect()
}

/// A count in one point as a per-second rate.
fn rate(n: u64, p: &Point) -> f64 {
    // A snapshot without a length (never expected) is taken as one second.
    let s = if p.seconds > 0.0 { p.seconds } else { 1.0 };
    n as f64 / s
}

/// `None` for values a log axis cannot draw.
fn positive(v: f64) -> Option<f64> {
    (v > 0.0).then_some(v)
}

fn round(v: f64, decimals: i32) -> f64 {
    let m = 10f64.powi(decimals);
    (v * m).round() / m
}

pub(crate) fn qps_lines(run: &RunFile, points: &[Point]) -> Vec<Line> {
    let mut lines = Vec::new();
    if points.iter().any(|p| p.offered > 0.0) {
        lines
            .push(Line::new("offered", color::OFFERED, each(points, |p| Some(p.offered))).dashed());
    } else if run.info.mode == "open" && points.iter().any(|p| p.second.intended > 0) {
        let v = each(points, |p| Some(rate(p.second.intended, p)));
        lines.push(Line::new("intended", color::OFFERED, v).dashed());
    }
    if points.iter().any(|p| p.second.sent > 0) {
        lines.push(Line::new(
            "sent",
            color::SENT,
            each(points, |p| Some(rate(p.second.sent, p))),
        ));
    }
    lines.push(Line::new(
        "ok",
        color::OK,
        each(points, |p| Some(rate(p.ok, p))),
    ));
    lines.push(
        Line::new(
            "all answers",
            color::ANSWERS,
            each(points, |p| Some(rate(p.second.responses, p))),
        )
        .dashed(),
    );
    lines
}

pub(crate) fn latency_lines(points: &[Point]) -> Vec<Line> {
    let answered = |p: &Point, v: f64| {
        if p.second.responses > 0 {
            positive(v)
        } else {
            None
        }
    };
    let mut lines = vec![
        Line::new(
            "p50",
            color::P50,
            each(points, |p| answered(p, p.second.latency.p50)),
        ),
        Line::new(
            "p90",
            color::P90,
            each(points, |p| answered(p, p.second.latency.p90)),
        ),
        Line::new(
            "p99",
            color::P99,
            each(points, |p| answered(p, p.second.latency.p99)),
        ),
        Line::new(
            "p99.9",
            color::P999,
            each(points, |p| answered(p, p.second.latency.p999)),
        ),
    ];
    // Open loop: the service time shows how much of the latency was waiting to be sent.
    if points
        .iter()
        .any(|p| p.second.service.p99 != p.second.latency.p99)
    {
        let v = each(points, |p| answered(p, p.second.service.p99));
        lines.push(Line::new("service p99", color::SERVICE, v).dashed());
    }
    lines
}

fn failure_lines(points: &[Point]) -> Vec<Line> {
    let mut lines = vec![Line::new(
        "failed",
        color::FAILED,
        each(points, |p| Some(rate(p.failed, p))),
    )];
    let classes: BTreeSet<&str> = points
        .iter()
        .flat_map(|p| p.second.errors.keys().map(String::as_str))
        .collect();
    let codes: BTreeSet<u16> = points
        .iter()
        .flat_map(|p| p.second.status.keys().copied().filter(|c| *c >= 400))
        .collect();
    let mut colors = color::CYCLE.iter().skip(1).cycle();
    for class in classes {
        let v = each(points, |p| {
            Some(rate(p.second.errors.get(class).copied().unwrap_or(0), p))
        });
        lines.push(Line::new(class, colors.next().unwrap(), v).dashed());
    }
    for code in codes {
        let v = each(points, |p| {
            Some(rate(p.second.status.get(&code).copied().unwrap_or(0), p))
        });
        lines.push(Line::new(format!("HTTP {code}"), colors.next().unwrap(), v).dashed());
    }
    lines
}

fn version_lines(points: &[Point]) -> Vec<Line> {
    let names: BTreeSet<&str> = points
        .iter()
        .flat_map(|p| p.second.versions.keys().map(String::as_str))
        .collect();
    names
        .into_iter()
        .zip(color::CYCLE.iter().cycle())
        .map(|(name, c)| {
            let v = each(points, |p| {
                let all: u64 = p.second.versions.values().sum();
                (all > 0).then(|| {
                    100.0 * p.second.versions.get(name).copied().unwrap_or(0) as f64 / all as f64
                })
            });
            Line::new(name, c, v)
        })
        .collect()
}

/// A version 1 file keeps only a summary per second: requests/s, p50 and p99.
fn v1_charts(run: &RunFile) -> Vec<Chart> {
    let x: Vec<f64> = run.series.iter().map(|s| f64::from(s.second)).collect();
    let per_s = |n: u64, secs: f64| round(n as f64 / if secs > 0.0 { secs } else { 1.0 }, 3);
    let req = run
        .series
        .iter()
        .map(|s| Some(per_s(s.requests, s.seconds)))
        .collect();
    let answered = |s: &hist::SecondSample, v: f64| if s.requests > 0 { positive(v) } else { None };
    let p50 = run.series.iter().map(|s| answered(s, s.p50_ms)).collect();
    let p99 = run.series.iter().map(|s| answered(s, s.p99_ms)).collect();
    vec![
        Chart {
            title: "Requests per second".into(),
            unit: "req/s",
            log: false,
            spectrum: false,
            x: x.clone(),
            series: vec![Line::new("requests", color::ANSWERS, req)],
        },
        Chart {
            title: "Latency (corrected)".into(),
            unit: "ms",
            log: true,
            spectrum: false,
            x,
            series: vec![
                Line::new("p50", color::P50, p50),
                Line::new("p99", color::P99, p99),
            ],
        },
    ]
}

/// The run's setup and outcome as (name, value) pairs for a header.
pub(crate) fn run_facts(run: &RunFile) -> Vec<(&'static str, String)> {
    let i = &run.info;
    let fleet_load = run
        .fleet
        .as_ref()
        .and_then(|f| (run.fleet_load_text()).map(|l| format!("{l}, {}", f.bots_text())));
    let load = if let Some(l) = fleet_load {
        l
    } else if i.mode == "open" {
        format!(
            "open loop, rate {} ({} arrivals), up to {} connections",
            i.rate.as_deref().unwrap_or("?"),
            i.arrival.as_deref().unwrap_or("uniform"),
            i.max_connections.unwrap_or(i.connections)
        )
    } else {
        format!("closed loop, {} connections", i.connections)
    };
    let target = match (i.targets, &i.weights) {
        (0 | 1, _) => i.url.clone(),
        (n, None) => format!("{} and {} more, in turn", i.url, n - 1),
        (n, Some(w)) => format!("{} and {} more, weighted {w}", i.url, n - 1),
    };
    let mut facts = vec![
        ("Target", target),
        ("Load", load),
        ("Protocol", i.protocol.clone()),
        ("Started", utc(run.started_unix)),
    ];
    let mut duration = format!("{} s", trim(run.elapsed_s, 2));
    if let Some(d) = i.duration_s {
        duration += &format!(" (planned {} s)", trim(d, 2));
    }
    if run.interrupted {
        duration += ", interrupted";
    }
    facts.push(("Duration", duration));
    if let Some(f) = &run.fleet {
        facts.push(("Bots", count(f.bots.len() as u64)));
        if let Some(lost) = f.lost_text() {
            facts.push(("Lost", lost));
        }
    }
    let t = &run.total;
    facts.push((
        "Answers",
        format!("{}, {} failed", count(t.responses), count(t.failed())),
    ));
    facts
}

fn facts_list(facts: &[(&str, String)]) -> String {
    let mut s = String::from("<dl class=\"facts\">");
    for (k, v) in facts {
        s += &format!("<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    s + "</dl>"
}

/// The events as a table too: markers show when, the table says what.
fn events_list(events: &[Event]) -> String {
    if events.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "<details class=\"events\"{}><summary>Events ({})</summary><table><tr><th>Time</th><th>Kind</th><th>What</th></tr>",
        if events.len() <= 20 { " open" } else { "" },
        events.len()
    );
    for e in events {
        s += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&utc(e.t)),
            esc(&e.kind),
            esc(&e.text)
        );
    }
    s + "</table></details>"
}

/// A complete page: uPlot and the page script inlined, `page` as JSON data.
pub(crate) fn document(title: &str, body: &str, page: &Page) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title>\n<style>{UPLOT_CSS}</style>\n<style>{REPORT_CSS}</style></head>\n\
         <body>{body}\n<script type=\"application/json\" id=\"data\">{}</script>\n\
         <script>{UPLOT_JS}</script>\n<script>{CHARTS_JS}</script>\n<script>{REPORT_JS}</script>\n</body></html>\n",
        esc(title),
        script_json(page)
    )
}

/// Escape text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            _ => out.push(c),
        }
    }
    out
}

/// JSON to place inside a `<script>` element: `<`, `>` and `&` (only ever inside strings in
/// JSON) become `\u` escapes, so no string can end the element or open a comment.
pub(crate) fn script_json<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests;
