//! The object store behind the fake API: one global resourceVersion counter, optimistic
//! concurrency, generateName, selector queries, merge and strategic merge patches
//! ([`crate::patch`]), server-side apply ([`crate::apply`]), real creation timestamps, the
//! pod rules a kubelet depends on (a new pod is Pending; `pods/binding` sets the node once; a
//! bound pod's delete only marks it until its kubelet deletes it with grace 0), and an event
//! log that watches replay from (410 Gone once a version has fallen out of it).

use crate::error::ApiError;
use crate::patch::{merge_patch, strategic_merge};
use crate::resource::Resource;
use crate::selectors::Selectors;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A change, as a watch delivers it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The version this change made.
    pub rv: u64,
    /// The collection it happened in.
    pub coll: String,
    /// ADDED, MODIFIED or DELETED.
    pub kind: &'static str,
    /// The object after the change (before it, for DELETED, with the new version).
    pub object: Value,
}

/// Every object, and the recent changes.
pub struct Store {
    rv: u64,
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    log: VecDeque<Event>,
    log_cap: usize,
    /// Versions below this are too old for every collection (after a compaction).
    floor: u64,
    /// Per collection: its changes at or below this version have left the log. As the API
    /// server's watch cache keeps a window per resource, a quiet collection's watch may
    /// resume from an old version even while a busy one (leases) cycles the shared log.
    dropped: BTreeMap<String, u64>,
    names: u64,
}

fn meta(o: &Value, field: &str) -> Option<String> {
    o.get("metadata")?.get(field)?.as_str().map(str::to_string)
}

fn meta_mut(o: &mut Value) -> &mut Map<String, Value> {
    if !o.get("metadata").is_some_and(Value::is_object) {
        o["metadata"] = json!({});
    }
    o["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// The wall clock as the API server writes timestamps: RFC 3339, whole seconds, UTC.
pub fn now_rfc3339() -> String {
    rfc3339(unix_now())
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z): later times (a token asked to
/// last i64::MAX seconds) are written as that.
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// `secs` since the Unix epoch as RFC 3339 (UTC, whole seconds).
pub fn rfc3339(secs: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(secs.min(LAST_RFC3339_SECOND));
    humantime::format_rfc3339_seconds(at).to_string()
}

impl Store {
    /// An empty store keeping the last `log_cap` changes for watches.
    pub fn new(log_cap: usize) -> Store {
        Store {
            rv: 1,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            log_cap: log_cap.max(1),
            floor: 0,
            dropped: BTreeMap::new(),
            names: 0,
        }
    }

    /// The current resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    fn record(&mut self, coll: &str, kind: &'static str, object: Value) -> Event {
        let e = Event {
            rv: self.rv,
            coll: coll.to_string(),
            kind,
            object,
        };
        self.log.push_back(e.clone());
        while self.log.len() > self.log_cap {
            if let Some(gone) = self.log.pop_front() {
                self.dropped.insert(gone.coll, gone.rv);
            }
        }
        e
    }

    fn bump(&mut self, o: &mut Value) {
        self.rv += 1;
        meta_mut(o).insert("resourceVersion".into(), json!(self.rv.to_string()));
    }

    /// Create; returns the stored object and its event.
    pub fn create(
        &mut self,
        r: &Resource,
        ns: &str,
        mut o: Value,
    ) -> Result<(Value, Event), ApiError> {
        if !o.is_object() {
            return Err(ApiError::Invalid("the body must be a JSON object".into()));
        }
        let name = match (meta(&o, "name"), meta(&o, "generateName")) {
            (Some(n), _) if !n.is_empty() => n,
            (_, Some(prefix)) if !prefix.is_empty() => {
                self.names += 1;
                // Five characters like the API server's, unique by construction.
                format!("{prefix}{:05x}", (self.names * 0x9E37) % 0xFFFFF)
            }
            _ => {
                return Err(ApiError::Invalid(
                    "metadata.name or generateName is required".into(),
                ))
            }
        };
        let coll = r.key();
        let key = (ns.to_string(), name.clone());
        if self
            .objects
            .get(&coll)
            .is_some_and(|m| m.contains_key(&key))
        {
            return Err(ApiError::AlreadyExists(format!(
                "{} \"{name}\" already exists",
                r.qualified()
            )));
        }
        o["apiVersion"] = json!(r.api_version());
        o["kind"] = json!(r.kind);
        let m = meta_mut(&mut o);
        m.insert("name".into(), json!(name));
        if r.namespaced {
            m.insert("namespace".into(), json!(ns));
        }
        m.insert("uid".into(), json!(format!("fake-uid-{}", self.rv + 1)));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        m.insert("generation".into(), json!(1));
        if r.kind == "Pod" && r.group.is_empty() {
            // The pod strategy drops a client's status: a new pod is Pending.
            o["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        self.bump(&mut o);
        self.objects
            .entry(coll.clone())
            .or_default()
            .insert(key, o.clone());
        let e = self.record(&coll, "ADDED", o.clone());
        Ok((o, e))
    }

    /// Read one object.
    pub fn get(&self, r: &Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&r.key())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("{} \"{name}\" not found", r.qualified())))
    }

    /// Replace (`patch` false: PUT) or merge-patch an object, or only its status.
    pub fn update(
        &mut self,
        r: &Resource,
        ns: &str,
        name: &str,
        body: Value,
        patch: bool,
        status_only: bool,
    ) -> Result<(Value, Event), ApiError> {
        self.update_as(r, ns, name, body, patch, status_only, false)
    }

    /// [`Store::update`], with `strategic`: apply a patch as a strategic merge patch.
    #[allow(clippy::too_many_arguments)]
    pub fn update_as(
        &mut self,
        r: &Resource,
        ns: &str,
        name: &str,
        body: Value,
        patch: bool,
        status_only: bool,
        strategic: bool,
    ) -> Result<(Value, Event), ApiError> {
        let merge = if strategic {
            strategic_merge
        } else {
            merge_patch
        };
        let current = self.get(r, ns, name)?;
        let cur_rv = meta(&current, "resourceVersion");
        if let Some(want) = meta(&body, "resourceVersion") {
            if Some(&want) != cur_rv.as_ref() {
                return Err(ApiError::Conflict(format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been \
                     modified; please apply your changes to the latest version and try again",
                    r.qualified()
                )));
            }
        }
        let mut next = current.clone();
        if status_only {
            let status = if patch {
                let mut s = current.get("status").cloned().unwrap_or(json!({}));
                merge(&mut s, body.get("status").unwrap_or(&Value::Null));
                s
            } else {
                body.get("status").cloned().unwrap_or(Value::Null)
            };
            next["status"] = status;
        } else {
            if patch {
                merge(&mut next, &body);
            } else {
                next = body;
            }
            // The main resource does not change status (status subresource semantics).
            match current.get("status") {
                Some(s) => next["status"] = s.clone(),
                None => {
                    if let Some(o) = next.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            // Identity fields stay what they were.
            let keep = current["metadata"].clone();
            let m = meta_mut(&mut next);
            for f in ["name", "namespace", "uid", "creationTimestamp"] {
                match keep.get(f) {
                    Some(v) => m.insert(f.into(), v.clone()),
                    None => m.remove(f),
                };
            }
            let generation = keep.get("generation").and_then(Value::as_i64).unwrap_or(1);
            m.insert("generation".into(), json!(generation + 1));
            next["apiVersion"] = json!(r.api_version());
            next["kind"] = json!(r.kind);
        }
        let e = self.replace(r, ns, name, &mut next);
        Ok((next, e))
    }

    /// Store a new version of an existing object: a new resourceVersion and a MODIFIED event.
    fn replace(&mut self, r: &Resource, ns: &str, name: &str, next: &mut Value) -> Event {
        self.bump(next);
        let coll = r.key();
        self.objects
            .entry(coll.clone())
            .or_default()
            .insert((ns.to_string(), name.to_string()), next.clone());
        self.record(&coll, "MODIFIED", next.clone())
    }

    /// Server-side apply by `manager` (see [`crate::apply`]): creates the object when it does
    /// not exist; returns the stored object, and the event unless nothing changed.
    pub fn apply(
        &mut self,
        r: &Resource,
        ns: &str,
        name: &str,
        config: &Value,
        manager: &str,
        force: bool,
    ) -> Result<(Value, Option<Event>), ApiError> {
        let current = self.get(r, ns, name).ok();
        // The main resource's apply does not set status (status subresource semantics).
        let mut config = config.clone();
        if let Some(m) = config.as_object_mut() {
            m.remove("status");
        }
        let mut next =
            crate::apply::apply(current.as_ref(), &config, &r.api_version(), manager, force)?;
        let Some(cur) = current else {
            let (o, e) = self.create(r, ns, next)?;
            return Ok((o, Some(e)));
        };
        if next == cur {
            return Ok((cur, None));
        }
        let generation = cur["metadata"]["generation"].as_i64().unwrap_or(1);
        let moved = crate::apply::spec_changed(&cur, &next);
        meta_mut(&mut next).insert(
            "generation".into(),
            json!(if moved { generation + 1 } else { generation }),
        );
        let e = self.replace(r, ns, name, &mut next);
        Ok((next, Some(e)))
    }

    /// Delete; returns the object as it was, with the deletion's version.
    pub fn delete(
        &mut self,
        r: &Resource,
        ns: &str,
        name: &str,
    ) -> Result<(Value, Event), ApiError> {
        let coll = r.key();
        let mut o = self
            .objects
            .get_mut(&coll)
            .and_then(|m| m.remove(&(ns.to_string(), name.to_string())))
            .ok_or_else(|| ApiError::NotFound(format!("{} \"{name}\" not found", r.qualified())))?;
        self.bump(&mut o);
        let e = self.record(&coll, "DELETED", o.clone());
        Ok((o, e))
    }

    /// Delete as the API server deletes a pod: one bound to a node and not finished is only
    /// marked (`deletionTimestamp` = now + grace, `deletionGracePeriodSeconds`), for its
    /// kubelet to stop it and delete it again with grace 0; anything else (or grace 0) goes at
    /// once. `uid`: the precondition of DeleteOptions (409 when it does not match). Returns the
    /// object, the event, and whether it is gone.
    pub fn delete_pod(
        &mut self,
        r: &Resource,
        ns: &str,
        name: &str,
        grace: Option<i64>,
        uid: Option<&str>,
    ) -> Result<(Value, Option<Event>, bool), ApiError> {
        let current = self.get(r, ns, name)?;
        if let Some(want) = uid {
            if meta(&current, "uid").as_deref() != Some(want) {
                return Err(ApiError::Conflict(format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {}",
                    meta(&current, "uid").unwrap_or_default()
                )));
            }
        }
        let bound = current
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            current.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        let grace = grace.unwrap_or_else(|| {
            current
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        if !bound || finished || grace <= 0 {
            let (o, e) = self.delete(r, ns, name)?;
            return Ok((o, Some(e), true));
        }
        if current.pointer("/metadata/deletionTimestamp").is_some() {
            // Already terminating: a second graceful delete changes nothing.
            return Ok((current, None, false));
        }
        let mut next = current;
        let m = meta_mut(&mut next);
        m.insert(
            "deletionTimestamp".into(),
            json!(rfc3339(unix_now() + grace as u64)),
        );
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        self.bump(&mut next);
        let coll = r.key();
        self.objects
            .entry(coll.clone())
            .or_default()
            .insert((ns.to_string(), name.to_string()), next.clone());
        let e = self.record(&coll, "MODIFIED", next.clone());
        Ok((next, Some(e), false))
    }

    /// Bind a pod to a node (`pods/binding`): sets `spec.nodeName` and the `PodScheduled`
    /// condition, as the API server's binding storage does; 409 when it is already bound.
    pub fn bind(
        &mut self,
        r: &Resource,
        ns: &str,
        name: &str,
        node: &str,
    ) -> Result<(Value, Event), ApiError> {
        let current = self.get(r, ns, name)?;
        if current.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::Conflict(format!(
                "pod {name} is being deleted, cannot be assigned to a host"
            )));
        }
        if let Some(n) = current
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::Conflict(format!(
                "pod {name} is already assigned to node \"{n}\""
            )));
        }
        let mut next = current;
        next["spec"]["nodeName"] = json!(node);
        let cond = json!({"type": "PodScheduled", "status": "True",
                          "lastProbeTime": null, "lastTransitionTime": now_rfc3339()});
        if !next.get("status").is_some_and(Value::is_object) {
            next["status"] = json!({});
        }
        strategic_merge(&mut next["status"], &json!({"conditions": [cond]}));
        self.bump(&mut next);
        let coll = r.key();
        self.objects
            .entry(coll.clone())
            .or_default()
            .insert((ns.to_string(), name.to_string()), next.clone());
        let e = self.record(&coll, "MODIFIED", next.clone());
        Ok((next, e))
    }

    /// Forget all history, as after an etcd compaction that passed every watcher: any
    /// version handed out so far is then too old to watch from.
    pub fn compact(&mut self) {
        self.log.clear();
        // A new version, so that a list taken now can be watched from.
        self.rv += 1;
        self.floor = self.rv;
    }

    /// Every object of a collection, in all namespaces (for cascading deletes).
    pub fn keys(&self, r: &Resource) -> Vec<(String, String)> {
        self.objects
            .get(&r.key())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Objects of a collection (in `ns`, or everywhere when `None`) that match the selectors.
    ///
    /// A `metadata.name=X` field selector is matched on the key first, not on every object's
    /// body: the API server turns it into a single-key lookup, and a kubelet and kube-proxy per
    /// hollow node list their own Node that way (10,000 lists of 5,000 nodes otherwise).
    pub fn list(&self, r: &Resource, ns: Option<&str>, sel: &Selectors) -> Vec<Value> {
        let named = sel.field_equals("metadata.name");
        self.objects
            .get(&r.key())
            .map(|m| {
                m.iter()
                    .filter(|((n, name), _)| {
                        ns.is_none_or(|want| want == n) && named.is_none_or(|want| want == name)
                    })
                    .map(|(_, o)| o)
                    .filter(|o| sel.matches(o))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Changes after `rv` in a collection, oldest first, borrowed (thousands of watches
    /// resuming at once must not each copy every change they then filter out); Gone when the
    /// log no longer reaches back that far.
    pub fn since<'a>(
        &'a self,
        coll: &'a str,
        rv: u64,
    ) -> Result<impl Iterator<Item = &'a Event> + 'a, ApiError> {
        let floor = self.floor.max(self.dropped.get(coll).copied().unwrap_or(0));
        if rv < floor {
            return Err(ApiError::Gone(format!(
                "too old resource version: {rv} ({floor})"
            )));
        }
        // The log is in version order: start at the first change after `rv` (a watch that
        // resumes near the head must not scan the whole log under the store's lock).
        let first = self.log.partition_point(|e| e.rv <= rv);
        Ok(self.log.range(first..).filter(move |e| e.coll == coll))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(plural: &str, kind: &str) -> Resource {
        Resource {
            group: String::new(),
            version: "v1".into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced: true,
        }
    }

    fn cm() -> Resource {
        core("configmaps", "ConfigMap")
    }

    #[test]
    fn versions_come_from_one_counter_and_stale_writes_conflict() {
        let mut s = Store::new(100);
        let (a, _) = s
            .create(&cm(), "ns", json!({"metadata": {"name": "a"}}))
            .unwrap();
        let (b, _) = s
            .create(&cm(), "ns", json!({"metadata": {"generateName": "b-"}}))
            .unwrap();
        assert_eq!(meta(&a, "resourceVersion").unwrap(), "2");
        assert_eq!(meta(&b, "resourceVersion").unwrap(), "3");
        assert!(meta(&b, "name").unwrap().starts_with("b-"));
        assert_eq!(
            s.create(&cm(), "ns", json!({"metadata": {"name": "a"}}))
                .unwrap_err()
                .code(),
            409
        );
        let stale = json!({"metadata": {"name": "a", "resourceVersion": "1"}, "data": {"k": "v"}});
        assert!(matches!(
            s.update(&cm(), "ns", "a", stale, false, false),
            Err(ApiError::Conflict(_))
        ));
        let (p, _) = s
            .update(&cm(), "ns", "a", json!({"data": {"k": "v"}}), true, false)
            .unwrap();
        assert_eq!(p["data"]["k"], "v");
        assert_eq!(meta(&p, "resourceVersion").unwrap(), "4");
        let (d, e) = s.delete(&cm(), "ns", "a").unwrap();
        assert_eq!((e.kind, e.rv), ("DELETED", 5));
        assert_eq!(meta(&d, "resourceVersion").unwrap(), "5");
        assert_eq!(s.get(&cm(), "ns", "a").unwrap_err().code(), 404);
    }

    #[test]
    fn the_event_log_replays_and_then_reports_gone() {
        let mut s = Store::new(3);
        for i in 0..5 {
            s.create(&cm(), "ns", json!({"metadata": {"name": format!("o{i}")}}))
                .unwrap();
        }
        // Versions 2..=6 were made; the log keeps 4, 5, 6.
        let got: Vec<u64> = s.since(&cm().key(), 4).unwrap().map(|e| e.rv).collect();
        assert_eq!(got, vec![5, 6]);
        assert!(s.since(&cm().key(), 3).is_ok());
        assert_eq!(s.since(&cm().key(), 2).err().map(|e| e.code()), Some(410));
        // After a compaction even the newest version handed out is too old.
        let now = s.rv();
        s.compact();
        assert_eq!(s.since(&cm().key(), now).err().map(|e| e.code()), Some(410));
        assert!(s.since(&cm().key(), s.rv()).is_ok());
    }

    #[test]
    fn a_quiet_collection_resumes_from_an_old_version_while_a_busy_one_cycles_the_log() {
        let mut s = Store::new(3);
        let quiet = core("pods", "Pod");
        s.create(&quiet, "ns", json!({"metadata": {"name": "p"}}))
            .unwrap();
        let old = s.rv();
        for i in 0..5 {
            s.create(&cm(), "ns", json!({"metadata": {"name": format!("o{i}")}}))
                .unwrap();
        }
        // The pod's change has left the log, but nothing of pods after `old` has: as a
        // resource's own watch-cache window, pods can still be watched from `old`.
        assert_eq!(s.since(&quiet.key(), old).map(|e| e.count()).ok(), Some(0));
        assert_eq!(
            s.since(&quiet.key(), old - 1).err().map(|e| e.code()),
            Some(410)
        );
        assert_eq!(s.since(&cm().key(), old).err().map(|e| e.code()), Some(410));
    }

    #[test]
    fn status_updates_touch_only_status() {
        let mut s = Store::new(10);
        s.create(
            &cm(),
            "ns",
            json!({"metadata": {"name": "a"}, "spec": {"x": 1}}),
        )
        .unwrap();
        let (o, _) = s
            .update(
                &cm(),
                "ns",
                "a",
                json!({"spec": {"x": 9}, "status": {"ok": true}}),
                true,
                true,
            )
            .unwrap();
        assert_eq!(
            (o["spec"]["x"].as_i64(), o["status"]["ok"].as_bool()),
            (Some(1), Some(true))
        );
        let (o, _) = s
            .update(
                &cm(),
                "ns",
                "a",
                json!({"metadata": {"name": "a"}, "spec": {"x": 2}}),
                false,
                false,
            )
            .unwrap();
        assert_eq!(
            o["status"]["ok"], true,
            "PUT on the main resource keeps status"
        );
        assert_eq!(o["metadata"]["generation"], 2);
    }

    fn pods() -> Resource {
        core("pods", "Pod")
    }

    #[test]
    fn a_binding_sets_the_node_once_and_a_bound_pod_is_deleted_gracefully() {
        let mut s = Store::new(100);
        let (p, _) = s
            .create(
                &pods(),
                "ns",
                json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}}),
            )
            .unwrap();
        assert_eq!(
            p["status"]["phase"], "Pending",
            "the pod strategy resets status"
        );
        assert!(p["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z'));
        let (b, _) = s.bind(&pods(), "ns", "p", "n1").unwrap();
        assert_eq!(b["spec"]["nodeName"], "n1");
        assert_eq!(b["status"]["conditions"][0]["type"], "PodScheduled");
        assert_eq!(s.bind(&pods(), "ns", "p", "n2").unwrap_err().code(), 409);
        // Bound and not finished: marked, not removed; a wrong UID precondition is a 409.
        assert_eq!(
            s.delete_pod(&pods(), "ns", "p", None, Some("other"))
                .unwrap_err()
                .code(),
            409
        );
        let (o, e, gone) = s.delete_pod(&pods(), "ns", "p", None, None).unwrap();
        assert!(!gone && e.is_some());
        assert_eq!(o["metadata"]["deletionGracePeriodSeconds"], 30);
        let (_, e, gone) = s.delete_pod(&pods(), "ns", "p", Some(30), None).unwrap();
        assert!(
            !gone && e.is_none(),
            "a second graceful delete changes nothing"
        );
        let uid = o["metadata"]["uid"].as_str().unwrap().to_string();
        let (_, _, gone) = s
            .delete_pod(&pods(), "ns", "p", Some(0), Some(&uid))
            .unwrap();
        assert!(gone);
        assert_eq!(s.get(&pods(), "ns", "p").unwrap_err().code(), 404);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_whole_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
    }
}
