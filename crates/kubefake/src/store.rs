//! The object store behind the fake API: one global resourceVersion counter, optimistic
//! concurrency, generateName, selectors, JSON merge patches, and an event log that watches
//! replay from (410 Gone once a version has fallen out of it).

use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};

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

    /// The key of its collection.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.group, self.version, self.plural)
    }
}

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

/// Why a call failed, as the API server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 404.
    NotFound(String),
    /// 409, create of a name that exists.
    AlreadyExists(String),
    /// 409, a stale resourceVersion.
    Conflict(String),
    /// 422 / 400.
    Invalid(String),
    /// 410: the version asked for is older than the event log.
    Gone(String),
}

impl ApiError {
    /// HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound(_) => 404,
            ApiError::AlreadyExists(_) | ApiError::Conflict(_) => 409,
            ApiError::Invalid(_) => 422,
            ApiError::Gone(_) => 410,
        }
    }

    /// A `Status` object, as the API server sends with an error.
    pub fn status(&self) -> Value {
        let (reason, msg) = match self {
            ApiError::NotFound(m) => ("NotFound", m),
            ApiError::AlreadyExists(m) => ("AlreadyExists", m),
            ApiError::Conflict(m) => ("Conflict", m),
            ApiError::Invalid(m) => ("Invalid", m),
            ApiError::Gone(m) => ("Expired", m),
        };
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": msg, "reason": reason, "code": self.code()})
    }
}

/// Every object, and the recent changes.
pub struct Store {
    rv: u64,
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    log: VecDeque<Event>,
    log_cap: usize,
    /// Versions at or below this are no longer in the log.
    floor: u64,
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

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
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
                self.floor = gone.rv;
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
                r.plural
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
        m.insert("creationTimestamp".into(), json!("2026-01-01T00:00:00Z"));
        m.insert("generation".into(), json!(1));
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
            .ok_or_else(|| ApiError::NotFound(format!("{} \"{name}\" not found", r.plural)))
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
        let current = self.get(r, ns, name)?;
        let cur_rv = meta(&current, "resourceVersion");
        if let Some(want) = meta(&body, "resourceVersion") {
            if Some(&want) != cur_rv.as_ref() {
                return Err(ApiError::Conflict(format!(
                    "the object has been modified; please apply your changes to the latest version and try again (have {}, got {want})",
                    cur_rv.unwrap_or_default()
                )));
            }
        }
        let mut next = current.clone();
        if status_only {
            let status = if patch {
                let mut s = current.get("status").cloned().unwrap_or(json!({}));
                merge_patch(&mut s, body.get("status").unwrap_or(&Value::Null));
                s
            } else {
                body.get("status").cloned().unwrap_or(Value::Null)
            };
            next["status"] = status;
        } else {
            if patch {
                merge_patch(&mut next, &body);
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
            .ok_or_else(|| ApiError::NotFound(format!("{} \"{name}\" not found", r.plural)))?;
        self.bump(&mut o);
        let e = self.record(&coll, "DELETED", o.clone());
        Ok((o, e))
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
    pub fn list(&self, r: &Resource, ns: Option<&str>, sel: &Selectors) -> Vec<Value> {
        self.objects
            .get(&r.key())
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
                    .map(|(_, o)| o)
                    .filter(|o| sel.matches(o))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Changes after `rv` in a collection, oldest first; Gone when the log no longer reaches
    /// back that far.
    pub fn since(&self, coll: &str, rv: u64) -> Result<Vec<Event>, ApiError> {
        if rv < self.floor {
            return Err(ApiError::Gone(format!(
                "too old resource version: {rv} ({})",
                self.floor
            )));
        }
        Ok(self
            .log
            .iter()
            .filter(|e| e.rv > rv && e.coll == coll)
            .cloned()
            .collect())
    }
}

/// Label and field selectors, as in `?labelSelector=` and `?fieldSelector=`.
#[derive(Debug, Default, Clone)]
pub struct Selectors {
    labels: Vec<Term>,
    fields: Vec<Term>,
}

#[derive(Debug, Clone)]
enum Term {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

fn split_terms(s: &str) -> Vec<String> {
    // Commas inside `in (a,b)` do not separate terms.
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_terms(s: &str, sets: bool) -> Result<Vec<Term>, ApiError> {
    let bad = || ApiError::Invalid(format!("unable to parse selector {s:?}"));
    let mut out = Vec::new();
    for t in split_terms(s) {
        let set = |rest: &str| -> Option<Vec<String>> {
            let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
            Some(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let term = if let Some((k, v)) = t.split_once("!=") {
            Term::Ne(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            Term::Eq(k.trim().into(), v.trim().into())
        } else if let (true, Some((k, rest))) = (sets, t.split_once(" notin ")) {
            Term::NotIn(k.trim().into(), set(rest).ok_or_else(bad)?)
        } else if let (true, Some((k, rest))) = (sets, t.split_once(" in ")) {
            Term::In(k.trim().into(), set(rest).ok_or_else(bad)?)
        } else if let (true, Some(k)) = (sets, t.strip_prefix('!')) {
            Term::Absent(k.trim().into())
        } else if sets && !t.contains(' ') {
            Term::Exists(t)
        } else {
            return Err(bad());
        };
        out.push(term);
    }
    Ok(out)
}

fn term_matches(t: &Term, get: impl Fn(&str) -> Option<String>) -> bool {
    match t {
        Term::Eq(k, v) => get(k).as_deref() == Some(v.as_str()),
        Term::Ne(k, v) => get(k).as_deref() != Some(v.as_str()),
        Term::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
        Term::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
        Term::Exists(k) => get(k).is_some(),
        Term::Absent(k) => get(k).is_none(),
    }
}

impl Selectors {
    /// Parse `labelSelector` and `fieldSelector` values.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selectors, ApiError> {
        Ok(Selectors {
            labels: parse_terms(labels.unwrap_or(""), true)?,
            fields: parse_terms(fields.unwrap_or(""), false)?,
        })
    }

    /// Whether an object matches both.
    pub fn matches(&self, o: &Value) -> bool {
        let label = |k: &str| {
            o.get("metadata")?
                .get("labels")?
                .get(k)?
                .as_str()
                .map(str::to_string)
        };
        let field = |path: &str| {
            let mut v = o;
            for part in path.split('.') {
                v = v.get(part)?;
            }
            match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        self.labels.iter().all(|t| term_matches(t, label))
            && self.fields.iter().all(|t| term_matches(t, field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm() -> Resource {
        Resource {
            group: String::new(),
            version: "v1".into(),
            plural: "configmaps".into(),
            kind: "ConfigMap".into(),
            namespaced: true,
        }
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
    fn selectors_match_labels_and_fields() {
        let o = json!({"metadata": {"name": "p", "labels": {"app": "web", "tier": "fe"}},
                       "spec": {"nodeName": "n1"}});
        let m = |l: &str, f: &str| Selectors::parse(Some(l), Some(f)).unwrap().matches(&o);
        assert!(m("app=web,tier in (fe, be)", "spec.nodeName=n1"));
        assert!(m("app==web,!gone,tier", "metadata.name!=q"));
        assert!(!m("app!=web", ""));
        assert!(!m("tier notin (fe)", ""));
        assert!(!m("", "spec.nodeName=n2"));
        assert!(Selectors::parse(Some("a in b"), None).is_err());
    }

    #[test]
    fn the_event_log_replays_and_then_reports_gone() {
        let mut s = Store::new(3);
        for i in 0..5 {
            s.create(&cm(), "ns", json!({"metadata": {"name": format!("o{i}")}}))
                .unwrap();
        }
        // Versions 2..=6 were made; the log keeps 4, 5, 6.
        let got: Vec<u64> = s
            .since(&cm().key(), 4)
            .unwrap()
            .iter()
            .map(|e| e.rv)
            .collect();
        assert_eq!(got, vec![5, 6]);
        assert!(s.since(&cm().key(), 3).is_ok());
        assert_eq!(s.since(&cm().key(), 2).unwrap_err().code(), 410);
        // After a compaction even the newest version handed out is too old.
        let now = s.rv();
        s.compact();
        assert_eq!(s.since(&cm().key(), now).unwrap_err().code(), 410);
        assert!(s.since(&cm().key(), s.rv()).is_ok());
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
}
