//! `settings.yaml`: Chaos Toolkit's settings file, plus chaosflow's sinks.
//!
//! Found at `--settings`, else `$CHAOSFLOW_SETTINGS`, else `~/.chaostoolkit/settings.yaml`; a
//! missing file means the embedded defaults (no sinks). Chaos Toolkit's keys keep their meaning:
//! `notifications:` (`type: http` entries become Chaos Toolkit-format http sinks; the
//! `chaosslack.notification` plugin becomes a Slack sink), `controls:` (a `chaostracing.oltp`
//! control becomes an OTLP sink), `runtime:` and `auths:`. chaosflow adds `sinks:` (each entry
//! selected by `type:`) and `pipeline:`. `${ENV_VAR}` in any value is replaced by that
//! environment variable, so tokens can come from a pod's environment.
//!
//! Loading validates everything before any I/O and reports every problem at once with its
//! place (`sinks[2].url: invalid URL`). A file that does not validate stops the command: running
//! without the sinks a user configured would lose their events silently.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chaosflow_sinks::{http, otlp, slack};
use serde_json::{Map, Value};

use crate::experiment::load::{self, LoadError};
use crate::pipeline::{self, SinkConfig, SinkSpec};
use crate::python;

/// Top-level keys a settings file may have.
const KNOWN_KEYS: &[&str] = &[
    "notifications",
    "controls",
    "auths",
    "runtime",
    "sinks",
    "pipeline",
];

/// The events `chaos` sends to notification channels; the default filter of the sinks made
/// from `notifications:` entries.
pub const CHAOSTOOLKIT_EVENTS: &[&str] = &[
    "run-started",
    "run-completed",
    "run-failed",
    "run-deviated",
    "validate-started",
    "validate-completed",
    "validate-failed",
];

/// Loaded and validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where they were looked for.
    pub path: PathBuf,
    /// Whether the file exists.
    pub found: bool,
    /// The document with `${ENV}` references resolved (`{}` when missing).
    pub document: Value,
    /// The configured sinks, in order: `notifications:`, `controls:`, then `sinks:`.
    pub sinks: Vec<SinkSpec>,
    /// Pipeline tuning.
    pub pipeline: pipeline::Options,
    /// Accepted but worth saying (ignored controls...).
    pub warnings: Vec<String>,
    /// `$SLACK_API_URL`: the Slack API base of Slack sinks that do not set `api_url`.
    slack_api_url: Option<String>,
}

/// One problem in a settings file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where (`sinks[2].url`), `` for the document.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Unreadable or malformed file.
    #[error("settings {0}")]
    Load(#[from] LoadError),
    /// The file does not validate.
    #[error("settings {}: {} problem(s):\n  {}", path.display(), problems.len(), problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

impl Settings {
    /// The default location: `~/.chaostoolkit/settings.yaml`.
    pub fn default_path() -> PathBuf {
        crate::sys::expand_user("~/.chaostoolkit/settings.yaml")
    }

    /// Reads and validates settings from `path`, resolving `${ENV}` references from the process
    /// environment.
    ///
    /// # Errors
    ///
    /// The file exists but cannot be read, parsed or validated.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        Self::load_with_env(path, &|k| std::env::var(k).ok())
    }

    /// [`Settings::load`], for settings about to be used: their secrets are masked in every
    /// log, journal and event from here on, and their warnings are logged.
    ///
    /// # Errors
    ///
    /// See [`Settings::load`].
    pub fn load_for_use(path: &Path) -> Result<Self, SettingsError> {
        let settings = Self::load(path)?;
        crate::redact::global().register(&settings.secret_values());
        for warning in &settings.warnings {
            tracing::warn!("{}: {warning}", settings.path.display());
        }
        Ok(settings)
    }

    /// [`Settings::load`] with an injectable environment.
    ///
    /// # Errors
    ///
    /// See [`Settings::load`].
    pub fn load_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let name = path.display().to_string();
        if !path.exists() {
            tracing::debug!("The Chaos Toolkit settings file could not be found at '{name}'.");
            return Ok(Self::empty(path));
        }
        let text = std::fs::read_to_string(path).map_err(|error| LoadError::Io {
            path: name.clone(),
            error,
        })?;
        let document = load::parse_yaml(&text, &name)?;
        Self::from_document(path, document, env)
    }

    fn empty(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            found: false,
            document: Value::Object(Map::new()),
            sinks: Vec::new(),
            pipeline: pipeline::Options::default(),
            warnings: Vec::new(),
            slack_api_url: None,
        }
    }

    /// Validates a parsed document.
    ///
    /// # Errors
    ///
    /// Every problem found.
    pub fn from_document(
        path: &Path,
        document: Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let mut problems = Vec::new();
        let mut document = match document {
            Value::Null => Value::Object(Map::new()),
            v @ Value::Object(_) => v,
            other => {
                problems.push(Problem {
                    path: String::new(),
                    message: format!(
                        "the settings file must be a YAML mapping, not a {}",
                        python::type_name(&other)
                    ),
                });
                return Err(SettingsError::Invalid {
                    path: path.to_owned(),
                    problems,
                });
            }
        };
        expand_env(&mut document, "", env, &mut problems);
        let mut settings = Self {
            found: true,
            document: Value::Null,
            slack_api_url: env("SLACK_API_URL").filter(|u| !u.is_empty()),
            ..Self::empty(path)
        };
        let doc = document.as_object().expect("checked above");
        for key in doc.keys() {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                problems.push(Problem {
                    path: key.clone(),
                    message: format!("unknown key; settings know {}", KNOWN_KEYS.join(", ")),
                });
            }
        }
        settings.read_notifications(doc.get("notifications"), &mut problems);
        settings.read_controls(doc.get("controls"), env, &mut problems);
        read_auths(doc.get("auths"), &mut problems);
        let (runtime_problems, runtime_warnings) =
            crate::experiment::validate::check_runtime_block(doc.get("runtime"), "runtime");
        problems.extend(runtime_problems.into_iter().map(|p| Problem {
            path: p.path,
            message: p.message,
        }));
        settings.warnings.extend(runtime_warnings);
        settings.read_sinks(doc.get("sinks"), &mut problems);
        settings.read_pipeline(doc.get("pipeline"), &mut problems);
        if !problems.is_empty() {
            return Err(SettingsError::Invalid {
                path: path.to_owned(),
                problems,
            });
        }
        settings.document = document;
        Ok(settings)
    }

    fn read_notifications(&mut self, section: Option<&Value>, problems: &mut Vec<Problem>) {
        let Some(entries) = list(section, "notifications", problems) else {
            return;
        };
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("notifications[{i}]");
            let Some(map) = entry.as_object() else {
                problems.push(problem(&at, "a notification channel must be a mapping"));
                continue;
            };
            match map.get("type").and_then(Value::as_str) {
                Some("http") => {
                    if let Some(config) = ctk_http(map, &at, problems) {
                        self.push_sink(at, SinkConfig::Http(config), problems);
                    }
                }
                Some("plugin") => {
                    let module = map.get("module").map(python::to_str).unwrap_or_default();
                    if module == "chaosslack.notification" {
                        if let Some(config) = ctk_slack(map, &at, problems) {
                            self.push_sink(at, SinkConfig::Slack(config), problems);
                        }
                    } else {
                        problems.push(problem(
                            &at,
                            format!(
                                "the Python notification plugin '{module}' cannot run in chaosflow; \
                                 use a `sinks:` entry instead (http, slack, otlp, file, or exec to \
                                 run your own program)"
                            ),
                        ));
                    }
                }
                other => problems.push(problem(
                    format!("{at}.type"),
                    format!(
                        "unknown notification type {}; chaos knows http and plugin",
                        other.map_or_else(|| "(none)".to_owned(), |t| format!("'{t}'"))
                    ),
                )),
            }
        }
    }

    fn read_controls(
        &mut self,
        section: Option<&Value>,
        env: &dyn Fn(&str) -> Option<String>,
        problems: &mut Vec<Problem>,
    ) {
        let Some(section) = section.filter(|s| !s.is_null()) else {
            return;
        };
        let Some(controls) = section.as_object() else {
            problems.push(problem(
                "controls",
                "controls must be a mapping of name => control",
            ));
            return;
        };
        for (name, control) in controls {
            let at = format!("controls.{name}");
            let module = control
                .get("provider")
                .and_then(|p| p.get("module"))
                .map(python::to_str);
            match module.as_deref() {
                None => problems.push(problem(&at, "a control needs provider.module")),
                Some("chaosslack.control") => {
                    if let Some(config) = slack_control(control, &at, env, problems) {
                        self.push_sink(at, SinkConfig::Slack(config), problems);
                    }
                }
                Some("chaostracing.oltp") => {
                    // chaostoolkit-opentracing's OpenTelemetry control: OTLP over
                    // HTTP/protobuf, configured by the standard OTEL_* variables, service
                    // `chaostoolkit`. Its `trace_*` arguments instrument Python HTTP clients;
                    // chaosflow's equivalent (a traceparent on HTTP probes) is always on.
                    let service = env("OTEL_SERVICE_NAME").unwrap_or_else(|| "chaostoolkit".into());
                    let mut config = otlp::Config::from_environment(Some(service));
                    if env("OTEL_EXPORTER_OTLP_PROTOCOL").is_none() {
                        config.protocol = Some(otlp::Protocol::HttpProtobuf);
                    }
                    self.push_sink(at, SinkConfig::Otlp(config), problems);
                }
                Some(module) => self.warnings.push(format!(
                    "{at}: control module '{module}' is a Python control, which chaosflow does \
                     not run; ignoring it"
                )),
            }
        }
    }

    fn read_sinks(&mut self, section: Option<&Value>, problems: &mut Vec<Problem>) {
        let Some(entries) = list(section, "sinks", problems) else {
            return;
        };
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("sinks[{i}]");
            match serde_path_to_error::deserialize::<_, SinkConfig>(entry) {
                Ok(config) => self.push_sink(at, config, problems),
                Err(e) => {
                    let inner = e.path().to_string();
                    let mut path = if inner == "." {
                        at
                    } else {
                        format!("{at}.{inner}")
                    };
                    let message = serde_message(e.inner());
                    // serde places an unknown field at its parent: name the field itself.
                    if let Some(field) = message
                        .strip_prefix("unknown field `")
                        .and_then(|rest| rest.split('`').next())
                    {
                        path = format!("{path}.{field}");
                    }
                    problems.push(problem(path, message));
                }
            }
        }
    }

    fn push_sink(&mut self, name: String, mut config: SinkConfig, problems: &mut Vec<Problem>) {
        if let SinkConfig::Slack(c) = &mut config
            && c.api_url.is_none()
        {
            c.api_url = self.slack_api_url.clone();
        }
        for p in config.validate() {
            let path = if p.path.is_empty() {
                name.clone()
            } else {
                format!("{name}.{}", p.path)
            };
            problems.push(problem(path, p.message));
        }
        self.sinks.push(SinkSpec { name, config });
    }

    fn read_pipeline(&mut self, section: Option<&Value>, problems: &mut Vec<Problem>) {
        let Some(section) = section.filter(|s| !s.is_null()) else {
            return;
        };
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            queue_capacity: Option<usize>,
            drain_timeout: Option<f64>,
            max_attempts: Option<u32>,
        }
        match serde_path_to_error::deserialize::<_, Raw>(section) {
            Ok(raw) => {
                if let Some(c) = raw.queue_capacity {
                    if c == 0 {
                        problems.push(problem("pipeline.queue_capacity", "must be at least 1"));
                    }
                    self.pipeline.queue_capacity = c;
                }
                if let Some(t) = raw.drain_timeout {
                    match Duration::try_from_secs_f64(t) {
                        Ok(d) => self.pipeline.drain_timeout = d,
                        Err(_) => problems.push(problem(
                            "pipeline.drain_timeout",
                            "must be zero or more seconds",
                        )),
                    }
                }
                if let Some(a) = raw.max_attempts {
                    if a == 0 {
                        problems.push(problem("pipeline.max_attempts", "must be at least 1"));
                    }
                    self.pipeline.max_attempts = a;
                }
            }
            Err(e) => problems.push(problem(
                format!("pipeline.{}", e.path())
                    .trim_end_matches('.')
                    .to_owned(),
                serde_message(e.inner()),
            )),
        }
    }

    /// `runtime.<section>.strategy`, when set.
    pub fn runtime_strategy(&self, section: &str) -> Option<String> {
        self.document
            .get("runtime")?
            .get(section)?
            .get("strategy")
            .map(python::to_str)
    }

    /// The `runtime` block.
    pub fn runtime(&self) -> Option<&Value> {
        self.document.get("runtime")
    }

    /// `Authorization` for an experiment URL's `host[:port]`, from `auths:`.
    pub fn authorization_for(&self, netloc: &str) -> Option<String> {
        let auth = self.document.get("auths")?.get(netloc)?;
        let kind = auth.get("type").map(python::to_str)?;
        let value = auth.get("value").map(python::to_str)?;
        Some(format!("{kind} {value}"))
    }

    /// Every secret the settings hold (auth values, credential headers), to keep out of logs.
    pub fn secret_values(&self) -> Vec<Value> {
        let mut out: Vec<Value> = self
            .document
            .get("auths")
            .and_then(Value::as_object)
            .map(|auths| {
                auths
                    .values()
                    .filter_map(|a| a.get("value").cloned())
                    .collect()
            })
            .unwrap_or_default();
        for spec in &self.sinks {
            match &spec.config {
                SinkConfig::Http(c) => out.extend(
                    c.headers
                        .iter()
                        .filter(|(name, _)| crate::redact::is_credential_header(name))
                        .map(|(_, v)| Value::String(v.clone())),
                ),
                SinkConfig::Slack(c) => out.extend(
                    [&c.token, &c.webhook_url]
                        .into_iter()
                        .flatten()
                        .map(|v| Value::String(v.clone())),
                ),
                // Every OTLP header is a credential in practice (x-honeycomb-team,
                // dd-api-key...), whatever its name.
                SinkConfig::Otlp(c) => {
                    out.extend(c.headers.values().map(|v| Value::String(v.clone())));
                    out.extend(
                        otlp::environment_header_values()
                            .into_iter()
                            .map(Value::String),
                    );
                }
                _ => {}
            }
        }
        out
    }

    /// The effective settings as YAML, secrets masked: what `chaosflow settings show` prints.
    pub fn show(&self) -> String {
        let mut out = Map::new();
        out.insert(
            "settings_file".into(),
            Value::String(if self.found {
                self.path.display().to_string()
            } else {
                format!("{} (not found: embedded defaults)", self.path.display())
            }),
        );
        for key in ["runtime", "auths"] {
            if let Some(v) = self.document.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
        out.insert(
            "pipeline".into(),
            serde_json::json!({
                "queue_capacity": self.pipeline.queue_capacity,
                "drain_timeout": self.pipeline.drain_timeout.as_secs_f64(),
                "max_attempts": self.pipeline.max_attempts,
            }),
        );
        let sinks: Vec<Value> = self
            .sinks
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(&s.config).expect("sink configs serialize");
                if let Some(Value::Object(headers)) = v.get_mut("headers")
                    && matches!(s.config, SinkConfig::Otlp(_))
                {
                    for value in headers.values_mut() {
                        *value = Value::String(crate::redact::MASK.into());
                    }
                }
                if let Value::Object(m) = &mut v {
                    m.insert("from".into(), Value::String(s.name.clone()));
                }
                v
            })
            .collect();
        out.insert("sinks".into(), Value::Array(sinks));
        let mut value = Value::Object(out);
        mask_secrets(&mut value);
        to_yaml(&value)
    }
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        path: path.into(),
        message: message.into(),
    }
}

fn list<'a>(
    section: Option<&'a Value>,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Option<&'a Vec<Value>> {
    match section {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(items),
        Some(other) => {
            problems.push(problem(
                name,
                format!("must be a list, not a {}", python::type_name(other)),
            ));
            None
        }
    }
}

/// serde's message, without the position it appends (positions are in JSON, not the YAML).
fn serde_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// A Chaos Toolkit `type: http` notification channel.
fn ctk_http(
    map: &Map<String, Value>,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<http::Config> {
    const KEYS: &[&str] = &[
        "type",
        "url",
        "headers",
        "verify_tls",
        "forward_event_payload",
        "events",
    ];
    let before = problems.len();
    unknown_keys(
        map,
        at,
        KEYS,
        "http notifications know",
        &KEYS[1..],
        problems,
    );
    let Some(url) = map.get("url").and_then(Value::as_str) else {
        problems.push(problem(
            format!("{at}.url"),
            "an http notification needs a url",
        ));
        return None;
    };
    let mut config = http::Config::chaostoolkit_notification(url.to_owned());
    match map.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(headers)) => {
            for (name, value) in headers {
                match value {
                    Value::String(v) => {
                        config.headers.insert(name.clone(), v.clone());
                    }
                    other => problems.push(problem(
                        format!("{at}.headers.{name}"),
                        format!(
                            "header values must be strings, not {}",
                            python::type_name(other)
                        ),
                    )),
                }
            }
        }
        Some(_) => problems.push(problem(
            format!("{at}.headers"),
            "headers must be a mapping",
        )),
    }
    for (key, slot) in [
        ("verify_tls", &mut config.verify_tls),
        ("forward_event_payload", &mut config.forward_event_payload),
    ] {
        match map.get(key) {
            None => {}
            Some(Value::Bool(b)) => *slot = *b,
            Some(other) => problems.push(problem(
                format!("{at}.{key}"),
                format!("must be true or false, not {}", python::repr(other)),
            )),
        }
    }
    config.events = ctk_events(map, at, problems);
    (problems.len() == before).then_some(config)
}

/// The `events:` of a Chaos Toolkit channel: its list, or every event `chaos` sends.
fn ctk_events(
    map: &Map<String, Value>,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<Vec<String>> {
    match map.get("events") {
        // Absent or empty: everything `chaos` notifies.
        None | Some(Value::Null) => Some(
            CHAOSTOOLKIT_EVENTS
                .iter()
                .map(|e| (*e).to_owned())
                .collect(),
        ),
        Some(Value::Array(items)) if items.is_empty() => ctk_events(&Map::new(), at, problems),
        Some(Value::Array(items)) => Some(items.iter().map(python::to_str).collect()),
        Some(_) => {
            problems.push(problem(
                format!("{at}.events"),
                "events must be a list of event names",
            ));
            None
        }
    }
}

/// Reports every key of `map` (at `at`) that is not in `known`, naming the keys a user may
/// write (`shown`: `known` without the ones the entry's kind already implies).
fn unknown_keys(
    map: &Map<String, Value>,
    at: &str,
    known: &[&str],
    who: &str,
    shown: &[&str],
    problems: &mut Vec<Problem>,
) {
    for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
        problems.push(problem(
            format!("{at}.{key}"),
            format!("unknown key; {who} {}", shown.join(", ")),
        ));
    }
}

/// chaostoolkit-slack's notifier (`type: plugin`, `module: chaosslack.notification`).
fn ctk_slack(
    map: &Map<String, Value>,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<slack::Config> {
    const KEYS: &[&str] = &["type", "module", "func", "token", "channel", "events"];
    let before = problems.len();
    unknown_keys(
        map,
        at,
        KEYS,
        "the Slack notifier knows",
        &KEYS[2..],
        problems,
    );
    let text = |key: &str, problems: &mut Vec<Problem>| match map.get(key).and_then(Value::as_str) {
        Some(v) if !v.trim().is_empty() => Some(v.to_owned()),
        _ => {
            problems.push(problem(
                format!("{at}.{key}"),
                format!("the Slack notifier needs a {key} (chaos would silently send nothing)"),
            ));
            None
        }
    };
    let token = text("token", problems);
    let channel = text("channel", problems);
    let events = ctk_events(map, at, problems);
    let (Some(token), Some(channel)) = (token, channel) else {
        return None;
    };
    let mut config = slack::Config::chaostoolkit_notification(token, channel);
    config.events = events;
    (problems.len() == before).then_some(config)
}

/// chaostoolkit-slack's control: a run told in a thread; the token from `SLACK_BOT_TOKEN`,
/// the channel from the control's arguments or `SLACK_CHANNEL`, as the control reads them.
fn slack_control(
    control: &Value,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> Option<slack::Config> {
    let channel = control
        .get("provider")
        .and_then(|p| p.get("arguments"))
        .and_then(|a| a.get("channel"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| env("SLACK_CHANNEL"));
    let token = env("SLACK_BOT_TOKEN");
    match (token, channel) {
        (Some(token), Some(channel)) => Some(slack::Config {
            token: Some(token),
            channel: Some(channel),
            webhook_url: None,
            api_url: None,
            style: Some(slack::Style::Thread),
            events: None,
        }),
        (token, _) => {
            problems.push(problem(
                at,
                if token.is_none() {
                    "the Slack control needs SLACK_BOT_TOKEN in the environment"
                } else {
                    "the Slack control needs provider.arguments.channel or SLACK_CHANNEL"
                },
            ));
            None
        }
    }
}

fn read_auths(section: Option<&Value>, problems: &mut Vec<Problem>) {
    let Some(section) = section.filter(|s| !s.is_null()) else {
        return;
    };
    let Some(auths) = section.as_object() else {
        problems.push(problem(
            "auths",
            "auths must be a mapping of host[:port] => {type, value}",
        ));
        return;
    };
    for (host, auth) in auths {
        for key in ["type", "value"] {
            if !auth.get(key).is_some_and(Value::is_string) {
                problems.push(problem(format!("auths.{host}.{key}"), "must be a string"));
            }
        }
    }
}

/// Replaces `${NAME}` in every string (`$${` for a literal `${`).
fn expand_env(
    value: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        Value::String(s) if s.contains('$') => match expand_str(s, env) {
            Ok(expanded) => *s = expanded,
            Err(missing) => problems.push(problem(
                path,
                format!("environment variable {missing} is not set (export it, or write $${{{missing}}} for a literal)"),
            )),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, &format!("{path}[{i}]"), env, problems);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                expand_env(v, &p, env, problems);
            }
        }
        _ => {}
    }
}

fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        if let Some(inner) = after.strip_prefix('{')
            && let Some(end) = inner.find('}')
        {
            let name = &inner[..end];
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                out.push_str(&env(name).ok_or_else(|| name.to_owned())?);
                rest = &inner[end + 1..];
                continue;
            }
        }
        out.push('$');
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// Masks the values `settings show` must not print: auth values, credential headers, tokens,
/// webhook URLs.
fn mask_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let k = key.to_ascii_lowercase();
                let secret = matches!(k.as_str(), "value" | "token" | "webhook_url" | "password")
                    || crate::redact::is_credential_header(&k);
                if secret && v.is_string() {
                    *v = Value::String(crate::redact::MASK.into());
                } else {
                    mask_secrets(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}

/// A small block-style YAML rendering of a JSON value (strings JSON-quoted, which YAML reads).
fn to_yaml(value: &Value) -> String {
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(s) => serde_json::to_string(s).expect("strings serialize"),
            other => other.to_string(),
        }
    }
    fn key(k: &str) -> String {
        let plain = !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if plain {
            k.to_owned()
        } else {
            scalar(&Value::String(k.to_owned()))
        }
    }
    fn write(out: &mut String, v: &Value, indent: usize) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(map) => {
                for (k, val) in map {
                    match val {
                        Value::Object(m) if !m.is_empty() => {
                            out.push_str(&format!("{pad}{}:\n", key(k)));
                            write(out, val, indent + 2);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            out.push_str(&format!("{pad}{}:\n", key(k)));
                            write(out, val, indent + 2);
                        }
                        Value::Object(_) => out.push_str(&format!("{pad}{}: {{}}\n", key(k))),
                        Value::Array(_) => out.push_str(&format!("{pad}{}: []\n", key(k))),
                        other => out.push_str(&format!("{pad}{}: {}\n", key(k), scalar(other))),
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::Object(m) if !m.is_empty() => {
                            let mut inner = String::new();
                            write(&mut inner, item, indent + 2);
                            let inner = inner.trim_start();
                            out.push_str(&format!("{pad}- {inner}"));
                        }
                        Value::Array(a) if !a.is_empty() => {
                            let mut inner = String::new();
                            write(&mut inner, item, indent + 2);
                            out.push_str(&format!("{pad}-\n{inner}"));
                        }
                        Value::Object(_) => out.push_str(&format!("{pad}- {{}}\n")),
                        Value::Array(_) => out.push_str(&format!("{pad}- []\n")),
                        other => out.push_str(&format!("{pad}- {}\n", scalar(other))),
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", scalar(other))),
        }
    }
    let mut out = String::new();
    write(&mut out, value, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(k: &str) -> Option<String> {
        match k {
            "TOKEN" => Some("t0k3n-value".into()),
            "HOST" => Some("collector".into()),
            _ => None,
        }
    }

    fn load(doc: Value) -> Result<Settings, Vec<String>> {
        Settings::from_document(Path::new("s.yaml"), doc, &env).map_err(|e| match e {
            SettingsError::Invalid { problems, .. } => {
                problems.iter().map(ToString::to_string).collect()
            }
            other => vec![other.to_string()],
        })
    }

    #[test]
    fn missing_file_is_empty_settings() {
        let s = Settings::load(Path::new("/nonexistent/settings.yaml")).unwrap();
        assert!(!s.found);
        assert!(s.sinks.is_empty());
        assert_eq!(s.runtime_strategy("rollbacks"), None);
    }

    #[test]
    fn chaos_toolkit_notifications_become_http_sinks() {
        let s = load(json!({
            "notifications": [
                {"type": "http", "url": "https://mystuff.com/api", "verify_tls": false,
                 "headers": {"Authorization": "Bearer ${TOKEN}"}},
                {"type": "http", "url": "http://h/x", "forward_event_payload": false, "events": ["run-failed"]}
            ],
            "runtime": {"rollbacks": {"strategy": "always"}},
            "auths": {"example.com:8080": {"type": "bearer", "value": "tok3n"}}
        }))
        .unwrap();
        assert_eq!(s.sinks.len(), 2);
        let SinkConfig::Http(first) = &s.sinks[0].config else {
            panic!()
        };
        assert_eq!(s.sinks[0].name, "notifications[0]");
        assert!(!first.verify_tls);
        assert_eq!(first.headers["Authorization"], "Bearer t0k3n-value");
        assert_eq!(
            first.events.as_ref().unwrap().len(),
            CHAOSTOOLKIT_EVENTS.len()
        );
        let SinkConfig::Http(second) = &s.sinks[1].config else {
            panic!()
        };
        assert!(!second.forward_event_payload);
        assert_eq!(
            second.events.as_deref(),
            Some(&["run-failed".to_string()][..])
        );
        assert_eq!(s.runtime_strategy("rollbacks").as_deref(), Some("always"));
        assert_eq!(
            s.authorization_for("example.com:8080").as_deref(),
            Some("bearer tok3n")
        );
        let secrets = s.secret_values();
        assert!(
            secrets.contains(&json!("tok3n")) && secrets.contains(&json!("Bearer t0k3n-value"))
        );
        let shown = s.show();
        assert!(
            !shown.contains("t0k3n") && !shown.contains("tok3n"),
            "{shown}"
        );
        assert!(
            shown.contains("url: \"https://mystuff.com/api\""),
            "{shown}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let problems = load(json!({
            "notifications": [{"type": "http"}, {"type": "plugin", "module": "mymod.notify"}, {"type": "carrier-pigeon"}],
            "sinks": [
                {"type": "http", "url": "not a url"},
                {"type": "file"},
                {"type": "exec", "command": []},
                {"type": "teleport"},
                {"type": "http", "url": "http://${NOPE}/x"},
                {"type": "file", "path": "/tmp/e.jsonl", "rotate": "daily"}
            ],
            "pipeline": {"queue_capacity": 0},
            "extra": 1
        }))
        .unwrap_err();
        assert_eq!(problems.len(), 11, "{problems:#?}");
        let expect = [
            "extra: unknown key",
            "notifications[0].url: an http notification needs a url",
            "notifications[1]: the Python notification plugin 'mymod.notify' cannot run in chaosflow",
            "notifications[2].type: unknown notification type 'carrier-pigeon'",
            "sinks[0].url: invalid URL",
            "sinks[1]: missing field `path`",
            "sinks[2].command: needs at least the program",
            "sinks[3].type: unknown variant `teleport`",
            "sinks[4].url: environment variable NOPE is not set",
            "sinks[5].rotate: unknown field `rotate`",
            "pipeline.queue_capacity: must be at least 1",
        ];
        for e in expect {
            assert!(
                problems.iter().any(|p| p.starts_with(e)),
                "missing {e:?} in {problems:#?}"
            );
        }
    }

    #[test]
    fn env_expansion() {
        assert_eq!(
            expand_str("Bearer ${TOKEN}", &env).unwrap(),
            "Bearer t0k3n-value"
        );
        assert_eq!(
            expand_str("$${TOKEN} ${HOST}:$1 $", &env).unwrap(),
            "${TOKEN} collector:$1 $"
        );
        assert_eq!(expand_str("${NOPE}", &env).unwrap_err(), "NOPE");
    }

    #[test]
    fn python_controls_are_named_and_ignored() {
        let s = load(json!({"controls": {"tracing": {"provider": {"type": "python", "module": "chaostracing.control"}}}}))
            .unwrap();
        assert!(s.warnings[0].contains("chaostracing.control"));
    }

    #[test]
    fn yaml_rendering() {
        let v = json!({"a": 1, "b": [{"x": "y", "z": [1, 2]}, "s"], "c": {}, "d": "q\"uote"});
        assert_eq!(
            to_yaml(&v),
            "a: 1\nb:\n  - x: \"y\"\n    z:\n      - 1\n      - 2\n  - \"s\"\nc: {}\nd: \"q\\\"uote\"\n"
        );
        // And it reads back as the same value.
        assert_eq!(crate::experiment::yaml::parse(&to_yaml(&v)).unwrap(), v);
    }
}
