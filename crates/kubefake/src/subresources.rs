//! The subresources that take a body of their own kind: `pods/NAME/binding` (a v1 Binding,
//! as the scheduler posts it) and `serviceaccounts/NAME/token` (a TokenRequest, as a kubelet
//! posts one for a pod's projected token volume). `status` is a flag on the ordinary verbs
//! (`verbs`); log and portforward are relayed (`podlog`,
//! `portforward`).

use crate::reply::{error, reply, status, Body};
use crate::resource::Resource;
use crate::route::Target;
use crate::state::Shared;
use crate::store::{rfc3339, unix_now};
use crate::verbs::check_type;
use hyper::Response;
use serde_json::{json, Value};

/// `POST pods/NAME/binding`: a Binding names its pod and the node; the pod's name in the path
/// wins only if they agree, as the API server checks. 201 with a Success `Status`.
pub(crate) fn bind(shared: &Shared, t: &Target, body: &Value) -> Response<Body> {
    let expected = Resource {
        kind: "Binding".into(),
        ..t.r.clone()
    };
    if let Err(refused) = check_type(&expected, body) {
        return *refused;
    }
    let name = t.object();
    let target = body.pointer("/target/name").and_then(Value::as_str);
    let kind_ok = body
        .get("kind")
        .and_then(Value::as_str)
        .is_none_or(|k| k == "Binding");
    let named = body.pointer("/metadata/name").and_then(Value::as_str);
    let Some(node) = target.filter(|n| !n.is_empty()) else {
        return status(400, "BadRequest", "Binding: target.name is required");
    };
    if !kind_ok || named.is_some_and(|n| n != name) {
        return status(400, "BadRequest", "expected a Binding for this pod");
    }
    let mut st = shared.store.lock().expect("lock");
    match st.bind(&t.r, t.namespace(), name, node) {
        Ok((_, e)) => {
            shared.events.send(e);
            reply(
                201,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success", "code": 201}),
            )
        }
        Err(e) => error(&e),
    }
}

/// `POST serviceaccounts/NAME/token`: a TokenRequest's answer in the shape of
/// kube-apiserver v1.28.7's (`authentication.k8s.io/v1` TokenRequest, 201: the request's spec
/// with the server's defaults, `status.token` and `status.expirationTimestamp`); 404 when the
/// service account does not exist, as the real server answers. The token is not a signed JWT
/// and the bound object is not checked.
pub(crate) fn token(shared: &Shared, t: &Target, body: Value) -> Response<Body> {
    let (ns, name) = (t.namespace(), t.object());
    if let Err(e) = shared.store.lock().expect("lock").get(&t.r, ns, name) {
        return error(&e);
    }
    if body
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k != "TokenRequest")
    {
        return status(400, "BadRequest", "expected a TokenRequest");
    }
    let mut spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let seconds = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    spec["expirationSeconds"] = json!(seconds);
    if spec
        .get("audiences")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty())
    {
        // The server's --api-audiences (its --service-account-issuer when unset).
        spec["audiences"] = json!(["https://kubernetes.default.svc.cluster.local"]);
    }
    let now = unix_now();
    let expires = rfc3339(now + seconds.max(0) as u64);
    let token = format!("kubefake.{ns}.{name}.{now}");
    reply(
        201,
        &json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": expires}}),
    )
}
