//! `k8s::cluster` through kube-rs's real client over HTTP against the in-process fake API, with
//! `kubefake::controllers` playing the controller-manager's, scheduler's and kubelets' parts
//! (the fake, like a real API server, only stores objects). The same sequence against a real
//! cluster is in crates/cli/tests/k8s.rs (SCALETEST_KUBECONFIG).

use k8s::cluster::{self, Change, Down, Target};
use k8s::spec::{Changes, Spec};
use kubefake::controllers::{Controllers, Fate};
use kubefake::FakeApi;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Fake {
    api: Arc<FakeApi>,
    client: kube::Client,
}

async fn fake() -> Fake {
    let api = Arc::new(FakeApi::start());
    let dir = std::env::temp_dir().join("scaletest-k8s-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kc = api.kubeconfig(&dir);
    let (client, _) = kapi::connect(Some(&kc), None, Some(Duration::from_secs(10)), false)
        .await
        .expect("connect");
    Fake { api, client }
}

fn target(run: &str, timeout: Duration) -> Target {
    Target {
        run: run.into(),
        namespace: format!("scaletest-{run}"),
        timeout,
    }
}

fn quiet(_: &str) {}

/// `up` of a run with default settings.
async fn up(f: &Fake, t: &Target) -> Result<cluster::Outcome, k8s::Error> {
    cluster::up(
        &f.client,
        t,
        Spec::new(&t.run),
        &Changes::default(),
        &mut quiet,
    )
    .await
}

/// A fake, a run on it with the controllers playing along, and the run up.
async fn up_ready(run: &str) -> (Fake, Target, Controllers, cluster::Outcome) {
    let f = fake().await;
    let t = target(run, Duration::from_secs(20));
    let c = Controllers::start(f.api.clone(), &t.namespace, Fate::Ready);
    let o = up(&f, &t).await.expect("up");
    (f, t, c, o)
}

/// `kind/name` of every object of a few kinds in `ns` (cluster-scoped: the namespace itself).
fn inventory(api: &FakeApi, ns: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for plural in [
        "namespaces",
        "serviceaccounts",
        "secrets",
        "services",
        "deployments",
    ] {
        for o in api.objects(plural) {
            let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
            let in_ns = o["metadata"]["namespace"].as_str() == Some(ns);
            if in_ns || (plural == "namespaces" && name == ns) {
                out.insert(format!("{plural}/{name}"));
            }
        }
    }
    out
}

fn versions(api: &FakeApi, ns: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        "namespaces",
        "serviceaccounts",
        "secrets",
        "services",
        "deployments",
    ]
    .iter()
    .flat_map(|p| api.objects(p))
    .filter(|o| {
        o["metadata"]["namespace"].as_str() == Some(ns)
            || o["metadata"]["name"].as_str() == Some(ns)
    })
    .map(|o| {
        (
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            ),
            o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    })
    .collect();
    v.sort();
    v
}

fn deployment(api: &FakeApi, ns: &str, name: &str) -> Value {
    api.objects("deployments")
        .into_iter()
        .find(|d| d["metadata"]["namespace"] == ns && d["metadata"]["name"] == name)
        .expect("deployment")
}

fn pods(api: &FakeApi, ns: &str, component: &str) -> Vec<Value> {
    api.objects("pods")
        .into_iter()
        .filter(|p| {
            p["metadata"]["namespace"] == ns
                && p["metadata"]["labels"]["app.kubernetes.io/component"] == component
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_creates_exactly_the_runs_objects_and_a_second_up_writes_nothing() {
    let (f, t, _c, o) = up_ready("t1").await;
    assert!(
        o.applied.iter().all(|a| a.change == Change::Created),
        "{:?}",
        o.applied
    );
    assert!(o.rollouts.iter().all(|r| r.done()));
    let want: BTreeSet<String> = [
        "namespaces/scaletest-t1",
        "serviceaccounts/scaletest",
        "secrets/aggregator-token",
        "services/serve",
        "services/aggregate",
        "deployments/serve",
        "deployments/aggregate",
        "deployments/bot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(inventory(&f.api, &t.namespace), want);
    // Every object the run made carries its label.
    for plural in ["serviceaccounts", "secrets", "services", "deployments"] {
        for o in f.api.objects(plural) {
            if o["metadata"]["namespace"] == t.namespace.as_str() {
                assert_eq!(o["metadata"]["labels"][kapi::LABEL_RUN], "t1", "{o}");
            }
        }
    }
    let before = versions(&f.api, &t.namespace);
    let creates = f.api.count("create pods");
    let again = up(&f, &t).await.expect("up again");
    assert!(
        again.applied.iter().all(|a| a.change == Change::Unchanged),
        "{:?}",
        again.applied
    );
    assert_eq!(
        versions(&f.api, &t.namespace),
        before,
        "a second up wrote something"
    );
    assert_eq!(f.api.count("create pods"), creates);
    // The token survives: the Secret was not rewritten.
    let st = cluster::status(&f.client, &t).await.expect("status");
    assert_eq!(
        st.pods
            .get(&("serve".into(), "v1".into(), "Running, ready".into())),
        Some(&1)
    );
    assert_eq!(
        st.pods
            .get(&("bot".into(), "-".into(), "Running, ready".into())),
        Some(&1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_removes_only_the_runs_objects_and_a_missing_run_is_not_an_error() {
    let f = fake().await;
    let (a, b) = (
        target("ra", Duration::from_secs(20)),
        target("rb", Duration::from_secs(20)),
    );
    let _ca = Controllers::start(f.api.clone(), &a.namespace, Fate::Ready);
    let _cb = Controllers::start(f.api.clone(), &b.namespace, Fate::Ready);
    for t in [&a, &b] {
        up(&f, t).await.expect("up");
    }
    f.api
        .create(
            "configmaps",
            "default",
            json!({"metadata": {"name": "keep"}}),
        )
        .expect("configmap");
    let b_before = inventory(&f.api, &b.namespace);
    match cluster::down(&f.client, &a).await.expect("down") {
        Down::Deleted { objects } => assert!(objects >= 7, "{objects}"),
        other => panic!("{other:?}"),
    }
    assert!(inventory(&f.api, &a.namespace).is_empty());
    assert!(pods(&f.api, &a.namespace, "serve").is_empty());
    assert_eq!(inventory(&f.api, &b.namespace), b_before);
    assert_eq!(
        f.api
            .objects("configmaps")
            .iter()
            .filter(|c| c["metadata"]["name"] == "keep")
            .count(),
        1
    );
    assert_eq!(
        cluster::down(&f.client, &a).await.expect("down again"),
        Down::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_and_rollout_change_the_right_fields() {
    let (f, t, c, _) = up_ready("t3").await;
    let agg_gen = deployment(&f.api, &t.namespace, "aggregate")["metadata"]["generation"].clone();
    let serve_template = deployment(&f.api, &t.namespace, "serve")["spec"]["template"].clone();
    let scaled = Changes {
        servers: Some(5),
        bots: Some(2),
        ..Changes::default()
    };
    cluster::change(
        &f.client,
        &t,
        &scaled,
        &k8s::manifest::COMPONENTS,
        &mut quiet,
    )
    .await
    .expect("scale");
    let serve = deployment(&f.api, &t.namespace, "serve");
    assert_eq!(serve["spec"]["replicas"], 5);
    assert_eq!(
        serve["spec"]["template"], serve_template,
        "scale changed the pod template"
    );
    assert_eq!(
        deployment(&f.api, &t.namespace, "bot")["spec"]["replicas"],
        2
    );
    assert_eq!(pods(&f.api, &t.namespace, "serve").len(), 5);
    let mut lines = Vec::new();
    let v2 = Changes {
        version: Some("v2".into()),
        ..Changes::default()
    };
    // One controller step per look, so that the looks see the rollout under way (left to
    // themselves, the controllers can finish it between two looks).
    c.paused.store(true, Ordering::Relaxed);
    let o = cluster::change(&f.client, &t, &v2, &["serve"], &mut |l: &str| {
        if l.starts_with("serve ") {
            kubefake::controllers::step(&f.api, &t.namespace, Fate::Ready);
        }
        lines.push(l.to_string())
    })
    .await
    .expect("rollout");
    c.paused.store(false, Ordering::Relaxed);
    assert_eq!(o.spec.version, "v2");
    let serve = deployment(&f.api, &t.namespace, "serve");
    assert_eq!(serve["spec"]["replicas"], 5, "the rollout kept the scale");
    assert_eq!(
        serve["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    assert_eq!(
        serve["spec"]["template"]["metadata"]["labels"][k8s::manifest::LABEL_VERSION],
        "v2"
    );
    let args = serve["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("\"--version-label\",\"v2\""), "{args}");
    let serving = pods(&f.api, &t.namespace, "serve");
    assert_eq!(serving.len(), 5);
    assert!(serving
        .iter()
        .all(|p| p["metadata"]["labels"][k8s::manifest::LABEL_VERSION] == "v2"));
    // Progress was reported as it went, and the other components were not touched.
    assert!(lines.iter().any(|l| l.contains("old")), "{lines:?}");
    assert_eq!(
        deployment(&f.api, &t.namespace, "aggregate")["metadata"]["generation"],
        agg_gen
    );
    // The deployed spec is what the next command starts from.
    let st = cluster::status(&f.client, &t).await.expect("status");
    assert_eq!(
        (st.spec.servers, st.spec.bots, st.spec.version.as_str()),
        (5, 2, "v2")
    );
}

async fn stuck(fate: Fate, expect: &[&str]) {
    let f = fake().await;
    let run = format!("s{}", expect[0].len());
    let t = target(&run, Duration::from_millis(1500));
    let _c = Controllers::start(f.api.clone(), &t.namespace, fate);
    let started = Instant::now();
    let e = up(&f, &t).await.expect_err("never ready");
    let msg = e.to_string();
    assert!(matches!(e, k8s::Error::NotReady(_)), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(
        msg.starts_with("not ready after 1.5s: deployment "),
        "{msg}"
    );
    for want in expect {
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_never_becomes_ready_names_the_pod_and_the_cause_in_bounded_time() {
    stuck(
        Fate::ImagePullBackOff,
        &[
            "ImagePullBackOff",
            "Back-off pulling image \"scaletest:",
            "container serve",
        ],
    )
    .await;
    stuck(
        Fate::Unschedulable,
        &["Pending, Unschedulable", "Insufficient cpu"],
    )
    .await;
    stuck(
        Fate::CrashLoop,
        &["CrashLoopBackOff", "3 restarts", "its last log lines: starting | scaletest: cannot listen on 0.0.0.0:8080: Address in use"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_that_is_not_the_runs_is_never_touched() {
    let f = fake().await;
    f.api
        .create(
            "namespaces",
            "",
            json!({"metadata": {"name": "scaletest-x", "labels": {"team": "web"}}}),
        )
        .expect("namespace");
    let t = target("x", Duration::from_secs(5));
    let e = up(&f, &t).await.expect_err("not ours");
    assert!(matches!(e, k8s::Error::Usage(_)), "{e}");
    assert!(e.to_string().contains("not run x's"), "{e}");
    let e = cluster::down(&f.client, &t).await.expect_err("not ours");
    assert!(matches!(e, k8s::Error::Usage(_)), "{e}");
    assert_eq!(inventory(&f.api, "scaletest-x").len(), 1);
    let e = cluster::change(
        &f.client,
        &target("nope", Duration::from_secs(5)),
        &Changes::default(),
        &["serve"],
        &mut quiet,
    )
    .await
    .expect_err("not up");
    assert!(e.to_string().contains("run nope is not up"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_one_line_naming_the_step() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join("scaletest-k8s-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let kc = kubefake::write_kubeconfig(
        &dir,
        &format!("unreachable-{port}"),
        &format!("http://127.0.0.1:{port}"),
    );
    let (client, _) = kapi::connect(Some(&kc), None, Some(Duration::from_secs(2)), false)
        .await
        .expect("a client is made without a call");
    let started = Instant::now();
    let e = cluster::up(
        &client,
        &target("u", Duration::from_secs(5)),
        Spec::new("u"),
        &Changes::default(),
        &mut quiet,
    )
    .await
    .expect_err("unreachable");
    let msg = e.to_string();
    assert!(msg.starts_with("get namespace scaletest-u: "), "{msg}");
    assert!(msg.to_lowercase().contains("connection refused"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorized_or_forbidden_caller_gets_one_line_naming_the_object_and_the_cause() {
    let api = Arc::new(FakeApi::start());
    api.require_token("right");
    let dir = std::env::temp_dir().join("scaletest-k8s-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let as_user = |token: &str| {
        kubefake::write_kubeconfig_with_token(
            &dir,
            &format!("kc-{}-{token}", api.addr.port()),
            &api.url(),
            Some(token),
        )
    };
    let t = target("auth", Duration::from_secs(5));
    let (wrong, _) = kapi::connect(
        Some(&as_user("wrong")),
        None,
        Some(Duration::from_secs(5)),
        false,
    )
    .await
    .expect("client");
    let f = Fake {
        api: api.clone(),
        client: wrong,
    };
    let e = up(&f, &t).await.expect_err("unauthorized");
    assert!(matches!(e, k8s::Error::Api { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "get namespace scaletest-auth: unauthorized (check the kubeconfig's credentials): Unauthorized"
    );
    // The right credentials, without the permission to write Deployments.
    let (right, _) = kapi::connect(
        Some(&as_user("right")),
        None,
        Some(Duration::from_secs(5)),
        false,
    )
    .await
    .expect("client");
    let f = Fake { api, client: right };
    f.api.forbid("patch", "deployments");
    let e = up(&f, &t).await.expect_err("forbidden");
    let msg = e.to_string();
    assert!(matches!(e, k8s::Error::Api { .. }), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    assert_eq!(
        msg,
        "apply deployment/serve: forbidden: deployments \"serve\" is forbidden: User \
         \"system:anonymous\" cannot patch resource \"deployments\" in API group \"apps\" in \
         the namespace \"scaletest-auth\""
    );
    assert!(f.api.objects("deployments").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_that_never_becomes_ready_names_the_pod_and_keeps_the_old_servers() {
    let (f, t, c, _) = up_ready("rn").await;
    *c.fate.lock().expect("lock") = Fate::CrashLoop;
    let short = Target {
        timeout: Duration::from_millis(1500),
        ..t.clone()
    };
    let started = Instant::now();
    let e = cluster::rollout(&f.client, &short, "v2", None, &mut quiet)
        .await
        .expect_err("never ready");
    let msg = e.to_string();
    assert!(matches!(e, k8s::Error::NotReady(_)), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    assert!(
        msg.starts_with("not ready after 1.5s: deployment scaletest-rn/serve (1/1 updated, 1 ready, 1 available, 1 old): pod serve-"),
        "{msg}"
    );
    assert!(msg.contains("CrashLoopBackOff"), "{msg}");
    assert!(msg.contains("its last log lines: starting | "), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // maxUnavailable 0: the v1 server still serves next to the crash-looping v2 one.
    let serving: Vec<Value> = pods(&f.api, &t.namespace, "serve");
    assert_eq!(serving.len(), 2);
    let ready_v1 = serving.iter().filter(|p| {
        p["metadata"]["labels"][k8s::manifest::LABEL_VERSION] == "v1"
            && p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    });
    assert_eq!(ready_v1.count(), 1);
}

/// A real aggregator (in-process, on loopback) standing in for the run's aggregator pod, with
/// the run's token and certificate: the fake's port-forward reaches it, as a kubelet would
/// reach the pod's port.
fn aggregator_for(f: &Fake, ns: &str) -> fleet::agg::Running {
    let secret = f
        .api
        .objects("secrets")
        .into_iter()
        .find(|s| s["metadata"]["namespace"] == ns && s["metadata"]["name"] == "aggregator-token")
        .expect("token secret");
    let data = |key: &str| base64_decode(secret["data"][key].as_str().expect(key));
    let token = String::from_utf8(data("token")).expect("utf-8");
    let tls = st_http::tls::server_config_from_pem(&data("tls.crt"), &data("tls.key"))
        .expect("the run's certificate");
    let out = std::env::temp_dir().join(format!(
        "scaletest-k8s-agg-{}-{}",
        std::process::id(),
        fleet::agg::random_hex()
    ));
    let running = fleet::agg::start(fleet::agg::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        token,
        out,
        spec: load::Spec {
            url: Some("http://127.0.0.1:9/".into()),
            ..load::Spec::default()
        },
        plan: fleet::state::Plan::Idle,
        run_for: None,
        state: fleet::state::Config::default(),
        thresholds: vec![],
        abort_on_fail: false,
        tls: Some(tls),
        public_read: false,
    })
    .expect("aggregator");
    for p in pods(&f.api, ns, "aggregate") {
        f.api.forward(
            ns,
            p["metadata"]["name"].as_str().unwrap(),
            k8s::manifest::AGGREGATE_PORT as u16,
            running.addr,
        );
    }
    running
}

fn base64_decode(s: &str) -> Vec<u8> {
    let v: k8s_openapi::ByteString = serde_json::from_value(json!(s)).expect("base64");
    v.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregator_is_reached_through_a_port_forward_for_rate_events_status_and_ui() {
    let (f, t, _c, o) = up_ready("pf").await;
    let spec = o.spec;
    let agg = aggregator_for(&f, &t.namespace);
    let a = k8s::aggregator::Aggregator::find(&f.client, &spec)
        .await
        .expect("find");
    let answer = a.set_rate(5000.0).await.expect("rate");
    assert_eq!(
        answer["offered"], 0.0,
        "no bots registered: nothing offered yet"
    );
    let (_, load) = a.call("GET", "/api/load", None).await.expect("load");
    assert_eq!(
        load["plan"],
        json!({"kind": "total", "rate": 5000.0}),
        "{load}"
    );
    let live = a.live().await.expect("live");
    assert_eq!((live.bots, live.requests), (0, 0));
    // A rollout posts its progress as events.
    let r = cluster::rollout(
        &f.client,
        &t,
        "v2",
        Some("registry.example/web:2"),
        &mut quiet,
    )
    .await
    .expect("rollout");
    assert_eq!(r.outcome.spec.version, "v2");
    assert_eq!(r.outcome.spec.server_image(), "registry.example/web:2");
    assert_eq!(r.outcome.spec.image, k8s::spec::DEFAULT_IMAGE);
    let image = |name: &str| {
        deployment(&f.api, &t.namespace, name)["spec"]["template"]["spec"]["containers"][0]["image"]
            .clone()
    };
    assert_eq!(image("serve"), "registry.example/web:2");
    assert_eq!(image("aggregate"), k8s::spec::DEFAULT_IMAGE);
    assert_eq!(r.warning, None);
    // The rollout's seconds as the aggregator measured them (an idle one: nothing).
    let w = r.window.expect("the rollout's window");
    assert!(w.settled && w.to > w.from, "{w:?}");
    assert_eq!(w.snapshot.completed(), 0);
    let (_, events) = a.call("GET", "/api/events", None).await.expect("events");
    let texts: Vec<String> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        texts.iter().any(|e| e == "rollout v1 → v2 started"),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|e| e.starts_with("rollout: serve ")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|e| e == "rollout v1 → v2 done"),
        "{texts:?}"
    );
    // The UI on a local port, one port-forward per connection.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ui = tokio::spawn(k8s::aggregator::forward_ui(
        a.clone(),
        "127.0.0.1:0".parse().unwrap(),
        move |addr| {
            let _ = tx.send(addr);
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    let addr = rx.await.expect("bound");
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut page = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut page))
            .await
            .expect("in time")
            .expect("read");
        assert!(
            page.starts_with("HTTP/1.1 200"),
            "{}",
            &page[..page.len().min(200)]
        );
        assert!(page.contains("<html"), "not the UI page");
    }
    let _ = stop_tx.send(());
    ui.await.expect("join").expect("ui");
    drop(agg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_port_that_refuses_is_one_line_naming_the_pod() {
    let (f, t, _c, o) = up_ready("pr").await;
    let spec = o.spec;
    // No forward named: as if nothing listened on the pod's port.
    let a = k8s::aggregator::Aggregator::find(&f.client, &spec)
        .await
        .expect("find");
    let started = Instant::now();
    let e = a.summary().await.expect_err("refused");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "GET /api/summary on the aggregator (pod {})",
            a.pod
        )),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    assert!(started.elapsed() < k8s::aggregator::CALL_TIMEOUT + Duration::from_secs(2));
    let r = cluster::rollout(&f.client, &t, "v2", None, &mut quiet)
        .await
        .expect("rollout");
    assert!(r.warning.is_some_and(|w| w.contains("aggregator")));
    assert!(r.window.is_none());
}

/// `up --state pvc`: the aggregator's run directory is a claim from the default StorageClass,
/// applied with the rest, and a second `up` changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_pvc_keeps_the_run_directory_on_a_claim() {
    let f = fake().await;
    f.api.register(kubefake::Resource {
        group: String::new(),
        version: "v1".into(),
        plural: "persistentvolumeclaims".into(),
        kind: "PersistentVolumeClaim".into(),
        namespaced: true,
    });
    let t = target("pvc", Duration::from_secs(20));
    let _c = Controllers::start(f.api.clone(), &t.namespace, Fate::Ready);
    let changes = Changes {
        state: Some(k8s::spec::RunState::Pvc { size: "2Gi".into() }),
        ..Changes::default()
    };
    let o = cluster::up(&f.client, &t, Spec::new(&t.run), &changes, &mut quiet)
        .await
        .expect("up");
    assert!(o
        .applied
        .iter()
        .any(|a| a.object == "persistentvolumeclaim/aggregator-run"));
    let claims: Vec<Value> = f
        .api
        .objects("persistentvolumeclaims")
        .into_iter()
        .filter(|c| c["metadata"]["namespace"] == t.namespace.as_str())
        .collect();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0]["spec"]["resources"]["requests"]["storage"], "2Gi");
    let agg = deployment(&f.api, &t.namespace, "aggregate");
    assert_eq!(
        agg["spec"]["template"]["spec"]["volumes"][1]["persistentVolumeClaim"]["claimName"],
        "aggregator-run"
    );
    let again = cluster::up(&f.client, &t, Spec::new(&t.run), &changes, &mut quiet)
        .await
        .expect("up again");
    assert!(
        again.applied.iter().all(|a| a.change == Change::Unchanged),
        "{:?}",
        again.applied
    );
}
