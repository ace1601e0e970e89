//! `journal.json`: the run's record, with the keys, key order, types and statuses of `chaos`'s
//! journal, so tools written for Chaos Toolkit (chaostoolkit-reporting...) read it unchanged.
//!
//! Written as `json.dump(indent=2, ensure_ascii=False)` writes it, floats included, to a
//! temporary file renamed into place: a journal is never half-written.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::{python, redact};

/// The `chaoslib-version` a journal carries: the Chaos Toolkit library whose semantics
/// chaosflow implements, so tools keyed on it keep working.
pub const CHAOSLIB_VERSION: &str = "1.44.0";

/// Final status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Ran to the end (possibly deviated, or stopped by an unmet before-hypothesis).
    Completed,
    /// A hypothesis probe failed, or fail-fast triggered.
    Failed,
    /// An unexpected error stopped the run.
    Aborted,
    /// A signal stopped the run.
    Interrupted,
}

impl Status {
    /// The journal spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
            Self::Interrupted => "interrupted",
        }
    }
}

/// Outcome of one activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    /// The provider returned.
    Succeeded,
    /// The provider failed (timeout, connection error...).
    Failed,
}

/// One executed activity, as in `chaos`'s journal.
#[derive(Debug, Clone, Serialize)]
pub struct RunItem {
    /// The resolved activity as written.
    pub activity: Value,
    /// The provider's output, or null.
    pub output: Value,
    /// When it started (UTC ISO-8601).
    pub start: String,
    /// Absent when the activity was interrupted or hit an unexpected error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ItemStatus>,
    /// Failure lines, present only when `status` is `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<Vec<String>>,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Seconds between start and end (pauses excluded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// Hypothesis probes only: whether the output met the tolerance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerance_met: Option<bool>,
    /// Index of the hypothesis probe this item is a copy of, so a probe tolerance's injected
    /// `value` shows in every copy, as Python's shared dictionaries make it show.
    #[serde(skip)]
    pub hypothesis_probe: Option<usize>,
}

impl RunItem {
    /// A fresh item for an activity starting now.
    pub fn start(activity: Value, hypothesis_probe: Option<usize>) -> Self {
        Self {
            activity,
            output: Value::Null,
            start: iso_now(),
            status: None,
            exception: None,
            end: None,
            duration: None,
            tolerance_met: None,
            hypothesis_probe,
        }
    }

    /// The failure message of a failed item, if any.
    pub fn error(&self) -> Option<String> {
        self.exception.as_ref().map(|lines| {
            let last = lines.last().map(String::as_str).unwrap_or("");
            last.trim_end()
                .strip_prefix(ACTIVITY_FAILED_PREFIX)
                .unwrap_or(last.trim_end())
                .to_owned()
        })
    }
}

/// How a failure is written in `exception`: the last line of Python's traceback, which is what
/// tools display, with the same exception class name.
pub const ACTIVITY_FAILED_PREFIX: &str = "chaoslib.exceptions.ActivityFailed: ";

/// `exception` lines for an activity failure.
pub fn exception_lines(message: &str) -> Vec<String> {
    vec![format!("{ACTIVITY_FAILED_PREFIX}{message}\n")]
}

/// One evaluation of the steady-state hypothesis.
#[derive(Debug, Clone, Serialize)]
pub struct SteadyState {
    /// Whether every probe met its tolerance.
    pub steady_state_met: Option<bool>,
    /// The probes run, up to the first failure.
    pub probes: Vec<RunItem>,
}

/// The hypothesis evaluations of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SteadyStates {
    /// Before the method.
    pub before: Option<SteadyState>,
    /// After the method.
    pub after: Option<SteadyState>,
    /// During the method, one per iteration.
    pub during: Vec<SteadyState>,
}

/// The journal of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Journal {
    /// See [`CHAOSLIB_VERSION`].
    #[serde(rename = "chaoslib-version")]
    pub chaoslib_version: &'static str,
    /// `platform.platform()`-style host description.
    pub platform: String,
    /// Host name.
    pub node: String,
    /// The experiment as run: title substituted, `dry` set.
    pub experiment: Value,
    /// Start (UTC ISO-8601).
    pub start: String,
    /// Final status.
    pub status: Option<Status>,
    /// Whether the after-method hypothesis was not met.
    pub deviated: bool,
    /// Hypothesis evaluations.
    pub steady_states: SteadyStates,
    /// Method activities, in start order.
    pub run: Vec<RunItem>,
    /// Rollback activities, in start order (empty when not played).
    pub rollbacks: Vec<RunItem>,
    /// End (UTC ISO-8601).
    pub end: String,
    /// Seconds between start and end, pauses included.
    pub duration: f64,
}

impl Journal {
    /// The journal as a JSON value, secrets masked.
    pub fn to_value(&self) -> Value {
        let mut value = serde_json::to_value(self).expect("a journal always serializes");
        redact::global().value(&mut value);
        value
    }
}

/// Writes a journal (as given by [`Journal::to_value`]) to `path` atomically: a temporary file
/// renamed into place, unless `path` is not a regular file (`/dev/stdout`...), which is
/// written in place.
///
/// # Errors
///
/// The file cannot be written.
pub fn write(journal: &Value, path: &Path) -> std::io::Result<()> {
    let text = to_python_json(journal);
    let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file());
    if special {
        return std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .write_all(text.as_bytes());
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        // The rename makes the journal appear whole or not at all; no fsync, as chaos does
        // none and it would cost more than the rest of a short run.
        std::fs::File::create(&tmp)?.write_all(text.as_bytes())?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The current UTC time as Python's `datetime.now(timezone.utc).isoformat()`.
pub fn iso_now() -> String {
    iso(chrono::Utc::now())
}

/// Python's `isoformat()` of an aware UTC datetime (microseconds omitted when zero).
pub fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// Serializes like Python's `json.dumps(indent=2, ensure_ascii=False)`, floats included.
pub fn to_python_json(value: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PyFormatter::default());
    value
        .serialize(&mut ser)
        .expect("serializing a JSON value into memory cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// serde_json's pretty layout, which matches Python's `indent=2`, with Python's float repr.
#[derive(Default)]
struct PyFormatter {
    pretty: serde_json::ser::PrettyFormatter<'static>,
}

impl serde_json::ser::Formatter for PyFormatter {
    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> std::io::Result<()> {
        writer.write_all(python::float_repr(value).as_bytes())
    }
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.pretty.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.pretty.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_layout_and_floats() {
        let v = json!({"a": [], "b": {}, "c": [1, 0.00001, 2.5], "d": {"e": "é\n"}});
        assert_eq!(
            to_python_json(&v),
            "{\n  \"a\": [],\n  \"b\": {},\n  \"c\": [\n    1,\n    1e-05,\n    2.5\n  ],\n  \"d\": {\n    \"e\": \"é\\n\"\n  }\n}"
        );
    }

    #[test]
    fn run_item_key_order() {
        let mut item = RunItem::start(json!({"name": "x"}), None);
        item.status = Some(ItemStatus::Failed);
        item.exception = Some(exception_lines("boom"));
        item.end = Some(item.start.clone());
        item.duration = Some(0.5);
        item.tolerance_met = Some(false);
        let v = serde_json::to_value(&item).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "activity",
                "output",
                "start",
                "status",
                "exception",
                "end",
                "duration",
                "tolerance_met"
            ]
        );
        assert_eq!(item.error().as_deref(), Some("boom"));
    }

    #[test]
    fn iso_format_matches_python() {
        use chrono::TimeZone;
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 8, 41, 23)
            .unwrap();
        assert_eq!(iso(t), "2026-11-25T08:41:23+00:00");
        let t = t + chrono::Duration::microseconds(1234);
        assert_eq!(iso(t), "2026-11-25T08:41:23.001234+00:00");
    }
}
