//! One function per verb on a resource (get, list, create, update, patch and apply, delete,
//! deletecollection) over the [`Store`], with the checks kube-apiserver v1.28.7 makes first: a
//! body's apiVersion and kind against its path, the namespace a create names, the patch types
//! served, what an apply patch must carry. Watches are in `watch`, subresources with
//! their own verbs (binding, token, log, portforward) in modules of their own.

use crate::reply::{error, reply, status, Body};
use crate::resource::{builtins, namespaces, Resource};
use crate::route::{Query, Target};
use crate::selectors::Selectors;
use crate::state::Shared;
use crate::store::Store;
use hyper::Response;
use serde_json::{json, Value};

/// The content type of a server-side apply patch.
pub(crate) const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// A body's apiVersion and kind against the resource of the path, as the API server checks
/// them when it decodes a create or update: either may be left out (the path's are assumed);
/// another apiVersion is a 400 BadRequest; another kind is a 400 for a built-in type (it
/// cannot be converted) and a 422 Invalid for a custom resource (its validation says so).
pub(crate) fn check_type(r: &Resource, body: &Value) -> Result<(), Box<Response<Body>>> {
    let expected = r.api_version();
    let field = |f: &str| {
        body.get(f)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let api_version = field("apiVersion").unwrap_or(&expected);
    if api_version != expected {
        return Err(Box::new(status(
            400,
            "BadRequest",
            &format!(
                "the API version in the data ({api_version}) does not match the expected API \
                 version ({expected})"
            ),
        )));
    }
    match field("kind") {
        Some(kind) if kind != r.kind => {
            let builtin = builtins()
                .iter()
                .any(|b| (&b.group, &b.version, &b.plural) == (&r.group, &r.version, &r.plural));
            Err(Box::new(if builtin {
                status(
                    400,
                    "BadRequest",
                    &format!(
                        "{kind} in version \"{}\" cannot be handled as a {}: the kind in the data \
                         does not match the resource",
                        r.version, r.kind
                    ),
                )
            } else {
                let name = body
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                status(
                    422,
                    "Invalid",
                    &format!(
                        "{kind}.{} \"{name}\" is invalid: kind: Invalid value: \"{kind}\": must be {}",
                        r.group, r.kind
                    ),
                )
            }))
        }
        _ => Ok(()),
    }
}

/// `GET` of one object (or its status: the whole object, as the API server answers).
pub(crate) fn get(shared: &Shared, t: &Target) -> Response<Body> {
    match shared
        .store
        .lock()
        .expect("lock")
        .get(&t.r, t.namespace(), t.object())
    {
        Ok(o) => reply(200, &o),
        Err(e) => error(&e),
    }
}

/// `GET` of a collection, in pages when `limit` is given: the continue token is the list's
/// version and the last key handed out.
pub(crate) fn list(shared: &Shared, t: &Target, q: &Query, sel: &Selectors) -> Response<Body> {
    let st = shared.store.lock().expect("lock");
    let all = st.list(&t.r, t.ns.as_deref(), sel);
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|&l| l > 0);
    let (rv, after) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => match c.split_once('|') {
            Some((rv, key)) => (rv.to_string(), Some(key.to_string())),
            None => return status(400, "BadRequest", "invalid continue token"),
        },
        None => (st.rv().to_string(), None),
    };
    drop(st);
    let key = |o: &Value| {
        format!(
            "{}/{}",
            field(o, "/metadata/namespace"),
            field(o, "/metadata/name")
        )
    };
    let mut items: Vec<Value> = all
        .into_iter()
        .filter(|o| after.as_ref().is_none_or(|a| key(o).as_str() > a.as_str()))
        .collect();
    let mut meta = json!({"resourceVersion": rv});
    if let Some(l) = limit {
        if items.len() > l {
            items.truncate(l);
            meta["continue"] = json!(format!("{rv}|{}", key(&items[l - 1])));
            meta["remainingItemCount"] = json!(0);
        }
    }
    reply(
        200,
        &json!({"kind": format!("{}List", t.r.kind), "apiVersion": t.r.api_version(),
                "metadata": meta, "items": items}),
    )
}

/// A string field of an object, "" when absent.
fn field<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `POST` to a collection: the namespace must be in the path, agree with the body's, and
/// exist.
pub(crate) fn create(shared: &Shared, t: &Target, body: Value) -> Response<Body> {
    if let Err(refused) = check_type(&t.r, &body) {
        return *refused;
    }
    let ns = t.namespace();
    if t.r.namespaced && t.ns.is_none() {
        return status(
            405,
            "MethodNotAllowed",
            "create needs a namespace in the path",
        );
    }
    if let Some(bns) = body.pointer("/metadata/namespace").and_then(Value::as_str) {
        if t.r.namespaced && bns != ns {
            return status(
                400,
                "BadRequest",
                "the namespace of the object does not match the namespace on the request",
            );
        }
    }
    let mut st = shared.store.lock().expect("lock");
    if t.r.namespaced && st.get(&namespaces(), "", ns).is_err() {
        return status(404, "NotFound", &format!("namespaces \"{ns}\" not found"));
    }
    match st.create(&t.r, ns, body) {
        Ok((o, e)) => {
            shared.events.send(e);
            reply(201, &o)
        }
        Err(e) => error(&e),
    }
}

/// `PUT`: replace the object (or its status).
pub(crate) fn update(
    shared: &Shared,
    t: &Target,
    q: &Query,
    body: Value,
    content_type: &str,
) -> Response<Body> {
    if let Err(refused) = check_type(&t.r, &body) {
        return *refused;
    }
    write(shared, t, q, body, content_type, false)
}

/// `PATCH`: a JSON merge, strategic merge or apply patch (of the object, or a merge patch of
/// its status); other patch types are 415.
pub(crate) fn patch(
    shared: &Shared,
    t: &Target,
    q: &Query,
    body: Value,
    content_type: &str,
) -> Response<Body> {
    match content_type {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" | APPLY_PATCH => {
        }
        other => {
            return status(
                415,
                "UnsupportedMediaType",
                &format!("the fake API does not support patches of type {other:?}"),
            )
        }
    }
    write(shared, t, q, body, content_type, true)
}

/// An update or patch; a body of the apply content type is applied ([`apply`]).
fn write(
    shared: &Shared,
    t: &Target,
    q: &Query,
    body: Value,
    content_type: &str,
    patch: bool,
) -> Response<Body> {
    if content_type == APPLY_PATCH && !t.status {
        return apply(shared, t, q, body);
    }
    let strategic = content_type == "application/strategic-merge-patch+json";
    let mut st = shared.store.lock().expect("lock");
    match st.update_as(
        &t.r,
        t.namespace(),
        t.object(),
        body,
        patch,
        t.status,
        strategic,
    ) {
        Ok((o, e)) => {
            shared.events.send(e);
            reply(200, &o)
        }
        Err(e) => error(&e),
    }
}

/// `PATCH` with `application/apply-patch+yaml`: checked as the API server checks it (a field
/// manager, the object's apiVersion, kind and name), then [`Store::apply`]; 201 when it
/// created the object, 200 otherwise (also for a no-op, which writes nothing).
fn apply(shared: &Shared, t: &Target, q: &Query, body: Value) -> Response<Body> {
    let (ns, name) = (t.namespace(), t.object());
    let Some(manager) = q.get("fieldManager").filter(|m| !m.is_empty()) else {
        return status(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        );
    };
    let force = q.get("force").map(String::as_str) == Some("true");
    let field = |p: &str| field(&body, p);
    if field("/apiVersion") != t.r.api_version() || field("/kind") != t.r.kind {
        return status(
            400,
            "BadRequest",
            &format!(
                "the apply patch is for {} {}, not {} {}",
                field("/apiVersion"),
                field("/kind"),
                t.r.api_version(),
                t.r.kind
            ),
        );
    }
    if !field("/metadata/name").is_empty() && field("/metadata/name") != name {
        return status(
            400,
            "BadRequest",
            &format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                field("/metadata/name")
            ),
        );
    }
    let mut st = shared.store.lock().expect("lock");
    if t.r.namespaced && st.get(&namespaces(), "", ns).is_err() {
        return status(404, "NotFound", &format!("namespaces \"{ns}\" not found"));
    }
    let mut config = body;
    config["metadata"]["name"] = json!(name);
    let existed = st.get(&t.r, ns, name).is_ok();
    match st.apply(&t.r, ns, name, &config, manager, force) {
        Ok((o, e)) => {
            if let Some(e) = e {
                shared.events.send(e);
            }
            reply(if existed { 200 } else { 201 }, &o)
        }
        Err(e) => error(&e),
    }
}

/// `DELETE` of one object: a pod as the API server deletes pods ([`Store::delete_pod`]: grace
/// from the query or the DeleteOptions, a UID precondition), a namespace with what is in it.
pub(crate) fn delete(shared: &Shared, t: &Target, q: &Query, body: &Value) -> Response<Body> {
    let (ns, name) = (t.namespace(), t.object());
    if t.r.is_core("pods") {
        return delete_pod(shared, t, q, body);
    }
    let mut st = shared.store.lock().expect("lock");
    match st.delete(&t.r, ns, name) {
        Ok((o, e)) => {
            shared.events.send(e);
            if t.r.is_core("namespaces") {
                cascade(shared, &mut st, name);
            }
            reply(200, &o)
        }
        Err(e) => error(&e),
    }
}

fn delete_pod(shared: &Shared, t: &Target, q: &Query, body: &Value) -> Response<Body> {
    let grace = q
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse::<i64>().ok())
        .or_else(|| body.get("gracePeriodSeconds").and_then(Value::as_i64));
    let uid = body.pointer("/preconditions/uid").and_then(Value::as_str);
    if grace == Some(0) {
        // In the request log as an audit log has it: a finished pod goes at once
        // whatever grace is asked, so only the request shows a kubelet's grace 0.
        *shared
            .calls
            .lock()
            .expect("lock")
            .entry("delete pods gracePeriodSeconds=0".into())
            .or_default() += 1;
    }
    let mut st = shared.store.lock().expect("lock");
    match st.delete_pod(&t.r, t.namespace(), t.object(), grace, uid) {
        Ok((o, e, _gone)) => {
            if let Some(e) = e {
                shared.events.send(e);
            }
            reply(200, &o)
        }
        Err(e) => error(&e),
    }
}

/// Deleting a namespace deletes what is in it (at once; a real server does it in the background).
fn cascade(shared: &Shared, st: &mut Store, ns: &str) {
    for r in shared.resources(|r| r.namespaced) {
        for (ons, name) in st.keys(&r) {
            if ons == ns {
                if let Ok((_, e)) = st.delete(&r, &ons, &name) {
                    shared.events.send(e);
                }
            }
        }
    }
}

/// `DELETE` of a collection: every object the selectors match; the list of them.
pub(crate) fn delete_collection(shared: &Shared, t: &Target, sel: &Selectors) -> Response<Body> {
    let mut st = shared.store.lock().expect("lock");
    let victims = st.list(&t.r, t.ns.as_deref(), sel);
    let mut items = Vec::new();
    for v in victims {
        let (vns, vname) = (
            field(&v, "/metadata/namespace"),
            field(&v, "/metadata/name"),
        );
        if let Ok((o, e)) = st.delete(&t.r, vns, vname) {
            shared.events.send(e);
            items.push(o);
        }
    }
    reply(
        200,
        &json!({"kind": format!("{}List", t.r.kind), "apiVersion": t.r.api_version(),
                "metadata": {"resourceVersion": st.rv().to_string()}, "items": items}),
    )
}
