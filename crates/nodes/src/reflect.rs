//! A reflector as client-go's, which is what a kubelet's and a kube-proxy's informers run:
//! LIST (served from the watch cache, `resourceVersion=0`), then WATCH from the list's version
//! with bookmarks and a timeout drawn between 5 and 10 minutes (client-go's `minWatchTimeout`
//! × [1, 2)), resumed from the last version seen; a 410 Gone lists again, other failures back
//! off (0.8 s doubling to 30 s, as client-go's reflector).
//!
//! Tens of thousands of these run at once (six per node in per-node mode), so each is kept
//! small at rest: the stream is [`kapi::events`] (no idle read buffer), and the list and
//! watch calls are boxed so the task's resting size is the open stream's. Lists and watches
//! being opened wait for a turn ([`Traffic::opening`]), so thousands starting together are
//! not all in flight at once.

use crate::traffic::Traffic;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::Api;
use rand::Rng;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch as signal;

/// What an informer is told.
#[derive(Debug)]
pub enum Ev<K> {
    /// A (re)list: every object there is now.
    Listed(Vec<K>),
    /// Added or modified.
    Applied(K),
    /// Deleted.
    Deleted(K),
}

/// One informer's query.
#[derive(Debug, Clone)]
pub struct Query {
    /// The resource as counted (`pods`, `endpointslices`, ...).
    pub resource: &'static str,
    /// Field selector.
    pub fields: Option<String>,
    /// Label selector.
    pub labels: Option<String>,
    /// Watch timeouts are drawn from [min, max).
    pub timeout: (Duration, Duration),
}

/// Run until `stop` turns true, telling `on` what happens.
pub async fn run<K, F>(
    api: Api<K>,
    q: Query,
    traffic: Arc<Traffic>,
    mut stop: signal::Receiver<bool>,
    mut on: F,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: FnMut(Ev<K>) + Send,
{
    let mut backoff = Duration::from_millis(800);
    let mut rv: Option<String> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let ok = match rv.clone() {
            None => {
                let mut lp = ListParams::default().match_any();
                if let Some(f) = &q.fields {
                    lp = lp.fields(f);
                }
                if let Some(l) = &q.labels {
                    lp = lp.labels(l);
                }
                traffic.list(q.resource);
                // Boxed, as the watch below: the task at rest (one per watch, tens of
                // thousands) then holds only the open stream, not room for these calls.
                let listed = tokio::select! {
                    r = Box::pin(async {
                        let _turn = traffic.opening().await;
                        api.list(&lp).await
                    }) => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match listed {
                    Ok(list) => {
                        rv = list.metadata.resource_version.clone();
                        on(Ev::Listed(list.items));
                        true
                    }
                    Err(_) => {
                        traffic.watch_error(q.resource);
                        false
                    }
                }
            }
            Some(from) => {
                let (lo, hi) = q.timeout;
                let secs = if hi > lo {
                    rand::thread_rng().gen_range(lo.as_secs_f64()..hi.as_secs_f64())
                } else {
                    lo.as_secs_f64()
                };
                // Bookmarks are on by default.
                let mut wp = WatchParams::default().timeout(secs.max(1.0) as u32);
                if let Some(f) = &q.fields {
                    wp = wp.fields(f);
                }
                if let Some(l) = &q.labels {
                    wp = wp.labels(l);
                }
                traffic.watch(q.resource);
                let opened = tokio::select! {
                    r = Box::pin(async {
                        let _turn = traffic.opening().await;
                        kapi::events::watch(&api, &wp, &from).await
                    }) => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match opened {
                    Ok(mut events) => {
                        let mut healthy = true;
                        loop {
                            let ev = tokio::select! {
                                ev = events.next() => ev,
                                _ = stop.wait_for(|s| *s) => return,
                            };
                            match ev {
                                None => break,
                                Some(Ok(WatchEvent::Added(o) | WatchEvent::Modified(o))) => {
                                    if let Some(v) = o.meta().resource_version.clone() {
                                        rv = Some(v);
                                    }
                                    on(Ev::Applied(o));
                                }
                                Some(Ok(WatchEvent::Deleted(o))) => {
                                    if let Some(v) = o.meta().resource_version.clone() {
                                        rv = Some(v);
                                    }
                                    on(Ev::Deleted(o));
                                }
                                Some(Ok(WatchEvent::Bookmark(b))) => {
                                    rv = Some(b.metadata.resource_version);
                                }
                                Some(Ok(WatchEvent::Error(e))) => {
                                    traffic.watch_error(q.resource);
                                    if e.code == 410 {
                                        rv = None;
                                    } else {
                                        healthy = false;
                                    }
                                    break;
                                }
                                Some(Err(_)) => {
                                    traffic.watch_error(q.resource);
                                    healthy = false;
                                    break;
                                }
                            }
                        }
                        healthy
                    }
                    Err(kube::Error::Api(s)) if s.code == 410 => {
                        traffic.watch_error(q.resource);
                        rv = None;
                        true
                    }
                    Err(_) => {
                        traffic.watch_error(q.resource);
                        false
                    }
                }
            }
        };
        if ok {
            backoff = Duration::from_millis(800);
        } else {
            let wait = backoff.mul_f64(rand::thread_rng().gen_range(1.0..1.2));
            backoff = (backoff * 2).min(Duration::from_secs(30));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}
