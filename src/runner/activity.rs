//! Executing one activity: `ref` resolution, pauses, dry modes, the provider call, the journal
//! run item, log lines and events, as `chaos`'s `execute_activity`.
//!
//! The run item of a method or rollback activity enters the journal when the activity starts,
//! so the journal's order is start order even with background activities. If the activity is
//! abandoned half-way (a signal, SIGUSR2 for a background one), [`ItemGuard`] closes the item
//! the way `chaos` leaves it: `end` and `duration` set, no `status`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{Ctx, Dry, ItemList, ProviderError};
use crate::events::{Phase, names};
use crate::experiment::{Activity, ActivityKind};
use crate::journal::{self, ItemStatus, RunItem};
use crate::python;
use crate::substitute::substitute;

/// An unexpected error while executing an activity: `chaos` lets such an exception escape the
/// activity (its run item keeps no status), which aborts the method.
#[derive(Debug, Clone)]
pub(crate) struct Abort {
    /// What went wrong.
    pub error: String,
    /// The run item, when the activity had started.
    pub item: Option<Box<RunItem>>,
}

/// A finished activity.
#[derive(Debug, Clone)]
pub(crate) struct Executed {
    /// Its run item.
    pub item: RunItem,
    /// `seq` of its `activity-started` event.
    pub started_seq: u64,
}

/// Resolves a `ref` entry to the activity it names (or returns the entry itself), with the
/// index of the hypothesis probe it is a copy of.
fn resolve(
    ctx: &Ctx,
    entry: &Value,
    own_probe: Option<usize>,
) -> Result<(Value, Option<usize>), Abort> {
    match crate::experiment::reference(entry) {
        Some(name) => ctx
            .targets
            .get(name)
            .map(|(activity, probe)| (activity.clone(), *probe))
            .ok_or_else(|| Abort {
                error: format!("could not find referenced activity '{name}'"),
                item: None,
            }),
        None => Ok((entry.clone(), own_probe)),
    }
}

/// Where an executed activity's run item goes.
pub(crate) enum Record {
    /// Hypothesis probe number `index`: the caller records the item and emits its
    /// `activity-completed` once the tolerance is checked.
    Probe(usize),
    /// A method or rollback activity run in the foreground.
    Foreground(ItemList),
    /// A method or rollback activity run in the background: `started` fires once its item is in
    /// the journal (or it pauses first, or fails early), so the journal keeps start order as
    /// chaos's threads give it.
    Background(ItemList, oneshot::Sender<()>),
}

/// Executes an activity entry.
pub(crate) async fn execute(
    ctx: &Arc<Ctx>,
    entry: &Value,
    phase: Phase,
    record: Record,
) -> Result<Executed, Abort> {
    let (own_probe, list, mut started, defer_completed) = match record {
        Record::Probe(index) => (Some(index), None, None, true),
        Record::Foreground(list) => (None, Some(list), None, false),
        Record::Background(list, started) => (None, Some(list), Some(started), false),
    };
    let (activity_value, probe_index) = resolve(ctx, entry, own_probe)?;
    let activity =
        Activity::from_value(&activity_value).map_err(|error| Abort { error, item: None })?;

    // An activity's own `dry` key (of any value) turns the run's dry mode off for it.
    let dry = if activity.raw.contains_key("dry") {
        None
    } else {
        ctx.dry
    };
    let is_dry = match dry {
        Some(Dry::Actions) => activity.kind == ActivityKind::Action,
        Some(Dry::Probes) => activity.kind == ActivityKind::Probe,
        Some(Dry::Activities) => true,
        _ => false,
    };
    let skip_pauses = dry == Some(Dry::Pause) || is_dry;
    let pauses = activity
        .raw
        .get("pauses")
        .map(|p| substitute(p, &ctx.scope))
        .unwrap_or(Value::Null);

    if let Some(before) = pauses.get("before").filter(|p| python::truthy(p)) {
        // The foreground goes on while this one sleeps.
        if let Some(started) = started.take() {
            let _ = started.send(());
        }
        pause(before, "before", skip_pauses)
            .await
            .map_err(|error| Abort { error, item: None })?;
    }

    let kind = activity.kind.title();
    if activity.background {
        tracing::info!("{kind}: {} [in background]", activity.name);
    } else {
        tracing::info!("{kind}: {}", activity.name);
    }

    let item = RunItem::start(activity_value.clone(), probe_index);
    let started_seq = ctx.emitter.emit(
        names::ACTIVITY_STARTED,
        phase,
        json!({"activity": activity_value, "start": item.start, "background": activity.background}),
        None,
    );
    let mut guard = ItemGuard::new(ctx.clone(), item, list, phase, started_seq);
    if let Some(started) = started.take() {
        let _ = started.send(());
    }

    let result = if is_dry {
        tracing::debug!("Activity {} is in dry mode", activity.name);
        Ok(Value::Null)
    } else {
        let label = format!("{kind} '{}'", activity.name);
        let traceparent = ctx
            .traceparent
            .then(|| chaosflow_sinks::otlp::traceparent(ctx.emitter.run_id(), started_seq));
        with_progress(
            &label,
            super::run_provider(
                ctx,
                activity.provider,
                activity.name,
                activity.raw.contains_key("tolerance"),
                traceparent.as_deref(),
            ),
        )
        .await
    };

    let aborted = {
        let item = guard.item_mut();
        match result {
            Ok(output) => {
                if output.is_null() {
                    tracing::debug!("  => succeeded without any result value");
                } else {
                    tracing::debug!("  => succeeded with '{}'", python::to_str(&output));
                }
                item.output = output;
                item.status = Some(ItemStatus::Succeeded);
                None
            }
            Err(ProviderError::Failed(message)) => {
                tracing::error!("  => failed: {message}");
                item.status = Some(ItemStatus::Failed);
                item.exception = Some(journal::exception_lines(&message));
                None
            }
            Err(ProviderError::Fatal(message)) => Some(message),
        }
    };
    guard.finish(defer_completed && aborted.is_none(), aborted.as_deref());
    let executed = Executed {
        item: guard.into_item(),
        started_seq,
    };

    if let Some(after) = pauses.get("after").filter(|p| python::truthy(p)) {
        pause(after, "after", skip_pauses)
            .await
            .map_err(|error| Abort {
                error,
                item: Some(Box::new(executed.item.clone())),
            })?;
    }
    match aborted {
        Some(error) => Err(Abort {
            error,
            item: Some(Box::new(executed.item)),
        }),
        None => Ok(executed),
    }
}

/// Emits `activity-completed` for an item.
pub(crate) fn emit_completed(
    ctx: &Ctx,
    phase: Phase,
    item: &RunItem,
    started_seq: u64,
    error: Option<String>,
) {
    let mut payload = serde_json::to_value(item).expect("a run item always serializes");
    if let Value::Object(map) = &mut payload {
        map.insert("started_seq".into(), Value::from(started_seq));
    }
    let error = error.or_else(|| item.error());
    ctx.emitter
        .emit(names::ACTIVITY_COMPLETED, phase, payload, error);
}

/// Keeps the journal's copy of a run item current and closes it if the activity is abandoned.
struct ItemGuard {
    ctx: Arc<Ctx>,
    item: Option<RunItem>,
    slot: Option<(ItemList, usize)>,
    phase: Phase,
    started_seq: u64,
    clock: Instant,
    done: bool,
}

impl ItemGuard {
    fn new(
        ctx: Arc<Ctx>,
        item: RunItem,
        list: Option<ItemList>,
        phase: Phase,
        started_seq: u64,
    ) -> Self {
        let slot = list.map(|l| (l, ctx.push_item(l, item.clone())));
        Self {
            ctx,
            item: Some(item),
            slot,
            phase,
            started_seq,
            clock: Instant::now(),
            done: false,
        }
    }

    fn item_mut(&mut self) -> &mut RunItem {
        self.item
            .as_mut()
            .expect("the item is present until into_item")
    }

    /// Sets end and duration, stores the item and (unless deferred) emits its completion.
    fn finish(&mut self, defer_event: bool, abort_error: Option<&str>) {
        let elapsed = self.clock.elapsed().as_secs_f64();
        let item = self
            .item
            .as_mut()
            .expect("the item is present until into_item");
        item.end = Some(journal::iso_now());
        item.duration = Some(elapsed);
        if let Some((list, index)) = self.slot {
            self.ctx.set_item(list, index, item.clone());
        }
        if !defer_event {
            emit_completed(
                &self.ctx,
                self.phase,
                item,
                self.started_seq,
                abort_error.map(str::to_owned),
            );
        }
        self.done = true;
    }

    fn into_item(mut self) -> RunItem {
        self.item
            .take()
            .expect("the item is present until into_item")
    }
}

impl Drop for ItemGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Abandoned mid-way: close the item as chaos does on an interruption.
        if let Some(item) = self.item.as_mut() {
            item.end = Some(journal::iso_now());
            item.duration = Some(self.clock.elapsed().as_secs_f64());
            if let Some((list, index)) = self.slot {
                self.ctx.set_item(list, index, item.clone());
            }
            emit_completed(
                &self.ctx,
                self.phase,
                item,
                self.started_seq,
                Some("interrupted".into()),
            );
        }
    }
}

/// Sleeps for a pause, logging it as `chaos` does (also in dry modes, which skip the sleep).
async fn pause(value: &Value, when: &str, skip: bool) -> Result<(), String> {
    let shown = python::to_str(value);
    match when {
        "before" => tracing::info!("Pausing before next activity for {shown}s..."),
        _ => tracing::info!("Pausing after activity for {shown}s..."),
    }
    if skip {
        return Ok(());
    }
    let secs = match value {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        other => {
            return Err(format!(
                "the {when} pause must be a number of seconds, not {}",
                python::repr(other)
            ));
        }
    };
    if secs < 0.0 {
        return Err(format!("the {when} pause must not be negative ({shown})"));
    }
    sleep_with_progress(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)).await;
    Ok(())
}

/// How often a long wait reports that it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Sleeps, logging the time left every [`PROGRESS_EVERY`] on long pauses.
pub(crate) async fn sleep_with_progress(total: Duration) {
    let deadline = tokio::time::Instant::now() + total;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left <= PROGRESS_EVERY {
            tokio::time::sleep(left).await;
            return;
        }
        tokio::time::sleep(PROGRESS_EVERY).await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tracing::info!("  ... still pausing, {}s left", left.as_secs());
    }
}

/// Runs a provider call, logging every [`PROGRESS_EVERY`] that it is still running.
pub(crate) async fn with_progress<T>(label: &str, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let mut call = std::pin::pin!(call);
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        tokio::select! {
            out = &mut call => return out,
            _ = ticker.tick() => {
                tracing::info!("  ... {label} still running after {}s", started.elapsed().as_secs());
            }
        }
    }
}
