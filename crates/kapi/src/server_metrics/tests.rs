use super::*;

/// A scrape's text: `n` POSTs of configmaps so far, all in (0.025, 0.05], and one etcd create.
fn scrape_text(n: u64) -> String {
    let l = "component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",\
             scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"";
    let mut s = format!("apiserver_request_total{{code=\"201\",{l}}} {n}\n");
    for (le, c) in [("0.025", 0), ("0.05", n), ("+Inf", n)] {
        s += &format!("apiserver_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {c}\n");
    }
    s += &format!(
        "apiserver_current_inflight_requests{{request_kind=\"mutating\"}} {}\n",
        n % 3
    );
    s
}

fn add(rec: &mut Record, at: f64, text: &str) {
    rec.add(
        at,
        text::parse(text, |n| FAMILIES.contains(&n)).expect("parses"),
    );
}

#[test]
fn counts_are_deltas_from_the_first_scrape_and_a_restart_counts_from_zero() {
    let mut rec = Record::new(1000.0);
    add(&mut rec, 0.0, &scrape_text(7));
    add(&mut rec, 10.0, &scrape_text(10));
    // The server restarted: its counters start again.
    add(&mut rec, 20.0, &scrape_text(4));
    let sv = rec.summary(Some("v1.28.7".into()));
    assert!(sv.has_metrics());
    assert_eq!((sv.scrapes, sv.span_s), (3, 20.0));
    let c = &sv.calls[0];
    assert_eq!(
        (c.verb.as_str(), c.resource.as_str(), c.scope.as_str()),
        ("POST", "configmaps", "resource")
    );
    assert_eq!(c.count, 7, "3 then 4 after the restart");
    assert_eq!(c.codes["201"], 7);
    // All in (0.025, 0.05]: interpolated from 0.025, the empty bucket below (as Prometheus
    // does over every bucket's rate), not from 0.
    let (p50, p99) = (c.p50_s.unwrap(), c.p99_s.unwrap());
    assert!((p50 - 0.0375).abs() < 1e-12, "{p50}");
    assert!((p99 - 0.04975).abs() < 1e-12, "{p99}");
    assert_eq!(sv.inflight[0].what, "mutating");
    assert_eq!((sv.inflight[0].max, sv.inflight[0].last), (1.0, 1.0));
    // Under 5 minutes: one window, the whole run.
    assert_eq!(sv.slo.len(), 1);
    assert_eq!((sv.slo[0].windows, sv.slo[0].limit_s), (1, 1.0));
    assert!(sv.slo[0].pass);
    assert!(sv.slo_pass());
    // Scrape by scrape: each interval's own requests, at Unix times from the scraper's start.
    let iv: Vec<(f64, f64, u64)> = sv
        .intervals
        .iter()
        .map(|i| {
            (
                i.end_unix,
                i.seconds,
                i.calls["POST configmaps (resource)"].count,
            )
        })
        .collect();
    assert_eq!(iv, vec![(1010.0, 10.0, 3), (1020.0, 10.0, 4)]);
    let p99 = sv.intervals[1].calls["POST configmaps (resource)"]
        .p99_s
        .unwrap();
    assert!((0.025..=0.05).contains(&p99));
}

#[test]
fn the_slo_takes_the_99th_percentile_of_5_minute_windows_and_leaves_out_custom_resources() {
    let mut rec = Record::new(1000.0);
    // A slow LIST of a custom resource, not judged; POSTs every 60 s for 10 minutes.
    let custom = "apiserver_request_duration_seconds_bucket{component=\"apiserver\",\
                  dry_run=\"\",group=\"wardle.example.com\",resource=\"flunders\",\
                  scope=\"cluster\",subresource=\"\",verb=\"LIST\",version=\"v1\",le=\"+Inf\"}";
    for i in 0..=10u64 {
        add(
            &mut rec,
            i as f64 * 60.0,
            &format!("{}{custom} {i}\n", scrape_text(i * 10)),
        );
    }
    let sv = rec.summary(None);
    assert_eq!(sv.slo.len(), 1, "{:?}", sv.slo);
    // Windows end at 300, 360, ... 600 s.
    assert_eq!(sv.slo[0].windows, 6);
    assert!((0.025..=0.05).contains(&sv.slo[0].p99_s));
    assert_eq!(sv.calls.len(), 2, "the custom resource is in the table");
    assert_eq!(sv.calls[0].resource, "flunders.wardle.example.com");
}

/// Requests all slower than the largest bound: the percentiles are that bound, as
/// `histogram_quantile` gives when the rank falls in `+Inf` (the finite buckets counted none,
/// and are kept for it).
#[test]
fn requests_past_the_last_bound_are_at_that_bound() {
    let slow = |n: u64| {
        let l = "component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",\
                 scope=\"resource\",subresource=\"\",verb=\"GET\",version=\"v1\"";
        let mut s = format!("apiserver_request_total{{code=\"200\",{l}}} {n}\n");
        for (le, c) in [("0.025", 0), ("0.05", 0), ("+Inf", n)] {
            s += &format!("apiserver_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {c}\n");
        }
        s
    };
    let mut rec = Record::new(1000.0);
    add(&mut rec, 0.0, &slow(0));
    add(&mut rec, 10.0, &slow(8));
    let sv = rec.summary(None);
    assert_eq!(
        (sv.calls[0].p50_s, sv.calls[0].p99_s),
        (Some(0.05), Some(0.05))
    );
    assert_eq!(sv.slo[0].p99_s, 0.05);
    assert!(sv.slo[0].pass);
}

/// APF by priority level: the run's rejections by reason, each interval's summed, and the
/// queue wait from the same buckets.
#[test]
fn apf_rejections_count_by_reason_for_the_run_and_together_per_interval() {
    let apf = |queue: u64, time: u64, waited: u64| {
        let pl = "priority_level=\"workload-low\"";
        let mut s = format!(
            "apiserver_flowcontrol_rejected_requests_total{{flow_schema=\"a\",{pl},reason=\"queue-full\"}} {queue}\n\
             apiserver_flowcontrol_rejected_requests_total{{flow_schema=\"a\",{pl},reason=\"time-out\"}} {time}\n"
        );
        for (le, c) in [("0.1", waited), ("+Inf", waited)] {
            s += &format!(
                "apiserver_flowcontrol_request_wait_duration_seconds_bucket{{execute=\"true\",flow_schema=\"a\",le=\"{le}\",{pl}}} {c}\n"
            );
        }
        s
    };
    let mut rec = Record::new(1000.0);
    add(&mut rec, 0.0, &apf(1, 0, 10));
    add(&mut rec, 10.0, &apf(4, 2, 30));
    add(&mut rec, 20.0, &apf(5, 5, 30));
    let sv = rec.summary(None);
    let l = &sv.apf[0];
    assert_eq!(l.priority_level, "workload-low");
    assert_eq!((l.rejected["queue-full"], l.rejected["time-out"]), (4, 5));
    assert_eq!(l.waited, 20);
    let per: Vec<(u64, u64)> = sv
        .intervals
        .iter()
        .map(|i| (i.apf["workload-low"].rejected, i.apf["workload-low"].waited))
        .collect();
    assert_eq!(per, vec![(5, 20), (4, 0)]);
}

/// A long run's record keeps one window of buckets, not the run: a summary (asked for at
/// every scrape when the run serves `/metrics`) does not merge the run's buckets again.
#[test]
fn a_long_run_keeps_one_window_of_buckets_and_judges_every_window() {
    let mut rec = Record::new(1000.0);
    // Three hours of scrapes every 10 s.
    for i in 0..1080u64 {
        add(&mut rec, i as f64 * 10.0, &scrape_text(i * 5));
        assert!(rec.slo.kept() <= 30, "{} intervals kept", rec.slo.kept());
    }
    let live = rec.figures(None);
    assert!(
        live.intervals.is_empty(),
        "the live figures leave the rows out"
    );
    let sv = rec.summary(None);
    assert_eq!(sv.intervals.len(), 1079);
    assert_eq!(sv.calls[0].count, 1079 * 5);
    // Windows end at 300, 310, ... 10,790 s.
    assert_eq!(sv.slo[0].windows, 1050);
    assert!((0.025..=0.05).contains(&sv.slo[0].p99_s));
    assert_eq!(live.slo, sv.slo);
}

#[test]
fn a_forbidden_metrics_endpoint_is_one_warning_and_no_table() {
    let mut rec = Record::new(1000.0);
    rec.unavailable = Some("GET /metrics: 403 Forbidden: no".into());
    let sv = rec.summary(Some("v1.28.7".into()));
    assert!(!sv.has_metrics());
    let w = sv.warning().expect("a warning");
    assert!(!w.contains('\n'), "{w}");
    assert!(w.starts_with("server metrics: GET /metrics: 403"), "{w}");
    assert!(render(&sv).starts_with("Server (v1.28.7): no metrics"));
}
