//! `/metrics`: the aggregator's view in Prometheus text format (prometheus-client), built from
//! the state at each scrape.

use crate::state::State;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State_ {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Quantile {
    quantile: String,
}

/// The metrics text for the state now.
pub fn encode(st: &State) -> String {
    let mut r = Registry::with_prefix("scaletest_aggregate");
    let counter = |r: &mut Registry, name: &str, help: &str, v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        r.register(name, help, c);
    };
    let t = st.total();
    counter(
        &mut r,
        "responses",
        "Answers reported by the bots (any status)",
        t.responses,
    );
    counter(
        &mut r,
        "failed",
        "Failed requests: transport errors and 4xx/5xx answers",
        t.failed(),
    );
    counter(
        &mut r,
        "snapshots_accepted",
        "Bot intervals counted",
        st.accepted,
    );
    counter(
        &mut r,
        "snapshots_duplicate",
        "Bot intervals ignored as already counted",
        st.duplicates,
    );
    counter(
        &mut r,
        "pushes_refused",
        "Bot pushes refused (malformed, unknown bot, out of window)",
        st.refused,
    );
    let bots = Family::<State_, Gauge>::default();
    r.register("bots", "Bots by state", bots.clone());
    let (live, stale, gone) = st.bot_counts();
    for (s, n) in [("live", live), ("stale", stale), ("gone", gone)] {
        bots.get_or_create(&State_ { state: s.into() })
            .set(n as i64);
    }
    let versions = Family::<Version, Counter>::default();
    r.register(
        "answers_by_version",
        "Answers by the answering server's version",
        versions.clone(),
    );
    for (v, n) in &t.versions {
        versions
            .get_or_create(&Version { version: v.clone() })
            .inc_by(*n);
    }
    let latency = Family::<Quantile, Gauge<f64, AtomicU64>>::default();
    r.register(
        "latency_seconds",
        "Corrected latency over the whole run, by quantile",
        latency.clone(),
    );
    for q in [0.5, 0.9, 0.99, 0.999] {
        latency
            .get_or_create(&Quantile {
                quantile: q.to_string(),
            })
            .set(t.quantile_ms(q) / 1000.0);
    }
    let offered: Gauge<f64, AtomicU64> = Gauge::default();
    offered.set(st.offered());
    r.register(
        "offered_rate",
        "Requests/s the live bots are asked for",
        offered,
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r)
        .expect("writing to a String cannot fail");
    out
}
