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

/// Sum of `key`'s events over a run file's per-second records (`seconds` or
/// `startup_seconds`).
fn per_second_sum(run: &serde_json::Value, field: &str, key: &str) -> u64 {
    run[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field}"))
        .iter()
        .map(|s| s[key]["n"].as_u64().unwrap_or(0))
        .sum()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `api churn` and `nodes` runs against the fake API: their files keep every second (the
/// sums are the calls made, exactly) and the server's scrapes; `report` merges them,
/// `--compare`s two (client and server p99 per call, side by side) and draws them.
#[test]
fn control_plane_runs_are_kept_per_second_compared_and_drawn() {
    let fake = kubefake::FakeApi::start();
    let dir = tmpdir("cp-report");
    let kc = fake.kubeconfig(&dir).to_string_lossy().into_owned();
    // Open loop, 10 and 20 lifecycles a second for 3 s, each second on the charts.
    let churn = |rate: &str, file: &str| {
        let path = dir.join(file);
        let o = run(&[
            "api",
            "churn",
            "--kubeconfig",
            &kc,
            "--rate",
            rate,
            "--arrival",
            "uniform",
            "-d",
            "3s",
            "-u",
            "1",
            "--lifetime",
            "300ms",
            "--scrape-interval",
            "500ms",
            "--json",
            path.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        path
    };
    let (a, b) = (churn("10", "a.json"), churn("20", "b.json"));
    let (va, vb) = (read_json(&a), read_json(&b));
    assert_eq!(per_second_sum(&va, "seconds", "create configmaps"), 30);
    assert_eq!(per_second_sum(&vb, "seconds", "patch configmaps"), 60);
    // The server's scrapes add up to what it counted over the run.
    let scraped: u64 = vb["server"]["intervals"]
        .as_array()
        .expect("intervals")
        .iter()
        .map(|i| {
            i["calls"]["POST configmaps (resource)"]["count"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(scraped, 60, "{}", vb["server"]["intervals"]);
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    // Runs started days apart did not run together: not merged.
    let mut far = va.clone();
    far["started_unix"] = (f(&va, "started_unix") + 3.0 * 86_400.0).into();
    let far_path = dir.join("far.json");
    std::fs::write(&far_path, far.to_string()).unwrap();
    let o = run(&["report", a, far_path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).starts_with("scaletest: cannot merge these run files: the runs started"),
        "{}",
        text(&o.stderr)
    );
    let merged = text(&run(&["report", a, b]).stdout);
    assert!(merged.contains("90 lifecycles: 90 completed"), "{merged}");
    // One run after the other: the merge spans from the first's start to the second's end.
    let span = f(&vb, "started_unix") + f(&vb, "elapsed_s") - f(&va, "started_unix");
    assert!(
        merged.contains(&format!(
            "270 API calls in {}s",
            report::format::trim(span, 2)
        )),
        "{span}: {merged}"
    );
    let o = run(&["report", "--compare", a, b]);
    let cmp = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let row = |start: &str| {
        cmp.lines()
            .find(|l| l.trim_start_matches('│').trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no row {start}: {cmp}"))
            .split('│')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("Lifecycles completed"),
        ["Lifecycles completed", "30", "60", "+100.0%"]
    );
    let create = row("create configmaps");
    assert_eq!(&create[6..], ["30", "60", "0", "0"], "{cmp}");
    let post = row("POST configmaps (resource)");
    assert_eq!(&post[4..], ["30", "60"], "{cmp}");
    assert!(
        cmp.contains(&format!("Server versions: {a} v1.28.7, {b} v1.28.7")),
        "{cmp}"
    );
    // Files of two kinds are refused in one line.
    let load = save(&report::example::rolling_update(5), &dir.join("load.json"));
    let o = run(&["report", a, &load]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr).trim(),
        "scaletest: cannot read `api` and `load` run files together: give files of one kind"
    );

    // Two shards of hollow nodes at once, pods bound to them as they run.
    let shard = |prefix: &str, file: &str| {
        let path = dir.join(file);
        let child = Bin(env!("CARGO_BIN_EXE_scaletest")).spawn(&[
            "nodes",
            "--nodes",
            "2",
            "--prefix",
            prefix,
            "--kubeconfig",
            &kc,
            "-d",
            "4s",
            "--lease-interval",
            "500ms",
            "--scrape-interval",
            "1s",
            "--json",
            path.to_str().unwrap(),
        ]);
        (child, path)
    };
    let shards = [shard("cp-a-", "na.json"), shard("cp-b-", "nb.json")];
    testsupport::wait_until("4 nodes", Duration::from_secs(20), || {
        fake.objects("nodes").len() == 4
    });
    for (i, node) in ["cp-a-0", "cp-a-1", "cp-b-0", "cp-b-1", "cp-a-0"]
        .iter()
        .enumerate()
    {
        let pod = serde_json::json!({"metadata": {"name": format!("p{i}")},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "pause"}]}});
        fake.create("pods", "default", pod).expect("create pod");
    }
    let mut files = Vec::new();
    for (mut child, path) in shards {
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}");
        files.push(path.to_str().unwrap().to_string());
    }
    let (na, nb) = (
        read_json(Path::new(&files[0])),
        read_json(Path::new(&files[1])),
    );
    assert_eq!(per_second_sum(&na, "startup_seconds", "pod_startup"), 3);
    assert_eq!(per_second_sum(&nb, "startup_seconds", "pod_startup"), 2);
    let leases = |v: &serde_json::Value| {
        v["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["verb"] == "update" && c["resource"] == "leases")
            .map(|c| c["answered"].as_u64().unwrap() + c["transport_errors"].as_u64().unwrap())
    };
    assert_eq!(
        Some(per_second_sum(&na, "seconds", "update leases")),
        leases(&na)
    );
    let o = run(&["report", &files[0], &files[1]]);
    let merged = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        merged.starts_with("4 hollow nodes (cp-a-…, cp-b-…)"),
        "{merged}"
    );
    assert!(merged.contains("Pods: 5 admitted, 5 running"), "{merged}");
    let o = run(&["report", "--compare", &files[0], &files[1]]);
    let cmp = text(&o.stdout);
    assert!(cmp.contains("│ Pods running "), "{cmp}");
    assert!(
        cmp.lines()
            .any(|l| l.split('│').map(str::trim).collect::<Vec<_>>()
                == ["", "Pods running", "3", "2", "-33.3%", ""]),
        "{cmp}"
    );
    assert!(cmp.contains("pod_startup p99"), "{cmp}");

    let Some(browser) = testkit::browser::for_test() else {
        return;
    };
    let page = |args: &[&str], name: &str| {
        let html = dir.join(name);
        let mut all = vec!["report"];
        all.extend(args);
        all.extend(["--html", html.to_str().unwrap()]);
        let o = run(&all);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        html
    };
    // Calls/s, p99 client and server, failures, the spectrum.
    let html = page(&[b], "api.html");
    assert_eq!(
        draw(&browser, &html, "report-api.png"),
        5,
        "with APF's waits"
    );
    let html = page(&["--compare", a, b], "api-compare.html");
    assert_eq!(draw(&browser, &html, "report-api-compare.png"), 2);
    // And pod startup by the second.
    let html = page(&[&files[0], &files[1]], "nodes.html");
    assert_eq!(draw(&browser, &html, "report-nodes.png"), 6);
    std::fs::remove_dir_all(&dir).unwrap();
}
