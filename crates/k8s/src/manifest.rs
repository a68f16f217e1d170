//! The run as typed k8s-openapi objects, built from a [`Spec`] and the run's [`Keys`] with no
//! I/O: the namespace (which carries the spec), a ServiceAccount, the Secret (the aggregator's
//! token and TLS certificate), the server and aggregator Services, the aggregator's
//! PersistentVolumeClaim (`--state pvc`), and three Deployments (`serve`, `aggregate`, `bot`),
//! all running the one image with a different subcommand. [`render`] prints them as YAML;
//! [`parse`] reads that back.
//!
//! The bots reach the aggregator over HTTPS: its certificate, self-signed for its Service's
//! DNS names, is made once per run ([`Keys::complete`]) and kept in the Secret; the aggregator
//! mounts it all (`--tls-cert`, `--tls-key`), the bots only the token and the certificate as
//! their CA (`--cacert`). So the token never crosses the pod network in clear.
//!
//! No Role or RoleBinding: none of the pods calls the Kubernetes API (bots find the aggregator
//! through its Service's DNS name), so the ServiceAccount gets no permissions and no token is
//! mounted.

use crate::spec::{RunState, Spec};
use crate::{Error, ANN_SPEC};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction, KeyToPath,
    Namespace, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret,
    SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use std::collections::BTreeMap;

/// Label: which component a pod or object belongs to (`serve`, `aggregate`, `bot`).
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Label on server pods: the version they serve.
pub const LABEL_VERSION: &str = "scaletest.dev/version";
/// The three components, in the order `up` waits for them.
pub const COMPONENTS: [&str; 3] = ["serve", "aggregate", "bot"];
/// The server's port.
pub const SERVE_PORT: i32 = 8080;
/// The aggregator's port (API and UI).
pub const AGGREGATE_PORT: i32 = 8089;
/// The Secret holding the aggregator's bearer token (key `token`) and its TLS certificate
/// (`tls.crt`, `tls.key`, and `ca.crt`: the certificate again, as the bots' CA).
pub const TOKEN_SECRET: &str = "aggregator-token";
/// The aggregator's run directory as a claim (`--state pvc`).
pub const STATE_CLAIM: &str = "aggregator-run";
/// The ServiceAccount every pod runs as.
pub const SERVICE_ACCOUNT: &str = "scaletest";
const TOKEN_DIR: &str = "/etc/scaletest";
const RUN_DIR: &str = "/var/lib/scaletest";

/// The aggregator's Service DNS name, `aggregate.NAMESPACE.svc`: how bots reach it, and the
/// name its certificate is checked against.
pub fn aggregator_host(spec: &Spec) -> String {
    format!("aggregate.{}.svc", spec.namespace)
}

/// What the run's Secret holds: the aggregator's bearer token and its certificate (PEM).
#[derive(Debug, Clone, PartialEq)]
pub struct Keys {
    /// The bearer token.
    pub token: String,
    /// The self-signed certificate: what the aggregator serves and what clients trust.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl Keys {
    /// What `secret` holds, with what it lacks made anew: a new run (no Secret) gets a new
    /// token and certificate; a deployed run keeps its own, so the certificate is made once.
    pub fn complete(spec: &Spec, secret: Option<&Secret>) -> Result<Keys, Error> {
        let data = secret.and_then(|s| s.data.as_ref());
        let get = |k: &str| {
            data.and_then(|d| d.get(k))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .filter(|v| !v.is_empty())
        };
        let token = get("token").unwrap_or_else(st_http::stamp::random_hex);
        let (cert, key) = match (get("tls.crt"), get("tls.key")) {
            (Some(c), Some(k)) => (c, k),
            _ => {
                let ns = &spec.namespace;
                let names = [
                    "aggregate".to_string(),
                    format!("aggregate.{ns}"),
                    aggregator_host(spec),
                    format!("aggregate.{ns}.svc.cluster.local"),
                ];
                st_http::tls::self_signed_pem(&names)
                    .map_err(|e| Error::Usage(format!("the aggregator's certificate: {e}")))?
            }
        };
        Ok(Keys { token, cert, key })
    }

    /// The token of `secret`, and the CA its clients trust when it holds a certificate (a
    /// run made before the aggregator spoke TLS has none).
    pub fn token_and_ca(secret: &Secret) -> (Option<String>, Option<String>) {
        let get = |k: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(k))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .filter(|v| !v.is_empty())
        };
        (get("token"), get("ca.crt"))
    }
}
const SHUTDOWN_S: u32 = 20;

/// Every object of a run, in the order they are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Objects {
    /// The run's namespace, with the spec in [`ANN_SPEC`].
    pub namespace: Namespace,
    /// The pods' identity (no permissions).
    pub service_account: ServiceAccount,
    /// The aggregator's token and certificate.
    pub secret: Secret,
    /// The aggregator's run directory (`--state pvc`).
    pub claim: Option<PersistentVolumeClaim>,
    /// `serve` and `aggregate`.
    pub services: Vec<Service>,
    /// `serve`, `aggregate`, `bot`.
    pub deployments: Vec<Deployment>,
}

/// Labels every object of the run carries.
pub fn run_labels(spec: &Spec) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "scaletest".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "scaletest".to_string(),
        ),
        (kapi::LABEL_RUN.to_string(), spec.run.clone()),
    ])
}

fn selector(spec: &Spec, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (kapi::LABEL_RUN.to_string(), spec.run.clone()),
        (LABEL_COMPONENT.to_string(), component.to_string()),
    ])
}

fn meta(spec: &Spec, name: &str, component: Option<&str>) -> ObjectMeta {
    let mut labels = run_labels(spec);
    if let Some(c) = component {
        labels.insert(LABEL_COMPONENT.into(), c.into());
    }
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(spec.namespace.clone()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

/// The label selector string of a component's pods.
pub fn pod_selector(spec: &Spec, component: &str) -> String {
    selector(spec, component)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `CPU` and memory as request = limit (Guaranteed QoS: the per-core figures assume the core).
fn resources(cpu_m: u32, mem_mi: u32) -> ResourceRequirements {
    let q = BTreeMap::from([
        ("cpu".to_string(), Quantity(format!("{cpu_m}m"))),
        ("memory".to_string(), Quantity(format!("{mem_mi}Mi"))),
    ]);
    ResourceRequirements {
        requests: Some(q.clone()),
        limits: Some(q),
        ..ResourceRequirements::default()
    }
}

fn http_probe(path: &str, port: i32, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            // The aggregator's port is HTTPS (the kubelet does not verify the certificate).
            scheme: (port == AGGREGATE_PORT).then(|| "HTTPS".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(1),
        ..Probe::default()
    }
}

fn container(spec: &Spec, name: &str, args: Vec<String>, res: ResourceRequirements) -> Container {
    Container {
        name: name.into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(spec.pull_policy.clone()),
        args: Some(args),
        resources: Some(res),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// The Secret as files in [`TOKEN_DIR`]: all of it (`None`), or only these keys (the bots:
/// the token and the CA, never the aggregator's private key).
fn token_volume(keys: Option<&[&str]>) -> (Volume, VolumeMount) {
    (
        Volume {
            name: "token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(TOKEN_SECRET.into()),
                default_mode: Some(0o440),
                items: keys.map(|ks| {
                    ks.iter()
                        .map(|k| KeyToPath {
                            key: k.to_string(),
                            path: k.to_string(),
                            mode: None,
                        })
                        .collect()
                }),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: "token".into(),
            mount_path: TOKEN_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    )
}

fn deployment(
    spec: &Spec,
    component: &str,
    replicas: i32,
    mut pod_labels: BTreeMap<String, String>,
    pod: PodSpec,
    strategy: DeploymentStrategy,
) -> Deployment {
    pod_labels.extend(selector(spec, component));
    pod_labels.extend(run_labels(spec));
    Deployment {
        metadata: meta(spec, component, Some(component)),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector(spec, component)),
                ..LabelSelector::default()
            },
            strategy: Some(strategy),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(SERVICE_ACCOUNT.into()),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        fs_group: Some(65532),
                        ..PodSecurityContext::default()
                    }),
                    ..pod
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn service(spec: &Spec, component: &str, port: i32) -> Service {
    Service {
        metadata: meta(spec, component, Some(component)),
        spec: Some(ServiceSpec {
            selector: Some(selector(spec, component)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port,
                target_port: Some(IntOrString::Int(port)),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The server Deployment: `serve` with its version label, readiness on `/readyz` (503 as soon
/// as SIGTERM starts the drain, so the endpoint goes before the server does), liveness on
/// `/healthz`, and a grace period that covers the drain delay and the shutdown timeout. No
/// preStop hook is needed: the server itself keeps answering for the drain delay. Rolling
/// updates never take a ready server away first (maxUnavailable 0).
fn serve(spec: &Spec) -> Deployment {
    let port = SERVE_PORT;
    let mut c = container(
        spec,
        "serve",
        vec![
            "serve".into(),
            "--bind".into(),
            format!("0.0.0.0:{port}"),
            "--version-label".into(),
            spec.version.clone(),
            "--drain-delay".into(),
            format!("{}s", spec.drain_delay_s),
            "--shutdown-timeout".into(),
            format!("{SHUTDOWN_S}s"),
        ],
        resources(spec.server_cpu_m, 256),
    );
    // `rollout --image` changes the servers' image alone: the aggregator and the bots keep
    // theirs (a new aggregator pod would start an empty run).
    c.image = Some(spec.server_image().to_string());
    c.ports = Some(vec![ContainerPort {
        name: Some("http".into()),
        container_port: port,
        ..ContainerPort::default()
    }]);
    c.readiness_probe = Some(http_probe("/readyz", port, 1, 1));
    c.liveness_probe = Some(http_probe("/healthz", port, 10, 3));
    deployment(
        spec,
        "serve",
        spec.servers,
        BTreeMap::from([(LABEL_VERSION.to_string(), spec.version.clone())]),
        PodSpec {
            containers: vec![c],
            termination_grace_period_seconds: Some(i64::from(spec.drain_delay_s + SHUTDOWN_S + 5)),
            ..PodSpec::default()
        },
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_unavailable: Some(IntOrString::Int(0)),
                max_surge: Some(IntOrString::String("25%".into())),
            }),
        },
    )
}

/// The aggregator: one pod (Recreate: two would split the bots), its run directory on an
/// emptyDir (a restarted container picks the run up) or the run's claim (`--state pvc`: a
/// new pod does too), the token and certificate from the Secret. Nothing in it depends on
/// the replica counts: scaling must not restart it (that would end the run).
fn aggregate(spec: &Spec) -> Deployment {
    let port = AGGREGATE_PORT;
    let (vol, mount) = token_volume(None);
    let mut c = container(
        spec,
        "aggregate",
        aggregate_args(spec),
        resources(spec.aggregator_cpu_m, 1024),
    );
    c.ports = Some(vec![ContainerPort {
        name: Some("http".into()),
        container_port: port,
        ..ContainerPort::default()
    }]);
    c.readiness_probe = Some(http_probe("/healthz", port, 2, 2));
    c.liveness_probe = Some(http_probe("/healthz", port, 10, 3));
    c.volume_mounts = Some(vec![
        mount,
        VolumeMount {
            name: "run".into(),
            mount_path: RUN_DIR.into(),
            ..VolumeMount::default()
        },
    ]);
    deployment(
        spec,
        "aggregate",
        1,
        BTreeMap::new(),
        PodSpec {
            containers: vec![c],
            volumes: Some(vec![
                vol,
                match &spec.state {
                    RunState::EmptyDir => Volume {
                        name: "run".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Volume::default()
                    },
                    RunState::Pvc { .. } => Volume {
                        name: "run".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: STATE_CLAIM.into(),
                            read_only: None,
                        }),
                        ..Volume::default()
                    },
                },
            ]),
            ..PodSpec::default()
        },
        DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        },
    )
}

/// `scaletest aggregate`'s arguments: the target (the run's `serve`, or the user's service
/// with its request options) and the load (a total rate, or one per bot).
fn aggregate_args(spec: &Spec) -> Vec<String> {
    let mut args = vec!["aggregate".to_string()];
    match &spec.target {
        None => args.push(format!(
            "http://serve.{}.svc:{}/",
            spec.namespace, SERVE_PORT
        )),
        Some(t) => {
            args.push(t.url.clone());
            for h in &t.headers {
                args.extend(["-H".into(), h.clone()]);
            }
            if t.insecure {
                args.push("--insecure".into());
            }
            if t.http2 {
                args.push("--http2".into());
            }
        }
    }
    match spec.per_bot_rate {
        Some(r) => args.extend(["--per-bot-rate".into(), format_rate(r)]),
        None => args.extend(["--rate".into(), format_rate(spec.rate)]),
    }
    args.extend([
        "--bind".into(),
        format!("0.0.0.0:{AGGREGATE_PORT}"),
        "--token-file".into(),
        format!("{TOKEN_DIR}/token"),
        "--out".into(),
        format!("{RUN_DIR}/run"),
        "--tls-cert".into(),
        format!("{TOKEN_DIR}/tls.crt"),
        "--tls-key".into(),
        format!("{TOKEN_DIR}/tls.key"),
    ]);
    args
}

/// The aggregator's run directory as a claim from the default StorageClass.
fn state_claim(spec: &Spec, size: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(spec, STATE_CLAIM, Some("aggregate")),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(size.to_string()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The loadbots: each registers with the aggregator's Service and takes its share of the rate;
/// a bot that goes away is re-split by the aggregator, a new one takes a share.
fn bot(spec: &Spec) -> Deployment {
    let (vol, mount) = token_volume(Some(&["token", "ca.crt"]));
    let mut c = container(
        spec,
        "bot",
        vec![
            "bot".into(),
            "--aggregator".into(),
            format!("https://{}:{AGGREGATE_PORT}", aggregator_host(spec)),
            "--token-file".into(),
            format!("{TOKEN_DIR}/token"),
            "--cacert".into(),
            format!("{TOKEN_DIR}/ca.crt"),
        ],
        resources(spec.bot_cpu_m, 512),
    );
    c.volume_mounts = Some(vec![mount]);
    deployment(
        spec,
        "bot",
        spec.bots,
        BTreeMap::new(),
        PodSpec {
            containers: vec![c],
            volumes: Some(vec![vol]),
            // A bot drains and pushes its last second on SIGTERM.
            termination_grace_period_seconds: Some(30),
            ..PodSpec::default()
        },
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_unavailable: Some(IntOrString::String("25%".into())),
                max_surge: Some(IntOrString::String("25%".into())),
            }),
        },
    )
}

fn format_rate(r: f64) -> String {
    if r.fract() == 0.0 {
        format!("{}", r as u64)
    } else {
        format!("{r}")
    }
}

/// Every object of a run with this spec and its keys.
pub fn objects(spec: &Spec, keys: &Keys) -> Objects {
    let mut ns_meta = meta(spec, &spec.namespace, None);
    ns_meta.namespace = None;
    ns_meta.annotations = Some(BTreeMap::from([(
        ANN_SPEC.to_string(),
        serde_json::to_string(spec).expect("a spec serializes"),
    )]));
    Objects {
        namespace: Namespace {
            metadata: ns_meta,
            ..Namespace::default()
        },
        service_account: ServiceAccount {
            metadata: meta(spec, SERVICE_ACCOUNT, None),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        },
        secret: Secret {
            metadata: meta(spec, TOKEN_SECRET, Some("aggregate")),
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([
                (
                    "token".to_string(),
                    ByteString(keys.token.clone().into_bytes()),
                ),
                (
                    "tls.crt".to_string(),
                    ByteString(keys.cert.clone().into_bytes()),
                ),
                (
                    "tls.key".to_string(),
                    ByteString(keys.key.clone().into_bytes()),
                ),
                // Self-signed: the certificate is its own CA.
                (
                    "ca.crt".to_string(),
                    ByteString(keys.cert.clone().into_bytes()),
                ),
            ])),
            ..Secret::default()
        },
        claim: match &spec.state {
            RunState::Pvc { size } => Some(state_claim(spec, size)),
            RunState::EmptyDir => None,
        },
        // A run with a target loads the user's service: it has no servers of its own.
        services: match spec.target {
            None => vec![
                service(spec, "serve", SERVE_PORT),
                service(spec, "aggregate", AGGREGATE_PORT),
            ],
            Some(_) => vec![service(spec, "aggregate", AGGREGATE_PORT)],
        },
        deployments: match spec.target {
            None => vec![serve(spec), aggregate(spec), bot(spec)],
            Some(_) => vec![aggregate(spec), bot(spec)],
        },
    }
}

impl Objects {
    /// Every object as JSON, in apply order.
    pub fn to_values(&self) -> Vec<serde_json::Value> {
        let mut v = vec![
            json(&self.namespace),
            json(&self.service_account),
            json(&self.secret),
        ];
        v.extend(self.services.iter().map(json));
        v.extend(self.claim.iter().map(json));
        v.extend(self.deployments.iter().map(json));
        v
    }
}

fn json<T: serde::Serialize>(o: &T) -> serde_json::Value {
    serde_json::to_value(o).expect("k8s-openapi objects serialize")
}

/// The objects as a multi-document YAML stream (for review, `kubectl apply -f -`, GitOps).
pub fn render(objs: &Objects) -> String {
    let docs = objs.to_values();
    serde_saphyr::to_string_multiple(&docs).expect("JSON values serialize as YAML")
}

/// Read [`render`]'s output back into typed objects.
pub fn parse(yaml: &str) -> Result<Objects, Error> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml)
        .map_err(|e| Error::Usage(format!("not YAML: {}", first_line(&e.to_string()))))?;
    let mut namespace = None;
    let mut service_account = None;
    let (mut secret, mut claim) = (None, None);
    let (mut services, mut deployments) = (Vec::new(), Vec::new());
    for d in docs {
        let kind = d["kind"].as_str().unwrap_or("").to_string();
        let bad = |e: serde_json::Error| Error::Usage(format!("a {kind}: {e}"));
        match kind.as_str() {
            "Namespace" => namespace = Some(serde_json::from_value(d).map_err(bad)?),
            "ServiceAccount" => service_account = Some(serde_json::from_value(d).map_err(bad)?),
            "Secret" => secret = Some(serde_json::from_value(d).map_err(bad)?),
            "Service" => services.push(serde_json::from_value(d).map_err(bad)?),
            "PersistentVolumeClaim" => claim = Some(serde_json::from_value(d).map_err(bad)?),
            "Deployment" => deployments.push(serde_json::from_value(d).map_err(bad)?),
            other => return Err(Error::Usage(format!("unexpected kind {other:?}"))),
        }
    }
    let missing = |what: &str| Error::Usage(format!("no {what} in the YAML"));
    Ok(Objects {
        namespace: namespace.ok_or_else(|| missing("Namespace"))?,
        service_account: service_account.ok_or_else(|| missing("ServiceAccount"))?,
        secret: secret.ok_or_else(|| missing("Secret"))?,
        claim,
        services,
        deployments,
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// The spec a namespace carries, if it is a run's.
pub fn spec_of(ns: &Namespace) -> Option<Spec> {
    let a = ns.metadata.annotations.as_ref()?.get(ANN_SPEC)?;
    serde_json::from_str(a).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(token: &str) -> Keys {
        Keys {
            token: token.into(),
            cert: "CERT".into(),
            key: "KEY".into(),
        }
    }

    fn args(objs: &Objects, name: &str) -> Vec<String> {
        let d = objs
            .deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(name))
            .expect("the deployment");
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        pod.containers[0].args.clone().unwrap()
    }

    /// The certificate is made once: a Secret that has one keeps it (and its token).
    #[test]
    fn the_aggregator_speaks_tls_with_a_certificate_kept_in_the_secret() {
        let spec = Spec::new("demo");
        let k = Keys::complete(&spec, None).unwrap();
        assert!(
            k.cert.starts_with("-----BEGIN CERTIFICATE-----"),
            "{}",
            k.cert
        );
        let objs = objects(&spec, &k);
        assert_eq!(Keys::complete(&spec, Some(&objs.secret)).unwrap(), k);
        assert_eq!(
            Keys::token_and_ca(&objs.secret),
            (Some(k.token.clone()), Some(k.cert.clone()))
        );
        // Its names are the Service's: what bots dial and check.
        let (cfg, host) = (
            st_http::tls::server_config_from_pem(k.cert.as_bytes(), k.key.as_bytes()),
            aggregator_host(&spec),
        );
        assert!(cfg.is_ok());
        assert_eq!(host, "aggregate.scaletest-demo.svc");
        let bot = args(&objs, "bot");
        let after =
            |flag: &str, a: &[String]| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
        assert_eq!(after("--aggregator", &bot), format!("https://{host}:8089"));
        assert_eq!(after("--cacert", &bot), "/etc/scaletest/ca.crt");
        let agg = args(&objs, "aggregate");
        assert_eq!(after("--tls-cert", &agg), "/etc/scaletest/tls.crt");
        assert_eq!(after("--tls-key", &agg), "/etc/scaletest/tls.key");
        // The bots never get the aggregator's key.
        let yaml = render(&objs);
        let bot_dep = yaml
            .split("---")
            .find(|d| d.contains("name: bot\n"))
            .unwrap_or("");
        assert!(!bot_dep.contains("tls.key"), "{bot_dep}");
        assert!(
            yaml.contains("tls.crt:") && yaml.contains("ca.crt:"),
            "{yaml}"
        );
        assert!(yaml.contains("scheme: HTTPS"), "{yaml}");
    }

    #[test]
    fn state_pvc_claims_a_volume_for_the_run_directory() {
        let mut spec = Spec::new("demo");
        assert!(objects(&spec, &keys("t")).claim.is_none());
        spec.state = RunState::Pvc { size: "1Gi".into() };
        let objs = objects(&spec, &keys("t"));
        let claim = serde_json::to_value(objs.claim.as_ref().expect("a claim")).unwrap();
        assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteOnce");
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert!(claim["spec"]["storageClassName"].is_null(), "{claim}");
        let agg = serde_json::to_value(&objs.deployments[1]).unwrap();
        let vols = &agg["spec"]["template"]["spec"]["volumes"];
        assert_eq!(
            vols[1]["persistentVolumeClaim"]["claimName"], STATE_CLAIM,
            "{vols}"
        );
        assert_eq!(parse(&render(&objs)).unwrap(), objs);
    }

    #[test]
    fn the_yaml_reads_back_as_the_same_objects() {
        let mut spec = Spec::new("demo");
        spec.servers = 3;
        spec.version = "1.0".into();
        let objs = objects(&spec, &keys("0123abcd"));
        let yaml = render(&objs);
        assert!(yaml.contains("kind: Deployment"), "{yaml}");
        assert_eq!(parse(&yaml).unwrap(), objs);
        assert_eq!(spec_of(&objs.namespace), Some(spec));
    }

    #[test]
    fn every_object_carries_the_run_and_servers_roll_with_none_unavailable() {
        let spec = Spec::new("r1");
        let objs = objects(&spec, &keys("t"));
        for v in objs.to_values() {
            assert_eq!(v["metadata"]["labels"][kapi::LABEL_RUN], "r1", "{v}");
        }
        let serve = &objs.deployments[0];
        let s = serve.spec.as_ref().unwrap();
        let ru = s
            .strategy
            .as_ref()
            .unwrap()
            .rolling_update
            .as_ref()
            .unwrap();
        assert_eq!(ru.max_unavailable, Some(IntOrString::Int(0)));
        let pod = s.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/readyz")
        );
        // The grace period covers the drain delay and the shutdown timeout.
        assert!(
            pod.termination_grace_period_seconds.unwrap()
                > i64::from(spec.drain_delay_s + SHUTDOWN_S)
        );
        let labels = s
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(labels[LABEL_VERSION], "v1");
        // The selector leaves the version out: a rollout changes the template, not the selector.
        assert!(!s
            .selector
            .match_labels
            .as_ref()
            .unwrap()
            .contains_key(LABEL_VERSION));
    }
}
