//! The journal event stream: chaosflow's core contract with sinks, the sidecar and the
//! operator.
//!
//! Every `chaosflow run` (and `chaosflow validate`) emits a stream of events. Each is a
//! [`chaosflow_sinks::Event`] envelope:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `id` | string | `<run_id>:<seq>`, unique and stable: receivers deduplicate on it |
//! | `run_id` | string | UUID shared by every event of the run |
//! | `seq` | integer | 0, 1, 2... in emission order, without gaps |
//! | `ts` | string | UTC emission time, RFC 3339 with microseconds |
//! | `name` | string | one of the names below |
//! | `phase` | string | `run`, `validate`, `before`, `during`, `after`, `method`, `rollbacks` |
//! | `payload` | any | see below (`null` when none) |
//! | `error` | string or null | the failure an event reports |
//!
//! Names and payloads. Chaos Toolkit's own flow events keep their names, positions and
//! payloads; the finer ones follow its kebab-case:
//!
//! | name | phase | payload |
//! |---|---|---|
//! | `run-started` | run | the experiment as loaded (before validation, as `chaos`) |
//! | `run-invalid` | run | the experiment (or `null` if it could not be loaded); `error` lists the problems |
//! | `hypothesis-started` | before, during, after | `{title, iteration}` (`iteration` counts during-method runs from 1, else `null`) |
//! | `activity-started` | before, during, after, method, rollbacks | `{activity, start, background}` |
//! | `activity-completed` | same | the journal run item (`activity, output, start, status, exception?, end, duration, tolerance_met?`) plus `started_seq`, the `seq` of its `activity-started`; no `status` when interrupted; `error` is the failure message |
//! | `hypothesis-completed` | before, during, after | `{title, iteration, steady_state_met, probes}` |
//! | `method-started` | method | `{activities}`: how many the method declares |
//! | `method-completed` | method | `{activities}`: how many ran |
//! | `rollbacks-started` | rollbacks | `{strategy, rollbacks}` |
//! | `rollbacks-completed` | rollbacks | `{rollbacks}`: how many ran |
//! | `rollbacks-skipped` | rollbacks | `{strategy, reason}` |
//! | `run-interrupted` | run | `{signal}` when SIGTERM, SIGINT, SIGUSR1 or SIGUSR2 arrives |
//! | `run-completed` | run | the journal (status `completed`, deviated or not) |
//! | `run-failed` | run | the journal (any other status) |
//! | `run-deviated` | run | the journal, after `run-completed`/`run-failed`, when deviated |
//! | `validate-started`, `validate-completed` | validate | the experiment (`chaosflow validate`) |
//! | `validate-failed` | validate | the experiment; `error` lists the problems |
//! | `stream-ended` | run, validate | `{status, deviated, exit_code, events, journal_path}`: always the last event |
//!
//! `stream-ended` makes the end of a stream explicit: a reader that has seen it knows nothing
//! follows (`status` is `invalid` when the experiment could not be loaded or validated;
//! `events` counts every event of the stream, this one included).
//!
//! Secrets are masked (`***`) in every payload and error before the event leaves the
//! emitter (see [`crate::redact`]).
//!
//! # Delivery
//!
//! [`Emitter::emit`] assigns the sequence number, appends the event to the `--events-path`
//! file as one JSON line (flushed at once, so a tailing sidecar sees it), then offers it to
//! every in-process subscriber of the [`Publisher`] without ever waiting: a subscriber whose
//! bounded queue is full loses the event, and the loss is counted ([`Publisher::dropped`]).
//! The runner never waits on a sink.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chaosflow_sinks::Event;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::redact;

/// Event names; see the module documentation for their phases and payloads.
pub mod names {
    /// The run begins (Chaos Toolkit flow event).
    pub const RUN_STARTED: &str = "run-started";
    /// The experiment could not be loaded or is invalid.
    pub const RUN_INVALID: &str = "run-invalid";
    /// The run ended with status `completed` (Chaos Toolkit flow event).
    pub const RUN_COMPLETED: &str = "run-completed";
    /// The run ended with another status (Chaos Toolkit flow event).
    pub const RUN_FAILED: &str = "run-failed";
    /// The steady state deviated (Chaos Toolkit flow event).
    pub const RUN_DEVIATED: &str = "run-deviated";
    /// A signal interrupted the run.
    pub const RUN_INTERRUPTED: &str = "run-interrupted";
    /// `chaosflow validate` begins (Chaos Toolkit flow event).
    pub const VALIDATE_STARTED: &str = "validate-started";
    /// The experiment is valid (Chaos Toolkit flow event).
    pub const VALIDATE_COMPLETED: &str = "validate-completed";
    /// The experiment is invalid (Chaos Toolkit flow event).
    pub const VALIDATE_FAILED: &str = "validate-failed";
    /// A steady-state hypothesis evaluation begins.
    pub const HYPOTHESIS_STARTED: &str = "hypothesis-started";
    /// A steady-state hypothesis evaluation ended.
    pub const HYPOTHESIS_COMPLETED: &str = "hypothesis-completed";
    /// The method begins.
    pub const METHOD_STARTED: &str = "method-started";
    /// The method ended.
    pub const METHOD_COMPLETED: &str = "method-completed";
    /// An activity begins.
    pub const ACTIVITY_STARTED: &str = "activity-started";
    /// An activity ended.
    pub const ACTIVITY_COMPLETED: &str = "activity-completed";
    /// Rollbacks begin.
    pub const ROLLBACKS_STARTED: &str = "rollbacks-started";
    /// Rollbacks ended.
    pub const ROLLBACKS_COMPLETED: &str = "rollbacks-completed";
    /// Rollbacks are not played (strategy).
    pub const ROLLBACKS_SKIPPED: &str = "rollbacks-skipped";
    /// The last event of every stream.
    pub const STREAM_ENDED: &str = "stream-ended";
}

/// The part of a run an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Run-level events.
    Run,
    /// `chaosflow validate`.
    Validate,
    /// The steady-state hypothesis before the method.
    Before,
    /// The steady-state hypothesis while the method runs.
    During,
    /// The steady-state hypothesis after the method.
    After,
    /// The method.
    Method,
    /// The rollbacks.
    Rollbacks,
}

impl Phase {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Validate => "validate",
            Self::Before => "before",
            Self::During => "during",
            Self::After => "after",
            Self::Method => "method",
            Self::Rollbacks => "rollbacks",
        }
    }
}

/// Counters of one subscriber's queue.
#[derive(Debug, Default)]
pub struct QueueCounts {
    /// Events put in the queue.
    pub accepted: AtomicU64,
    /// Events that did not fit (the queue was full): lost for this subscriber.
    pub dropped: AtomicU64,
}

/// An event in a subscriber's queue, with its place in the source it came from.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The event.
    pub event: Arc<Event>,
    /// Where the event stands in its source, increasing: the sequence number in the runner,
    /// the position just past its line in the sidecar's events file. A sink that has handled
    /// an event has handled everything up to its mark.
    pub mark: u64,
}

/// A bounded in-process queue of events, and what it accepts.
#[derive(Debug)]
struct Subscriber {
    name: String,
    tx: mpsc::Sender<Queued>,
    /// Event names wanted; all when `None`.
    filter: Option<HashSet<String>>,
    counts: Arc<QueueCounts>,
}

impl Subscriber {
    fn wants(&self, event: &Event) -> bool {
        self.filter.as_ref().is_none_or(|f| f.contains(&event.name))
    }
}

/// The handle events are published through; sinks subscribe to it.
#[derive(Debug, Default)]
pub struct Publisher {
    subscribers: Mutex<Vec<Subscriber>>,
    counts: Vec<(String, Arc<QueueCounts>)>,
}

/// What a subscriber receives.
#[derive(Debug)]
pub struct Subscription {
    /// The events, in order, as long as the queue had room; closed by [`Emitter::close`].
    pub events: mpsc::Receiver<Queued>,
    /// The queue's counters.
    pub counts: Arc<QueueCounts>,
}

impl Publisher {
    /// A publisher without subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscriber with a queue of `capacity` events (at least 1), receiving the events
    /// named in `filter` (all when `None`).
    pub fn subscribe(
        &mut self,
        name: impl Into<String>,
        capacity: usize,
        filter: Option<&[String]>,
    ) -> Subscription {
        let name = name.into();
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let counts = Arc::new(QueueCounts::default());
        self.counts.push((name.clone(), counts.clone()));
        self.subscribers
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Subscriber {
                name,
                tx,
                filter: filter.map(|names| names.iter().cloned().collect()),
                counts: counts.clone(),
            });
        Subscription { events: rx, counts }
    }

    /// Offers an event to every interested subscriber without waiting.
    fn publish(&self, event: &Arc<Event>) {
        let subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for sub in subscribers.iter().filter(|s| s.wants(event)) {
            let queued = Queued {
                event: event.clone(),
                mark: event.seq,
            };
            match sub.tx.try_send(queued) {
                Ok(()) => {
                    sub.counts.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if sub.counts.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!(
                            subscriber = %sub.name,
                            "Event queue full; dropping events for this subscriber."
                        );
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Hands an event to every interested subscriber, waiting while a queue is full: the
    /// sidecar's backpressure (it reads a durable file, so waiting only means reading later).
    /// A subscriber that stopped (its sink gave up at the drain deadline) is skipped.
    ///
    /// # Panics
    ///
    /// When called from inside a tokio runtime (it blocks the thread).
    pub fn publish_blocking(&self, event: Arc<Event>, mark: u64) {
        let subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for sub in subscribers.iter().filter(|s| s.wants(&event)) {
            let queued = Queued {
                event: event.clone(),
                mark,
            };
            if sub.tx.blocking_send(queued).is_ok() {
                sub.counts.accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Closes every queue: subscribers get the events already queued, then the end.
    pub fn close(&self) {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Events dropped so far, per subscriber name.
    pub fn dropped(&self) -> Vec<(String, u64)> {
        self.counts
            .iter()
            .map(|(name, c)| (name.clone(), c.dropped.load(Ordering::Relaxed)))
            .collect()
    }
}

enum Output {
    File(File),
    Stdout,
}

struct State {
    seq: u64,
    output: Option<Output>,
    write_errors: u64,
}

struct Inner {
    run_id: String,
    state: Mutex<State>,
    publisher: Publisher,
}

/// Emits the events of one run: numbering, the events file, the publisher. Cheap to clone.
#[derive(Clone)]
pub struct Emitter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("run_id", &self.inner.run_id)
            .finish()
    }
}

impl Emitter {
    /// Creates the emitter of a run. `events_path` (`-` for stdout) is opened for appending,
    /// so a restarted runner never truncates what a sidecar has not read yet.
    ///
    /// # Errors
    ///
    /// The events file cannot be opened.
    pub fn new(events_path: Option<&Path>, publisher: Publisher) -> std::io::Result<Self> {
        let output = match events_path {
            None => None,
            Some(p) if p.as_os_str() == "-" => Some(Output::Stdout),
            Some(p) => Some(Output::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                run_id: uuid::Uuid::new_v4().to_string(),
                state: Mutex::new(State {
                    seq: 0,
                    output,
                    write_errors: 0,
                }),
                publisher,
            }),
        })
    }

    /// The run id shared by all events.
    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// Number of events emitted so far.
    pub fn count(&self) -> u64 {
        self.lock().seq
    }

    /// The publisher, for drop accounting.
    pub fn publisher(&self) -> &Publisher {
        &self.inner.publisher
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Emits one event and returns its sequence number.
    pub fn emit(&self, name: &str, phase: Phase, mut payload: Value, error: Option<String>) -> u64 {
        let redactor = redact::global();
        redactor.value(&mut payload);
        let error = error.map(|e| redactor.text(&e).into_owned());
        // One lock orders numbering, the file and publication, also for background activities.
        let mut state = self.lock();
        let seq = state.seq;
        state.seq += 1;
        let event = Arc::new(Event {
            id: format!("{}:{seq}", self.inner.run_id),
            run_id: self.inner.run_id.clone(),
            seq,
            ts: chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string(),
            name: name.to_owned(),
            phase: phase.as_str().to_owned(),
            payload,
            error,
        });
        if let Some(output) = &mut state.output {
            let line = event.to_json_line();
            let written = match output {
                Output::File(f) => f.write_all(line.as_bytes()).and_then(|()| f.flush()),
                Output::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes()).and_then(|()| out.flush())
                }
            };
            if let Err(e) = written {
                state.write_errors += 1;
                if state.write_errors == 1 {
                    tracing::error!(error = %e, "Cannot write to the events file; events are lost.");
                }
            }
        }
        self.inner.publisher.publish(&event);
        seq
    }

    /// Events that could not be written to the events file (0 when all landed).
    pub fn write_errors(&self) -> u64 {
        self.lock().write_errors
    }

    /// Ends the in-process delivery: subscribers receive what is queued, then the end of
    /// their queue. Later events still go to the events file.
    pub fn close(&self) {
        self.inner.publisher.close();
    }

    /// Flushes the events file to disk (at the end of a run).
    pub fn sync(&self) {
        if let Some(Output::File(f)) = &self.lock().output {
            let _ = f.sync_data();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn numbers_writes_and_publishes_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut publisher = Publisher::new();
        let mut sub = publisher.subscribe("small", 2, None);
        let mut starts = publisher.subscribe("starts", 8, Some(&["run-started".to_string()]));
        let emitter = Emitter::new(Some(&path), publisher).unwrap();
        for i in 0..5 {
            emitter.emit(
                names::ACTIVITY_STARTED,
                Phase::Method,
                json!({"i": i}),
                None,
            );
        }
        assert_eq!(emitter.count(), 5);
        emitter.emit(names::RUN_STARTED, Phase::Run, json!(null), None);
        // Only two fitted; four were dropped, none blocked.
        assert_eq!(sub.counts.dropped.load(Ordering::Relaxed), 4);
        assert_eq!(sub.counts.accepted.load(Ordering::Relaxed), 2);
        // The filtered subscriber only got what it asked for.
        assert_eq!(
            starts.events.recv().await.unwrap().event.name,
            "run-started"
        );
        emitter.close();
        assert!(
            starts.events.recv().await.is_none(),
            "closed after the queued events"
        );
        let first = sub.events.recv().await.unwrap();
        assert_eq!(
            first.mark, 0,
            "the runner marks events with their sequence number"
        );
        let first = first.event;
        assert_eq!(first.seq, 0);
        assert_eq!(first.id, format!("{}:0", emitter.run_id()));
        let lines: Vec<Event> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| Event::from_json_line(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 6);
        assert!(lines.iter().enumerate().all(|(i, e)| e.seq == i as u64));
        assert_eq!(
            emitter.publisher().dropped(),
            vec![("small".to_string(), 4), ("starts".to_string(), 0)]
        );
    }
}
