//! The chaosflow sinks: where journal events go.
//!
//! A run of `chaosflow run` emits a stream of journal events ([`Event`]). The pipeline (in the
//! `chaosflow` crate) gives each configured sink its own bounded queue and task, and feeds it
//! batches of events; this crate owns what happens next: the [`Sink`] trait, the retry rules
//! ([`retry`]) and one module per sink, each a serde `Config` (validated without I/O) that
//! `build`s the running sink:
//!
//! - [`file`]: JSON Lines in a file, with rotation and retention;
//! - [`http`]: Chaos Toolkit's notification requests, or batches of envelopes;
//! - [`slack`]: a Slack thread per run, or notifications, through the Web API or a webhook;
//! - [`otlp`]: each run as an OpenTelemetry trace, each event as a log record;
//! - [`exec`]: any program, fed JSON Lines on its stdin.
//!
//! [`tls`] is the one TLS policy of every client (Mozilla's roots or the user's CA bundle, as
//! Python `requests`); [`reqwest_client`] starts the sinks' HTTP clients with it.
//!
//! Sinks know event names, phases and JSON payloads, never experiments or Kubernetes objects.
//! The catalogue of event names and payloads is documented in the `chaosflow` crate
//! (`chaosflow::events`) and in the README ("Event stream").
//!
//! # Writing a sink
//!
//! A sink is any type implementing [`Sink`]. `send` gets the next batch, in order, and says
//! whether a failure is worth retrying; the pipeline counts, retries with backoff and drops.
//!
//! ```
//! use std::sync::Arc;
//! use chaosflow_sinks::{Event, SendError, Sink};
//!
//! /// Counts run verdicts.
//! struct Verdicts { failed: usize }
//!
//! impl Sink for Verdicts {
//!     async fn send(&mut self, events: &[Arc<Event>]) -> Result<(), SendError> {
//!         self.failed += events.iter().filter(|e| e.name == "run-failed").count();
//!         Ok(())
//!     }
//! }
//! ```

mod event;
pub mod exec;
pub mod file;
pub mod http;
pub mod otlp;
pub mod python;
pub mod retry;
pub mod slack;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use event::{Event, SCHEMA_VERSION};
pub use retry::Retry;

/// A destination for events.
pub trait Sink: Send + 'static {
    /// How many events the sink takes at once, and how long the pipeline may wait to fill a
    /// batch. One event at a time by default.
    fn batching(&self) -> Batching {
        Batching::default()
    }

    /// Delivers a batch of events, in order. An error says whether trying again may help.
    fn send(&mut self, events: &[Arc<Event>])
    -> impl Future<Output = Result<(), SendError>> + Send;

    /// Called once after the last batch: flush, fsync, close.
    fn close(&mut self) -> impl Future<Output = Result<(), SendError>> + Send {
        async { Ok(()) }
    }
}

/// How a sink wants its events grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Most events in one `send`.
    pub max_events: usize,
    /// Longest wait for a batch to fill once its first event is there.
    pub max_wait: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            max_events: 1,
            max_wait: Duration::ZERO,
        }
    }
}

/// A failed delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// What went wrong (no secrets: URLs without credentials, no tokens).
    pub message: String,
    /// Whether and when to try again.
    pub retry: Retry,
}

impl SendError {
    /// A failure that trying again will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: Retry::Never,
        }
    }

    /// A failure that may pass.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: Retry::Backoff,
        }
    }
}

/// A sink configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the sink's configuration (`url`, `batch.max_events`), `` for the whole entry.
    pub path: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A reqwest client builder with chaosflow's TLS policy ([`tls`]) and user agent.
pub fn reqwest_client(verify_tls: bool) -> reqwest::ClientBuilder {
    let mut config = (*tls::client_config(verify_tls)).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .user_agent(concat!("chaosflow/", env!("CARGO_PKG_VERSION")))
}

/// A sink that could not be started.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);
