//! Running a checked workload: every object's resource found through discovery first (an
//! unknown kind stops the run before anything is made), then the jobs in order. A create job
//! makes its namespaces, its objects (under its qps/burst limit, or on its open-loop
//! schedule), waits for them (LISTs by label every half second, each call recorded), and
//! churns; a delete job removes an earlier job's objects and namespaces and waits until
//! they are gone. Everything made carries the run's and the job's labels (pod templates
//! too, so pods inherit them); an informer on the run's pods measures pod startup.

use super::spec::{render, Job, JobKind, ObjectSpec, WaitFor, Workload};
use crate::series::{Second, Seconds};
use crate::stats::{Limiter, Recorder, Verb};
use crate::{resolve, template_gvk, Error, Target, LABEL_RUN};
use futures::StreamExt;
use hdrhistogram::Histogram;
use hist::{histogram_codec, new_histogram};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::core::DynamicObject;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch as signal;

/// Label on everything a job makes: the job's name.
pub const LABEL_JOB: &str = "scaletest.dev/job";

/// How often a wait LISTs.
const POLL: Duration = Duration::from_millis(500);

/// Creations in flight at once under a qps limit.
const IN_FLIGHT: usize = 64;

/// What one job did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// Its name.
    pub name: String,
    /// `create`, `delete` or `pause`.
    pub kind: String,
    /// Objects made (create) or deleted (delete), namespaces not counted.
    pub objects: u64,
    /// Of those, calls that failed.
    pub failed: u64,
    /// From the job's start to its last call answered, s.
    pub calls_s: f64,
    /// What was waited for, and how it ended: `30/30 Ready`, `12/30 Ready (timed out)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited: Option<String>,
    /// From the job's start until done, s.
    pub took_s: f64,
    /// Churn cycles done.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub churn_cycles: u32,
    /// True when it ended in time with no failed call.
    pub ok: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Pods of the run seen running and ready, as ClusterLoader2's pod startup latency times
/// them: from creationTimestamp (whole seconds, as the server writes it) to the moment this
/// run's informer saw them Running and Ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodStartup {
    /// Pods measured.
    pub pods: u64,
    /// Create → seen running, µs.
    #[serde(with = "histogram_codec")]
    pub pod_startup: Histogram<u64>,
    /// Create → scheduled (the PodScheduled condition's time, whole seconds), µs.
    #[serde(with = "histogram_codec")]
    pub create_to_schedule: Histogram<u64>,
    /// Scheduled → running (the containers' latest startedAt, whole seconds), µs.
    #[serde(with = "histogram_codec", default = "new_histogram")]
    pub schedule_to_run: Histogram<u64>,
    /// Running → seen by the run's informer, µs.
    #[serde(with = "histogram_codec", default = "new_histogram")]
    pub run_to_watch: Histogram<u64>,
    /// `pod_startup` by the second each pod was seen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seconds: Vec<Second>,
}

/// A run's settings besides the workload.
pub struct Config {
    /// The run's label value.
    pub run_id: String,
    /// Where namespaced objects of jobs without namespaces go.
    pub default_ns: String,
}

/// What the run did.
pub struct Outcome {
    /// Each job, in order (a job cut short by Ctrl-C included).
    pub jobs: Vec<JobReport>,
    /// Pod startup of the run's pods.
    pub startup: PodStartup,
    /// Where its seconds stop although pods went on starting ([`crate::series::Seconds::cut`]).
    pub startup_cut: Option<u64>,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
}

/// Each object template's resource, in job order.
type Targets = BTreeMap<(usize, usize), Target>;

/// Find every object's resource; nothing is made before all are known.
pub async fn resolve_all(client: &Client, w: &Workload) -> Result<Targets, Error> {
    let mut out = Targets::new();
    let mut known: BTreeMap<String, Target> = BTreeMap::new();
    for (j, job) in w.jobs.iter().enumerate() {
        let JobKind::Create { objects, .. } = &job.kind else {
            continue;
        };
        for (k, o) in objects.iter().enumerate() {
            let spec = crate::gvk_spec(&template_gvk(&o.object).expect("checked by spec"));
            let t = match known.get(&spec) {
                Some(t) => t.clone(),
                None => {
                    let t = resolve(client, &spec).await.map_err(|e| match e {
                        Error::Usage(m) => Error::Usage(format!(
                            "jobs[{j}].objects[{k}]: {}",
                            m.replace("--resource ", "")
                        )),
                        e => e,
                    })?;
                    known.insert(spec, t.clone());
                    t
                }
            };
            out.insert((j, k), t);
        }
    }
    Ok(out)
}

/// The namespaces of job `job` of run `run`: `scaletest-RUN-JOB-I`.
pub fn namespace_names(run: &str, job: &str, n: u64) -> Result<Vec<String>, Error> {
    let names: Vec<String> = (0..n)
        .map(|i| format!("scaletest-{run}-{job}-{i}"))
        .collect();
    match names.last() {
        Some(l) if l.len() > 63 => Err(Error::Usage(format!(
            "namespace {l}: longer than 63 characters (shorten the run id or the job's name)"
        ))),
        _ => Ok(names),
    }
}

struct Ctx<'a> {
    client: &'a Client,
    cfg: &'a Config,
    rec: &'a Recorder,
    stop: signal::Receiver<bool>,
}

impl Ctx<'_> {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleep `d`, or less when stopped; true when stopped.
    async fn sleep(&self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        self.stopped()
    }

    fn labels(&self, job: &str) -> [(String, String); 2] {
        [
            (LABEL_RUN.to_string(), self.cfg.run_id.clone()),
            (LABEL_JOB.to_string(), job.to_string()),
        ]
    }

    fn selector(&self, job: &str) -> String {
        format!("{LABEL_RUN}={},{LABEL_JOB}={job}", self.cfg.run_id)
    }
}

/// Run the jobs in order until the last ends or `stop` turns true.
pub async fn run(
    client: &Client,
    cfg: &Config,
    w: &Workload,
    targets: &Targets,
    rec: &Recorder,
    stop: signal::Receiver<bool>,
) -> Outcome {
    let startup = Arc::new(Mutex::new(Startup::new()));
    let informer = tokio::spawn(pod_informer(
        client.clone(),
        format!("{LABEL_RUN}={}", cfg.run_id),
        startup.clone(),
    ));
    let ctx = Ctx {
        client,
        cfg,
        rec,
        stop,
    };
    let mut jobs = Vec::new();
    for (j, job) in w.jobs.iter().enumerate() {
        if ctx.stopped() {
            break;
        }
        let report = match &job.kind {
            JobKind::Pause(d) => {
                let t = Instant::now();
                let cut = ctx.sleep(*d).await;
                JobReport::new(&job.name, "pause", t, !cut)
            }
            JobKind::Create { .. } => create_job(&ctx, j, job, targets).await,
            JobKind::Delete { job: of, timeout } => {
                let (k, made) = w
                    .jobs
                    .iter()
                    .enumerate()
                    .find(|(_, x)| &x.name == of)
                    .expect("checked by spec");
                delete_job(&ctx, &job.name, k, made, targets, *timeout).await
            }
        };
        jobs.push(report);
    }
    // Pods that turned ready during the last wait may still be on their way to the informer.
    tokio::time::sleep(POLL).await;
    informer.abort();
    let s = startup.lock().expect("lock");
    let mut startup = s.out.clone();
    startup.seconds = s.seconds.all();
    Outcome {
        jobs,
        startup,
        startup_cut: s.seconds.cut(),
        interrupted: ctx.stopped(),
    }
}

impl Default for PodStartup {
    fn default() -> PodStartup {
        PodStartup {
            pods: 0,
            pod_startup: new_histogram(),
            create_to_schedule: new_histogram(),
            schedule_to_run: new_histogram(),
            run_to_watch: new_histogram(),
            seconds: Vec::new(),
        }
    }
}

impl JobReport {
    fn new(name: &str, kind: &str, t: Instant, ok: bool) -> JobReport {
        JobReport {
            name: name.to_string(),
            kind: kind.to_string(),
            objects: 0,
            failed: 0,
            calls_s: 0.0,
            waited: None,
            took_s: t.elapsed().as_secs_f64(),
            churn_cycles: 0,
            ok,
        }
    }
}

/// Make namespaces labelled with the run and the job; false when one failed.
async fn make_namespaces(ctx: &Ctx<'_>, job: &str, names: &[String]) -> bool {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let mut ok = true;
    for name in names {
        let ns = Namespace {
            metadata: kube::core::ObjectMeta {
                name: Some(name.clone()),
                labels: Some(ctx.labels(job).into_iter().collect()),
                ..Default::default()
            },
            ..Default::default()
        };
        let t = Instant::now();
        let r = api.create(&PostParams::default(), &ns).await;
        ctx.rec.result(Verb::Create, "namespaces", t.elapsed(), &r);
        ok &= r.is_ok();
    }
    ok
}

/// One object to make: job j's template k, iteration i, replica r.
struct Item {
    k: usize,
    i: u64,
    r: u64,
}

/// The object of `item`, rendered and labelled.
fn object(ctx: &Ctx<'_>, job: &str, o: &ObjectSpec, item: &Item, ns: &str) -> Value {
    let (i, r) = (item.i.to_string(), item.r.to_string());
    let vars = [
        ("iteration", i.as_str()),
        ("replica", r.as_str()),
        ("namespace", ns),
        ("job", job),
        ("run", ctx.cfg.run_id.as_str()),
    ];
    let mut v = render(&o.object, &vars);
    let labels = ctx.labels(job);
    for at in ["/metadata", "/spec/template/metadata"] {
        if at != "/metadata" && v.pointer("/spec/template").is_none() {
            continue;
        }
        let meta = ensure(&mut v, at);
        let l = ensure(meta, "/labels");
        if let Some(m) = l.as_object_mut() {
            for (k, val) in &labels {
                m.insert(k.clone(), json!(val));
            }
        }
    }
    v
}

/// The object at `path` in `v`, made (as `{}`) where missing.
fn ensure<'a>(v: &'a mut Value, path: &str) -> &'a mut Value {
    let mut cur = v;
    for key in path.split('/').skip(1) {
        if !cur.get(key).is_some_and(Value::is_object) {
            cur[key] = json!({});
        }
        cur = cur.get_mut(key).expect("just made");
    }
    cur
}

/// Make `items` of job `j`; namespaces by iteration. Returns (made, failed).
async fn make(
    ctx: &Ctx<'_>,
    j: usize,
    job: &Job,
    targets: &Targets,
    namespaces: &[String],
    items: Vec<Item>,
    limit: &Limiter,
) -> (u64, u64) {
    let JobKind::Create { objects, rate, .. } = &job.kind else {
        return (0, 0);
    };
    let rate = *rate;
    let start = tokio::time::Instant::now();
    let calls = futures::stream::iter(items.into_iter().enumerate()).map(|(n, item)| {
        let target = &targets[&(j, item.k)];
        let ns = if namespaces.is_empty() {
            ctx.cfg.default_ns.clone()
        } else {
            namespaces[(item.i % namespaces.len() as u64) as usize].clone()
        };
        let mut stop = ctx.stop.clone();
        async move {
            let wait = async {
                match rate {
                    Some(r) => {
                        let after =
                            Duration::try_from_secs_f64(n as f64 / r).unwrap_or(Duration::MAX);
                        let due = start.checked_add(after).unwrap_or(start);
                        tokio::time::sleep_until(due).await;
                        ctx.rec.late(due.elapsed());
                    }
                    None => limit.acquire().await,
                }
            };
            // Ctrl-C ends the waits too: nothing more is sent.
            tokio::select! {
                _ = wait => {}
                _ = stop.wait_for(|s| *s) => return None,
            }
            if ctx.stopped() {
                return None;
            }
            // Made when sent: an open loop's schedule holds no rendered objects.
            let obj = object(ctx, &job.name, &objects[item.k], &item, &ns);
            let api = target.api(ctx.client, target.namespaced.then_some(ns.as_str()));
            let dynobj: DynamicObject = match serde_json::from_value(obj) {
                Ok(o) => o,
                Err(_) => return Some(false),
            };
            let t = Instant::now();
            let r = api.create(&PostParams::default(), &dynobj).await;
            ctx.rec
                .result(Verb::Create, &target.display(), t.elapsed(), &r);
            Some(r.is_ok())
        }
    });
    // An open loop keeps its schedule with ten seconds of sends waiting or in flight; a
    // limited one bounds them.
    let in_flight = match rate {
        Some(r) => ((r * 10.0).ceil() as usize).clamp(IN_FLIGHT, 100_000),
        None => IN_FLIGHT,
    };
    let results: Vec<Option<bool>> = calls.buffer_unordered(in_flight).collect().await;
    let made = results.iter().filter(|r| r.is_some()).count() as u64;
    let failed = results.iter().filter(|r| **r == Some(false)).count() as u64;
    (made, failed)
}

fn items_for(objects: &[ObjectSpec], iterations: impl Iterator<Item = u64> + Clone) -> Vec<Item> {
    let mut out = Vec::new();
    for i in iterations {
        for (k, o) in objects.iter().enumerate() {
            for r in 0..o.replicas {
                out.push(Item { k, i, r });
            }
        }
    }
    out
}

async fn create_job(ctx: &Ctx<'_>, j: usize, job: &Job, targets: &Targets) -> JobReport {
    let t = Instant::now();
    let mut report = JobReport::new(&job.name, "create", t, true);
    let JobKind::Create {
        namespaces,
        iterations,
        objects,
        qps,
        wait_for,
        timeout,
        churn,
        ..
    } = &job.kind
    else {
        return report;
    };
    let names = namespace_names(&ctx.cfg.run_id, &job.name, *namespaces).expect("checked");
    let limit = Limiter::new(qps.0, qps.1);
    report.ok &= make_namespaces(ctx, &job.name, &names).await;
    let items = items_for(objects, 0..*iterations);
    let (made, failed) = make(ctx, j, job, targets, &names, items, &limit).await;
    report.objects = made;
    report.failed = failed;
    report.calls_s = t.elapsed().as_secs_f64();
    let kinds = job_targets(j, objects.len(), targets);
    if let Some(w) = wait_for {
        let (ok, text) = wait_ready(ctx, &job.name, &kinds, made - failed, *w, *timeout).await;
        report.ok &= ok;
        report.waited = Some(text);
    }
    if let Some(c) = churn {
        let n = names.len();
        let per = ((n as u64 * u64::from(c.percent)).div_ceil(100)).max(1) as usize;
        for cycle in 0..c.cycles {
            let began = Instant::now();
            let pick: Vec<usize> = (0..per).map(|x| (cycle as usize * per + x) % n).collect();
            let gone: Vec<String> = pick.iter().map(|&x| names[x].clone()).collect();
            // Namespaces still there (Terminating) cannot be made again: the churn ends.
            if !delete_namespaces(ctx, &gone, *timeout).await || ctx.stopped() {
                report.ok = false;
                break;
            }
            report.ok &= make_namespaces(ctx, &job.name, &gone).await;
            let again = (0..*iterations).filter(|i| pick.contains(&((i % n as u64) as usize)));
            let items = items_for(objects, again);
            let (m, f) = make(ctx, j, job, targets, &names, items, &limit).await;
            report.objects += m;
            report.failed += f;
            if let Some(w) = wait_for {
                let want = report.objects - report.failed;
                let want = want.min(made - failed);
                let (ok, text) = wait_ready(ctx, &job.name, &kinds, want, *w, *timeout).await;
                report.ok &= ok;
                report.waited = Some(text);
            }
            report.churn_cycles += 1;
            if ctx.stopped() || ctx.sleep(c.interval.saturating_sub(began.elapsed())).await {
                break;
            }
        }
    }
    report.ok &= report.failed == 0 && !ctx.stopped();
    report.took_s = t.elapsed().as_secs_f64();
    report
}

/// The distinct resources of job `j`'s templates.
fn job_targets(j: usize, n: usize, targets: &Targets) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for k in 0..n {
        let t = &targets[&(j, k)];
        if !out.iter().any(|o| o.ar == t.ar) {
            out.push(t.clone());
        }
    }
    out
}

/// Whether `o` is as far as `w` asks.
pub fn reached(o: &Value, w: WaitFor) -> bool {
    let kind = o["kind"].as_str().unwrap_or("");
    let cond = |t: &str| {
        o.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == "True"))
    };
    let n = |p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    match kind {
        "Pod" => match w {
            WaitFor::Ready => cond("Ready"),
            WaitFor::Running => o.pointer("/status/phase") == Some(&json!("Running")),
            WaitFor::Complete => o.pointer("/status/phase") == Some(&json!("Succeeded")),
        },
        "Deployment" | "ReplicaSet" | "StatefulSet" => {
            let want = o
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            n("/status/readyReplicas") >= want
        }
        "DaemonSet" => {
            let want = n("/status/desiredNumberScheduled");
            want > 0 && n("/status/numberReady") >= want
        }
        "Job" => match w {
            WaitFor::Complete => cond("Complete"),
            // Ready pods (status.ready, on by default since v1.24), or done.
            _ => {
                let want = o
                    .pointer("/spec/parallelism")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                n("/status/ready") + n("/status/succeeded") >= want.max(1) || cond("Complete")
            }
        },
        _ => true,
    }
}

/// LIST the job's objects until `want` of them reach `w`, or `timeout`.
async fn wait_ready(
    ctx: &Ctx<'_>,
    job: &str,
    kinds: &[Target],
    want: u64,
    w: WaitFor,
    timeout: Duration,
) -> (bool, String) {
    let t = Instant::now();
    let what = format!("{w:?}");
    loop {
        let mut ready = 0;
        for target in kinds {
            let api = target.api(ctx.client, None);
            let lp = ListParams::default().labels(&ctx.selector(job));
            let c = Instant::now();
            let r = api.list(&lp).await;
            ctx.rec
                .result(Verb::ListCluster, &target.display(), c.elapsed(), &r);
            if let Ok(list) = r {
                ready += list
                    .items
                    .iter()
                    .filter_map(|o| serde_json::to_value(o).ok())
                    // A controller's pods carry the job's labels too: only the job's own.
                    .filter(|o| {
                        o.pointer("/metadata/ownerReferences")
                            .is_none_or(|r| r.as_array().is_none_or(Vec::is_empty))
                    })
                    .filter(|o| {
                        let mut o = o.clone();
                        o["kind"] = json!(target.ar.kind);
                        reached(&o, w)
                    })
                    .count() as u64;
            }
        }
        if ready >= want {
            return (
                true,
                format!(
                    "{ready}/{want} {what} in {:.1} s",
                    t.elapsed().as_secs_f64()
                ),
            );
        }
        if t.elapsed() >= timeout {
            return (
                false,
                format!("{ready}/{want} {what} (timed out after {timeout:?})"),
            );
        }
        if ctx.sleep(POLL).await {
            return (false, format!("{ready}/{want} {what} (interrupted)"));
        }
    }
}

/// Delete namespaces and wait (LIST by name) until they are gone or `timeout`.
async fn delete_namespaces(ctx: &Ctx<'_>, names: &[String], timeout: Duration) -> bool {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let mut ok = true;
    for name in names {
        let t = Instant::now();
        let r = api.delete(name, &DeleteParams::default()).await;
        let gone = matches!(&r, Err(kube::Error::Api(s)) if s.code == 404);
        ctx.rec.result(Verb::Delete, "namespaces", t.elapsed(), &r);
        ok &= r.is_ok() || gone;
    }
    let t = Instant::now();
    loop {
        let mut left = 0;
        for name in names {
            let c = Instant::now();
            let r = api.get_opt(name).await;
            ctx.rec.result(Verb::Get, "namespaces", c.elapsed(), &r);
            left += usize::from(!matches!(r, Ok(None)));
        }
        if left == 0 {
            return ok;
        }
        if t.elapsed() >= timeout || ctx.sleep(POLL).await {
            return false;
        }
    }
}

/// Delete job `k`'s objects (cluster-scoped ones one by one; namespaced ones with their
/// namespaces when the job made some) and wait until none is left.
async fn delete_job(
    ctx: &Ctx<'_>,
    name: &str,
    k: usize,
    made: &Job,
    targets: &Targets,
    timeout: Duration,
) -> JobReport {
    let t = Instant::now();
    let mut report = JobReport::new(name, "delete", t, true);
    let JobKind::Create {
        namespaces,
        objects,
        ..
    } = &made.kind
    else {
        return report;
    };
    let kinds = job_targets(k, objects.len(), targets);
    let names = namespace_names(&ctx.cfg.run_id, &made.name, *namespaces).expect("checked");
    let mut pending = HashSet::new();
    for target in &kinds {
        let lp = ListParams::default().labels(&ctx.selector(&made.name));
        let c = Instant::now();
        let r = target.api(ctx.client, None).list(&lp).await;
        ctx.rec
            .result(Verb::ListCluster, &target.display(), c.elapsed(), &r);
        let Ok(list) = r else {
            report.ok = false;
            continue;
        };
        for o in list.items {
            if ctx.stopped() {
                break;
            }
            let ns = o.metadata.namespace.clone();
            let oname = o.metadata.name.clone().unwrap_or_default();
            let api = target.api(ctx.client, ns.as_deref());
            let c = Instant::now();
            // Background: a Job's or a ReplicaSet's pods go with it (batch/v1 Jobs orphan
            // them by default).
            let r = api.delete(&oname, &DeleteParams::background()).await;
            ctx.rec
                .result(Verb::Delete, &target.display(), c.elapsed(), &r);
            report.objects += 1;
            if r.is_err() {
                report.failed += 1;
            }
            pending.insert(target.display());
        }
    }
    report.ok &= delete_namespaces(ctx, &names, timeout).await;
    report.calls_s = t.elapsed().as_secs_f64();
    let (gone, text) =
        wait_gone(ctx, &made.name, &kinds, timeout.saturating_sub(t.elapsed())).await;
    report.ok &= gone && report.failed == 0;
    report.waited = Some(text);
    report.took_s = t.elapsed().as_secs_f64();
    report
}

async fn wait_gone(
    ctx: &Ctx<'_>,
    job: &str,
    kinds: &[Target],
    timeout: Duration,
) -> (bool, String) {
    let t = Instant::now();
    loop {
        let mut left = 0;
        for target in kinds {
            let lp = ListParams::default().labels(&ctx.selector(job));
            let c = Instant::now();
            let r = target.api(ctx.client, None).list(&lp).await;
            ctx.rec
                .result(Verb::ListCluster, &target.display(), c.elapsed(), &r);
            left += r.map_or(1, |l| l.items.len());
        }
        if left == 0 {
            return (
                true,
                format!("all gone in {:.1} s", t.elapsed().as_secs_f64()),
            );
        }
        if t.elapsed() >= timeout || ctx.sleep(POLL).await {
            return (false, format!("{left} left (timed out or interrupted)"));
        }
    }
}

/// Pod startup measured so far.
struct Startup {
    seen: HashSet<String>,
    out: PodStartup,
    seconds: Seconds,
}

impl Startup {
    fn new() -> Startup {
        Startup {
            seen: HashSet::new(),
            out: PodStartup::default(),
            seconds: Seconds::default(),
        }
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time the server wrote.
fn unix(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> f64 {
    t.0.as_second() as f64 + f64::from(t.0.subsec_nanosecond()) / 1e9
}

/// Watch the run's pods; time each the first time it is seen Running and Ready.
async fn pod_informer(client: Client, selector: String, into: Arc<Mutex<Startup>>) {
    let api: Api<Pod> = Api::all(client);
    let cfg = watcher::Config::default().labels(&selector);
    let mut events = std::pin::pin!(watcher(api, cfg));
    while let Some(e) = events.next().await {
        let pods = match e {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => vec![p],
            _ => continue,
        };
        for p in pods {
            let now = st_http::stamp::now_unix();
            let status = p.status.as_ref();
            let cond = |t: &str| {
                status
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.type_ == t))
            };
            let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
            let ready = cond("Ready").is_some_and(|c| c.status == "True");
            let (Some(uid), Some(created)) = (
                p.metadata.uid.clone(),
                p.metadata.creation_timestamp.as_ref(),
            ) else {
                continue;
            };
            let mut s = into.lock().expect("lock");
            if !(running && ready) || s.seen.contains(&uid) {
                continue;
            }
            s.seen.insert(uid);
            let created = unix(created);
            let us = |secs: f64| (secs.max(0.0) * 1e6).round() as u64;
            let o = &mut s.out;
            o.pods += 1;
            let _ = o.pod_startup.record(us(now - created).max(1));
            // The phases as `nodes` cuts them, from the times the server wrote.
            let scheduled = cond("PodScheduled")
                .and_then(|c| c.last_transition_time.as_ref())
                .map(unix);
            let started = status
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
                .map(unix)
                .reduce(f64::max);
            if let Some(t) = scheduled {
                let _ = o.create_to_schedule.record(us(t - created));
                if let Some(r) = started {
                    let _ = o.schedule_to_run.record(us(r - t));
                }
            }
            if let Some(r) = started {
                let _ = o.run_to_watch.record(us(now - r));
            }
            s.seconds.record(
                Instant::now(),
                crate::POD_STARTUP,
                Some(us(now - created).max(1)),
                false,
            );
        }
    }
}

/// What a cleanup removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cleaned {
    /// Namespaces (with everything in them).
    pub namespaces: u64,
    /// Objects deleted one by one (cluster-scoped, or outside the run's namespaces).
    pub objects: u64,
}

/// Delete what run `run_id` made: its objects of `targets` wherever they are (cluster-scoped
/// ones, and those of jobs without namespaces of their own) and its namespaces (and so
/// everything in them); wait up to `timeout` until the namespaces are gone (a real server
/// empties a namespace first). Not recorded: it is not the workload.
pub async fn cleanup(
    client: &Client,
    run_id: &str,
    targets: &Targets,
    timeout: Duration,
) -> Result<Cleaned, Error> {
    let lp = ListParams::default().labels(&format!("{LABEL_RUN}={run_id}"));
    let mut out = Cleaned::default();
    let mut done: Vec<&Target> = Vec::new();
    for t in targets.values() {
        if done.iter().any(|d| d.ar == t.ar) {
            continue;
        }
        done.push(t);
        let list = t
            .api(client, None)
            .list(&lp)
            .await
            .map_err(Error::api(format!("listing {}", t.display())))?;
        for o in list.items {
            let name = o.metadata.name.unwrap_or_default();
            let api = t.api(client, o.metadata.namespace.as_deref());
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => out.objects += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::api(format!("deleting {name}"))(e)),
            }
        }
    }
    let api: Api<Namespace> = Api::all(client.clone());
    let list = api
        .list(&lp)
        .await
        .map_err(Error::api("listing namespaces"))?;
    for n in list.items {
        let name = n.metadata.name.unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => out.namespaces += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::api(format!("deleting namespace {name}"))(e)),
        }
    }
    let t = Instant::now();
    loop {
        let left = api
            .list(&lp)
            .await
            .map_err(Error::api("listing namespaces"))?;
        if left.items.is_empty() {
            return Ok(out);
        }
        if t.elapsed() >= timeout {
            return Err(Error::Timeout(format!(
                "{} namespace(s) of run {run_id} still there after {timeout:?}",
                left.items.len()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
