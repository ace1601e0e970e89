//! Running an experiment: Chaos Toolkit's run flow, strategies, signals and journal.
//!
//! The order is `chaos`'s: configuration (dynamic probes included) → title substitution →
//! steady-state hypothesis *before* (a failed gate skips the method) → the method, with the
//! hypothesis evaluated *during* it in the background for the `during-method-only` and
//! `continuously` strategies → the hypothesis *after* (an unmet one marks the run deviated) →
//! rollbacks per the rollback strategy → the journal. Method failures never fail a run; only
//! the hypothesis does. SIGTERM/SIGINT/SIGUSR1 interrupt the run and let the rollback strategy
//! decide; SIGUSR2 skips rollbacks.
//!
//! Everything runs on one tokio thread. Background activities and the during-method loop are
//! tasks sharing the run state ([`Ctx`]) behind a mutex held only for quick updates, never
//! across an await.

pub(crate) mod activity;
pub(crate) mod http;
pub(crate) mod hypothesis;
pub(crate) mod process;
pub mod signals;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::events::{Emitter, Phase, names};
use crate::experiment::config::{self, ConfigError, Env, Vars};
use crate::experiment::{Experiment, HYPOTHESIS};
use crate::journal::{self, ItemStatus, Journal, RunItem, Status, SteadyState, SteadyStates};
use crate::python;
use crate::substitute::{Scope, substitute};
use activity::Record;
use signals::{Signals, Stop};

/// `--dry`: what not to execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dry {
    /// Skip probes.
    Probes,
    /// Skip actions.
    Actions,
    /// Skip every activity.
    Activities,
    /// Skip pauses.
    Pause,
}

impl Dry {
    /// The CLI spelling, which the journal records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Probes => "probes",
            Self::Actions => "actions",
            Self::Activities => "activities",
            Self::Pause => "pause",
        }
    }
}

/// When the steady-state hypothesis is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Before and after the method.
    Default,
    /// Before the method only.
    BeforeMethodOnly,
    /// After the method only.
    AfterMethodOnly,
    /// Repeatedly while the method runs.
    DuringMethodOnly,
    /// Before, during and after.
    Continuously,
    /// Never (settings or experiment `runtime` only).
    Skip,
}

impl Strategy {
    /// Parses a strategy name (`continously`, the old misspelling, included).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "default" => Self::Default,
            "before-method-only" => Self::BeforeMethodOnly,
            "after-method-only" => Self::AfterMethodOnly,
            "during-method-only" => Self::DuringMethodOnly,
            "continuously" | "continously" => Self::Continuously,
            "skip" => Self::Skip,
            _ => return None,
        })
    }

    /// The name `chaos` logs (`continuous` for `continuously`).
    pub fn log_name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::BeforeMethodOnly => "before-method-only",
            Self::AfterMethodOnly => "after-method-only",
            Self::DuringMethodOnly => "during-method-only",
            Self::Continuously => "continuous",
            Self::Skip => "skip",
        }
    }

    fn before(self) -> bool {
        matches!(
            self,
            Self::Default | Self::BeforeMethodOnly | Self::Continuously
        )
    }

    fn during(self) -> bool {
        matches!(self, Self::DuringMethodOnly | Self::Continuously)
    }

    fn after(self) -> bool {
        matches!(
            self,
            Self::Default | Self::AfterMethodOnly | Self::Continuously
        )
    }
}

/// How the run is carried out.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--dry`.
    pub dry: Option<Dry>,
    /// Hypothesis strategy.
    pub strategy: Strategy,
    /// Rollback strategy as given (`default`, `always`, `never`, `deviated`; anything else
    /// plays no rollbacks, as in `chaos`).
    pub rollback_strategy: String,
    /// Seconds between two during-method evaluations.
    pub hypothesis_frequency: f64,
    /// Fail the run at the first unmet during-method evaluation.
    pub fail_fast: bool,
    /// Send the W3C `traceparent` of each activity's span with its HTTP requests, so the
    /// target's own traces join the run's trace (on when an OTLP sink traces the run).
    pub traceparent: bool,
}

/// Why a provider call did not produce an output.
#[derive(Debug, Clone)]
pub(crate) enum ProviderError {
    /// The activity failed (`ActivityFailed` in `chaos`): recorded, the run goes on.
    Failed(String),
    /// An unexpected error (`chaos` would raise another exception): aborts the method.
    Fatal(String),
}

/// Which journal list a run item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemList {
    /// `run`, the method.
    Method,
    /// `rollbacks`.
    Rollbacks,
}

#[derive(Debug, Default)]
struct RunState {
    status: Option<Status>,
    deviated: bool,
    steady_states: SteadyStates,
    run: Vec<RunItem>,
    rollbacks: Vec<RunItem>,
    /// Last output injected into each hypothesis probe's probe tolerance.
    tolerance_values: BTreeMap<usize, Value>,
    /// Background activities still to wait for.
    background: Vec<JoinHandle<()>>,
    /// The during-method loop, if running.
    during: Option<JoinHandle<()>>,
}

/// Everything an executing activity needs, shared by the run's tasks.
pub(crate) struct Ctx {
    experiment: Experiment,
    scope: Scope,
    dry: Option<Dry>,
    /// `ref` targets by name, with the index of the hypothesis probe they are.
    targets: HashMap<String, (Value, Option<usize>)>,
    emitter: Emitter,
    /// Variables from `.env` var files, given to child processes.
    env: Arc<BTreeMap<String, String>>,
    /// See [`RunOptions::traceparent`].
    traceparent: bool,
    state: Mutex<RunState>,
}

impl Ctx {
    fn lock(&self) -> MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn status(&self) -> Option<Status> {
        self.lock().status
    }

    fn set_status(&self, status: Status) {
        self.lock().status = Some(status);
    }

    fn push_item(&self, list: ItemList, item: RunItem) -> usize {
        let mut state = self.lock();
        let items = match list {
            ItemList::Method => &mut state.run,
            ItemList::Rollbacks => &mut state.rollbacks,
        };
        items.push(item);
        items.len() - 1
    }

    fn set_item(&self, list: ItemList, index: usize, item: RunItem) {
        let mut state = self.lock();
        let items = match list {
            ItemList::Method => &mut state.run,
            ItemList::Rollbacks => &mut state.rollbacks,
        };
        if let Some(slot) = items.get_mut(index) {
            *slot = item;
        }
    }

    fn record_tolerance_value(&self, probe_index: usize, value: Value) {
        self.lock().tolerance_values.insert(probe_index, value);
    }

    fn take_background(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.lock().background)
    }
}

/// Calls a provider. `name` is for messages; `has_tolerance` silences the warnings about
/// error statuses, as in `chaos`.
pub(crate) async fn run_provider(
    ctx: &Ctx,
    provider: &Map<String, Value>,
    name: &str,
    has_tolerance: bool,
    traceparent: Option<&str>,
) -> Result<Value, ProviderError> {
    call_provider(
        provider,
        name,
        has_tolerance,
        &ctx.scope,
        &ctx.env,
        traceparent,
    )
    .await
}

async fn call_provider(
    provider: &Map<String, Value>,
    name: &str,
    has_tolerance: bool,
    scope: &Scope,
    env: &BTreeMap<String, String>,
    traceparent: Option<&str>,
) -> Result<Value, ProviderError> {
    match provider.get("type").and_then(Value::as_str) {
        Some("process") => process::run(provider, has_tolerance, scope, env).await,
        Some("http") => http::run(provider, has_tolerance, scope, traceparent).await,
        Some("python") => python_provider(provider, name, scope, env).await,
        other => Err(ProviderError::Fatal(format!(
            "unknown provider type '{}'",
            other.unwrap_or_default()
        ))),
    }
}

/// A `type: python` provider, as `chaos` calls it: arguments substituted, the secret scopes the
/// provider names merged into one mapping, then the function (native or through the bridge,
/// see [`crate::extensions`]); whatever it raises fails the activity.
async fn python_provider(
    provider: &Map<String, Value>,
    name: &str,
    scope: &Scope,
    env: &BTreeMap<String, String>,
) -> Result<Value, ProviderError> {
    let module = provider
        .get("module")
        .map(python::to_str)
        .unwrap_or_default();
    let func = provider.get("func").map(python::to_str).unwrap_or_default();
    let mut arguments = provider
        .get("arguments")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Map::new()));
    if !scope.is_empty() {
        arguments = substitute(&arguments, scope);
    }
    let mut secrets = Map::new();
    for name in provider
        .get("secrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(values) = scope
            .secrets
            .get(&python::to_str(name))
            .and_then(Value::as_object)
        {
            secrets.extend(values.clone());
        }
    }
    crate::extensions::call(crate::extensions::Call {
        activity: name,
        module: &module,
        func: &func,
        arguments: match arguments {
            Value::Object(map) => map,
            _ => Map::new(),
        },
        configuration: &scope.configuration,
        secrets: &secrets,
        secrets_declared: provider.contains_key("secrets"),
        env,
    })
    .await
    .map_err(ProviderError::Failed)
}

/// Resolves configuration (variables, environment, dynamic probes) and secrets for a run.
///
/// # Errors
///
/// A configuration or secret cannot be resolved.
pub async fn configure(
    experiment: &Experiment,
    vars: &Vars,
    env: &dyn Env,
    env_overlay: &BTreeMap<String, String>,
) -> Result<Scope, ConfigError> {
    let configuration = config::load_configuration(
        experiment.doc.get("configuration"),
        &vars.configuration,
        env,
    )?;
    let secrets = config::load_secrets(experiment.doc.get("secrets"), &vars.secrets, env)?;
    crate::redact::global().register(secrets.values());
    for path in config::vault_references(experiment.doc.get("secrets")) {
        tracing::error!(
            "Vault secrets are not supported by chaosflow: secret '{path}' is empty. Feed it \
             through an env secret instead."
        );
    }
    let mut scope = Scope {
        configuration: Map::new(),
        secrets,
    };
    // Dynamic configuration: probes evaluated in order with the configuration built so far.
    let mut failures = false;
    for (key, value) in configuration {
        let Some(provider) = value
            .as_object()
            .filter(|d| d.get("type").and_then(Value::as_str) == Some("probe"))
            .and_then(|d| d.get("provider"))
            .and_then(Value::as_object)
        else {
            scope.configuration.insert(key, value);
            continue;
        };
        let name = value.get("name").map(python::to_str).unwrap_or_default();
        let provider_type = provider.get("type").and_then(Value::as_str).unwrap_or("");
        let has_tolerance = value.get("tolerance").is_some();
        // chaos hands a dynamic configuration's Python probe every secret scope.
        let mut provider = provider.clone();
        if provider_type == "python" {
            let scopes = scope.secrets.keys().cloned().map(Value::String).collect();
            provider.insert("secrets".into(), Value::Array(scopes));
        }
        match call_provider(&provider, &name, has_tolerance, &scope, env_overlay, None).await {
            Ok(output) => match provider_type {
                "process" if output.get("status") != Some(&json!(0)) => {
                    failures = true;
                    tracing::debug!(
                        "Failed to load configuration dynamically from probe '{name}': {}",
                        output.get("stderr").map(python::to_str).unwrap_or_default()
                    );
                }
                "process" => {
                    let stdout = output.get("stdout").map(python::to_str).unwrap_or_default();
                    scope
                        .configuration
                        .insert(key, Value::String(stdout.trim().to_owned()));
                }
                // A Python function's return value is the value itself.
                "python" => {
                    scope.configuration.insert(key, output);
                }
                _ => {
                    let body = output.get("body").cloned().unwrap_or(Value::Null);
                    scope.configuration.insert(key, body);
                }
            },
            Err(ProviderError::Failed(e) | ProviderError::Fatal(e)) => {
                failures = true;
                tracing::debug!("Failed to load configuration '{name}': {e}");
            }
        }
    }
    if failures {
        tracing::warn!(
            "Some of the dynamic configuration failed to be loaded.Please review the log file for \
             understanding what happened."
        );
    }
    Ok(scope)
}

/// Runs a validated experiment and returns its journal. Signals are handled from here on.
pub async fn run(
    mut experiment: Experiment,
    scope: Scope,
    env_overlay: Arc<BTreeMap<String, String>>,
    options: RunOptions,
    emitter: Emitter,
) -> Journal {
    let clock = Instant::now();
    if let Some(title) = experiment.doc.get("title").cloned() {
        experiment
            .doc
            .insert("title".into(), substitute(&title, &scope));
    }
    let title = experiment
        .doc
        .get("title")
        .map(python::to_str)
        .unwrap_or_default();
    tracing::info!("Running experiment: {title}");

    let mut journal_experiment = experiment.doc.clone();
    show_secrets_given_to_dynamic_probes(&mut journal_experiment, &scope);
    journal_experiment.insert(
        "dry".into(),
        options
            .dry
            .map_or(Value::Null, |d| Value::String(d.as_str().into())),
    );
    let start = journal::iso_now();

    let targets = experiment.ref_targets();
    let ctx = Arc::new(Ctx {
        experiment,
        scope,
        dry: options.dry,
        targets,
        emitter,
        env: env_overlay,
        traceparent: options.traceparent,
        state: Mutex::new(RunState::default()),
    });

    let mut signals = match Signals::install() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot handle signals; SIGTERM will kill the run.");
            None
        }
    };
    if let Some(dry) = options.dry {
        tracing::warn!("Running experiment with dry {}", dry.as_str());
    }
    tracing::info!("Steady-state strategy: {}", options.strategy.log_name());
    tracing::info!("Rollbacks strategy: {}", options.rollback_strategy);

    let with_ssh = if options.strategy == Strategy::Skip {
        tracing::info!("Skipping Steady-State Hypothesis as requested");
        false
    } else if ctx.experiment.has_hypothesis_probes() {
        true
    } else {
        tracing::info!("No steady state hypothesis defined. That's ok, just exploring.");
        false
    };

    let (stop_during, during_stopped) = watch::channel(false);
    let main = main_phase(&ctx, &options, with_ssh, &stop_during, during_stopped);
    let interruption = guarded(main, signals.as_mut()).await;
    let mut play_rollbacks = true;
    if let Some(stop) = interruption {
        interrupted(&ctx, stop, false);
        play_rollbacks = stop.allows_rollbacks();
        settle_background(&ctx, stop).await;
    }
    // The during loop finishes its current evaluation, as chaos waits for its thread.
    let _ = stop_during.send(true);
    let during = ctx.lock().during.take();
    if let Some(during) = during {
        let _ = during.await;
    }

    if play_rollbacks {
        let rollbacks = rollback_phase(&ctx, &options.rollback_strategy);
        if let Some(stop) = guarded(rollbacks, signals.as_mut()).await {
            interrupted(&ctx, stop, true);
            settle_background(&ctx, stop).await;
        }
    }

    let end = journal::iso_now();
    let duration = clock.elapsed().as_secs_f64();
    let mut state = std::mem::take(&mut *ctx.lock());
    let status = state.status.unwrap_or(Status::Completed);
    let shown = if state.deviated {
        "deviated"
    } else {
        status.as_str()
    };
    tracing::info!("Experiment ended with status: {shown}");
    if state.deviated {
        tracing::info!("The steady-state has deviated, a weakness may have been discovered");
    }
    let mut experiment_value = Value::Object(journal_experiment);
    apply_tolerance_values(&mut experiment_value, &mut state);
    Journal {
        chaoslib_version: journal::CHAOSLIB_VERSION,
        platform: crate::sys::platform(),
        node: crate::sys::node(),
        experiment: experiment_value,
        start,
        status: Some(status),
        deviated: state.deviated,
        steady_states: state.steady_states,
        run: state.run,
        rollbacks: state.rollbacks,
        end,
        duration,
    }
}

/// `chaos` hands the resolved secrets to each dynamic configuration probe by adding them to its
/// provider, which its journal then shows. chaosflow shows the same key with every value
/// masked: the journal never carries secrets.
fn show_secrets_given_to_dynamic_probes(doc: &mut Map<String, Value>, scope: &Scope) {
    fn mask(value: &Value) -> Value {
        match value {
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), mask(v))).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(mask).collect()),
            _ => Value::String(crate::redact::MASK.into()),
        }
    }
    let Some(Value::Object(configuration)) = doc.get_mut("configuration") else {
        return;
    };
    for entry in configuration.values_mut() {
        if entry.get("type").and_then(Value::as_str) != Some("probe") {
            continue;
        }
        if let Some(provider) = entry.get_mut("provider").and_then(Value::as_object_mut) {
            provider.insert(
                "secrets".into(),
                mask(&Value::Object(scope.secrets.clone())),
            );
        }
    }
}

/// Runs a phase until it ends or a stop signal arrives (then the phase is dropped).
async fn guarded(phase: impl Future<Output = ()>, signals: Option<&mut Signals>) -> Option<Stop> {
    match signals {
        Some(signals) => tokio::select! {
            () = phase => None,
            stop = signals.recv() => Some(stop),
        },
        None => {
            phase.await;
            None
        }
    }
}

/// Records a stop request as `chaos` does.
fn interrupted(ctx: &Ctx, stop: Stop, during_rollbacks: bool) {
    ctx.set_status(Status::Interrupted);
    match stop {
        Stop::Term => {
            tracing::warn!("Caught SIGTERM signal, interrupting experiment now");
            tracing::error!(critical = true, "SIGTERM signal received");
        }
        Stop::Int if !during_rollbacks => {
            tracing::warn!("Received a termination signal (Ctrl-C)...");
        }
        Stop::Usr1 | Stop::Usr2 if !during_rollbacks => {
            let code = if stop == Stop::Usr1 { 20 } else { 30 };
            tracing::warn!("Received the exit signal: {code}");
            if stop == Stop::Usr2 {
                tracing::warn!("Ignoring rollbacks as per signal");
            }
        }
        _ => tracing::warn!(
            "Received an exit signal.Terminating now without running the remaining rollbacks."
        ),
    }
    ctx.emitter.emit(
        names::RUN_INTERRUPTED,
        Phase::Run,
        json!({"signal": stop.name()}),
        None,
    );
}

/// After an interruption, background activities are waited for, except on SIGUSR2 which
/// abandons them.
async fn settle_background(ctx: &Ctx, stop: Stop) {
    for handle in ctx.take_background() {
        if stop == Stop::Usr2 {
            handle.abort();
        }
        let _ = handle.await;
    }
}

/// Hypothesis before, method (with the during loop), hypothesis after.
async fn main_phase(
    ctx: &Arc<Ctx>,
    options: &RunOptions,
    with_ssh: bool,
    stop_during: &watch::Sender<bool>,
    during_stopped: watch::Receiver<bool>,
) {
    if with_ssh && options.strategy.before() {
        tracing::debug!("Running steady-state hypothesis before the method");
        match hypothesis::evaluate(ctx, Phase::Before, None).await {
            Ok(state) => {
                let met = state.steady_state_met == Some(true);
                let unmet = (!met).then(|| gate_status(&state));
                let last = last_probe_name(&state);
                ctx.lock().steady_states.before = Some(state);
                if let Some(status) = unmet {
                    ctx.set_status(status);
                    tracing::error!(
                        critical = true,
                        "Steady state probe '{last}' is not in the given tolerance so failing \
                         this experiment"
                    );
                    return;
                }
            }
            Err(abort) => {
                ctx.lock().steady_states.before = Some(abort.state);
                abort_run(ctx, &abort.error);
                return;
            }
        }
    }

    if with_ssh && options.strategy.during() {
        let loop_ctx = ctx.clone();
        let frequency = options.hypothesis_frequency;
        let fail_fast = options.fail_fast;
        // On a thread of its own in chaos.
        let handle = tokio::spawn(crate::extensions::bridge::off_main_thread(async move {
            during_loop(loop_ctx, frequency, fail_fast, during_stopped).await;
        }));
        ctx.lock().during = Some(handle);
    }

    let method_completed = run_method(ctx).await;

    let _ = stop_during.send(true);
    let during = ctx.lock().during.take();
    if let Some(during) = during {
        let _ = during.await;
    }

    let status = ctx.status();
    if matches!(status, Some(Status::Interrupted | Status::Aborted)) || !method_completed {
        return;
    }
    if with_ssh && options.strategy.after() {
        tracing::debug!("Running steady-state hypothesis after the method");
        match hypothesis::evaluate(ctx, Phase::After, None).await {
            Ok(state) => {
                let met = state.steady_state_met == Some(true);
                let unmet = (!met).then(|| gate_status(&state));
                let last = last_probe_name(&state);
                let mut run = ctx.lock();
                run.steady_states.after = Some(state);
                if let Some(status) = unmet {
                    run.deviated = true;
                    run.status = Some(status);
                    drop(run);
                    tracing::error!(
                        critical = true,
                        "Steady state probe '{last}' is not in the given tolerance so failing \
                         this experiment"
                    );
                }
            }
            Err(abort) => {
                ctx.lock().steady_states.after = Some(abort.state);
                abort_run(ctx, &abort.error);
            }
        }
    }
}

/// An unmet hypothesis: `failed` if a probe failed, else `completed`.
fn gate_status(state: &SteadyState) -> Status {
    if state
        .probes
        .iter()
        .any(|p| p.status != Some(ItemStatus::Succeeded))
    {
        Status::Failed
    } else {
        Status::Completed
    }
}

fn last_probe_name(state: &SteadyState) -> String {
    state
        .probes
        .last()
        .and_then(|p| p.activity.get("name"))
        .map(python::to_str)
        .unwrap_or_default()
}

fn abort_run(ctx: &Ctx, error: &str) {
    ctx.set_status(Status::Aborted);
    tracing::error!(
        critical = true,
        "Experiment ran into an un expected fatal error, aborting now."
    );
    tracing::error!(critical = true, "{error}");
}

/// The method; returns false when it was aborted by an unexpected error.
async fn run_method(ctx: &Arc<Ctx>) -> bool {
    tracing::info!("Playing your experiment's method now...");
    let method = ctx.experiment.method();
    ctx.emitter.emit(
        names::METHOD_STARTED,
        Phase::Method,
        json!({"activities": method.len()}),
        None,
    );
    if method.is_empty() {
        tracing::info!("No declared activities, let's move on.");
    }
    let mut completed = true;
    for (index, entry) in method.iter().enumerate() {
        if entry.get("background").and_then(Value::as_bool) == Some(true) {
            tracing::debug!("activity will run in the background");
            start_background(ctx, ItemList::Method, Phase::Method, "method", index).await;
        } else if let Err(abort) = activity::execute(
            ctx,
            entry,
            Phase::Method,
            Record::Foreground(ItemList::Method),
        )
        .await
        {
            abort_run(ctx, &abort.error);
            completed = false;
            break;
        }
        if matches!(
            ctx.status(),
            Some(Status::Aborted | Status::Failed | Status::Interrupted)
        ) {
            break;
        }
    }
    wait_background(ctx).await;
    let ran = ctx.lock().run.len();
    ctx.emitter.emit(
        names::METHOD_COMPLETED,
        Phase::Method,
        json!({"activities": ran}),
        None,
    );
    completed
}

/// Starts a background activity and returns once it is in the journal (or pausing first, or
/// failed early): the next activity then starts after it, as with chaos's threads.
async fn start_background(
    ctx: &Arc<Ctx>,
    list: ItemList,
    phase: Phase,
    section: &'static str,
    index: usize,
) {
    let (started, has_started) = oneshot::channel();
    let task_ctx = ctx.clone();
    // chaos runs it on a thread pool; the method goes on on its main thread.
    let handle = tokio::spawn(crate::extensions::bridge::off_main_thread(async move {
        let entry = match section {
            "method" => task_ctx.experiment.method().get(index),
            _ => task_ctx.experiment.rollbacks().get(index),
        }
        .cloned()
        .unwrap_or(Value::Null);
        let record = Record::Background(list, started);
        if let Err(abort) = activity::execute(&task_ctx, &entry, phase, record).await {
            // chaos ignores exceptions of background activities; their item keeps no status.
            tracing::error!(
                "Background activity stopped by an unexpected error: {}",
                abort.error
            );
        }
    }));
    ctx.lock().background.push(handle);
    let _ = has_started.await;
}

async fn wait_background(ctx: &Ctx) {
    let handles = ctx.take_background();
    if !handles.is_empty() {
        tracing::debug!("Waiting for background activities to complete");
    }
    for handle in handles {
        let _ = handle.await;
    }
}

/// The during-method loop: evaluate, wait `frequency` seconds, repeat until the method ends.
async fn during_loop(
    ctx: Arc<Ctx>,
    frequency: f64,
    fail_fast: bool,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!(
        "Executing the steady-state hypothesis continuously every {} seconds",
        python::float_repr(frequency)
    );
    let wait = Duration::try_from_secs_f64(frequency.max(0.0)).unwrap_or(Duration::MAX);
    let mut failed_iterations = 0u64;
    let mut iteration = 1u64;
    while !*stop.borrow() {
        if matches!(
            ctx.status(),
            Some(Status::Failed | Status::Interrupted | Status::Aborted)
        ) {
            break;
        }
        match hypothesis::evaluate(&ctx, Phase::During, Some(iteration)).await {
            Ok(state) => {
                let met = state.steady_state_met == Some(true);
                let last = last_probe_name(&state);
                ctx.lock().steady_states.during.push(state);
                if !met {
                    failed_iterations += 1;
                    let ratio = (failed_iterations * 100) as f64 / iteration as f64;
                    tracing::warn!(
                        "Continuous steady state probe '{last}' is not in the given tolerance"
                    );
                    if fail_fast {
                        let mut message = "Terminating immediately the experiment".to_owned();
                        if ratio != 0.0 {
                            message.push_str(&format!(" after {ratio:.1}% hypothesis deviated"));
                        }
                        tracing::info!("{message}");
                        ctx.set_status(Status::Failed);
                        break;
                    }
                }
            }
            Err(abort) => {
                ctx.lock().steady_states.during.push(abort.state);
                ctx.set_status(Status::Aborted);
                tracing::error!(critical = true, "{}", abort.error);
                break;
            }
        }
        iteration += 1;
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stopped| *stopped) => {}
        }
    }
    tracing::info!("Continuous steady state hypothesis terminated");
}

/// Rollbacks, played or not per the strategy.
async fn rollback_phase(ctx: &Arc<Ctx>, strategy: &str) {
    let (status, deviated) = {
        let state = ctx.lock();
        (state.status, state.deviated)
    };
    let play = match strategy {
        "always" => {
            tracing::warn!("Rollbacks were explicitly requested to be played");
            true
        }
        "never" => {
            tracing::warn!("Rollbacks were explicitly requested to not be played");
            false
        }
        "default" => !matches!(status, Some(Status::Failed | Status::Interrupted)),
        "deviated" if deviated => {
            tracing::warn!("Rollbacks will be played only because the experiment deviated");
            true
        }
        "deviated" => {
            tracing::warn!(
                "Rollbacks were explicitely requested to be played only if the experiment \
                 deviated. Since this is not the case, we will not play them."
            );
            false
        }
        _ => false,
    };
    if !play {
        let reason = match strategy {
            "never" => "the strategy is never".to_owned(),
            "deviated" => "the experiment did not deviate".to_owned(),
            "default" => format!(
                "the run {}",
                status.map_or("did not complete", |s| s.as_str())
            ),
            other => format!("unknown strategy '{other}'"),
        };
        ctx.emitter.emit(
            names::ROLLBACKS_SKIPPED,
            Phase::Rollbacks,
            json!({"strategy": strategy, "reason": reason}),
            None,
        );
        return;
    }
    let rollbacks = ctx.experiment.rollbacks();
    ctx.emitter.emit(
        names::ROLLBACKS_STARTED,
        Phase::Rollbacks,
        json!({"strategy": strategy, "rollbacks": rollbacks.len()}),
        None,
    );
    tracing::info!("Let's rollback...");
    if rollbacks.is_empty() {
        tracing::info!("No declared rollbacks, let's move on.");
    }
    for (index, entry) in rollbacks.iter().enumerate() {
        // chaos logs the entry's name, `None` for a ref entry.
        let name = entry
            .get("name")
            .map_or_else(|| "None".to_owned(), python::to_str);
        tracing::info!("Rollback: {name}");
        if entry.get("background").and_then(Value::as_bool) == Some(true) {
            tracing::debug!("rollback activity will run in the background");
            start_background(
                ctx,
                ItemList::Rollbacks,
                Phase::Rollbacks,
                "rollbacks",
                index,
            )
            .await;
        } else if let Err(abort) = activity::execute(
            ctx,
            entry,
            Phase::Rollbacks,
            Record::Foreground(ItemList::Rollbacks),
        )
        .await
        {
            // chaos crashes here; chaosflow records the abort and still plays the others.
            ctx.set_status(Status::Aborted);
            tracing::error!(
                critical = true,
                "Rollback '{name}' could not run: {}",
                abort.error
            );
        }
    }
    let handles = ctx.take_background();
    if !handles.is_empty() {
        tracing::debug!("Waiting for background rollbacks to complete...");
    }
    for handle in handles {
        let _ = handle.await;
    }
    let ran = ctx.lock().rollbacks.len();
    ctx.emitter.emit(
        names::ROLLBACKS_COMPLETED,
        Phase::Rollbacks,
        json!({"rollbacks": ran}),
        None,
    );
}

/// Shows the last output given to each probe tolerance wherever `chaos` shows it (its
/// dictionaries are shared, so every copy shows the final value).
fn apply_tolerance_values(experiment: &mut Value, state: &mut RunState) {
    for (index, value) in &state.tolerance_values {
        if let Some(probe) = experiment
            .get_mut(HYPOTHESIS)
            .and_then(|h| h.get_mut("probes"))
            .and_then(|p| p.get_mut(*index))
        {
            inject_value(probe, value);
        }
    }
    let values = &state.tolerance_values;
    let patch = |item: &mut RunItem| {
        if let Some(value) = item.hypothesis_probe.and_then(|i| values.get(&i)) {
            inject_value(&mut item.activity, value);
        }
    };
    let states = &mut state.steady_states;
    for s in states
        .before
        .iter_mut()
        .chain(states.after.iter_mut())
        .chain(states.during.iter_mut())
    {
        s.probes.iter_mut().for_each(patch);
    }
    state.run.iter_mut().for_each(patch);
    state.rollbacks.iter_mut().for_each(patch);
}

fn inject_value(activity: &mut Value, value: &Value) {
    if let Some(arguments) = activity
        .get_mut("tolerance")
        .and_then(|t| t.get_mut("provider"))
        .and_then(|p| p.get_mut("arguments"))
        .and_then(Value::as_object_mut)
    {
        arguments.insert("value".into(), value.clone());
    }
}
