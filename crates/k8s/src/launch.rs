//! Runners as pods on a cluster ([`crate::runner`]'s objects): applied with the run's field
//! manager (any kind, found through discovery), waited for (hollow Nodes Ready; a Job's
//! pods finished), their results read from the pods' logs, and removed.

use crate::cluster::{apply_one, Applied};
use crate::Error;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, ListParams, LogParams};
use kube::{Api, Client};
use std::time::{Duration, Instant};

/// How often a wait polls.
const POLL: Duration = Duration::from_millis(500);

fn kapi_error(what: &str) -> impl FnOnce(kapi::Error) -> Error + '_ {
    move |e| match e {
        kapi::Error::Usage(m) => Error::Usage(format!("{what}: {m}")),
        e => Error::Api {
            what: what.to_string(),
            cause: e.to_string(),
        },
    }
}

/// Apply every object, in order, whatever its kind.
pub async fn apply(client: &Client, objects: &[serde_json::Value]) -> Result<Vec<Applied>, Error> {
    let mut out = Vec::new();
    for o in objects {
        let gvk =
            kapi::template_gvk(o).ok_or_else(|| Error::Usage("an object without kind".into()))?;
        let spec = kapi::gvk_spec(&gvk);
        let target = kapi::resolve(client, &spec)
            .await
            .map_err(kapi_error(&spec))?;
        let obj: kube::core::DynamicObject = serde_json::from_value(o.clone())
            .map_err(|e| Error::Usage(format!("a {}: {e}", gvk.kind)))?;
        let api = target.api(client, obj.metadata.namespace.as_deref());
        out.push(apply_one(api, &obj, &gvk.kind.to_ascii_lowercase()).await?);
    }
    Ok(out)
}

/// Hollow Nodes of the shards named `prefix` ([`crate::runner::shard_node`]): (Ready, all).
pub async fn nodes_ready(client: &Client, prefix: &str) -> Result<(usize, usize), Error> {
    let api: Api<Node> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().labels("scaletest.dev/hollow"))
        .await
        .map_err(Error::api("list nodes"))?;
    let mine: Vec<&Node> = list
        .items
        .iter()
        .filter(|n| {
            n.metadata
                .name
                .as_deref()
                .is_some_and(|n| crate::runner::shard_node(prefix, n))
        })
        .collect();
    let ready = mine
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    Ok((ready, mine.len()))
}

/// Wait until `want` hollow Nodes of the shards named `prefix` are Ready; `say` gets a line
/// when the count changes.
pub async fn wait_nodes(
    client: &Client,
    prefix: &str,
    want: usize,
    timeout: Duration,
    say: &mut dyn FnMut(String),
) -> Result<usize, Error> {
    let t = Instant::now();
    let mut last = usize::MAX;
    loop {
        let (ready, _) = nodes_ready(client, prefix).await?;
        if ready != last {
            say(format!("{ready} of {want} hollow nodes Ready"));
            last = ready;
        }
        if ready >= want {
            return Ok(ready);
        }
        if t.elapsed() >= timeout {
            return Err(Error::NotReady(format!(
                "{ready} of {want} hollow nodes Ready after {timeout:?} (see `kubectl get pods`)"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Wait until the runner Job `name` in `ns` has every pod finished: (succeeded, failed).
pub async fn wait_job(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> Result<(i32, i32), Error> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let t = Instant::now();
    loop {
        let j = api
            .get(name)
            .await
            .map_err(Error::api(format!("get job {ns}/{name}")))?;
        let want = j.spec.as_ref().and_then(|s| s.completions).unwrap_or(1);
        let s = j.status.unwrap_or_default();
        let (ok, failed) = (s.succeeded.unwrap_or(0), s.failed.unwrap_or(0));
        if ok + failed >= want {
            return Ok((ok, failed));
        }
        if t.elapsed() >= timeout {
            return Err(Error::NotReady(format!(
                "job {ns}/{name}: {ok} of {want} pods done after {timeout:?}"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Each finished pod of the selector's: (name, its log). A pod's log is its run as JSON.
pub async fn results(
    client: &Client,
    ns: &str,
    selector: &str,
) -> Result<Vec<(String, String)>, Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pods = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(Error::api(format!("list pods in {ns}")))?;
    let mut out = Vec::new();
    for p in pods.items {
        let name = p.metadata.name.unwrap_or_default();
        let log = api
            .logs(&name, &LogParams::default())
            .await
            .map_err(Error::api(format!("logs of pod {ns}/{name}")))?;
        out.push((name, log));
    }
    out.sort();
    Ok(out)
}

/// Whether runner Job `name` exists in `ns` (a kept or failed earlier run).
pub async fn job_exists(client: &Client, ns: &str, name: &str) -> Result<bool, Error> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    Ok(api
        .get_opt(name)
        .await
        .map_err(Error::api(format!("get job {ns}/{name}")))?
        .is_some())
}

/// Delete a runner: its namespace (its pods, Job or StatefulSet, ServiceAccount) and its
/// ClusterRole and binding `role`; wait up to `timeout` until the namespace is gone (a real
/// server keeps it Terminating while it empties it).
pub async fn remove(client: &Client, ns: &str, role: &str, timeout: Duration) -> Result<(), Error> {
    let gone = |r: Result<(), kube::Error>, what: String| match r {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::api(what)(e)),
    };
    let b: Api<ClusterRoleBinding> = Api::all(client.clone());
    gone(
        b.delete(role, &DeleteParams::default()).await.map(|_| ()),
        format!("delete clusterrolebinding {role}"),
    )?;
    let r: Api<ClusterRole> = Api::all(client.clone());
    gone(
        r.delete(role, &DeleteParams::default()).await.map(|_| ()),
        format!("delete clusterrole {role}"),
    )?;
    let n: Api<Namespace> = Api::all(client.clone());
    gone(
        n.delete(ns, &DeleteParams::default()).await.map(|_| ()),
        format!("delete namespace {ns}"),
    )?;
    let t = Instant::now();
    while n
        .get_opt(ns)
        .await
        .map_err(Error::api(format!("get namespace {ns}")))?
        .is_some()
    {
        if t.elapsed() >= timeout {
            return Err(Error::NotReady(format!(
                "namespace {ns} still there after {timeout:?}"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}
