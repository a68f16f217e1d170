//! `/version` and the discovery documents (`/api`, `/apis`, `/apis/GROUP`, the resource lists
//! of a group version), built from the resource types the fake serves, in kube-apiserver
//! v1.28.7's shapes; `/version` is that server's answer as recorded
//! (`k8s-reference/version.json`).

use crate::reply::{reply, status, Body};
use crate::resource::Resource;
use crate::route::Doc;
use crate::state::Shared;
use hyper::Response;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The answer to a discovery request; 404 for a group or version nothing is served in.
pub(crate) fn answer(shared: &Shared, doc: &Doc) -> Response<Body> {
    let found = match doc {
        Doc::Version => Some(version()),
        Doc::CoreVersions => Some(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": shared.addr.to_string()}]})),
        Doc::Groups => {
            let gs: Vec<Value> = groups(shared)
                .iter()
                .map(|(n, vs)| group_doc(n, vs))
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs}))
        }
        Doc::Group(g) => groups(shared)
            .iter()
            .find(|(n, _)| n == g)
            .map(|(n, vs)| group_doc(n, vs)),
        Doc::Resources { group, version } => resource_list(shared, group, version),
    };
    match found {
        Some(d) => reply(200, &d),
        None => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

/// kube-apiserver v1.28.7's `/version`, as recorded.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "28",
        "gitVersion": "v1.28.7",
        "gitCommit": "97d04a81e5e02c7512c84c3a533eba3e0d3a2818",
        "gitTreeState": "dirty",
        "buildDate": "2026-12-06T03:28:16Z",
        "goVersion": "go1.21.13",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn resource_list(shared: &Shared, group: &str, version: &str) -> Option<Value> {
    let rs: Vec<Resource> = shared.resources(|r| r.group == group && r.version == version);
    let first = rs.first()?;
    let mut out = Vec::new();
    for r in &rs {
        out.push(json!({"name": r.plural, "singularName": r.kind.to_lowercase(),
            "namespaced": r.namespaced, "kind": r.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]}));
        out.push(
            json!({"name": format!("{}/status", r.plural), "singularName": "",
            "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}),
        );
    }
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": first.api_version(), "resources": out}))
}

/// The named groups served, by name, each with its versions in the order registered.
fn groups(shared: &Shared) -> Vec<(String, Vec<String>)> {
    let mut g: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in shared.resources(|r| !r.group.is_empty()) {
        let vs = g.entry(r.group.clone()).or_default();
        if !vs.contains(&r.version) {
            vs.push(r.version.clone());
        }
    }
    g.into_iter().collect()
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": vs,
           "preferredVersion": vs[0]})
}
