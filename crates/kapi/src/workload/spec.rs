//! The workload file of `api run`, in the spirit of kube-burner's jobs and ClusterLoader2's
//! configs, read and checked before anything is created: every error is one line naming
//! where in the file it is (`jobs[1].waitFor`).
//!
//! ```yaml
//! vars: {namespaces: 5, deployments: 2, replicas: 3}   # defaults; `--set k=v` overrides
//! jobs:
//!   - name: deploy
//!     namespaces: "{{namespaces}}"     # made and labelled by the run
//!     iterations: "{{namespaces}}"     # iteration i works in namespace i mod namespaces
//!     qps: 20                          # client-side limit (or `rate`: creations/s, open loop)
//!     burst: 20
//!     objects:
//!       - replicas: "{{deployments}}"  # objects of this template per iteration
//!         object: {apiVersion: apps/v1, kind: Deployment, metadata: {name: "web-{{replica}}"}, ...}
//!     waitFor: Ready                   # Ready | Running | Complete
//!     timeout: 2m
//!     churn: {percent: 20, interval: 10s, cycles: 3}
//!   - name: settle
//!     pause: 10s
//!   - name: teardown
//!     delete: deploy                   # an earlier job's objects (and namespaces)
//! ```
//!
//! Variables are replaced in the file's text first (`{{name}}`, from `vars` and `--set`), so
//! they may stand for numbers; what is left for each object are `{{iteration}}`,
//! `{{replica}}`, `{{namespace}}`, `{{job}}` and `{{run}}`, replaced in its strings when it is
//! made. Any other `{{…}}` is an error.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The placeholders each object is rendered with.
pub const OBJECT_VARS: [&str; 5] = ["iteration", "replica", "namespace", "job", "run"];

/// Most objects one job may make (iterations × replicas): a typo of a few zeros is refused
/// before it floods a cluster.
pub const MAX_OBJECTS: u64 = 1_000_000;

/// The slowest and fastest `qps` or `rate` a job takes, per second.
pub const MIN_RATE: f64 = 0.01;
/// See [`MIN_RATE`].
pub const MAX_RATE: f64 = 1_000_000.0;

/// Most namespaces one job may make.
pub const MAX_NAMESPACES: u64 = 10_000;

/// What a pod or a controller of pods must reach before a job is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Pods Ready; Deployments, ReplicaSets, StatefulSets with every replica ready.
    Ready,
    /// Pods Running (and controllers' replicas ready).
    Running,
    /// Jobs Complete; pods Succeeded.
    Complete,
}

/// Deleting and making again a share of a job's namespaces, with their objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Churn {
    /// Percent of the job's namespaces per cycle (at least one namespace).
    pub percent: u32,
    /// Time from one cycle's start to the next's.
    pub interval: Duration,
    /// Cycles.
    pub cycles: u32,
}

/// One template of a job's objects.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSpec {
    /// The object, with placeholders in its strings.
    pub object: Value,
    /// Objects of it per iteration.
    pub replicas: u64,
}

/// What a job does.
#[derive(Debug, Clone, PartialEq)]
pub enum JobKind {
    /// Make objects.
    Create {
        /// Namespaces made for the job (0: the objects are cluster-scoped, or go to the
        /// context's namespace).
        namespaces: u64,
        /// Iterations; iteration i works in namespace i mod namespaces.
        iterations: u64,
        /// The objects of each iteration.
        objects: Vec<ObjectSpec>,
        /// Client-side limit: calls/s and burst.
        qps: (f64, u32),
        /// Open loop instead: creations per second on a fixed schedule.
        rate: Option<f64>,
        /// What to wait for after the creations.
        wait_for: Option<WaitFor>,
        /// Longest wait (also of the churn's deletes).
        timeout: Duration,
        /// Churn after the objects are made (and ready, when waited for).
        churn: Option<Churn>,
    },
    /// Delete what an earlier job made, and wait until it is gone.
    Delete {
        /// That job's name.
        job: String,
        /// Longest wait.
        timeout: Duration,
    },
    /// Wait.
    Pause(Duration),
}

/// One job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Its name (in the `scaletest.dev/job` label of what it makes).
    pub name: String,
    /// What it does.
    pub kind: JobKind,
}

/// A checked workload: jobs in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// The jobs.
    pub jobs: Vec<Job>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTop {
    #[serde(default)]
    vars: BTreeMap<String, Value>,
    jobs: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileJob {
    name: String,
    namespaces: Option<Num>,
    iterations: Option<Num>,
    #[serde(default)]
    objects: Vec<FileObject>,
    qps: Option<f64>,
    burst: Option<Num>,
    rate: Option<f64>,
    wait_for: Option<String>,
    timeout: Option<String>,
    churn: Option<FileChurn>,
    delete: Option<String>,
    pause: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileObject {
    object: Value,
    replicas: Option<Num>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileChurn {
    percent: Num,
    interval: String,
    cycles: Num,
}

/// A whole number, written as a number or (after a variable) as a string of one.
#[derive(Deserialize)]
#[serde(untagged)]
enum Num {
    N(u64),
    S(String),
}

impl Num {
    fn get(&self, at: &str) -> Result<u64, String> {
        match self {
            Num::N(n) => Ok(*n),
            Num::S(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{at}: {s:?} is not a whole number")),
        }
    }
}

fn duration(s: &str, at: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| format!("{at}: {s:?}: {e}"))?;
    if d.is_zero() {
        return Err(format!("{at}: must be longer than 0"));
    }
    Ok(d)
}

/// `{{name}}`s in `text`, in order.
fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        match after.find("}}") {
            Some(j) => {
                out.push(after[..j].trim());
                rest = &after[j + 2..];
            }
            None => break,
        }
    }
    out
}

/// `text` with every `{{…}}` as `0`.
fn blank(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        match rest[i..].find("}}") {
            Some(j) => {
                out.push_str(&rest[..i]);
                out.push('0');
                rest = &rest[i + j + 2..];
            }
            None => break,
        }
    }
    out + rest
}

/// Replace the file's variables (`vars`, overridden by `set`), then check and read it.
/// `name` is the file's name for messages.
pub fn parse(name: &str, text: &str, set: &[(String, String)]) -> Result<Workload, String> {
    let yaml_err = |e: serde_saphyr::Error| {
        let e = e.to_string();
        let first = e.lines().next().unwrap_or("").trim_start_matches("error: ");
        format!("{name}: {first}")
    };
    // The vars are read first, from the text with every placeholder as 0 (a placeholder
    // may stand for a number, unquoted); their own values hold none.
    let top: FileTop = serde_saphyr::from_str(&blank(text)).map_err(yaml_err)?;
    let mut vars: BTreeMap<String, String> = top
        .vars
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            (k.clone(), text)
        })
        .collect();
    for (k, v) in set {
        if !vars.contains_key(k) {
            let known: Vec<&str> = vars.keys().map(String::as_str).collect();
            return Err(format!(
                "--set {k}: {name} has no such variable (it has: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
        vars.insert(k.clone(), v.clone());
    }
    let mut text = text.to_string();
    for (k, v) in &vars {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    for (line, l) in text.lines().enumerate() {
        if let Some(p) = placeholders(l)
            .into_iter()
            .find(|p| !OBJECT_VARS.contains(p))
        {
            return Err(format!(
                "{name}: line {}: unknown variable {{{{{p}}}}} (variables: {}; per object: {})",
                line + 1,
                if vars.is_empty() {
                    "none".to_string()
                } else {
                    vars.keys().cloned().collect::<Vec<_>>().join(", ")
                },
                OBJECT_VARS.join(", ")
            ));
        }
    }
    let top: FileTop = serde_saphyr::from_str(&text).map_err(yaml_err)?;
    if top.jobs.is_empty() {
        return Err(format!("{name}: jobs: give at least one job"));
    }
    let mut jobs: Vec<Job> = Vec::new();
    for (i, v) in top.jobs.into_iter().enumerate() {
        let at = format!("{name}: jobs[{i}]");
        let f: FileJob = serde_json::from_value(v).map_err(|e| format!("{at}: {e}"))?;
        let job = job(f, &at, &jobs)?;
        jobs.push(job);
    }
    Ok(Workload { jobs })
}

fn job(f: FileJob, at: &str, earlier: &[Job]) -> Result<Job, String> {
    if f.name.is_empty() || !crate::spec::valid_run_id(&f.name) {
        return Err(format!(
            "{at}.name: {:?}: 1-40 lowercase letters, digits and '-'",
            f.name
        ));
    }
    if earlier.iter().any(|j| j.name == f.name) {
        return Err(format!("{at}.name: {:?} is used by an earlier job", f.name));
    }
    let kinds = [!f.objects.is_empty(), f.delete.is_some(), f.pause.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(format!(
            "{at}: give exactly one of objects, delete or pause"
        ));
    }
    let timeout = match &f.timeout {
        Some(t) => duration(t, &format!("{at}.timeout"))?,
        None => Duration::from_secs(300),
    };
    let only_create = |what: &str, given: bool| -> Result<(), String> {
        if given && f.objects.is_empty() {
            return Err(format!("{at}.{what}: only a job with objects takes it"));
        }
        Ok(())
    };
    only_create("namespaces", f.namespaces.is_some())?;
    only_create("iterations", f.iterations.is_some())?;
    only_create("qps", f.qps.is_some())?;
    only_create("burst", f.burst.is_some())?;
    only_create("rate", f.rate.is_some())?;
    only_create("waitFor", f.wait_for.is_some())?;
    only_create("churn", f.churn.is_some())?;
    if let Some(p) = &f.pause {
        return Ok(Job {
            name: f.name,
            kind: JobKind::Pause(duration(p, &format!("{at}.pause"))?),
        });
    }
    if let Some(d) = f.delete {
        let target = earlier.iter().find(|j| j.name == d);
        if !matches!(target.map(|j| &j.kind), Some(JobKind::Create { .. })) {
            return Err(format!(
                "{at}.delete: {d:?} is not an earlier job that makes objects"
            ));
        }
        return Ok(Job {
            name: f.name,
            kind: JobKind::Delete { job: d, timeout },
        });
    }
    let qps = limits(&f, at)?;
    let namespaces = match &f.namespaces {
        Some(n) => n.get(&format!("{at}.namespaces"))?,
        None => 0,
    };
    if namespaces > MAX_NAMESPACES {
        return Err(format!("{at}.namespaces: at most {MAX_NAMESPACES}"));
    }
    let iterations = match &f.iterations {
        Some(n) => n.get(&format!("{at}.iterations"))?,
        None => namespaces.max(1),
    };
    if iterations == 0 {
        return Err(format!("{at}.iterations: must be at least 1"));
    }
    let mut objects = Vec::new();
    let mut total: u64 = 0;
    for (k, o) in f.objects.into_iter().enumerate() {
        let oat = format!("{at}.objects[{k}]");
        let replicas = match &o.replicas {
            Some(n) => n.get(&format!("{oat}.replicas"))?,
            None => 1,
        };
        if replicas == 0 {
            return Err(format!("{oat}.replicas: must be at least 1"));
        }
        check_object(&o.object, &format!("{oat}.object"))?;
        total = total.saturating_add(replicas.saturating_mul(iterations));
        objects.push(ObjectSpec {
            object: o.object,
            replicas,
        });
    }
    if total > MAX_OBJECTS {
        return Err(format!(
            "{at}: {total} objects (iterations × replicas); at most {MAX_OBJECTS} per job"
        ));
    }
    let wait_for = match f.wait_for.as_deref() {
        None => None,
        Some("Ready") => Some(WaitFor::Ready),
        Some("Running") => Some(WaitFor::Running),
        Some("Complete") => Some(WaitFor::Complete),
        Some(w) => {
            return Err(format!(
                "{at}.waitFor: {w:?}: one of Ready, Running, Complete"
            ))
        }
    };
    let churn = churn(f.churn, namespaces, at)?;
    Ok(Job {
        name: f.name,
        kind: JobKind::Create {
            namespaces,
            iterations,
            objects,
            qps,
            rate: f.rate,
            wait_for,
            timeout,
            churn,
        },
    })
}

/// A create job's qps/burst limit (default 20/20), and its rate when it has one instead.
fn limits(f: &FileJob, at: &str) -> Result<(f64, u32), String> {
    let qps = match (f.qps, &f.burst) {
        (Some(q), _) if !(MIN_RATE..=MAX_RATE).contains(&q) => {
            return Err(format!("{at}.qps: {MIN_RATE} to {MAX_RATE}"))
        }
        (q, b) => {
            let burst = match b {
                Some(b) => b.get(&format!("{at}.burst"))?,
                None => q.map_or(20, |q| q.ceil() as u64),
            };
            if burst == 0 || burst > 100_000 {
                return Err(format!("{at}.burst: 1 to 100000"));
            }
            (q.unwrap_or(20.0), burst as u32)
        }
    };
    if let Some(r) = f.rate {
        if !(MIN_RATE..=MAX_RATE).contains(&r) {
            return Err(format!("{at}.rate: {MIN_RATE} to {MAX_RATE}"));
        }
        if f.qps.is_some() {
            return Err(format!(
                "{at}: give qps (a limit) or rate (a schedule), not both"
            ));
        }
    }
    Ok(qps)
}

/// A create job's churn, checked.
fn churn(c: Option<FileChurn>, namespaces: u64, at: &str) -> Result<Option<Churn>, String> {
    let churn = match c {
        None => None,
        Some(c) => {
            let cat = format!("{at}.churn");
            let percent = c.percent.get(&format!("{cat}.percent"))?;
            if !(1..=100).contains(&percent) {
                return Err(format!("{cat}.percent: 1 to 100"));
            }
            if namespaces == 0 {
                return Err(format!(
                    "{cat}: churn deletes namespaces: give the job namespaces"
                ));
            }
            let cycles = c.cycles.get(&format!("{cat}.cycles"))?;
            if !(1..=10_000).contains(&cycles) {
                return Err(format!("{cat}.cycles: 1 to 10000"));
            }
            Some(Churn {
                percent: percent as u32,
                interval: duration(&c.interval, &format!("{cat}.interval"))?,
                cycles: cycles as u32,
            })
        }
    };
    Ok(churn)
}

/// An object template must name its kind and a name (or generateName).
fn check_object(o: &Value, at: &str) -> Result<(), String> {
    if !o.is_object() {
        return Err(format!("{at}: must be a mapping (one Kubernetes object)"));
    }
    for f in ["apiVersion", "kind"] {
        if !o.get(f).is_some_and(Value::is_string) {
            return Err(format!("{at}.{f}: missing"));
        }
    }
    let meta = o.get("metadata");
    let named = ["name", "generateName"]
        .iter()
        .any(|f| meta.and_then(|m| m.get(f)).is_some_and(Value::is_string));
    if !named {
        return Err(format!(
            "{at}.metadata.name: missing (or give generateName)"
        ));
    }
    if meta.and_then(|m| m.get("namespace")).is_some() {
        return Err(format!(
            "{at}.metadata.namespace: the run places objects in the job's namespaces; leave it out"
        ));
    }
    Ok(())
}

/// `o` with the placeholders of one object replaced in every string (keys too).
pub fn render(o: &Value, vars: &[(&str, &str)]) -> Value {
    match o {
        Value::String(s) if s.contains("{{") => {
            let mut s = s.clone();
            for (k, v) in vars {
                s = s.replace(&format!("{{{{{k}}}}}"), v);
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| render(v, vars)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let k = match render(&Value::String(k.clone()), vars) {
                        Value::String(k) => k,
                        _ => k.clone(),
                    };
                    (k, render(v, vars))
                })
                .collect(),
        ),
        v => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOY: &str = "vars: {n: 2, replicas: 3}
jobs:
  - name: deploy
    namespaces: '{{n}}'
    objects:
      - replicas: 2
        object:
          apiVersion: apps/v1
          kind: Deployment
          metadata: {name: 'web-{{replica}}'}
          spec: {replicas: {{replicas}}}
    waitFor: Ready
    timeout: 1m
  - name: rest
    pause: 2s
  - name: teardown
    delete: deploy
";

    #[test]
    fn a_workload_reads_with_its_variables_set() {
        let w = parse("w.yaml", DEPLOY, &[("n".into(), "5".into())]).unwrap();
        assert_eq!(w.jobs.len(), 3);
        let JobKind::Create {
            namespaces,
            iterations,
            objects,
            wait_for,
            timeout,
            qps,
            ..
        } = &w.jobs[0].kind
        else {
            panic!("{:?}", w.jobs[0])
        };
        assert_eq!((*namespaces, *iterations), (5, 5));
        assert_eq!(
            (*wait_for, *timeout),
            (Some(WaitFor::Ready), Duration::from_secs(60))
        );
        assert_eq!(*qps, (20.0, 20));
        assert_eq!(objects[0].replicas, 2);
        assert_eq!(objects[0].object["spec"]["replicas"], 3);
        let o = render(&objects[0].object, &[("replica", "1")]);
        assert_eq!(o["metadata"]["name"], "web-1");
        assert_eq!(w.jobs[1].kind, JobKind::Pause(Duration::from_secs(2)));
        assert!(matches!(&w.jobs[2].kind, JobKind::Delete { job, .. } if job == "deploy"));
    }

    #[test]
    fn what_is_wrong_is_one_line_naming_where() {
        // (file, --set, the error's start)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("jobs: []", &[], "w.yaml: jobs: give at least one job"),
            (
                DEPLOY,
                &[("nope", "1")],
                "--set nope: w.yaml has no such variable (it has: n, replicas)",
            ),
            (
                &DEPLOY.replace("web-{{replica}}", "web-{{replca}}"),
                &[],
                "w.yaml: line 10: unknown variable {{replca}}",
            ),
            (
                &DEPLOY.replace("waitFor: Ready", "waitFor: Up"),
                &[],
                "w.yaml: jobs[0].waitFor: \"Up\": one of Ready, Running, Complete",
            ),
            (
                &DEPLOY.replace("timeout: 1m", "timeout: soon"),
                &[],
                "w.yaml: jobs[0].timeout: \"soon\"",
            ),
            (
                &DEPLOY.replace("delete: deploy", "delete: nothing"),
                &[],
                "w.yaml: jobs[2].delete: \"nothing\" is not an earlier job",
            ),
            (
                &DEPLOY.replace("pause: 2s", "pause: 2s\n    qps: 3"),
                &[],
                "w.yaml: jobs[1].qps: only a job with objects takes it",
            ),
            (
                &DEPLOY.replace("kind: Deployment", "kond: Deployment"),
                &[],
                "w.yaml: jobs[0].objects[0].object.kind: missing",
            ),
            (
                &DEPLOY.replace("name: rest", "name: deploy"),
                &[],
                "w.yaml: jobs[1].name: \"deploy\" is used by an earlier job",
            ),
            (
                &DEPLOY.replace("replicas: 2", "replicas: 2000000"),
                &[],
                "w.yaml: jobs[0]: 4000000 objects",
            ),
            (
                &DEPLOY.replace("timeout: 1m", "timeout: 1m\n    colour: red"),
                &[],
                "w.yaml: jobs[0]: unknown field `colour`",
            ),
            (
                &DEPLOY.replace(
                    "waitFor: Ready",
                    "waitFor: Ready\n    churn: {percent: 0, interval: 1s, cycles: 1}",
                ),
                &[],
                "w.yaml: jobs[0].churn.percent: 1 to 100",
            ),
            ("jobs: [", &[], "w.yaml: "),
        ];
        for (text, set, want) in cases {
            let set: Vec<(String, String)> = set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let e = parse("w.yaml", text, &set).unwrap_err();
            assert!(e.starts_with(want), "{want}\n  got: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
