//! The `slack` sink: runs told in a Slack channel, through slack-morphism.
//!
//! ```yaml
//! sinks:
//!   - type: slack
//!     token: ${SLACK_BOT_TOKEN}     # Web API (scopes chat:write, channels:read)
//!     channel: "#chaos"
//!   - type: slack
//!     webhook_url: ${SLACK_WEBHOOK_URL}   # or an incoming webhook
//! ```
//!
//! With the Web API (`style: thread`, the default) each run gets one root message, updated with
//! the verdict and its colour at the end (like chaostoolkit-slack's control); the hypothesis,
//! method activities and rollbacks are told as replies in its thread, in Block Kit, failed
//! activities with their errors. Replies that are ready together go in one message, so a busy
//! run stays within Slack's rate limits. `style: notification` (and incoming webhooks) post one message
//! per event instead, shaped like chaostoolkit-slack's legacy notifier
//! (`chaosslack.notification`), which is what a Chaos Toolkit `type: plugin` notification entry
//! becomes. `api_url` points the sink at a Slack-compatible gateway (or a test server). Rate
//! limits (HTTP 429, `ratelimited`) are retried after `Retry-After`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use crate::http::shown_url;
use crate::retry::Retry;
use crate::{Batching, BuildError, Event, Problem, SendError, Sink};

/// How runs are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// A root message per run, updates in its thread (Web API only).
    Thread,
    /// One message per event, as chaostoolkit-slack's notifier.
    Notification,
}

/// Configuration of a `slack` sink.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Bot token for the Web API (`xoxb-...`).
    #[serde(default)]
    pub token: Option<String>,
    /// Channel name (`#chaos`, `chaos`) or id for the Web API.
    #[serde(default)]
    pub channel: Option<String>,
    /// Incoming webhook URL, instead of a token and channel.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Base URL of the Slack Web API (default `https://slack.com/api`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// `thread` (default with a token) or `notification` (always with a webhook).
    #[serde(default)]
    pub style: Option<Style>,
    /// Event names to tell; all when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

impl Config {
    /// A Chaos Toolkit `chaosslack.notification` plugin entry, as chaosflow serves it.
    pub fn chaostoolkit_notification(token: String, channel: String) -> Self {
        Self {
            token: Some(token),
            channel: Some(format!("#{}", channel.trim().trim_start_matches('#'))),
            webhook_url: None,
            api_url: None,
            style: Some(Style::Notification),
            events: None,
        }
    }

    /// Checks the configuration without any I/O.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        match (&self.webhook_url, &self.token, &self.channel) {
            (Some(url), None, None) => {
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    problems.push(Problem::new("webhook_url", "must be an http(s) URL"));
                }
                if self.style == Some(Style::Thread) {
                    problems.push(Problem::new(
                        "style",
                        "thread needs the Web API (token and channel); webhooks cannot reply in threads",
                    ));
                }
            }
            (None, Some(token), Some(channel)) => {
                if token.trim().is_empty() {
                    problems.push(Problem::new("token", "cannot be empty"));
                }
                if channel.trim().trim_start_matches('#').is_empty() {
                    problems.push(Problem::new("channel", "cannot be empty"));
                }
            }
            (None, Some(_), None) => {
                problems.push(Problem::new("channel", "a token needs a channel"))
            }
            (None, None, Some(_)) => {
                problems.push(Problem::new("token", "a channel needs a token"))
            }
            (None, None, None) => problems.push(Problem::new(
                "",
                "needs either webhook_url, or token and channel",
            )),
            _ => problems.push(Problem::new(
                "webhook_url",
                "use either webhook_url, or token and channel, not both",
            )),
        }
        if let Some(api) = &self.api_url
            && !api.starts_with("http://")
            && !api.starts_with("https://")
        {
            problems.push(Problem::new("api_url", "must be an http(s) URL"));
        }
        problems
    }

    /// Builds the Slack client.
    ///
    /// # Errors
    ///
    /// No certificate store for TLS.
    pub fn build(&self) -> Result<SlackSink, BuildError> {
        let tls = crate::tls::client_config(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            // http:// too, for Slack-compatible gateways inside a cluster and for tests.
            .https_or_http()
            .enable_http1()
            .build();
        let mut connector = SlackClientHyperConnector::with_connector(https);
        if let Some(api) = &self.api_url {
            connector = connector.with_slack_api_url(api.trim_end_matches('/'));
        }
        let target = match (&self.webhook_url, &self.token, &self.channel) {
            (Some(url), _, _) => Target::Webhook(
                url.parse()
                    .map_err(|e| BuildError(format!("slack webhook_url: {e}")))?,
            ),
            (None, Some(token), Some(channel)) => Target::Api {
                token: SlackApiToken::new(token.trim().into()),
                channel: SlackChannelId::new(channel.trim().into()),
            },
            _ => {
                return Err(BuildError(
                    "slack: needs webhook_url, or token and channel".into(),
                ));
            }
        };
        let style = match (&target, self.style) {
            (Target::Webhook(_), _) => Style::Notification,
            (_, Some(style)) => style,
            (_, None) => Style::Thread,
        };
        Ok(SlackSink {
            client: SlackClient::new(connector),
            target,
            style,
            runs: HashMap::new(),
            told: HashMap::new(),
        })
    }
}

enum Target {
    Webhook(url::Url),
    Api {
        token: SlackApiToken,
        channel: SlackChannelId,
    },
}

/// What the sink remembers of a run told in a thread.
#[derive(Debug, Clone)]
struct Thread {
    /// The channel id Slack answered with (updates need it).
    channel: SlackChannelId,
    /// The root message.
    ts: SlackTs,
    title: String,
}

/// A running `slack` sink.
pub struct SlackSink {
    client: SlackClient<SlackClientHyperHttpsConnector>,
    target: Target,
    style: Style,
    runs: HashMap<String, Thread>,
    /// The last event of each run already told, so that a retried batch is not told twice.
    told: HashMap<String, u64>,
}

/// Colours of the verdicts, as chaostoolkit-slack's control uses them.
fn verdict(journal: &Value) -> (&'static str, &'static str) {
    let deviated = journal["deviated"].as_bool().unwrap_or(false);
    match (journal["status"].as_str().unwrap_or(""), deviated) {
        (_, true) => ("Deviated", "#FF1700"),
        ("completed", false) => ("Completed successfully", "#06FF00"),
        ("failed", _) => ("Failed to complete", "#FF8E00"),
        ("interrupted", _) => ("Interrupted", "#CEAB93"),
        _ => ("Aborted", "#000000"),
    }
}

/// A value as Python's `str()` shows it, as chaostoolkit-slack prints outputs.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => crate::python::repr(other),
    }
}

/// What failed in a run item: its output or the last exception line.
fn failure(item: &Value) -> String {
    match item
        .get("output")
        .filter(|o| crate::python::repr(o) != "None" && !o.is_null())
    {
        Some(output) => shown(output),
        None => item["exception"]
            .as_array()
            .and_then(|e| e.last())
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_owned(),
    }
}

/// Slack's limit on a section's text, with room to spare.
const MAX_TEXT: usize = 2800;

fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(MAX_TEXT).collect();
    clipped.push('…');
    clipped
}

/// chaostoolkit-slack's legacy notifier message for one event.
pub fn notification_message(event: &Event) -> Value {
    let color = "#439FE0";
    let payload = &event.payload;
    let mut fields = vec![
        json!({"title": "Source", "value": event.phase, "short": true}),
        json!({"title": "Event", "value": event.name, "short": true}),
    ];
    let mut attachments = Vec::new();
    let mut steady = Vec::new();
    let mut steady_color = color;
    let mut activities = Vec::new();
    let mut rollbacks = Vec::new();
    if payload.is_object() {
        let title = payload
            .get("title")
            .filter(|t| !t.is_null())
            .or_else(|| payload.get("experiment").and_then(|e| e.get("title")));
        if let Some(title) = title {
            fields.push(json!({"title": "Experiment", "value": shown(title), "short": false}));
        }
        let hypothesis = payload.get("steady-state-hypothesis").or_else(|| {
            payload
                .get("experiment")
                .and_then(|e| e.get("steady-state-hypothesis"))
        });
        let hypothesis_title = hypothesis
            .and_then(|h| h.get("title"))
            .map_or_else(|| "N/A".to_owned(), shown);
        steady.push(json!({"title": "Hypothesis", "value": hypothesis_title, "short": false}));
        if let Some(states) = payload.get("steady_states").filter(|s| s.is_object()) {
            for (phase, unmet_color) in [("before", "warning"), ("after", "danger")] {
                let Some(state) = states.get(phase).filter(|s| s.is_object()) else {
                    continue;
                };
                let met = state["steady_state_met"].as_bool().unwrap_or(false);
                let label = if phase == "before" { "Before" } else { "After" };
                steady.push(json!({"title": label, "value": if met { "ok" } else { "not met" }, "short": false}));
                if !met {
                    steady_color = unmet_color;
                    if let Some(probe) = state["probes"].as_array().and_then(|p| p.last()) {
                        steady.push(json!({
                            "title": "Tolerance Output",
                            "value": format!("```{}```", clip(&failure(probe))),
                            "short": false
                        }));
                    }
                }
            }
        }
        for (list, into) in [("run", &mut activities), ("rollbacks", &mut rollbacks)] {
            for item in payload
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if item.get("status").and_then(Value::as_str) == Some("failed") {
                    into.push(json!({
                        "title": item["activity"]["name"].as_str().unwrap_or(""),
                        "value": format!("```{}```", clip(&failure(item))),
                        "short": false
                    }));
                }
            }
        }
    }
    attachments.push(json!({"fields": fields, "color": color}));
    if payload.is_object() {
        attachments.push(json!({"text": "Steady State", "fields": steady, "color": steady_color}));
    }
    if !activities.is_empty() {
        attachments
            .push(json!({"text": "Failed Activities", "fields": activities, "color": "danger"}));
    }
    if !rollbacks.is_empty() {
        attachments
            .push(json!({"text": "Failed Rollbacks", "fields": rollbacks, "color": "danger"}));
    }
    json!({"text": "New Chaos Experiment Event", "attachments": attachments})
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}})
}

fn context(text: &str) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text)}]})
}

/// The root message of a run, with its state and colour.
fn root_message(title: &str, state: &str, color: &str, details: Option<&str>) -> Value {
    let mut blocks = vec![section(&format!("*{title}*"))];
    let mut state_text = format!("*State:* {state}");
    if let Some(details) = details {
        state_text = format!("{details}\n{state_text}");
    }
    blocks.push(context(&state_text));
    json!({
        "text": format!("{title}: {state}"),
        "attachments": [{"color": color, "fallback": format!("{title}: {state}"), "blocks": blocks}]
    })
}

/// A thread reply for an event, or `None` for events not told in threads.
pub fn thread_reply(event: &Event) -> Option<Value> {
    let p = &event.payload;
    let text = match event.name.as_str() {
        "hypothesis-completed" => {
            let met = p["steady_state_met"].as_bool().unwrap_or(false);
            let mut lines = vec![format!(
                "Steady state hypothesis ({}{}) {}",
                event.phase,
                p["iteration"]
                    .as_u64()
                    .map(|i| format!(" #{i}"))
                    .unwrap_or_default(),
                if met {
                    "is met :white_check_mark:"
                } else {
                    "is *not met* :x:"
                }
            )];
            for probe in p["probes"].as_array().into_iter().flatten() {
                let name = probe["activity"]["name"].as_str().unwrap_or("");
                let ok = probe["tolerance_met"].as_bool().unwrap_or(false);
                lines.push(format!(
                    "• `{name}`: {}",
                    if ok {
                        "within tolerance"
                    } else {
                        "*out of tolerance*"
                    }
                ));
                if !ok {
                    lines.push(format!("```{}```", clip(&failure(probe))));
                }
            }
            if let Some(error) = &event.error {
                lines.push(format!("```{error}```"));
            }
            lines.join("\n")
        }
        "method-started" => "Method is starting".to_owned(),
        "method-completed" => format!("Method finished ({} activities)", p["activities"]),
        "activity-completed" if event.phase == "method" => {
            let name = p["activity"]["name"].as_str().unwrap_or("");
            match p.get("status").and_then(Value::as_str) {
                Some("failed") => format!(
                    "Activity `{name}` finished with status `failed` :x:\n```{}```",
                    clip(&failure(p))
                ),
                Some(status) => format!("Activity `{name}` finished with status `{status}`"),
                None => format!("Activity `{name}` was interrupted"),
            }
        }
        "rollbacks-completed" => format!("Rollbacks finished ({} played)", p["rollbacks"]),
        "rollbacks-skipped" => format!(
            "Rollbacks not played: {}",
            p["reason"].as_str().unwrap_or("per the strategy")
        ),
        "run-interrupted" => format!(
            "Interrupted by {}",
            p["signal"].as_str().unwrap_or("a signal")
        ),
        "run-completed" | "run-failed" => {
            let (state, _) = verdict(p);
            let mut lines = vec![format!("Experiment is finished with status `{state}`")];
            for (list, label) in [("run", "activity"), ("rollbacks", "rollback")] {
                for item in p[list].as_array().into_iter().flatten() {
                    if item.get("status").and_then(Value::as_str) == Some("failed") {
                        lines.push(format!(
                            "Failed {label} `{}`:\n```{}```",
                            item["activity"]["name"].as_str().unwrap_or(""),
                            clip(&failure(item))
                        ));
                    }
                }
            }
            lines.join("\n")
        }
        _ => return None,
    };
    Some(json!({"text": clip(&text), "blocks": [section(&text)]}))
}

fn content(message: Value) -> SlackMessageContent {
    serde_json::from_value(message).expect("our Slack messages are valid message content")
}

/// Whether and when to retry a Slack error.
fn classify(error: &SlackClientError) -> Retry {
    match error {
        SlackClientError::RateLimitError(e) => e.retry_after.map_or(Retry::Backoff, Retry::After),
        SlackClientError::ApiError(e) => match e.code.as_str() {
            "ratelimited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout" => Retry::Backoff,
            _ => Retry::Never,
        },
        SlackClientError::HttpError(e) => crate::retry::classify_status(
            e.status_code.as_u16(),
            None,
            std::time::SystemTime::now(),
        )
        .unwrap_or(Retry::Backoff),
        _ => Retry::Backoff,
    }
}

fn send_error(error: &SlackClientError) -> SendError {
    SendError {
        message: format!("slack: {error}"),
        retry: classify(error),
    }
}

impl SlackSink {
    async fn post(
        &self,
        message: Value,
        thread: Option<&Thread>,
    ) -> Result<Option<Thread>, SendError> {
        match &self.target {
            Target::Webhook(url) => {
                let request = SlackApiPostWebhookMessageRequest::new(content(message));
                self.client
                    .post_webhook_message(url, &request)
                    .await
                    .map_err(|e| {
                        let mut error = send_error(&e);
                        error.message = format!("slack webhook {}: {e}", shown_url(url.as_str()));
                        error
                    })?;
                Ok(None)
            }
            Target::Api { token, channel } => {
                let channel = thread.map_or_else(|| channel.clone(), |t| t.channel.clone());
                let mut request = SlackApiChatPostMessageRequest::new(channel, content(message));
                request.thread_ts = thread.map(|t| t.ts.clone());
                let response = self
                    .client
                    .open_session(token)
                    .chat_post_message(&request)
                    .await
                    .map_err(|e| send_error(&e))?;
                Ok(Some(Thread {
                    channel: response.channel,
                    ts: response.ts,
                    title: String::new(),
                }))
            }
        }
    }

    async fn update(&self, thread: &Thread, message: Value) -> Result<(), SendError> {
        let Target::Api { token, .. } = &self.target else {
            return Ok(());
        };
        let request = SlackApiChatUpdateRequest::new(
            thread.channel.clone(),
            content(message),
            thread.ts.clone(),
        );
        self.client
            .open_session(token)
            .chat_update(&request)
            .await
            .map_err(|e| send_error(&e))?;
        Ok(())
    }

    /// Updates a run's root message with the verdict of its `run-completed`/`run-failed`.
    async fn tell_verdict(&self, thread: &Thread, event: &Event) -> Result<(), SendError> {
        let (state, color) = verdict(&event.payload);
        let host = event.payload["node"]
            .as_str()
            .map(|n| format!("*Host:* {n}"));
        self.update(
            thread,
            root_message(&thread.title, state, color, host.as_deref()),
        )
        .await
    }

    async fn tell(&mut self, event: &Event) -> Result<(), SendError> {
        if self.style == Style::Notification {
            return self
                .post(notification_message(event), None)
                .await
                .map(|_| ());
        }
        match event.name.as_str() {
            "run-started" => {
                let title = event.payload.get("title").map(shown).unwrap_or_default();
                let root = root_message(&title, "Running", "#222831", None);
                if let Some(mut thread) = self.post(root, None).await? {
                    thread.title = title;
                    self.runs.insert(event.run_id.clone(), thread);
                }
                Ok(())
            }
            "run-completed" | "run-failed" => {
                let thread = self.runs.get(&event.run_id).cloned();
                if let Some(thread) = &thread {
                    self.tell_verdict(thread, event).await?;
                }
                match thread_reply(event) {
                    Some(reply) => self.post(reply, thread.as_ref()).await.map(|_| ()),
                    None => Ok(()),
                }
            }
            "stream-ended" => {
                self.runs.remove(&event.run_id);
                self.told.remove(&event.run_id);
                Ok(())
            }
            "validate-failed" | "run-invalid" => {
                let title = event
                    .payload
                    .get("title")
                    .map(shown)
                    .unwrap_or_else(|| "Experiment".into());
                let message = root_message(
                    &title,
                    "Invalid",
                    "#FF8E00",
                    event
                        .error
                        .as_deref()
                        .map(|e| format!("```{e}```"))
                        .as_deref(),
                );
                self.post(message, None).await.map(|_| ())
            }
            _ => match thread_reply(event) {
                Some(reply) => {
                    let thread = self.runs.get(&event.run_id).cloned();
                    self.post(reply, thread.as_ref()).await.map(|_| ())
                }
                None => Ok(()),
            },
        }
    }
}

/// Most replies folded into one thread message (Slack takes 50 blocks per message).
const MAX_FOLDED: usize = 20;

impl SlackSink {
    fn already_told(&self, event: &Event) -> bool {
        self.told
            .get(&event.run_id)
            .is_some_and(|seq| event.seq <= *seq)
    }

    fn mark_told(&mut self, event: &Event) {
        self.told.insert(event.run_id.clone(), event.seq);
    }

    /// Posts the replies gathered for one run's thread as a single message.
    async fn flush(&mut self, pending: &mut Vec<(&Event, Value)>) -> Result<(), SendError> {
        let Some((last, _)) = pending.last() else {
            return Ok(());
        };
        let (last, run_id) = (*last, last.run_id.clone());
        let thread = self.runs.get(&run_id).cloned();
        let text = pending
            .iter()
            .filter_map(|(_, r)| r["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        let blocks: Vec<Value> = pending
            .iter()
            .flat_map(|(_, r)| r["blocks"].as_array().cloned().unwrap_or_default())
            .collect();
        self.post(
            json!({"text": clip(&text), "blocks": blocks}),
            thread.as_ref(),
        )
        .await?;
        self.mark_told(last);
        pending.clear();
        Ok(())
    }
}

impl Sink for SlackSink {
    /// Threads gather what a second brings: the replies of that second are folded into one
    /// message, which keeps a busy run within Slack's rate limit (about one message per second
    /// per channel) and its thread readable. The end of a run is never held back: the
    /// pipeline's drain sends what is gathered at once.
    fn batching(&self) -> Batching {
        Batching {
            max_events: 64,
            max_wait: if self.style == Style::Thread {
                Duration::from_secs(1)
            } else {
                Duration::ZERO
            },
        }
    }

    async fn send(&mut self, events: &[Arc<Event>]) -> Result<(), SendError> {
        let mut pending: Vec<(&Event, Value)> = Vec::new();
        for event in events {
            if self.already_told(event) {
                continue; // a retry of a batch that was partly told
            }
            let foldable = self.style == Style::Thread && self.runs.contains_key(&event.run_id);
            if foldable && matches!(event.name.as_str(), "run-completed" | "run-failed") {
                // The verdict: the root message now, its reply with the others.
                if let Some(thread) = self.runs.get(&event.run_id).cloned() {
                    self.tell_verdict(&thread, event).await?;
                }
            }
            if foldable && !matches!(event.name.as_str(), "stream-ended" | "run-invalid") {
                // Events without a reply (starts, probes) tell nothing in a thread.
                if let Some(reply) = thread_reply(event) {
                    if pending
                        .first()
                        .is_some_and(|(e, _)| e.run_id != event.run_id)
                        || pending.len() == MAX_FOLDED
                    {
                        self.flush(&mut pending).await?;
                    }
                    pending.push((event, reply));
                }
                continue;
            }
            self.flush(&mut pending).await?;
            self.tell(event).await?;
            if event.name != "stream-ended" {
                self.mark_told(event);
            }
        }
        self.flush(&mut pending).await
    }

    async fn close(&mut self) -> Result<(), SendError> {
        self.runs.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, phase: &str, payload: Value) -> Event {
        Event {
            id: "r:1".into(),
            run_id: "r".into(),
            seq: 1,
            ts: "2026-11-25T08:41:23.123456Z".into(),
            name: name.into(),
            phase: phase.into(),
            payload,
            error: None,
        }
    }

    #[test]
    fn configurations() {
        let ok = Config::chaostoolkit_notification("xoxb-1".into(), "general".into());
        assert!(ok.validate().is_empty());
        assert_eq!(ok.channel.as_deref(), Some("#general"));
        let none = Config {
            token: None,
            channel: None,
            webhook_url: None,
            api_url: None,
            style: None,
            events: None,
        };
        assert_eq!(none.validate().len(), 1);
        let webhook_thread = Config {
            webhook_url: Some("https://hooks.slack.com/x".into()),
            style: Some(Style::Thread),
            ..none.clone()
        };
        assert_eq!(webhook_thread.validate()[0].path, "style");
    }

    #[test]
    fn legacy_notification_shape() {
        let journal = json!({
            "experiment": {"title": "T", "steady-state-hypothesis": {"title": "H"}},
            "status": "completed", "deviated": true,
            "steady_states": {
                "before": {"steady_state_met": true, "probes": []},
                "after": {"steady_state_met": false, "probes": [{"activity": {"name": "p"}, "output": {"status": 1}}]}
            },
            "run": [{"activity": {"name": "a"}, "status": "failed", "output": null,
                     "exception": ["chaoslib.exceptions.ActivityFailed: boom\n"]}],
            "rollbacks": []
        });
        let m = notification_message(&event("run-deviated", "run", journal));
        assert_eq!(m["text"], "New Chaos Experiment Event");
        let a = m["attachments"].as_array().unwrap();
        assert_eq!(
            a[0]["fields"][2],
            json!({"title": "Experiment", "value": "T", "short": false})
        );
        assert_eq!(a[1]["color"], "danger");
        assert_eq!(a[1]["fields"][3]["value"], "```{'status': 1}```");
        assert_eq!(a[2]["text"], "Failed Activities");
        assert_eq!(
            a[2]["fields"][0]["value"],
            "```chaoslib.exceptions.ActivityFailed: boom```"
        );
        // Valid for slack-morphism.
        let _ = content(m);
    }

    #[test]
    fn thread_replies() {
        let failed = event(
            "activity-completed",
            "method",
            json!({"activity": {"name": "a"}, "status": "failed", "output": null,
                   "exception": ["chaoslib.exceptions.ActivityFailed: boom\n"]}),
        );
        let text = thread_reply(&failed).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(text.contains("`a` finished with status `failed`") && text.contains("boom"));
        assert!(thread_reply(&event("activity-started", "method", json!({}))).is_none());
        let verdict_reply = thread_reply(&event(
            "run-completed",
            "run",
            json!({"status": "completed", "deviated": false, "run": []}),
        ));
        assert!(
            verdict_reply.unwrap()["text"]
                .as_str()
                .unwrap()
                .contains("`Completed successfully`")
        );
        let _ = content(root_message("T", "Running", "#222831", None));
    }
}
