//! The OTLP sink against real OpenTelemetry receivers: the rotel collector (gRPC and HTTP),
//! and Arize Phoenix, a trace backend queried the way users will query it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::otel::{Log, Phoenix, Rotel, Span, eventually};
use crate::support::server;
use crate::support::{Outcome, Run, TlsProxy};

/// The spans of the traced experiment: five structural spans and five activities.
const SPANS: usize = 10;

/// An experiment with every part a trace shows: a hypothesis probe calling an HTTP endpoint
/// (which records the `traceparent` it receives), a succeeding action, a failing probe and a
/// rollback.
fn traced_experiment(dir: &Path, capture_key: &str) -> PathBuf {
    let path = dir.join("traced.yaml");
    std::fs::write(
        &path,
        format!(
            r#"title: traced experiment
description: every part of a run, as a trace
steady-state-hypothesis:
  title: the service answers
  probes:
    - type: probe
      name: service-answers
      tolerance: 200
      provider: {{type: http, url: "{}/health"}}
method:
  - type: action
    name: break-something
    provider: {{type: process, path: "true"}}
  - type: probe
    name: unreachable
    provider: {{type: http, url: "http://127.0.0.1:1/", timeout: 2}}
rollbacks:
  - type: action
    name: repair
    provider: {{type: process, path: "true"}}
"#,
            server::capture_url(capture_key)
        ),
    )
    .unwrap();
    path
}

fn run(settings_yaml: &str, experiment: &Path, env: &[(&str, String)]) -> (Outcome, Vec<Value>) {
    let dir = experiment.parent().unwrap();
    let settings = dir.join("settings.yaml");
    std::fs::write(&settings, settings_yaml).unwrap();
    let mut command = Run::chaosflow().settings(&settings).args([
        "run",
        "--events-path",
        "events.jsonl",
        &experiment.display().to_string(),
    ]);
    for (k, v) in env {
        command = command.env(k, v);
    }
    let outcome = command.run();
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let events = std::fs::read_to_string(outcome.dir.path().join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (outcome, events)
}

fn trace_id(events: &[Value]) -> String {
    events[0]["run_id"].as_str().unwrap().replace('-', "")
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one span named {name:?} in {spans:#?}");
    found[0]
}

/// Checks one run's trace as a collector received it.
fn check_trace(spans: &[Span], logs: &[Log], events: &[Value]) {
    let trace = trace_id(events);
    assert!(
        spans.iter().all(|s| s.trace_id == trace),
        "one trace per run"
    );
    let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "activity: break-something",
            "activity: repair",
            "activity: service-answers",
            "activity: service-answers",
            "activity: unreachable",
            "experiment",
            "hypothesis",
            "hypothesis",
            "method",
            "rollbacks",
        ]
    );

    let experiment = one(spans, "experiment");
    assert_eq!(experiment.parent_id, "", "the experiment span is the root");
    assert_eq!(
        experiment.str("chaostoolkit.experiment.title"),
        Some("traced experiment")
    );
    assert_eq!(
        experiment.str("chaostoolkit.experiment.status"),
        Some("completed")
    );
    assert_eq!(
        experiment.attributes["chaostoolkit.experiment.deviated"],
        "Bool(false)"
    );
    assert_eq!(experiment.status, "STATUS_CODE_OK");

    for part in ["method", "rollbacks"] {
        assert_eq!(
            one(spans, part).parent_id,
            experiment.id,
            "{part} under experiment"
        );
    }
    let hypotheses = named(spans, "hypothesis");
    let mut phases: Vec<&str> = hypotheses
        .iter()
        .map(|h| {
            assert_eq!(h.parent_id, experiment.id);
            assert_eq!(h.attributes["chaostoolkit.hypothesis.met"], "Bool(true)");
            h.str("chaostoolkit.hypothesis.phase").unwrap()
        })
        .collect();
    phases.sort_unstable();
    assert_eq!(phases, ["after", "before"]);
    let mut probe_parents: Vec<&str> = named(spans, "activity: service-answers")
        .iter()
        .map(|s| s.parent_id.as_str())
        .collect();
    let mut hypothesis_ids: Vec<&str> = hypotheses.iter().map(|h| h.id.as_str()).collect();
    probe_parents.sort_unstable();
    hypothesis_ids.sort_unstable();
    assert_eq!(
        probe_parents, hypothesis_ids,
        "a probe under each hypothesis"
    );

    let method = one(spans, "method");
    let action = one(spans, "activity: break-something");
    assert_eq!(action.parent_id, method.id);
    assert_eq!(action.status, "STATUS_CODE_OK");
    assert_eq!(
        action.str("chaostoolkit.activity.name"),
        Some("break-something")
    );
    assert_eq!(
        action.str("chaostoolkit.activity.status"),
        Some("succeeded")
    );
    let output: Value =
        serde_json::from_str(action.str("chaostoolkit.activity.output").unwrap()).unwrap();
    assert_eq!(output["status"], 0, "the output, as JSON");

    let failed = one(spans, "activity: unreachable");
    assert_eq!(failed.parent_id, method.id);
    assert_eq!(failed.status, "STATUS_CODE_ERROR");
    assert_eq!(failed.str("chaostoolkit.activity.status"), Some("failed"));
    let error = failed.str("chaostoolkit.activity.error").unwrap();
    assert!(error.contains("127.0.0.1:1"), "{error}");
    assert!(failed.status_message.contains("127.0.0.1:1"));

    let rollback = one(spans, "activity: repair");
    assert_eq!(rollback.parent_id, one(spans, "rollbacks").id);

    // Each event is a log record, in order, tied to its span.
    let bodies: Vec<&str> = logs.iter().map(|l| l.body.as_str()).collect();
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(bodies, names, "one log record per event, in order");
    assert!(logs.iter().all(|l| l.trace_id == trace));
    for (log, event) in logs.iter().zip(events) {
        assert_eq!(
            log.attributes["chaosflow.event.id"],
            format!("Str({})", event["id"].as_str().unwrap())
        );
    }
    let failed_log = logs
        .iter()
        .find(|l| {
            l.body == "activity-completed" && l.attributes.contains_key("chaosflow.event.error")
        })
        .expect("the failed activity's record");
    assert_eq!(
        failed_log.span_id, failed.id,
        "a record is tied to its span"
    );
    assert_eq!(failed_log.severity, "ERROR");
    let started = logs.iter().find(|l| l.body == "run-started").unwrap();
    assert_eq!(started.span_id, experiment.id);
}

fn of_service<T: Clone>(items: &[T], service: &str, of: impl Fn(&T) -> &str) -> Vec<T> {
    items.iter().filter(|i| of(i) == service).cloned().collect()
}

/// The same run, exported over gRPC and over HTTP/protobuf to a real collector: span names,
/// parent links, attributes, error statuses and log records, and the `traceparent` the
/// target of the HTTP probe received.
#[test]
fn traces_and_logs_reach_a_real_collector_over_grpc_and_http() {
    let rotel = Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    let experiment = traced_experiment(dir.path(), "otlp-traceparent");
    let settings = format!(
        "sinks:\n  - type: otlp\n    endpoint: http://127.0.0.1:{}\n    protocol: grpc\n    service_name: over-grpc\n  - type: otlp\n    endpoint: http://127.0.0.1:{}\n    protocol: http/protobuf\n    service_name: over-http\n    headers: {{x-honeycomb-team: t0p-s3cret}}\n",
        rotel.grpc, rotel.http
    );
    let (outcome, events) = run(&settings, &experiment, &[]);
    assert!(
        outcome.stderr.contains(&format!(
            "Sink sinks[0] (otlp): {} delivered, 0 retried, 0 dropped, 0 failed",
            events.len()
        )),
        "{}",
        outcome.stderr
    );
    assert!(!outcome.stderr.contains("t0p-s3cret"));

    let received = eventually(Duration::from_secs(15), || {
        let (spans, logs) = (rotel.spans(), rotel.logs());
        let complete = ["over-grpc", "over-http"].iter().all(|service| {
            spans.iter().filter(|s| s.service == *service).count() == SPANS
                && logs.iter().filter(|l| l.service == *service).count() == events.len()
        });
        complete.then_some((spans, logs))
    });
    let (spans, logs) = received.unwrap_or_else(|| {
        panic!(
            "the collector did not receive both traces; it printed:\n{}",
            rotel.output()
        )
    });
    for service in ["over-grpc", "over-http"] {
        check_trace(
            &of_service(&spans, service, |s| &s.service),
            &of_service(&logs, service, |l| &l.service),
            &events,
        );
    }

    // The probe's target saw the W3C traceparent of the probe's own span.
    let trace = trace_id(&events);
    let grpc_spans = of_service(&spans, "over-grpc", |s| &s.service);
    let mut expected: Vec<String> = named(&grpc_spans, "activity: service-answers")
        .iter()
        .map(|s| format!("00-{trace}-{}-01", s.id))
        .collect();
    let mut seen: Vec<String> = server::captured("otlp-traceparent")
        .iter()
        .map(|r| {
            r.header("traceparent")
                .expect("a traceparent header")
                .to_owned()
        })
        .collect();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected);
}

/// chaostoolkit-opentracing's control in an existing settings.yaml is served by the OTLP sink,
/// configured as that control is: `OTEL_EXPORTER_OTLP_ENDPOINT`, HTTP/protobuf, service
/// `chaostoolkit`, resource attributes from `OTEL_RESOURCE_ATTRIBUTES`.
#[test]
fn the_chaostracing_control_is_served_natively() {
    let rotel = Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    let experiment = traced_experiment(dir.path(), "otlp-control");
    let settings = "controls:\n  opentelemetry:\n    provider:\n      type: python\n      module: chaostracing.oltp\n";
    let (outcome, events) = run(
        settings,
        &experiment,
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", rotel.http),
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=ci,team=chaos".into(),
            ),
        ],
    );
    assert!(!outcome.stderr.contains("ignoring"), "{}", outcome.stderr);
    let spans = eventually(Duration::from_secs(15), || {
        let spans = rotel.spans();
        (spans.len() == SPANS).then_some(spans)
    })
    .unwrap_or_else(|| panic!("no trace; the collector printed:\n{}", rotel.output()));
    assert!(spans.iter().all(|s| s.service == "chaostoolkit"));
    let resource = &spans[0].resource;
    assert_eq!(resource["deployment.environment"], "Str(ci)");
    assert_eq!(resource["team"], "Str(chaos)");
    assert_eq!(one(&spans, "experiment").trace_id, trace_id(&events));
}

/// The way users will use it: a run's trace sent to a trace backend (Arize Phoenix), then
/// found there by querying it: the experiment, its activities and their statuses.
#[test]
fn a_run_can_be_found_in_a_trace_backend() {
    let phoenix = Phoenix::start();
    let dir = tempfile::tempdir().unwrap();
    let experiment = traced_experiment(dir.path(), "otlp-phoenix");
    let settings = format!(
        "sinks:\n  - type: otlp\n    endpoint: http://127.0.0.1:{}\n    logs: false\n",
        phoenix.grpc
    );
    let (_, events) = run(&settings, &experiment, &[]);
    let trace = trace_id(&events);

    let spans = eventually(Duration::from_secs(30), || {
        let page = phoenix.get("/v1/projects/default/spans?limit=100");
        let spans: Vec<Value> = page["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["context"]["trace_id"] == trace.as_str())
            .cloned()
            .collect();
        (spans.len() == SPANS).then_some(spans)
    })
    .unwrap_or_else(|| {
        panic!(
            "phoenix does not hold the run's {SPANS} spans: {:#}",
            phoenix.get("/v1/projects/default/spans?limit=100")
        )
    });
    let by_name: BTreeMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s))
        .collect();
    let experiment = by_name["experiment"];
    assert_eq!(
        experiment["attributes"]["chaostoolkit.experiment.title"],
        "traced experiment"
    );
    assert_eq!(
        experiment["attributes"]["chaostoolkit.experiment.status"],
        "completed"
    );
    let statuses: BTreeMap<&str, (&str, &str)> = spans
        .iter()
        .filter_map(|s| {
            let name = s["name"].as_str()?.strip_prefix("activity: ")?;
            Some((
                name,
                (
                    s["attributes"]["chaostoolkit.activity.status"].as_str()?,
                    s["status_code"].as_str()?,
                ),
            ))
        })
        .collect();
    assert_eq!(statuses["break-something"], ("succeeded", "OK"));
    assert_eq!(statuses["service-answers"], ("succeeded", "OK"));
    assert_eq!(statuses["repair"], ("succeeded", "OK"));
    assert_eq!(statuses["unreachable"], ("failed", "ERROR"));
}

/// Collectors behind TLS (as hosted backends are): gRPC and HTTP/protobuf exports over
/// `https`, trusting a private CA through `REQUESTS_CA_BUNDLE`, as the rest of chaosflow does;
/// a collector whose CA is not trusted is refused, and its events are counted as failed.
#[test]
fn exports_over_tls_trust_the_configured_bundle() {
    let rotel = Rotel::start();
    let grpc = TlsProxy::start(rotel.grpc, &["h2"]);
    let http = TlsProxy::start(rotel.http, &["h2", "http/1.1"]);
    let dir = tempfile::tempdir().unwrap();
    let experiment = traced_experiment(dir.path(), "otlp-tls");
    let settings = format!(
        "sinks:\n  - type: otlp\n    endpoint: https://127.0.0.1:{}\n    service_name: tls-grpc\n    timeout: 5\n  - type: otlp\n    endpoint: https://127.0.0.1:{}\n    protocol: http/protobuf\n    service_name: tls-http\n    timeout: 5\npipeline:\n  max_attempts: 1\n",
        grpc.port, http.port
    );
    let (outcome, events) = run(
        &settings,
        &experiment,
        &[("REQUESTS_CA_BUNDLE", grpc.ca.display().to_string())],
    );
    // Each proxy has its own CA: only the trusted one's collector is reached.
    assert!(
        outcome
            .stderr
            .contains(&format!("Sink sinks[0] (otlp): {} delivered", events.len())),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("Sink sinks[1] (otlp): 0 delivered"),
        "the other certificate is not trusted: {}",
        outcome.stderr
    );
    let spans = eventually(Duration::from_secs(15), || {
        let spans = rotel.spans();
        (spans.iter().filter(|s| s.service == "tls-grpc").count() == SPANS).then_some(spans)
    })
    .unwrap_or_else(|| {
        panic!(
            "no trace over TLS; the collector printed:\n{}",
            rotel.output()
        )
    });
    assert!(spans.iter().all(|s| s.service == "tls-grpc"));

    // Trusting the HTTP proxy's CA instead: HTTP/protobuf over TLS gets through.
    let (outcome, events) = run(
        &settings,
        &experiment,
        &[("REQUESTS_CA_BUNDLE", http.ca.display().to_string())],
    );
    assert!(
        outcome
            .stderr
            .contains(&format!("Sink sinks[1] (otlp): {} delivered", events.len())),
        "{}",
        outcome.stderr
    );
    eventually(Duration::from_secs(15), || {
        (rotel
            .spans()
            .iter()
            .filter(|s| s.service == "tls-http")
            .count()
            == SPANS)
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no trace over HTTPS; the collector printed:\n{}",
            rotel.output()
        )
    });
}
