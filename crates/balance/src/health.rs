//! Active health checks against each backend's readiness path, and the rules that move a
//! backend between up, draining and down. (Passive ejection on connect errors is in `forward`.)

use crate::backends::{Backend, Backends, Health};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How backends are checked.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Successes in a row that bring a backend back up.
    pub rise: u32,
    /// Failures in a row that take a backend down.
    pub fall: u32,
    /// The path checked; 200 is up, 503 is draining.
    pub path: String,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 2,
            path: "/readyz".into(),
        }
    }
}

/// What one check saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200.
    Ready,
    /// 503: going away.
    Draining,
    /// Anything else, or no answer.
    Failed,
}

/// Apply one check's outcome to a backend.
pub fn apply(b: &Backend, outcome: Outcome, cfg: &HealthConfig) {
    match outcome {
        Outcome::Ready => {
            b.fail_streak.store(0, Ordering::Relaxed);
            let ok = b.ok_streak.fetch_add(1, Ordering::Relaxed) + 1;
            if b.health() != Health::Up && ok >= cfg.rise {
                b.set_health(Health::Up);
            }
        }
        Outcome::Draining => {
            b.ok_streak.store(0, Ordering::Relaxed);
            b.set_health(Health::Draining);
        }
        Outcome::Failed => {
            b.ok_streak.store(0, Ordering::Relaxed);
            let fails = b.fail_streak.fetch_add(1, Ordering::Relaxed) + 1;
            if fails >= cfg.fall {
                b.set_health(Health::Down);
            }
        }
    }
}

/// Check every backend every interval, forever (the task is dropped at shutdown), in the
/// protocol requests are forwarded in (`h2`: h2c).
pub async fn run(backends: Arc<Backends>, cfg: HealthConfig, h2: bool) {
    let client = crate::forward::upstream(h2, cfg.timeout);
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut checks = tokio::task::JoinSet::new();
        for b in backends.snapshot().iter().cloned() {
            let (client, cfg) = (client.clone(), cfg.clone());
            checks.spawn(async move {
                let mut req = Request::get(format!("http://{}{}", b.addr, cfg.path));
                if !h2 {
                    // HTTP/2 carries the address as :authority.
                    req = req.header(http::header::HOST, b.addr.to_string());
                }
                let req = req.body(Full::new(Bytes::new())).expect("valid request");
                let outcome = match tokio::time::timeout(cfg.timeout, client.request(req)).await {
                    Ok(Ok(r)) if r.status() == StatusCode::OK => Outcome::Ready,
                    Ok(Ok(r)) if r.status() == StatusCode::SERVICE_UNAVAILABLE => Outcome::Draining,
                    _ => Outcome::Failed,
                };
                apply(&b, outcome, &cfg);
            });
        }
        while checks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall_thresholds_move_a_backend() {
        let set = Backends::new(&["127.0.0.1:1".parse().unwrap()]);
        let b = set.snapshot()[0].clone();
        let cfg = HealthConfig {
            rise: 2,
            fall: 3,
            ..Default::default()
        };
        apply(&b, Outcome::Failed, &cfg);
        apply(&b, Outcome::Failed, &cfg);
        assert_eq!(b.health(), Health::Up);
        apply(&b, Outcome::Failed, &cfg);
        assert_eq!(b.health(), Health::Down);
        apply(&b, Outcome::Ready, &cfg);
        assert_eq!(b.health(), Health::Down);
        apply(&b, Outcome::Ready, &cfg);
        assert_eq!(b.health(), Health::Up);
        apply(&b, Outcome::Draining, &cfg);
        assert_eq!(b.health(), Health::Draining);
        assert!(!b.eligible());
    }
}
