//! Logging: `tracing` events rendered the way Chaos Toolkit users know them.
//!
//! Console (stderr): `[2026-11-25 08:41:23 INFO] Probe: grep-file`, each line starting with
//! `chaos`'s ANSI colour code (also when stderr is not a terminal, as `chaos` does) and the
//! reset code only on terminals; `--verbose` adds DEBUG lines and `[module:line]`;
//! `--log-format json` prints JSON objects with `chaos`'s keys instead.
//! Log file (`chaostoolkit.log`, appended): every line at `--log-file-level` and above, with
//! `[module:line]`. Structured fields of events are kept in the JSON form; the text forms show
//! the message only, like `chaos`. Secrets are masked in both ([`crate::redact`]).
//!
//! `error!(critical = true, ...)` renders as `CRITICAL`, `chaos`'s level for fatal outcomes.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, PoisonError};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

use crate::redact;

/// Console line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `[time LEVEL] message`.
    #[default]
    String,
    /// One JSON object per line.
    Json,
}

/// Where and how to log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// DEBUG on the console, with `[module:line]`.
    pub verbose: bool,
    /// Console format.
    pub format: LogFormat,
    /// Log file to append to, if any.
    pub file: Option<std::path::PathBuf>,
    /// Lowest level written to the file.
    pub file_level: Level,
}

/// A `tracing` layer writing `chaos`-style lines.
struct CtkLayer {
    console_level: Level,
    verbose: bool,
    format: LogFormat,
    color_reset: &'static str,
    context_id: String,
    file: Option<(Mutex<File>, Level)>,
}

/// Installs the logger for the process.
///
/// # Errors
///
/// The log file cannot be opened for appending.
pub fn init(options: &LogOptions) -> std::io::Result<()> {
    let file = match &options.file {
        Some(path) => Some((
            Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            options.file_level,
        )),
        None => None,
    };
    let layer = CtkLayer {
        console_level: if options.verbose {
            Level::DEBUG
        } else {
            Level::INFO
        },
        verbose: options.verbose,
        format: options.format,
        color_reset: if std::io::stderr().is_terminal() {
            "\x1b[39m"
        } else {
            ""
        },
        context_id: uuid::Uuid::new_v4().to_string(),
        file,
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    // A second init (tests) keeps the first logger.
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(())
}

fn level_name(level: Level, critical: bool) -> &'static str {
    match level {
        Level::ERROR if critical => "CRITICAL",
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

fn color(level: Level) -> &'static str {
    match level {
        Level::ERROR => "\x1b[31m",
        Level::WARN => "\x1b[33m",
        Level::INFO => "\x1b[32m",
        _ => "\x1b[36m",
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    critical: bool,
    extra: Map<String, Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            name => {
                self.extra
                    .insert(name.to_owned(), Value::String(value.to_owned()));
            }
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        match field.name() {
            "critical" => self.critical = value,
            name => {
                self.extra.insert(name.to_owned(), Value::Bool(value));
            }
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.extra
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.extra
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.extra
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                self.message.clear();
                let _ = write!(self.message, "{value:?}");
            }
            name => {
                self.extra
                    .insert(name.to_owned(), Value::String(format!("{value:?}")));
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for CtkLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        metadata.target().starts_with("chaosflow")
            && (*metadata.level() <= self.console_level
                || self
                    .file
                    .as_ref()
                    .is_some_and(|(_, l)| metadata.level() <= l))
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let level = *metadata.level();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = redact::global().text(&fields.message).into_owned();
        let now = chrono::Local::now();
        let time = now.format("%Y-%m-%d %H:%M:%S");
        let module = metadata
            .module_path()
            .and_then(|m| m.rsplit("::").next())
            .unwrap_or("chaosflow");
        let line = metadata.line().unwrap_or(0);
        let name = level_name(level, fields.critical);
        let color = color(level);

        if let Some((file, file_level)) = &self.file
            && level <= *file_level
        {
            let text = format!("{color}[{time} {name}] [{module}:{line}] {message}\n");
            let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = file.write_all(text.as_bytes());
        }
        if level > self.console_level {
            return;
        }
        let text = match self.format {
            LogFormat::String if self.verbose => format!(
                "{color}[{time} {name}] [{module}:{line}]{} {message}\n",
                self.color_reset
            ),
            LogFormat::String => format!("{color}[{time} {name}]{} {message}\n", self.color_reset),
            LogFormat::Json => {
                let mut object = Map::new();
                object.insert("context_id".into(), Value::String(self.context_id.clone()));
                object.insert("process".into(), Value::from(std::process::id()));
                object.insert(
                    "asctime".into(),
                    Value::String(now.format("%Y-%m-%d %H:%M:%S,%3f").to_string()),
                );
                object.insert("levelname".into(), Value::String(name.into()));
                object.insert("module".into(), Value::String(module.into()));
                object.insert("lineno".into(), Value::from(line));
                object.insert("message".into(), Value::String(message));
                for (k, mut v) in fields.extra {
                    redact::global().value(&mut v);
                    object.insert(k, v);
                }
                object.insert(
                    "timestamp".into(),
                    Value::String(crate::journal::iso(chrono::Utc::now())),
                );
                format!("{}\n", Value::Object(object))
            }
        };
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}
