//! The fake's wire format where kube-rs does not show it: watch replay, bookmarks, ERROR 410,
//! generateName and discovery, read as raw HTTP.

use kubefake::{FakeApi, Options};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Send one request; read until `done` says the bytes so far suffice (or 10 s pass).
fn exchange(api: &FakeApi, req: &str, done: impl Fn(&str) -> bool) -> String {
    let mut s = TcpStream::connect(api.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    s.write_all(req.as_bytes()).expect("write");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !done(&String::from_utf8_lossy(&got)) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\r\n")
}

/// The JSON events in a (chunked) watch response, in order.
fn events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.get("type").is_some())
        .collect()
}

fn rv(o: &Value) -> u64 {
    o["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("resourceVersion")
}

#[test]
fn a_watch_replays_from_its_version_then_sends_bookmarks() {
    let api = FakeApi::start_with(Options {
        bookmark_every: Duration::from_millis(50),
        ..Options::default()
    });
    let a = api
        .create("configmaps", "default", json!({"metadata": {"name": "a"}}))
        .expect("a");
    api.create("configmaps", "default", json!({"metadata": {"name": "b"}}))
        .expect("b");
    api.create(
        "configmaps",
        "kube-system",
        json!({"metadata": {"name": "elsewhere"}}),
    )
    .expect("c");
    let path = format!(
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds=5",
        rv(&a)
    );
    let text = exchange(&api, &get(&path), |t| t.contains("BOOKMARK"));
    let ev = events(&text);
    // Only what came after a, only in this namespace; then a bookmark at the newest version.
    assert_eq!(ev[0]["type"], "ADDED", "{text}");
    assert_eq!(ev[0]["object"]["metadata"]["name"], "b");
    let bm = ev
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .expect("bookmark");
    assert_eq!(bm["object"]["kind"], "ConfigMap");
    assert!(rv(&bm["object"]) >= rv(&ev[0]["object"]));
    assert!(!text.contains("elsewhere"));
}

#[test]
fn a_watch_from_a_compacted_version_gets_an_error_event_with_410() {
    let api = FakeApi::start();
    let a = api
        .create("configmaps", "default", json!({"metadata": {"name": "a"}}))
        .expect("a");
    api.expire_history();
    let path = format!("/api/v1/configmaps?watch=true&resourceVersion={}", rv(&a));
    let text = exchange(&api, &get(&path), |t| t.contains("ERROR"));
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let ev = events(&text);
    assert_eq!(ev.len(), 1, "{text}");
    assert_eq!(ev[0]["type"], "ERROR");
    assert_eq!(ev[0]["object"]["code"], 410);
    assert_eq!(ev[0]["object"]["reason"], "Expired");
}

#[test]
fn generate_name_conflicts_and_discovery_over_http() {
    let api = FakeApi::start();
    let post = |body: &str| {
        format!(
            "POST /apis/coordination.k8s.io/v1/namespaces/default/leases HTTP/1.1\r\nHost: fake\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    // Whole responses: read until the server closes (Connection: close).
    let done = |_: &str| false;
    let made = exchange(
        &api,
        &post(r#"{"metadata":{"generateName":"hollow-"}}"#),
        done,
    );
    assert!(made.starts_with("HTTP/1.1 201"), "{made}");
    // The body is chunked: its JSON is the one line that parses.
    let obj: Value = made
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(Value::is_object)
        .expect("a JSON body");
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(name.starts_with("hollow-") && name.len() > 7, "{made}");
    let again = exchange(
        &api,
        &post(&format!(r#"{{"metadata":{{"name":"{name}"}}}}"#)),
        done,
    );
    assert!(again.starts_with("HTTP/1.1 409"), "{again}");
    assert!(again.contains("AlreadyExists"));
    // A namespaced create in a namespace that does not exist is 404, as on a real server.
    let nowhere = post("{}").replace("namespaces/default", "namespaces/nowhere");
    assert!(exchange(&api, &nowhere, done).starts_with("HTTP/1.1 404"));
    let groups = exchange(&api, &get("/apis"), done);
    assert!(groups.contains("coordination.k8s.io/v1"), "{groups}");
    let resources = exchange(&api, &get("/apis/coordination.k8s.io/v1"), done);
    assert!(resources.contains(r#""name":"leases""#), "{resources}");
    assert!(exchange(&api, &get("/apis/nope.example.com/v1"), done).starts_with("HTTP/1.1 404"));
}

#[test]
fn version_is_the_one_the_fake_copies() {
    let api = FakeApi::start();
    let got = exchange(&api, &get("/version"), |_| false);
    let v: Value = got
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(Value::is_object)
        .expect("a JSON body");
    assert_eq!(
        (&v["major"], &v["minor"], &v["gitVersion"], &v["platform"]),
        (
            &json!("1"),
            &json!("28"),
            &json!("v1.28.7"),
            &json!("linux/amd64")
        ),
        "{got}"
    );
}

/// POST a JSON body; the response head and body.
fn post(api: &FakeApi, path: &str, body: &Value) -> String {
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: fake\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // Connection: close: read to the end.
    exchange(api, &req, |_| false)
}

#[test]
fn a_body_of_another_kind_or_version_is_refused_as_the_api_server_refuses_it() {
    let api = FakeApi::start();
    api.register(kubefake::Resource {
        group: "wardle.example.com".into(),
        version: "v1alpha1".into(),
        plural: "flunders".into(),
        kind: "Flunder".into(),
        namespaced: true,
    });
    let flunders = "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders";
    // A ConfigMap sent to flunders: its apiVersion is checked first (400).
    let r = post(
        &api,
        flunders,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
    );
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("\"reason\":\"BadRequest\""), "{r}");
    assert!(
        r.contains(
            "the API version in the data (v1) does not match the expected API version \
             (wardle.example.com/v1alpha1)"
        ),
        "{r}"
    );
    // The right version, another kind: a custom resource's validation refuses it (422).
    let r = post(
        &api,
        flunders,
        &json!({"apiVersion": "wardle.example.com/v1alpha1", "kind": "Fischer",
                "metadata": {"name": "a"}}),
    );
    assert!(r.starts_with("HTTP/1.1 422"), "{r}");
    assert!(r.contains("must be Flunder"), "{r}");
    // A built-in type cannot be handled as another (400).
    let r = post(
        &api,
        "/api/v1/namespaces/default/configmaps",
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}}),
    );
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(
        r.contains("Secret in version \\\"v1\\\" cannot be handled as a ConfigMap"),
        "{r}"
    );
    assert!(api.objects("flunders").is_empty() && api.objects("configmaps").is_empty());
    // Its own kind, or none (the path's is assumed), is created.
    for (name, body) in [
        (
            "b",
            json!({"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder"}),
        ),
        ("c", json!({})),
    ] {
        let mut body = body;
        body["metadata"] = json!({"name": name});
        let r = post(&api, flunders, &body);
        assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    }
    assert_eq!(api.objects("flunders").len(), 2);
    assert_eq!(api.count("create flunders"), 4);
}

#[test]
fn server_side_apply_takes_yaml_needs_a_field_manager_and_writes_nothing_twice() {
    let api = FakeApi::start();
    let patch = |query: &str, body: &str| {
        format!(
            "PATCH /api/v1/namespaces/default/configmaps/cfg{query} HTTP/1.1\r\nHost: fake\r\n\
             Content-Type: application/apply-patch+yaml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let done = |_: &str| false;
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  k: v\n";
    let body = |text: &str| -> Value {
        text.lines()
            .find_map(|l| {
                serde_json::from_str::<Value>(l.trim())
                    .ok()
                    .filter(Value::is_object)
            })
            .expect("a JSON body")
    };
    let no_manager = exchange(&api, &patch("", yaml), done);
    assert!(no_manager.starts_with("HTTP/1.1 422"), "{no_manager}");
    assert!(no_manager.contains("fieldManager: Required value"));
    let created = exchange(&api, &patch("?fieldManager=t", yaml), done);
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let first = body(&created);
    assert_eq!(first["data"]["k"], "v");
    assert_eq!(first["metadata"]["managedFields"][0]["manager"], "t");
    let again = exchange(&api, &patch("?fieldManager=t", yaml), done);
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    assert_eq!(rv(&body(&again)), rv(&first), "a no-op apply wrote");
    let wrong_kind = yaml.replace("kind: ConfigMap", "kind: Secret");
    let refused = exchange(&api, &patch("?fieldManager=t", &wrong_kind), done);
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
}

#[test]
fn pods_binding_takes_a_binding_and_refuses_another_kind() {
    let api = FakeApi::start();
    let pods = "/api/v1/namespaces/default/pods";
    let r = post(
        &api,
        pods,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    );
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    // A Pod body is not a Binding (the check that the merge of the two made every bind fail).
    let r = post(
        &api,
        &format!("{pods}/p/binding"),
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
    );
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = post(
        &api,
        &format!("{pods}/p/binding"),
        &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}),
    );
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    assert_eq!(api.objects("pods")[0]["spec"]["nodeName"], "n1");
    // The status subresource gets, updates and patches: a DELETE or POST there is a 405 in
    // apimachinery's words (v1.28), and the pod stays.
    for method in ["DELETE", "POST"] {
        let req = format!(
            "{method} {pods}/p/status HTTP/1.1\r\nHost: fake\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
        let r = exchange(&api, &req, |_| false);
        assert!(r.starts_with("HTTP/1.1 405"), "{method}: {r}");
        assert!(
            r.contains("\"the server does not allow this method on the requested resource\""),
            "{r}"
        );
        assert!(r.contains("\"reason\":\"MethodNotAllowed\""), "{r}");
    }
    assert_eq!(api.objects("pods").len(), 1);
}

/// The messages of /work/shared/k8s-reference/error-bodies.txt (kube-apiserver v1.28.7):
/// group resources named `plural.group`, a stale update's Conflict worded as the server words it.
#[test]
fn error_messages_are_worded_as_kube_apiserver_words_them() {
    let api = FakeApi::start();
    let body = |text: &str| -> Value {
        let start = text.find('{').expect("a JSON body");
        serde_json::from_str(text[start..].trim_end_matches(['\r', '\n', '0'])).expect("json")
    };
    let missing = exchange(
        &api,
        &get("/apis/coordination.k8s.io/v1/namespaces/default/leases/nope"),
        |_| false,
    );
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    assert_eq!(
        body(&missing)["message"],
        "leases.coordination.k8s.io \"nope\" not found"
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ref-a"}});
    post(&api, "/api/v1/namespaces/default/configmaps", &cm);
    let again = post(&api, "/api/v1/namespaces/default/configmaps", &cm);
    assert!(again.starts_with("HTTP/1.1 409"), "{again}");
    assert_eq!(
        body(&again)["message"],
        "configmaps \"ref-a\" already exists"
    );
    let stale = json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "ref-a", "resourceVersion": "1"}})
    .to_string();
    let req = format!(
        "PUT /api/v1/namespaces/default/configmaps/ref-a HTTP/1.1\r\nHost: fake\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{stale}",
        stale.len()
    );
    let conflict = exchange(&api, &req, |_| false);
    assert!(conflict.starts_with("HTTP/1.1 409"), "{conflict}");
    assert_eq!(
        body(&conflict)["message"],
        "Operation cannot be fulfilled on configmaps \"ref-a\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );
}

/// watch.txt (kube-apiserver v1.28.7): a watch's response headers come at once, before any
/// event, on a quiet collection.
#[test]
fn a_watch_on_a_quiet_collection_gets_its_headers_at_once() {
    let api = FakeApi::start_with(Options {
        bookmark_every: Duration::from_secs(60),
        ..Options::default()
    });
    let t = Instant::now();
    let head = exchange(
        &api,
        &get("/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true"),
        |s| s.contains("\r\n\r\n"),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(events(&head).is_empty(), "{head}");
}

/// A kubelet's TokenRequest for a pod's projected token: 404 for a service account that does
/// not exist (as the API server answers), else 201 with the TokenRequest in
/// `authentication.k8s.io/v1`'s shape: the spec with the server's defaults and a status with
/// the token and its expiry.
#[test]
fn a_token_request_is_answered_with_a_token_and_its_expiry() {
    let api = FakeApi::start();
    let path = "/api/v1/namespaces/default/serviceaccounts/default/token";
    let req = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3607,
                 "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u"}}});
    let r = post(&api, path, &req);
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert!(
        r.contains(r#""message":"serviceaccounts \"default\" not found""#),
        "{r}"
    );
    api.create(
        "serviceaccounts",
        "default",
        json!({"metadata": {"name": "default"}}),
    )
    .expect("service account");
    let r = post(&api, path, &req);
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    let body: Value = r
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(Value::is_object)
        .expect("a JSON body");
    assert_eq!(body["kind"], "TokenRequest");
    assert_eq!(body["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(body["metadata"]["name"], "default");
    assert_eq!(body["spec"]["expirationSeconds"], 3607);
    assert_eq!(body["spec"]["boundObjectRef"]["name"], "p");
    assert_eq!(
        body["spec"]["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    assert!(!body["status"]["token"].as_str().unwrap_or("").is_empty());
    let expires = body["status"]["expirationTimestamp"].as_str().unwrap_or("");
    assert!(expires.ends_with('Z') && expires.len() == 20, "{expires}");
    assert_eq!(api.count("create serviceaccounts/token"), 2);
    // Only POST: a token is not an object to GET.
    let r = exchange(&api, &get(path), |_| false);
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
}

/// The value of the one `/metrics` line that starts with `series` (name and labels), if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn scrape(api: &FakeApi) -> String {
    exchange(api, &get("/metrics"), |_| false)
}

/// `/metrics` counts and times what the fake served with kube-apiserver v1.28.7's names,
/// labels and buckets: POST is scoped `resource`, a GET of a collection is LIST; an injected
/// 429 is API Priority and Fairness' (counted, no duration), RBAC's 403 is not counted; a
/// watch is long-running while open and counted when it ends.
#[test]
fn metrics_count_and_time_the_calls_as_kube_apiserver_does() {
    let api = FakeApi::start();
    let cm = "/api/v1/namespaces/default/configmaps";
    for n in ["a", "b"] {
        assert!(post(&api, cm, &json!({"metadata": {"name": n}})).starts_with("HTTP/1.1 201"));
    }
    api.delay("get", Duration::from_millis(30));
    let got = exchange(&api, &get(&format!("{cm}/a")), |_| false);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    exchange(&api, &get(cm), |_| false);
    api.reject_next(1, 429);
    assert!(post(&api, cm, &json!({"metadata": {"name": "c"}})).starts_with("HTTP/1.1 429"));
    api.forbid("create", "configmaps");
    assert!(post(&api, cm, &json!({"metadata": {"name": "d"}})).starts_with("HTTP/1.1 403"));
    // A watch held open.
    let mut w = TcpStream::connect(api.addr).expect("connect");
    w.write_all(get(&format!("{cm}?watch=1")).as_bytes())
        .expect("write");
    let mut head = [0u8; 16];
    w.read_exact(&mut head).expect("watch head");

    let m = scrape(&api);
    let labels = |verb: &str, scope: &str| {
        format!(
            "component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",\
             scope=\"{scope}\",subresource=\"\",verb=\"{verb}\",version=\"v1\""
        )
    };
    let total = |code: u16, verb: &str, scope: &str| {
        sample(
            &m,
            &format!(
                "apiserver_request_total{{code=\"{code}\",{}}}",
                labels(verb, scope)
            ),
        )
    };
    assert_eq!(total(201, "POST", "resource"), Some(2.0), "{m}");
    assert_eq!(total(429, "POST", "resource"), Some(1.0), "{m}");
    assert_eq!(total(403, "POST", "resource"), None, "{m}");
    assert_eq!(total(200, "GET", "resource"), Some(1.0), "{m}");
    assert_eq!(total(200, "LIST", "namespace"), Some(1.0), "{m}");
    let bucket = |verb: &str, scope: &str, le: &str| {
        sample(
            &m,
            &format!(
                "apiserver_request_duration_seconds_bucket{{{},le=\"{le}\"}}",
                labels(verb, scope)
            ),
        )
    };
    // The GET waited 30 ms: in (0.025, 0.05]; the 429 has no duration.
    assert_eq!(bucket("GET", "resource", "0.025"), Some(0.0), "{m}");
    assert_eq!(bucket("GET", "resource", "0.05"), Some(1.0), "{m}");
    assert_eq!(bucket("POST", "resource", "+Inf"), Some(2.0), "{m}");
    assert_eq!(bucket("POST", "resource", "60"), Some(2.0), "{m}");
    let flow = "flow_schema=\"global-default\",priority_level=\"global-default\"";
    assert_eq!(
        sample(
            &m,
            &format!(
                "apiserver_flowcontrol_rejected_requests_total{{{flow},reason=\"queue-full\"}}"
            )
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            &format!("apiserver_flowcontrol_current_inqueue_requests{{{flow}}}")
        ),
        Some(0.0),
        "{m}"
    );
    let lr = "apiserver_longrunning_requests{component=\"apiserver\",group=\"\",\
              resource=\"configmaps\",scope=\"namespace\",subresource=\"\",verb=\"WATCH\",\
              version=\"v1\"}";
    assert_eq!(sample(&m, lr), Some(1.0), "{m}");
    assert_eq!(
        sample(
            &m,
            "etcd_request_duration_seconds_count{operation=\"create\",type=\"configmaps\"}"
        ),
        Some(2.0),
        "{m}"
    );
    assert!(
        m.contains("kubernetes_build_info{build_date=\"2026-12-06T03:28:16Z\",compiler=\"gc\",")
            && m.contains("git_version=\"v1.28.7\""),
        "{m}"
    );
    for family in [
        "# TYPE apiserver_request_duration_seconds histogram",
        "# TYPE apiserver_flowcontrol_request_wait_duration_seconds histogram",
        "# TYPE apiserver_current_inflight_requests gauge",
    ] {
        assert!(m.contains(family), "{family}: {m}");
    }
    assert_eq!(
        sample(
            &m,
            "apiserver_current_inflight_requests{request_kind=\"readOnly\"}"
        ),
        Some(1.0),
        "{m}"
    );
    // The watch ends: no longer long-running, counted once.
    drop(w);
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape(&api);
        if sample(&m, lr) == Some(0.0) || Instant::now() > deadline {
            break m;
        }
    };
    assert_eq!(sample(&m, lr), Some(0.0), "{m}");
    assert_eq!(
        sample(
            &m,
            &format!(
                "apiserver_request_total{{code=\"200\",{}}}",
                labels("WATCH", "namespace")
            )
        ),
        Some(1.0),
        "{m}"
    );
}

/// With `forbid_metrics`, `/metrics` is RBAC's 403 for a non-resource URL.
#[test]
fn metrics_can_be_forbidden_as_rbac_forbids_them() {
    let api = FakeApi::start_with(Options {
        forbid_metrics: true,
        ..Options::default()
    });
    let got = scrape(&api);
    assert!(got.starts_with("HTTP/1.1 403"), "{got}");
    assert!(
        got.contains(r#"forbidden: User \"system:anonymous\" cannot get path \"/metrics\""#),
        "{got}"
    );
}
