//! The event pipeline: from the runner's publisher to every configured sink.
//!
//! Each sink gets a bounded queue (filtered by its `events:` list) and a task that takes
//! batches from it, sends them, and retries failures with capped, jittered backoff. The runner
//! never waits: a full queue drops the newest events, and the drops are counted and reported.
//! All sink tasks run on their own thread and tokio runtime, so a sink's work never delays the
//! experiment either. At the end of a run the pipeline drains under a deadline and reports one
//! line per sink: delivered, retried, dropped, failed (and undelivered, when the deadline cut
//! the drain short).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use chaosflow_sinks::retry::Backoff;
use chaosflow_sinks::{BuildError, Event, Sink, exec, file, http, otlp, slack};
use tokio::sync::mpsc;

use crate::events::{Publisher, QueueCounts};

/// A configured sink: where it comes from in the settings, and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    /// Where it was configured: `notifications[0]`, `sinks[2]`...
    pub name: String,
    /// The sink.
    pub config: SinkConfig,
}

/// The sinks chaosflow knows.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// JSON Lines in a file.
    File(file::Config),
    /// HTTP requests.
    Http(http::Config),
    /// Slack messages.
    Slack(slack::Config),
    /// OpenTelemetry traces and logs.
    Otlp(otlp::Config),
    /// A program fed JSON Lines.
    Exec(exec::Config),
}

impl SinkConfig {
    /// The `type:` name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Http(_) => "http",
            Self::Slack(_) => "slack",
            Self::Otlp(_) => "otlp",
            Self::Exec(_) => "exec",
        }
    }

    /// The `events:` filter.
    pub fn events(&self) -> Option<&[String]> {
        match self {
            Self::File(c) => c.events.as_deref(),
            Self::Http(c) => c.events.as_deref(),
            Self::Slack(c) => c.events.as_deref(),
            Self::Otlp(c) => c.events.as_deref(),
            Self::Exec(c) => c.events.as_deref(),
        }
        .map(|e| e as &[String])
    }

    /// Problems with the configuration, without I/O.
    pub fn validate(&self) -> Vec<chaosflow_sinks::Problem> {
        match self {
            Self::File(c) => c.validate(),
            Self::Http(c) => c.validate(),
            Self::Slack(c) => c.validate(),
            Self::Otlp(c) => c.validate(),
            Self::Exec(c) => c.validate(),
        }
    }
}

/// How the pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Events each sink's queue holds before dropping the newest.
    pub queue_capacity: usize,
    /// How long the pipeline may take to deliver what is queued at the end of a run.
    pub drain_timeout: Duration,
    /// Attempts per batch before its events are counted as failed.
    pub max_attempts: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            drain_timeout: Duration::from_secs(10),
            max_attempts: 5,
        }
    }
}

/// Delivery counters of one sink.
#[derive(Debug, Default)]
struct Stats {
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
}

/// The end-of-run report of one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The sink's name (its place in the settings).
    pub name: String,
    /// Its type.
    pub kind: &'static str,
    /// Events delivered.
    pub delivered: u64,
    /// Retried attempts.
    pub retried: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
    /// Events lost to final failures.
    pub failed: u64,
    /// Events still queued when the drain deadline passed.
    pub undelivered: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sink {} ({}): {} delivered, {} retried, {} dropped, {} failed",
            self.name, self.kind, self.delivered, self.retried, self.dropped, self.failed
        )?;
        if self.undelivered > 0 {
            write!(f, ", {} undelivered at the deadline", self.undelivered)?;
        }
        Ok(())
    }
}

/// When the drain must be over; unset while the run goes on.
#[derive(Debug)]
struct Deadline {
    base: Instant,
    /// Milliseconds after `base`; `u64::MAX` while unset.
    at: AtomicU64,
}

impl Deadline {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            at: AtomicU64::new(u64::MAX),
        }
    }

    fn set(&self, after: Duration) {
        let at = self.base.elapsed().saturating_add(after).as_millis();
        self.at
            .store(u64::try_from(at).unwrap_or(u64::MAX - 1), Ordering::Relaxed);
    }

    /// Whether the run is over (the pipeline is draining).
    fn draining(&self) -> bool {
        self.at.load(Ordering::Relaxed) != u64::MAX
    }

    /// Whether waiting `wait` more would pass the deadline.
    fn passed_after(&self, wait: Duration) -> bool {
        let at = self.at.load(Ordering::Relaxed);
        at != u64::MAX && self.base.elapsed().saturating_add(wait).as_millis() > u128::from(at)
    }
}

struct Route {
    name: String,
    kind: &'static str,
    queue: Arc<QueueCounts>,
    stats: Arc<Stats>,
}

/// Running sinks.
pub struct Pipeline {
    routes: Vec<Route>,
    /// Set when the run is over: no retry ends after it.
    deadline: Arc<Deadline>,
    finished: std_mpsc::Receiver<()>,
    drain_timeout: Duration,
}

impl Pipeline {
    /// Builds every sink, subscribes it to `publisher` and starts delivering.
    ///
    /// The sinks are built on the pipeline's thread while the run starts: building one costs
    /// milliseconds (TLS roots, clients), which the runner does not wait for. A sink that
    /// cannot be built (file not writable, unreadable CA bundle) is reported at once in the
    /// log; its events count as failed in its summary.
    ///
    /// # Errors
    ///
    /// The pipeline's thread cannot be started.
    pub fn start(
        specs: &[SinkSpec],
        publisher: &mut Publisher,
        options: Options,
    ) -> Result<Self, BuildError> {
        let deadline = Arc::new(Deadline::new());
        let (finished_tx, finished) = std_mpsc::channel();
        let mut routes = Vec::new();
        let mut queues = Vec::new();
        for spec in specs {
            let sub = publisher.subscribe(&spec.name, options.queue_capacity, spec.config.events());
            let stats = Arc::new(Stats::default());
            routes.push(Route {
                name: spec.name.clone(),
                kind: spec.config.kind(),
                queue: sub.counts.clone(),
                stats: stats.clone(),
            });
            queues.push((spec.clone(), sub.events, stats));
        }
        if queues.is_empty() {
            // The embedded defaults: no thread, no runtime (they would cost memory for nothing).
            drop(finished_tx);
            return Ok(Self {
                routes,
                deadline,
                finished,
                drain_timeout: options.drain_timeout,
            });
        }
        let task_deadline = deadline.clone();
        std::thread::Builder::new()
            .name("chaosflow-sinks".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "Cannot start the sinks' runtime: {e}; their events are lost.");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut tasks = Vec::new();
                    for (spec, events, stats) in queues {
                        let route = Driver {
                            name: spec.name.clone(),
                            events,
                            stats,
                            deadline: task_deadline.clone(),
                            max_attempts: options.max_attempts.max(1),
                            backoff: Backoff::default(),
                        };
                        // A sink that cannot start still drains its queue, as failures.
                        macro_rules! start {
                            ($built:expr) => {
                                match $built {
                                    Ok(sink) => tokio::spawn(route.drive(sink)),
                                    Err(e) => {
                                        tracing::error!(
                                            sink = %spec.name,
                                            error = %e,
                                            "Sink {} cannot start: {e}; its events are lost.",
                                            spec.name
                                        );
                                        tokio::spawn(route.discard())
                                    }
                                }
                            };
                        }
                        tasks.push(match &spec.config {
                            SinkConfig::File(c) => start!(c.build()),
                            SinkConfig::Http(c) => start!(c.build()),
                            SinkConfig::Slack(c) => start!(c.build()),
                            SinkConfig::Otlp(c) => start!(c.build()),
                            SinkConfig::Exec(c) => start!(c.build(&spec.name)),
                        });
                    }
                    for task in tasks {
                        let _ = task.await;
                    }
                });
                let _ = finished_tx.send(());
            })
            .map_err(|e| BuildError(format!("cannot start the sink thread: {e}")))?;
        Ok(Self {
            routes,
            deadline,
            finished,
            drain_timeout: options.drain_timeout,
        })
    }

    /// Whether any sink is configured.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Waits (up to the drain timeout) for every sink to deliver what was queued before the
    /// publisher closed, and reports. Call after [`crate::events::Emitter::close`].
    pub fn shutdown(self) -> Vec<Summary> {
        self.deadline.set(self.drain_timeout);
        // A long drain says what it waits for, as the runner does for long activities.
        let first = self.drain_timeout.min(Duration::from_secs(1));
        if let Err(std_mpsc::RecvTimeoutError::Timeout) = self.finished.recv_timeout(first) {
            let pending: u64 = self
                .routes
                .iter()
                .map(|r| {
                    r.queue.accepted.load(Ordering::Relaxed).saturating_sub(
                        r.stats.delivered.load(Ordering::Relaxed)
                            + r.stats.failed.load(Ordering::Relaxed),
                    )
                })
                .sum();
            let rest = self.drain_timeout - first;
            if !rest.is_zero() {
                tracing::info!(
                    pending,
                    "Delivering {pending} more event(s) to the sinks (up to {:.0}s)...",
                    rest.as_secs_f64()
                );
                let _ = self.finished.recv_timeout(rest);
            }
        }
        self.routes
            .iter()
            .map(|r| {
                let accepted = r.queue.accepted.load(Ordering::Relaxed);
                let delivered = r.stats.delivered.load(Ordering::Relaxed);
                let failed = r.stats.failed.load(Ordering::Relaxed);
                Summary {
                    name: r.name.clone(),
                    kind: r.kind,
                    delivered,
                    retried: r.stats.retried.load(Ordering::Relaxed),
                    dropped: r.queue.dropped.load(Ordering::Relaxed),
                    failed,
                    undelivered: accepted.saturating_sub(delivered + failed),
                }
            })
            .collect()
    }
}

/// One sink's task: batches from its queue, sent with retries.
struct Driver {
    name: String,
    events: mpsc::Receiver<Arc<Event>>,
    stats: Arc<Stats>,
    deadline: Arc<Deadline>,
    max_attempts: u32,
    backoff: Backoff,
}

impl Driver {
    async fn drive<S: Sink>(mut self, mut sink: S) {
        let batching = sink.batching();
        let mut batch: Vec<Arc<Event>> = Vec::with_capacity(batching.max_events);
        while let Some(first) = self.events.recv().await {
            batch.push(first);
            self.fill(&mut batch, batching.max_events, batching.max_wait)
                .await;
            self.deliver(&mut sink, &batch).await;
            batch.clear();
            // Sinks share one thread: a sink whose queue never empties (a fast file sink
            // under a burst) must let the others, and the I/O they wait on, have their turn.
            tokio::task::yield_now().await;
        }
        if let Err(e) = sink.close().await {
            tracing::warn!(sink = %self.name, error = %e, "Sink {}: closing failed ({e}).", self.name);
        }
    }

    /// The queue of a sink that could not start: every event counts as failed.
    async fn discard(mut self) {
        while self.events.recv().await.is_some() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds what is already queued, waiting up to `max_wait` for more.
    async fn fill(&mut self, batch: &mut Vec<Arc<Event>>, max_events: usize, max_wait: Duration) {
        let until = tokio::time::Instant::now() + max_wait;
        while batch.len() < max_events {
            match self.events.try_recv() {
                Ok(event) => batch.push(event),
                Err(mpsc::error::TryRecvError::Disconnected) => return,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if max_wait.is_zero() || self.deadline.draining() {
                        return;
                    }
                    match tokio::time::timeout_at(until, self.events.recv()).await {
                        Ok(Some(event)) => batch.push(event),
                        Ok(None) | Err(_) => return,
                    }
                }
            }
        }
    }

    async fn deliver<S: Sink>(&mut self, sink: &mut S, batch: &[Arc<Event>]) {
        let count = batch.len() as u64;
        let mut attempt = 0;
        loop {
            let error = match sink.send(batch).await {
                Ok(()) => {
                    self.stats.delivered.fetch_add(count, Ordering::Relaxed);
                    return;
                }
                Err(e) => e,
            };
            attempt += 1;
            let wait = self.backoff.wait(error.retry, attempt - 1);
            match wait {
                Some(wait) if attempt < self.max_attempts && !self.deadline.passed_after(wait) => {
                    self.stats.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        sink = %self.name,
                        error = %error,
                        attempt,
                        "Sink {}: delivery failed ({error}); retrying in {:.1}s.",
                        self.name,
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                }
                _ => {
                    self.stats.failed.fetch_add(count, Ordering::Relaxed);
                    tracing::error!(
                        sink = %self.name,
                        error = %error,
                        events = count,
                        "Sink {}: delivery failed ({error}); {count} event(s) lost.",
                        self.name
                    );
                    return;
                }
            }
        }
    }
}
