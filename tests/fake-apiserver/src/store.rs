//! The object store: objects, the one global resourceVersion counter, the watch event log,
//! label/field selectors, and the write semantics of a real API server (create, replace,
//! patch, delete with finalizers, status subresources, no-op writes that change nothing).

use crate::ApiError;
use crate::patch;
use crate::resources::{self, Resource};
use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::watch;

/// Which part of an object a write may change.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Sub {
    Main,
    Status,
}

/// How a PATCH body applies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum PatchKind {
    /// JSON merge patch; also strategic merge patch, whose lists then replace, not merge.
    Merge,
    Json,
    /// Server-side apply, without managedFields: a merge patch that creates when missing.
    Apply,
}

/// One change, as watches replay it.
struct Event {
    rv: u64,
    key: (String, String),
    namespace: String,
    kind: &'static str,
    object: Arc<Value>,
    /// The previous state of a MODIFIED object, so selector watches see it enter or leave.
    old: Option<Arc<Value>>,
}

/// What a list or watch selects: one resource, maybe one namespace, selectors.
pub(crate) struct Filter {
    pub(crate) namespace: Option<String>,
    pub(crate) selector: Selector,
}

impl Filter {
    fn matches(&self, namespace: &str, obj: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace) && self.selector.matches(obj)
    }
}

/// Where a read or write lands: a resource, a namespace ("" when cluster-scoped), a name.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub(crate) res: &'a Resource,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
}

impl At<'_> {
    fn key(&self) -> (String, String) {
        (self.namespace.into(), self.name.into())
    }
}

#[derive(Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    In,
    NotIn,
    Exists,
    NotExists,
}

#[derive(Debug)]
struct Requirement {
    field: bool,
    key: String,
    op: Op,
    values: Vec<String>,
}

/// A parsed `labelSelector` plus `fieldSelector` (any dotted path, compared as a string).
#[derive(Debug, Default)]
pub(crate) struct Selector(Vec<Requirement>);

impl Selector {
    pub(crate) fn parse(labels: &str, fields: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for (text, field) in [(labels, false), (fields, true)] {
            for term in split_top(text)
                .into_iter()
                .map(str::trim)
                .filter(|t| !t.is_empty())
            {
                out.push(
                    requirement(term, field)
                        .ok_or_else(|| format!("unable to parse requirement {term:?}"))?,
                );
            }
        }
        Ok(Self(out))
    }

    fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|r| {
            let value = if r.field {
                let v = r.key.split('.').try_fold(obj, |v, k| v.get(k));
                Some(v.map_or(String::new(), |v| {
                    v.as_str().map_or_else(|| v.to_string(), String::from)
                }))
            } else {
                obj.pointer("/metadata/labels")
                    .and_then(|l| l.get(&r.key))
                    .and_then(Value::as_str)
                    .map(String::from)
            };
            let listed = value.as_ref().is_some_and(|v| r.values.contains(v));
            match r.op {
                Op::Eq | Op::In => listed,
                Op::Ne | Op::NotIn => !listed,
                Op::Exists => value.is_some(),
                Op::NotExists => value.is_none(),
            }
        })
    }
}

/// Splits on commas outside parentheses (`a in (x,y),b` is two requirements).
fn split_top(text: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

fn requirement(term: &str, field: bool) -> Option<Requirement> {
    let req = |key: &str, op, values: Vec<&str>| {
        let key = key.trim().to_string();
        let values: Vec<String> = values.into_iter().map(|v| v.trim().to_string()).collect();
        let valid = |s: &str, extra: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c) || extra.contains(c))
        };
        let ok =
            !key.is_empty() && valid(&key, "/") && (field || values.iter().all(|v| valid(v, "")));
        ok.then_some(Requirement {
            field,
            key,
            op,
            values,
        })
    };
    if let Some((head, tail)) = term.split_once('(') {
        let (key, op) = head.trim().rsplit_once(char::is_whitespace)?;
        let op = match op {
            "in" => Op::In,
            "notin" => Op::NotIn,
            _ => return None,
        };
        return req(
            key,
            op,
            tail.trim_end().strip_suffix(')')?.split(',').collect(),
        )
        .filter(|_| !field);
    }
    if let Some((k, v)) = term.split_once("!=") {
        req(k, Op::Ne, vec![v])
    } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        req(k, Op::Eq, vec![v])
    } else if field {
        None
    } else if let Some(key) = term.strip_prefix('!') {
        req(key, Op::NotExists, vec![])
    } else {
        req(term, Op::Exists, vec![])
    }
}

/// All objects and their history. Cluster-scoped objects live under namespace "".
pub(crate) struct State {
    pub(crate) resources: Vec<Resource>,
    objects: HashMap<(String, String), BTreeMap<(String, String), Value>>,
    rv: u64,
    log: VecDeque<Event>,
    /// Events kept for watches that resume from an older resourceVersion.
    limit: usize,
    /// Events up to this resourceVersion were dropped from the log.
    floor: u64,
    notify: watch::Sender<u64>,
}

pub(crate) fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn meta(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("made an object above")
}

fn text<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// The object without metadata and status: what `metadata.generation` tracks.
fn desired(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(map) = obj.as_object_mut() {
        for key in ["apiVersion", "kind", "metadata", "status"] {
            map.shift_remove(key);
        }
    }
    obj
}

impl State {
    pub(crate) fn new(limit: usize) -> Self {
        let mut state = Self {
            resources: resources::builtins(),
            objects: HashMap::new(),
            rv: 0,
            log: VecDeque::new(),
            limit,
            floor: 0,
            notify: watch::channel(0).0,
        };
        let namespaces = state.lookup("", "v1", "namespaces").expect("built in");
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            state
                .create(&namespaces, "", json!({"metadata": {"name": name}}), false)
                .expect("fresh store");
        }
        state
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    pub(crate) fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Resource> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    pub(crate) fn lookup_kind(&self, api_version: &str, kind: &str) -> Option<Resource> {
        self.resources
            .iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
            .cloned()
    }

    fn find(&self, at: At<'_>) -> Option<&Value> {
        self.objects.get(&at.res.key())?.get(&at.key())
    }

    pub(crate) fn get(&self, at: At<'_>) -> Result<Value, ApiError> {
        let found = self.find(at).map(|o| at.res.view(o));
        found.ok_or_else(|| ApiError::not_found(at.res, at.name))
    }

    pub(crate) fn matching<'a>(
        &'a self,
        res: &Resource,
        filter: &'a Filter,
    ) -> impl Iterator<Item = &'a Value> {
        let objects = self.objects.get(&res.key()).into_iter().flatten();
        objects
            .filter(|((ns, _), obj)| filter.matches(ns, obj))
            .map(|(_, obj)| obj)
    }

    pub(crate) fn list(&self, res: &Resource, filter: &Filter) -> Value {
        let items = self.matching(res, filter).map(|o| res.view(o)).collect();
        self.list_of(res, items)
    }

    /// A `<Kind>List` at the current resourceVersion.
    pub(crate) fn list_of(&self, res: &Resource, items: Vec<Value>) -> Value {
        json!({
            "apiVersion": res.api_version(), "kind": res.list_kind,
            "metadata": {"resourceVersion": self.rv.to_string()}, "items": items,
        })
    }

    /// Watch events after `since` for `res` through `filter`; `None` when `since` is older
    /// than the retained history (410 Gone).
    pub(crate) fn events_since(
        &self,
        since: u64,
        res: &Resource,
        filter: &Filter,
    ) -> Option<Vec<(&'static str, Value)>> {
        if since < self.floor {
            return None;
        }
        let key = res.key();
        let start = self.log.partition_point(|e| e.rv <= since);
        let events = self
            .log
            .range(start..)
            .filter(|e| e.key == key)
            .filter_map(|e| {
                let before = e.old.as_ref().map(|o| filter.matches(&e.namespace, o));
                let kind = match (e.kind, before, filter.matches(&e.namespace, &e.object)) {
                    ("MODIFIED", Some(false), true) => "ADDED",
                    ("MODIFIED", Some(true), false) => "DELETED",
                    (kind, _, true) => kind,
                    _ => return None,
                };
                Some((kind, res.view(&e.object)))
            });
        Some(events.collect())
    }

    fn emit(
        &mut self,
        kind: &'static str,
        key: (String, String),
        namespace: &str,
        object: &Value,
        old: Option<Value>,
    ) {
        let (object, old) = (Arc::new(object.clone()), old.map(Arc::new));
        self.log.push_back(Event {
            rv: self.rv,
            key,
            namespace: namespace.into(),
            kind,
            object,
            old,
        });
        if self.log.len() > self.limit
            && let Some(dropped) = self.log.pop_front()
        {
            self.floor = dropped.rv;
        }
        self.notify.send_replace(self.rv);
    }

    fn bump(&mut self, obj: &mut Value) {
        self.rv += 1;
        meta(obj).insert("resourceVersion".into(), self.rv.to_string().into());
    }

    pub(crate) fn create(
        &mut self,
        res: &Resource,
        namespace: &str,
        mut obj: Value,
        dry: bool,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let meta = meta(&mut obj);
        if res.namespaced {
            if text_of(meta, "namespace").is_some_and(|ns| !ns.is_empty() && ns != namespace) {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta.insert("namespace".into(), namespace.into());
            let namespaces = self.lookup("", "v1", "namespaces").expect("built in");
            let at = At {
                res: &namespaces,
                namespace: "",
                name: namespace,
            };
            if self.find(at).is_none() {
                return Err(ApiError::not_found(&namespaces, namespace));
            }
        } else {
            meta.shift_remove("namespace");
        }
        let name = match (text_of(meta, "name"), text_of(meta, "generateName")) {
            (Some(name), _) if !name.is_empty() => name.to_string(),
            (_, Some(prefix)) if !prefix.is_empty() => loop {
                let name = format!("{prefix}{}", random_suffix());
                if self
                    .find(At {
                        res,
                        namespace,
                        name: &name,
                    })
                    .is_none()
                {
                    break name;
                }
            },
            _ => {
                return Err(ApiError::invalid(
                    res,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        if self
            .find(At {
                res,
                namespace,
                name: &name,
            })
            .is_some()
        {
            return Err(ApiError::already_exists(res, &name));
        }
        for key in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            meta.shift_remove(key);
        }
        meta.insert("name".into(), name.clone().into());
        meta.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
        meta.insert("creationTimestamp".into(), now().into());
        meta.insert("generation".into(), 1.into());
        if res.status
            && let Some(map) = obj.as_object_mut()
        {
            map.shift_remove("status");
        }
        let mut obj = res.view(&obj);
        defaults(res, &name, &mut obj)?;
        if dry {
            return Ok(obj);
        }
        self.bump(&mut obj);
        self.objects
            .entry(res.key())
            .or_default()
            .insert((namespace.into(), name.clone()), obj.clone());
        self.emit("ADDED", res.key(), namespace, &obj, None);
        if res.is_crd() {
            self.sync_crd(&name, Some(&obj));
        }
        Ok(obj)
    }

    pub(crate) fn replace(
        &mut self,
        at: At<'_>,
        body: Value,
        sub: Sub,
        dry: bool,
    ) -> Result<Value, ApiError> {
        let old = self.get(at)?;
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if let Some(other) = text(&body, "/metadata/name").filter(|n| *n != at.name) {
            let name = at.name;
            return Err(ApiError::bad_request(format!(
                "the name of the object ({other}) does not match the name on the URL ({name})"
            )));
        }
        self.update(at, old, body, sub, dry)
    }

    /// Patches; the bool says server-side apply created the object.
    pub(crate) fn patch(
        &mut self,
        at: At<'_>,
        (kind, body): (PatchKind, Value),
        sub: Sub,
        dry: bool,
    ) -> Result<(Value, bool), ApiError> {
        let At { res, name, .. } = at;
        if kind == PatchKind::Apply
            && (text(&body, "/apiVersion").is_none()
                || text(&body, "/kind") != Some(&res.kind)
                || text(&body, "/metadata/name") != Some(name))
        {
            return Err(ApiError::bad_request(format!(
                "an apply configuration needs apiVersion, kind {:?} and metadata.name {name:?}",
                res.kind
            )));
        }
        let Ok(old) = self.get(at) else {
            if kind == PatchKind::Apply && sub == Sub::Main {
                return self
                    .create(res, at.namespace, body, dry)
                    .map(|obj| (obj, true));
            }
            return Err(ApiError::not_found(res, name));
        };
        let new = match kind {
            PatchKind::Json => {
                patch::json_patch(&old, &body).map_err(|e| ApiError::invalid(res, name, e))?
            }
            PatchKind::Merge | PatchKind::Apply => {
                let mut new = old.clone();
                patch::merge(&mut new, &body);
                new
            }
        };
        self.update(at, old, new, sub, dry).map(|obj| (obj, false))
    }

    /// Turns a requested new state into the stored one and commits it unless nothing changed.
    fn update(
        &mut self,
        at: At<'_>,
        old: Value,
        new: Value,
        sub: Sub,
        dry: bool,
    ) -> Result<Value, ApiError> {
        if let Some(rv) = text(&new, "/metadata/resourceVersion").filter(|rv| !rv.is_empty())
            && Some(rv) != text(&old, "/metadata/resourceVersion")
        {
            let why = "the object has been modified; please apply your changes to the latest version and try again";
            return Err(ApiError::conflict(at.res, at.name, why));
        }
        let mut next = match sub {
            Sub::Status => {
                let mut next = old.clone();
                copy_field(&new, &mut next, "status");
                next
            }
            Sub::Main => {
                let mut next = new;
                if at.res.status {
                    copy_field(&old, &mut next, "status");
                }
                // The server owns these; clients cannot change them through an update.
                let old_meta = &old["metadata"];
                let meta = meta(&mut next);
                for key in [
                    "name",
                    "namespace",
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                ]
                .into_iter()
                .chain([
                    "deletionGracePeriodSeconds",
                    "generation",
                    "resourceVersion",
                ]) {
                    match old_meta.get(key) {
                        Some(v) => meta.insert(key.into(), v.clone()),
                        None => meta.shift_remove(key),
                    };
                }
                next
            }
        };
        next = at.res.view(&next);
        defaults(at.res, at.name, &mut next)?;
        if desired(&next) != desired(&old) {
            let generation = old.pointer("/metadata/generation").and_then(Value::as_i64);
            meta(&mut next).insert("generation".into(), (generation.unwrap_or(0) + 1).into());
        }
        if next == old || dry {
            return Ok(next);
        }
        Ok(self.commit(at, old, next))
    }

    /// Stores a changed object, or removes it when its deletion was only waiting on finalizers.
    fn commit(&mut self, at: At<'_>, old: Value, mut next: Value) -> Value {
        let finished =
            next.pointer("/metadata/deletionTimestamp").is_some() && !has_finalizers(&next);
        if !finished {
            self.bump(&mut next);
        }
        self.objects
            .entry(at.res.key())
            .or_default()
            .insert(at.key(), next.clone());
        if finished {
            return self.remove(at);
        }
        self.emit("MODIFIED", at.res.key(), at.namespace, &next, Some(old));
        if at.res.is_crd() {
            self.sync_crd(at.name, Some(&next));
        }
        next
    }

    /// Deletes, or marks for deletion while finalizers remain; the bool says it is gone.
    pub(crate) fn delete(
        &mut self,
        at: At<'_>,
        options: &Value,
        dry: bool,
    ) -> Result<(Value, bool), ApiError> {
        let old = self.get(at)?;
        for (field, pointer) in [("UID", "uid"), ("ResourceVersion", "resourceVersion")] {
            if let Some(wanted) = text(options, &format!("/preconditions/{pointer}"))
                && Some(wanted) != text(&old, &format!("/metadata/{pointer}"))
            {
                let why = format!("Precondition failed: {field} in precondition: {wanted}");
                return Err(ApiError::conflict(at.res, at.name, why));
            }
        }
        if has_finalizers(&old) {
            if old.pointer("/metadata/deletionTimestamp").is_some() || dry {
                return Ok((old, false));
            }
            let mut next = old.clone();
            meta(&mut next).insert("deletionTimestamp".into(), now().into());
            meta(&mut next).insert("deletionGracePeriodSeconds".into(), 0.into());
            return Ok((self.commit(at, old, next), false));
        }
        if dry {
            return Ok((old, true));
        }
        Ok((self.remove(at), true))
    }

    /// Removes a stored object with a DELETED event; a namespace takes its contents along
    /// (finalizers or not), a CRD its resources and objects.
    fn remove(&mut self, at: At<'_>) -> Value {
        let key = at.res.key();
        let Some(obj) = self.objects.get_mut(&key).and_then(|m| m.remove(&at.key())) else {
            return Value::Null;
        };
        let mut obj = at.res.view(&obj);
        self.bump(&mut obj);
        self.emit("DELETED", key, at.namespace, &obj, None);
        if at.res.is_crd() {
            self.sync_crd(at.name, None);
        } else if at.res.group.is_empty() && at.res.plural == "namespaces" {
            let mut contents = Vec::new();
            for (key, objects) in &mut self.objects {
                let inside: Vec<_> = objects
                    .keys()
                    .filter(|(ns, _)| ns == at.name)
                    .cloned()
                    .collect();
                contents.extend(
                    inside
                        .into_iter()
                        .filter_map(|k| objects.remove(&k))
                        .map(|o| (key.clone(), o)),
                );
            }
            for (key, mut gone) in contents {
                self.bump(&mut gone);
                self.emit("DELETED", key, at.name, &gone, None);
            }
        }
        obj
    }

    /// Re-registers the resources a CRD serves (none when it is gone, dropping its objects).
    fn sync_crd(&mut self, name: &str, crd: Option<&Value>) {
        let owned = |r: &Resource| r.crd.as_deref() == Some(name);
        if crd.is_none()
            && let Some(r) = self.resources.iter().find(|r| owned(r))
        {
            self.objects.remove(&r.key());
        }
        self.resources.retain(|r| !owned(r));
        if let Some(served) = crd.and_then(|c| resources::from_crd(c).ok()) {
            self.resources.extend(served);
        }
    }
}

fn copy_field(from: &Value, to: &mut Value, key: &str) {
    match from.get(key) {
        Some(v) => to[key] = v.clone(),
        None => {
            if let Some(map) = to.as_object_mut() {
                map.shift_remove(key);
            }
        }
    }
}

fn text_of<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

/// Five characters from the alphabet the real server uses for generateName.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// What the server's own controllers would fill in: namespace and pod phases, and a CRD's
/// acceptance (validated here, since an invalid CRD must not be stored).
fn defaults(res: &Resource, name: &str, obj: &mut Value) -> Result<(), ApiError> {
    let phase = match (res.group.as_str(), res.plural.as_str()) {
        ("", "namespaces") => "Active",
        ("", "pods") => "Pending",
        _ if res.is_crd() => {
            resources::from_crd(obj).map_err(|e| ApiError::invalid(res, name, e))?;
            let since = obj
                .pointer("/status/conditions/0/lastTransitionTime")
                .cloned()
                .unwrap_or_else(|| now().into());
            let storage = obj
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|v| v["storage"] == true);
            let condition = |kind: &str, reason: &str, message: &str| json!({"type": kind, "status": "True", "lastTransitionTime": since, "reason": reason, "message": message});
            obj["status"] = json!({
                "conditions": [
                    condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                    condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                ],
                "acceptedNames": obj.pointer("/spec/names").cloned().unwrap_or_default(),
                "storedVersions": [storage.map_or(Value::Null, |v| v["name"].clone())],
            });
            return Ok(());
        }
        _ => return Ok(()),
    };
    if obj.pointer("/status/phase").is_none() {
        obj["status"]["phase"] = phase.into();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let obj = json!({"metadata": {"name": "a", "namespace": "n", "labels": {"app": "web", "tier": "fe"}},
            "status": {"phase": "Running"}});
        let matches = |l: &str, f: &str| Selector::parse(l, f).unwrap().matches(&obj);
        assert!(matches("app=web,tier", ""));
        assert!(matches(
            "app==web, !missing, tier in (fe, be)",
            "metadata.name=a,status.phase=Running"
        ));
        assert!(matches(
            "app notin (db),missing!=x",
            "metadata.namespace!=other"
        ));
        assert!(!matches("app in (db)", ""));
        assert!(!matches("!app", ""));
        assert!(!matches("", "metadata.name=b"));
        assert!(Selector::parse("a in b", "").is_err());
        assert!(Selector::parse("", "metadata.name").is_err());
    }
}
