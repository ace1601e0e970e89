//! Real OpenTelemetry peers, installed from PyPI by `scripts/setup-test-peers`:
//!
//! - [`Rotel`]: the rotel collector (`rotel-agent`, OTLP over gRPC and HTTP) printing what it
//!   receives; [`Rotel::spans`] and [`Rotel::logs`] parse its detailed debug output;
//! - [`Phoenix`]: Arize Phoenix, a trace backend queried over its REST API.
//!
//! A missing peer fails the test with the command that installs it; nothing is skipped.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::repo;

/// A free port on 127.0.0.1 (bound, then released for the peer to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn wait_listening(port: u16, what: &str, log: &Path, within: Duration) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < within,
            "{what} did not listen on 127.0.0.1:{port} within {within:?}; its output:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `done` holds, for at most `within`.
pub fn eventually<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if start.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A span as the collector printed it.
#[derive(Debug, Clone, Default)]
pub struct Span {
    /// `service.name` of its resource.
    pub service: String,
    /// Every attribute of its resource, as printed.
    pub resource: BTreeMap<String, String>,
    pub trace_id: String,
    pub parent_id: String,
    pub id: String,
    pub name: String,
    pub kind: String,
    /// `STATUS_CODE_OK`, `STATUS_CODE_ERROR`...
    pub status: String,
    pub status_message: String,
    /// Attribute values as printed: `Str(x)`, `Bool(true)`, `Int(3)`.
    pub attributes: BTreeMap<String, String>,
}

impl Span {
    /// A string attribute's value.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.attributes
            .get(key)
            .and_then(|v| v.strip_prefix("Str(")?.strip_suffix(')'))
    }
}

/// A log record as the collector printed it.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// `service.name` of its resource.
    pub service: String,
    pub body: String,
    pub severity: String,
    pub trace_id: String,
    pub span_id: String,
    pub attributes: BTreeMap<String, String>,
}

/// The rotel collector, receiving OTLP on two loopback ports; stopped on drop.
pub struct Rotel {
    child: Child,
    output: PathBuf,
    _dir: tempfile::TempDir,
    /// OTLP/gRPC port.
    pub grpc: u16,
    /// OTLP/HTTP port.
    pub http: u16,
}

/// `rotel-agent` from the `rotel` wheel in `.venv` (`$CHAOSFLOW_ROTEL` overrides).
fn rotel_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CHAOSFLOW_ROTEL") {
        return PathBuf::from(path);
    }
    let python = repo().join(".venv/bin/python");
    let out = Command::new(&python)
        .args([
            "-c",
            "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output();
    let path = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match path {
        Some(p) if p.is_file() => p,
        _ => panic!(
            "the OTLP tests need the rotel collector: run ./scripts/setup-test-peers (it installs \
             rotel into .venv) or point CHAOSFLOW_ROTEL at a rotel-agent binary"
        ),
    }
}

impl Rotel {
    /// Starts a collector that prints every span and log record it receives.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let output = dir.path().join("rotel.out");
        let file = std::fs::File::create(&output).expect("rotel output file");
        let (grpc, http) = (free_port(), free_port());
        let child = Command::new(rotel_bin())
            .args([
                "start",
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log",
                "logs",
                "--debug-log-verbosity",
                "detailed",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http}"),
            ])
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .spawn()
            .expect("start rotel-agent");
        let rotel = Self {
            child,
            output,
            _dir: dir,
            grpc,
            http,
        };
        wait_listening(grpc, "rotel (gRPC)", &rotel.output, Duration::from_secs(20));
        wait_listening(http, "rotel (HTTP)", &rotel.output, Duration::from_secs(20));
        rotel
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.output).unwrap_or_default()).into_owned()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        parse(&self.output()).0
    }

    /// Every log record received so far.
    pub fn logs(&self) -> Vec<Log> {
        parse(&self.output()).1
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses rotel's `--debug-log-verbosity detailed` dump (the collector's debug exporter
/// format: `ResourceSpans #0`, `Span #0`, `    Name           : x`, `     -> key: Str(v)`).
fn parse(text: &str) -> (Vec<Span>, Vec<Log>) {
    enum At {
        Resource,
        Span,
        Log,
        Nothing,
    }
    let (mut spans, mut logs) = (Vec::<Span>::new(), Vec::<Log>::new());
    let mut service = String::new();
    let mut resource = BTreeMap::new();
    let mut at = At::Nothing;
    for line in text.lines() {
        if line.starts_with("ResourceSpans #") || line.starts_with("ResourceLog") {
            at = At::Resource;
            service.clear();
            resource.clear();
            continue;
        }
        if line.starts_with("Span #") {
            spans.push(Span {
                service: service.clone(),
                resource: resource.clone(),
                ..Span::default()
            });
            at = At::Span;
            continue;
        }
        if line.starts_with("LogRecord #") {
            logs.push(Log {
                service: service.clone(),
                ..Log::default()
            });
            at = At::Log;
            continue;
        }
        if line.starts_with("ScopeSpans") || line.starts_with("ScopeLogs") {
            continue;
        }
        let field = line
            .trim()
            .split_once(':')
            .map(|(k, v)| (k.trim(), v.trim()));
        if let Some(attr) = line.trim_start().strip_prefix("-> ") {
            let Some((key, value)) = attr.split_once(": ") else {
                continue;
            };
            match at {
                At::Resource => {
                    if key == "service.name" {
                        service = value
                            .trim_start_matches("Str(")
                            .trim_end_matches(')')
                            .to_owned();
                    }
                    resource.insert(key.to_owned(), value.to_owned());
                }
                At::Span => {
                    if let Some(s) = spans.last_mut() {
                        s.attributes.insert(key.into(), value.into());
                    }
                }
                At::Log => {
                    if let Some(l) = logs.last_mut() {
                        l.attributes.insert(key.into(), value.into());
                    }
                }
                _ => {}
            }
            continue;
        }
        let Some((key, value)) = field else { continue };
        match at {
            At::Span => {
                let Some(s) = spans.last_mut() else { continue };
                let value = value.to_owned();
                match key {
                    "Trace ID" => s.trace_id = value,
                    "Parent ID" => s.parent_id = value,
                    "ID" => s.id = value,
                    "Name" => s.name = value,
                    "Kind" => s.kind = value,
                    "Status code" => s.status = value,
                    "Status message" => s.status_message = value,
                    _ => {}
                }
            }
            At::Log => {
                let Some(l) = logs.last_mut() else { continue };
                let value = value.to_owned();
                match key {
                    "Body" => {
                        l.body = value
                            .trim_start_matches("Str(")
                            .trim_end_matches(')')
                            .to_owned();
                    }
                    "SeverityText" => l.severity = value,
                    "Trace ID" => l.trace_id = value,
                    "Span ID" => l.span_id = value,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    (spans, logs)
}

/// Arize Phoenix (`phoenix serve`) on loopback ports, with its own data directory; stopped on
/// drop.
pub struct Phoenix {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
    /// HTTP port (UI, REST API and OTLP/HTTP at `/v1/traces`).
    pub http: u16,
    /// OTLP/gRPC port.
    pub grpc: u16,
}

impl Phoenix {
    /// Starts Phoenix from `.venv-phoenix` (`$CHAOSFLOW_PHOENIX` overrides) and waits until it
    /// is healthy.
    pub fn start() -> Self {
        let bin = std::env::var_os("CHAOSFLOW_PHOENIX")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join(".venv-phoenix/bin/phoenix"));
        assert!(
            bin.is_file(),
            "the trace backend test needs Arize Phoenix at {}: run ./scripts/setup-test-peers \
             (it installs arize-phoenix into .venv-phoenix) or point CHAOSFLOW_PHOENIX at a \
             phoenix executable",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("a temp dir");
        let log = dir.path().join("phoenix.log");
        let file = std::fs::File::create(&log).expect("phoenix log");
        let (http, grpc) = (free_port(), free_port());
        let child = Command::new(bin)
            .arg("serve")
            .env("PHOENIX_WORKING_DIR", dir.path())
            .env("PHOENIX_HOST", "127.0.0.1")
            .env("PHOENIX_PORT", http.to_string())
            .env("PHOENIX_GRPC_PORT", grpc.to_string())
            .env("PHOENIX_TELEMETRY_ENABLED", "false")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .spawn()
            .expect("start phoenix");
        let phoenix = Self {
            child,
            log,
            _dir: dir,
            http,
            grpc,
        };
        wait_listening(http, "phoenix", &phoenix.log, Duration::from_secs(120));
        wait_listening(
            grpc,
            "phoenix (gRPC)",
            &phoenix.log,
            Duration::from_secs(60),
        );
        phoenix
    }

    /// `GET` a REST path (`/v1/projects/default/spans?limit=100`) as JSON.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = http_get(self.http, path);
        assert!(
            status == 200,
            "GET {path}: {status} {body}\nphoenix log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        serde_json::from_str(&body).expect("phoenix answers JSON")
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1 (so the answer is neither chunked nor kept alive).
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
