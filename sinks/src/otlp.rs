//! The `otlp` sink: each run as one trace (and each event as a log record) in any
//! OpenTelemetry backend, through opentelemetry-otlp.
//!
//! ```yaml
//! sinks:
//!   - type: otlp
//!     endpoint: http://otel-collector:4317   # the OTLP base URL
//!     protocol: grpc                          # or http/protobuf
//!     headers: {x-api-key: "${OTLP_KEY}"}
//! ```
//!
//! Without `endpoint`/`protocol`/`headers`, the standard `OTEL_EXPORTER_OTLP_*` variables apply;
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` shape the resource. For
//! `http/protobuf` the endpoint is a base: `/v1/traces` and `/v1/logs` are appended.
//!
//! The trace: a root `experiment` span; `hypothesis` spans (before, during, after), `method` and
//! `rollbacks` spans under it; an `activity: <name>` span per activity under its phase's span.
//! Attributes follow chaostoolkit-opentracing (`chaostoolkit.experiment.title`, `.status`,
//! `.deviated`, `chaostoolkit.hypothesis.phase`, `.met`, `chaostoolkit.activity.name`,
//! `.status`, `.output`, `.error`), and failures set the span status to error. Span times are
//! the events' times, so a sidecar reading the events later exports the same trace.
//!
//! Ids are derived from the run: the trace id is the run id, span ids hash the run id and the
//! span's place ([`trace_id`], [`span_id`]). The runner computes the same ids to send a W3C
//! `traceparent` with its HTTP probes ([`traceparent`]), so the target's own traces join the
//! experiment's, and a retried or replayed export never makes a second trace.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use serde::Deserialize;
use serde_json::Value;

use crate::{Batching, BuildError, Event, Problem, SendError, Sink};

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Protocol {
    /// OTLP over gRPC (port 4317 by convention).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318 by convention).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// Configuration of an `otlp` sink.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL of the collector; `OTEL_EXPORTER_OTLP_*` when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Transport; `OTEL_EXPORTER_OTLP_PROTOCOL` or `grpc` when absent.
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Extra headers (gRPC metadata); `OTEL_EXPORTER_OTLP_HEADERS` adds to them.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `service.name`; `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`,
    /// else `chaosflow` when absent.
    #[serde(default)]
    pub service_name: Option<String>,
    /// Also export each event as a log record (default true).
    #[serde(default = "default_true")]
    pub logs: bool,
    /// Seconds allowed per export (default 10).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Event names to turn into spans and logs; all when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

fn default_true() -> bool {
    true
}

impl Config {
    /// Defaults: everything from the `OTEL_*` environment.
    pub fn from_environment(service_name: Option<String>) -> Self {
        Self {
            endpoint: None,
            protocol: None,
            headers: BTreeMap::new(),
            service_name,
            logs: true,
            timeout: None,
            events: None,
        }
    }

    /// Checks the configuration without any I/O.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(endpoint) = &self.endpoint {
            match url::Url::parse(endpoint) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
                _ => problems.push(Problem::new(
                    "endpoint",
                    "must be an http(s) URL such as http://otel-collector:4317",
                )),
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
        problems
    }

    fn protocol(&self) -> Protocol {
        self.protocol.unwrap_or_else(|| {
            match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
                // Collectors serve http/json and http/protobuf on the same endpoint, so a
                // setting written for a JSON exporter still reaches them.
                Ok("http/protobuf" | "http/json") => Protocol::HttpProtobuf,
                _ => Protocol::Grpc,
            }
        })
    }

    /// Builds the exporters. Must run inside a tokio runtime (gRPC channels are lazy but
    /// bound to one).
    ///
    /// # Errors
    ///
    /// An invalid endpoint or header.
    pub fn build(&self) -> Result<OtlpSink, BuildError> {
        let timeout = Duration::from_secs_f64(self.timeout.unwrap_or(10.0));
        let protocol = self.protocol();
        let endpoint = |path: &str| -> Option<String> {
            self.endpoint.as_ref().map(|e| match protocol {
                Protocol::Grpc => e.clone(),
                Protocol::HttpProtobuf => format!("{}{path}", e.trim_end_matches('/')),
            })
        };
        let err = |e: opentelemetry_otlp::ExporterBuildError| BuildError(format!("otlp: {e}"));
        let headers: HashMap<String, String> = self.headers.clone().into_iter().collect();
        let (mut spans, logs) = match protocol {
            Protocol::Grpc => {
                let metadata = opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(
                    header_map(&headers)?,
                );
                let mut spans = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_timeout(timeout)
                    .with_metadata(metadata.clone());
                let mut logs = opentelemetry_otlp::LogExporter::builder()
                    .with_tonic()
                    .with_timeout(timeout)
                    .with_metadata(metadata);
                if let Some(e) = endpoint("") {
                    spans = spans.with_endpoint(e.clone());
                    logs = logs.with_endpoint(e);
                }
                // The exporter's own TLS setup trusts no root at all: give it chaosflow's.
                if self.grpc_uses_tls("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                    spans = spans.with_tls_config(grpc_tls()?);
                }
                if self.grpc_uses_tls("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") {
                    logs = logs.with_tls_config(grpc_tls()?);
                }
                (spans.build().map_err(err)?, logs.build().map_err(err)?)
            }
            Protocol::HttpProtobuf => {
                // One client with chaosflow's TLS policy, rather than the exporter's default.
                let client = crate::reqwest_client(true)
                    .timeout(timeout)
                    .build()
                    .map_err(|e| BuildError(format!("otlp: http client: {e}")))?;
                let mut spans = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_http_client(client.clone())
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_timeout(timeout)
                    .with_headers(headers.clone());
                let mut logs = opentelemetry_otlp::LogExporter::builder()
                    .with_http()
                    .with_http_client(client)
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_timeout(timeout)
                    .with_headers(headers);
                if let (Some(t), Some(l)) = (endpoint("/v1/traces"), endpoint("/v1/logs")) {
                    spans = spans.with_endpoint(t);
                    logs = logs.with_endpoint(l);
                }
                (spans.build().map_err(err)?, logs.build().map_err(err)?)
            }
        };
        // The SDK's detectors read OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the name
        // falls back to `chaosflow` rather than the SDK's `unknown_service`.
        let mut resource = Resource::builder();
        let named_by_environment = std::env::var_os("OTEL_SERVICE_NAME").is_some()
            || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| {
                a.split(',')
                    .any(|kv| kv.trim().starts_with("service.name="))
            });
        if let Some(name) = &self.service_name {
            resource = resource.with_service_name(name.clone());
        } else if !named_by_environment {
            resource = resource.with_service_name("chaosflow");
        }
        let resource = resource.build();
        spans.set_resource(&resource);
        let mut logs = logs;
        logs.set_resource(&resource);
        // A provider without processors only mints log records; we export them ourselves.
        let records = SdkLoggerProvider::builder().with_resource(resource).build();
        Ok(OtlpSink {
            spans,
            logs: self.logs.then_some(logs),
            records,
            scope: InstrumentationScope::builder("chaosflow")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            runs: HashMap::new(),
            pending_spans: Vec::new(),
            pending_logs: Vec::new(),
        })
    }
}

impl Config {
    /// Whether gRPC exports of a signal go over TLS: an `https` endpoint, or one without a
    /// scheme (the exporter's default) unless `OTEL_EXPORTER_OTLP_INSECURE` says otherwise.
    fn grpc_uses_tls(&self, signal_variable: &str) -> bool {
        let endpoint = self.endpoint.clone().or_else(|| {
            std::env::var(signal_variable)
                .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"))
                .ok()
        });
        match endpoint {
            Some(e) if e.starts_with("https://") => true,
            Some(e) if !e.contains("://") => !std::env::var("OTEL_EXPORTER_OTLP_INSECURE")
                .is_ok_and(|v| v.eq_ignore_ascii_case("true")),
            _ => false,
        }
    }
}

/// TLS for gRPC exports: `OTEL_EXPORTER_OTLP_CERTIFICATE`, else the bundle of chaosflow's TLS
/// policy ([`crate::tls`]), else Mozilla's roots.
fn grpc_tls() -> Result<opentelemetry_otlp::tonic_types::transport::ClientTlsConfig, BuildError> {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
    let bundle = std::env::var("OTEL_EXPORTER_OTLP_CERTIFICATE")
        .ok()
        .filter(|p| !p.is_empty())
        .map(|p| ("OTEL_EXPORTER_OTLP_CERTIFICATE", p))
        .or_else(crate::tls::ca_bundle);
    Ok(match bundle {
        Some((var, path)) => {
            let pem = std::fs::read(&path).map_err(|e| {
                BuildError(format!(
                    "otlp: cannot read CA bundle {path} (from {var}): {e}"
                ))
            })?;
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
        }
        None => ClientTlsConfig::new().with_webpki_roots(),
    })
}

fn header_map(headers: &HashMap<String, String>) -> Result<reqwest::header::HeaderMap, BuildError> {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        // Never echo the value: headers carry API keys.
        let key = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            BuildError(format!(
                "otlp: header name {name:?} is not a valid header name"
            ))
        })?;
        let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
            BuildError(format!(
                "otlp: header {name} has a value that is not valid in a header"
            ))
        })?;
        map.insert(key, value);
    }
    Ok(map)
}

/// The header values of `OTEL_EXPORTER_OTLP_HEADERS` (and its traces and logs variants), which
/// the exporter reads itself: secrets to keep out of logs and events.
pub fn environment_header_values() -> Vec<String> {
    [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    ]
    .into_iter()
    .filter_map(|name| std::env::var(name).ok())
    .flat_map(|list| {
        list.split(',')
            .filter_map(|pair| pair.split_once('=').map(|(_, v)| v.trim().to_owned()))
            .filter(|v| !v.is_empty())
            .collect::<Vec<_>>()
    })
    .collect()
}

/// The trace id of a run: its UUID.
pub fn trace_id(run_id: &str) -> TraceId {
    TraceId::from_hex(&run_id.replace('-', "")).unwrap_or_else(|_| {
        let (a, b) = (fnv(run_id, "trace-a"), fnv(run_id, "trace-b"));
        TraceId::from_bytes(((u128::from(a) << 64) | u128::from(b)).to_be_bytes())
    })
}

/// The span id of a place in a run (`experiment`, `method`, `activity:12`...).
pub fn span_id(run_id: &str, place: &str) -> SpanId {
    SpanId::from_bytes(fnv(run_id, place).max(1).to_be_bytes())
}

/// The W3C `traceparent` of the activity whose `activity-started` event is `started_seq`.
pub fn traceparent(run_id: &str, started_seq: u64) -> String {
    format!(
        "00-{}-{}-01",
        trace_id(run_id),
        span_id(run_id, &format!("activity:{started_seq}"))
    )
}

/// FNV-1a, 64 bits, then splitmix64's finalizer so that neighbouring places
/// (`activity:4`, `activity:5`) get unrelated-looking ids: stable across processes and
/// versions, unlike std's hasher.
fn fnv(a: &str, b: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.bytes().chain([0]).chain(b.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// An event timestamp (`2026-11-25T08:41:23.123456Z`) as a time.
fn event_time(ts: &str) -> SystemTime {
    crate::http::epoch_seconds(ts)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map_or_else(SystemTime::now, |d| UNIX_EPOCH + d)
}

/// A span still waiting for its end.
#[derive(Debug, Clone)]
struct Open {
    id: SpanId,
    parent: SpanId,
    name: String,
    start: SystemTime,
    attributes: Vec<KeyValue>,
}

#[derive(Debug, Default)]
struct Run {
    /// Last event applied, so a retried batch is not applied twice.
    applied: Option<u64>,
    open: HashMap<String, Open>,
    /// The open hypothesis span of each phase (`during` iterations replace each other).
    current: HashMap<String, String>,
}

/// A running `otlp` sink.
pub struct OtlpSink {
    spans: opentelemetry_otlp::SpanExporter,
    logs: Option<opentelemetry_otlp::LogExporter>,
    records: SdkLoggerProvider,
    scope: InstrumentationScope,
    runs: HashMap<String, Run>,
    pending_spans: Vec<SpanData>,
    pending_logs: Vec<SdkLogRecord>,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl OtlpSink {
    fn open(
        &mut self,
        event: &Event,
        key: &str,
        name: String,
        parent: &str,
        attributes: Vec<KeyValue>,
    ) {
        let run = self.runs.entry(event.run_id.clone()).or_default();
        let parent_id = if parent.is_empty() {
            SpanId::INVALID
        } else {
            span_id(&event.run_id, parent)
        };
        run.open.insert(
            key.to_owned(),
            Open {
                id: span_id(&event.run_id, key),
                parent: parent_id,
                name,
                start: event_time(&event.ts),
                attributes,
            },
        );
    }

    fn close(
        &mut self,
        run_id: &str,
        key: &str,
        end: SystemTime,
        attributes: Vec<KeyValue>,
        error: Option<String>,
    ) {
        let Some(open) = self.runs.get_mut(run_id).and_then(|r| r.open.remove(key)) else {
            return;
        };
        let mut all = open.attributes;
        all.extend(attributes);
        let status = match error {
            Some(message) => Status::error(message),
            None => Status::Ok,
        };
        self.pending_spans.push(SpanData {
            span_context: SpanContext::new(
                trace_id(run_id),
                open.id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: open.parent,
            parent_span_is_remote: false,
            span_kind: if key.starts_with("activity:") {
                SpanKind::Client
            } else {
                SpanKind::Internal
            },
            name: Cow::Owned(open.name),
            start_time: open.start,
            end_time: end.max(open.start),
            attributes: all,
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        });
    }

    /// The span an event belongs to, for its log record.
    fn span_of(&self, event: &Event) -> SpanId {
        let place = match event.name.as_str() {
            "activity-started" => format!("activity:{}", event.seq),
            "activity-completed" => format!(
                "activity:{}",
                event.payload["started_seq"].as_u64().unwrap_or(0)
            ),
            "hypothesis-started" | "hypothesis-completed" => hypothesis_key(event),
            n if n.starts_with("method-") => "method".into(),
            n if n.starts_with("rollbacks-") => "rollbacks".into(),
            _ => "experiment".into(),
        };
        span_id(&event.run_id, &place)
    }

    fn log(&mut self, event: &Event) {
        if self.logs.is_none() {
            return;
        }
        let logger = self.records.logger("chaosflow");
        let mut record = logger.create_log_record();
        let at = event_time(&event.ts);
        record.set_timestamp(at);
        record.set_observed_timestamp(SystemTime::now());
        let (severity, label) = if event.error.is_some() {
            (Severity::Error, "ERROR")
        } else {
            (Severity::Info, "INFO")
        };
        record.set_severity_number(severity);
        record.set_severity_text(label);
        record.set_event_name("chaosflow.event");
        record.set_body(AnyValue::String(event.name.clone().into()));
        record.set_trace_context(
            trace_id(&event.run_id),
            self.span_of(event),
            Some(TraceFlags::SAMPLED),
        );
        record.add_attribute("chaosflow.event.name", event.name.clone());
        record.add_attribute("chaosflow.event.id", event.id.clone());
        record.add_attribute("chaosflow.event.phase", event.phase.clone());
        record.add_attribute("chaosflow.run_id", event.run_id.clone());
        record.add_attribute("chaosflow.event.seq", event.seq as i64);
        if let Some(error) = &event.error {
            record.add_attribute("chaosflow.event.error", error.clone());
        }
        self.pending_logs.push(record);
    }

    /// Turns an event into span starts and ends.
    fn apply(&mut self, event: &Event) {
        let p = &event.payload;
        let at = event_time(&event.ts);
        match event.name.as_str() {
            "run-started" => {
                let mut attributes = vec![KeyValue::new("chaosflow.run_id", event.run_id.clone())];
                if let Some(title) = p.get("title") {
                    attributes.push(KeyValue::new("chaostoolkit.experiment.title", text(title)));
                }
                self.open(event, "experiment", "experiment".into(), "", attributes);
            }
            "hypothesis-started" => {
                let key = hypothesis_key(event);
                let mut attributes = vec![KeyValue::new(
                    "chaostoolkit.hypothesis.phase",
                    event.phase.clone(),
                )];
                if let Some(i) = p["iteration"].as_i64() {
                    attributes.push(KeyValue::new("chaostoolkit.hypothesis.iteration", i));
                }
                if let Some(title) = p.get("title") {
                    attributes.push(KeyValue::new("chaostoolkit.hypothesis.title", text(title)));
                }
                self.open(event, &key, "hypothesis".into(), "experiment", attributes);
                let run = self.runs.entry(event.run_id.clone()).or_default();
                run.current.insert(event.phase.clone(), key);
            }
            "hypothesis-completed" => {
                let met = p["steady_state_met"].as_bool().unwrap_or(false);
                self.close(
                    &event.run_id,
                    &hypothesis_key(event),
                    at,
                    vec![KeyValue::new("chaostoolkit.hypothesis.met", met)],
                    event.error.clone(),
                );
            }
            "method-started" => {
                self.open(event, "method", "method".into(), "experiment", Vec::new())
            }
            "method-completed" => self.close(&event.run_id, "method", at, Vec::new(), None),
            "rollbacks-started" => {
                let attributes = vec![KeyValue::new(
                    "chaostoolkit.rollbacks.strategy",
                    text(&p["strategy"]),
                )];
                self.open(
                    event,
                    "rollbacks",
                    "rollbacks".into(),
                    "experiment",
                    attributes,
                );
            }
            "rollbacks-completed" => self.close(&event.run_id, "rollbacks", at, Vec::new(), None),
            "activity-started" => {
                let activity = &p["activity"];
                let name = text(&activity["name"]);
                let parent = match event.phase.as_str() {
                    "method" => "method".to_owned(),
                    "rollbacks" => "rollbacks".to_owned(),
                    phase => self
                        .runs
                        .get(&event.run_id)
                        .and_then(|r| r.current.get(phase).cloned())
                        .unwrap_or_else(|| "experiment".into()),
                };
                let attributes = vec![
                    KeyValue::new("chaostoolkit.activity.name", name.clone()),
                    KeyValue::new("chaostoolkit.activity.type", text(&activity["type"])),
                    KeyValue::new(
                        "chaostoolkit.activity.background",
                        p["background"].as_bool().unwrap_or(false),
                    ),
                    KeyValue::new(
                        "chaostoolkit.activity.provider",
                        text(&activity["provider"]["type"]),
                    ),
                ];
                let key = format!("activity:{}", event.seq);
                self.open(
                    event,
                    &key,
                    format!("activity: {name}"),
                    &parent,
                    attributes,
                );
            }
            "activity-completed" => {
                let key = format!("activity:{}", p["started_seq"].as_u64().unwrap_or(0));
                let status = p
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("interrupted");
                let mut attributes = vec![
                    KeyValue::new("chaostoolkit.activity.status", status.to_owned()),
                    KeyValue::new("chaostoolkit.activity.output", p["output"].to_string()),
                ];
                if let Some(met) = p.get("tolerance_met").and_then(Value::as_bool) {
                    attributes.push(KeyValue::new("chaostoolkit.activity.tolerance_met", met));
                }
                if let Some(error) = &event.error {
                    attributes.push(KeyValue::new("chaostoolkit.activity.error", error.clone()));
                }
                let error = (status != "succeeded")
                    .then(|| event.error.clone().unwrap_or_else(|| status.to_owned()));
                self.close(&event.run_id, &key, at, attributes, error);
            }
            "run-interrupted" => {
                if let Some(open) = self
                    .runs
                    .get_mut(&event.run_id)
                    .and_then(|r| r.open.get_mut("experiment"))
                {
                    open.attributes
                        .push(KeyValue::new("chaostoolkit.experiment.interrupted", true));
                    // chaostoolkit-opentracing sets a boolean here; the signal's name goes
                    // beside it.
                    open.attributes
                        .push(KeyValue::new("chaostoolkit.experiment.exit_signal", true));
                    open.attributes
                        .push(KeyValue::new("chaosflow.signal", text(&p["signal"])));
                }
            }
            "run-completed" | "run-failed" => {
                let status = text(&p["status"]);
                let deviated = p["deviated"].as_bool().unwrap_or(false);
                let mut attributes = vec![
                    KeyValue::new("chaostoolkit.experiment.status", status.clone()),
                    KeyValue::new("chaostoolkit.experiment.deviated", deviated),
                ];
                if let Some(platform) = p.get("platform") {
                    attributes.push(KeyValue::new("chaostoolkit.platform.full", text(platform)));
                }
                let error = (status != "completed").then(|| format!("run {status}"));
                self.close(&event.run_id, "experiment", at, attributes, error);
            }
            "run-invalid" => {
                if !self
                    .runs
                    .get(&event.run_id)
                    .is_some_and(|r| r.open.contains_key("experiment"))
                {
                    self.open(event, "experiment", "experiment".into(), "", Vec::new());
                }
                let attributes = vec![KeyValue::new("chaostoolkit.experiment.status", "invalid")];
                self.close(
                    &event.run_id,
                    "experiment",
                    at,
                    attributes,
                    event.error.clone(),
                );
            }
            "stream-ended" => {
                // Anything still open was cut short (interruption): end it now, as an error.
                let keys: Vec<String> = self
                    .runs
                    .get(&event.run_id)
                    .map(|r| r.open.keys().cloned().collect())
                    .unwrap_or_default();
                for key in keys {
                    self.close(
                        &event.run_id,
                        &key,
                        at,
                        Vec::new(),
                        Some("the run ended first".into()),
                    );
                }
                self.runs.remove(&event.run_id);
            }
            _ => {}
        }
    }
}

/// Most spans (and log records) kept for the next export while the collector fails: a
/// collector that stays down must not grow memory without bound.
const MAX_PENDING: usize = 8192;

impl OtlpSink {
    /// Forgets the oldest pending spans and records beyond [`MAX_PENDING`].
    fn bound_pending(&mut self) {
        let spans = self.pending_spans.len().saturating_sub(MAX_PENDING);
        self.pending_spans.drain(..spans);
        let logs = self.pending_logs.len().saturating_sub(MAX_PENDING);
        self.pending_logs.drain(..logs);
    }
}

fn hypothesis_key(event: &Event) -> String {
    format!(
        "hypothesis:{}:{}",
        event.phase,
        event.payload["iteration"].as_u64().unwrap_or(0)
    )
}

impl Sink for OtlpSink {
    fn batching(&self) -> Batching {
        Batching {
            max_events: 256,
            max_wait: Duration::from_millis(200),
        }
    }

    async fn send(&mut self, events: &[Arc<Event>]) -> Result<(), SendError> {
        for event in events {
            let run = self.runs.entry(event.run_id.clone()).or_default();
            if run.applied.is_some_and(|seq| event.seq <= seq) {
                continue; // already turned into spans: this is a retry
            }
            run.applied = Some(event.seq);
            self.log(event);
            self.apply(event);
        }
        // Traces and logs go out side by side: a batch costs one round trip, not two.
        let spans = async {
            if self.pending_spans.is_empty() {
                return Ok(());
            }
            self.spans.export(self.pending_spans.clone()).await
        };
        let scope = &self.scope;
        let pairs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            self.pending_logs.iter().map(|r| (r, scope)).collect();
        let logs = async {
            match &self.logs {
                Some(exporter) if !pairs.is_empty() => exporter.export(LogBatch::new(&pairs)).await,
                _ => Ok(()),
            }
        };
        let (spans, logs) = tokio::join!(spans, logs);
        drop(pairs);
        if spans.is_ok() {
            self.pending_spans.clear();
        }
        if logs.is_ok() {
            self.pending_logs.clear();
        }
        let failure = match (spans, logs) {
            (Err(e), _) => Some(format!("otlp traces: {e}")),
            (_, Err(e)) => Some(format!("otlp logs: {e}")),
            _ => None,
        };
        if let Some(message) = failure {
            self.bound_pending();
            return Err(SendError::transient(message));
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SendError> {
        // Spans still pending here belong to batches the pipeline gave up on.
        let _ = self.spans.shutdown();
        if let Some(logs) = &self.logs {
            let _ = logs.shutdown();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_derived_from_the_run() {
        let run = "3f0c6a7e-5b8e-4c1d-9a2b-0123456789ab";
        assert_eq!(
            trace_id(run).to_string(),
            "3f0c6a7e5b8e4c1d9a2b0123456789ab"
        );
        assert_eq!(span_id(run, "activity:4"), span_id(run, "activity:4"));
        assert_ne!(span_id(run, "activity:4"), span_id(run, "activity:5"));
        let tp = traceparent(run, 4);
        assert_eq!(
            tp,
            format!(
                "00-3f0c6a7e5b8e4c1d9a2b0123456789ab-{}-01",
                span_id(run, "activity:4")
            )
        );
        assert_eq!(tp.len(), 55);
    }

    #[test]
    fn validation() {
        let mut c = Config::from_environment(None);
        assert!(c.validate().is_empty());
        c.endpoint = Some("collector:4317".into());
        c.timeout = Some(-1.0);
        assert_eq!(c.validate().len(), 2);
    }
}
