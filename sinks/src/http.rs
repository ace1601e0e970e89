//! The `http` sink: Chaos Toolkit's notification requests, or batches of event envelopes.
//!
//! ```yaml
//! sinks:
//!   - type: http
//!     url: https://collector.example.com/chaos
//!     headers: {Authorization: "Bearer ${COLLECTOR_TOKEN}"}
//!     format: events          # or chaostoolkit (the default for `notifications:` entries)
//!     batch: {max_events: 100, max_wait: 1.0}
//!     timeout: 10             # seconds per request
//! ```
//!
//! `format: chaostoolkit` sends what `chaos` sends for a `type: http` notification: one POST per
//! event with the JSON body `{"name", "payload", "phase", "ts", "error"?}` (written as Python's
//! `json.dumps` writes it), or, with `forward_event_payload: false`, a GET without body.
//! `format: events` POSTs batches of envelopes as JSON Lines (`application/x-ndjson`). Every
//! request carries the ids of its events in `X-Chaosflow-Event-Ids`, so a receiver can drop
//! the duplicates that retries may cause: comma-separated, consecutive events of a run written
//! as one range (`<run_id>:<first seq>-<last seq>`), and never longer than
//! [`MAX_IDS_HEADER`] bytes: a batch whose ids would not fit (a filtered stream with many gaps)
//! goes as several requests. Failures are retried per [`crate::retry`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::retry;
use crate::{Batching, BuildError, Event, Problem, SendError, Sink};

/// Header carrying the ids of the events of a request.
pub const EVENT_IDS_HEADER: &str = "x-chaosflow-event-ids";

/// Longest `X-Chaosflow-Event-Ids` value sent: well under the 8 KiB header lines that common
/// servers (nginx, Apache) accept.
pub const MAX_IDS_HEADER: usize = 4096;

/// The `X-Chaosflow-Event-Ids` values of `events`, each with the number of events it covers:
/// one value unless the ids do not fit in [`MAX_IDS_HEADER`] bytes.
pub fn id_ranges(events: &[Arc<Event>]) -> Vec<(String, usize)> {
    let mut values = Vec::new();
    let mut value = String::new();
    let mut covered = 0;
    let mut i = 0;
    while i < events.len() {
        // The longest run of consecutive sequence numbers of one run from `i`.
        let mut j = i + 1;
        while j < events.len()
            && events[j].run_id == events[i].run_id
            && events[j].seq == events[j - 1].seq + 1
        {
            j += 1;
        }
        let item = if j - i == 1 {
            events[i].id.clone()
        } else {
            format!(
                "{}:{}-{}",
                events[i].run_id,
                events[i].seq,
                events[j - 1].seq
            )
        };
        if !value.is_empty() && value.len() + 1 + item.len() > MAX_IDS_HEADER {
            values.push((std::mem::take(&mut value), covered));
            covered = 0;
        }
        if !value.is_empty() {
            value.push(',');
        }
        value.push_str(&item);
        covered += j - i;
        i = j;
    }
    if covered > 0 {
        values.push((value, covered));
    }
    values
}

/// What the requests look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Chaos Toolkit's notification body, one event per request.
    #[default]
    Chaostoolkit,
    /// chaosflow's envelopes, batched, as JSON Lines.
    Events,
}

/// Batching of `format: events`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events per request (default 100).
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Seconds to wait for a batch to fill once its first event is there (default 1).
    #[serde(default = "default_max_wait")]
    pub max_wait: f64,
}

fn default_max_events() -> usize {
    100
}

fn default_max_wait() -> f64 {
    1.0
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            max_wait: default_max_wait(),
        }
    }
}

/// Configuration of an `http` sink.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to send.
    pub url: String,
    /// `POST` (default) or `PUT`; `format: chaostoolkit` with `forward_event_payload: false`
    /// always GETs, as `chaos` does.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra headers (credentials are masked in logs and `settings show`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Verify the server's certificate (default true).
    #[serde(default = "default_true")]
    pub verify_tls: bool,
    /// Seconds allowed per request (default 10; Chaos Toolkit notifications: 2 to connect, 5 to
    /// answer).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Request format.
    #[serde(default)]
    pub format: Format,
    /// `format: chaostoolkit` only: send the event (POST) or just ping (GET without body).
    #[serde(default = "default_true")]
    pub forward_event_payload: bool,
    /// `format: events` only: how to group events.
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    /// Event names to send; all when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

fn default_method() -> String {
    "POST".into()
}

fn default_true() -> bool {
    true
}

impl Config {
    /// A `chaos` `type: http` notification entry, as chaosflow serves it.
    pub fn chaostoolkit_notification(url: String) -> Self {
        Self {
            url,
            method: default_method(),
            headers: BTreeMap::new(),
            verify_tls: true,
            timeout: None,
            format: Format::Chaostoolkit,
            forward_event_payload: true,
            batch: None,
            events: None,
        }
    }

    /// Checks the configuration without any I/O.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        match reqwest::Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {}
            Ok(url) => problems.push(Problem::new(
                "url",
                format!("must be an http(s) URL with a host, not {}:", url.scheme()),
            )),
            Err(e) => problems.push(Problem::new("url", format!("invalid URL: {e}"))),
        }
        if !matches!(
            self.method.to_ascii_uppercase().as_str(),
            "POST" | "PUT" | "PATCH"
        ) {
            problems.push(Problem::new("method", "must be POST, PUT or PATCH"));
        }
        for (name, value) in &self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(Problem::new(
                    format!("headers.{name}"),
                    "invalid header name",
                ));
            } else if HeaderValue::from_str(value).is_err() {
                problems.push(Problem::new(
                    format!("headers.{name}"),
                    "invalid header value",
                ));
            }
        }
        if let Some(t) = self.timeout
            && !(t.is_finite() && t > 0.0)
        {
            problems.push(Problem::new(
                "timeout",
                "must be a positive number of seconds",
            ));
        }
        match (&self.batch, self.format) {
            (Some(_), Format::Chaostoolkit) => problems.push(Problem::new(
                "batch",
                "only applies to format: events (Chaos Toolkit notifications are one per request)",
            )),
            (Some(b), Format::Events) => {
                if b.max_events == 0 {
                    problems.push(Problem::new("batch.max_events", "must be at least 1"));
                }
                if !(b.max_wait.is_finite() && b.max_wait >= 0.0) {
                    problems.push(Problem::new(
                        "batch.max_wait",
                        "must be zero or more seconds",
                    ));
                }
            }
            _ => {}
        }
        if !self.forward_event_payload && self.format == Format::Events {
            problems.push(Problem::new(
                "forward_event_payload",
                "only applies to format: chaostoolkit",
            ));
        }
        problems
    }

    /// Builds the HTTP client.
    ///
    /// # Errors
    ///
    /// The TLS setup fails (no certificate store).
    pub fn build(&self) -> Result<HttpSink, BuildError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| BuildError(e.to_string()))?;
            let mut value = HeaderValue::from_str(value).map_err(|e| BuildError(e.to_string()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut client = crate::reqwest_client(self.verify_tls).default_headers(headers);
        client = match (self.timeout, self.format) {
            (Some(t), _) => client.timeout(Duration::from_secs_f64(t)),
            // chaos's notification timeouts: (2, 5).
            (None, Format::Chaostoolkit) => client
                .connect_timeout(Duration::from_secs(2))
                .read_timeout(Duration::from_secs(5)),
            (None, Format::Events) => client.timeout(Duration::from_secs(10)),
        };
        let client = client
            .build()
            .map_err(|e| BuildError(format!("http client: {e}")))?;
        let batching = match self.format {
            Format::Chaostoolkit => Batching::default(),
            Format::Events => {
                let b = self.batch.unwrap_or_default();
                Batching {
                    max_events: b.max_events,
                    max_wait: Duration::from_secs_f64(b.max_wait),
                }
            }
        };
        let method = reqwest::Method::from_bytes(self.method.to_ascii_uppercase().as_bytes())
            .map_err(|e| BuildError(e.to_string()))?;
        Ok(HttpSink {
            client,
            url: self.url.clone(),
            shown_url: shown_url(&self.url),
            method,
            format: self.format,
            forward_event_payload: self.forward_event_payload,
            batching,
        })
    }
}

/// The URL as logs may show it: scheme, host and port only (paths and queries of webhooks
/// carry secrets).
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let mut shown = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
            if let Some(port) = u.port() {
                shown.push_str(&format!(":{port}"));
            }
            shown
        }
        Err(_) => "(invalid URL)".into(),
    }
}

/// A running `http` sink.
pub struct HttpSink {
    client: reqwest::Client,
    url: String,
    shown_url: String,
    method: reqwest::Method,
    format: Format,
    forward_event_payload: bool,
    batching: Batching,
}

impl Sink for HttpSink {
    fn batching(&self) -> Batching {
        self.batching
    }

    async fn send(&mut self, events: &[Arc<Event>]) -> Result<(), SendError> {
        // Almost always one request; a retry after a partial success sends the whole batch
        // again, and the ids let the receiver drop what it already has.
        let mut rest = events;
        for (ids, covered) in id_ranges(events) {
            let (part, next) = rest.split_at(covered);
            rest = next;
            self.send_part(part, ids).await?;
        }
        Ok(())
    }
}

impl HttpSink {
    async fn send_part(&self, events: &[Arc<Event>], ids: String) -> Result<(), SendError> {
        let request = match self.format {
            Format::Chaostoolkit if !self.forward_event_payload => self.client.get(&self.url),
            Format::Chaostoolkit => {
                let body: Vec<String> = events.iter().map(|e| chaostoolkit_body(e)).collect();
                self.client
                    .request(self.method.clone(), &self.url)
                    .header("content-type", "application/json")
                    .body(body.concat())
            }
            Format::Events => {
                let mut body = Vec::with_capacity(events.len() * 512);
                for event in events {
                    event.write_json_line(&mut body);
                }
                self.client
                    .request(self.method.clone(), &self.url)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
            }
        };
        let response = request
            .header(EVENT_IDS_HEADER, ids)
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                SendError::transient(format!("{} {what}: {}", self.shown_url, source_chain(&e)))
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match retry::classify_status(status, retry_after.as_deref(), SystemTime::now()) {
            None => Ok(()),
            Some(retry) => Err(SendError {
                message: format!("{} answered {status}", self.shown_url),
                retry,
            }),
        }
    }
}

/// The innermost cause of a reqwest error, without the URL (it may carry secrets).
fn source_chain(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

/// Chaos Toolkit's notification body: `{"name", "payload", "phase", "ts", "error"?}` as
/// `json.dumps` writes it, `ts` a float of epoch seconds.
pub fn chaostoolkit_body(event: &Event) -> String {
    let mut body = Map::new();
    body.insert("name".into(), Value::String(event.name.clone()));
    body.insert("payload".into(), event.payload.clone());
    body.insert("phase".into(), Value::String(event.phase.clone()));
    let ts = epoch_seconds(&event.ts)
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number);
    body.insert("ts".into(), ts);
    if let Some(error) = &event.error {
        body.insert("error".into(), Value::String(error.clone()));
    }
    crate::python::json_dumps(&Value::Object(body))
}

/// Seconds since the epoch of an envelope timestamp (`2026-11-25T08:41:23.123456Z`), as
/// Python's `datetime.timestamp()` computes them (microseconds over 10^6).
pub fn epoch_seconds(ts: &str) -> Option<f64> {
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, min, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let micros: i64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    let days = crate::retry::days_from_civil(y, m, day);
    let total = ((days * 86_400 + h * 3600 + min * 60 + s) * 1_000_000) + micros;
    Some(total as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(run: &str, seq: u64) -> Arc<Event> {
        Arc::new(Event {
            id: format!("{run}:{seq}"),
            run_id: run.into(),
            seq,
            ts: String::new(),
            name: "activity-completed".into(),
            phase: "method".into(),
            payload: Value::Null,
            error: None,
        })
    }

    #[test]
    fn event_ids_are_ranges_and_fit_in_a_header() {
        let batch: Vec<_> = (0..1000).map(|s| event("r", s)).collect();
        assert_eq!(id_ranges(&batch), vec![("r:0-999".to_string(), 1000)]);
        let mixed = vec![event("r", 7), event("r", 9), event("r", 10), event("s", 0)];
        assert_eq!(id_ranges(&mixed), vec![("r:7,r:9-10,s:0".to_string(), 4)]);
        // Every other event of a long run (a filtered stream): split to fit.
        let run = "3f0c1d2e-5b6a-4c7d-8e9f-0a1b2c3d4e5f";
        let gaps: Vec<_> = (0..2000).step_by(2).map(|s| event(run, s)).collect();
        let values = id_ranges(&gaps);
        assert!(values.len() > 1);
        assert!(values.iter().all(|(v, _)| v.len() <= MAX_IDS_HEADER));
        assert_eq!(values.iter().map(|(_, n)| n).sum::<usize>(), 1000);
        let all: Vec<String> = values
            .iter()
            .flat_map(|(v, _)| v.split(',').map(str::to_owned))
            .collect();
        assert_eq!(all, gaps.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
    }

    #[test]
    fn chaostoolkit_body_is_pythons() {
        let event = Event {
            id: "r:0".into(),
            run_id: "r".into(),
            seq: 0,
            ts: "2026-11-25T08:41:23.123456Z".into(),
            name: "run-failed".into(),
            phase: "run".into(),
            payload: json!({"title": "caf\u{e9}", "n": [1, 2.5, null, true]}),
            error: Some("boom".into()),
        };
        assert_eq!(
            chaostoolkit_body(&event),
            r#"{"name": "run-failed", "payload": {"title": "caf\u00e9", "n": [1, 2.5, null, true]}, "phase": "run", "ts": 1795596083.123456, "error": "boom"}"#
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(epoch_seconds("1970-01-01T00:00:00.000001Z"), Some(0.000001));
        assert_eq!(
            epoch_seconds("2000-03-01T00:00:00.000000Z"),
            Some(951_868_800.0)
        );
        assert_eq!(epoch_seconds("nope"), None);
    }

    #[test]
    fn validation() {
        let mut c = Config::chaostoolkit_notification("ftp://x".into());
        c.batch = Some(BatchConfig::default());
        c.timeout = Some(0.0);
        c.headers.insert("Bad Header".into(), "v".into());
        let paths: Vec<_> = c.validate().into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["url", "headers.Bad Header", "timeout", "batch"]);
        assert!(
            Config::chaostoolkit_notification("https://h/x".into())
                .validate()
                .is_empty()
        );
    }

    #[test]
    fn urls_are_shown_without_secrets() {
        assert_eq!(
            shown_url("https://user:pw@hooks.slack.com/services/T/B/SECRET?x=1"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            shown_url("http://127.0.0.1:8080/x"),
            "http://127.0.0.1:8080"
        );
    }
}
