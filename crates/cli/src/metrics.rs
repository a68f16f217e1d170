//! `--metrics ADDR` (`api watch`, `nodes`): the one lifecycle of the /metrics server. Bound
//! before the run starts (a taken address fails at once), served from what is being measured
//! (OpenMetrics text made at each scrape, `kapi::serve_text`), stopped when the run ends.

use kapi::watch::Encode;
use st_http::server::Phase;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A /metrics server: bound (or not asked for), then serving until stopped or dropped.
pub(crate) struct Metrics {
    bound: Option<(Vec<TcpListener>, SocketAddr)>,
    /// Dropping it stops the server.
    phase: watch::Sender<Phase>,
}

impl Metrics {
    /// Bind `addr` if one was given (inside a tokio runtime).
    pub(crate) fn bind(addr: Option<SocketAddr>) -> anyhow::Result<Metrics> {
        let bound = addr
            .map(|a| st_http::runner::bind(a, 1))
            .transpose()
            .map_err(|e| anyhow::anyhow!("--metrics: {e}"))?;
        let (phase, _) = watch::channel(Phase::Serving);
        Ok(Metrics { bound, phase })
    }

    /// The API server's figures for the render, from `scraper`: summed at each scrape only
    /// when there is a /metrics server to read them.
    pub(crate) fn live(
        &self,
        scraper: &kapi::server_metrics::Scraper,
    ) -> kapi::server_metrics::Live {
        if self.bound.is_some() {
            scraper.live()
        } else {
            Default::default()
        }
    }

    /// Serve `render` at http://ADDR/metrics, and say where; nothing without an address.
    pub(crate) fn serve(&mut self, render: Encode) {
        if let Some((listeners, addr)) = self.bound.take() {
            eprintln!("scaletest: metrics at http://{addr}/metrics");
            for l in listeners {
                tokio::spawn(kapi::serve_text(l, self.phase.subscribe(), render.clone()));
            }
        }
    }

    /// Stop serving, and take back `shared` once the server has let go of it (its render
    /// holds a reference until it sees the stop; at most 2 s).
    pub(crate) async fn release<T>(self, mut shared: Arc<T>) -> anyhow::Result<T> {
        drop(self.phase);
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match Arc::try_unwrap(shared) {
                Ok(t) => return Ok(t),
                Err(s) if Instant::now() < deadline => {
                    shared = s;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => return Err(anyhow::anyhow!("the metrics server did not stop")),
            }
        }
    }
}
