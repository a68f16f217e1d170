//! A whole churn run, as `scaletest api churn` does it and as anything else that loads a
//! control plane can: make the run's namespaces, start an informer first (so that it sees every
//! create), churn, wait (bounded) for the informer to see every delete, remove the namespaces,
//! and gather the measurements into an [`ApiRun`].

use crate::churn::{self, Mode};
use crate::output::{ApiInfo, ApiRun, Lifecycles};
use crate::stats::Recorder;
use crate::{watch, Error, Target, LABEL_RUN};
use kube::Client;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch as signal;

/// How long, after the churn, the informer gets to see every delete.
const DELETES_GRACE: Duration = Duration::from_secs(10);

/// What one churn session does.
pub struct Session {
    /// The client for the churn's calls (kube-rs's own retries off).
    pub client: Client,
    /// The resource.
    pub target: Target,
    /// The object every lifecycle creates.
    pub template: Value,
    /// Open or closed loop.
    pub mode: Mode,
    /// Open loop: how long lifecycles keep starting. Closed loop: a time limit.
    pub duration: Option<Duration>,
    /// Patches per lifecycle.
    pub updates: u32,
    /// Label value on every object and namespace.
    pub run_id: String,
    /// Client-side QPS/burst limit.
    pub limit: Option<(f64, u32)>,
    /// Make this many namespaces for the run (and remove them after); else use `namespace`.
    pub make_namespaces: Option<usize>,
    /// The namespace to work in when none are made.
    pub namespace: String,
    /// Run an informer on the run's objects, with this client (retries on, as a controller's).
    pub watch: Option<Client>,
    /// How long the informer's first list may take.
    pub sync_timeout: Duration,
    /// The run's description; the session fills in its namespaces and run id.
    pub info: ApiInfo,
}

/// What a session measured, and what went wrong around the edges without failing it.
pub struct Outcome {
    /// The run (SLOs not checked yet).
    pub run: ApiRun,
    /// Things the caller should report: an informer that missed deletes, a namespace left.
    pub warnings: Vec<String>,
}

/// Run a session until it ends or `stop` turns true. `rec` records every call (the caller may
/// read it meanwhile, for progress).
pub async fn run(
    s: Session,
    rec: Arc<Recorder>,
    stop: signal::Receiver<bool>,
    started_unix: f64,
) -> Result<Outcome, Error> {
    if s.make_namespaces.is_some() && !s.target.namespaced {
        return Err(Error::Usage(format!(
            "--namespaces: {} is cluster-scoped",
            s.target.display()
        )));
    }
    let made = match s.make_namespaces {
        Some(n) => churn::create_namespaces(&s.client, &s.run_id, n).await?,
        None => Vec::new(),
    };
    let namespaces = if made.is_empty() {
        vec![s.namespace.clone()]
    } else {
        made.clone()
    };
    let mut info = s.info;
    info.run_id = Some(s.run_id.clone());
    info.namespaces = if s.target.namespaced {
        namespaces.clone()
    } else {
        Vec::new()
    };
    // The informer starts (and lists) before the first create, so that it sees every one.
    let watcher = match s.watch {
        Some(wclient) => {
            // Its seconds count from the calls' second 0, not from after the namespaces.
            let shared = watch::Shared::new_at(rec.start());
            let (wstop_tx, wstop) = signal::channel(false);
            let wcfg = watch::Config {
                target: s.target.clone(),
                namespace: (namespaces.len() == 1).then(|| namespaces[0].clone()),
                selector: Some(format!("{LABEL_RUN}={}", s.run_id)),
                workers: 2,
            };
            let task = tokio::spawn(watch::run(wclient, wcfg, shared.clone(), wstop));
            if tokio::time::timeout(s.sync_timeout, shared.wait_synced())
                .await
                .is_err()
            {
                task.abort();
                return Err(Error::Timeout(format!(
                    "the informer's initial list did not finish within {:?}",
                    s.sync_timeout
                )));
            }
            Some((shared, wstop_tx, task))
        }
        None => None,
    };
    let cfg = churn::Config {
        target: s.target.clone(),
        template: s.template,
        namespaces,
        mode: s.mode,
        duration: s.duration,
        updates: s.updates,
        run_id: s.run_id.clone(),
        limit: s.limit,
    };
    let summary = churn::run(s.client.clone(), cfg, rec.clone(), stop.clone())
        .await
        .map_err(|e| Error::Usage(e.to_string()))?;
    let mut run = ApiRun::new(info, started_unix);
    run.elapsed_s = summary.elapsed.as_secs_f64();
    run.interrupted = summary.interrupted;
    run.lifecycles = Some(Lifecycles {
        started: summary.started,
        completed: summary.completed,
        failed: summary.failed,
        cut_short: summary.cut_short,
    });
    let mut warnings = Vec::new();
    let mut watch_cut = None;
    if let Some((shared, wstop_tx, task)) = watcher {
        let mut stopping = stop.clone();
        tokio::select! {
            _ = shared.wait_deletes(summary.deleted) => {}
            _ = tokio::time::sleep(DELETES_GRACE) => {
                warnings.push(format!(
                    "the informer had not seen every delete {DELETES_GRACE:?} after the run"
                ));
            }
            _ = stopping.wait_for(|s| *s) => {}
        }
        let _ = wstop_tx.send(true);
        let _ = task.await;
        let (w, cut) = shared.report();
        (run.watch, watch_cut) = (Some(w), cut);
    }
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(s.client.clone());
    for ns in &made {
        if let Err(e) = api.delete(ns, &Default::default()).await {
            warnings.push(format!(
                "could not delete namespace {ns}: {e} (run --cleanup --run-id {})",
                s.run_id
            ));
        }
    }
    let calls_cut = run.take_calls(&rec);
    run.seconds_cut = crate::series::first_cut([calls_cut, watch_cut]);
    Ok(Outcome { run, warnings })
}
