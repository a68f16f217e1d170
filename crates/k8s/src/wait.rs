//! Is a Deployment rolled out, and if not, why: pure functions over the objects the API server
//! returns ([`rollout`], [`diagnose`]), unit-tested with no cluster; `cluster` polls them.
//!
//! "Done" is `kubectl rollout status`'s rule: the controller has seen the newest generation,
//! and every replica is updated and available with no old ones left. "Why not" reads the pods:
//! unschedulable, an image that cannot be pulled, a container crash-looping (the caller adds
//! its last log lines), or a container running but not ready; with no pods at all, the
//! Deployment's own conditions (quota, a missing ServiceAccount, a progress deadline).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;

/// A Deployment's rollout, as its status tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// Its name.
    pub name: String,
    /// Replicas asked for.
    pub want: i32,
    /// Pods of the newest template.
    pub updated: i32,
    /// Pods ready.
    pub ready: i32,
    /// Pods available.
    pub available: i32,
    /// All pods, old and new.
    pub total: i32,
    /// The controller has seen the newest spec.
    pub observed: bool,
}

impl Rollout {
    /// Every replica updated and available, no old ones left.
    pub fn done(&self) -> bool {
        self.observed
            && self.updated == self.want
            && self.total == self.want
            && self.available == self.want
    }

    /// `serve 2/3 updated, 2 available`.
    pub fn line(&self) -> String {
        format!(
            "{} {}/{} updated, {} ready, {} available{}{}",
            self.name,
            self.updated,
            self.want,
            self.ready,
            self.available,
            if self.total > self.want {
                format!(", {} old", self.total - self.updated)
            } else {
                String::new()
            },
            if self.observed {
                ""
            } else {
                ", not yet seen by the controller"
            }
        )
    }
}

/// The rollout state of a Deployment.
pub fn rollout(d: &Deployment) -> Rollout {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    Rollout {
        name: d.metadata.name.clone().unwrap_or_default(),
        want,
        updated: st.updated_replicas.unwrap_or(0),
        ready: st.ready_replicas.unwrap_or(0),
        available: st.available_replicas.unwrap_or(0),
        total: st.replicas.unwrap_or(0),
        observed: st.observed_generation.unwrap_or(0) >= generation,
    }
}

/// Why one pod is not serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The pod.
    pub pod: String,
    /// The container, where one is at fault.
    pub container: Option<String>,
    /// `Unschedulable`, `ImagePullBackOff`, `CrashLoopBackOff`, `NotReady`, ...
    pub reason: String,
    /// What the kubelet or scheduler said.
    pub message: String,
    /// Crash-looping: fetch the previous container's log.
    pub wants_log: bool,
}

impl Problem {
    /// One line.
    pub fn line(&self) -> String {
        let mut s = format!("pod {}", self.pod);
        if let Some(c) = &self.container {
            s.push_str(&format!(" container {c}"));
        }
        s.push_str(&format!(": {}", self.reason));
        if !self.message.is_empty() {
            s.push_str(&format!(" ({})", self.message.trim()));
        }
        s
    }
}

/// The pods' problems, worst first (scheduling, image, crash, readiness).
pub fn diagnose(pods: &[Pod]) -> Vec<Problem> {
    let mut out = Vec::new();
    for p in pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let st = p.status.clone().unwrap_or_default();
        let conds = st.conditions.clone().unwrap_or_default();
        if let Some(c) = conds
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        {
            out.push(Problem {
                pod: name.clone(),
                container: None,
                reason: format!(
                    "Pending, {}",
                    c.reason.clone().unwrap_or_else(|| "not scheduled".into())
                ),
                message: c.message.clone().unwrap_or_default(),
                wants_log: false,
            });
            continue;
        }
        let mut found = false;
        for cs in st.container_statuses.clone().unwrap_or_default() {
            let waiting = cs.state.as_ref().and_then(|s| s.waiting.clone());
            if let Some(w) = waiting {
                let reason = w.reason.clone().unwrap_or_else(|| "Waiting".into());
                if reason == "ContainerCreating" || reason == "PodInitializing" {
                    continue;
                }
                let crash = reason == "CrashLoopBackOff";
                let mut message = w.message.clone().unwrap_or_default();
                if crash {
                    let last = cs
                        .last_state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .map(|t| {
                            format!(
                                "exit code {}{}",
                                t.exit_code,
                                t.reason
                                    .as_ref()
                                    .map(|r| format!(", {r}"))
                                    .unwrap_or_default()
                            )
                        });
                    message = format!(
                        "{} restarts{}",
                        cs.restart_count,
                        last.map(|l| format!(", last {l}")).unwrap_or_default()
                    );
                }
                out.push(Problem {
                    pod: name.clone(),
                    container: Some(cs.name.clone()),
                    reason,
                    message,
                    wants_log: crash,
                });
                found = true;
            } else if cs.state.as_ref().is_some_and(|s| s.running.is_some()) && !cs.ready {
                out.push(Problem {
                    pod: name.clone(),
                    container: Some(cs.name.clone()),
                    reason: "Running, not ready".into(),
                    message: "its readiness probe is failing".into(),
                    wants_log: false,
                });
                found = true;
            }
        }
        if !found && st.phase.as_deref() == Some("Failed") {
            out.push(Problem {
                pod: name,
                container: None,
                reason: st.reason.unwrap_or_else(|| "Failed".into()),
                message: st.message.unwrap_or_default(),
                wants_log: false,
            });
        }
    }
    let rank = |p: &Problem| {
        if p.reason.starts_with("Pending") {
            0
        } else if p.reason.contains("Image") || p.reason.contains("Pull") {
            1
        } else if p.wants_log {
            2
        } else {
            3
        }
    };
    out.sort_by_key(rank);
    out
}

/// What a Deployment's conditions say when its pods do not explain it (ReplicaFailure: quota,
/// a missing ServiceAccount; Progressing False: the progress deadline passed).
pub fn conditions(d: &Deployment) -> Option<String> {
    let conds = d.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| {
            (c.type_ == "ReplicaFailure" && c.status == "True")
                || (c.type_ == "Progressing" && c.status == "False")
        })
        .map(|c| {
            format!(
                "{}: {}",
                c.reason.clone().unwrap_or_else(|| c.type_.clone()),
                c.message.clone().unwrap_or_default()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn done_needs_the_newest_generation_and_no_old_pods() {
        let d = |gen: i64, obs: i64, total: i32| -> Deployment {
            serde_json::from_value(json!({"metadata": {"name": "serve", "generation": gen},
                "spec": {"replicas": 2, "selector": {}, "template": {}},
                "status": {"observedGeneration": obs, "replicas": total, "updatedReplicas": 2,
                           "readyReplicas": total, "availableReplicas": 2}}))
            .unwrap()
        };
        assert!(rollout(&d(2, 2, 2)).done());
        assert!(
            !rollout(&d(3, 2, 2)).done(),
            "the controller has not seen it"
        );
        let r = rollout(&d(2, 2, 3));
        assert!(!r.done());
        assert_eq!(r.line(), "serve 2/2 updated, 3 ready, 2 available, 1 old");
    }

    #[test]
    fn pods_say_why_they_are_not_serving() {
        let pods = vec![
            pod(
                json!({"metadata": {"name": "ok"}, "status": {"phase": "Running",
                "containerStatuses": [{"name": "serve", "ready": true, "restartCount": 0, "image": "i", "imageID": "",
                    "state": {"running": {}}}]}}),
            ),
            pod(
                json!({"metadata": {"name": "crash"}, "status": {"phase": "Running",
                "containerStatuses": [{"name": "serve", "ready": false, "restartCount": 4, "image": "i", "imageID": "",
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                    "lastState": {"terminated": {"exitCode": 2}}}]}}),
            ),
            pod(
                json!({"metadata": {"name": "pull"}, "status": {"phase": "Pending",
                "containerStatuses": [{"name": "serve", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope\""}}}]}}),
            ),
            pod(
                json!({"metadata": {"name": "pending"}, "status": {"phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient cpu."}]}}),
            ),
        ];
        let got: Vec<String> = diagnose(&pods).iter().map(Problem::line).collect();
        assert_eq!(
            got,
            vec![
                "pod pending: Pending, Unschedulable (0/3 nodes are available: 3 Insufficient cpu.)",
                "pod pull container serve: ImagePullBackOff (Back-off pulling image \"nope\")",
                "pod crash container serve: CrashLoopBackOff (4 restarts, last exit code 2)",
            ]
        );
        assert!(diagnose(&pods)[2].wants_log);
    }
}
