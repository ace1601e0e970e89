//! The event envelope and its JSON Lines wire form.
//!
//! ```json
//! {"id":"3f0c…:7","run_id":"3f0c…","seq":7,"ts":"2026-11-25T08:41:23.123456Z",
//!  "name":"activity-completed","phase":"method","payload":{…},"error":null}
//! ```
//!
//! Keys always appear in this order and are always present (`payload` and `error` may be
//! `null`), so a line-oriented reader can rely on them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the envelope described here. A reader that meets a greater version should refuse
/// the stream rather than guess.
pub const SCHEMA_VERSION: u32 = 1;

/// One journal event, as published in process and written as one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique and stable identifier: `<run_id>:<seq>`. It is written once with the event, so a
    /// receiver that sees the same id twice (a sidecar resending after a crash) can drop it.
    pub id: String,
    /// Identifier of the run (or validation) that emitted the event, shared by all its events.
    pub run_id: String,
    /// Position of the event in its run's stream, starting at 0, without gaps.
    pub seq: u64,
    /// When the event was emitted: UTC, RFC 3339 with microseconds (`2026-11-25T08:41:23.123456Z`).
    pub ts: String,
    /// Kebab-case event name, such as `run-started` or `activity-completed`.
    pub name: String,
    /// Part of the run the event belongs to: `run`, `validate`, `before`, `during`, `after`,
    /// `method` or `rollbacks`.
    pub phase: String,
    /// Event-specific JSON payload (`null` when the event has none).
    pub payload: Value,
    /// Human-readable error message when the event reports a failure, else `null`.
    pub error: Option<String>,
}

impl Event {
    /// Serializes the event as one JSON line, newline included.
    pub fn to_json_line(&self) -> String {
        // Serializing a struct of strings, integers and a `Value` cannot fail.
        let mut line = serde_json::to_string(self).expect("an event always serializes");
        line.push('\n');
        line
    }

    /// Appends the event's JSON line, newline included, to `out` (one buffer for a batch).
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        // Writing a struct of strings, integers and a `Value` to a Vec cannot fail.
        serde_json::to_writer(&mut *out, self).expect("an event always serializes");
        out.push(b'\n');
    }

    /// Parses one JSON line (with or without its trailing newline) into an event.
    ///
    /// # Errors
    ///
    /// Returns the JSON error when the line is not a complete event envelope.
    pub fn from_json_line(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line.trim_end_matches(['\n', '\r']))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_a_json_line_with_keys_in_order() {
        let event = Event {
            id: "r:1".into(),
            run_id: "r".into(),
            seq: 1,
            ts: "2026-11-25T08:41:23.123456Z".into(),
            name: "run-started".into(),
            phase: "run".into(),
            payload: json!({"title": "t"}),
            error: None,
        };
        let line = event.to_json_line();
        assert!(line.ends_with('\n'));
        assert!(line.starts_with(r#"{"id":"r:1","run_id":"r","seq":1,"ts":"#));
        assert!(line.contains(r#""error":null"#));
        assert_eq!(Event::from_json_line(&line).unwrap(), event);
    }

    #[test]
    fn rejects_a_partial_line() {
        assert!(Event::from_json_line(r#"{"id":"r:1","run_id":"r""#).is_err());
    }
}
