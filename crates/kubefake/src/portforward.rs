//! `pods/NAME/portforward?ports=P` over WebSocket, as the API server relays it to the kubelet
//! and kube-rs speaks it (subprotocol `v4.channel.k8s.io`): for the i-th port, channel 2i
//! carries data and 2i+1 errors; the server first sends each channel's port number (2 bytes,
//! little-endian) and then every frame is one channel byte and its data. Each forward is one
//! TCP connection to where the test said the pod's port is (`FakeApi::forward`); a
//! port with no such address gets the kubelet's refusal on its error channel.

use crate::reply::{error, status, Body};
use crate::route::{Query, Target};
use crate::state::Shared;
use futures::{SinkExt, StreamExt};
use hyper::{body::Incoming, Request, Response, StatusCode};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const PROTOCOL: &str = "v4.channel.k8s.io";

/// Answer the upgrade (101) and relay in the background.
pub(crate) fn upgrade(
    shared: &Arc<Shared>,
    t: &Target,
    q: &Query,
    req: Request<Incoming>,
) -> Response<Body> {
    let (ns, pod) = (t.namespace().to_string(), t.object().to_string());
    if let Err(e) = shared.store.lock().expect("lock").get(&t.r, &ns, &pod) {
        return error(&e);
    }
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| derive_accept_key(k.as_bytes()))
    else {
        return status(
            400,
            "BadRequest",
            "port forwarding needs a WebSocket upgrade",
        );
    };
    let offered = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !offered.split(',').any(|p| p.trim() == PROTOCOL) {
        return status(
            400,
            "BadRequest",
            &format!("the fake speaks {PROTOCOL} only"),
        );
    }
    let ports: Vec<u16> = match q.get("ports").map(|p| {
        p.split(',')
            .map(|x| x.trim().parse::<u16>())
            .collect::<Result<Vec<_>, _>>()
    }) {
        Some(Ok(p)) if !p.is_empty() => p,
        _ => return status(400, "BadRequest", "give ?ports=PORT[,PORT]"),
    };
    let targets: Vec<Option<std::net::SocketAddr>> = {
        let f = shared.forwards.lock().expect("lock");
        ports
            .iter()
            .map(|p| f.get(&(ns.clone(), pod.clone(), *p)).copied())
            .collect()
    };
    tokio::spawn(async move {
        let Ok(up) = hyper::upgrade::on(req).await else {
            return;
        };
        let ws =
            WebSocketStream::from_raw_socket(hyper_util::rt::TokioIo::new(up), Role::Server, None)
                .await;
        relay(ws, &pod, &ports, &targets).await;
    });
    let mut r = Response::new(Body::Full(None));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        "upgrade",
        hyper::header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        "connection",
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        "sec-websocket-protocol",
        hyper::header::HeaderValue::from_static(PROTOCOL),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&key) {
        h.insert("sec-websocket-accept", v);
    }
    r
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::binary(v)
}

async fn relay<S>(
    ws: WebSocketStream<S>,
    pod: &str,
    ports: &[u16],
    targets: &[Option<std::net::SocketAddr>],
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    for (i, p) in ports.iter().enumerate() {
        for ch in [2 * i as u8, 2 * i as u8 + 1] {
            if sink.send(frame(ch, &p.to_le_bytes())).await.is_err() {
                return;
            }
        }
    }
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(64);
    let mut writers = Vec::new();
    for (i, (p, to)) in ports.iter().zip(targets).enumerate() {
        let conn = match to {
            Some(a) => tokio::net::TcpStream::connect(a).await.ok(),
            None => None,
        };
        let Some(conn) = conn else {
            let msg = format!(
                "error forwarding port {p} to pod {pod}: dial tcp 127.0.0.1:{p}: connect: connection refused"
            );
            let _ = sink.send(frame(2 * i as u8 + 1, msg.as_bytes())).await;
            let _ = sink.close().await;
            return;
        };
        let (mut rd, wr) = conn.into_split();
        writers.push(wr);
        let tx = out_tx.clone();
        let ch = 2 * i as u8;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 << 10];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(frame(ch, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // The pod closed its side: end the stream (v4 has no per-channel close).
            let _ = tx.send(Message::Close(None)).await;
        });
    }
    drop(out_tx);
    loop {
        tokio::select! {
            m = out_rx.recv() => match m {
                Some(Message::Close(_)) | None => {
                    let _ = sink.close().await;
                    return;
                }
                Some(m) => if sink.send(m).await.is_err() { return },
            },
            m = source.next() => match m {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => {
                    let ch = b[0] as usize;
                    if ch.is_multiple_of(2) {
                        if let Some(w) = writers.get_mut(ch / 2) {
                            if w.write_all(&b[1..]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    for w in writers.iter_mut() {
                        let _ = w.shutdown().await;
                    }
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}
