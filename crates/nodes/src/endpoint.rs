//! The kubelet endpoint of every hollow node of the process: ONE HTTPS listener on
//! `--node-ip` (a self-signed certificate, [`st_http::tls::self_signed_server_config_for`]),
//! advertised as each Node's InternalIP and `daemonEndpoints.kubeletEndpoint.Port`, so that
//! what the API server proxies to a kubelet (`kubectl logs`, `exec`, `port-forward`) reaches
//! something that answers:
//!
//! - `GET /healthz`: `ok`;
//! - `GET /pods`: a PodList of the pods the hollow kubelets run: of ALL the process's nodes,
//!   since the path does not name a node and every node shares the address (the API server
//!   dials an IP, so TLS carries no server name to route by);
//! - `GET /containerLogs/NS/POD/CONTAINER`: a few lines saying the pod is hollow (404 for a
//!   pod or container no hollow node runs, as the kubelet answers);
//! - `/exec/…`, `/attach/…`, `/portForward/…`, `/run/…`: 501, "hollow node: exec/attach/
//!   port-forward are not supported";
//! - anything else: 404.
//!
//! Pod IPs stay unroutable by design (10.0.0.0/8 addresses no interface here has): nothing
//! runs in a hollow pod.

use crate::hollow::Hollow;
use crate::Error;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::watch;

/// What exec, attach, port-forward and run answer.
pub const NOT_SUPPORTED: &str = "hollow node: exec/attach/port-forward are not supported";

/// Bind the listener on `ip` (an ephemeral port); one line when it cannot be.
pub fn bind(ip: IpAddr) -> Result<std::net::TcpListener, Error> {
    let l = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .map_err(|e| Error::Usage(format!("--node-ip {ip}: cannot listen there: {e}")))?;
    l.set_nonblocking(true)
        .map_err(|e| Error::Usage(format!("--node-ip {ip}: {e}")))?;
    Ok(l)
}

/// Serve the kubelet endpoint on `listener` until `phase` says Stopping.
pub async fn serve(
    listener: std::net::TcpListener,
    ip: IpAddr,
    hollow: Arc<Hollow>,
    phase: watch::Receiver<st_http::server::Phase>,
) -> Result<(), Error> {
    let (tls, _) = st_http::tls::self_signed_server_config_for(&[ip.to_string()])
        .map_err(|e| Error::Usage(format!("kubelet endpoint: {e}")))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let stats = Arc::new(st_http::server::Stats::default());
    let make = move |_peer, _activity| {
        let h = hollow.clone();
        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let h = h.clone();
            async move { Ok::<_, std::convert::Infallible>(answer(&h, &req)) }
        })
    };
    let _ = st_http::server::serve(
        listener,
        Some(acceptor),
        st_http::server::Limits::default(),
        stats,
        phase,
        make,
    )
    .await;
    Ok(())
}

fn text(code: u16, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

fn answer<B>(h: &Hollow, req: &Request<B>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let path = req.uri().path();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["healthz"] => text(200, "ok".into(), PLAIN),
        ["pods"] | ["pods", ""] => {
            let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1",
                "metadata": {}, "items": h.kubelet_pods()});
            text(200, list.to_string(), "application/json")
        }
        ["containerLogs", ns, pod, container] => match h.pod_on(ns, pod) {
            None => text(404, format!("pod \"{pod}\" does not exist\n"), PLAIN),
            Some((_, cs)) if !cs.iter().any(|c| c == container) => text(
                404,
                format!("container \"{container}\" not found in pod \"{pod}\"\n"),
                PLAIN,
            ),
            Some((node, _)) => text(
                200,
                format!(
                    "hollow node {node}: pod {ns}/{pod}, container {container} is hollow\n\
                     scaletest nodes runs no container: there is no output to show\n\
                     (the pod's status is played by the hollow kubelet; its IP is not routable)\n"
                ),
                PLAIN,
            ),
        },
        ["exec" | "attach" | "portForward" | "run", ..] => {
            text(501, format!("{NOT_SUPPORTED}\n"), PLAIN)
        }
        _ => text(404, "404 page not found\n".into(), PLAIN),
    }
}
