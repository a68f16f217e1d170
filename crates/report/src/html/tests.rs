use super::*;
use crate::example;
use serde_json::Value;

/// The JSON the page script reads.
fn data(page: &str) -> Value {
    let open = "<script type=\"application/json\" id=\"data\">";
    let start = page.find(open).expect("data element") + open.len();
    let len = page[start..].find("</script>").expect("end of data");
    serde_json::from_str(&page[start..start + len]).expect("data is JSON")
}

fn titles(d: &Value) -> Vec<String> {
    d["charts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap().to_string())
        .collect()
}

fn line<'a>(chart: &'a Value, label: &str) -> &'a Vec<Value> {
    chart["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["label"] == label)
        .unwrap_or_else(|| panic!("no {label} in {}", chart["title"]))["values"]
        .as_array()
        .unwrap()
}

#[test]
fn an_aggregator_run_gets_every_chart_its_events_and_the_tables() {
    let run = example::rolling_update(60);
    let page = render(&run);
    let d = data(&page);
    assert_eq!(d["time"], true);
    assert_eq!(
        titles(&d),
        [
            "Requests per second",
            "Latency (corrected)",
            "Failed requests per second",
            "Answers by server version",
            "Bots: reported vs live",
            "Latency by percentile (whole run)"
        ]
    );
    assert_eq!(d["events"].as_array().unwrap().len(), 3);
    let qps = &d["charts"][0];
    assert_eq!(qps["x"][0], example::START as f64);
    assert_eq!(line(qps, "offered")[0], 2000.0);
    assert_eq!(line(qps, "offered")[59], 3000.0);
    // The rollout: all v1 at first, all v2 at the end.
    let versions = &d["charts"][3];
    assert_eq!(line(versions, "v1")[0], 100.0);
    assert_eq!(line(versions, "v2")[59], 100.0);
    assert_eq!(line(versions, "v2")[0], 0.0);
    // Failures by class and by status.
    let failed = &d["charts"][2];
    assert!(line(failed, "reset")
        .iter()
        .any(|v| v.as_f64() == Some(3.0)));
    assert!(line(failed, "HTTP 503")
        .iter()
        .any(|v| v.as_f64() == Some(12.0)));
    // Open loop: service time is drawn beside the corrected latency.
    assert!(!line(&d["charts"][1], "service p99").is_empty());
    assert!(page.contains("<dt>Bots</dt><dd>4</dd>"), "header");
    assert!(page.contains("rollout v1 → v2 started"), "events table");
    // The autocannon tables, as `report` prints them.
    let mut tables = Vec::new();
    crate::table::write_report(&run, true, &mut tables).unwrap();
    let tables = esc(&String::from_utf8(tables).unwrap());
    assert!(page.contains(&tables));
    assert!(tables.contains("│ Latency │"));
}

#[test]
fn no_string_in_the_data_can_end_the_script_element() {
    let mut run = example::rolling_update(10);
    let evil = "</script><script>alert(1)</script><!--";
    run.fleet.as_mut().unwrap().events[0].text = evil.into();
    run.info.url = "http://x/<b>".into();
    let page = render(&run);
    assert!(!page.contains("<script>alert"));
    assert!(!page.contains("<b>"));
    // Only the page's own four script elements close (data, uPlot, charts.js, report.js).
    assert_eq!(page.matches("</script>").count(), 4);
    // And the data still reads back as written.
    assert_eq!(data(&page)["events"][0]["text"], evil);
}

#[test]
fn a_version_1_file_is_drawn_from_its_per_second_summaries() {
    let mut run = example::rolling_update(10);
    run.version = 1;
    run.intervals.clear();
    run.fleet = None;
    let d = data(&render(&run));
    assert_eq!(d["time"], false);
    assert_eq!(
        titles(&d),
        [
            "Requests per second",
            "Latency (corrected)",
            "Latency by percentile (whole run)"
        ]
    );
    let qps = &d["charts"][0];
    assert_eq!(qps["x"][3], 3.0);
    assert_eq!(line(qps, "requests")[0], run.series[0].requests as f64);
    assert_eq!(line(&d["charts"][1], "p99")[2], run.series[2].p99_ms);
}

#[test]
fn the_spectrum_runs_in_even_log_steps_to_the_last_decade_the_samples_support() {
    let mut h = hist::new_histogram();
    for ms in 1..=1000u64 {
        h.record(ms * 1000).unwrap();
    }
    let pts = spectrum_points(&h);
    // 1,000 samples: up to 99.9%, 20 points a decade.
    assert_eq!(pts.len(), 61);
    assert_eq!(pts[0].0, 0.0);
    assert!((pts[20].0 - 0.9).abs() < 1e-12);
    assert!((pts[60].0 - 0.999).abs() < 1e-12);
    let at = |i: usize| pts[i].1.round();
    assert_eq!((at(0), at(20), at(40), at(60)), (1.0, 900.0, 990.0, 999.0));
    assert!(pts.windows(2).all(|w| w[0].1 <= w[1].1));
    assert!(spectrum_points(&hist::new_histogram()).is_empty());
}
