//! The HTTP plumbing: the loopback listener's accept loop and hyper connections speaking
//! HTTP/1.1 and HTTP/2 with prior knowledge (h2c), so many watches can share a connection as
//! over TLS with ALPN, with kube-apiserver v1.28.7's HTTP/2 SETTINGS. A client that opens a
//! stream past the limit waits, as on the real server.

use crate::handler::handle;
use crate::state::Shared;
use std::convert::Infallible;
use std::sync::Arc;

/// kube-apiserver v1.28.7's HTTP/2 SETTINGS (`nghttp -v`, docs/hollow-nodes.md), copied where
/// hyper lets a server set them: MAX_CONCURRENT_STREAMS (the default of
/// `Options::max_concurrent_streams`), INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE,
/// MAX_HEADER_LIST_SIZE, and the connection window its first WINDOW_UPDATE (26148865) raises
/// from 65535 to 25 MiB. HEADER_TABLE_SIZE 4096 is the protocol's default, which hyper keeps.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
const H2_INITIAL_WINDOW: u32 = 262_144;
const H2_MAX_FRAME: u32 = 262_144;
const H2_MAX_HEADER_LIST: u32 = 1_048_896;
const H2_CONNECTION_WINDOW: u32 = 65_535 + 26_148_865;

/// Serve connections from `listener`, advertising `max_streams` concurrent HTTP/2 streams on
/// each, until dropped.
pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    max_streams: u32,
) {
    loop {
        let Ok((io, _)) = listener.accept().await else {
            continue;
        };
        let _ = io.set_nodelay(true);
        let sh = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let sh = sh.clone();
                async move { Ok::<_, Infallible>(handle(sh, req).await) }
            });
            let mut b =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            b.http2()
                .max_concurrent_streams(max_streams)
                .initial_stream_window_size(H2_INITIAL_WINDOW)
                .initial_connection_window_size(H2_CONNECTION_WINDOW)
                .max_frame_size(H2_MAX_FRAME)
                .max_header_list_size(H2_MAX_HEADER_LIST);
            let _ = b
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), svc)
                .await;
        });
    }
}
