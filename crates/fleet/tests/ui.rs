//! The live page in a real browser (headless Chromium), against a real aggregator with real
//! bots: the QPS figure goes above zero within seconds, and the rate control changes what the
//! bots are asked for and send.

use fleet::agg::{self, Config as AggConfig};
use fleet::bot;
use fleet::state::{self, Plan};
use load::{Shutdown, Spec};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use testsupport::call::json;

const TOKEN: &str = "ui-token-42";

fn summary(addr: SocketAddr) -> serde_json::Value {
    json(addr, "/api/summary")
}

#[test]
fn the_live_page_shows_qps_and_its_rate_control_changes_the_bots_rate() {
    let Some(browser) = testkit::browser::for_test() else {
        return;
    };
    let srv = serve::start(serve::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        body_size: 13,
        version_label: "v1".into(),
        limits: st_http::server::Limits::default(),
        bounds: serve::Bounds::default(),
        tls: None,
        hyper_only: false,
    })
    .unwrap();
    let out = std::env::temp_dir().join(format!("st-fleet-ui-{}", agg::random_hex()));
    let a = agg::start(AggConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        token: TOKEN.into(),
        out: out.clone(),
        spec: Spec {
            url: Some(format!("http://{}/", srv.addr)),
            connections: 2,
            ..Spec::default()
        },
        plan: Plan::Total { rate: 100.0 },
        run_for: None,
        state: state::Config::default(),
        thresholds: vec![],
        abort_on_fail: false,
    })
    .unwrap();
    let bots: Vec<_> = (0..2)
        .map(|i| {
            let cfg = bot::Config {
                aggregator: format!("http://{}", a.addr),
                token: TOKEN.into(),
                name: format!("b{i}"),
                threads: Some(1),
                exit_when_finished: true,
                outbox: bot::OUTBOX,
                warn: |m| panic!("bot: {m}"),
            };
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, bot::run(cfg, Shutdown::new())).unwrap()
            })
        })
        .collect();
    let page = browser.page().unwrap();
    page.goto(&format!("http://{}/#token={TOKEN}", a.addr))
        .unwrap();
    page.wait_until(
        "Number((document.querySelector('#qps-now')||{}).textContent||'0') > 0",
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("no QPS on the page: {e}; errors: {:?}", page.errors()));
    // The rate control: 100/s → 300/s in total.
    page.type_into("#rate-input", "300").unwrap();
    page.click("#rate-apply").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while summary(a.addr)["offered"] != 300.0 {
        assert!(
            Instant::now() < deadline,
            "the rate control did not reach the aggregator"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And the bots send it: the page's QPS climbs past 250.
    page.wait_until(
        "Number(document.querySelector('#qps-now').textContent) > 250",
        Duration::from_secs(15),
    )
    .unwrap();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    page.screenshot(&shots.join("live-ui.png")).unwrap();
    assert_eq!(page.errors(), Vec::<String>::new());
    a.finish();
    a.wait();
    for b in bots {
        b.join().unwrap();
    }
    let _ = std::fs::remove_dir_all(out);
}
