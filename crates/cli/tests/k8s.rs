//! `scaletest k8s` as a user runs it: exit codes and one-line errors, `render`'s YAML, and the
//! whole up → scale → rollout → status → down sequence through a kubeconfig, against the
//! in-process fake API (with `kubefake::controllers` playing the controllers' part) and,
//! ignored unless asked for (`--ignored`, with SCALETEST_KUBECONFIG naming a cluster with a
//! scheduler and controller-manager, and nodes, e.g. hollow ones from `scaletest nodes`),
//! against a real cluster.

// Tests and examples may print (see clippy.toml).
#![allow(clippy::disallowed_macros)]

use kubefake::controllers::{Controllers, Fate};
use kubefake::FakeApi;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testsupport::{text, tmpdir, wait_until, Bin};

const SCALETEST: Bin = Bin(env!("CARGO_BIN_EXE_scaletest"));

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = SCALETEST.run(args);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn bad_input_gets_one_line_and_exit_code_2() {
    let fake = FakeApi::start();
    let dir = tmpdir("k8s-usage");
    let kc = fake.kubeconfig(&dir).to_string_lossy().into_owned();
    let kc = kc.as_str();
    fake.create(
        "namespaces",
        "",
        serde_json::json!({"metadata": {"name": "scaletest-theirs"}}),
    )
    .expect("namespace");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["k8s", "up", "--kubeconfig", "/nonexistent/kc"],
            "kubeconfig /nonexistent/kc",
        ),
        (
            vec!["k8s", "up", "--run", "Bad_Run", "--kubeconfig", kc],
            "run \"Bad_Run\"",
        ),
        (
            vec!["k8s", "up", "--servers=-3", "--kubeconfig", kc],
            "servers=-3",
        ),
        (vec!["k8s", "scale", "--kubeconfig", kc], "give servers=N"),
        (
            vec!["k8s", "scale", "nodes=3", "--kubeconfig", kc],
            "the components are servers and bots",
        ),
        (
            vec!["k8s", "scale", "servers=2", "--kubeconfig", kc],
            "run demo is not up",
        ),
        (
            vec!["k8s", "rollout", "v 2", "--kubeconfig", kc],
            "version \"v 2\"",
        ),
        (
            vec!["k8s", "up", "--run", "theirs", "--kubeconfig", kc],
            "namespace scaletest-theirs exists and is not run theirs's",
        ),
        (vec!["k8s", "size", "--rate", "0"], "rate 0"),
        (
            vec!["k8s", "size", "--rate", "10", "--p99", "soon"],
            "--p99",
        ),
    ];
    for (args, want) in cases {
        let (code, _, err) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(
        fake.count("patch namespaces"),
        0,
        "bad input applied something"
    );
}

#[test]
fn an_unreachable_api_server_is_one_line_and_exit_code_1_in_bounded_time() {
    let dir = tmpdir("k8s-unreachable");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let kc = kubefake::write_kubeconfig(&dir, "kc", &format!("http://127.0.0.1:{port}"));
    let started = Instant::now();
    let (code, _, err) = run(&[
        "k8s",
        "up",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--timeout",
        "5s",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("get namespace scaletest-demo: "), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn an_unauthorized_or_forbidden_caller_is_one_line_and_exit_code_1() {
    let fake = FakeApi::start();
    fake.require_token("right");
    fake.forbid("patch", "namespaces");
    let dir = tmpdir("k8s-auth");
    for (token, want) in [
        (
            "wrong",
            "get namespace scaletest-demo: unauthorized (check the kubeconfig's credentials)",
        ),
        (
            "right",
            "apply namespace/scaletest-demo: forbidden: namespaces \"scaletest-demo\" is forbidden",
        ),
    ] {
        let kc = kubefake::write_kubeconfig_with_token(&dir, token, &fake.url(), Some(token));
        let (code, _, err) = run(&["k8s", "up", "--kubeconfig", kc.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(want), "{err}");
    }
    assert!(fake
        .objects("namespaces")
        .iter()
        .all(|n| n["metadata"]["name"] != "scaletest-demo"));
}

#[test]
fn render_prints_yaml_that_kubectl_style_tools_read_back() {
    let (code, out, err) = run(&[
        "k8s",
        "render",
        "--run",
        "r1",
        "--servers",
        "3",
        "--server-version",
        "v7",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let objs = k8s::manifest::parse(&out).expect("parses");
    let spec = k8s::manifest::spec_of(&objs.namespace).expect("spec");
    assert_eq!(
        (spec.run.as_str(), spec.servers, spec.version.as_str()),
        ("r1", 3, "v7")
    );
    // Rebuilt from the spec and keys it carries, the objects are the same.
    let keys = k8s::manifest::Keys::complete(&spec, Some(&objs.secret)).expect("keys");
    assert_eq!(k8s::manifest::objects(&spec, &keys), objs);
    assert_eq!(out.matches("kind: Deployment").count(), 3);
    // The aggregator's certificate is in the Secret, and the bots trust it.
    assert!(keys.cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(out.contains("tls.crt:") && out.contains("ca.crt:"), "{out}");
    assert!(
        out.contains("- --cacert\n") && out.contains("- https://aggregate.scaletest-r1.svc:8089\n"),
        "{out}"
    );
    // --state pvc: a claim for the run directory.
    let (code, out, err) = run(&["k8s", "render", "--state", "pvc", "--state-size", "2Gi"]);
    assert_eq!(code, Some(0), "{err}");
    let objs = k8s::manifest::parse(&out).expect("parses");
    assert!(out.contains("kind: PersistentVolumeClaim"), "{out}");
    assert!(objs.claim.is_some());
    let (code, _, err) = run(&["k8s", "render", "--state", "pvc", "--state-size", "lots"]);
    assert_eq!((code, err.lines().count()), (Some(2), 1), "{err}");
}

#[test]
fn size_prints_replicas_and_cores_for_a_million_requests_a_second() {
    let (code, out, err) = run(&["k8s", "size", "--rate", "1000000", "--p99", "10ms"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("servers         32 × 1000 m CPU"), "{out}");
    assert!(out.contains("bots            56 × 1000 m CPU"), "{out}");
    assert!(out.contains("cores          88.25"), "{out}");
    assert!(out.contains("p99 10 ms: above"), "{out}");
}

/// The fake (with its controllers) or a real cluster.
struct Cluster {
    kubeconfig: PathBuf,
    fake: Option<Arc<FakeApi>>,
}

#[test]
fn up_scale_rollout_status_down_as_a_user_runs_them() {
    let dir = tmpdir("k8s-sequence");
    let fake = Arc::new(FakeApi::start());
    up_scale_rollout_status_down_against(Cluster {
        kubeconfig: fake.kubeconfig(&dir),
        fake: Some(fake),
    });
}

#[test]
#[ignore = "needs a real cluster: set SCALETEST_KUBECONFIG and run with --ignored"]
fn up_scale_rollout_status_down_as_a_user_runs_them_on_a_real_cluster() {
    let kc = std::env::var_os("SCALETEST_KUBECONFIG")
        .expect("SCALETEST_KUBECONFIG must name a real cluster's kubeconfig for this test");
    up_scale_rollout_status_down_against(Cluster {
        kubeconfig: PathBuf::from(kc),
        fake: None,
    });
}

fn up_scale_rollout_status_down_against(c: Cluster) {
    let run_id = format!("seq{}", std::process::id() % 100_000);
    let ns = format!("scaletest-{run_id}");
    let _controllers = c
        .fake
        .as_ref()
        .map(|f| Controllers::start(f.clone(), &ns, Fate::Ready));
    let kc = c.kubeconfig.to_string_lossy().into_owned();
    // Images are not pulled on hollow nodes or the fake; a real cluster needs the image.
    let common = [
        "--kubeconfig",
        kc.as_str(),
        "--run",
        run_id.as_str(),
        "--timeout",
        "120s",
    ];
    let k8s = |cmd: &[&str]| {
        let mut a = vec!["k8s"];
        a.extend_from_slice(cmd);
        a.extend_from_slice(&common);
        run(&a)
    };
    let (code, out, err) = k8s(&["up"]);
    assert_eq!(code, Some(0), "up: {out}{err}");
    assert!(out.contains("deployment/serve created"), "{out}");
    assert!(out.contains("up: run "), "{out}");
    let (code, out, err) = k8s(&["up"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("0 of 8 objects changed"), "second up: {out}");
    let (code, out, err) = k8s(&["scale", "servers=5"]);
    assert_eq!(code, Some(0), "scale: {out}{err}");
    assert!(out.contains("5 servers v1"), "{out}");
    let (code, out, err) = k8s(&["rollout", "v2"]);
    assert_eq!(code, Some(0), "rollout: {out}{err}");
    // It watched the rollout until done (every replica updated and available, no old one).
    assert!(
        out.lines().any(|l| l
            .trim_end()
            .ends_with("serve 5/5 updated, 5 ready, 5 available")),
        "rollout: {out}"
    );
    // A rollout is done (as `kubectl rollout status` says) once every replica is updated
    // and available; replaced v1 pods may still be Terminating on a real cluster (their
    // grace period, a kubelet's confirmation), so wait for them to go.
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = loop {
        let (code, out, err) = k8s(&["status"]);
        assert_eq!(code, Some(0), "{err}");
        let old = out
            .lines()
            .filter(|l| l.starts_with("pods serve") && l.contains(" v1 "))
            .collect::<Vec<_>>();
        if old.is_empty() {
            break out;
        }
        assert!(
            old.iter().all(|l| l.contains(" Terminating ")),
            "v1 pods after the rollout that are not going: {out}"
        );
        assert!(
            Instant::now() < deadline,
            "v1 pods still terminating: {out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        out.contains("deployment serve 5/5 updated, 5 ready, 5 available (rolled out)"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("pods serve")
            && l.contains(" v2 ")
            && l.contains("Running, ready")
            && l.trim_end().ends_with(" 5")),
        "{out}"
    );
    let (code, out, err) = k8s(&["down"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("down: run {run_id} deleted")),
        "{out}"
    );
    let (code, out, err) = k8s(&["down"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("does not exist"), "{out}");
    if let Some(f) = &c.fake {
        assert!(f
            .objects("pods")
            .iter()
            .all(|p| p["metadata"]["namespace"] != ns.as_str()));
        assert!(f
            .objects("namespaces")
            .iter()
            .all(|n| n["metadata"]["name"] != ns.as_str()));
    }
}

/// A run on the in-process fake (its controllers playing the cluster's), and `k8s` commands
/// for it as a user types them.
struct FakeRun {
    dir: PathBuf,
    fake: Arc<FakeApi>,
    kc: String,
    run_id: String,
    ns: String,
    _controllers: Controllers,
}

impl FakeRun {
    fn new(tag: &str, prefix: &str) -> FakeRun {
        let dir = tmpdir(tag);
        let fake = Arc::new(FakeApi::start());
        let kc = fake.kubeconfig(&dir).to_string_lossy().into_owned();
        let run_id = format!("{prefix}{}", std::process::id() % 100_000);
        let ns = format!("scaletest-{run_id}");
        let controllers = Controllers::start(fake.clone(), &ns, Fate::Ready);
        FakeRun {
            dir,
            fake,
            kc,
            run_id,
            ns,
            _controllers: controllers,
        }
    }

    /// `scaletest k8s CMD… --kubeconfig … --run … --timeout 60s`: exit code, stdout, stderr.
    fn k8s(&self, cmd: &[&str]) -> (Option<i32>, String, String) {
        let mut a = vec!["k8s"];
        a.extend_from_slice(cmd);
        a.extend_from_slice(&[
            "--kubeconfig",
            &self.kc,
            "--run",
            &self.run_id,
            "--timeout",
            "60s",
        ]);
        run(&a)
    }
}

/// The run's aggregator token (from its Secret in the fake), in a file for an aggregator and
/// bots of this test.
fn token_file(fake: &FakeApi, ns: &str, dir: &std::path::Path) -> String {
    let secret = fake
        .objects("secrets")
        .into_iter()
        .find(|s| s["metadata"]["namespace"] == ns)
        .expect("the token Secret");
    let token: k8s_openapi::ByteString =
        serde_json::from_value(secret["data"]["token"].clone()).expect("base64");
    let path = dir.join("token");
    std::fs::write(&path, &token.0).unwrap();
    path.to_string_lossy().into_owned()
}

/// The run's aggregator certificate and key (from its Secret in the fake), in files for an
/// aggregator of this test (`--tls-cert`, `--tls-key`) and its clients (the certificate is
/// the CA).
fn tls_files(fake: &FakeApi, ns: &str, dir: &std::path::Path) -> (String, String) {
    let secret = fake
        .objects("secrets")
        .into_iter()
        .find(|s| s["metadata"]["namespace"] == ns)
        .expect("the token Secret");
    let file = |key: &str| {
        let v: k8s_openapi::ByteString =
            serde_json::from_value(secret["data"][key].clone()).expect("base64");
        let path = dir.join(key);
        std::fs::write(&path, &v.0).unwrap();
        path.to_string_lossy().into_owned()
    };
    (file("tls.crt"), file("tls.key"))
}

/// GET `path` of an aggregator over TLS, trusting `ca`: the JSON of a 200.
fn tls_json(addr: std::net::SocketAddr, ca: &str, path: &str) -> serde_json::Value {
    let r = st_http::blocking::call_tls(
        addr,
        std::path::Path::new(ca),
        "GET",
        path,
        None,
        "",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("GET https://{addr}{path}: {e}"));
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// Point the fake's port-forward of the run's aggregator pods at `to`.
fn forward_aggregator(fake: &FakeApi, ns: &str, to: std::net::SocketAddr) {
    for p in fake.objects("pods") {
        if p["metadata"]["namespace"] == ns
            && p["metadata"]["labels"]["app.kubernetes.io/component"] == "aggregate"
        {
            let pod = p["metadata"]["name"].as_str().unwrap();
            fake.forward(ns, pod, k8s::manifest::AGGREGATE_PORT as u16, to);
        }
    }
}

/// `render --target`: the user's service, no `serve` of ours, the bots aimed at it through the
/// aggregator's arguments, the load per bot; and what does not fit a target is refused.
#[test]
fn render_with_a_target_has_no_servers_and_loads_the_target_per_bot() {
    let (code, out, err) = run(&[
        "k8s",
        "render",
        "--target",
        "http://web.shop.svc:8080/",
        "--per-bot-rate",
        "1000",
        "-H",
        "Host: shop.example",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let objs = k8s::manifest::parse(&out).expect("parses");
    let names: Vec<String> = objs
        .deployments
        .iter()
        .map(|d| d.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["aggregate", "bot"]);
    assert!(objs
        .services
        .iter()
        .all(|s| s.metadata.name.as_deref() != Some("serve")));
    let args = objs.deployments[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    let at = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args[i + 1].as_str())
    };
    assert_eq!(args[1], "http://web.shop.svc:8080/", "{args:?}");
    assert_eq!(at("--per-bot-rate"), Some("1000"), "{args:?}");
    assert_eq!(at("-H"), Some("Host: shop.example"), "{args:?}");
    assert_eq!(at("--rate"), None, "{args:?}");
    for (args, want) in [
        (vec!["--target", "ftp://web/"], "unsupported scheme"),
        (
            vec!["--target", "http://web/", "--servers", "3"],
            "has no servers",
        ),
        (vec!["-H", "Host: x"], "apply to --target"),
        (
            vec!["--target", "http://web/", "-H", "nocolon"],
            "invalid header",
        ),
        (vec!["--per-bot-rate", "0"], "per-bot rate 0"),
    ] {
        let mut a = vec!["k8s", "render"];
        a.extend(args.iter().copied());
        let (code, _, err) = run(&a);
        assert_eq!(code, Some(2), "{a:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{a:?}: {err}");
        assert!(err.contains(want), "{a:?}: {err}");
    }
}

/// Seed 000's move on a cluster: with `--per-bot-rate`, `scale bots=N` adds load. The
/// aggregator runs here with the arguments `up` gave its Deployment, behind the fake's
/// port-forward, and one bot process stands for each bot pod.
#[test]
fn scaling_the_bots_of_a_per_bot_run_raises_the_offered_rate() {
    let f = FakeRun::new("k8s-per-bot", "pb");
    let (dir, fake, ns) = (&f.dir, &f.fake, &f.ns);
    let k8s = |cmd: &[&str]| f.k8s(cmd);
    let srv = SCALETEST.listening(&["serve", "--bind", "127.0.0.1:0", "--threads", "1"]);
    let target = format!("http://{}/", srv.addr);
    let (code, out, err) = k8s(&["up", "--target", &target, "--per-bot-rate", "50"]);
    assert_eq!(code, Some(0), "up: {out}{err}");
    assert!(!out.contains("deployment/serve"), "{out}");
    let token = token_file(fake, ns, dir);
    let (cert, key) = tls_files(fake, ns, dir);
    let out_dir = dir.join("agg").to_string_lossy().into_owned();
    // The Deployment's own arguments, with this machine's address, token, directory and
    // certificate.
    let dep = fake
        .objects("deployments")
        .into_iter()
        .find(|d| d["metadata"]["namespace"] == ns.as_str() && d["metadata"]["name"] == "aggregate")
        .expect("the aggregate Deployment");
    let mut args: Vec<String> =
        serde_json::from_value(dep["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .unwrap();
    for (flag, value) in [
        ("--bind", "127.0.0.1:0"),
        ("--token-file", &token),
        ("--out", &out_dir),
        ("--tls-cert", &cert),
        ("--tls-key", &key),
    ] {
        let i = args.iter().position(|a| a == flag).unwrap() + 1;
        args[i] = value.to_string();
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agg = SCALETEST.listening(&args);
    forward_aggregator(fake, ns, agg.addr);
    let agg_url = format!("https://{}", agg.addr);
    let bot = || {
        SCALETEST.spawn(&[
            "bot",
            "--aggregator",
            &agg_url,
            "--token-file",
            &token,
            "--cacert",
            &cert,
        ])
    };
    let offered = || {
        tls_json(agg.addr, &cert, "/api/load")["offered"]
            .as_f64()
            .unwrap()
    };
    let mut bots = vec![bot()];
    testsupport::wait_until("one bot's 50 req/s", Duration::from_secs(20), || {
        offered() == 50.0
    });
    let (code, out, err) = k8s(&["scale", "bots=4"]);
    assert_eq!(code, Some(0), "scale: {out}{err}");
    let replicas = fake
        .objects("deployments")
        .into_iter()
        .find(|d| d["metadata"]["namespace"] == ns.as_str() && d["metadata"]["name"] == "bot")
        .expect("the bot Deployment")["spec"]["replicas"]
        .as_u64();
    assert_eq!(replicas, Some(4));
    bots.extend((0..3).map(|_| bot()));
    testsupport::wait_until("4 bots' 200 req/s", Duration::from_secs(20), || {
        offered() == 200.0
    });
    // What `status` reports of the aggregator, through the port-forward, and a row per pod.
    let (code, out, err) = k8s(&["status"]);
    assert_eq!(code, Some(0), "status: {out}{err}");
    assert!(
        out.contains("(asked 200)") && out.contains("; 4 bots;"),
        "{out}"
    );
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("bot-") || l.starts_with("aggregate-"))
        .collect();
    assert_eq!(rows.len(), 5, "{out}");
    assert!(rows.iter().all(|r| r.contains("Running, ready")), "{out}");
    assert!(out.contains("cluster: Kubernetes v"), "{out}");
    // `up` records the cluster's version in the run's events (the first `up` ran before this
    // test's aggregator was behind the port-forward: it said so on stderr).
    let (code, out, err) = k8s(&["up"]);
    assert_eq!(code, Some(0), "up: {out}{err}");
    assert!(out.contains("0 of 6 objects changed"), "{out}");
    assert!(err.is_empty(), "{err}");
    let events = tls_json(agg.addr, &cert, "/api/events");
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["text"]
                .as_str()
                .unwrap()
                .starts_with("cluster: Kubernetes v")),
        "{events}"
    );
    // `logs`: each line prefixed with its pod.
    // The fake's controllers play the kubelet: they set what each pod logged.
    let bot_pods: Vec<String> = fake
        .objects("pods")
        .into_iter()
        .filter(|p| {
            p["metadata"]["namespace"] == ns.as_str()
                && p["metadata"]["labels"]["app.kubernetes.io/component"] == "bot"
        })
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bot_pods.len(), 4);
    for p in &bot_pods {
        fake.set_log(ns, p, &format!("one\ntwo\nthree {p}\n"));
    }
    let (code, out, err) = k8s(&["logs", "bot", "--tail", "2"]);
    assert_eq!(code, Some(0), "logs: {out}{err}");
    let want: Vec<String> = bot_pods
        .iter()
        .flat_map(|p| [format!("[pod/{p}] two"), format!("[pod/{p}] three {p}")])
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want, "{out}");
    drop(bots);
    let _ = std::fs::remove_dir_all(dir);
}

/// `k8s rollout`'s verdict, as seed 003 asks of a rollout under load: the requests of the
/// rollout's seconds, read from the aggregator (here a process of this test behind the fake's
/// port-forward, fed by a bot loading a local `serve`). Without failures it exits 0; with the
/// server killed (no drain) before the next rollout, its failed requests make it exit 1.
#[test]
fn a_rollout_with_failed_requests_exits_1_and_one_without_exits_0() {
    let f = FakeRun::new("k8s-verdict", "vd");
    let (dir, fake, ns) = (&f.dir, &f.fake, &f.ns);
    let k8s = |cmd: &[&str]| f.k8s(cmd);
    let (code, out, err) = k8s(&["up"]);
    assert_eq!(code, Some(0), "up: {out}{err}");
    let token_file = token_file(fake, ns, dir);
    let (cert, key) = tls_files(fake, ns, dir);
    let srv = SCALETEST.listening(&["serve", "--bind", "127.0.0.1:0", "--threads", "1"]);
    let out_dir = dir.join("agg").to_string_lossy().into_owned();
    let agg = SCALETEST.listening(&[
        "aggregate",
        &format!("http://{}/", srv.addr),
        "--rate",
        "200",
        "--bind",
        "127.0.0.1:0",
        "--token-file",
        &token_file,
        "--out",
        &out_dir,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    forward_aggregator(fake, ns, agg.addr);
    let agg_url = format!("https://{}", agg.addr);
    let _bot = SCALETEST.spawn(&[
        "bot",
        "--aggregator",
        &agg_url,
        "--token-file",
        &token_file,
        "--cacert",
        &cert,
    ]);
    testsupport::wait_until("the bot's first answers", Duration::from_secs(20), || {
        tls_json(agg.addr, &cert, "/api/summary")["requests"]
            .as_u64()
            .unwrap_or(0)
            >= 100
    });
    let (code, out, err) = k8s(&["rollout", "v2", "--threshold", "p99<5s"]);
    assert_eq!(code, Some(0), "rollout: {out}{err}");
    let window = out
        .lines()
        .find(|l| l.starts_with("rollout from "))
        .unwrap_or_else(|| panic!("no window line: {out}"));
    assert!(window.contains(", 0 failed, "), "{window}");
    assert!(out.contains("pass failed==0"), "{out}");
    assert!(out.contains("pass p99<5s"), "{out}");
    assert!(out.contains("answers by version: v1 "), "{out}");
    // The server dies without a drain: what the bot sends during the next rollout fails.
    let mut srv = srv;
    assert!(testsupport::signal(srv.proc.id(), "KILL"));
    let _ = srv.proc.wait();
    let (code, out, err) = k8s(&["rollout", "v3"]);
    assert_eq!(code, Some(1), "rollout: {out}{err}");
    assert!(out.contains("FAIL failed==0"), "{out}");
    // `check` judges the whole run the same way: it holds the failures too.
    let (code, out, err) = k8s(&["check", "--threshold", "requests>=100"]);
    assert_eq!(code, Some(0), "check: {out}{err}");
    assert!(out.contains("pass requests>=100"), "{out}");
    let (code, out, _) = k8s(&["check"]);
    assert_eq!(code, Some(1), "check: {out}");
    assert!(out.contains("FAIL failed==0"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

/// (verb, plural) pairs a ClusterRole in a rendered YAML stream grants.
fn granted(yaml: &str) -> std::collections::BTreeSet<(String, String)> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml).expect("YAML");
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    let mut out = std::collections::BTreeSet::new();
    for r in role["rules"].as_array().expect("rules") {
        for res in r["resources"].as_array().into_iter().flatten() {
            for v in r["verbs"].as_array().expect("verbs") {
                out.insert((
                    v.as_str().unwrap().to_string(),
                    res.as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

/// (verb, plural) pairs a fake served, from its request log (`create configmaps`).
fn used(fake: &FakeApi) -> std::collections::BTreeSet<(String, String)> {
    fake.calls()
        .keys()
        .filter(|k| !k.contains(" in "))
        .filter_map(|k| k.split_once(' '))
        .map(|(v, r)| (v.to_string(), r.to_string()))
        .collect()
}

/// Apply a rendered stream to `fake` as `k8s` applies it (server-side apply, any kind).
fn apply_all(fake: &FakeApi, dir: &std::path::Path, yaml: &str) -> usize {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml).expect("YAML");
    let kc = fake.kubeconfig(dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, _) = kapi::connect(Some(&kc), None, None, false)
            .await
            .expect("client");
        k8s::launch::apply(&client, &docs)
            .await
            .expect("applied")
            .len()
    })
}

/// `k8s api --render` (churn, watch loops, a workload) and `k8s nodes up --render`: the
/// manifests the fake's server-side apply accepts, each ClusterRole granting exactly the
/// (verb, resource) pairs the same command used when run against a fake (hollow nodes: at
/// least those, and no more than a kubelet's with pods).
#[test]
fn runners_render_manifests_with_the_least_role_their_command_needs() {
    let dir = tmpdir("k8s-runners");
    let w = dir.join("w.yaml");
    std::fs::write(
        &w,
        "jobs:\n  - name: cms\n    namespaces: 2\n    objects:\n      - replicas: 3\n        object: {apiVersion: v1, kind: ConfigMap, metadata: {name: 'c-{{replica}}'}}\n    waitFor: Ready\n  - name: gone\n    delete: cms\n",
    )
    .expect("write");
    let w = w.to_str().unwrap();
    let cases: [(&str, Vec<&str>); 4] = [
        (
            "churn",
            vec![
                "churn",
                "-w",
                "2",
                "-n",
                "6",
                "--namespaces",
                "2",
                "--watch",
            ],
        ),
        ("watchers", vec!["watch", "--watchers", "3", "-d", "1s"]),
        ("run", vec!["run", w]),
        ("run --cleanup", vec!["run", w, "--cleanup"]),
    ];
    for (name, args) in cases {
        let target = FakeApi::start();
        let kc = target.kubeconfig(&dir).to_string_lossy().into_owned();
        let mut k = vec!["k8s", "api", "--kubeconfig", &kc, "--render", "--"];
        k.extend(&args);
        let (code, yaml, err) = run(&k);
        assert_eq!(code, Some(0), "{name}: {err}");
        // What the command does, on a fake of its own.
        let mut local = vec!["api"];
        local.extend(&args);
        local.extend(["--kubeconfig", &kc]);
        let (code, out, err) = run(&local);
        assert_eq!(code, Some(0), "{name}: {out}{err}");
        assert_eq!(granted(&yaml), used(&target), "{name}: {yaml}");
        let applied = apply_all(&FakeApi::start(), &dir, &yaml);
        assert!(applied >= 5, "{name}: {applied}");
    }
    // Hollow nodes with a pod bound, run and deleted: what they call is granted.
    let target = FakeApi::start();
    let kc = target.kubeconfig(&dir).to_string_lossy().into_owned();
    let (code, yaml, err) = run(&[
        "k8s",
        "nodes",
        "up",
        "--nodes",
        "4",
        "--per-pod",
        "2",
        "--render",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let mut nodes = SCALETEST.spawn(&[
        "nodes",
        "--nodes",
        "1",
        "--prefix",
        "n-",
        "--kubeconfig",
        &kc,
    ]);
    let wait = Duration::from_secs(20);
    wait_until("the hollow node", wait, || {
        !target.objects("nodes").is_empty()
    });
    let pod = serde_json::json!({"metadata": {"name": "p"},
        "spec": {"nodeName": "n-0", "containers": [{"name": "c", "image": "pause"}]}});
    target.create("pods", "default", pod).expect("pod");
    wait_until("its kubelet's status patch", wait, || {
        target.count("patch pods/status") > 0
    });
    let _ = testsupport::interrupt(nodes.0.id());
    let _ = nodes.wait();
    let granted = granted(&yaml);
    let by_nodes = used(&target);
    let missing: Vec<_> = by_nodes.difference(&granted).collect();
    assert!(missing.is_empty(), "used but not granted: {missing:?}");
    assert!(apply_all(&FakeApi::start(), &dir, &yaml) >= 5);
}

/// The container arguments of the first pod template of `kind` objects in `fake`, with the
/// pod's ordinal for `$(POD_ORDINAL)`; and the object.
fn template_args(fake: &FakeApi, plural: &str) -> Option<(serde_json::Value, Vec<String>)> {
    let o = fake.objects(plural).into_iter().next()?;
    let args = o["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()?
        .iter()
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    Some((o, args))
}

/// What `f` gives once it gives something (testsupport's wait, 30 s).
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let mut got = None;
    wait_until(what, Duration::from_secs(30), || {
        got = f();
        got.is_some()
    });
    got.expect("waited for it")
}

/// The binary with `args`, its output piped, to wait for with its output.
fn spawn_piped(args: &[&str]) -> std::process::Child {
    SCALETEST
        .command()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// `k8s nodes up --nodes 4 --per-pod 2`: a StatefulSet of 2 shard pods; the test plays the
/// StatefulSet controller and the pods' kubelet (it runs each pod's command, as the
/// container would, against the fake); `up` returns once the 4 Nodes are Ready, and `down`
/// removes the runner, the Nodes and their Leases.
#[test]
fn k8s_nodes_up_brings_nodes_ready_from_shard_pods_and_down_removes_them() {
    let fake = FakeApi::start();
    let dir = tmpdir("k8s-nodes-up");
    let kc = fake.kubeconfig(&dir).to_string_lossy().into_owned();
    let up = spawn_piped(&[
        "k8s",
        "nodes",
        "up",
        "--nodes",
        "4",
        "--per-pod",
        "2",
        "--kubeconfig",
        &kc,
        "--timeout",
        "60s",
        "--",
        "--lease-interval",
        "500ms",
    ]);
    let (sts, args) = wait_for("the StatefulSet", || template_args(&fake, "statefulsets"));
    assert_eq!(sts["spec"]["replicas"], 2);
    let shards: Vec<std::process::Child> = (0..2)
        .map(|i| {
            let args: Vec<String> = args
                .iter()
                .map(|a| a.replace("$(POD_ORDINAL)", &i.to_string()))
                .collect();
            SCALETEST
                .command()
                .args(&args)
                .env("KUBECONFIG", &kc)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("a shard")
        })
        .collect();
    let out = up.wait_with_output().expect("up");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout, "4 hollow nodes Ready from 2 pod(s)\n", "{stderr}");
    let mut names: Vec<String> = fake
        .objects("nodes")
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["hollow-0-0", "hollow-0-1", "hollow-1-0", "hollow-1-1"]
    );
    // Each node's first lease comes within a renewal period of Ready.
    wait_until("4 leases", Duration::from_secs(30), || {
        fake.objects("leases").len() == 4
    });
    for mut s in shards {
        let _ = testsupport::interrupt(s.id());
        let _ = s.wait();
    }
    let (code, stdout, err) = run(&["k8s", "nodes", "down", "--kubeconfig", &kc]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        stdout.contains("4 hollow node(s) and 4 lease(s)"),
        "{stdout}"
    );
    assert!(fake.objects("nodes").is_empty());
    assert!(
        fake.objects("clusterroles").is_empty() && fake.objects("clusterrolebindings").is_empty()
    );
    assert!(!fake
        .objects("namespaces")
        .iter()
        .any(|n| n["metadata"]["name"] == "scaletest-hollow"));
}

/// `k8s api --pods 2 -- churn …`: a Job of 2 pods; the test plays the Job controller and the
/// pods (it runs each pod's command against the fake and gives the pod its output as its
/// log); `k8s api` merges the two runs into one report.
#[test]
fn k8s_api_runs_a_command_in_pods_and_merges_their_runs() {
    let fake = FakeApi::start();
    let dir = tmpdir("k8s-api");
    let kc = fake.kubeconfig(&dir).to_string_lossy().into_owned();
    let json = dir.join("merged.json");
    let k = spawn_piped(&[
        "k8s",
        "api",
        "--pods",
        "2",
        "--kubeconfig",
        &kc,
        "--timeout",
        "60s",
        "--json",
        json.to_str().unwrap(),
        "--",
        "churn",
        "-w",
        "2",
        "-n",
        "10",
        "-u",
        "1",
    ]);
    let (job, args) = wait_for("the Job", || template_args(&fake, "jobs"));
    assert_eq!(args[args.len() - 2..], ["--json", "-"]);
    let ns = job["metadata"]["namespace"].as_str().unwrap().to_string();
    let labels = job["spec"]["template"]["metadata"]["labels"].clone();
    for i in 0..2 {
        let out = SCALETEST
            .command()
            .args(&args)
            .env("KUBECONFIG", &kc)
            .output()
            .expect("pod");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let name = format!("scaletest-api-{i}");
        let pod = serde_json::json!({"metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "scaletest", "image": "scaletest"}]}});
        fake.create("pods", &ns, pod).expect("pod");
        // A container's log holds both streams: the report (stderr) around the run's line.
        let (report, run) = (text(&out.stderr), text(&out.stdout));
        assert_eq!(run.lines().count(), 1, "one JSON line on stdout: {run}");
        fake.set_log(&ns, &name, &format!("{report}{run}{report}"));
    }
    fake.set_status(
        "jobs",
        &ns,
        "scaletest-api",
        serde_json::json!({"succeeded": 2}),
    )
    .expect("job status");
    let out = k.wait_with_output().expect("k8s api");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("20 lifecycles: 20 completed"), "{stdout}");
    assert!(stderr.contains("merged the runs of 2 pod(s)"), "{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["lifecycles"]["completed"], 20);
    assert_eq!(fake.count("create configmaps"), 20);
    // The runner is gone once read.
    assert!(fake.objects("jobs").is_empty() && fake.objects("clusterroles").is_empty());
}

/// The runners on a real cluster whose nodes can pull `SCALETEST_IMAGE` (default
/// scaletest:VERSION): `k8s api` in 2 pods, merged; `k8s nodes up` of 4 hollow nodes in 2
/// shards, Ready, then `down`.
#[test]
#[ignore = "needs a real cluster that can run the image: set SCALETEST_KUBECONFIG (and SCALETEST_IMAGE) and run with --ignored"]
fn runners_as_pods_on_a_real_cluster() {
    let kc = std::env::var("SCALETEST_KUBECONFIG")
        .expect("SCALETEST_KUBECONFIG must name a real cluster's kubeconfig for this test");
    let image =
        std::env::var("SCALETEST_IMAGE").unwrap_or_else(|_| k8s::spec::DEFAULT_IMAGE.to_string());
    let (code, out, err) = run(&[
        "k8s",
        "api",
        "--kubeconfig",
        &kc,
        "--image",
        &image,
        "--pods",
        "2",
        "--timeout",
        "300s",
        "--",
        "churn",
        "-w",
        "2",
        "-n",
        "10",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("20 lifecycles: 20 completed"), "{out}");
    let (code, out, err) = run(&[
        "k8s",
        "nodes",
        "up",
        "--kubeconfig",
        &kc,
        "--image",
        &image,
        "--nodes",
        "4",
        "--per-pod",
        "2",
        "--timeout",
        "300s",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out, "4 hollow nodes Ready from 2 pod(s)\n");
    let (code, out, err) = run(&["k8s", "nodes", "down", "--kubeconfig", &kc]);
    assert_eq!(code, Some(0), "{out}{err}");
}
