//! The resource types the fake serves: what a path names (group, version, plural) and what
//! objects of it carry (apiVersion, kind), and the built-in ones every fake serves.

/// A registered resource type.
#[derive(Debug, Clone)]
pub struct Resource {
    /// API group ("" for the core group).
    pub group: String,
    /// Version, e.g. "v1".
    pub version: String,
    /// Plural name used in paths.
    pub plural: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
}

impl Resource {
    /// `apiVersion` as objects carry it.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// As the API server names it in error messages: `configmaps`,
    /// `leases.coordination.k8s.io` (its `GroupResource`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The key of its collection.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.group, self.version, self.plural)
    }

    /// Whether it is the core group's `plural` (`pods`, `namespaces`, ...).
    pub(crate) fn is_core(&self, plural: &str) -> bool {
        self.group.is_empty() && self.plural == plural
    }
}

/// A resource of the core group (`/api/v1`).
pub(crate) fn core(version: &str, plural: &str, kind: &str, namespaced: bool) -> Resource {
    Resource {
        group: String::new(),
        version: version.into(),
        plural: plural.into(),
        kind: kind.into(),
        namespaced,
    }
}

/// The built-in resources every fake serves.
pub fn builtins() -> Vec<Resource> {
    vec![
        core("v1", "namespaces", "Namespace", false),
        core("v1", "configmaps", "ConfigMap", true),
        core("v1", "secrets", "Secret", true),
        core("v1", "pods", "Pod", true),
        core("v1", "nodes", "Node", false),
        core("v1", "events", "Event", true),
        core("v1", "services", "Service", true),
        Resource {
            group: "discovery.k8s.io".into(),
            version: "v1".into(),
            plural: "endpointslices".into(),
            kind: "EndpointSlice".into(),
            namespaced: true,
        },
        core("v1", "serviceaccounts", "ServiceAccount", true),
        Resource {
            group: "apps".into(),
            version: "v1".into(),
            plural: "deployments".into(),
            kind: "Deployment".into(),
            namespaced: true,
        },
        Resource {
            group: "coordination.k8s.io".into(),
            version: "v1".into(),
            plural: "leases".into(),
            kind: "Lease".into(),
            namespaced: true,
        },
        // What runners as pods are made of (`k8s::runner`); stored, not acted on (a test
        // plays their controllers).
        group("apps", "statefulsets", "StatefulSet", true),
        group("batch", "jobs", "Job", true),
        group(
            "rbac.authorization.k8s.io",
            "clusterroles",
            "ClusterRole",
            false,
        ),
        group(
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
        ),
    ]
}

fn group(group: &str, plural: &str, kind: &str, namespaced: bool) -> Resource {
    Resource {
        group: group.into(),
        version: "v1".into(),
        plural: plural.into(),
        kind: kind.into(),
        namespaced,
    }
}

/// `namespaces`: what a namespaced create or apply needs to exist first.
pub(crate) fn namespaces() -> Resource {
    core("v1", "namespaces", "Namespace", false)
}
