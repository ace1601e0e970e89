//! Pipeline throughput and memory: events/s from the emitter through the pipeline into the
//! `file` sink and the batched `http` sink (to a receiver on 127.0.0.1 in this process), and
//! peak memory under a burst of a million events with the default queues.
//!
//! `cargo bench --bench pipeline [-- EVENTS]` (default 200000); `scripts/bench-pipeline` runs it
//! with the hello-world comparison. Each figure is the median of 5 rounds.

#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chaosflow::events::{Emitter, Phase, Publisher};
use chaosflow::pipeline::{Options, Pipeline, SinkConfig, SinkSpec};
use serde_json::{Value, json};

/// An `activity-completed` payload of a typical size (about 500 bytes as JSON).
fn payload(i: u64) -> Value {
    json!({
        "activity": {
            "type": "action",
            "name": format!("change-token-line-{i}"),
            "provider": {"type": "process", "path": "sh", "arguments": ["-c", "printf 'burp blah\\n' > \"$0\"", "hello-world.txt"]},
        },
        "output": {"status": 0, "stdout": "", "stderr": ""},
        "start": "2026-11-25T10:36:18.984483",
        "status": "succeeded",
        "end": "2026-11-25T10:36:18.986011",
        "duration": 0.001528,
        "started_seq": i,
    })
}

/// Peak resident set of this process so far, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A keep-alive HTTP/1.1 receiver that answers 200 to everything and counts the JSON lines
/// it receives.
fn receiver() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let lines = Arc::new(AtomicU64::new(0));
    let counter = lines.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || serve(stream, &counter));
        }
    });
    (url, lines)
}

fn serve(stream: TcpStream, lines: &AtomicU64) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut body = Vec::new();
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        body.resize(length, 0);
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let count = body.iter().filter(|b| **b == b'\n').count() as u64;
        lines.fetch_add(count, Ordering::Relaxed);
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

struct Round {
    /// Events per second from the first emit to the end of the drain.
    throughput: f64,
    /// Events per second the emitter accepted (the runner's side).
    emit_rate: f64,
    delivered: u64,
    dropped: u64,
}

fn round(sink: &SinkConfig, events: u64, queue_capacity: usize) -> Round {
    let mut publisher = Publisher::new();
    let spec = SinkSpec {
        name: "sinks[0]".into(),
        config: sink.clone(),
    };
    let options = Options {
        queue_capacity,
        drain_timeout: Duration::from_secs(600),
        max_attempts: 5,
        durable: false,
    };
    let pipeline = Pipeline::start(&[spec], &mut publisher, options).unwrap();
    let emitter = Emitter::new(None, publisher).unwrap();
    let payloads: Vec<Value> = (0..events).map(payload).collect();
    let start = Instant::now();
    for p in payloads {
        emitter.emit("activity-completed", Phase::Method, p, None);
    }
    let emitted = start.elapsed();
    emitter.close();
    let summary = pipeline.shutdown().remove(0);
    let total = start.elapsed();
    Round {
        throughput: summary.delivered as f64 / total.as_secs_f64(),
        emit_rate: events as f64 / emitted.as_secs_f64(),
        delivered: summary.delivered,
        dropped: summary.dropped,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let events: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let (url, received) = receiver();
    let file = |i: usize| -> SinkConfig {
        serde_json::from_value(json!({
            "type": "file",
            "path": dir.path().join(format!("events-{i}.jsonl")),
        }))
        .unwrap()
    };
    let http = |max_events: usize| -> SinkConfig {
        serde_json::from_value(json!({
            "type": "http", "url": url, "format": "events",
            "batch": {"max_events": max_events, "max_wait": 0.05},
        }))
        .unwrap()
    };
    if std::env::args().any(|a| a == "burst") {
        return burst(&file(99), &http(100));
    }
    let capacity = usize::try_from(events).unwrap();
    println!("pipeline throughput, {events} events of ~500 bytes, median of 5 rounds");
    println!("{:<34} {:>14} {:>16}", "sink", "delivered/s", "emitted/s");
    let cases: Vec<(&str, Vec<SinkConfig>)> = vec![
        ("file", (0..5).map(file).collect()),
        ("http, format events, batch 100", vec![http(100); 5]),
        ("http, format events, batch 1000", vec![http(1000); 5]),
    ];
    for (name, sinks) in &cases {
        let rounds: Vec<Round> = sinks.iter().map(|s| round(s, events, capacity)).collect();
        assert!(
            rounds
                .iter()
                .all(|r| r.delivered == events && r.dropped == 0),
            "{name}: every event delivered"
        );
        println!(
            "{name:<34} {:>14.0} {:>16.0}",
            median(rounds.iter().map(|r| r.throughput).collect()),
            median(rounds.iter().map(|r| r.emit_rate).collect()),
        );
    }
    let expected = 10 * events;
    assert_eq!(
        received.load(Ordering::Relaxed),
        expected,
        "the receiver got every event of the http rounds"
    );
}

/// A burst the sinks cannot keep up with, through the default queues, in a process of its own
/// (so the peak RSS is the burst's): the runner keeps going, the excess is dropped and
/// counted, memory stays flat.
fn burst(file: &SinkConfig, http: &SinkConfig) {
    let burst = 1_000_000;
    let before = peak_rss_kib();
    let mut publisher = Publisher::new();
    let specs = [
        SinkSpec {
            name: "sinks[0]".into(),
            config: file.clone(),
        },
        SinkSpec {
            name: "sinks[1]".into(),
            config: http.clone(),
        },
    ];
    let pipeline = Pipeline::start(&specs, &mut publisher, Options::default()).unwrap();
    let emitter = Emitter::new(None, publisher).unwrap();
    let start = Instant::now();
    for i in 0..burst {
        emitter.emit("activity-completed", Phase::Method, payload(i), None);
    }
    let emitted = start.elapsed();
    emitter.close();
    let summaries = pipeline.shutdown();
    let after = peak_rss_kib();
    println!(
        "burst of {burst} events into a file and a batched http sink, default queues (1024 per \
         sink): emitted in {:.2} s ({:.0}/s)",
        emitted.as_secs_f64(),
        burst as f64 / emitted.as_secs_f64()
    );
    for s in &summaries {
        println!("  {s}");
    }
    println!(
        "  peak RSS of the process: {:.1} MiB with the pipeline started, {:.1} MiB after the burst",
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
}
