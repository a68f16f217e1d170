//! The calls that act on a cluster: `up` (server-side apply of every object, then wait until
//! ready), `scale` and `rollout` (a changed spec applied the same way), `status` (with a row
//! per pod and the cluster's version), `logs`, and `down` (delete the run's namespace, wait
//! until it is gone). `rollout` also posts its progress to the aggregator and reads what it
//! measured in the rollout's seconds (see [`crate::aggregator`]).
//!
//! Every write is a server-side apply with field manager [`FIELD_MANAGER`] and `force` (a run's
//! objects are scaletest's: a `kubectl scale` in between is taken back by the next command), so
//! applying what is already there writes nothing and a second `up` is a no-op. Waiting polls
//! the Deployments (and on a deadline, their pods) every [`POLL`]; the verdicts are
//! [`crate::wait`]'s.

use crate::aggregator::Aggregator;
use crate::manifest::{self, Keys, Objects, TOKEN_SECRET};
use crate::spec::{Changes, Spec};
use crate::wait::{self, Rollout};
use crate::{Error, ANN_SPEC};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use report::Window;
use serde::de::DeserializeOwned;
use serde::Serialize;
use st_http::stamp::now_unix;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, Instant};

/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "scaletest";
/// How often a wait looks again.
pub const POLL: Duration = Duration::from_millis(250);

/// Which run, where, and how long a command may wait.
#[derive(Debug, Clone)]
pub struct Target {
    /// The run's id.
    pub run: String,
    /// Its namespace.
    pub namespace: String,
    /// The longest wait for readiness (or for the namespace to go).
    pub timeout: Duration,
}

/// What an apply did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It did not exist.
    Created,
    /// It changed.
    Configured,
    /// It was already as asked: nothing written.
    Unchanged,
}

/// One applied object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `deployment/serve`.
    pub object: String,
    /// What happened.
    pub change: Change,
}

/// The run's namespace and spec, if it exists; a namespace of that name that is not this run's
/// is an error (it is never touched).
pub async fn current(client: &Client, t: &Target) -> Result<Option<Spec>, Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = api
        .get_opt(&t.namespace)
        .await
        .map_err(Error::api(format!("get namespace {}", t.namespace)))?;
    let Some(ns) = ns else { return Ok(None) };
    let owner = ns.labels().get(kapi::LABEL_RUN).cloned();
    if owner.as_deref() != Some(t.run.as_str()) {
        return Err(Error::Usage(format!(
            "namespace {} exists and is not run {}'s ({}): not touching it",
            t.namespace,
            t.run,
            match owner {
                Some(o) => format!("it belongs to run {o}"),
                None => format!("it has no {} label", kapi::LABEL_RUN),
            }
        )));
    }
    match manifest::spec_of(&ns) {
        Some(s) => Ok(Some(s)),
        None => Err(Error::Usage(format!(
            "namespace {} has no readable {ANN_SPEC} annotation: was it made by another scaletest version?",
            t.namespace
        ))),
    }
}

/// The run's keys: those its Secret holds, and what it lacks made anew.
async fn keys(client: &Client, spec: &Spec) -> Result<Keys, Error> {
    let ns = &spec.namespace;
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = api
        .get_opt(TOKEN_SECRET)
        .await
        .map_err(Error::api(format!("get secret {ns}/{TOKEN_SECRET}")))?;
    Keys::complete(spec, s.as_ref())
}

/// Server-side apply of one object with the run's field manager; what changed.
pub(crate) async fn apply_one<K>(api: Api<K>, obj: &K, kind: &str) -> Result<Applied, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let object = format!("{kind}/{name}");
    let before = api
        .get_opt(&name)
        .await
        .map_err(Error::api(format!("get {object}")))?
        .and_then(|o| o.meta().resource_version.clone());
    let after = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .map_err(Error::api(format!("apply {object}")))?;
    let change = match before {
        None => Change::Created,
        Some(rv) if Some(&rv) == after.meta().resource_version.as_ref() => Change::Unchanged,
        Some(_) => Change::Configured,
    };
    Ok(Applied { object, change })
}

/// Apply every object, in order (namespace first).
pub async fn apply(client: &Client, objs: &Objects) -> Result<Vec<Applied>, Error> {
    let ns = objs.namespace.name_any();
    let mut out = vec![apply_one(Api::all(client.clone()), &objs.namespace, "namespace").await?];
    out.push(
        apply_one::<ServiceAccount>(
            Api::namespaced(client.clone(), &ns),
            &objs.service_account,
            "serviceaccount",
        )
        .await?,
    );
    out.push(
        apply_one::<Secret>(Api::namespaced(client.clone(), &ns), &objs.secret, "secret").await?,
    );
    for s in &objs.services {
        out.push(apply_one::<Service>(Api::namespaced(client.clone(), &ns), s, "service").await?);
    }
    if let Some(c) = &objs.claim {
        let api = Api::namespaced(client.clone(), &ns);
        out.push(apply_one::<PersistentVolumeClaim>(api, c, "persistentvolumeclaim").await?);
    }
    for d in &objs.deployments {
        out.push(
            apply_one::<Deployment>(Api::namespaced(client.clone(), &ns), d, "deployment").await?,
        );
    }
    Ok(out)
}

/// What `up`, `scale` and `rollout` did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The spec now deployed.
    pub spec: Spec,
    /// Each object applied.
    pub applied: Vec<Applied>,
    /// The Deployments once ready.
    pub rollouts: Vec<Rollout>,
}

/// `up`: the deployed spec (or `base` for a new run) with `changes`, applied, then every
/// Deployment waited for. `say` gets progress lines.
pub async fn up(
    client: &Client,
    t: &Target,
    base: Spec,
    changes: &Changes,
    say: &mut dyn FnMut(&str),
) -> Result<Outcome, Error> {
    let deployed = current(client, t).await?;
    if let (Some(d), Some(c)) = (&deployed, &changes.target) {
        if d.target.as_ref() != Some(c) {
            return Err(Error::Usage(format!(
                "run {} was started {}: `k8s down` it first to change what it loads",
                t.run,
                match &d.target {
                    Some(x) => format!("with --target {}", x.url),
                    None => "without --target (it loads its own servers)".into(),
                }
            )));
        }
    }
    let spec = deployed.unwrap_or(base).with(changes)?;
    let components = spec.components();
    deploy(client, t, spec, components, say).await
}

/// `scale` and `rollout`: like `up`, for a run that must exist; waits for `components`.
pub async fn change(
    client: &Client,
    t: &Target,
    changes: &Changes,
    components: &[&str],
    say: &mut dyn FnMut(&str),
) -> Result<Outcome, Error> {
    let spec = current(client, t)
        .await?
        .ok_or_else(|| not_up(t))?
        .with(changes)?;
    let has = spec.components();
    let components: Vec<&str> = components
        .iter()
        .copied()
        .filter(|c| has.contains(c))
        .collect();
    deploy(client, t, spec, &components, say).await
}

/// What a rollout did: the Deployments' outcome, the window of seconds it took as the
/// aggregator measured them (`None` when the aggregator could not be asked: the reason is in
/// `warning`), and a warning for anything that did not stop it.
#[derive(Debug)]
pub struct Rolled {
    /// The apply and wait.
    pub outcome: Outcome,
    /// The requests of the rollout's seconds.
    pub window: Option<Window>,
    /// Events not posted, or the window not read.
    pub warning: Option<String>,
}

/// Roll the servers to `version` (and `image`, when given), posting its progress to the
/// aggregator as events, then read what the aggregator measured during it.
pub async fn rollout(
    client: &Client,
    t: &Target,
    version: &str,
    image: Option<&str>,
    say: &mut dyn FnMut(&str),
) -> Result<Rolled, Error> {
    let spec = current(client, t).await?.ok_or_else(|| not_up(t))?;
    if let Some(target) = &spec.target {
        return Err(Error::Usage(format!(
            "run {} loads {}: it has no servers to roll; roll your own Deployment and judge it with `k8s check --during 'kubectl rollout …'`",
            t.run, target.url
        )));
    }
    let from = spec.version.clone();
    let spec = spec.with(&Changes {
        version: Some(version.to_string()),
        server_image: image.map(str::to_string),
        ..Changes::default()
    })?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let found = Aggregator::find(client, &spec).await;
    let (poster, mut warning) = match &found {
        Ok(agg) => {
            let agg = agg.clone();
            (
                Some(tokio::spawn(async move {
                    let mut failed: Option<String> = None;
                    while let Some(line) = rx.recv().await {
                        if failed.is_none() {
                            if let Err(e) = agg.event(&line).await {
                                failed = Some(e.to_string());
                            }
                        }
                    }
                    failed
                })),
                None,
            )
        }
        Err(e) => (None, Some(e.to_string())),
    };
    let started = now_unix().floor() as u64;
    let _ = tx.send(format!("rollout {from} → {version} started"));
    let out = deploy(client, t, spec, &["serve"], &mut |l: &str| {
        say(l);
        let _ = tx.send(format!("rollout: {l}"));
    })
    .await;
    let ended = now_unix().ceil() as u64;
    let _ = tx.send(match &out {
        Ok(_) => format!("rollout {from} → {version} done"),
        Err(e) => format!("rollout {from} → {version} failed: {e}"),
    });
    drop(tx);
    if let Some(p) = poster {
        if let Ok(Some(e)) = p.await {
            warning = Some(format!("rollout events not posted to the aggregator: {e}"));
        }
    }
    let outcome = out?;
    let mut window = None;
    if let Ok(agg) = &found {
        say("rollout: waiting for the aggregator to hear every second of it");
        match agg.window(started, ended.max(started + 1), SETTLE).await {
            Ok(w) => window = Some(w),
            Err(e) => warning = Some(format!("the rollout's requests were not read: {e}")),
        }
    }
    Ok(Rolled {
        outcome,
        window,
        warning,
    })
}

/// The longest a verdict waits for the aggregator to hear the last seconds of a window
/// (it publishes a second 1.5 s after it ends).
pub const SETTLE: Duration = Duration::from_secs(15);

fn not_up(t: &Target) -> Error {
    Error::Usage(format!(
        "run {} is not up (no namespace {}): start it with `scaletest k8s up`",
        t.run, t.namespace
    ))
}

async fn deploy(
    client: &Client,
    t: &Target,
    spec: Spec,
    components: &[&str],
    say: &mut dyn FnMut(&str),
) -> Result<Outcome, Error> {
    let deadline = Instant::now() + t.timeout;
    // A new run (no Secret yet) gets a new token and certificate; a deployed one keeps its own.
    let objs = manifest::objects(&spec, &keys(client, &spec).await?);
    let applied = apply(client, &objs).await?;
    for a in &applied {
        say(&format!(
            "{} {}",
            a.object,
            match a.change {
                Change::Created => "created",
                Change::Configured => "configured",
                Change::Unchanged => "unchanged",
            }
        ));
    }
    let rollouts = wait_ready(client, &spec, components, deadline, t.timeout, say).await?;
    Ok(Outcome {
        spec,
        applied,
        rollouts,
    })
}

/// Poll the components' Deployments until each is rolled out; at the deadline, one line naming
/// every one that is not and why (its pods' problems, the crash-looper's last log lines).
pub async fn wait_ready(
    client: &Client,
    spec: &Spec,
    components: &[&str],
    deadline: Instant,
    timeout: Duration,
    say: &mut dyn FnMut(&str),
) -> Result<Vec<Rollout>, Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), &spec.namespace);
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut states = Vec::new();
        for c in components {
            let d = api
                .get(c)
                .await
                .map_err(Error::api(format!("get deployment {}/{c}", spec.namespace)))?;
            let r = wait::rollout(&d);
            let line = r.line();
            if last.get(*c) != Some(&line) {
                say(&line);
                last.insert(c.to_string(), line);
            }
            states.push((d, r));
        }
        if states.iter().all(|(_, r)| r.done()) {
            return Ok(states.into_iter().map(|(_, r)| r).collect());
        }
        if Instant::now() >= deadline {
            let mut why = Vec::new();
            for (d, r) in states.iter().filter(|(_, r)| !r.done()) {
                why.push(explain(client, spec, d, r).await?);
            }
            return Err(Error::NotReady(format!(
                "not ready after {}: {}",
                humanize(timeout),
                why.join("; ")
            )));
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

fn humanize(d: Duration) -> String {
    if d.as_secs() >= 1 && d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

async fn explain(
    client: &Client,
    spec: &Spec,
    d: &Deployment,
    r: &Rollout,
) -> Result<String, Error> {
    let ns = &spec.namespace;
    let name = d.name_any();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&manifest::pod_selector(spec, &name)))
        .await
        .map_err(Error::api(format!("list pods of deployment {ns}/{name}")))?;
    let problems = wait::diagnose(&list.items);
    let mut s = format!(
        "deployment {ns}/{name} ({})",
        r.line().trim_start_matches(&format!("{name} "))
    );
    match problems.first() {
        Some(p) => {
            s.push_str(": ");
            s.push_str(&p.line());
            if p.wants_log {
                if let Some(log) = last_log(&pods, p).await {
                    s.push_str(&format!("; its last log lines: {log}"));
                }
            }
            if problems.len() > 1 {
                s.push_str(&format!(
                    " (and {} more pods with problems)",
                    problems.len() - 1
                ));
            }
        }
        None => match wait::conditions(d) {
            Some(c) => s.push_str(&format!(": {c}")),
            None if list.items.is_empty() => s.push_str(": no pods yet"),
            None => s.push_str(": pods starting"),
        },
    }
    Ok(s)
}

/// The previous container's last lines (a crash loop's cause), else the current one's; joined
/// with " | " to stay one line.
async fn last_log(pods: &Api<Pod>, p: &wait::Problem) -> Option<String> {
    for previous in [true, false] {
        let lp = LogParams {
            container: p.container.clone(),
            previous,
            tail_lines: Some(5),
            ..LogParams::default()
        };
        if let Ok(text) = pods.logs(&p.pod, &lp).await {
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            if !lines.is_empty() {
                return Some(lines.join(" | "));
            }
        }
    }
    None
}

/// A run as it is now.
#[derive(Debug, Clone)]
pub struct Status {
    /// The deployed spec.
    pub spec: Spec,
    /// Each component's Deployment.
    pub rollouts: Vec<Rollout>,
    /// Pods by (component, version, state): `("serve", "v2", "Running, ready") → 5`.
    pub pods: BTreeMap<(String, String, String), usize>,
    /// One row per pod, by component then name.
    pub rows: Vec<PodRow>,
    /// The API server's version (`GET /version`), if it answered.
    pub cluster_version: Option<String>,
}

/// One pod as `status` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodRow {
    /// Its name.
    pub name: String,
    /// `serve`, `aggregate` or `bot`.
    pub component: String,
    /// The node it is bound to, or "-".
    pub node: String,
    /// The server version it reports (servers), or "-".
    pub version: String,
    /// Phase and readiness, or what is wrong.
    pub state: String,
    /// Container restarts.
    pub restarts: i32,
    /// Seconds since it was created.
    pub age_s: u64,
}

/// The API server's version as `kubectl version` names it: `Kubernetes v1.28.7 (linux/amd64)`.
pub async fn cluster_version(client: &Client) -> Result<String, Error> {
    let v = client
        .apiserver_version()
        .await
        .map_err(Error::api("GET /version".to_string()))?;
    Ok(format!("Kubernetes {} ({})", v.git_version, v.platform))
}

/// The last `tail` lines of every container of the run's pods of `component` (all when
/// `None`), each line prefixed with `[pod/NAME]`; a pod whose log cannot be read gets one
/// line saying why.
pub async fn logs(
    client: &Client,
    t: &Target,
    component: Option<&str>,
    tail: i64,
    previous: bool,
) -> Result<Vec<String>, Error> {
    let spec = current(client, t).await?.ok_or_else(|| not_up(t))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &spec.namespace);
    let mut selector = format!("{}={}", kapi::LABEL_RUN, spec.run);
    if let Some(c) = component {
        selector.push_str(&format!(",{}={c}", manifest::LABEL_COMPONENT));
    }
    let mut list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::api(format!("list pods in {}", spec.namespace)))?
        .items;
    list.sort_by_key(|p| p.name_any());
    let mut out = Vec::new();
    for p in &list {
        let name = p.name_any();
        let lp = LogParams {
            previous,
            tail_lines: Some(tail),
            ..LogParams::default()
        };
        match pods.logs(&name, &lp).await {
            Ok(text) => out.extend(text.lines().map(|l| format!("[pod/{name}] {l}"))),
            Err(kube::Error::Api(e)) => out.push(format!("[pod/{name}] (no log: {})", e.message)),
            Err(e) => out.push(format!("[pod/{name}] (no log: {e})")),
        }
    }
    Ok(out)
}

/// `status`: the Deployments and pods of a run that must exist.
pub async fn status(client: &Client, t: &Target) -> Result<Status, Error> {
    let spec = current(client, t).await?.ok_or_else(|| not_up(t))?;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &spec.namespace);
    let mut rollouts = Vec::new();
    for c in spec.components() {
        if let Some(d) = deps
            .get_opt(c)
            .await
            .map_err(Error::api(format!("get deployment {}/{c}", spec.namespace)))?
        {
            rollouts.push(wait::rollout(&d));
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &spec.namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("{}={}", kapi::LABEL_RUN, spec.run)))
        .await
        .map_err(Error::api(format!("list pods in {}", spec.namespace)))?;
    let mut counts = BTreeMap::new();
    let mut rows = Vec::new();
    let now = now_unix();
    for p in &list.items {
        let l = p.labels();
        let component = l
            .get(manifest::LABEL_COMPONENT)
            .cloned()
            .unwrap_or_default();
        let version = l
            .get(manifest::LABEL_VERSION)
            .cloned()
            .unwrap_or_else(|| "-".into());
        let state = pod_state(p);
        let restarts = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
        let created = p
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0.as_second() as f64);
        rows.push(PodRow {
            name: p.name_any(),
            component: component.clone(),
            node: p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "-".into()),
            version: version.clone(),
            state: state.clone(),
            restarts,
            age_s: (now - created).max(0.0) as u64,
        });
        *counts.entry((component, version, state)).or_insert(0) += 1;
    }
    rows.sort_by(|a, b| (&a.component, &a.name).cmp(&(&b.component, &b.name)));
    Ok(Status {
        spec,
        rollouts,
        pods: counts,
        rows,
        cluster_version: cluster_version(client).await.ok(),
    })
}

fn pod_state(p: &Pod) -> String {
    if p.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    if let Some(problem) = wait::diagnose(std::slice::from_ref(p)).first() {
        return problem.reason.clone();
    }
    let st = p.status.as_ref();
    let phase = st
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    let ready = st
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if phase == "Running" {
        if ready {
            "Running, ready"
        } else {
            "Running, not ready"
        }
        .into()
    } else {
        phase
    }
}

/// How many objects of a kind in `ns` match `lp`.
async fn count<K>(client: &Client, ns: &str, lp: &ListParams) -> Result<usize, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let plural = K::plural(&K::DynamicType::default()).to_string();
    Ok(Api::<K>::namespaced(client.clone(), ns)
        .list(lp)
        .await
        .map_err(Error::api(format!("list {plural} in {ns}")))?
        .items
        .len())
}

/// What `down` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Down {
    /// No such run: nothing deleted.
    NotFound,
    /// The namespace and everything in it are gone; the run's objects counted before.
    Deleted {
        /// Objects of the run (Deployments, Services, Secrets, ServiceAccounts, Pods).
        objects: usize,
    },
}

/// `down`: delete the run's namespace (only if it carries this run's label) and wait until the
/// API server no longer has it.
pub async fn down(client: &Client, t: &Target) -> Result<Down, Error> {
    if current(client, t).await?.is_none() {
        return Ok(Down::NotFound);
    }
    let deadline = Instant::now() + t.timeout;
    let lp = ListParams::default().labels(&format!("{}={}", kapi::LABEL_RUN, t.run));
    let ns = &t.namespace;
    let objects = count::<Deployment>(client, ns, &lp).await?
        + count::<Service>(client, ns, &lp).await?
        + count::<Secret>(client, ns, &lp).await?
        + count::<ServiceAccount>(client, ns, &lp).await?
        + count::<Pod>(client, ns, &lp).await?;
    let api: Api<Namespace> = Api::all(client.clone());
    match api.delete(ns, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(Error::api(format!("delete namespace {ns}"))(e)),
    }
    loop {
        let left = api
            .get_opt(ns)
            .await
            .map_err(Error::api(format!("get namespace {ns}")))?;
        let Some(left) = left else {
            return Ok(Down::Deleted { objects });
        };
        if Instant::now() >= deadline {
            let why = left
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.status == "True")
                .map(|c| c.message.unwrap_or(c.type_))
                .collect::<Vec<_>>();
            return Err(Error::NotReady(format!(
                "namespace {ns} still terminating after {}{}",
                humanize(t.timeout),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {}", why.join("; "))
                }
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
