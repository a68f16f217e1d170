//! `scaletest report`: the HTML page (and that a browser draws it without script errors) and
//! `--compare`.

use report::RunFile;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use testkit::browser::Browser;
use testsupport::{text, tmpdir, Bin};

fn run(args: &[&str]) -> Output {
    Bin(env!("CARGO_BIN_EXE_scaletest")).run(args)
}

fn save(run: &RunFile, path: &Path) -> String {
    run.write_atomic(path).unwrap();
    path.to_str().unwrap().to_string()
}

/// Where screenshots go: the workspace's target directory, to look at after a run.
fn shot(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn html_is_written_beside_the_usual_tables() {
    let dir = tmpdir("html");
    let json = save(&report::example::rolling_update(30), &dir.join("run.json"));
    let page = dir.join("run.html");
    let plain = run(&["report", &json]);
    let o = run(&["report", &json, "--html", page.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), text(&plain.stdout));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    // One file: the chart library is inside, and nothing is loaded from elsewhere.
    assert!(html.contains(report::assets::UPLOT_JS));
    assert!(!html.contains("src=") && !html.contains("href="));
    // Written atomically: no temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // An unwritable path: one line, the run's tables are not half-printed.
    let o = run(&["report", &json, "--html", "/nonexistent/dir/x.html"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot write /nonexistent/dir/x.html"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_prints_both_runs_and_the_change_and_takes_exactly_two_files() {
    let dir = tmpdir("compare");
    let (ra, rb) = (
        report::example::rolling_update(20),
        report::example::rolling_update(40),
    );
    let a = save(&ra, &dir.join("a.json"));
    let b = save(&rb, &dir.join("b.json"));
    let page = dir.join("cmp.html");
    let o = run(&[
        "report",
        "--compare",
        &a,
        &b,
        "--html",
        page.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let requests = out
        .lines()
        .find(|l| l.starts_with("│ Requests "))
        .unwrap_or_else(|| panic!("{out}"));
    let (na, nb) = (ra.total.responses, rb.total.responses);
    let want = format!(
        "│ Requests │ {} │ {} │ {} │",
        report::format::count(na),
        report::format::count(nb),
        report::compare::change(na as f64, nb as f64)
    );
    let squeezed = requests.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(squeezed, want);
    for row in ["Mean req/s", "Error %", "Latency p99.9", "Bytes/s"] {
        assert!(out.contains(&format!("│ {row} ")), "{row}: {out}");
    }
    assert!(std::fs::read_to_string(&page)
        .unwrap()
        .contains("scaletest comparison"));
    for args in [
        vec!["report", "--compare", &a],
        vec!["report", "--compare", &a, &b, &a],
    ] {
        let o = run(&args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("--compare takes exactly two run files"),
            "{err}"
        );
        assert!(o.stdout.is_empty());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Load `file` in the browser and wait until every chart the page's data asks for is drawn.
fn draw(browser: &Browser, file: &Path, screenshot: &str) -> usize {
    let page = browser.page().unwrap();
    page.goto(&format!("file://{}", file.display())).unwrap();
    let wanted = "JSON.parse(document.getElementById('data').textContent).charts.length";
    page.wait_until(
        &format!("document.querySelectorAll('.uplot canvas').length === {wanted}"),
        Duration::from_secs(20),
    )
    .unwrap();
    // Every chart has a size and the data's lines (plus the x series) in its legend.
    let ok = page
        .eval(
            "[...document.querySelectorAll('.uplot')].every((u, i) => \
               u.querySelector('canvas').width > 300 && \
               u.querySelectorAll('.u-series').length === \
                 JSON.parse(document.getElementById('data').textContent).charts[i].series.length + 1)",
        )
        .unwrap();
    assert_eq!(ok, serde_json::Value::Bool(true), "{}", file.display());
    page.screenshot(&shot(screenshot)).unwrap();
    let errors = page.errors();
    assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    page.eval(wanted).unwrap().as_u64().unwrap() as usize
}

#[test]
fn html_pages_draw_in_a_browser_without_script_errors() {
    let Some(browser) = testkit::browser::for_test() else {
        return;
    };
    let dir = tmpdir("browser");
    // An aggregator's run: every chart, with events.
    let fleet = save(
        &report::example::rolling_update(120),
        &dir.join("fleet.json"),
    );
    let fleet_html = dir.join("fleet.html");
    let o = run(&["report", &fleet, "--html", fleet_html.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(draw(&browser, &fleet_html, "report-fleet.png"), 6);
    // A real `load` run, measured through the binary.
    let server = testkit::Server::start(testkit::Behavior::Ok);
    let load = dir.join("load.json");
    let o = run(&[
        "load",
        &server.url("/"),
        "--rate",
        "200",
        "-d",
        "2s",
        "--json",
        load.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let load_html = dir.join("load.html");
    let o = run(&[
        "report",
        load.to_str().unwrap(),
        "--html",
        load_html.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(draw(&browser, &load_html, "report-load.png") >= 4);
    // The two compared.
    let cmp_html = dir.join("compare.html");
    let o = run(&[
        "report",
        "--compare",
        load.to_str().unwrap(),
        &fleet,
        "--html",
        cmp_html.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(draw(&browser, &cmp_html, "report-compare.png"), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}
