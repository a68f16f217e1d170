//! Prometheus metrics: requests by code, in flight, answered on the quick path, latency to the
//! response head, open connections and pauses at the connection limit. Handles are made once;
//! a request touches a few atomics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use st_http::server::Stats;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Code {
    code: u16,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    by_code: Family<Code, Counter>,
    // Per-code handles, so that a request does not look its code up in the family's map.
    codes: Box<[OnceLock<Counter>]>,
    in_flight: Gauge,
    quick: Counter,
    latency: Histogram,
    open: Gauge,
    paused: Counter,
    stats: Arc<Stats>,
}

impl Metrics {
    /// Register everything under the `scaletest_` prefix.
    pub fn new(stats: Arc<Stats>) -> Self {
        let mut registry = Registry::with_prefix("scaletest");
        let by_code = Family::<Code, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by status code",
            by_code.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being handled",
            in_flight.clone(),
        );
        let quick = Counter::default();
        registry.register(
            "quick_answers",
            "Requests answered on the quick path, without hyper",
            quick.clone(),
        );
        // 50 µs … ~26 s.
        let latency = Histogram::new(exponential_buckets(0.00005, 2.0, 20));
        registry.register(
            "request_duration_seconds",
            "Time from request to response head",
            latency.clone(),
        );
        let open = Gauge::default();
        registry.register("open_connections", "Client connections open", open.clone());
        let paused = Counter::default();
        registry.register(
            "accept_paused",
            "Times accepting stopped at the connection limit (new connections waited in the listen backlog)",
            paused.clone(),
        );
        Metrics {
            registry,
            by_code,
            codes: (0..600).map(|_| OnceLock::new()).collect(),
            in_flight,
            quick,
            latency,
            open,
            paused,
            stats,
        }
    }

    /// A request began.
    pub fn begin(&self) {
        self.in_flight.inc();
    }

    /// A request was answered with `code` after `seconds`.
    pub fn end(&self, code: u16, seconds: f64) {
        self.in_flight.dec();
        self.answered(code, seconds);
    }

    /// The quick path answered a request with `code` after `seconds` (it is never counted in
    /// flight: it answers as it reads).
    pub fn quick(&self, code: u16, seconds: f64) {
        self.quick.inc();
        self.answered(code, seconds);
    }

    fn answered(&self, code: u16, seconds: f64) {
        self.latency.observe(seconds);
        match self.codes.get(code as usize) {
            Some(slot) => slot
                .get_or_init(|| self.by_code.get_or_create(&Code { code }).clone())
                .inc(),
            None => self.by_code.get_or_create(&Code { code }).inc(),
        };
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        self.open
            .set(self.stats.open.load(Ordering::Relaxed) as i64);
        let paused = self.stats.paused.load(Ordering::Relaxed);
        self.paused.inc_by(paused.saturating_sub(self.paused.get()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
