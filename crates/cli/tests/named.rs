//! Named requests with their own numbers: a targets file whose requests carry names (and
//! weights) gets a row per name — in `load`'s table, its `--json`, `--out jsonl` (every
//! second) and `report`, and through bots' pushes in an aggregator's results — and the rows
//! add up to the total; weights choose the mix exactly.

use testsupport::{tmpdir, Bin};

const SCALETEST: Bin = Bin(env!("CARGO_BIN_EXE_scaletest"));

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The names' rows add up to the total, and their p50s are their servers': `slow` (20 ms) and
/// `fast` (a few times less, even on a busy machine).
fn slow_and_fast(run: &report::RunFile) {
    let sum: u64 = run.total.names.values().map(|s| s.responses).sum();
    assert_eq!(sum, run.total.responses, "the rows add up to the total");
    let (slow, fast) = (
        run.total.names["slow"].quantile_ms(0.5),
        run.total.names["fast"].quantile_ms(0.5),
    );
    assert!((20.0..40.0).contains(&slow), "slow p50 {slow} ms");
    assert!(
        fast < 5.0 && fast * 4.0 < slow,
        "fast p50 {fast} ms, slow {slow} ms"
    );
}

/// `load` of the targets file `tf`, `n` requests on 4 connections, its run file written to
/// `json`, with `extra` flags; its output and the run file.
fn load_named(
    tf: &std::path::Path,
    n: u64,
    json: &std::path::Path,
    extra: &[&str],
) -> (String, report::RunFile) {
    let (tf, n, js) = (tf.to_str().unwrap(), n.to_string(), json.to_str().unwrap());
    let mut args = vec!["load", "--targets", tf, "-c", "4", "-n", &n, "--json", js];
    args.extend_from_slice(extra);
    let o = SCALETEST.run(&args);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    (out, report::RunFile::read(json).unwrap())
}

#[test]
fn two_names_get_their_own_rows_which_add_up_to_the_total() {
    let (_srv, srv) = testsupport::fleet::server(SCALETEST);
    let dir = tmpdir("named");
    let tf = dir.join("targets.jsonl");
    std::fs::write(
        &tf,
        format!(
            "{{\"name\": \"slow\", \"url\": \"http://{srv}/delay?ms=20\"}}\n\
             {{\"name\": \"fast\", \"url\": \"http://{srv}/\", \"weight\": 3}}\n"
        ),
    )
    .unwrap();
    let json = dir.join("run.json");
    let jsonl = dir.join("seconds.jsonl");
    let out_jsonl = format!("jsonl:{}", jsonl.display());
    let (out, run) = load_named(&tf, 200, &json, &["--out", &out_jsonl]);
    let names: Vec<(&str, u64, u64)> = run
        .total
        .names
        .iter()
        .map(|(n, s)| (n.as_str(), s.sent, s.responses))
        .collect();
    // Weights 1:3 over 200 sends, exactly; every one answered.
    assert_eq!(names, [("fast", 150, 150), ("slow", 50, 50)], "{out}");
    assert!(out.contains("2 targets, weighted 1:3"), "{out}");
    // Every second's line has the names' own counts and percentiles; they add up to the run's.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for name in ["slow", "fast"] {
        let per_second: u64 = lines
            .iter()
            .map(|l| l["names"][name]["responses"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(per_second, run.total.names[name].responses, "{name}");
    }
    let p50 = lines[0]["names"]["slow"]["latency"]["p50"]
        .as_f64()
        .unwrap();
    assert!(
        (20.0..40.0).contains(&p50),
        "slow p50 in the first second {p50}"
    );
    // The run file keeps the names' totals, not their seconds.
    assert!(run.intervals.iter().all(|s| s.names.is_empty()));
    slow_and_fast(&run);
    // Without a per-second output the names are taken once, at the end: the same totals.
    let (_, run2) = load_named(&tf, 40, &dir.join("run2.json"), &[]);
    let sent: Vec<u64> = run2.total.names.values().map(|s| s.sent).collect();
    assert_eq!(sent, [30, 10], "fast, slow");
    slow_and_fast(&run2);
    // The table: the slowest first, in `load`'s output and in `report`'s.
    for shown in [
        out,
        text(&SCALETEST.run(&["report", json.to_str().unwrap()]).stdout),
    ] {
        let at = |name: &str| {
            shown
                .lines()
                .position(|l| l.starts_with(&format!("│ {name} ")))
                .unwrap_or_else(|| panic!("no row {name} in\n{shown}"))
        };
        assert!(at("slow") < at("fast"), "{shown}");
        assert!(shown.contains("By name (slowest p99 first):"), "{shown}");
    }
    // report.html: the same rows, and the mix in its header.
    let html = dir.join("run.html");
    let o = SCALETEST.run(&[
        "report",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("By name (slowest p99 first):"),
        "no names table"
    );
    assert!(
        page.contains("and 1 more, weighted 1:3"),
        "no mix in the header"
    );
    // A weight of 0 for every request sends nothing: refused, one line, exit 2.
    std::fs::write(
        &tf,
        format!("{{\"url\": \"http://{srv}/\", \"weight\": 0}}\n"),
    )
    .unwrap();
    let o = SCALETEST.run(&["load", "--targets", tf.to_str().unwrap(), "-n", "1"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("every request has a weight of 0"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn names_travel_from_the_bots_into_the_aggregators_results_and_report() {
    let (_srv, srv) = testsupport::fleet::server(SCALETEST);
    let dir = tmpdir("named-fleet");
    let tf = dir.join("targets.txt");
    std::fs::write(
        &tf,
        format!("# name: slow\nGET http://{srv}/delay?ms=20\n\n# name: fast\nGET http://{srv}/\n"),
    )
    .unwrap();
    let out = dir.join("run");
    let l = SCALETEST.listening(&[
        "aggregate",
        "--targets",
        tf.to_str().unwrap(),
        "--rate",
        "200",
        "--run-for",
        "4s",
        "--out",
        out.to_str().unwrap(),
        "--bind",
        "127.0.0.1:0",
    ]);
    let mut agg = l.proc;
    let bots: Vec<_> = (0..2)
        .map(|i| testsupport::fleet::bot(SCALETEST, l.addr, &out.join("token"), &format!("b{i}")))
        .collect();
    assert!(testsupport::exited(&mut agg, std::time::Duration::from_secs(40)).success());
    let shown = l.rest.join().unwrap();
    drop(bots);
    let run = report::RunFile::read(&out.join("results.json")).unwrap();
    let names: Vec<&String> = run.total.names.keys().collect();
    assert_eq!(names, ["fast", "slow"], "{shown}");
    assert!(run.total.responses > 0);
    slow_and_fast(&run);
    // The same rows in the aggregator's final summary, its table and report.html.
    let rows = &run.summary.as_ref().unwrap().names;
    assert_eq!(rows[0].name, "slow");
    assert_eq!(
        rows.iter().map(|r| r.responses).sum::<u64>(),
        run.total.responses
    );
    assert!(shown.contains("By name (slowest p99 first):"), "{shown}");
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        page.contains("By name (slowest p99 first):"),
        "no names in report.html"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
