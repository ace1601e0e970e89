//! chaosflow runs Chaos Toolkit experiments natively, reports what they did as a stream of
//! structured journal events, and delivers the stream to the sinks its settings name.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`run`, `validate`, `settings check|show`, `sidecar`,
//!   `operator`, `crd`),
//!   exit codes; the only place that turns errors into messages and exit codes.
//! - [`telemetry`]: logging through `tracing`, rendered as Chaos Toolkit's console and
//!   `chaostoolkit.log` lines.
//! - [`settings`]: `settings.yaml`: Chaos Toolkit's keys (notifications, controls, runtime
//!   strategies, loader auths) and chaosflow's (`sinks:`, `pipeline:`), validated up front.
//! - [`experiment`]: the experiment document: loading (file or URL), configuration, secrets,
//!   variables and validation.
//! - [`runner`]: executing an experiment with `chaos`'s semantics: hypothesis, method,
//!   rollbacks, providers (`process`, `http`, `python`), tolerances, strategies, signals.
//! - [`extensions`]: `type: python` functions: Kubernetes pods and AWS EC2 natively, any
//!   other through a Python bridge.
//! - [`journal`]: `journal.json`, key for key as `chaos` writes it.
//! - [`events`]: the journal event stream (schema, emitter, non-blocking publisher).
//! - [`pipeline`]: from the publisher to the sinks (the `chaosflow-sinks` crate): a bounded
//!   queue and a task per sink, retries, drops, the drain and its delivery summary.
//! - [`operator`]: `ChaosToolkitExperiment` resources into runner pods with the sidecar, and
//!   their runs back into status, Events and metrics (`chaosflow operator`, `chaosflow crd`).
//! - [`sidecar`]: following a runner's events file into the same pipeline, at least once, with
//!   a checkpoint, backpressure by reading, settings rotation and health probes.
//! - [`substitute`], [`python`], [`jsonpath`]: the parts of Chaos Toolkit's behaviour that come
//!   from Python: `${}` substitution, `str()`/`repr()`/`==`, `re`, and the jsonpath2 dialect.
//! - [`http_client`]: an HTTP/1.1 client that behaves like Python `requests`.
//! - [`endpoint`]: the tiny HTTP endpoint of health probes and metrics.
//! - [`redact`]: keeping secrets out of logs, journals and events.
//! - [`sys`]: host facts (node, platform) and `which`.
//!
//! Dependencies point one way: `cli` → `runner` → `experiment`, `journal`, `events`; `cli` →
//! `settings` → `pipeline` → `events` and the sinks; `cli` → `sidecar` → `pipeline`; nothing below `cli` knows about the command
//! line, and the sinks know nothing of experiments.

pub mod cli;
pub mod endpoint;
pub mod events;
pub mod experiment;
pub mod extensions;
pub mod http_client;
pub mod journal;
pub mod jsonpath;
pub mod operator;
pub mod pipeline;
pub mod python;
pub mod redact;
pub mod runner;
pub mod settings;
pub mod sidecar;
pub mod substitute;
pub mod sys;
pub mod telemetry;
