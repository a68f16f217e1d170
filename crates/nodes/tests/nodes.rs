//! Hollow nodes against the in-process fake API server (over HTTP/2, as they reach a real
//! one), with short intervals; and, ignored unless asked for (`--ignored`, with
//! `SCALETEST_KUBECONFIG` naming a cluster with a scheduler and controller-manager), a
//! Deployment scheduled onto hollow nodes.

// Tests may print (see clippy.toml).
#![allow(clippy::disallowed_macros)]

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kapi::stats::Verb;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use kubefake::FakeApi;
use nodes::client::{Pool, Transport};
use nodes::{Config, Intervals, PodTiming, WatchMode};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use testsupport::wait_until_async as wait_until;

const H2: Transport = Transport::Http2 {
    streams_per_connection: Some(50),
};

/// The tests' directory for kubeconfigs, made by whichever test comes first.
fn dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("scaletest-nodes-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn fake() -> (FakeApi, std::path::PathBuf) {
    let api = FakeApi::start();
    let kc = api.kubeconfig(&dir());
    (api, kc)
}

async fn kube_config(kc: &Path) -> kube::Config {
    kapi::config(Some(kc), None, Some(Duration::from_secs(10)), false)
        .await
        .expect("config")
}

/// A config with short intervals for tests.
fn quick(n: usize, prefix: &str) -> Config {
    let mut c = Config::new(n);
    c.prefix = prefix.into();
    c.intervals = Intervals {
        lease_renew: Duration::from_millis(200),
        lease_duration: Duration::from_secs(1),
        status_update: Duration::from_millis(100),
        status_report: Duration::from_millis(500),
        jitter: 0.04,
    };
    c.pods = PodTiming {
        run_delay: Duration::from_millis(300),
        job_duration: Duration::from_millis(300),
    };
    c.retry_wait = Duration::from_millis(50);
    c.call_timeout = Duration::from_secs(10);
    c
}

async fn start(kc: &Path, cfg: Config) -> Result<nodes::Running, nodes::Error> {
    let k = kube_config(kc).await;
    let pool = Pool::connect(&k, H2, cfg.watches(), cfg.calls_at_once()).await?;
    nodes::start(cfg, pool).await
}

fn pod(api: &FakeApi, name: &str) -> Option<Value> {
    api.objects("pods")
        .into_iter()
        .find(|p| p["metadata"]["name"] == name)
}

fn new_pod(api: &FakeApi, name: &str, labels: Value, sent_ns: Option<u128>) {
    let mut meta = json!({"name": name, "labels": labels});
    if let Some(ns) = sent_ns {
        meta["annotations"] = json!({(kapi::ANN_SENT): ns.to_string()});
    }
    api.create(
        "pods",
        "default",
        json!({"metadata": meta, "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}),
    )
    .expect("create pod");
}

/// Play the scheduler: POST pods/NAME/binding.
async fn bind(client: &kube::Client, name: &str, node: &str) -> Result<(), kube::Error> {
    let body = json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    Api::<Pod>::namespaced(client.clone(), "default")
        .create_subresource::<Value, Value>("binding", name, &PostParams::default(), &body)
        .await
        .map(|_| ())
}

async fn client(kc: &Path) -> kube::Client {
    kube::Client::try_from(kube_config(kc).await).expect("client")
}

fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_register_with_status_and_renew_leases_on_schedule() {
    let (api, kc) = fake();
    let running = start(&kc, quick(5, "hn-")).await.expect("start");
    let nodes = api.objects("nodes");
    assert_eq!(nodes.len(), 5);
    let n = nodes
        .iter()
        .find(|n| n["metadata"]["name"] == "hn-3")
        .expect("hn-3");
    assert_eq!(n["metadata"]["labels"]["scaletest.dev/hollow"], "true");
    assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], "hn-3");
    assert_eq!(n["status"]["capacity"]["pods"], "110");
    assert_eq!(n["status"]["allocatable"]["cpu"], "8");
    let conds: Vec<(String, String)> = n["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        conds,
        [
            ("MemoryPressure", "False"),
            ("DiskPressure", "False"),
            ("PIDPressure", "False"),
            ("Ready", "True")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(n["status"]["addresses"][0]["type"], "InternalIP");
    assert_eq!(n["spec"]["podCIDR"], "10.0.3.0/24");
    // Leases: created once each, then renewed by Update every 200 ms (±4 %).
    wait_until("5 leases", Duration::from_secs(5), || {
        api.objects("leases").len() == 5
    })
    .await;
    let lease = &api.objects("leases")[0];
    assert_eq!(lease["metadata"]["namespace"], "kube-node-lease");
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(lease["spec"]["holderIdentity"], lease["metadata"]["name"]);
    let t0 = Instant::now();
    let base = api.count("update leases");
    wait_until("50 lease renewals", Duration::from_secs(10), || {
        api.count("update leases") >= base + 50
    })
    .await;
    let took = t0.elapsed();
    // 50 renewals of 5 nodes = 10 periods of 200-208 ms: not faster, not much slower.
    assert!(
        took >= Duration::from_millis(1_700),
        "renewed too often: 50 in {took:?}"
    );
    assert!(
        took <= Duration::from_millis(3_500),
        "renewed too rarely: 50 in {took:?}"
    );
    assert_eq!(
        api.count("create leases"),
        5,
        "a lease is created once, then updated"
    );
    assert_eq!(
        api.count("get leases"),
        5,
        "a GET before the first create only: renewals need none"
    );
    // Node status: patched at registration + every 500 ms when unchanged (computed every 100 ms).
    let patches = api.count("patch nodes/status");
    assert!(patches >= 5, "{patches} status patches");
    // The fake counts a renewal when it arrives, the nodes when its answer does.
    wait_until("50 renewals answered", Duration::from_secs(5), || {
        running.report().calls_of("update", "leases") >= 50
    })
    .await;
    let run = running.stop(false).await;
    assert_eq!(run.leases_held, 5);
    // Watches: per node a kubelet's 3 and a proxy's 3, plus the startup informer.
    assert_eq!(
        api.count("watch pods"),
        6,
        "5 nodes' pod watches + the startup informer"
    );
    assert_eq!(api.count("watch endpointslices"), 5);
    assert_eq!(
        api.count("watch services"),
        10,
        "a kubelet's and a proxy's per node"
    );
    assert_eq!(api.count("watch nodes"), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_with_an_ip_jobs_succeed_and_deleted_pods_are_finalized() {
    let (api, kc) = fake();
    let c = client(&kc).await;
    let running = start(&kc, quick(2, "pl-")).await.expect("start");
    new_pod(&api, "web", json!({"app": "web"}), None);
    new_pod(
        &api,
        "job",
        json!({"batch.kubernetes.io/job-name": "j"}),
        None,
    );
    bind(&c, "web", "pl-0").await.expect("bind web");
    bind(&c, "job", "pl-1").await.expect("bind job");
    // A second binding is a conflict, as the API server says.
    match bind(&c, "web", "pl-1").await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409),
        other => panic!("expected 409, got {other:?}"),
    }
    wait_until("web Running", Duration::from_secs(10), || {
        pod(&api, "web").is_some_and(|p| phase(&p) == "Running")
    })
    .await;
    let web = pod(&api, "web").expect("web");
    assert_eq!(web["status"]["podIP"], "10.0.0.1");
    assert_eq!(
        web["status"]["hostIP"], "127.0.0.1",
        "the node's InternalIP"
    );
    let ready = web["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("Ready condition")
        .clone();
    assert_eq!(ready["status"], "True");
    let sched = web["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "PodScheduled");
    assert!(
        sched,
        "the binding's PodScheduled condition survives the kubelet's patches"
    );
    assert_eq!(web["status"]["containerStatuses"][0]["ready"], true);
    wait_until("job Succeeded", Duration::from_secs(10), || {
        pod(&api, "job").is_some_and(|p| phase(&p) == "Succeeded")
    })
    .await;
    // Deleting: the API server only marks it (deletionTimestamp); the kubelet stops its
    // containers, writes their final status and deletes it with grace 0. A watch sees each
    // step, as a controller waiting for the pod to go would.
    let pods = Api::<Pod>::namespaced(c.clone(), "default");
    let marked = pods
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete")
        .left()
        .expect("a bound, running pod is only marked for deletion");
    assert!(marked.metadata.deletion_timestamp.is_some());
    let from = marked.metadata.resource_version.clone().expect("version");
    let wp = kube::api::WatchParams::default()
        .fields("metadata.name=web")
        .timeout(10);
    let events = pods.watch(&wp, &from).await.expect("watch web");
    let mut history: Vec<(&str, Pod)> = Vec::new();
    futures::pin_mut!(events);
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("the kubelet acts on the deletion in time")
    {
        match ev.expect("watch event") {
            kube::api::WatchEvent::Modified(p) => history.push(("MODIFIED", p)),
            kube::api::WatchEvent::Deleted(p) => {
                history.push(("DELETED", p));
                break;
            }
            _ => {}
        }
    }
    let (last, gone) = history.last().expect("events");
    assert_eq!(*last, "DELETED", "web is deleted by its kubelet");
    let st = gone.status.as_ref().expect("status");
    assert_eq!(
        st.phase.as_deref(),
        Some("Failed"),
        "the kubelet's final status (containers killed) is written before the delete"
    );
    let cs = &st.container_statuses.as_ref().expect("container statuses")[0];
    assert!(cs
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .is_some());
    assert!(pod(&api, "web").is_none());
    wait_until("the kubelets' counts", Duration::from_secs(5), || {
        running.report().pods.finalized == 1
    })
    .await;
    let run = running.stop(false).await;
    assert_eq!(
        (
            run.pods.admitted,
            run.pods.running,
            run.pods.succeeded,
            run.pods.finalized
        ),
        (2, 2, 1, 1)
    );
    assert_eq!(
        run.calls_of("patch", "pods/status"),
        6,
        "Pending and Running ×2, Succeeded (the Job's), Failed (web's, killed)"
    );
    assert_eq!(
        run.calls_of("delete", "pods"),
        1,
        "the kubelet's grace-0 delete"
    );
    assert_eq!(api.count("delete pods"), 2, "ours, then the kubelet's");
    assert_eq!(
        api.count("delete pods gracePeriodSeconds=0"),
        1,
        "the kubelet's delete asks for grace 0 (ours asks for none)"
    );
    assert!(api.count("create events") > 0, "kubelet events are posted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_over_capacity_are_rejected_as_admission_rejects_them() {
    let (api, kc) = fake();
    let c = client(&kc).await;
    let mut cfg = quick(1, "cap-");
    cfg.shape.pods = 2;
    let running = start(&kc, cfg).await.expect("start");
    for name in ["a", "b", "c"] {
        new_pod(&api, name, json!({}), None);
        bind(&c, name, "cap-0").await.expect("bind");
    }
    wait_until("2 Running, 1 Failed", Duration::from_secs(10), || {
        let ps: Vec<String> = ["a", "b", "c"]
            .iter()
            .filter_map(|n| pod(&api, n))
            .map(|p| phase(&p).to_string())
            .collect();
        ps.iter().filter(|p| *p == "Running").count() == 2
            && ps.iter().filter(|p| *p == "Failed").count() == 1
    })
    .await;
    let failed = ["a", "b", "c"]
        .iter()
        .filter_map(|n| pod(&api, n))
        .find(|p| phase(p) == "Failed")
        .unwrap();
    assert_eq!(failed["status"]["reason"], "OutOfpods");
    assert!(failed["status"]["message"]
        .as_str()
        .unwrap()
        .contains("used: 2, capacity: 2"));
    wait_until("the kubelets' counts", Duration::from_secs(5), || {
        running.report().pods.running == 2
    })
    .await;
    let run = running.stop(false).await;
    assert_eq!(
        (run.pods.rejected, run.pods.running, run.pods.active),
        (1, 2, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_latency_matches_the_known_delays() {
    let (api, kc) = fake();
    let c = client(&kc).await;
    let mut cfg = quick(1, "lat-");
    cfg.pods.run_delay = Duration::from_millis(500);
    let running = start(&kc, cfg).await.expect("start");
    // Created 800 ms ago, the scheduler's known delay: a precise sent-at in the past, as
    // `api churn` writes one, then bound at once.
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let sent = now() - 0.8;
    new_pod(&api, "p", json!({}), Some((sent * 1e9) as u128));
    let binding = now();
    bind(&c, "p", "lat-0").await.expect("bind");
    let bound = now();
    wait_until("the startup measured", Duration::from_secs(10), || {
        !running.report().startup.pod_startup.is_empty()
    })
    .await;
    let measured = now();
    let run = running.stop(false).await;
    let s = |h: &hdrhistogram::Histogram<u64>| h.max() as f64 / 1e6;
    // What the test saw pass bounds each phase from above; the histograms' 3 significant
    // figures may add 0.1 %.
    let within = |v: f64, most: f64| v <= most * 1.002 + 1e-6;
    let st = &run.startup;
    let startup = s(&st.pod_startup);
    assert!(
        startup >= 0.8 + 0.5 - 1e-6 && within(startup, measured - sent),
        "pod_startup {startup} s, expected 0.8 + 0.5 s and at most the {} s the test saw",
        measured - sent
    );
    // Running comes at least the run delay after the binding was asked for.
    assert!(
        within(s(&st.run_to_watch), measured - binding - 0.5),
        "running → seen {} s",
        s(&st.run_to_watch)
    );
    // Scheduled is the binding's whole second, no later than the binding itself.
    assert!(
        within(s(&st.create_to_schedule), bound - sent),
        "{}",
        s(&st.create_to_schedule)
    );
    let sum = s(&st.create_to_schedule) + s(&st.schedule_to_run) + s(&st.run_to_watch);
    assert!(
        (sum - startup).abs() < 0.01,
        "the phases add up: {sum} vs {startup}"
    );
    let slo = run.slo.clone().expect("checked");
    assert!(slo.pass && slo.pods == 1);
    // The second it was seen keeps the same measurement.
    let seconds: Vec<&kapi::series::Tally> = run
        .startup_seconds
        .iter()
        .filter_map(|s| s.0.get(nodes::startup::POD_STARTUP))
        .collect();
    assert_eq!(seconds.len(), 1);
    assert_eq!(seconds[0].n, 1);
    assert_eq!(seconds[0].histogram().max(), st.pod_startup.max());
    let text = nodes::report::render(&run);
    assert!(
        text.contains("pod_startup")
            && text.contains(
                "Pod startup SLO, approximated (p99 ≤ 5s over the run, not per cluster-day)"
            ),
        "{text}"
    );
    assert!(nodes::report::metrics(&run)
        .contains("scaletest_pod_startup_latency_seconds_count{phase=\"pod_startup\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_hollow_nodes_and_their_leases_and_nothing_else() {
    let (api, kc) = fake();
    api.create("nodes", "", json!({"metadata": {"name": "real-node"}}))
        .expect("node");
    api.create(
        "leases",
        "kube-node-lease",
        json!({"metadata": {"name": "real-node"}, "spec": {"holderIdentity": "real-node"}}),
    )
    .expect("lease");
    let running = start(&kc, quick(3, "cl-")).await.expect("start");
    wait_until("3 hollow leases", Duration::from_secs(5), || {
        api.objects("leases").len() == 4
    })
    .await;
    running.stop(false).await;
    let c = client(&kc).await;
    let cleaned = nodes::cleanup(&c, None).await.expect("cleanup");
    assert_eq!((cleaned.nodes, cleaned.leases), (3, 3));
    let names = |plural: &str| -> Vec<String> {
        api.objects(plural)
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("nodes"), ["real-node"]);
    assert_eq!(names("leases"), ["real-node"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_with_one_line_and_leaves_nothing_behind() {
    let (api, kc) = fake();
    // A name taken by a node that is not ours.
    api.create("nodes", "", json!({"metadata": {"name": "bad-1"}}))
        .expect("node");
    let e = start(&kc, quick(3, "bad-")).await.err().expect("a clash");
    let msg = e.to_string();
    assert!(
        matches!(e, nodes::Error::Usage(_))
            && msg.contains("\"bad-1\" exists and is not a hollow node"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    assert_eq!(api.objects("nodes").len(), 1, "nothing created");
    assert_eq!(api.count("create nodes"), 0);
    // No nodes.
    let e = start(&kc, quick(0, "z-")).await.err().expect("0 nodes");
    assert!(e.to_string().contains("at least 1"));
    // An API server that is not there.
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = dir();
    let kc2 = dir.join(format!("kubeconfig-gone-{}", gone.port()));
    std::fs::write(&kc2, format!("apiVersion: v1\nkind: Config\nclusters:\n- name: g\n  cluster:\n    server: http://{gone}\n\
        contexts:\n- name: g\n  context:\n    cluster: g\n    user: g\ncurrent-context: g\nusers:\n- name: g\n  user: {{}}\n")).unwrap();
    let e = start(&kc2, quick(2, "x-"))
        .await
        .err()
        .expect("unreachable");
    // Found by the pool's probe of the server's HTTP/2 stream limit, before any call.
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "cannot reach the API server: connect to http://{gone}/: "
        )) && msg.contains("Connection refused")
            && !msg.contains('\n'),
        "{msg}"
    );
    // A missing RBAC permission: creating nodes is forbidden (the first create is refused,
    // the others were allowed): one line naming it, and the nodes created are deleted again.
    api.reject_next(1, 403);
    let e = start(&kc, quick(4, "rbac-"))
        .await
        .err()
        .expect("forbidden");
    let msg = e.to_string();
    assert!(
        msg.starts_with("cannot register nodes: forbidden (403), a missing RBAC permission")
            && msg.contains("cannot create resource \"nodes\""),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    wait_until("nothing left behind", Duration::from_secs(5), || {
        !api.objects("nodes")
            .iter()
            .chain(api.objects("leases").iter())
            .any(|n| n["metadata"]["name"].as_str().unwrap().starts_with("rbac-"))
    })
    .await;
    // 429s (API Priority and Fairness) are retried with backoff and counted.
    api.reject_next(3, 429);
    let running = start(&kc, quick(2, "ok-")).await.expect("start after 429s");
    let run = running.stop(false).await;
    assert_eq!(run.retried_429, 3);
    assert_eq!(
        api.objects("nodes")
            .iter()
            .filter(|n| n["metadata"]["name"].as_str().unwrap().starts_with("ok-"))
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_watch_mode_runs_pods_with_one_watch_for_all_nodes() {
    let (api, kc) = fake();
    let c = client(&kc).await;
    let mut cfg = quick(20, "sh-");
    cfg.watch = WatchMode::Shared;
    let running = start(&kc, cfg).await.expect("start");
    new_pod(&api, "s", json!({}), None);
    bind(&c, "s", "sh-17").await.expect("bind");
    wait_until("s Running", Duration::from_secs(10), || {
        pod(&api, "s").is_some_and(|p| phase(&p) == "Running")
    })
    .await;
    let run = running.stop(false).await;
    assert_eq!(run.info.watch, "shared");
    assert_eq!(
        api.count("watch pods"),
        2,
        "the shared pod watch and the startup informer"
    );
    assert_eq!(api.count("watch nodes"), 0);
}

/// The API server's view of a hollow-node run, scraped through the run's client: the lease
/// renewals it counted are the ones the fake served, and the report shows them after the
/// client's table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_own_counts_of_a_run_are_what_it_served() {
    let (api, kc) = fake();
    let c = client(&kc).await;
    let before = api.count("update leases");
    let scraper = kapi::server_metrics::Scraper::start(c.clone(), Duration::from_millis(100)).await;
    let running = start(&kc, quick(5, "sm-")).await.expect("start");
    wait_until("a few renewals", Duration::from_secs(10), || {
        api.count("update leases") >= before + 10
    })
    .await;
    let mut run = running.stop(false).await;
    let sv = scraper.finish().await;
    let served = api.count("update leases") - before;
    let renewals = sv
        .calls
        .iter()
        .find(|c| c.verb == "PUT" && c.resource == "leases.coordination.k8s.io")
        .expect("lease renewals counted");
    assert_eq!(renewals.count, served);
    assert_eq!(renewals.scope, "resource");
    run.server = Some(sv);
    let text = nodes::report::render(&run);
    assert!(
        text.contains("PUT leases.coordination.k8s.io (resource)"),
        "{text}"
    );
}

/// A stop waits for the heartbeats in flight: every lease renewal the server took is in the
/// report (each renewal here takes 400 ms, so at the stop every node has one on its way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_waits_for_the_renewals_in_flight() {
    let (api, kc) = fake();
    api.delay("update", Duration::from_millis(400));
    let before = api.count("update leases");
    let running = start(&kc, quick(5, "inflight-")).await.expect("start");
    wait_until("a few renewals", Duration::from_secs(10), || {
        api.count("update leases") >= before + 10
    })
    .await;
    let run = running.stop(false).await;
    let reported: u64 = run
        .calls
        .iter()
        .filter(|c| c.verb == Verb::Update && c.resource == "leases")
        .map(|c| c.total())
        .sum();
    assert_eq!(reported, api.count("update leases") - before);
}

/// Issue 21: kube-apiserver ≥ 1.28.3 allows 100 streams per HTTP/2 connection, and so does
/// the fake. 40 nodes with proxies open 241 watches, 100 per connection at the flag's default:
/// no call may wait behind them, so every lease is renewed and a bound pod runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_never_wait_behind_watches_at_the_real_servers_stream_limit() {
    let (api, kc) = fake();
    let c = client(&kc).await;
    let n = 40;
    let cfg = quick(n, "full-");
    let watches = cfg.watches();
    assert_eq!(watches, 241, "6 per node and the startup informer");
    let k = kube_config(&kc).await;
    // The flag's old default: more than the server's 100 less a tenth.
    let t = Transport::Http2 {
        streams_per_connection: Some(100),
    };
    let pool = Pool::connect(&k, t, watches, cfg.calls_at_once())
        .await
        .expect("pool");
    assert_eq!(
        pool.warning(),
        Some(
            "--streams-per-connection 100: the server allows 100 streams per HTTP/2 \
             connection; using 90, a tenth below its limit"
        )
    );
    // 241 watches at 90 a connection; 256 calls and 64 events at once at 90 a connection.
    assert_eq!(pool.len(), 3 + 4);
    let running = nodes::start(cfg, pool).await.expect("start");
    // Every watch open (the fake counts one when its request arrives).
    wait_until("every watch open", Duration::from_secs(10), || {
        let opened: u64 = api
            .calls()
            .iter()
            .filter(|(k, _)| k.starts_with("watch ") && !k.contains(" in "))
            .map(|(_, v)| v)
            .sum();
        opened == watches as u64
    })
    .await;
    // From here on, every lease renewed twice: two renewTimes after the one first seen.
    let mut seen: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    wait_until("every lease renewed twice", Duration::from_secs(10), || {
        for l in api.objects("leases") {
            let name = l["metadata"]["name"].as_str().unwrap_or("").to_string();
            let t = l["spec"]["renewTime"].as_str().unwrap_or("").to_string();
            seen.entry(name).or_default().insert(t);
        }
        seen.len() == n && seen.values().all(|ts| ts.len() >= 3)
    })
    .await;
    new_pod(&api, "w", json!({}), None);
    bind(&c, "w", "full-39").await.expect("bind");
    wait_until("w Running", Duration::from_secs(10), || {
        pod(&api, "w").is_some_and(|p| phase(&p) == "Running")
    })
    .await;
    let run = running.stop(false).await;
    assert_eq!(run.leases_held, n);
    assert_eq!(run.stream_waits, Default::default(), "no call waited");
    assert_eq!(run.info.connections, 7);
}

/// A call that finds every stream of the call connections taken waits and is counted apart:
/// sent once a stream frees, or never sent (and in no call count) when none frees in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_waits_for_a_stream_is_counted_apart_from_no_answer() {
    use k8s_openapi::api::core::v1::Namespace;
    use nodes::traffic::Traffic;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;
    // 2 streams per connection: 1 to use; a pool sized for 1 call at once: one connection.
    let api = FakeApi::start_with(kubefake::Options {
        max_concurrent_streams: 2,
        ..Default::default()
    });
    let dir = dir();
    let k = kube_config(&api.kubeconfig(&dir)).await;
    let t = Transport::Http2 {
        streams_per_connection: None,
    };
    let pool = Arc::new(Pool::connect(&k, t, 1, 1).await.expect("pool"));
    assert_eq!(
        pool.describe(),
        "http/2 (the server allows 2 streams per connection): ≤ 1 watches on each of 1 \
         connections, calls on 1 of their own (≤ 1 streams each)"
    );
    api.delay("get", Duration::from_secs(1));
    let patient = Arc::new(Traffic::new(
        8,
        Duration::from_millis(50),
        Duration::from_secs(5),
    ));
    let hasty = Traffic::new(8, Duration::from_millis(50), Duration::from_millis(200));
    let get = |c: kube::Client| async move { Api::<Namespace>::all(c).get("default").await };
    let first = tokio::spawn({
        let (pool, patient) = (pool.clone(), patient.clone());
        async move { patient.call(&pool, Verb::Get, "namespaces", get).await }
    });
    wait_until(
        "the first call at the server",
        Duration::from_secs(5),
        || api.count("get namespaces") == 1,
    )
    .await;
    // Waits, then is sent after the first.
    let second = tokio::spawn({
        let (pool, patient) = (pool.clone(), patient.clone());
        async move { patient.call(&pool, Verb::Get, "namespaces", get).await }
    });
    // Waits 200 ms of the first's second: never sent.
    let e = hasty
        .call(&pool, Verb::Get, "namespaces", get)
        .await
        .expect_err("no stream in 200 ms");
    assert_eq!(
        e.to_string(),
        "ServiceError: no HTTP/2 stream free in 200ms: not sent"
    );
    assert!(first.await.expect("join").is_ok());
    assert!(second.await.expect("join").is_ok());
    assert_eq!(pool.waits.waited.load(Relaxed), 2);
    assert_eq!(pool.waits.none.load(Relaxed), 1);
    assert_eq!(
        api.count("get namespaces"),
        2,
        "the one that waited in vain was not sent"
    );
    assert_eq!(patient.calls.totals(), (2, 0));
    assert_eq!(hasty.calls.totals(), (0, 0), "not a call with no answer");
}

/// With SCALETEST_KUBECONFIG naming a cluster that runs a scheduler and controller-manager:
/// a 3-replica Deployment lands on hollow nodes and runs. Run it with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real cluster: set SCALETEST_KUBECONFIG and run with --ignored"]
async fn a_deployment_runs_on_hollow_nodes_through_the_real_scheduler() {
    let kc = std::env::var_os("SCALETEST_KUBECONFIG")
        .expect("SCALETEST_KUBECONFIG must name a real cluster's kubeconfig for this test");
    let kc = std::path::PathBuf::from(kc);
    let prefix = format!("st-hollow-{}-", std::process::id() % 100_000);
    let mut cfg = Config::new(3);
    cfg.prefix = prefix.clone();
    cfg.pods.run_delay = Duration::from_millis(500);
    let running = start(&kc, cfg).await.expect("start");
    let c = client(&kc).await;
    let name = format!("st-hollow-{}", std::process::id() % 100_000);
    let dep: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"nodeSelector": {"scaletest.dev/hollow": "true"},
                         "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}
    }))
    .unwrap();
    let deps = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(c.clone(), "default");
    deps.create(&PostParams::default(), &dep)
        .await
        .expect("deployment");
    let pods = Api::<Pod>::namespaced(c.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = pods
            .list(&kube::api::ListParams::default().labels(&format!("app={name}")))
            .await
            .expect("list");
        let on_hollow_running = list
            .items
            .iter()
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| n.starts_with(&prefix))
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
            .count();
        if on_hollow_running == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{on_hollow_running} of 3 pods Running on hollow nodes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = deps.delete(&name, &DeleteParams::default()).await;
    let run = running.stop(false).await;
    assert!(run.pods.running >= 3);
    nodes::cleanup(&c, Some(&prefix)).await.expect("cleanup");
}

/// Calls of `key` in the fake's request log between two snapshots.
fn delta(
    a: &std::collections::BTreeMap<String, u64>,
    b: &std::collections::BTreeMap<String, u64>,
    key: &str,
) -> u64 {
    b.get(key).copied().unwrap_or(0) - a.get(key).copied().unwrap_or(0)
}

/// Issue 21 item 3: `--kubelet-version 1.28` sends what kubelet 1.28.7 sent in kubemark
/// (/work/shared/k8s-reference/README.md), counted in the fake's request log.
///
/// Steady state, with every period 50 times shorter (lease and status 200 ms, report 6 s:
/// a "minute" is 1.2 s): per node per minute within 10 % of update leases 5.82, get nodes
/// 5.80, patch nodes/status 0.20. Per pod, exactly: start 2 GET pods, 2 patch pods/status,
/// 1 create serviceaccounts/token, and one list + watch of kube-root-ca.crt per node and
/// namespace (a second pod of the same node and namespace adds none; a mounted Secret adds
/// its own); deletion 3 GET pods, 2 patch pods/status, 1 delete with grace 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_1_28_sends_what_kubelet_1_28_7_sends() {
    let (api, kc) = fake();
    api.create(
        "serviceaccounts",
        "default",
        json!({"metadata": {"name": "default"}}),
    )
    .expect("the default service account");
    let c = client(&kc).await;
    let n = 30;
    let mut cfg = quick(n, "k128-");
    cfg.kubelet = "1.28".parse().expect("a modelled version");
    cfg.intervals = Intervals {
        lease_renew: Duration::from_millis(200),
        lease_duration: Duration::from_millis(800),
        status_update: Duration::from_millis(200),
        status_report: Duration::from_secs(6),
        jitter: 0.04,
    };
    let minute = 1.2;
    let running = start(&kc, cfg).await.expect("start");
    wait_until("every lease written", Duration::from_secs(10), || {
        api.objects("leases").len() == n
    })
    .await;
    let before = api.calls();
    let t0 = Instant::now();
    // 10 of the kubelet's minutes of lease renewals: 60 per node.
    let want = before.get("update leases").copied().unwrap_or(0) + 60 * n as u64;
    wait_until("10 minutes of renewals", Duration::from_secs(30), || {
        api.count("update leases") >= want
    })
    .await;
    let after = api.calls();
    let minutes = t0.elapsed().as_secs_f64() / minute;
    let per_node_minute = |key: &str| delta(&before, &after, key) as f64 / n as f64 / minutes;
    for (key, reference) in [
        ("update leases", 5.82),
        ("get nodes", 5.80),
        ("patch nodes/status", 0.20),
    ] {
        let got = per_node_minute(key);
        eprintln!("{key}: {got:.3} per node per minute (kubelet 1.28.7: {reference})");
        assert!(
            (got / reference - 1.0).abs() <= 0.10,
            "{key}: {got:.3} per node per minute, kubelet 1.28.7: {reference}"
        );
    }
    // Pods: one on each of 10 nodes, a second on node 0 (same namespace: no new root-CA
    // reflector), and one on node 1 that mounts the Secret "db".
    let mut names = Vec::new();
    for k in 0..12 {
        let name = format!("p{k}");
        let mut spec =
            json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]});
        if k == 11 {
            spec["volumes"] = json!([{"name": "db", "secret": {"secretName": "db"}}]);
        }
        api.create(
            "pods",
            "default",
            json!({"metadata": {"name": name}, "spec": spec}),
        )
        .expect("pod");
        names.push((
            name,
            format!(
                "k128-{}",
                [k, 0, 1][(k >= 10) as usize + (k == 11) as usize]
            ),
        ));
    }
    let before = api.calls();
    for (name, node) in &names {
        bind(&c, name, node).await.expect("bind");
    }
    wait_until("12 pods Running", Duration::from_secs(10), || {
        running.report().pods.running == 12
    })
    .await;
    wait_until(
        "the reflectors' watches open",
        Duration::from_secs(10),
        || api.count("watch configmaps") >= 10 && api.count("watch secrets") >= 1,
    )
    .await;
    let started = api.calls();
    let d = |key: &str| delta(&before, &started, key);
    assert_eq!(d("get pods"), 24, "2 GETs per pod start");
    assert_eq!(d("patch pods/status"), 24, "Pending, then Running");
    assert_eq!(d("create serviceaccounts/token"), 12, "one token per pod");
    assert_eq!(
        (d("list configmaps"), d("watch configmaps")),
        (10, 10),
        "kube-root-ca.crt: once per node and namespace"
    );
    assert_eq!(
        (d("list secrets"), d("watch secrets")),
        (1, 1),
        "the mounted Secret"
    );
    let pods = Api::<Pod>::namespaced(c.clone(), "default");
    for (name, _) in &names {
        pods.delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    wait_until("12 pods finalized", Duration::from_secs(10), || {
        running.report().pods.finalized == 12
    })
    .await;
    let done = api.calls();
    let d = |key: &str| delta(&started, &done, key);
    assert_eq!(d("get pods"), 36, "3 GETs per deletion");
    assert_eq!(d("patch pods/status"), 24, "2 status patches per deletion");
    assert_eq!(
        d("delete pods gracePeriodSeconds=0"),
        12,
        "1 delete with grace 0"
    );
    let run = running.stop(false).await;
    assert_eq!(run.pods.finalized, 12);
}

/// Kubelets from 1.31 on read their Node from the informer: no GET of it in steady state;
/// a deletion costs 1 GET, 1 status patch and the delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_kubelets_do_not_get_their_node() {
    let (api, kc) = fake();
    let c = client(&kc).await;
    let cfg = quick(3, "k133-");
    assert_eq!(cfg.kubelet.to_string(), "1.33", "the newest by default");
    let running = start(&kc, cfg).await.expect("start");
    let base = api.count("update leases");
    wait_until("30 renewals", Duration::from_secs(10), || {
        api.count("update leases") >= base + 30
    })
    .await;
    assert_eq!(api.count("get nodes"), 0);
    new_pod(&api, "q", json!({}), None);
    bind(&c, "q", "k133-2").await.expect("bind");
    wait_until("q Running", Duration::from_secs(10), || {
        running.report().pods.running == 1
    })
    .await;
    let before = api.calls();
    Api::<Pod>::namespaced(c, "default")
        .delete("q", &DeleteParams::default())
        .await
        .expect("delete");
    wait_until("q finalized", Duration::from_secs(10), || {
        running.report().pods.finalized == 1
    })
    .await;
    let after = api.calls();
    let d = |key: &str| delta(&before, &after, key);
    assert_eq!((d("get pods"), d("patch pods/status")), (1, 1));
    running.stop(false).await;
}

/// Issue 21 item 4: the nodes' one kubelet endpoint answers what the API server proxies to a
/// kubelet. `kubectl logs` is kube-rs's `Api::logs` through kubefake's `pods/NAME/log`, which
/// dials the node's advertised address and port over HTTPS as kube-apiserver does; exec, which
/// the fake does not route, is asked of the endpoint directly (the API server relays a
/// kubelet's refusal of the upgrade).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_reaches_the_hollow_kubelet_and_exec_says_the_node_is_hollow() {
    let (api, kc) = fake();
    let c = client(&kc).await;
    let running = start(&kc, quick(2, "ep-")).await.expect("start");
    let port = running.endpoint().expect("an endpoint").port;
    let node = api
        .objects("nodes")
        .into_iter()
        .find(|n| n["metadata"]["name"] == "ep-1")
        .expect("ep-1");
    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        port
    );
    assert_eq!(
        node["status"]["addresses"],
        json!([{"type": "InternalIP", "address": "127.0.0.1"},
               {"type": "Hostname", "address": "127.0.0.1"}])
    );
    new_pod(&api, "web", json!({}), None);
    bind(&c, "web", "ep-1").await.expect("bind");
    wait_until("web Running", Duration::from_secs(10), || {
        pod(&api, "web").is_some_and(|p| phase(&p) == "Running")
    })
    .await;
    let pods = Api::<Pod>::namespaced(c.clone(), "default");
    let log = pods
        .logs("web", &kube::api::LogParams::default())
        .await
        .expect("logs through the fake's proxy");
    assert!(
        log.starts_with("hollow node ep-1: pod default/web, container c is hollow\n"),
        "{log}"
    );
    assert_eq!(api.count("get pods/log"), 0, "not an object call");
    // A container the pod does not have: the API server's 400.
    let e = pods
        .logs(
            "web",
            &kube::api::LogParams {
                container: Some("nope".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("no such container");
    assert!(
        matches!(&e, kube::Error::Api(s) if s.code == 400
            && s.message == "container nope is not valid for pod web"),
        "{e:?}"
    );
    let get = |path: &'static str| kubefake::server::kubelet_get("127.0.0.1", port, path);
    let (code, body) = get("/exec/default/web/c?command=ls").await.expect("exec");
    assert_eq!(
        (code, body.as_str()),
        (
            501,
            "hollow node: exec/attach/port-forward are not supported\n"
        )
    );
    for p in [
        "/attach/default/web/c",
        "/portForward/default/web",
        "/run/default/web/c",
    ] {
        assert_eq!(get(p).await.expect("answer").0, 501, "{p}");
    }
    assert_eq!(get("/healthz").await.expect("healthz"), (200, "ok".into()));
    let (code, list) = get("/pods").await.expect("pods");
    let list: Value = serde_json::from_str(&list).expect("a PodList");
    assert_eq!((code, list["kind"].as_str()), (200, Some("PodList")));
    assert_eq!(list["items"][0]["metadata"]["name"], "web");
    assert_eq!(list["items"][0]["spec"]["nodeName"], "ep-1");
    let (code, _) = get("/containerLogs/default/other/c").await.expect("404");
    assert_eq!(code, 404);
    running.stop(false).await;
}
