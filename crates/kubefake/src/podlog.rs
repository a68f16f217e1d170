//! `GET pods/NAME/log`, as kube-apiserver v1.28.7 serves it: from the kubelet of the pod's
//! node over HTTPS (its certificate not verified, as with `--kubelet-certificate-authority`
//! unset), or from a log a test set (`FakeApi::set_log`) playing the kubelet's part.

use crate::reply::{error, plain, status, Body, MAX_BODY};
use crate::resource::core;
use crate::route::{Query, Target};
use crate::state::Shared;
use bytes::Bytes;
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// `GET pods/NAME/log` (`pod.LogLocation`): the pod (404), its container (`container`, or its
/// only one; 400 otherwise), then the kubelet's `/containerLogs/NS/POD/CONTAINER` ([`relay`]).
/// An unbound pod has an empty log. A pod whose log the fake's own controllers set
/// (`FakeApi::set_log`, playing a kubelet of their own) is answered from that,
/// `tailLines` honoured.
pub(crate) async fn get(shared: &Shared, t: &Target, q: &Query) -> Response<Body> {
    let (ns, name) = (t.namespace(), t.object());
    let pod = match shared.store.lock().expect("lock").get(&t.r, ns, name) {
        Ok(p) => p,
        Err(e) => return error(&e),
    };
    let set = shared
        .logs
        .lock()
        .expect("lock")
        .get(&(ns.to_string(), name.to_string()))
        .cloned();
    if let Some(text) = set {
        return plain(200, tail(&text, q));
    }
    let container = match container(&pod, name, q) {
        Ok(c) => c,
        Err(refused) => return *refused,
    };
    let Some(node) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return plain(200, String::new());
    };
    let nodes = core("v1", "nodes", "Node", false);
    let node = match shared.store.lock().expect("lock").get(&nodes, "", node) {
        Ok(n) => n,
        Err(e) => return error(&e),
    };
    relay(&node, &format!("{ns}/{name}/{container}"), q).await
}

/// The container a log request names (`container`), or the pod's only one.
fn container(pod: &Value, name: &str, q: &Query) -> Result<String, Box<Response<Body>>> {
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) if containers.contains(c) => Ok(c.clone()),
        Some(c) => Err(Box::new(status(
            400,
            "BadRequest",
            &format!("container {c} is not valid for pod {name}"),
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => Err(Box::new(status(
            400,
            "BadRequest",
            &format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            ),
        ))),
    }
}

/// The log of `NS/POD/CONTAINER` from the kubelet of `node`: at the node's address, chosen in
/// the server's default `--kubelet-preferred-address-types` order (Hostname, InternalDNS,
/// InternalIP, ExternalDNS, ExternalIP), on `daemonEndpoints.kubeletEndpoint.Port` (10250 when
/// unset), the query passed on. The kubelet's answer is relayed: 2xx as text/plain (read
/// whole: `follow` does not stream), 404 as NotFound, 400 as BadRequest, other codes as
/// InternalError, a failed dial as a 500.
async fn relay(node: &Value, ns_pod_container: &str, q: &Query) -> Response<Body> {
    let Some(host) = kubelet_address(node) else {
        return status(
            500,
            "InternalError",
            &format!(
                "Internal error occurred: no preferred addresses found; known addresses: {}",
                node.pointer("/status/addresses")
                    .cloned()
                    .unwrap_or(json!([]))
            ),
        );
    };
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| (1..=65535).contains(p))
        .unwrap_or(10250) as u16;
    let query = {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in q.iter().filter(|(k, _)| k.as_str() != "container") {
            query.append_pair(k, v);
        }
        query.finish()
    };
    let path = format!(
        "/containerLogs/{ns_pod_container}{}{query}",
        if query.is_empty() { "" } else { "?" }
    );
    match kubelet_get(&host, port, &path).await {
        Ok((code, body)) if (200..300).contains(&code) => plain(200, body),
        Ok((404, body)) => status(404, "NotFound", body.trim_end()),
        Ok((400, body)) => status(400, "BadRequest", body.trim_end()),
        Ok((code, body)) => status(
            500,
            "InternalError",
            &format!("the kubelet answered {code}: {}", body.trim_end()),
        ),
        Err(e) => status(
            500,
            "InternalError",
            &format!("Get \"https://{host}:{port}{path}\": {e}"),
        ),
    }
}

/// The address kube-apiserver dials for a node's kubelet with its default
/// `--kubelet-preferred-address-types`: the first address of the first type present.
fn kubelet_address(node: &Value) -> Option<String> {
    let addrs = node.pointer("/status/addresses")?.as_array()?;
    [
        "Hostname",
        "InternalDNS",
        "InternalIP",
        "ExternalDNS",
        "ExternalIP",
    ]
    .iter()
    .find_map(|ty| {
        addrs
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(ty))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .map(str::to_string)
    })
}

/// One GET to a kubelet over HTTPS, its certificate not verified, as the API server makes it
/// (also for tests that ask a kubelet endpoint directly); (status, body).
pub async fn kubelet_get(host: &str, port: u16, path: &str) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let opts = st_http::tls::TlsOptions {
        insecure: true,
        ca_file: None,
    };
    let tls =
        st_http::tls::client_config(&opts, st_http::Protocol::Http1).map_err(|e| e.to_string())?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
        let name =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let code = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((code, String::from_utf8_lossy(&body).into_owned()))
    };
    // The API server's kubelet client timeout (`HTTPTimeout`, 5 s) for the dial.
    tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "i/o timeout".to_string())?
}

/// The last `tailLines` lines of `text`.
fn tail(text: &str, q: &Query) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let keep = q
        .get("tailLines")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(lines.len())
        .min(lines.len());
    let mut out = lines[lines.len() - keep..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}
