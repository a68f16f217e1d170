//! Control-plane runners as pods, as seed 004 runs its drivers and Kubemark its hollow nodes:
//! `api churn|watch|run` as a Job of N pods, hollow nodes as a StatefulSet of shards, each
//! with a ServiceAccount bound to a ClusterRole of exactly the verbs its command uses
//! ([`Rules`]). Pure: typed k8s-openapi objects, rendered as YAML or applied by the caller.
//!
//! Hollow nodes register in the cluster the pods run in (the ServiceAccount's), or in the
//! one a kubeconfig Secret names (`kubeconfig_secret`, Kubemark's layout: the pods in one
//! cluster, the nodes in another); each pod is one shard, its nodes named after the pod
//! (`PREFIX-ORDINAL-i`), sized from `bench/nodes.sh`'s figures ([`shard_resources`]).

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, Namespace,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, ResourceRequirements, SecretVolumeSource,
    SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::{BTreeMap, BTreeSet};

/// The runner pods' ServiceAccount.
pub const RUNNER_ACCOUNT: &str = "scaletest-runner";
/// Where a workload file (`api run`) is mounted.
pub const WORKLOAD_DIR: &str = "/etc/scaletest/workload";
/// Where a kubeconfig Secret is mounted (its key `kubeconfig`).
pub const KUBECONFIG_DIR: &str = "/etc/scaletest/kubeconfig";

/// Resources and the verbs a command uses on them: (API group, resource) → verbs; and
/// non-resource URLs it reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// By (group, resource).
    pub resources: BTreeMap<(String, String), BTreeSet<&'static str>>,
    /// Non-resource URLs read with GET (`/metrics`).
    pub urls: BTreeSet<&'static str>,
}

impl Rules {
    /// Add verbs on a resource of a group ("" for the core group).
    pub fn allow(&mut self, group: &str, resource: &str, verbs: &[&'static str]) -> &mut Rules {
        self.resources
            .entry((group.to_string(), resource.to_string()))
            .or_default()
            .extend(verbs);
        self
    }

    /// What every control-plane command reads: the server's `/metrics` (for its own view).
    pub fn scraping() -> Rules {
        let mut r = Rules::default();
        r.urls.insert("/metrics");
        r
    }

    /// `api churn` on `(group, resource)`: lifecycles (create, patch, delete), `--watch`'s
    /// informer (list, watch), `--namespaces` (create and delete namespaces).
    pub fn churn(group: &str, resource: &str, watch: bool, namespaces: bool) -> Rules {
        let mut r = Rules::scraping();
        r.allow(group, resource, &["create", "patch", "delete"]);
        if watch {
            r.allow(group, resource, &["list", "watch"]);
        }
        if namespaces {
            r.allow("", "namespaces", &["create", "delete"]);
        }
        r
    }

    /// `api watch` (an informer or watch loops) on `(group, resource)`.
    pub fn watch(group: &str, resource: &str) -> Rules {
        let mut r = Rules::scraping();
        r.allow(group, resource, &["list", "watch"]);
        r
    }

    /// `api run` making objects of `kinds` (group, resource): create, list (waits), delete
    /// (delete jobs, cleanup); its namespaces (`cleanup` lists them by label); its pods'
    /// informer.
    pub fn run(kinds: &[(String, String)], cleanup: bool) -> Rules {
        let mut r = Rules::scraping();
        for (g, res) in kinds {
            r.allow(g, res, &["create", "list", "delete"]);
        }
        r.allow("", "namespaces", &["create", "delete", "get"]);
        if cleanup {
            r.allow("", "namespaces", &["list"]);
        }
        r.allow("", "pods", &["list", "watch"]);
        r
    }

    /// Hollow nodes: what a kubelet and a kube-proxy of v1.28 call (`nodes`' traffic).
    pub fn nodes() -> Rules {
        let mut r = Rules::scraping();
        r.allow("", "nodes", &["create", "get", "list", "watch", "delete"])
            .allow("", "nodes/status", &["patch"])
            .allow("", "pods", &["get", "list", "watch", "delete"])
            .allow("", "pods/status", &["patch"])
            .allow("", "events", &["create"])
            .allow("", "serviceaccounts/token", &["create"])
            .allow("", "services", &["list", "watch"])
            .allow("", "configmaps", &["list", "watch"])
            .allow(
                "coordination.k8s.io",
                "leases",
                &["create", "get", "update", "delete"],
            )
            .allow("discovery.k8s.io", "endpointslices", &["list", "watch"]);
        r
    }

    /// As RBAC policy rules: one per (group, resource), verbs sorted.
    pub fn policy(&self) -> Vec<PolicyRule> {
        let mut out: Vec<PolicyRule> = self
            .resources
            .iter()
            .map(|((g, res), verbs)| PolicyRule {
                api_groups: Some(vec![g.clone()]),
                resources: Some(vec![res.clone()]),
                verbs: verbs.iter().map(|v| v.to_string()).collect(),
                ..PolicyRule::default()
            })
            .collect();
        if !self.urls.is_empty() {
            out.push(PolicyRule {
                non_resource_urls: Some(self.urls.iter().map(|u| u.to_string()).collect()),
                verbs: vec!["get".into()],
                ..PolicyRule::default()
            });
        }
        out
    }
}

/// What runs in the pods.
#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// `scaletest api ARGS` in `pods` pods at once (a Job), each writing its run as JSON to
    /// stdout; `workload`: an `api run` file's (name, text), mounted for it.
    Api {
        /// The arguments after `api` (`churn --rate 100 -d 5m`).
        args: Vec<String>,
        /// Pods.
        pods: i32,
        /// An `api run` workload file to mount: (file name, text).
        workload: Option<(String, String)>,
    },
    /// `scaletest nodes` shards: `nodes` hollow nodes in pods of `per_pod` (the last may
    /// hold fewer), a StatefulSet.
    Nodes {
        /// Hollow nodes in all.
        nodes: u64,
        /// Per pod.
        per_pod: u64,
        /// Node names start with it, then the pod's ordinal: `PREFIX-3-17`.
        prefix: String,
        /// More `nodes` arguments.
        args: Vec<String>,
    },
}

/// A runner deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Runner {
    /// The run's id (label and names).
    pub run: String,
    /// Its namespace.
    pub namespace: String,
    /// The image holding the scaletest binary.
    pub image: String,
    /// imagePullPolicy.
    pub pull_policy: String,
    /// What runs.
    pub what: What,
    /// The verbs it needs.
    pub rules: Rules,
    /// A Secret in the namespace whose key `kubeconfig` names the cluster to load (else the
    /// pods' own, through the ServiceAccount).
    pub kubeconfig_secret: Option<String>,
}

/// Whether `name` is a Node of the shards named `prefix`: `PREFIX-ORDINAL-I`, both numbers.
pub fn shard_node(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.split_once('-'))
        .is_some_and(|(o, i)| {
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            digits(o) && digits(i)
        })
}

/// Pods a hollow-node run takes.
pub fn shards(nodes: u64, per_pod: u64) -> u64 {
    nodes.div_ceil(per_pod.max(1))
}

/// CPU (millicores) and memory (MiB) a shard of `nodes` hollow nodes requests: BENCHMARKS.md
/// (2026-12-06, 5,000 nodes in one process: 0.135–0.137 cores, 246–252 MiB, ~52 KiB a node),
/// doubled for bursts (registration, relists), at least 100m and 64 MiB.
pub fn shard_resources(nodes: u64) -> (u64, u64) {
    let cpu_m = (nodes as f64 * 0.137 / 5_000.0 * 1_000.0 * 2.0).ceil() as u64;
    let mem_mi = ((nodes as f64 * 52.0 / 1024.0 + 16.0) * 2.0).ceil() as u64;
    (cpu_m.max(100), mem_mi.max(64))
}

fn labels(run: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "scaletest".into()),
        ("app.kubernetes.io/managed-by".into(), "scaletest".into()),
        (crate::manifest::LABEL_COMPONENT.into(), component.into()),
        (kapi::LABEL_RUN.into(), run.into()),
    ])
}

impl Runner {
    fn component(&self) -> &'static str {
        match self.what {
            What::Api { .. } => "api-runner",
            What::Nodes { .. } => "hollow-nodes",
        }
    }

    fn meta(&self, name: &str, namespaced: bool) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: namespaced.then(|| self.namespace.clone()),
            labels: Some(labels(&self.run, self.component())),
            ..ObjectMeta::default()
        }
    }

    /// The ClusterRole's (and its binding's) name: cluster-wide, so the run's in it.
    pub fn role_name(&self) -> String {
        format!("scaletest-{}-{}", self.run, self.component())
    }

    /// Every object, in apply order, as JSON.
    pub fn objects(&self) -> Vec<serde_json::Value> {
        let role = self.role_name();
        let mut v = vec![
            json(&Namespace {
                metadata: self.meta(&self.namespace, false),
                ..Namespace::default()
            }),
            json(&ServiceAccount {
                metadata: self.meta(RUNNER_ACCOUNT, true),
                ..ServiceAccount::default()
            }),
            json(&ClusterRole {
                metadata: self.meta(&role, false),
                rules: Some(self.rules.policy()),
                ..ClusterRole::default()
            }),
            json(&ClusterRoleBinding {
                metadata: self.meta(&role, false),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: role.clone(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: RUNNER_ACCOUNT.into(),
                    namespace: Some(self.namespace.clone()),
                    ..Subject::default()
                }]),
            }),
        ];
        match &self.what {
            What::Api {
                args,
                pods,
                workload,
            } => {
                if let Some((name, text)) = workload {
                    v.push(json(&ConfigMap {
                        metadata: self.meta("scaletest-workload", true),
                        data: Some(BTreeMap::from([(name.clone(), text.clone())])),
                        ..ConfigMap::default()
                    }));
                }
                v.push(json(&self.job(args, *pods, workload.as_ref())));
            }
            What::Nodes {
                nodes,
                per_pod,
                prefix,
                args,
            } => v.push(json(&self.stateful_set(*nodes, *per_pod, prefix, args))),
        }
        v
    }

    fn container(&self, args: Vec<String>, cpu_m: u64, mem_mi: u64) -> Container {
        let q = BTreeMap::from([
            ("cpu".to_string(), Quantity(format!("{cpu_m}m"))),
            ("memory".to_string(), Quantity(format!("{mem_mi}Mi"))),
        ]);
        let mut c = Container {
            name: "scaletest".into(),
            image: Some(self.image.clone()),
            image_pull_policy: Some(self.pull_policy.clone()),
            args: Some(args),
            resources: Some(ResourceRequirements {
                requests: Some(q.clone()),
                limits: Some(q),
                ..ResourceRequirements::default()
            }),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Capabilities::default()
                }),
                ..SecurityContext::default()
            }),
            ..Container::default()
        };
        if self.kubeconfig_secret.is_some() {
            c.volume_mounts = Some(vec![VolumeMount {
                name: "kubeconfig".into(),
                mount_path: KUBECONFIG_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            }]);
        }
        c
    }

    fn pod(&self, container: Container, mut volumes: Vec<Volume>, restart: &str) -> PodSpec {
        if let Some(s) = &self.kubeconfig_secret {
            volumes.push(Volume {
                name: "kubeconfig".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(s.clone()),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            });
        }
        PodSpec {
            service_account_name: Some(RUNNER_ACCOUNT.into()),
            restart_policy: Some(restart.into()),
            containers: vec![container],
            volumes: (!volumes.is_empty()).then_some(volumes),
            ..PodSpec::default()
        }
    }

    /// The arguments naming the cluster to load: the mounted kubeconfig, or none (in-cluster).
    fn kubeconfig_args(&self) -> Vec<String> {
        match self.kubeconfig_secret {
            Some(_) => vec![
                "--kubeconfig".into(),
                format!("{KUBECONFIG_DIR}/kubeconfig"),
            ],
            None => Vec::new(),
        }
    }

    fn job(&self, args: &[String], pods: i32, workload: Option<&(String, String)>) -> Job {
        let mut all = vec!["api".to_string()];
        all.extend(args.iter().cloned());
        all.extend(self.kubeconfig_args());
        all.extend(["--json".to_string(), "-".to_string()]);
        let mut volumes = Vec::new();
        let mut c = self.container(all, 500, 256);
        if workload.is_some() {
            volumes.push(Volume {
                name: "workload".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: "scaletest-workload".into(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            });
            c.volume_mounts
                .get_or_insert_with(Vec::new)
                .push(VolumeMount {
                    name: "workload".into(),
                    mount_path: WORKLOAD_DIR.into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                });
        }
        Job {
            metadata: self.meta("scaletest-api", true),
            spec: Some(JobSpec {
                parallelism: Some(pods),
                completions: Some(pods),
                backoff_limit: Some(0),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&self.run, self.component())),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(self.pod(c, volumes, "Never")),
                },
                ..JobSpec::default()
            }),
            ..Job::default()
        }
    }

    fn stateful_set(
        &self,
        nodes: u64,
        per_pod: u64,
        prefix: &str,
        extra: &[String],
    ) -> StatefulSet {
        let pods = shards(nodes, per_pod);
        let (cpu, mem) = shard_resources(per_pod.min(nodes));
        // Each pod runs `per_pod` nodes; the total is rounded up to whole shards (said by
        // the caller when it differs).
        let mut args = vec![
            "nodes".to_string(),
            "--nodes".into(),
            per_pod.min(nodes).to_string(),
            "--prefix".into(),
            format!("{prefix}-$(POD_ORDINAL)-"),
        ];
        args.extend(self.kubeconfig_args());
        args.extend(extra.iter().cloned());
        let mut c = self.container(args, cpu, mem);
        c.env = Some(vec![EnvVar {
            name: "POD_ORDINAL".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.labels['apps.kubernetes.io/pod-index']".into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]);
        let sel = BTreeMap::from([
            (kapi::LABEL_RUN.to_string(), self.run.clone()),
            (
                crate::manifest::LABEL_COMPONENT.to_string(),
                self.component().to_string(),
            ),
        ]);
        StatefulSet {
            metadata: self.meta(prefix, true),
            spec: Some(StatefulSetSpec {
                replicas: Some(pods as i32),
                pod_management_policy: Some("Parallel".into()),
                service_name: Some(prefix.into()),
                selector: LabelSelector {
                    match_labels: Some(sel),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&self.run, self.component())),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(self.pod(c, Vec::new(), "Always")),
                },
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        }
    }
}

fn json<T: serde::Serialize>(o: &T) -> serde_json::Value {
    serde_json::to_value(o).expect("k8s-openapi objects serialize")
}

/// The objects as a multi-document YAML stream.
pub fn render(objects: &[serde_json::Value]) -> String {
    serde_saphyr::to_string_multiple(objects).expect("JSON values serialize as YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(what: What, rules: Rules) -> Runner {
        Runner {
            run: "r1".into(),
            namespace: "scaletest-r1".into(),
            image: "scaletest:test".into(),
            pull_policy: "IfNotPresent".into(),
            what,
            rules,
            kubeconfig_secret: None,
        }
    }

    #[test]
    fn a_churn_job_gets_only_the_verbs_churn_uses() {
        let r = runner(
            What::Api {
                args: vec!["churn".into(), "--rate".into(), "10".into()],
                pods: 3,
                workload: None,
            },
            Rules::churn("", "configmaps", false, false),
        );
        let objs = r.objects();
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Job"
            ]
        );
        let rules = &objs[2]["rules"];
        assert_eq!(rules[0]["resources"][0], "configmaps");
        assert_eq!(
            rules[0]["verbs"],
            serde_json::json!(["create", "delete", "patch"])
        );
        assert_eq!(rules[1]["nonResourceURLs"][0], "/metrics");
        assert_eq!(rules.as_array().unwrap().len(), 2);
        let job = &objs[4];
        assert_eq!(
            (
                job["spec"]["parallelism"].as_i64(),
                job["spec"]["completions"].as_i64()
            ),
            (Some(3), Some(3))
        );
        let args = &job["spec"]["template"]["spec"]["containers"][0]["args"];
        assert_eq!(
            args,
            &serde_json::json!(["api", "churn", "--rate", "10", "--json", "-"])
        );
    }

    #[test]
    fn hollow_nodes_are_shards_named_by_their_pod() {
        let mut r = runner(
            What::Nodes {
                nodes: 5_000,
                per_pod: 500,
                prefix: "hollow".into(),
                args: Vec::new(),
            },
            Rules::nodes(),
        );
        r.kubeconfig_secret = Some("target-cluster".into());
        let objs = r.objects();
        let sts = &objs[4];
        assert_eq!(sts["kind"], "StatefulSet");
        assert_eq!(sts["spec"]["replicas"], 10);
        let c = &sts["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["args"],
            serde_json::json!([
                "nodes",
                "--nodes",
                "500",
                "--prefix",
                "hollow-$(POD_ORDINAL)-",
                "--kubeconfig",
                "/etc/scaletest/kubeconfig/kubeconfig"
            ])
        );
        assert_eq!(c["resources"]["requests"]["cpu"], "100m");
        assert_eq!(shard_resources(5_000), (274, 540));
        assert_eq!(shards(5_001, 500), 11);
        assert!(shard_node("hollow", "hollow-3-17"));
        for other in [
            "hollow-node-3",
            "hollow-big-1-2",
            "hollow-3-",
            "hollowx-1-2",
            "hollow-1-2-3",
        ] {
            assert!(!shard_node("hollow", other), "{other}");
        }
    }
}
