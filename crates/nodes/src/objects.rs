//! The objects a kubelet writes, as JSON: its Node (capacity, allocatable, conditions,
//! addresses, node info, labels, taints), its Lease, the node-status heartbeat patch, and its
//! pods' status patches (strategic merge patches on `nodes/status` and `pods/status`).

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The label on every hollow node: how `--cleanup` and a later run tell ours from others.
pub const LABEL_HOLLOW: &str = "scaletest.dev/hollow";
/// Namespace of node leases.
pub const LEASE_NS: &str = "kube-node-lease";

/// What every hollow node reports about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// CPU capacity (a quantity: `8`, `3500m`).
    pub cpu: String,
    /// Memory capacity (`32Gi`).
    pub memory: String,
    /// Pod capacity (the kubelet's `maxPods`, 110 by default).
    pub pods: u32,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Taints, `key[=value]:Effect`.
    pub taints: Vec<Taint>,
}

impl Default for Shape {
    fn default() -> Shape {
        Shape {
            cpu: "8".into(),
            memory: "32Gi".into(),
            pods: 110,
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value (may be empty).
    pub value: String,
    /// NoSchedule, PreferNoSchedule or NoExecute.
    pub effect: String,
}

impl std::str::FromStr for Taint {
    type Err = String;
    /// `key[=value]:Effect`, as `kubectl taint` writes it.
    fn from_str(s: &str) -> Result<Taint, String> {
        let (kv, effect) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("taint {s:?}: use key[=value]:Effect"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(format!(
                "taint {s:?}: the effect must be NoSchedule, PreferNoSchedule or NoExecute"
            ));
        }
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        if key.is_empty() {
            return Err(format!("taint {s:?}: empty key"));
        }
        Ok(Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        })
    }
}

/// Wall-clock seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A `metav1.Time` (whole seconds).
pub fn time(unix: f64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(unix as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A `metav1.MicroTime` (as a Lease's renewTime).
pub fn micro_time(unix: f64) -> String {
    k8s_openapi::jiff::Timestamp::from_microsecond((unix * 1e6) as i64)
        .map(|t| format!("{t:.6}"))
        .unwrap_or_default()
}

/// Parse an RFC 3339 time into Unix seconds.
pub fn parse_time(s: &str) -> Option<f64> {
    s.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_nanosecond() as f64 / 1e9)
}

/// Node `idx`'s own address when the nodes have no kubelet endpoint: 100.64.0.0/10 (shared
/// address space, never routed here). Pods' host IPs stay these in every case (see
/// [`Endpoint`]).
pub fn node_ip(idx: usize) -> String {
    let i = idx as u32;
    format!(
        "100.{}.{}.{}",
        64 + ((i >> 16) & 63),
        (i >> 8) & 255,
        i & 255
    )
}

/// Node `idx`'s pod CIDR, a /24 of 10.0.0.0/8.
pub fn pod_cidr(idx: usize) -> String {
    let i = idx as u32;
    format!("10.{}.{}.0/24", (i >> 8) & 255, i & 255)
}

/// The `n`-th pod IP of node `idx` (254 addresses, reused in turn).
pub fn pod_ip(idx: usize, n: u32) -> String {
    let i = idx as u32;
    format!("10.{}.{}.{}", (i >> 8) & 255, i & 255, 1 + n % 254)
}

fn conditions(now: &str, since: &str) -> Value {
    let c = |t: &str, status: &str, reason: &str, message: &str| {
        json!({"type": t, "status": status, "lastHeartbeatTime": now,
               "lastTransitionTime": since, "reason": reason, "message": message})
    };
    json!([
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

/// Where the API server reaches every hollow kubelet of the process: one HTTPS listener
/// (`crate::endpoint`), advertised as each Node's InternalIP and Hostname address and its
/// `daemonEndpoints.kubeletEndpoint.Port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `--node-ip`.
    pub ip: std::net::IpAddr,
    /// The listener's port.
    pub port: u16,
}

/// The Node a hollow kubelet registers (status included, as a kubelet's registration is).
/// With an `endpoint`, its addresses are the endpoint's IP: the InternalIP, and the Hostname
/// address too (kube-apiserver dials the Hostname address first with its default
/// `--kubelet-preferred-address-types`, and a hollow node's name resolves nowhere); without,
/// 100.64.0.0/10 and port 10250, where nothing answers.
pub fn node(
    name: &str,
    idx: usize,
    shape: &Shape,
    started: f64,
    endpoint: Option<&Endpoint>,
    kubelet_version: &str,
) -> Value {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), "amd64".into()),
        ("beta.kubernetes.io/os".into(), "linux".into()),
        ("beta.kubernetes.io/arch".into(), "amd64".into()),
        (LABEL_HOLLOW.into(), "true".into()),
    ]);
    labels.extend(shape.labels.clone());
    let taints: Vec<Value> = shape
        .taints
        .iter()
        .map(|t| {
            let mut v = json!({"key": t.key, "effect": t.effect});
            if !t.value.is_empty() {
                v["value"] = json!(t.value);
            }
            v
        })
        .collect();
    let resources = json!({"cpu": shape.cpu, "memory": shape.memory,
        "pods": shape.pods.to_string(), "ephemeral-storage": "100Gi",
        "hugepages-1Gi": "0", "hugepages-2Mi": "0"});
    let now = time(started);
    let mut spec = json!({"podCIDR": pod_cidr(idx), "podCIDRs": [pod_cidr(idx)]});
    if !taints.is_empty() {
        spec["taints"] = json!(taints);
    }
    let (addresses, port) = match endpoint {
        Some(e) => (
            json!([{"type": "InternalIP", "address": e.ip.to_string()},
                   {"type": "Hostname", "address": e.ip.to_string()}]),
            e.port,
        ),
        None => (
            json!([{"type": "InternalIP", "address": node_ip(idx)},
                   {"type": "Hostname", "address": name}]),
            10250,
        ),
    };
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": spec,
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": conditions(&now, &now),
            "addresses": addresses,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {"machineID": format!("{idx:032x}"), "systemUUID": format!("hollow-{idx}"),
                "bootID": format!("hollow-boot-{idx}"), "kernelVersion": "6.1.0-hollow",
                "osImage": "scaletest hollow node", "containerRuntimeVersion": "fake://1.0.0",
                "kubeletVersion": kubelet_version, "kubeProxyVersion": kubelet_version,
                "operatingSystem": "linux", "architecture": "amd64"},
        }
    })
}

/// The heartbeat a kubelet's node-status loop patches: every condition's lastHeartbeatTime
/// (what the kubelet's two-way strategic merge patch of old and new status comes to when
/// nothing else changed).
pub fn node_status_patch(now: f64) -> Value {
    let now = time(now);
    let types = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"];
    let order: Vec<Value> = types.iter().map(|t| json!({"type": t})).collect();
    let conds: Vec<Value> = types
        .iter()
        .map(|t| json!({"type": t, "lastHeartbeatTime": now}))
        .collect();
    json!({"status": {"$setElementOrder/conditions": order, "conditions": conds}})
}

/// A node's Lease in `kube-node-lease`, owned by the Node.
pub fn lease(name: &str, node_uid: &str, duration: Duration, now: f64) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": LEASE_NS,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}]},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": duration.as_secs().max(1),
                 "renewTime": micro_time(now)}
    })
}

/// How far a pod has got on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    /// Admitted; containers being created.
    Pending,
    /// Containers running and ready.
    Running,
    /// A Job's pod that finished.
    Succeeded,
    /// Deleted: containers killed, the phase not yet final (kubelet 1.28's first status
    /// patch of a deletion).
    Terminating,
    /// Stopped on deletion.
    Killed,
}

/// The container names and images of a pod spec.
pub fn containers(pod: &Value) -> Vec<(String, String)> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (s("name"), s("image"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The status patch of a pod reaching `phase` (the kubelet's status manager patches
/// `pods/status` with a strategic merge patch of what changed).
pub fn pod_status(
    phase: PodPhase,
    uid: &str,
    cs: &[(String, String)],
    host_ip: &str,
    pod_ip: &str,
    started: f64,
    now: f64,
) -> Value {
    let (t, t0) = (time(now), time(started));
    let cond = |ty: &str, ok: bool, reason: Option<&str>| {
        let mut c = json!({"type": ty, "status": if ok { "True" } else { "False" },
                           "lastProbeTime": null, "lastTransitionTime": t});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        c
    };
    let (phase_s, running, ready, reason) = match phase {
        PodPhase::Pending => ("Pending", false, false, Some("ContainersNotReady")),
        PodPhase::Running => ("Running", true, true, None),
        PodPhase::Succeeded => ("Succeeded", false, false, Some("PodCompleted")),
        PodPhase::Terminating => ("Running", false, false, Some("ContainersNotReady")),
        PodPhase::Killed => ("Failed", false, false, Some("PodCompleted")),
    };
    let statuses: Vec<Value> = cs
        .iter()
        .map(|(name, image)| {
            let state = match phase {
                PodPhase::Pending => json!({"waiting": {"reason": "ContainerCreating"}}),
                PodPhase::Running => json!({"running": {"startedAt": t}}),
                PodPhase::Succeeded => json!({"terminated": {"exitCode": 0, "reason": "Completed",
                                              "startedAt": t0, "finishedAt": t}}),
                PodPhase::Killed | PodPhase::Terminating => {
                    json!({"terminated": {"exitCode": 137, "reason": "Error",
                                            "startedAt": t0, "finishedAt": t}})
                }
            };
            let mut s = json!({"name": name, "image": image, "imageID": "",
                "ready": ready, "started": running, "restartCount": 0, "state": state});
            if phase != PodPhase::Pending {
                s["containerID"] = json!(format!("fake://{uid}-{name}"));
                s["imageID"] = json!(format!("fake://{image}"));
            }
            s
        })
        .collect();
    let conds = json!([
        cond(
            "PodReadyToStartContainers",
            phase != PodPhase::Pending,
            None
        ),
        cond("Initialized", true, None),
        cond("Ready", ready, reason),
        cond("ContainersReady", ready, reason),
    ]);
    let order: Vec<Value> = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    .iter()
    .map(|t| json!({"type": t}))
    .collect();
    let mut status = json!({"$setElementOrder/conditions": order, "phase": phase_s,
        "conditions": conds, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "startTime": t0, "containerStatuses": statuses});
    if phase == PodPhase::Running {
        status["podIP"] = json!(pod_ip);
        status["podIPs"] = json!([{"ip": pod_ip}]);
    }
    json!({"metadata": {"uid": uid}, "status": status})
}

/// A Secret or ConfigMap a kubelet fetches for a pod: (`secrets` or `configmaps`, name), in
/// the pod's namespace.
pub type ObjectRef = (&'static str, String);

/// What a pod makes its kubelet fetch before its containers start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRefs {
    /// The pod's service account (`default` when unnamed).
    pub service_account: String,
    /// Service-account token requests (`create serviceaccounts/token`): one per projected
    /// `serviceAccountToken` source; one for the default `kube-api-access-*` volume, which the
    /// API server's ServiceAccount admission adds unless `automountServiceAccountToken` is false
    /// (counted here when the pod does not carry it, as a pod created against kubefake, which
    /// runs no admission, does not).
    pub tokens: Vec<TokenSource>,
    /// Secrets and ConfigMaps it names, each once: volumes, projected sources, `env` and
    /// `envFrom` of every container, image pull secrets (`podutil.VisitPodSecretNames` /
    /// `VisitPodConfigmapNames`), and `kube-root-ca.crt` of the default volume.
    pub objects: Vec<ObjectRef>,
}

/// A projected service-account token the kubelet requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSource {
    /// `audience` (empty: the API server's).
    pub audience: String,
    /// `expirationSeconds` (the default volume's: 3607).
    pub expiration_seconds: i64,
}

/// The root CA ConfigMap of every namespace, part of the default service-account volume.
pub const ROOT_CA: &str = "kube-root-ca.crt";

/// What `p` makes its kubelet fetch (see [`PodRefs`]).
pub fn pod_refs(p: &k8s_openapi::api::core::v1::Pod) -> PodRefs {
    use std::collections::BTreeSet;
    let Some(spec) = p.spec.as_ref() else {
        return PodRefs::default();
    };
    let mut objects: BTreeSet<ObjectRef> = BTreeSet::new();
    let mut tokens = Vec::new();
    let mut add = |kind: &'static str, name: Option<&String>| {
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            objects.insert((kind, n.clone()));
        }
    };
    for v in spec.volumes.iter().flatten() {
        if let Some(s) = &v.secret {
            add("secrets", s.secret_name.as_ref());
        }
        if let Some(c) = &v.config_map {
            add("configmaps", Some(&c.name));
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &src.secret {
                add("secrets", Some(&s.name));
            }
            if let Some(c) = &src.config_map {
                add("configmaps", Some(&c.name));
            }
            if let Some(t) = &src.service_account_token {
                tokens.push(TokenSource {
                    audience: t.audience.clone().unwrap_or_default(),
                    expiration_seconds: t.expiration_seconds.unwrap_or(3600),
                });
            }
        }
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        for e in c.env_from.iter().flatten() {
            add("configmaps", e.config_map_ref.as_ref().map(|r| &r.name));
            add("secrets", e.secret_ref.as_ref().map(|r| &r.name));
        }
        for e in c.env.iter().flatten() {
            let from = e.value_from.as_ref();
            add(
                "configmaps",
                from.and_then(|f| f.config_map_key_ref.as_ref())
                    .map(|r| &r.name),
            );
            add(
                "secrets",
                from.and_then(|f| f.secret_key_ref.as_ref())
                    .map(|r| &r.name),
            );
        }
    }
    for s in spec.image_pull_secrets.iter().flatten() {
        add("secrets", Some(&s.name));
    }
    let has_token_volume = !tokens.is_empty();
    if !has_token_volume && spec.automount_service_account_token != Some(false) {
        // The volume admission adds: a token (3607 s), kube-root-ca.crt, the namespace.
        tokens.push(TokenSource {
            audience: String::new(),
            expiration_seconds: 3607,
        });
        objects.insert(("configmaps", ROOT_CA.to_string()));
    }
    PodRefs {
        service_account: spec
            .service_account_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into()),
        tokens,
        objects: objects.into_iter().collect(),
    }
}

/// The TokenRequest a kubelet's token manager sends for a pod's projected token, bound to
/// the pod.
pub fn token_request(t: &TokenSource, pod: &str, uid: &str) -> Value {
    let mut spec = json!({"expirationSeconds": t.expiration_seconds,
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod, "uid": uid}});
    if !t.audience.is_empty() {
        spec["audiences"] = json!([t.audience]);
    }
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
           "metadata": {"creationTimestamp": null}, "spec": spec})
}

/// The status a kubelet's admission gives a pod that does not fit: Failed, `OutOfpods`.
pub fn pod_rejected(uid: &str, used: u32, capacity: u32) -> Value {
    json!({"metadata": {"uid": uid}, "status": {"phase": "Failed", "reason": "OutOfpods",
        "message": format!("Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: {used}, capacity: {capacity}")}})
}

/// A core/v1 Event as a kubelet's event recorder posts it.
pub fn event(
    ns: &str,
    involved: Value,
    reason: &str,
    message: &str,
    warning: bool,
    host: &str,
    now: f64,
) -> Value {
    let name = format!(
        "{}.{:x}",
        involved.get("name").and_then(Value::as_str).unwrap_or("x"),
        (now * 1e9) as u64 ^ rand::random::<u32>() as u64
    );
    let t = time(now);
    json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": involved, "reason": reason, "message": message,
        "source": {"component": "kubelet", "host": host},
        "firstTimestamp": t, "lastTimestamp": t, "count": 1,
        "type": if warning { "Warning" } else { "Normal" },
        "reportingComponent": "kubelet", "reportingInstance": host})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_and_parse_back() {
        assert_eq!(time(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(micro_time(1.25), "1970-01-01T00:00:01.250000Z");
        assert_eq!(parse_time("1970-01-01T00:00:02.5Z"), Some(2.5));
    }

    #[test]
    fn taints_parse_as_kubectl_writes_them() {
        let t: Taint = "scaletest.dev/hollow=true:NoSchedule".parse().unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_str(), t.effect.as_str()),
            ("scaletest.dev/hollow", "true", "NoSchedule")
        );
        assert!("k:Sometimes".parse::<Taint>().is_err());
        assert!("novalue".parse::<Taint>().is_err());
    }

    #[test]
    fn a_pods_refs_are_what_the_kubelet_fetches_for_it() {
        let p =
            |v: Value| -> k8s_openapi::api::core::v1::Pod { serde_json::from_value(v).unwrap() };
        // No volume, automount not false: the default volume admission would add.
        let r = pod_refs(&p(json!({"spec": {"containers": [{"name": "c"}]}})));
        assert_eq!(r.service_account, "default");
        assert_eq!(r.tokens.len(), 1);
        assert_eq!(r.objects, [("configmaps", ROOT_CA.to_string())]);
        let r = pod_refs(&p(json!({"spec": {"automountServiceAccountToken": false,
            "containers": [{"name": "c"}]}})));
        assert!(r.tokens.is_empty() && r.objects.is_empty());
        // The volume as admission writes it, plus a mounted secret, env and envFrom refs.
        let r = pod_refs(&p(json!({"spec": {"serviceAccountName": "sa",
            "volumes": [
                {"name": "kube-api-access-x", "projected": {"sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt"}},
                    {"downwardAPI": {}}]}},
                {"name": "s", "secret": {"secretName": "db"}}],
            "imagePullSecrets": [{"name": "pull"}],
            "containers": [{"name": "c",
                "envFrom": [{"configMapRef": {"name": "env"}}],
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}}]}]}})));
        assert_eq!(r.service_account, "sa");
        assert_eq!(
            r.tokens,
            [TokenSource {
                audience: String::new(),
                expiration_seconds: 3607
            }]
        );
        let names: Vec<String> = r.objects.iter().map(|(k, n)| format!("{k}/{n}")).collect();
        assert_eq!(
            names,
            [
                "configmaps/env",
                "configmaps/kube-root-ca.crt",
                "secrets/db",
                "secrets/pull"
            ]
        );
    }

    #[test]
    fn addresses_are_distinct_per_node() {
        assert_eq!(node_ip(0), "100.64.0.0");
        assert_eq!(node_ip(65_537), "100.65.0.1");
        assert_eq!(pod_cidr(257), "10.1.1.0/24");
        assert_eq!(pod_ip(257, 0), "10.1.1.1");
    }
}
