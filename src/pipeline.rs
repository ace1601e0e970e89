//! The event pipeline: from the runner's publisher to every configured sink.
//!
//! Each sink gets a bounded queue (filtered by its `events:` list) and a task that takes
//! batches from it, sends them, and retries failures with capped, jittered backoff. The runner
//! never waits: a full queue drops the newest events, and the drops are counted and reported.
//! All sink tasks run on their own thread and tokio runtime, so a sink's work never delays the
//! experiment either. At the end of a run the pipeline drains under a deadline and reports one
//! line per sink: delivered, retried, dropped, failed (and undelivered, when the deadline cut
//! the drain short).
//!
//! The sidecar runs the same pipeline in durable mode ([`Options::durable`]): it reads a file
//! that keeps the events, so a full queue makes it wait instead of dropping, failed deliveries
//! are retried until they pass or the drain deadline comes, and [`Progress`] tells how far every
//! sink got, which is what its checkpoint saves.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use chaosflow_sinks::retry::Backoff;
use chaosflow_sinks::{BuildError, Event, Sink, exec, file, http, otlp, slack};
use tokio::sync::mpsc;

use crate::events::{Publisher, QueueCounts, Queued};

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
    /// The events come from a durable source (the sidecar's file): the feeder waits for room
    /// ([`Publisher::publish_blocking`]), a failing batch is retried without an attempt limit
    /// until it passes or the drain deadline comes, and a sink cut short by the deadline stops
    /// there, so that what it handled is always a prefix of what it was given.
    pub durable: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            drain_timeout: Duration::from_secs(10),
            max_attempts: 5,
            durable: false,
        }
    }
}

/// Delivery counters of one sink.
#[derive(Debug)]
struct Stats {
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    /// Events handled, in queue order: delivered, or lost to a final failure.
    handled: AtomicU64,
    /// The mark of the last handled event; `u64::MAX` before the first.
    mark: AtomicU64,
    /// Durable mode: the sink stopped before handling everything (drain deadline, or it
    /// could not start), so its position stays at `mark`.
    stopped: AtomicBool,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            mark: AtomicU64::new(u64::MAX),
            stopped: AtomicBool::new(false),
        }
    }
}

/// How far every sink got; cheap to clone.
#[derive(Debug, Clone)]
pub struct Progress {
    routes: Arc<[(Arc<QueueCounts>, Arc<Stats>)]>,
}

impl Progress {
    /// The mark up to which every sink has handled every event it was given (delivered it,
    /// or lost it to a final failure): a sink that has handled all it was given is at `read`,
    /// the mark of the last event offered to the pipeline (load it before calling); one that
    /// has handled nothing yet is at `floor`, where this pipeline started.
    pub fn position(&self, floor: u64, read: u64) -> u64 {
        self.routes
            .iter()
            .map(|(queue, stats)| {
                let mark = stats.mark.load(Ordering::Acquire);
                let handled = stats.handled.load(Ordering::Acquire);
                if !stats.stopped.load(Ordering::Acquire)
                    && handled == queue.accepted.load(Ordering::Acquire)
                {
                    read
                } else if mark == u64::MAX {
                    floor
                } else {
                    mark
                }
            })
            .min()
            .unwrap_or(read)
    }
}

/// Called on the pipeline's thread each time a sink has handled a batch, before it takes the
/// next one: the sidecar saves its checkpoint there, so a crash repeats at most one batch.
pub type ProgressHook = Arc<dyn Fn(&Progress) + Send + Sync>;

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
    /// Wakes retry waits when the deadline is set, so none outlasts it.
    set: tokio::sync::Notify,
}

impl Deadline {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            at: AtomicU64::new(u64::MAX),
            set: tokio::sync::Notify::new(),
        }
    }

    /// Sets the deadline `after` from now, unless an earlier one is set.
    fn set(&self, after: Duration) {
        let at = self.base.elapsed().saturating_add(after).as_millis();
        self.at
            .fetch_min(u64::try_from(at).unwrap_or(u64::MAX - 1), Ordering::Relaxed);
        self.set.notify_waiters();
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

/// Sets the drain deadline of a running pipeline from anywhere (the sidecar's signal thread).
#[derive(Debug, Clone)]
pub struct Stopper(Arc<Deadline>);

impl Stopper {
    /// No delivery goes on (and no retry waits) longer than `within` from now.
    pub fn stop_within(&self, within: Duration) {
        self.0.set(within);
    }
}

/// Running sinks.
pub struct Pipeline {
    routes: Vec<Route>,
    progress: Progress,
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
        Self::start_with(specs, publisher, options, None)
    }

    /// [`Pipeline::start`], calling `hook` each time a sink has handled a batch.
    ///
    /// # Errors
    ///
    /// The pipeline's thread cannot be started.
    pub fn start_with(
        specs: &[SinkSpec],
        publisher: &mut Publisher,
        options: Options,
        hook: Option<ProgressHook>,
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
        let progress = Progress {
            routes: routes
                .iter()
                .map(|r| (r.queue.clone(), r.stats.clone()))
                .collect(),
        };
        if queues.is_empty() {
            // The embedded defaults: no thread, no runtime (they would cost memory for nothing).
            drop(finished_tx);
            return Ok(Self {
                routes,
                progress,
                deadline,
                finished,
                drain_timeout: options.drain_timeout,
            });
        }
        let task_deadline = deadline.clone();
        let task_progress = progress.clone();
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
                            max_attempts: if options.durable {
                                u32::MAX
                            } else {
                                options.max_attempts.max(1)
                            },
                            durable: options.durable,
                            backoff: Backoff::default(),
                            hook: hook.clone().map(|h| (h, task_progress.clone())),
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
            progress,
            deadline,
            finished,
            drain_timeout: options.drain_timeout,
        })
    }

    /// How far the sinks got.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// A handle that sets the drain deadline.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.deadline.clone())
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
            let pending = self.pending();
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
        self.summaries()
    }

    /// Waits, without a deadline of its own, until every sink has handled what was queued
    /// before the publisher closed, or has stopped at a deadline set through a [`Stopper`];
    /// says every few seconds what it still waits for. Then reports.
    pub fn finish(self) -> Vec<Summary> {
        while let Err(std_mpsc::RecvTimeoutError::Timeout) =
            self.finished.recv_timeout(Duration::from_secs(5))
        {
            let pending = self.pending();
            tracing::info!(
                pending,
                "Delivering {pending} more event(s) to the sinks..."
            );
        }
        self.summaries()
    }

    /// Events queued and not handled yet.
    fn pending(&self) -> u64 {
        self.routes
            .iter()
            .map(|r| {
                r.queue.accepted.load(Ordering::Relaxed).saturating_sub(
                    r.stats.delivered.load(Ordering::Relaxed)
                        + r.stats.failed.load(Ordering::Relaxed),
                )
            })
            .sum()
    }

    fn summaries(&self) -> Vec<Summary> {
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

/// How often a filling batch looks for more events.
const FILL_TICK: Duration = Duration::from_millis(1);

/// One sink's task: batches from its queue, sent with retries.
struct Driver {
    name: String,
    events: mpsc::Receiver<Queued>,
    stats: Arc<Stats>,
    deadline: Arc<Deadline>,
    max_attempts: u32,
    durable: bool,
    backoff: Backoff,
    hook: Option<(ProgressHook, Progress)>,
}

/// How a batch ended.
enum Outcome {
    /// Delivered, or lost to a final failure: the sink is done with it.
    Handled,
    /// Durable mode, cut short by the drain deadline: neither delivered nor lost.
    Abandoned,
}

impl Driver {
    async fn drive<S: Sink>(mut self, mut sink: S) {
        let batching = sink.batching();
        let mut batch: Vec<Arc<Event>> = Vec::with_capacity(batching.max_events);
        while let Some(first) = self.events.recv().await {
            let mut mark = first.mark;
            batch.push(first.event);
            self.fill(
                &mut batch,
                &mut mark,
                batching.max_events,
                batching.max_wait,
            )
            .await;
            if let Outcome::Abandoned = self.deliver(&mut sink, &batch).await {
                // What follows stays unhandled too: the handled events remain a prefix.
                self.stats.stopped.store(true, Ordering::Release);
                break;
            }
            self.stats.mark.store(mark, Ordering::Release);
            self.stats
                .handled
                .fetch_add(batch.len() as u64, Ordering::Release);
            if let Some((hook, progress)) = &self.hook {
                hook(progress);
            }
            batch.clear();
            // Sinks share one thread: a sink whose queue never empties (a fast file sink
            // under a burst) must let the others, and the I/O they wait on, have their turn.
            tokio::task::yield_now().await;
        }
        if let Err(e) = sink.close().await {
            tracing::warn!(sink = %self.name, error = %e, "Sink {}: closing failed ({e}).", self.name);
        }
    }

    /// The queue of a sink that could not start: every event counts as failed, except in
    /// durable mode, where they stay in the file for the next start.
    async fn discard(mut self) {
        if self.durable {
            self.stats.stopped.store(true, Ordering::Release);
            return;
        }
        while let Some(queued) = self.events.recv().await {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            self.stats.mark.store(queued.mark, Ordering::Release);
            self.stats.handled.fetch_add(1, Ordering::Release);
        }
        if let Some((hook, progress)) = &self.hook {
            hook(progress);
        }
    }

    /// Adds what is already queued, waiting up to `max_wait` for more; `mark` follows the
    /// last event added.
    async fn fill(
        &mut self,
        batch: &mut Vec<Arc<Event>>,
        mark: &mut u64,
        max_events: usize,
        max_wait: Duration,
    ) {
        let until = tokio::time::Instant::now() + max_wait;
        while batch.len() < max_events {
            match self.events.try_recv() {
                Ok(queued) => {
                    *mark = queued.mark;
                    batch.push(queued.event);
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let now = tokio::time::Instant::now();
                    if max_wait.is_zero() || self.deadline.draining() || now >= until {
                        return;
                    }
                    // Look again a moment later rather than wait on the queue: a waiting
                    // receiver makes the feeder wake this thread for every single event, which
                    // costs more than the events themselves when they come fast.
                    tokio::time::sleep((until - now).min(FILL_TICK)).await;
                }
            }
        }
    }

    async fn deliver<S: Sink>(&mut self, sink: &mut S, batch: &[Arc<Event>]) -> Outcome {
        let count = batch.len() as u64;
        let mut attempt: u32 = 0;
        loop {
            let error = match sink.send(batch).await {
                Ok(()) => {
                    self.stats.delivered.fetch_add(count, Ordering::Relaxed);
                    return Outcome::Handled;
                }
                Err(e) => e,
            };
            attempt = attempt.saturating_add(1);
            let retry_in = self
                .backoff
                .wait(error.retry, attempt - 1)
                .filter(|_| attempt < self.max_attempts);
            if let Some(wait) = retry_in
                && !self.deadline.passed_after(wait)
            {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    sink = %self.name,
                    error = %error,
                    attempt,
                    "Sink {}: delivery failed ({error}); retrying in {:.1}s.",
                    self.name,
                    wait.as_secs_f64()
                );
                if self.sleep_before_deadline(wait).await {
                    continue;
                }
            }
            if self.durable && retry_in.is_some() {
                tracing::warn!(
                    sink = %self.name,
                    error = %error,
                    events = count,
                    "Sink {}: delivery failed ({error}); stopping at the drain deadline, {count} event(s) left for the next start.",
                    self.name
                );
                return Outcome::Abandoned;
            }
            self.stats.failed.fetch_add(count, Ordering::Relaxed);
            tracing::error!(
                sink = %self.name,
                error = %error,
                events = count,
                "Sink {}: delivery failed ({error}); {count} event(s) lost.",
                self.name
            );
            return Outcome::Handled;
        }
    }

    /// Sleeps `wait`, unless the drain deadline comes first (also one set while sleeping);
    /// returns whether the full wait passed.
    async fn sleep_before_deadline(&self, wait: Duration) -> bool {
        let wake_at = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the deadline is read, so a deadline set now still wakes us.
            let deadline_set = self.deadline.set.notified();
            tokio::pin!(deadline_set);
            deadline_set.as_mut().enable();
            let left = wake_at.saturating_duration_since(tokio::time::Instant::now());
            if self.deadline.passed_after(left) {
                return false;
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => return true,
                () = deadline_set => {}
            }
        }
    }
}
