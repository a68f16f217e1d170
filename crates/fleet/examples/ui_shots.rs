//! Screenshots of the aggregator's live page at given moments of a run, to look at (issue 22:
//! "at 15 s and 90 s into `scaletest demo`"): opens the page in headless Chromium and, for
//! each `SECONDS=OUT.png`, waits until the run's elapsed time (from `/api/summary`, as the
//! page reads it) reaches SECONDS, lets the page draw, and saves the whole page.
//!
//! ```text
//! scaletest demo --dir /tmp/demo-ui &     # its first line: the UI's address with the token
//! cargo run -p fleet --example ui_shots -- 'http://127.0.0.1:PORT/#token=T' 15=/tmp/ui-15s.png 90=/tmp/ui-90s.png
//! ```
//! Prints one line per screenshot: `SECONDS OUT.png` and the page's script errors, if any.

// A tool: it prints.
#![allow(clippy::disallowed_macros)]

use std::path::Path;
use std::time::Duration;
use testkit::browser::Browser;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: ui_shots PAGE_URL SECONDS=OUT.png...");
        std::process::exit(2);
    };
    if a.len() < 3 {
        usage();
    }
    let shots: Vec<(f64, &str)> = a[2..]
        .iter()
        .map(|s| match s.split_once('=') {
            Some((t, p)) => (t.parse().unwrap_or_else(|_| usage()), p),
            None => usage(),
        })
        .collect();
    let browser = Browser::launch().unwrap_or_else(|e| panic!("{e}"));
    let page = browser.page().expect("a tab");
    page.goto(&a[1]).expect("the page loads");
    for (at, out) in shots {
        // The page polls the summary every 2 s; its charts redraw on each second published.
        page.wait_until(
            &format!("!!scaletest.summary && scaletest.summary.elapsed_s >= {at}"),
            Duration::from_secs_f64(at + 60.0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let newest = page
            .eval("scaletest.points.length ? scaletest.points[scaletest.points.length - 1].t : 0")
            .expect("the page's points");
        // The next published second, drawn: the screenshot shows a settled page.
        page.wait_until(
            &format!(
                "scaletest.points.length > 0 && scaletest.points[scaletest.points.length - 1].t > {newest}"
            ),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        page.wait_until(
            "(() => { const t = scaletest.points[scaletest.points.length - 1].t; \
             return scaletest.plots().every((u) => u && u.scales.x.max === t); })()",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        page.screenshot(Path::new(out)).expect("a screenshot");
        println!("{at} {out} script_errors {:?}", page.errors());
    }
}
