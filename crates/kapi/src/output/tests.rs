use super::*;
use report::runfile::MAX_COUNT;

#[test]
fn a_file_of_another_version_is_named_so_whatever_its_shape() {
    let e = ApiRun::from_json("f", r#"{"version": 9, "calls": "a new shape"}"#).unwrap_err();
    assert!(matches!(e, Unreadable::Version { found: 9, .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("f: api run file version 9 (this build reads {API_RUN_VERSION})")
    );
    let e = ApiRun::from_json("f", r#"{"calls": []}"#).unwrap_err();
    assert!(
        e.to_string()
            .contains("not an api run file: no version field"),
        "{e}"
    );
    let e = ApiRun::from_json("f", "{").unwrap_err();
    assert!(matches!(e, Unreadable::Parse { .. }), "{e}");
}

#[test]
fn a_count_no_run_makes_is_refused_with_where_it_is() {
    let mut v = serde_json::to_value(ApiRun::new(ApiInfo::default(), 0.0)).unwrap();
    v["lifecycles"] = serde_json::to_value(Lifecycles::default()).unwrap();
    v["lifecycles"]["failed"] = MAX_COUNT.into();
    assert!(ApiRun::from_json("f", &v.to_string()).is_ok());
    v["lifecycles"]["failed"] = (MAX_COUNT + 1).into();
    let e = ApiRun::from_json("f", &v.to_string()).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("not an api run file: /lifecycles/failed: a number over 9007199254740992"),
        "{e}"
    );
}

/// A run whose seconds stopped at the bound: its charts leave the seconds after the cut
/// empty (not drawn as seconds without calls) and its page says so; one that was not cut
/// draws every second, quiet ones as 0.
#[test]
fn seconds_past_the_cut_are_not_drawn_as_idle() {
    let second = |key: &str, n: u64| {
        let mut s = Second::default();
        let mut h = new_histogram();
        h.record_n(2_000, n).unwrap();
        let t = series::Tally {
            n,
            failed: 0,
            latency: hist::sparse::Buckets::of(&h),
        };
        s.0.insert(key.to_string(), t);
        s
    };
    let mut run = ApiRun::new(ApiInfo::default(), 0.0);
    run.elapsed_s = 6.0;
    run.seconds = vec![second("create pods", 5); 3];
    // Pod startup measured over 6 s sizes the x axis past the calls' last second.
    run.pods = Some(PodStartup {
        seconds: vec![second(crate::POD_STARTUP, 1); 6],
        ..PodStartup::default()
    });
    let values = |run: &ApiRun, title: &str| {
        let charts = crate::view::charts(&run.view());
        let c = charts
            .into_iter()
            .find(|c| c.title.starts_with(title))
            .unwrap_or_else(|| panic!("no chart {title}"));
        c.series[0].values.clone()
    };
    assert_eq!(
        values(&run, "API calls per second"),
        [5.0, 5.0, 5.0, 0.0, 0.0, 0.0].map(Some)
    );
    assert!(!run.view().facts.iter().any(|(k, _)| *k == "Per second"));
    run.seconds_cut = Some(3);
    let calls = values(&run, "API calls per second");
    assert_eq!(calls, [Some(5.0), Some(5.0), Some(5.0), None, None, None]);
    let startup = values(&run, crate::POD_STARTUP);
    assert!(startup[..3].iter().all(Option::is_some), "{startup:?}");
    assert!(startup[3..].iter().all(Option::is_none), "{startup:?}");
    // Overlaid with a run that was not cut, in `report --compare --html`.
    let mut whole = run.clone();
    whole.seconds_cut = None;
    let (a, b) = (run.view(), whole.view());
    let cmp = crate::view::compare_charts(&a, &b, ["a", "b"]);
    assert_eq!(cmp[0].title, "API calls per second");
    assert_eq!(cmp[0].series[0].values, calls);
    assert_eq!(
        cmp[0].series[1].values,
        [5.0, 5.0, 5.0, 0.0, 0.0, 0.0].map(Some)
    );
    let page = crate::view::compare_html(&a, &b, ["a", "b"]);
    assert!(page.contains("a: kept for the first 3 s only"), "{page}");
    assert!(!page.contains("b: kept"), "{page}");
    let facts = run.view().facts;
    let said = facts.iter().find(|(k, _)| *k == "Per second").map(|f| &f.1);
    assert_eq!(
        said.map(String::as_str),
        Some("kept for the first 3 s only (charts end there; the totals cover the whole run)")
    );
    // It survives the file, and a merge with a run started 60 s earlier that was not cut
    // counts it from that earlier start.
    let text = serde_json::to_string(&run).unwrap();
    assert_eq!(ApiRun::from_json("f", &text).unwrap().seconds_cut, Some(3));
    let mut earlier = run.clone();
    (earlier.started_unix, earlier.seconds_cut) = (-60.0, None);
    let merged = ApiRun::merge(&[run, earlier]).unwrap();
    assert_eq!(merged.seconds_cut, Some(63));
}

/// Pod startup and an informer's notifications of merged runs line up by the runs'
/// starts like their calls, also when the earliest run made no pods and watched nothing;
/// the page draws the notifications by the second.
#[test]
fn merged_pod_startup_and_notification_seconds_count_from_the_earliest_start() {
    let of = |key: &str| {
        let mut s = Second::default();
        s.0.insert(key.into(), series::Tally::default());
        s
    };
    let (pod, told) = (of(crate::POD_STARTUP), of(NOTIFY_UPDATE));
    let a = ApiRun::new(ApiInfo::default(), 100.0);
    let mut b = ApiRun::new(ApiInfo::default(), 110.0);
    b.pods = Some(PodStartup {
        seconds: vec![pod.clone()],
        ..PodStartup::default()
    });
    b.watch = Some(WatchStats {
        seconds: vec![told.clone()],
        ..WatchStats::default()
    });
    let names: Vec<&str> = b.view().latency_seconds.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, [crate::POD_STARTUP, NOTIFY_UPDATE]);
    let merged = ApiRun::merge(&[a, b]).unwrap();
    assert_eq!(merged.started_unix, 100.0);
    for (seconds, s) in [
        (&merged.pods.as_ref().unwrap().seconds, &pod),
        (&merged.watch.as_ref().unwrap().seconds, &told),
    ] {
        assert_eq!(seconds.len(), 11);
        assert_eq!(&seconds[10], s);
    }
}

/// A latency only one of two compared runs measured is "–" in the other, with no change.
#[test]
fn a_latency_one_run_did_not_measure_is_not_compared_as_zero() {
    let mut a = ApiRun::new(ApiInfo::default(), 0.0);
    let mut pods = PodStartup::default();
    pods.pod_startup.record(2_000).unwrap();
    a.pods = Some(pods);
    let b = ApiRun::new(ApiInfo::default(), 0.0);
    let table = crate::view::compare(&a.view(), &b.view(), ["a", "b"]);
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.contains("pod_startup p99"))
        .unwrap_or_else(|| panic!("no row: {table}"))
        .split('│')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(row, ["pod_startup p99", "2 ms", "–", "–"], "{table}");
}
