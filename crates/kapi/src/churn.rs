//! Object churn: lifecycles of create → U patches → delete, on an open-loop schedule (arrivals
//! from `pace`, each lifecycle's later operations at absolute times too) or in a closed loop of
//! T workers. Every call is timed by verb; in open loop every operation's lateness against its
//! schedule is recorded as well, so a slow client is told apart from a slow server.

use crate::stats::{Limiter, Recorder, Verb};
use crate::{wall_ns, Error, Target, ANN_OP, ANN_SENT, LABEL_RUN};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::Client;
use pace::{Arrival, Pacer, RateShape};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long each object lives, in open loop.
#[derive(Debug, Clone, Copy)]
pub enum Lifetime {
    /// The same for every object.
    Fixed(Duration),
    /// Chosen from the rate at creation so that about this many objects exist at once
    /// (Little's law: lifetime = population / rate).
    Population(f64),
}

/// Open or closed loop.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Lifecycles start on a schedule, whether or not earlier ones have finished.
    Open {
        /// Lifecycles per second over the run.
        shape: RateShape,
        /// Uniform or Poisson arrivals.
        arrival: Arrival,
        /// Seed for Poisson arrivals.
        seed: u64,
        /// Object lifetimes.
        lifetime: Lifetime,
    },
    /// `workers` loops, each running one lifecycle after another.
    Closed {
        /// Concurrent lifecycles.
        workers: usize,
        /// Stop after this many lifecycles in all (else at the duration).
        lifecycles: Option<u64>,
    },
}

/// A churn run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The resource.
    pub target: Target,
    /// The object every lifecycle creates (its name, namespace and our labels are filled in).
    pub template: Value,
    /// Namespaces to spread objects over, round-robin (ignored for cluster-scoped resources).
    pub namespaces: Vec<String>,
    /// Open or closed loop.
    pub mode: Mode,
    /// Open loop: how long lifecycles keep starting. Closed loop: a time limit.
    pub duration: Option<Duration>,
    /// Patches per lifecycle.
    pub updates: u32,
    /// Label value on every object.
    pub run_id: String,
    /// Client-side QPS/burst limit.
    pub limit: Option<(f64, u32)>,
}

/// What a run did (the calls themselves are in the [`Recorder`]).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Lifecycles whose create was attempted.
    pub started: u64,
    /// Lifecycles whose every call succeeded.
    pub completed: u64,
    /// Lifecycles with at least one failed call.
    pub failed: u64,
    /// Lifecycles a stopping run (Ctrl-C) cut short: their object was deleted early, or never
    /// made.
    pub cut_short: u64,
    /// Successful deletes (a watcher in the same process waits to see this many).
    pub deleted: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Stopped early (Ctrl-C): lifecycles in progress skipped to their delete.
    pub interrupted: bool,
}

/// How a lifecycle ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Completed,
    Failed,
    CutShort,
}

impl Summary {
    fn count(&mut self, end: End) {
        match end {
            End::Completed => self.completed += 1,
            End::Failed => self.failed += 1,
            End::CutShort => self.cut_short += 1,
        }
    }
}

struct Ctx {
    client: Client,
    cfg: Config,
    rec: Arc<Recorder>,
    limiter: Option<Limiter>,
    stop: watch::Receiver<bool>,
    deleted: AtomicU64,
}

/// The default object: a ConfigMap with `size` bytes of data.
pub fn configmap_template(size: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"payload": "x".repeat(size)}})
}

/// Whether `group` is one a custom resource (a CRD's, or an aggregated API's) may have: CRD
/// groups must contain a dot, and those under k8s.io and kubernetes.io are the project's own.
fn custom_group(group: &str) -> bool {
    group.contains('.') && !group.ends_with(".k8s.io") && !group.ends_with(".kubernetes.io")
}

/// The object every lifecycle of a run on `target` creates: `template`, when it is of the
/// target's kind; else a ConfigMap with `size` bytes of data, or for a custom resource the
/// least object of its own apiVersion and kind (an empty `spec`, which a schema-less CRD
/// takes). Another kind's body would only be refused by the server, call after call, so a
/// template of another kind, or a built-in kind with no default, is a usage error.
pub fn template_for(target: &Target, template: Option<Value>, size: usize) -> Result<Value, Error> {
    let (api_version, kind) = (target.ar.api_version.as_str(), target.ar.kind.as_str());
    if let Some(t) = template {
        let field = |f: &str| t.get(f).and_then(Value::as_str).unwrap_or("").to_string();
        let (tv, tk) = (field("apiVersion"), field("kind"));
        if (tv.as_str(), tk.as_str()) != (api_version, kind) {
            return Err(Error::Usage(format!(
                "the template is a {tv} {tk} but the resource is {}: give a template of \
                 apiVersion {api_version}, kind {kind}",
                target.display()
            )));
        }
        return Ok(t);
    }
    match (target.ar.group.as_str(), kind) {
        ("", "ConfigMap") => Ok(configmap_template(size)),
        (g, _) if custom_group(g) => {
            Ok(json!({"apiVersion": api_version, "kind": kind, "spec": {}}))
        }
        _ => Err(Error::Usage(format!(
            "{}: no default object for a built-in {kind}; give --template FILE (an object of \
             apiVersion {api_version}, kind {kind})",
            target.display()
        ))),
    }
}

/// The name of lifecycle `seq` of run `run_id`.
pub fn object_name(run_id: &str, seq: u64) -> String {
    format!("st-{run_id}-{seq}")
}

fn build(ctx: &Ctx, name: &str, ns: &str) -> Value {
    let mut o = ctx.cfg.template.clone();
    if !o.get("metadata").is_some_and(Value::is_object) {
        o["metadata"] = json!({});
    }
    let m = o["metadata"]
        .as_object_mut()
        .expect("metadata is an object");
    for f in [
        "resourceVersion",
        "uid",
        "generateName",
        "creationTimestamp",
        "generation",
        "managedFields",
    ] {
        m.remove(f);
    }
    m.insert("name".into(), json!(name));
    if ctx.cfg.target.namespaced {
        m.insert("namespace".into(), json!(ns));
    } else {
        m.remove("namespace");
    }
    if !m.get("labels").is_some_and(Value::is_object) {
        m.insert("labels".into(), json!({}));
    }
    m["labels"][LABEL_RUN] = json!(ctx.cfg.run_id);
    if !m.get("annotations").is_some_and(Value::is_object) {
        m.insert("annotations".into(), json!({}));
    }
    m["annotations"][ANN_OP] = json!("create");
    m["annotations"][ANN_SENT] = json!(wall_ns().to_string());
    o
}

/// Time one call and record its outcome (and, for a failure, what the server said).
pub(crate) async fn timed<T>(
    rec: &Recorder,
    verb: Verb,
    resource: &str,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Option<T> {
    let t0 = std::time::Instant::now();
    let r = call.await;
    rec.result(verb, resource, t0.elapsed(), &r);
    r.ok()
}

/// Wait for an operation's time (open loop) and for the rate limit; record the lateness.
/// Returns false once the run is stopping (the caller then skips to its delete).
async fn due(ctx: &Ctx, at: Option<Instant>) -> bool {
    let mut stop = ctx.stop.clone();
    if *stop.borrow() {
        return false;
    }
    if let Some(at) = at {
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = stop.wait_for(|s| *s) => return false,
        }
    }
    if let Some(l) = &ctx.limiter {
        l.acquire().await;
    }
    if let Some(at) = at {
        ctx.rec.late(Instant::now().saturating_duration_since(at));
    }
    true
}

/// One object's life. `plan` is (create time, lifetime) in open loop; None runs back to back.
async fn lifecycle(ctx: Arc<Ctx>, seq: u64, plan: Option<(Instant, Duration)>) -> End {
    let c = &ctx.cfg;
    let ns = &c.namespaces[(seq % c.namespaces.len() as u64) as usize];
    let name = object_name(&c.run_id, seq);
    let api = c.target.api(&ctx.client, Some(ns));
    let res = c.target.display();
    let at =
        |k: u32| plan.map(|(t0, life)| t0 + life.mul_f64(f64::from(k) / f64::from(c.updates + 1)));
    if !due(&ctx, at(0)).await {
        return End::CutShort;
    }
    let obj: DynamicObject = match serde_json::from_value(build(&ctx, &name, ns)) {
        Ok(o) => o,
        Err(_) => return End::Failed,
    };
    if timed(
        &ctx.rec,
        Verb::Create,
        &res,
        api.create(&PostParams::default(), &obj),
    )
    .await
    .is_none()
    {
        return End::Failed;
    }
    let mut ok = true;
    let mut stopping = false;
    for k in 1..=c.updates {
        if !due(&ctx, at(k)).await {
            stopping = true;
            break;
        }
        let patch = json!({"metadata": {"annotations": {
            ANN_OP: format!("update-{k}"), ANN_SENT: wall_ns().to_string()}}});
        ok &= timed(
            &ctx.rec,
            Verb::Patch,
            &res,
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        .is_some();
    }
    if !stopping {
        // A stopping run still deletes, at once, so that nothing is left behind.
        due(&ctx, at(c.updates + 1)).await;
    }
    let deleted = timed(
        &ctx.rec,
        Verb::Delete,
        &res,
        api.delete(&name, &DeleteParams::default()),
    )
    .await
    .is_some();
    if deleted {
        ctx.deleted.fetch_add(1, Ordering::Relaxed);
    }
    match (ok && deleted, stopping) {
        (true, false) => End::Completed,
        (true, true) => End::CutShort,
        (false, _) => End::Failed,
    }
}

/// Run churn until its schedule, duration or lifecycle count is done, or `stop` turns true.
pub async fn run(
    client: Client,
    cfg: Config,
    rec: Arc<Recorder>,
    stop: watch::Receiver<bool>,
) -> Result<Summary, pace::PaceError> {
    let limiter = cfg.limit.map(|(q, b)| Limiter::new(q, b));
    let mode = cfg.mode.clone();
    let duration = cfg.duration;
    let ctx = Arc::new(Ctx {
        client,
        cfg,
        rec,
        limiter,
        stop: stop.clone(),
        deleted: AtomicU64::new(0),
    });
    let start = Instant::now();
    let mut sum = Summary::default();
    let mut tasks = tokio::task::JoinSet::new();
    let tally =
        |s: &mut Summary, r: Result<End, tokio::task::JoinError>| s.count(r.unwrap_or(End::Failed));
    match mode {
        Mode::Open {
            shape,
            arrival,
            seed,
            lifetime,
        } => {
            let total = duration.unwrap_or_default().as_secs_f64();
            let pacer = Pacer::new(shape.clone(), arrival, duration, seed)?;
            let mut stop = stop.clone();
            for offset in pacer {
                let t = start + offset;
                tokio::select! {
                    _ = tokio::time::sleep_until(t) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                let life = match lifetime {
                    Lifetime::Fixed(d) => d,
                    Lifetime::Population(p) => {
                        let rate = shape.rate_at(offset.as_secs_f64(), total).max(1e-3);
                        Duration::from_secs_f64((p / rate).min(86_400.0))
                    }
                };
                tasks.spawn(lifecycle(ctx.clone(), sum.started, Some((t, life))));
                sum.started += 1;
                while let Some(r) = tasks.try_join_next() {
                    tally(&mut sum, r);
                }
            }
        }
        Mode::Closed {
            workers,
            lifecycles,
        } => {
            let next = Arc::new(AtomicU64::new(0));
            let deadline = duration.map(|d| start + d);
            let mut loops = tokio::task::JoinSet::new();
            for _ in 0..workers.max(1) {
                let (ctx, next) = (ctx.clone(), next.clone());
                loops.spawn(async move {
                    let mut part = Summary::default();
                    loop {
                        if *ctx.stop.borrow() || deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        let seq = next.fetch_add(1, Ordering::Relaxed);
                        if lifecycles.is_some_and(|n| seq >= n) {
                            break;
                        }
                        part.started += 1;
                        part.count(lifecycle(ctx.clone(), seq, None).await);
                    }
                    part
                });
            }
            while let Some(r) = loops.join_next().await {
                if let Ok(p) = r {
                    sum.started += p.started;
                    sum.completed += p.completed;
                    sum.failed += p.failed;
                    sum.cut_short += p.cut_short;
                }
            }
            sum.elapsed = start.elapsed();
            sum.interrupted = *stop.borrow();
            sum.deleted = ctx.deleted.load(Ordering::Relaxed);
            return Ok(sum);
        }
    }
    while let Some(r) = tasks.join_next().await {
        tally(&mut sum, r);
    }
    sum.elapsed = start.elapsed();
    sum.interrupted = *stop.borrow();
    sum.deleted = ctx.deleted.load(Ordering::Relaxed);
    Ok(sum)
}

/// Create `n` namespaces for a run, labelled with its id; returns their names.
pub async fn create_namespaces(
    client: &Client,
    run_id: &str,
    n: usize,
) -> Result<Vec<String>, Error> {
    use k8s_openapi::api::core::v1::Namespace;
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("scaletest-{run_id}-{i}");
        let ns = Namespace {
            metadata: kube::core::ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(LABEL_RUN.to_string(), run_id.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .map_err(|source| Error::Api {
                what: format!("creating namespace {name}"),
                source,
            })?;
        names.push(name);
    }
    Ok(names)
}

/// What a cleanup removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cleaned {
    /// Objects of the resource.
    pub objects: u64,
    /// Namespaces runs made.
    pub namespaces: u64,
}

/// Delete everything runs made: objects of `target` labelled with `run_id` (any run when
/// None), in every namespace, then the namespaces they made.
pub async fn cleanup(
    client: &Client,
    target: &Target,
    run_id: Option<&str>,
) -> Result<Cleaned, Error> {
    let sel = match run_id {
        Some(id) => format!("{LABEL_RUN}={id}"),
        None => LABEL_RUN.to_string(),
    };
    let lp = ListParams::default().labels(&sel);
    let mut out = Cleaned::default();
    let all = target.api(client, None);
    let list = all.list(&lp).await.map_err(|source| Error::Api {
        what: format!("listing {}", target.display()),
        source,
    })?;
    for o in list.items {
        let ns = o.metadata.namespace.clone();
        let name = o.metadata.name.clone().unwrap_or_default();
        let api = target.api(client, ns.as_deref());
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => out.objects += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::Api {
                    what: format!("deleting {name}"),
                    source,
                })
            }
        }
    }
    let nsapi: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    let list = nsapi.list(&lp).await.map_err(|source| Error::Api {
        what: "listing namespaces".into(),
        source,
    })?;
    for n in list.items {
        let name = n.metadata.name.unwrap_or_default();
        match nsapi.delete(&name, &DeleteParams::default()).await {
            Ok(_) => out.namespaces += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::Api {
                    what: format!("deleting namespace {name}"),
                    source,
                })
            }
        }
    }
    Ok(out)
}
