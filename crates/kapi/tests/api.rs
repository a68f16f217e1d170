//! `kapi` through kube-rs's real client over HTTP: against the in-process fake API always, and
//! the same tests `*_on_a_real_cluster`, ignored unless asked for (`--ignored`, with
//! `SCALETEST_KUBECONFIG` naming one), against a real cluster (tests that need the fake's
//! fault injection run only against the fake).

// Tests and examples may print (see clippy.toml).
#![allow(clippy::disallowed_macros)]

use kapi::churn::{self, Lifetime, Mode};
use kapi::server_metrics::{Scraper, ServerCalls};
use kapi::stats::{Recorder, Verb};
use kapi::{watch, Target};
use kubefake::{FakeApi, Resource};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A cluster to test against: the fake (kept alive here) or a real one.
struct Cluster {
    name: &'static str,
    kubeconfig: PathBuf,
    fake: Option<FakeApi>,
}

fn fake() -> Cluster {
    let api = FakeApi::start();
    let dir = std::env::temp_dir().join("scaletest-kapi-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    Cluster {
        name: "fake",
        kubeconfig: api.kubeconfig(&dir),
        fake: Some(api),
    }
}

/// The real cluster `SCALETEST_KUBECONFIG` names, for the ignored tests (`--ignored`).
fn real() -> Cluster {
    let kc = std::env::var_os("SCALETEST_KUBECONFIG")
        .expect("SCALETEST_KUBECONFIG must name a real cluster's kubeconfig for this test");
    Cluster {
        name: "real",
        kubeconfig: PathBuf::from(kc),
        fake: None,
    }
}

async fn client(c: &Cluster) -> (kube::Client, String) {
    kapi::connect(
        Some(&c.kubeconfig),
        None,
        Some(Duration::from_secs(30)),
        false,
    )
    .await
    .expect("connect")
}

fn run_id(test: &str) -> String {
    format!("t{}-{test}", std::process::id() % 100_000)
}

fn closed(
    target: &Target,
    ns: &str,
    run_id: &str,
    workers: usize,
    n: u64,
    u: u32,
) -> churn::Config {
    churn::Config {
        target: target.clone(),
        template: churn::configmap_template(64),
        namespaces: vec![ns.to_string()],
        mode: Mode::Closed {
            workers,
            lifecycles: Some(n),
        },
        duration: None,
        updates: u,
        run_id: run_id.to_string(),
        limit: None,
    }
}

fn no_stop() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    rx
}

fn counts(s: &watch::WatchStats) -> String {
    format!(
        "applied {} deleted {} coalesced {} duplicates {} foreign {} relists {} gone {} errors {}",
        s.applied, s.deleted, s.coalesced, s.duplicates, s.foreign, s.relists, s.gone, s.errors
    )
}

fn calls(rec: &Recorder, verb: Verb, res: &str) -> (u64, u64) {
    let s = rec.snapshot();
    s.calls
        .get(&(verb, res.to_string()))
        .map_or((0, 0), |c| (c.ok, c.errors()))
}

async fn left_over(client: &kube::Client, target: &Target, run_id: &str) -> usize {
    target
        .api(client, None)
        .list(&kube::api::ListParams::default().labels(&format!("{}={run_id}", kapi::LABEL_RUN)))
        .await
        .expect("list")
        .items
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_runs_exact_lifecycles_and_leaves_nothing() {
    closed_loop_runs_exact_lifecycles_and_leaves_nothing_against(fake()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real cluster: set SCALETEST_KUBECONFIG and run with --ignored"]
async fn closed_loop_runs_exact_lifecycles_and_leaves_nothing_on_a_real_cluster() {
    closed_loop_runs_exact_lifecycles_and_leaves_nothing_against(real()).await;
}

async fn closed_loop_runs_exact_lifecycles_and_leaves_nothing_against(c: Cluster) {
    let (client, ns) = client(&c).await;
    let target = kapi::resolve(&client, "configmaps").await.expect("resolve");
    assert!(target.namespaced);
    let id = run_id("closed");
    let rec = Arc::new(Recorder::default());
    let sum = churn::run(
        client.clone(),
        closed(&target, &ns, &id, 3, 20, 2),
        rec.clone(),
        no_stop(),
    )
    .await
    .expect("run");
    assert_eq!(
        (sum.started, sum.completed, sum.failed, sum.deleted),
        (20, 20, 0, 20),
        "{}",
        c.name
    );
    assert_eq!(calls(&rec, Verb::Create, "configmaps"), (20, 0));
    assert_eq!(calls(&rec, Verb::Patch, "configmaps"), (40, 0));
    assert_eq!(calls(&rec, Verb::Delete, "configmaps"), (20, 0));
    assert!(
        rec.snapshot().lateness.is_none(),
        "closed loop has no schedule"
    );
    assert_eq!(left_over(&client, &target, &id).await, 0);
    if let Some(f) = &c.fake {
        // The server saw exactly these calls, and nothing else writing.
        assert_eq!(f.count("create configmaps"), 20);
        assert_eq!(f.count("patch configmaps"), 40);
        assert_eq!(f.count("delete configmaps"), 20);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_follows_the_poisson_schedule_and_times_every_operation() {
    open_loop_follows_the_poisson_schedule_and_times_every_operation_against(fake()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real cluster: set SCALETEST_KUBECONFIG and run with --ignored"]
async fn open_loop_follows_the_poisson_schedule_and_times_every_operation_on_a_real_cluster() {
    open_loop_follows_the_poisson_schedule_and_times_every_operation_against(real()).await;
}

async fn open_loop_follows_the_poisson_schedule_and_times_every_operation_against(c: Cluster) {
    let (client, ns) = client(&c).await;
    let target = kapi::resolve(&client, "configmaps").await.expect("resolve");
    let id = run_id("open");
    let shape: pace::RateShape = "100".parse().expect("rate");
    let d = Duration::from_millis(800);
    // The same seed gives the same schedule: that many lifecycles must start.
    let expected = pace::Pacer::new(shape.clone(), pace::Arrival::Poisson, Some(d), 7)
        .expect("pacer")
        .count() as u64;
    let mut cfg = closed(&target, &ns, &id, 1, 1, 1);
    cfg.mode = Mode::Open {
        shape,
        arrival: pace::Arrival::Poisson,
        seed: 7,
        lifetime: Lifetime::Fixed(Duration::from_millis(200)),
    };
    cfg.duration = Some(d);
    let rec = Arc::new(Recorder::default());
    let sum = churn::run(client.clone(), cfg, rec.clone(), no_stop())
        .await
        .expect("run");
    assert!(expected > 40, "a sensible schedule ({expected})");
    assert_eq!(
        (sum.started, sum.completed),
        (expected, expected),
        "{}",
        c.name
    );
    assert_eq!(calls(&rec, Verb::Create, "configmaps").0, expected);
    assert_eq!(calls(&rec, Verb::Patch, "configmaps").0, expected);
    assert_eq!(calls(&rec, Verb::Delete, "configmaps").0, expected);
    // Each of create, patch and delete had a scheduled time and a measured lateness.
    let late = rec.snapshot().lateness.expect("open loop records lateness");
    assert_eq!(late.len(), 3 * expected);
    // Every object lived ~200 ms, so the run lasted about d + 200 ms, not longer.
    assert!(
        sum.elapsed >= Duration::from_millis(200),
        "{:?}",
        sum.elapsed
    );
    assert_eq!(left_over(&client, &target, &id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_informer_is_told_of_every_create_update_and_delete() {
    the_informer_is_told_of_every_create_update_and_delete_against(fake()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real cluster: set SCALETEST_KUBECONFIG and run with --ignored"]
async fn the_informer_is_told_of_every_create_update_and_delete_on_a_real_cluster() {
    the_informer_is_told_of_every_create_update_and_delete_against(real()).await;
}

async fn the_informer_is_told_of_every_create_update_and_delete_against(c: Cluster) {
    let (client, ns) = client(&c).await;
    let target = kapi::resolve(&client, "configmaps").await.expect("resolve");
    let id = run_id("watch");
    // Second 0 began 3 s ago (as a run's that made its namespaces first).
    let shared = watch::Shared::new_at(std::time::Instant::now() - Duration::from_secs(3));
    let (wtx, wrx) = tokio::sync::watch::channel(false);
    let wcfg = watch::Config {
        target: target.clone(),
        namespace: Some(ns.clone()),
        selector: Some(format!("{}={id}", kapi::LABEL_RUN)),
        workers: 2,
    };
    let task = tokio::spawn(watch::run(client.clone(), wcfg, shared.clone(), wrx));
    shared.wait_synced().await;
    let rec = Arc::new(Recorder::default());
    let sum = churn::run(
        client.clone(),
        closed(&target, &ns, &id, 4, 30, 2),
        rec,
        no_stop(),
    )
    .await
    .expect("run");
    assert_eq!(sum.deleted, 30);
    tokio::time::timeout(Duration::from_secs(20), shared.wait_deletes(30))
        .await
        .expect("every delete is notified");
    wtx.send(true).expect("stop");
    task.await.expect("watch ends");
    let s = shared.stats();
    assert_eq!(s.notify_create.len(), 30, "{}", c.name);
    assert_eq!(s.notify_update.len(), 60);
    assert!(s.seconds.is_empty(), "progress copies carry no seconds");
    // The run's file keeps each timed notification in its second, with its latency.
    let (with_seconds, cut) = shared.report();
    assert_eq!(cut, None);
    let per_second = |key: &str| -> (u64, u64) {
        with_seconds
            .seconds
            .iter()
            .filter_map(|x| x.0.get(key))
            .fold((0, 0), |(n, t), x| (n + x.n, t + x.histogram().len()))
    };
    assert_eq!(per_second(watch::NOTIFY_CREATE), (30, 30));
    assert_eq!(per_second(watch::NOTIFY_UPDATE), (60, 60));
    let first = with_seconds.seconds.iter().position(|s| !s.0.is_empty());
    assert!(first >= Some(3), "counted from the given start: {first:?}");
    assert_eq!((s.applied, s.deleted), (90, 30));
    assert_eq!((s.duplicates, s.relists, s.foreign), (0, 0, 0));
    // Every notification was either handled or coalesced into a queued key.
    assert_eq!(s.processed + s.coalesced, 120);
    assert_eq!(s.queue_wait.len(), s.processed);
    let text = shared.metrics.encode();
    assert!(
        text.contains("scaletest_watch_notifications_total{type=\"create\"} 30"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_outlives_its_history_relists_and_misses_nothing() {
    let c = fake();
    let f = c.fake.as_ref().expect("fake");
    let (client, ns) = client(&c).await;
    let target = kapi::resolve(&client, "configmaps").await.expect("resolve");
    let shared = watch::Shared::new();
    let (wtx, wrx) = tokio::sync::watch::channel(false);
    let wcfg = watch::Config {
        target: target.clone(),
        namespace: Some(ns.clone()),
        selector: None,
        workers: 1,
    };
    let task = tokio::spawn(watch::run(client.clone(), wcfg, shared.clone(), wrx));
    shared.wait_synced().await;
    let rec = Arc::new(Recorder::default());
    churn::run(
        client.clone(),
        closed(&target, &ns, "before", 1, 3, 0),
        rec.clone(),
        no_stop(),
    )
    .await
    .expect("run");
    f.create("configmaps", &ns, json!({"metadata": {"name": "doomed"}}))
        .expect("create");
    tokio::time::timeout(Duration::from_secs(10), shared.wait_deletes(3))
        .await
        .expect("deletes seen");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while shared.stats().applied < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "four notifications applied: {}",
            counts(&shared.stats())
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The server forgets its history and drops the watch: resuming gets 410, then a relist,
    // which brings the object made and reveals the one deleted while the watch was away.
    f.expire_history();
    target
        .api(&client, Some(&ns))
        .delete("doomed", &Default::default())
        .await
        .expect("delete");
    f.create(
        "configmaps",
        &ns,
        json!({"metadata": {"name": "after-expiry"}}),
    )
    .expect("create");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while shared.stats().relists == 0 || shared.stats().deleted < 4 || shared.stats().foreign < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} {:?}",
            counts(&shared.stats()),
            f.calls()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wtx.send(true).expect("stop");
    task.await.expect("watch ends");
    let s = shared.stats();
    assert_eq!((s.relists, s.gone), (1, 1));
    // Before: 3 creates and 3 deletes by churn, and "doomed" (made without churn, so a
    // foreign change). After: "after-expiry" (foreign) arrives with the relist, and the relist
    // reveals that "doomed" is gone.
    assert_eq!((s.deleted, s.foreign), (4, 2), "{}", counts(&s));
    assert_eq!(s.notify_create.len(), 3);
    assert!(f.count("list configmaps") >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_errors_are_counted_by_status() {
    let c = fake();
    let f = c.fake.as_ref().expect("fake");
    let (client, ns) = client(&c).await;
    let target = kapi::resolve(&client, "configmaps").await.expect("resolve");
    f.reject_next(3, 429);
    let rec = Arc::new(Recorder::default());
    let sum = churn::run(
        client.clone(),
        closed(&target, &ns, "throttled", 1, 5, 1),
        rec.clone(),
        no_stop(),
    )
    .await
    .expect("run");
    // The first three creates were refused: those lifecycles failed and made nothing more.
    assert_eq!((sum.started, sum.completed, sum.failed), (5, 2, 3));
    let s = rec.snapshot();
    let create = &s.calls[&(Verb::Create, "configmaps".to_string())];
    assert_eq!((create.ok, create.throttled(), create.errors()), (2, 3, 3));
    assert_eq!(calls(&rec, Verb::Patch, "configmaps"), (2, 0));
    assert_eq!(f.count("create configmaps"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_verb_fails_its_slo_and_the_others_pass() {
    let c = fake();
    let f = c.fake.as_ref().expect("fake");
    let (client, ns) = client(&c).await;
    let target = kapi::resolve(&client, "configmaps").await.expect("resolve");
    f.delay("delete", Duration::from_millis(1100));
    let rec = Arc::new(Recorder::default());
    churn::run(
        client.clone(),
        closed(&target, &ns, "slow", 2, 2, 0),
        rec.clone(),
        no_stop(),
    )
    .await
    .expect("run");
    let mut run = kapi::output::ApiRun::new(Default::default(), 0.0);
    run.calls = rec.snapshot().calls.into_values().collect();
    run.check_slo();
    let verdict: Vec<(Verb, bool)> = run.slo.iter().map(|s| (s.verb, s.pass)).collect();
    assert_eq!(verdict, vec![(Verb::Create, true), (Verb::Delete, false)]);
    assert!(!run.slo_pass());
    let text = kapi::output::render(&run, true);
    assert!(text.contains("FAIL"), "{text}");
}

/// The request log's key ("create configmaps", "update pods/status") of a server-side row.
fn log_key(c: &ServerCalls) -> String {
    let verb = match (c.verb.as_str(), c.scope.as_str()) {
        ("POST", _) => "create",
        ("PATCH" | "APPLY", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", "resource") => "delete",
        ("DELETE", _) => "deletecollection",
        (v, _) => return format!("{} {}", v.to_lowercase(), c.resource),
    };
    let sub = if c.subresource.is_empty() {
        String::new()
    } else {
        format!("/{}", c.subresource)
    };
    format!("{verb} {}{sub}", c.resource)
}

/// Churn against the fake with its /metrics scraped every 50 ms: the server-side table counts
/// exactly what the fake served, per verb and resource, and the delayed creates' percentiles
/// fall in the bucket of their delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_side_table_counts_what_the_server_served_and_times_its_delays() {
    let c = fake();
    let f = c.fake.as_ref().expect("fake");
    let (client, ns) = client(&c).await;
    let target = kapi::resolve(&client, "configmaps").await.expect("resolve");
    // 120 ms: in (0.1, 0.2], whatever the fake adds on a busy machine.
    f.delay("create", Duration::from_millis(120));
    let before = f.calls();
    let scraper = Scraper::start(client.clone(), Duration::from_millis(50)).await;
    let rec = Arc::new(Recorder::default());
    churn::run(
        client.clone(),
        closed(&target, &ns, &run_id("server"), 4, 12, 2),
        rec.clone(),
        no_stop(),
    )
    .await
    .expect("run");
    let sv = scraper.finish().await;
    let served: BTreeMap<String, u64> = f
        .calls()
        .into_iter()
        .filter(|(k, _)| !k.contains(" in "))
        .map(|(k, n)| (k.clone(), n - before.get(&k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(sv.has_metrics(), "{:?}", sv.unavailable);
    assert_eq!(sv.version.as_deref(), Some("v1.28.7"));
    assert!(sv.scrapes >= 2, "{}", sv.scrapes);
    let counted: BTreeMap<String, u64> = sv.calls.iter().map(|c| (log_key(c), c.count)).collect();
    assert_eq!(counted, served);
    assert_eq!(counted["create configmaps"], 12);
    let post = sv
        .calls
        .iter()
        .find(|c| c.verb == "POST")
        .expect("POST row");
    assert_eq!(post.codes.get("201"), Some(&12));
    for p in [post.p50_s, post.p99_s] {
        let p = p.expect("timed");
        assert!(
            (0.1..=0.2).contains(&p),
            "{p} outside the 120 ms delay's bucket"
        );
    }
    let patch = sv.calls.iter().find(|c| c.verb == "PATCH").expect("PATCH");
    assert!(patch.p99_s.expect("timed") <= 0.1, "{patch:?}");
    assert!(sv
        .etcd
        .iter()
        .any(|e| e.operation == "create" && e.count == 12));
    assert_eq!(sv.apf[0].priority_level, "global-default");
    // The server judges the SLO: every call in one window, all within it.
    assert!(
        sv.slo.iter().all(|s| s.windows == 1 && s.pass),
        "{:?}",
        sv.slo
    );
    let mut run = kapi::output::ApiRun::new(Default::default(), 0.0);
    run.server = Some(sv);
    let text = kapi::output::render(&run, true);
    assert!(text.contains("POST configmaps (resource)"), "{text}");
    assert!(text.contains("SLO, server latency"), "{text}");
}

/// A forbidden /metrics: one warning, no server figures, and the SLO stays the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_metrics_endpoint_leaves_a_warning_and_the_client_slo() {
    let api = FakeApi::start_with(kubefake::Options {
        forbid_metrics: true,
        ..Default::default()
    });
    let dir = std::env::temp_dir().join("scaletest-kapi-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let c = Cluster {
        name: "fake",
        kubeconfig: api.kubeconfig(&dir),
        fake: None,
    };
    let (client, _) = client(&c).await;
    let sv = Scraper::start(client, Duration::from_millis(50))
        .await
        .finish()
        .await;
    assert!(!sv.has_metrics());
    assert_eq!(sv.version.as_deref(), Some("v1.28.7"));
    let w = sv.warning().expect("warning");
    assert!(
        w.starts_with("server metrics: GET /metrics: 403 Forbidden: forbidden: User"),
        "{w}"
    );
    assert!(
        w.contains("nonResourceURL /metrics") && !w.contains('\n'),
        "{w}"
    );
    let mut run = kapi::output::ApiRun::new(Default::default(), 0.0);
    run.server = Some(sv);
    let text = kapi::output::render(&run, true);
    assert!(
        text.contains("No server metrics: the SLO check is the client-side approximation."),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_are_found_by_discovery_and_churned_from_a_template() {
    let c = fake();
    let f = c.fake.as_ref().expect("fake");
    f.register(Resource {
        group: "wardle.example.com".into(),
        version: "v1alpha1".into(),
        plural: "flunders".into(),
        kind: "Flunder".into(),
        namespaced: true,
    });
    let (client, ns) = client(&c).await;
    let dir = std::env::temp_dir().join(format!("scaletest-flunder-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("flunder.yaml");
    std::fs::write(
        &path,
        "apiVersion: wardle.example.com/v1alpha1\nkind: Flunder\nmetadata:\n  labels:\n    app: x\nspec:\n  reference: y\n",
    )
    .expect("write");
    let template = kapi::load_template(&path).expect("template");
    let target = kapi::resolve(&client, "wardle.example.com/v1alpha1/Flunder")
        .await
        .expect("resolve");
    assert_eq!(
        (target.ar.plural.as_str(), target.namespaced),
        ("flunders", true)
    );
    assert_eq!(target.display(), "flunders.wardle.example.com");
    let mut cfg = closed(&target, &ns, "flunders", 2, 6, 1);
    cfg.template = template;
    let rec = Arc::new(Recorder::default());
    let sum = churn::run(client.clone(), cfg, rec.clone(), no_stop())
        .await
        .expect("run");
    assert_eq!(sum.completed, 6);
    assert_eq!(
        calls(&rec, Verb::Create, "flunders.wardle.example.com"),
        (6, 0)
    );
    assert_eq!(f.count("create flunders"), 6);
    // Unknown resources are the user's to fix.
    for bad in [
        "wardle.example.com/v1alpha1/Nope",
        "nope.example.com/v1/Thing",
        "a/b/c/d",
    ] {
        let e = kapi::resolve(&client, bad).await.expect_err(bad);
        assert!(matches!(e, kapi::Error::Usage(_)), "{bad}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_only_what_the_named_run_left_behind() {
    cleanup_removes_only_what_the_named_run_left_behind_against(fake()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real cluster: set SCALETEST_KUBECONFIG and run with --ignored"]
async fn cleanup_removes_only_what_the_named_run_left_behind_on_a_real_cluster() {
    cleanup_removes_only_what_the_named_run_left_behind_against(real()).await;
}

async fn cleanup_removes_only_what_the_named_run_left_behind_against(c: Cluster) {
    let (client, ns) = client(&c).await;
    let target = kapi::resolve(&client, "configmaps").await.expect("resolve");
    let id = run_id("crashed");
    let made = churn::create_namespaces(&client, &id, 2)
        .await
        .expect("namespaces");
    let api = |n: &str| target.api(&client, Some(n));
    // As a crashed run leaves them: labelled objects in its namespaces and in the default.
    for (i, n) in made.iter().chain([&ns]).enumerate() {
        let o: kube::core::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("left-{i}"), "labels": {kapi::LABEL_RUN: id}}}))
        .expect("object");
        api(n)
            .create(&Default::default(), &o)
            .await
            .expect("create");
    }
    let other: kube::core::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{id}-other"), "labels": {kapi::LABEL_RUN: "someone-else"}}}))
    .expect("object");
    api(&ns)
        .create(&Default::default(), &other)
        .await
        .expect("create");
    let cleaned = churn::cleanup(&client, &target, Some(&id))
        .await
        .expect("cleanup");
    assert_eq!((cleaned.objects, cleaned.namespaces), (3, 2), "{}", c.name);
    assert_eq!(left_over(&client, &target, &id).await, 0);
    // The other run's object is still there.
    api(&ns)
        .get(&format!("{id}-other"))
        .await
        .expect("untouched");
    api(&ns)
        .delete(&format!("{id}-other"), &Default::default())
        .await
        .expect("tidy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_stale_writes_conflict_and_field_selectors_match() {
    lists_page_stale_writes_conflict_and_field_selectors_match_against(fake()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real cluster: set SCALETEST_KUBECONFIG and run with --ignored"]
async fn lists_page_stale_writes_conflict_and_field_selectors_match_on_a_real_cluster() {
    lists_page_stale_writes_conflict_and_field_selectors_match_against(real()).await;
}

async fn lists_page_stale_writes_conflict_and_field_selectors_match_against(c: Cluster) {
    let (client, ns) = client(&c).await;
    let id = run_id("pages");
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), &ns);
    for i in 0..5 {
        let cm = serde_json::from_value(
            json!({"metadata": {"name": format!("{id}-p{i}"), "labels": {"page": id}}}),
        )
        .expect("cm");
        api.create(&Default::default(), &cm).await.expect("create");
    }
    let mut names = Vec::new();
    let mut lp = kube::api::ListParams::default()
        .labels(&format!("page={id}"))
        .limit(2);
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.expect("list");
        pages += 1;
        names.extend(page.items.iter().filter_map(|o| o.metadata.name.clone()));
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
            _ => break,
        }
    }
    let want: Vec<String> = (0..5).map(|i| format!("{id}-p{i}")).collect();
    assert_eq!((names, pages), (want, 3), "{}", c.name);
    // A replace with a stale resourceVersion is refused with 409.
    let p0 = format!("{id}-p0");
    let mut cm = api.get(&p0).await.expect("get");
    api.patch(
        &p0,
        &Default::default(),
        &kube::api::Patch::Merge(json!({"data": {"a": "1"}})),
    )
    .await
    .expect("patch");
    cm.data = Some([("b".to_string(), "2".to_string())].into());
    match api.replace(&p0, &Default::default(), &cm).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409),
        other => panic!("expected 409, got {other:?}"),
    }
    // Leases, found by a field selector.
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), &ns);
    let lease = format!("{id}-node-1");
    let l = serde_json::from_value(
        json!({"metadata": {"name": lease}, "spec": {"holderIdentity": lease}}),
    )
    .expect("lease");
    leases.create(&Default::default(), &l).await.expect("lease");
    let found = leases
        .list(&kube::api::ListParams::default().fields(&format!("metadata.name={lease}")))
        .await
        .expect("list");
    assert_eq!(found.items.len(), 1);
    leases
        .delete(&lease, &Default::default())
        .await
        .expect("tidy");
    api.delete_collection(
        &Default::default(),
        &kube::api::ListParams::default().labels(&format!("page={id}")),
    )
    .await
    .expect("tidy");
    assert!(api.list(&lp.continue_token("")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_subresource_changes_only_status() {
    let c = fake();
    let (client, ns) = client(&c).await;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, &ns);
    let p = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"nodeName": "hollow-1", "containers": [{"name": "c", "image": "i"}]}}))
    .expect("pod");
    pods.create(&Default::default(), &p).await.expect("create");
    let patch = json!({"status": {"phase": "Running"}, "spec": {"nodeName": "elsewhere"}});
    let after = pods
        .patch_status("p", &Default::default(), &kube::api::Patch::Merge(&patch))
        .await
        .expect("patch status");
    let phase = after.status.and_then(|s| s.phase);
    let node = after.spec.and_then(|s| s.node_name);
    assert_eq!(
        (phase.as_deref(), node.as_deref()),
        (Some("Running"), Some("hollow-1"))
    );
    // And the main resource leaves status alone; the pod is found by spec.nodeName.
    let found = pods
        .list(&kube::api::ListParams::default().fields("spec.nodeName=hollow-1"))
        .await
        .expect("list");
    assert_eq!(found.items.len(), 1);
    let again = pods
        .patch(
            "p",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"status": {"phase": "Failed"}})),
        )
        .await
        .expect("patch");
    assert_eq!(
        again.status.and_then(|s| s.phase).as_deref(),
        Some("Running")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_side_limit_spaces_calls_at_its_rate_after_the_burst() {
    let c = fake();
    let (client, ns) = client(&c).await;
    let target = kapi::resolve(&client, "configmaps").await.expect("resolve");
    // 10 lifecycles × 2 calls = 20 calls at 100/s with a burst of 5: at least 150 ms.
    let mut cfg = closed(&target, &ns, "limited", 4, 10, 0);
    cfg.limit = Some((100.0, 5));
    let rec = Arc::new(Recorder::default());
    let sum = churn::run(client.clone(), cfg, rec.clone(), no_stop())
        .await
        .expect("run");
    assert_eq!(sum.completed, 10);
    assert!(
        sum.elapsed >= Duration::from_millis(150),
        "{:?}",
        sum.elapsed
    );
    assert_eq!(rec.totals(), (20, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connector_reads_the_stream_limit_the_server_advertises() {
    let dir = std::env::temp_dir().join("scaletest-kapi-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    // The fake copies kube-apiserver v1.28.7 (100); 250 as servers before 1.28.3 advertise.
    for (opts, want) in [
        (kubefake::Options::default(), 100),
        (
            kubefake::Options {
                max_concurrent_streams: 250,
                ..Default::default()
            },
            250,
        ),
    ] {
        let api = FakeApi::start_with(opts);
        let kc = api.kubeconfig(&dir);
        let config = kapi::config(Some(&kc), None, Some(Duration::from_secs(10)), false)
            .await
            .expect("config");
        let conn = kapi::conn::Connector::new(&config).expect("connector");
        assert_eq!(conn.max_streams().await.expect("probe"), Some(want));
        assert_eq!(conn.opened.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
    // Nothing listening: one error, not a hang.
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let kc = kubefake::write_kubeconfig(&dir, "gone", &format!("http://{gone}"));
    let config = kapi::config(Some(&kc), None, Some(Duration::from_secs(10)), false)
        .await
        .expect("config");
    let e = kapi::conn::Connector::new(&config)
        .expect("connector")
        .max_streams()
        .await
        .expect_err("nothing listens");
    assert!(
        format!("{e}").contains("cannot reach the API server"),
        "{e}"
    );
}
