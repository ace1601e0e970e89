//! The Chaos Toolkit experiment document: loading, variables, configuration and validation.
//!
//! An experiment stays the JSON value it was written as ([`serde_json::Value`] with key order
//! preserved): the journal must show it back exactly, unknown keys included, and `chaos`
//! accepts and ignores keys it does not know. Typed views are taken where the runner needs
//! them ([`Activity`]), with errors that point at the offending place.

pub mod config;
pub mod load;
pub mod validate;
pub mod yaml;

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Key of the steady-state hypothesis.
pub const HYPOTHESIS: &str = "steady-state-hypothesis";

/// `probe` or `action`: the two activity types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKind {
    /// Observes the system.
    Probe,
    /// Changes the system.
    Action,
}

impl ActivityKind {
    /// `Probe` / `Action`, as in `chaos`'s log lines.
    pub fn title(self) -> &'static str {
        match self {
            Self::Probe => "Probe",
            Self::Action => "Action",
        }
    }
}

/// A typed view over one activity (after `ref` resolution).
#[derive(Debug, Clone, Copy)]
pub struct Activity<'a> {
    /// The activity object as written.
    pub raw: &'a Map<String, Value>,
    /// Probe or action.
    pub kind: ActivityKind,
    /// Its name.
    pub name: &'a str,
    /// The provider object.
    pub provider: &'a Map<String, Value>,
    /// Runs concurrently with what follows (`background: true`).
    pub background: bool,
}

impl<'a> Activity<'a> {
    /// Reads an activity, or says what is missing (for experiments run `--no-validation`).
    ///
    /// # Errors
    ///
    /// A message naming the missing or mistyped key.
    pub fn from_value(value: &'a Value) -> Result<Self, String> {
        let raw = value
            .as_object()
            .ok_or_else(|| format!("an activity must be a mapping, not {value}"))?;
        let kind = match raw.get("type").and_then(Value::as_str) {
            Some("probe") => ActivityKind::Probe,
            Some("action") => ActivityKind::Action,
            Some(other) => return Err(format!("'{other}' is not a supported activity type")),
            None => return Err("an activity must have a type".into()),
        };
        let name = raw
            .get("name")
            .and_then(Value::as_str)
            .ok_or("an activity must have a name")?;
        let provider = raw
            .get("provider")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("activity '{name}' requires a provider"))?;
        Ok(Self {
            raw,
            kind,
            name,
            provider,
            background: raw.get("background").and_then(Value::as_bool) == Some(true),
        })
    }

    /// The provider's `type` (`process`, `http`, `python`...).
    pub fn provider_type(&self) -> &'a str {
        self.provider
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// The parts of an experiment the runner walks through.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The document as loaded (its `title` substituted once the run starts).
    pub doc: Map<String, Value>,
}

impl Experiment {
    /// Wraps a loaded document; `None` when it is not a mapping.
    pub fn new(document: Value) -> Option<Self> {
        match document {
            Value::Object(doc) => Some(Self { doc }),
            _ => None,
        }
    }

    /// The `title` as written (before substitution), or "".
    pub fn title(&self) -> String {
        self.doc
            .get("title")
            .map(crate::python::to_str)
            .unwrap_or_default()
    }

    fn list(&self, key: &str) -> &[Value] {
        self.doc
            .get(key)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// The method's activities.
    pub fn method(&self) -> &[Value] {
        self.list("method")
    }

    /// The rollback actions.
    pub fn rollbacks(&self) -> &[Value] {
        self.list("rollbacks")
    }

    /// The steady-state hypothesis object, when present.
    pub fn hypothesis(&self) -> Option<&Map<String, Value>> {
        self.doc.get(HYPOTHESIS).and_then(Value::as_object)
    }

    /// The hypothesis probes (empty without a hypothesis).
    pub fn hypothesis_probes(&self) -> &[Value] {
        self.hypothesis()
            .and_then(|h| h.get("probes"))
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// Whether the hypothesis has at least one probe, the condition for `chaos` to run it.
    pub fn has_hypothesis_probes(&self) -> bool {
        !self.hypothesis_probes().is_empty()
    }

    /// The activities `ref` can point at, by name, with the index of the hypothesis probe each
    /// one is: method activities then hypothesis probes, a later one shadowing an earlier one
    /// with the same name (`chaos`'s cache).
    pub fn ref_targets(&self) -> HashMap<String, (Value, Option<usize>)> {
        let method = self.method().iter().map(|a| (a, None));
        let probes = self
            .hypothesis_probes()
            .iter()
            .enumerate()
            .map(|(i, p)| (p, Some(i)));
        method
            .chain(probes)
            .filter_map(|(activity, probe)| {
                let name = activity.get("name").and_then(Value::as_str)?;
                (!name.is_empty()).then(|| (name.to_owned(), (activity.clone(), probe)))
            })
            .collect()
    }
}

/// The `ref` of an activity entry, when it is a reference.
pub fn reference(entry: &Value) -> Option<&str> {
    entry.get("ref").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ref_targets_let_hypothesis_probes_shadow_method_activities() {
        let e = Experiment::new(json!({
            "method": [{"name": "a", "v": 1}, {"name": "b"}],
            "steady-state-hypothesis": {"title": "h", "probes": [{"name": "a", "v": 2}]}
        }))
        .unwrap();
        let cache = e.ref_targets();
        assert_eq!(cache["a"].0["v"], json!(2));
        assert_eq!(cache["a"].1, Some(0));
        assert_eq!(cache["b"].1, None);
        assert!(cache.contains_key("b"));
    }

    #[test]
    fn activity_view() {
        let v = json!({"type": "probe", "name": "p", "provider": {"type": "process", "path": "x"},
                       "background": true});
        let a = Activity::from_value(&v).unwrap();
        assert_eq!(a.kind, ActivityKind::Probe);
        assert!(a.background);
        assert!(Activity::from_value(&json!({"type": "x"})).is_err());
    }
}
