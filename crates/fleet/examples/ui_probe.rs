//! How the aggregator's live page behaves while bots push (`bench/fleet.sh`, scenario `ui`):
//! opens the page in headless Chromium and, over a window, measures the main thread's
//! responsiveness (the lag of a 100 ms timer, and long tasks over 50 ms as Chromium reports
//! them) and how often the figures changed (the "requests" counter moves once a second when
//! the stream delivers), then saves a screenshot.
//!
//! ```text
//! cargo run --release -p fleet --example ui_probe -- http://127.0.0.1:8089 TOKEN SECONDS OUT.png
//! ```
//! Prints one line: `ui seconds S updates U lag_ms p50 P p99 P max M longtasks N longtask_ms T bots B`.

// A benchmark tool: it prints.
#![allow(clippy::disallowed_macros)]

use std::path::Path;
use std::time::Duration;
use testkit::browser::Browser;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 5 {
        eprintln!("usage: ui_probe AGGREGATOR_URL TOKEN SECONDS OUT.png");
        std::process::exit(2);
    }
    let (base, token) = (a[1].trim_end_matches('/'), &a[2]);
    let seconds: u64 = a[3].parse().expect("SECONDS");
    let browser = Browser::launch().unwrap_or_else(|e| panic!("{e}"));
    let page = browser.page().expect("a tab");
    page.goto(&format!("{base}/#token={token}"))
        .expect("the page loads");
    page.wait_until(
        "document.getElementById('requests').textContent !== '–'",
        Duration::from_secs(20),
    )
    .expect("the figures fill in");
    let js = format!(
        r#"new Promise((done) => {{
  const lags = [];
  let longtasks = 0, longMs = 0, updates = 0;
  new PerformanceObserver((l) => {{
    for (const e of l.getEntries()) {{ longtasks++; longMs += e.duration; }}
  }}).observe({{ type: "longtask" }});
  const req = document.getElementById("requests");
  new MutationObserver(() => updates++).observe(req, {{ childList: true, characterData: true, subtree: true }});
  let expected = performance.now() + 100;
  const tick = () => {{
    const now = performance.now();
    lags.push(Math.max(0, now - expected));
    expected = now + 100;
    setTimeout(tick, 100);
  }};
  setTimeout(tick, 100);
  setTimeout(() => {{
    lags.sort((x, y) => x - y);
    const q = (p) => lags[Math.min(lags.length - 1, Math.floor(p * lags.length))];
    done({{ updates, longtasks, longMs, p50: q(0.5), p99: q(0.99), max: lags[lags.length - 1],
            bots: document.getElementById("bots-live").textContent }});
  }}, {ms});
}})"#,
        ms = seconds * 1000
    );
    let r = page.eval(&js).expect("the probe runs");
    page.screenshot(Path::new(&a[4])).expect("a screenshot");
    let errors = page.errors();
    println!(
        "ui seconds {seconds} updates {} lag_ms p50 {:.1} p99 {:.1} max {:.1} longtasks {} longtask_ms {:.0} bots {} script_errors {}",
        r["updates"],
        r["p50"].as_f64().unwrap_or(f64::NAN),
        r["p99"].as_f64().unwrap_or(f64::NAN),
        r["max"].as_f64().unwrap_or(f64::NAN),
        r["longtasks"],
        r["longMs"].as_f64().unwrap_or(0.0),
        r["bots"].as_str().unwrap_or("?"),
        errors.len()
    );
}
