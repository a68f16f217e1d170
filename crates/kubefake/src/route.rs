//! What a request asks, parsed once from its method, path and query: a discovery document, a
//! connection the API server relays to the pod's node (log, port forward), or a verb on a
//! resource, with the resource, namespace, object and subresource it names. Unknown paths are
//! 404 and a method a path does not take is 405, worded as the API server words them.

use crate::reply::{status, Body};
use crate::resource::Resource;
use crate::state::Shared;
use hyper::{Method, Response};
use std::collections::BTreeMap;

/// A request's query parameters.
pub(crate) type Query = BTreeMap<String, String>;

/// A discovery document, or `/version`.
pub(crate) enum Doc {
    /// `/version`.
    Version,
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: every group.
    Groups,
    /// `/apis/GROUP`.
    Group(String),
    /// `/api/v1`, `/apis/GROUP/VERSION`: the resources of a group version.
    Resources { group: String, version: String },
}

/// Connections the API server relays to the pod's kubelet: served as the kubelet would,
/// outside the request log and the faults a test injects into calls.
pub(crate) enum Connect {
    /// `GET pods/NAME/log`.
    Log,
    /// `pods/NAME/portforward` (a WebSocket upgrade).
    PortForward,
}

/// A verb on a resource: counted in the request log, and where a test injects faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    List,
    Watch,
    Create,
    /// PUT.
    Update,
    /// PATCH: merge, strategic merge or apply, by the body's content type.
    Patch,
    Delete,
    DeleteCollection,
    /// `POST pods/NAME/binding`.
    Bind,
    /// `POST serviceaccounts/NAME/token` (a TokenRequest).
    Token,
}

impl Verb {
    /// As RBAC and the request log name it (a binding or token request is a create).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create | Verb::Bind | Verb::Token => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }

    /// Whether it writes (what API Priority and Fairness' 429s, injected, refuse).
    pub(crate) fn mutates(self) -> bool {
        !matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }

    /// Whether its request body is read (DeleteOptions for a delete).
    pub(crate) fn reads_body(self) -> bool {
        self.mutates() && self != Verb::DeleteCollection
    }
}

/// Where a request goes.
pub(crate) struct Target {
    pub(crate) r: Resource,
    pub(crate) ns: Option<String>,
    pub(crate) name: Option<String>,
    /// The `status` subresource.
    pub(crate) status: bool,
}

impl Target {
    /// The namespace, "" for a cluster-scoped path.
    pub(crate) fn namespace(&self) -> &str {
        self.ns.as_deref().unwrap_or("")
    }

    /// The object's name, "" for a collection.
    pub(crate) fn object(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// The subresource as RBAC and the request log name it: "/status", "/binding", "/token"
    /// or "".
    pub(crate) fn sub(&self, verb: Verb) -> &'static str {
        match verb {
            Verb::Bind => "/binding",
            Verb::Token => "/token",
            _ if self.status => "/status",
            _ => "",
        }
    }
}

/// A request, parsed.
pub(crate) enum Route {
    Discovery(Doc),
    /// `GET /metrics`.
    Metrics,
    Connect(Connect, Target),
    Call(Verb, Target),
}

/// What follows an object's name in a path.
#[derive(PartialEq)]
enum Sub {
    None,
    Status,
    Binding,
    Log,
    PortForward,
    Token,
}

fn not_found() -> Box<Response<Body>> {
    Box::new(status(
        404,
        "NotFound",
        "the server could not find the requested resource",
    ))
}

/// A method the path's storage does not serve: apimachinery's NewGenericServerResponse for
/// 405 (its words, reason MethodNotAllowed; go-restful routes only the verbs a storage has).
fn method_not_allowed() -> Box<Response<Body>> {
    Box::new(status(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    ))
}

/// Parse a request; the Err side is the 404 or 405 to answer.
pub(crate) fn parse(
    shared: &Shared,
    method: &Method,
    path: &str,
    q: &Query,
) -> Result<Route, Box<Response<Body>>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let doc = |d: Doc| Ok(Route::Discovery(d));
    let resources = |g: &str, v: &str| {
        doc(Doc::Resources {
            group: g.to_string(),
            version: v.to_string(),
        })
    };
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return doc(Doc::Version),
        ["metrics"] if method == Method::GET => return Ok(Route::Metrics),
        ["api"] => return doc(Doc::CoreVersions),
        ["apis"] => return doc(Doc::Groups),
        ["apis", g] => return doc(Doc::Group(g.to_string())),
        ["api", "v1"] => return resources("", "v1"),
        ["apis", g, v] => return resources(g, v),
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found()),
    };
    let find = |plural: &str| {
        shared.resource(|r| r.group == group && r.version == version && r.plural == plural)
    };
    let (r, ns, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !ns.is_empty() => match find(plural) {
            Some(r) if r.namespaced => (r, Some(ns.to_string()), tail),
            _ => return Err(not_found()),
        },
        [plural, tail @ ..] => match find(plural) {
            Some(r) if !r.namespaced || tail.is_empty() => (r, None, tail),
            _ => return Err(not_found()),
        },
        [] => return Err(not_found()),
    };
    let pod = r.is_core("pods");
    let sa = r.is_core("serviceaccounts");
    let (name, sub) = match tail {
        [] => (None, Sub::None),
        [name] => (Some(name), Sub::None),
        [name, "status"] => (Some(name), Sub::Status),
        [name, "binding"] if pod => (Some(name), Sub::Binding),
        [name, "log"] if pod => (Some(name), Sub::Log),
        [name, "portforward"] if pod => (Some(name), Sub::PortForward),
        [name, "token"] if sa => (Some(name), Sub::Token),
        _ => return Err(not_found()),
    };
    if name.is_some_and(|n| n.is_empty()) {
        return Err(not_found());
    }
    let t = Target {
        r,
        ns,
        name: name.map(|n| n.to_string()),
        status: sub == Sub::Status,
    };
    let named = t.name.is_some();
    let watch = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (sub, method, named) {
        (Sub::Log, &Method::GET, _) => return Ok(Route::Connect(Connect::Log, t)),
        (Sub::PortForward, _, _) => return Ok(Route::Connect(Connect::PortForward, t)),
        (Sub::Binding, &Method::POST, _) => Verb::Bind,
        (Sub::Token, &Method::POST, _) => Verb::Token,
        (Sub::Log | Sub::Binding | Sub::Token, _, _) => return Err(method_not_allowed()),
        // A status subresource's storage gets, updates and patches; nothing else (v1.28).
        (Sub::Status, m, _) if m != Method::GET && m != Method::PUT && m != Method::PATCH => {
            return Err(method_not_allowed())
        }
        (_, &Method::GET, true) => Verb::Get,
        (_, &Method::GET, false) if watch => Verb::Watch,
        (_, &Method::GET, false) => Verb::List,
        (_, &Method::POST, false) => Verb::Create,
        (_, &Method::PUT, true) => Verb::Update,
        (_, &Method::PATCH, true) => Verb::Patch,
        (_, &Method::DELETE, true) => Verb::Delete,
        (_, &Method::DELETE, false) => Verb::DeleteCollection,
        _ => return Err(method_not_allowed()),
    };
    Ok(Route::Call(verb, t))
}
