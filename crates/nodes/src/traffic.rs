//! What the hollow nodes send, counted as the API server would log it: every call by verb and
//! resource (latency and status, in `kapi`'s [`Recorder`]), every LIST and WATCH opened, and
//! 429s retried with backoff as client-go retries them. Calls in flight are bounded, events in
//! a lane of their own so that a burst of them never delays a status patch; each attempt holds
//! a stream of the pool's call connections, and one that waits for it is counted apart.

use crate::client::Pool;
use kapi::stats::{Outcome, Recorder, Verb};
use rand::Rng;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Counts and latencies of everything sent.
#[derive(Debug)]
pub struct Traffic {
    /// Calls by (verb, resource).
    pub calls: Recorder,
    watches: Mutex<BTreeMap<&'static str, WatchCount>>,
    /// 429 answers that were retried.
    pub retried_429: AtomicU64,
    inflight: Semaphore,
    /// Events have their own lane, as a kubelet's event broadcaster has its own queue: a
    /// burst of events never holds up the status manager's calls.
    events: Semaphore,
    /// LISTs and WATCHes being opened (until the list's answer or the watch's response head),
    /// in a lane of their own: thousands of informers starting together neither delay
    /// heartbeats nor pile up tens of thousands of requests at once, whose buffers the
    /// allocator would keep long after (RSS at 5,000 per-node hollow nodes).
    opening: Semaphore,
    retry_wait: Duration,
    timeout: Duration,
}

/// The events lane's calls at once: a quarter of the others'.
fn events_lane(inflight: usize) -> usize {
    (inflight / 4).max(1)
}

/// Calls the lanes of [`Traffic::new`]`(inflight, ..)` let through at once (LISTs and WATCHes
/// apart): the streams the pool's call connections need.
pub fn calls_at_once(inflight: usize) -> usize {
    inflight.max(1) + events_lane(inflight)
}

/// LIST and WATCH requests of one resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WatchCount {
    /// LISTs (an informer's first, and after 410 Gone).
    pub lists: u64,
    /// WATCH requests opened.
    pub watches: u64,
    /// Watches that failed or ended with an error.
    pub errors: u64,
}

/// A call that failed for good.
#[derive(Debug)]
pub struct CallError(pub kube::Error);

impl Traffic {
    /// `inflight`: calls at once at most (plus a quarter of that for events, and as many LISTs
    /// and WATCHes being opened, each in their own lane); `retry_wait`: the first wait after a 429 (doubling,
    /// with jitter; client-go waits the Retry-After the server sends, 1 s from APF);
    /// `timeout`: per call.
    pub fn new(inflight: usize, retry_wait: Duration, timeout: Duration) -> Traffic {
        Traffic {
            calls: Recorder::default(),
            watches: Mutex::new(BTreeMap::new()),
            retried_429: AtomicU64::new(0),
            inflight: Semaphore::new(inflight.max(1)),
            events: Semaphore::new(events_lane(inflight)),
            opening: Semaphore::new(inflight.max(1)),
            retry_wait,
            timeout,
        }
    }

    /// Wait for a turn to open a LIST or a WATCH; the turn ends when the permit is dropped.
    pub async fn opening(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.opening.acquire().await.expect("never closed")
    }

    /// Count a LIST.
    pub fn list(&self, resource: &'static str) {
        self.watches
            .lock()
            .expect("lock")
            .entry(resource)
            .or_default()
            .lists += 1;
    }

    /// Count a WATCH.
    pub fn watch(&self, resource: &'static str) {
        self.watches
            .lock()
            .expect("lock")
            .entry(resource)
            .or_default()
            .watches += 1;
    }

    /// Count a failed watch.
    pub fn watch_error(&self, resource: &'static str) {
        self.watches
            .lock()
            .expect("lock")
            .entry(resource)
            .or_default()
            .errors += 1;
    }

    /// LISTs and WATCHes so far.
    pub fn watch_counts(&self) -> BTreeMap<String, WatchCount> {
        self.watches
            .lock()
            .expect("lock")
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }

    /// Make one call (`f` is called again for each retry, with the client of a stream of
    /// `pool` held for that attempt): recorded by verb and resource; a 429 is retried up to
    /// 10 times (client-go's limit), waiting longer each time. A call that finds no stream
    /// free waits for one, counted in the pool's
    /// [`StreamWaits`](crate::client::StreamWaits); one that gets none within
    /// the timeout was never sent, so it is not recorded as a call.
    pub async fn call<T, F, Fut>(
        &self,
        pool: &Pool,
        verb: Verb,
        resource: &str,
        f: F,
    ) -> Result<T, CallError>
    where
        F: Fn(kube::Client) -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let lane = if resource == "events" {
            &self.events
        } else {
            &self.inflight
        };
        let _permit = lane.acquire().await.expect("never closed");
        let mut wait = self.retry_wait;
        for attempt in 0.. {
            let t = Instant::now();
            let stream = match pool.try_call() {
                Some(s) => s,
                None => {
                    let w = &pool.waits;
                    w.waited.fetch_add(1, Ordering::Relaxed);
                    match tokio::time::timeout(self.timeout, pool.call()).await {
                        Ok(s) => s,
                        Err(_) => {
                            w.none.fetch_add(1, Ordering::Relaxed);
                            return Err(CallError(kube::Error::Service(
                                format!("no HTTP/2 stream free in {:?}: not sent", self.timeout)
                                    .into(),
                            )));
                        }
                    }
                }
            };
            let left = self.timeout.saturating_sub(t.elapsed());
            let r = tokio::time::timeout(left, f(stream.client.clone())).await;
            drop(stream);
            let took = t.elapsed();
            match r {
                Ok(Ok(v)) => {
                    self.calls.call(verb, resource, took, Outcome::Ok);
                    return Ok(v);
                }
                Ok(Err(kube::Error::Api(s))) => {
                    self.calls
                        .call(verb, resource, took, Outcome::Status(s.code));
                    if s.code == 429 && attempt < 10 {
                        self.retried_429.fetch_add(1, Ordering::Relaxed);
                        let w = wait.mul_f64(rand::thread_rng().gen_range(1.0..1.2));
                        wait = (wait * 2).min(Duration::from_secs(30));
                        tokio::time::sleep(w).await;
                        continue;
                    }
                    return Err(CallError(kube::Error::Api(s)));
                }
                Ok(Err(e)) => {
                    self.calls.call(verb, resource, took, Outcome::Transport);
                    return Err(CallError(e));
                }
                Err(_) => {
                    self.calls.call(verb, resource, took, Outcome::Transport);
                    return Err(CallError(kube::Error::Service(
                        format!("no answer in {:?}", self.timeout).into(),
                    )));
                }
            }
        }
        unreachable!("the loop returns")
    }
}

impl CallError {
    /// The HTTP status, when the server answered.
    pub fn code(&self) -> Option<u16> {
        match &self.0 {
            kube::Error::Api(s) => Some(s.code),
            _ => None,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            kube::Error::Api(s) => write!(f, "{} ({})", s.message, s.code),
            e => write!(f, "{e}"),
        }
    }
}
