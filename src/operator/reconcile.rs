//! Reconciling one `ChaosToolkitExperiment`: make the run objects exist, read the runner pod
//! back into the status, tell what happened with Kubernetes Events, clean up on deletion.
//!
//! Idempotent by construction: the namespace is created only when missing (an existing one may
//! be the user's and is left alone), the ServiceAccount, Roles, RoleBindings and CronJob are
//! server-side applied, and the pod is created under a name derived from the experiment's uid,
//! so "already exists" means "done before". The status is the record of what was done: a
//! finished one-shot experiment is not run again when its spec changes (pods cannot be
//! edited, and a chaos run is not something to repeat by accident), only when the
//! `chaostoolkit.org/rerun` annotation changes.
//!
//! Deletion goes through a finalizer: objects in the experiment's own namespace are also owned
//! by it, but run objects usually live in another namespace, where Kubernetes forbids owner
//! references, so cleanup deletes them by name and label. The user's ConfigMaps and Secrets
//! and the run namespace are never deleted; `keep_resources_on_delete: true` keeps everything.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Event as CoreEvent, Namespace, ObjectReference, Pod, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{self, Event as Finalized};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use super::crd::{ChaosToolkitExperiment, ChaosToolkitExperimentStatus, Phase, RunRecord, Verdict};
use super::metrics::Metrics;
use super::observe::{self, Finished, Observation};
use super::resources::{self, Defaults, Names};

/// The finalizer that lets the operator clean up before an experiment goes.
pub const FINALIZER: &str = "chaostoolkit.org/cleanup";
/// Changing this annotation reruns a finished one-shot experiment.
pub const RERUN_ANNOTATION: &str = "chaostoolkit.org/rerun";
/// The field manager of every server-side apply (and the events' reporting controller).
pub const FIELD_MANAGER: &str = "chaosflow-operator";
/// The upstream (kopf) operator's mark on a resource it handled.
pub const KOPF_HANDLED: &str = "kopf.zalando.org/last-handled-configuration";
/// How many runs of a scheduled experiment the status keeps.
const LAST_RUNS: usize = 10;
/// A safety net: pods are watched, so this only matters if a watch event was missed.
const RECHECK: Duration = Duration::from_secs(300);
/// How long a runner pod may be only "starting" before the operator looks for why.
const STARTING_TOO_LONG: Duration = Duration::from_secs(10);

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Kubernetes Events on experiments.
    pub recorder: Recorder,
    /// The operator's counters.
    pub metrics: Arc<Metrics>,
    /// Images and such.
    pub defaults: Defaults,
    /// Namespaces known to exist (saves a GET per run).
    known_namespaces: Mutex<HashSet<String>>,
    /// The last status written per experiment uid, with the resourceVersion it was based on;
    /// see [`Context::status_before`].
    written: Mutex<HashMap<String, (String, ChaosToolkitExperimentStatus)>>,
    /// The runner pods as the controller's own pod watch has them (see [`Context::with_pods`]);
    /// without it every pod is read from the API.
    pods: Option<Store<Pod>>,
}

impl Context {
    /// A context for `client`.
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        defaults: Defaults,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            defaults,
            known_namespaces: Mutex::default(),
            written: Mutex::default(),
            pods: None,
        }
    }

    /// Reads runner pods from `pods`, the store the controller's pod watch fills before it
    /// triggers a reconcile, so a reconcile caused by a pod's change sees that change: most
    /// reconciles then make no GET. A pod missing from it may be one whose watch event is still
    /// on its way, so a miss is asked of the API whenever it would matter.
    #[must_use]
    pub fn with_pods(mut self, pods: Store<Pod>) -> Self {
        self.pods = Some(pods);
        self
    }

    /// The pod store, once its first list is in.
    fn pod_cache(&self) -> Option<&Store<Pod>> {
        let pods = self.pods.as_ref()?;
        matches!(pods.wait_until_ready().now_or_never(), Some(Ok(()))).then_some(pods)
    }

    /// The status as it stands. A reconcile triggered by a pod's change may see the experiment
    /// as the watch cache has it, before the status this operator just wrote: still at the
    /// version that write was based on. Then the written status is the truth; without this, a
    /// verdict would be told twice.
    fn status_before(&self, ctk: &ChaosToolkitExperiment) -> ChaosToolkitExperimentStatus {
        let uid = ctk.uid().unwrap_or_default();
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        match written.get(&uid) {
            Some((based_on, status)) if ctk.resource_version().as_ref() == Some(based_on) => {
                status.clone()
            }
            _ => {
                written.remove(&uid);
                ctk.status.clone().unwrap_or_default()
            }
        }
    }

    fn wrote(&self, ctk: &ChaosToolkitExperiment, status: &ChaosToolkitExperimentStatus) {
        if let (Some(uid), Some(version)) = (ctk.uid(), ctk.resource_version()) {
            self.written
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(uid, (version, status.clone()));
        }
    }
}

/// Why a reconcile failed; the controller retries it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done ("create Pod chaostoolkit-run/chaostoolkit-1b0bbbd0c1").
        action: String,
        /// The API's answer.
        #[source]
        source: kube::Error,
    },
    /// Adding or removing the finalizer failed (boxed: the finalizer's error holds ours).
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<Error>>),
}

impl Error {
    /// What the API refused and why, when it refused the request itself (4xx other than a
    /// conflict or throttling, which pass): something the spec asks for that cannot be done
    /// as written.
    fn refusal(&self) -> Option<String> {
        let (action, status) = match self {
            Error::Kube {
                action,
                source: kube::Error::Api(status),
            } => (action, status),
            Error::Finalizer(e) => match &**e {
                finalizer::Error::ApplyFailed(e) => return e.refusal(),
                _ => return None,
            },
            Error::Kube { .. } => return None,
        };
        ((400..500).contains(&status.code) && !matches!(status.code, 409 | 429))
            .then(|| format!("{action}: {}", status.message))
    }

    /// A short, bounded label for the failures metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } => match status.code {
                403 => "forbidden",
                404 => "not_found",
                409 => "conflict",
                422 => "invalid",
                429 => "throttled",
                500.. => "server_error",
                _ => "api_error",
            },
            Error::Kube { .. } => "connection",
            Error::Finalizer(e) => match &**e {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                    e.metric_label()
                }
                _ => "finalizer",
            },
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

fn kube_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Reconciles `ctk`: the controller's entry point.
///
/// # Errors
///
/// An API call failed; the error policy logs it and retries.
pub async fn reconcile(ctk: Arc<ChaosToolkitExperiment>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let namespace = ctk.namespace().unwrap_or_default();
    let api: Api<ChaosToolkitExperiment> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer::finalizer(&api, FINALIZER, ctk.clone(), |event| async {
        match event {
            Finalized::Apply(ctk) => apply(&ctk, &ctx).await,
            Finalized::Cleanup(ctk) => cleanup(&ctk, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if let Err(e) = &result
        && let Some(refusal) = e.refusal()
        && ctk.meta().deletion_timestamp.is_none()
    {
        report_refusal(&ctk, &ctx, refusal).await;
    }
    ctx.metrics.reconciled(started.elapsed());
    result
}

/// Tells on the resource (status message and a Warning event, once per new message) that the
/// API refuses what its spec asks for: a namespace in `binds_to_namespaces` that does not
/// exist, a Role granting more than the operator holds. Otherwise only the operator's log would
/// say why nothing happens. The reconcile is retried all the same.
async fn report_refusal(ctk: &ChaosToolkitExperiment, ctx: &Context, refusal: String) {
    let before = ctx.status_before(ctk);
    let message = format!("Cannot go on, retrying every 15 s: {refusal}");
    if before.message.as_ref() == Some(&message) {
        return;
    }
    let status = ChaosToolkitExperimentStatus {
        message: Some(message.clone()),
        ..before.clone()
    };
    let told = vec![Told {
        type_: EventType::Warning,
        reason: "ReconcileFailed",
        note: message,
        verdict: None,
        pod: None,
    }];
    if let Err(e) = publish(ctk, ctx, &before, status, told).await {
        tracing::debug!("Cannot report the failure on the resource: {e}");
    }
}

/// Logs a failed reconcile, counts it and retries it.
pub fn error_policy(ctk: Arc<ChaosToolkitExperiment>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(error.metric_label());
    tracing::warn!(
        experiment = %format!("{}/{}", ctk.namespace().unwrap_or_default(), ctk.name_any()),
        reason = error.metric_label(),
        "Reconcile failed; retrying in 15s: {error}"
    );
    Action::requeue(Duration::from_secs(15))
}

async fn apply(ctk: &ChaosToolkitExperiment, ctx: &Context) -> Result<Action> {
    let names = Names::of(ctk);
    let before = ctx.status_before(ctk);
    if let Some(problem) = &ctk.invalid_spec {
        return invalid(ctk, ctx, &before, problem.clone()).await;
    }
    let new_generation = before.observed_generation != ctk.meta().generation;
    if new_generation && ctk.spec.template.as_ref().is_some_and(|t| t.name.is_some()) {
        let note = "spec.template.name is ignored: upstream's resource templates ConfigMap has no \
                    meaning here (chaosflow makes its own objects). Customize the runner pod \
                    with spec.pod.template, a whole Pod manifest."
            .to_string();
        let told = Told {
            type_: EventType::Warning,
            reason: "IgnoredField",
            note,
            verdict: None,
            pod: None,
        };
        publish(ctk, ctx, &before, before.clone(), vec![told]).await?;
    }
    if let Some(schedule) = &ctk.spec.schedule
        && !schedule.kind.eq_ignore_ascii_case("cronjob")
    {
        // The CRD's schema rejects this; an older CRD may not have.
        let message = format!(
            "spec.schedule.kind: `{}` is not supported; the only kind is `cronjob`.",
            schedule.kind
        );
        return invalid(ctk, ctx, &before, message).await;
    }
    if ctk.spec.schedule.is_some() {
        return apply_scheduled(ctk, ctx, &names, before).await;
    }
    if edited(ctk, &before) {
        // The schedule was removed (or the run namespace moved): its CronJob must not go on.
        retire_cron_jobs(ctk, ctx, None).await?;
    }

    let finished = matches!(before.phase, Some(Phase::Succeeded | Phase::Failed));
    // Scheduled until an edit removed the schedule, before any run: removing a schedule means
    // "stop", not "run now".
    let unscheduled = before.phase == Some(Phase::Pending) && before.pod_name.is_none();
    let rerun = ctk.annotations().get(RERUN_ANNOTATION).cloned();
    let mut status = before.clone();
    if finished || unscheduled {
        let Some(token) = rerun.filter(|t| before.rerun.as_ref() != Some(t)) else {
            if unscheduled {
                let message = format!(
                    "No schedule any more: not run. Set the annotation {RERUN_ANNOTATION} to run it once."
                );
                say(ctk, ctx, &before, message).await?;
            }
            // Done; spec changes do not rerun it (see the module header).
            return Ok(Action::await_change());
        };
        if let Some(old) = &before.pod_name {
            delete(
                &Api::<Pod>::namespaced(ctx.client.clone(), &names.namespace),
                old,
            )
            .await?;
        }
        status = ChaosToolkitExperimentStatus {
            pod_name: Some(names.rerun_pod(&token)),
            rerun: Some(token),
            last_runs: before.last_runs.clone(),
            ..Default::default()
        };
    }
    let pod_name = status
        .pod_name
        .clone()
        .unwrap_or_else(|| names.runner.clone());
    // Handled by the upstream operator before the switch: it ran already. Its pod (same name)
    // tells the outcome; without the pod it must not run again by surprise.
    let ran_upstream = before.phase.is_none()
        && ctk.annotations().contains_key(KOPF_HANDLED)
        && !ctk.annotations().contains_key(RERUN_ANNOTATION);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let cache = ctx.pod_cache();
    let cached = cache.and_then(|c| c.get(&ObjectRef::new(&pod_name).within(&names.namespace)));
    let found = match cached {
        Some(pod) => Some(pod),
        // Nothing ran yet: create the pod straight away; "already exists" reads it then.
        None if cache.is_some() && status.phase.is_none() && !ran_upstream => None,
        None => pods
            .get_opt(&pod_name)
            .await
            .map_err(kube_error(format!(
                "get Pod {}/{pod_name}",
                names.namespace
            )))?
            .map(Arc::new),
    };
    let pod = match found {
        Some(pod) => Some(pod),
        // It ran, then vanished: someone deleted it.
        None if status.phase == Some(Phase::Running) => None,
        None if ran_upstream => {
            let message = format!(
                "Run by the previous (kopf) operator; its pod {}/{pod_name} is gone, so its outcome is unknown. Set the annotation {RERUN_ANNOTATION} to run it again.",
                names.namespace
            );
            say(ctk, ctx, &before, message).await?;
            return Ok(Action::await_change());
        }
        None => {
            ensure_run_objects(ctk, ctx, &names, &before).await?;
            let pod = match resources::pod(ctk, &names, &pod_name, &ctx.defaults) {
                Ok(pod) => pod,
                Err(e) => return invalid(ctk, ctx, &before, e.to_string()).await,
            };
            Some(Arc::new(create_pod(ctx, &pods, &names, pod).await?))
        }
    };
    status.pod_name = Some(pod_name.clone());
    status.observed_generation = ctk.meta().generation;
    let observation = match &pod {
        Some(pod) => observe::observe(pod),
        None => Observation::Finished(Finished {
            verdict: Verdict::Failed,
            start: status.start_time.clone(),
            end: None,
            summary: None,
            message: format!(
                "The runner pod {}/{pod_name} was deleted before the run ended.",
                names.namespace
            ),
        }),
    };
    // The kubelet tells a volume it cannot mount (a missing ConfigMap or Secret) only in
    // events, not in the pod: look there when a pod has been "starting" for a while, and again
    // until it starts.
    let starting = matches!(observation, Observation::Waiting(None));
    let observation = match (&observation, &pod) {
        (Observation::Waiting(None), Some(pod)) if starting_too_long(pod) => {
            Observation::Waiting(why_not_starting(ctx, &names.namespace, &pod_name).await)
        }
        _ => observation,
    };
    let events = record(&mut status, &before, observation, &pod_name);
    let done = matches!(status.phase, Some(Phase::Succeeded | Phase::Failed));
    publish(ctk, ctx, &before, status, events).await?;
    Ok(if done {
        Action::await_change()
    } else if starting {
        Action::requeue(STARTING_TOO_LONG)
    } else {
        Action::requeue(RECHECK)
    })
}

/// Whether `pod` has existed for longer than [`STARTING_TOO_LONG`].
fn starting_too_long(pod: &Pod) -> bool {
    pod.creation_timestamp().is_some_and(|created| {
        let age = k8s_openapi::jiff::Timestamp::now().duration_since(created.0);
        age.as_secs_f64() >= STARTING_TOO_LONG.as_secs_f64()
    })
}

/// Why runner pod `name` does not start, from the newest warning event about it ("FailedMount:
/// MountVolume.SetUp failed for volume ...: secret \"chaostoolkit-settings\" not found").
/// Nothing when there is none, or the events cannot be read: it only adds to the message.
async fn why_not_starting(ctx: &Context, namespace: &str, name: &str) -> Option<String> {
    let events: Api<CoreEvent> = Api::namespaced(ctx.client.clone(), namespace);
    let about_the_pod = format!("involvedObject.kind=Pod,involvedObject.name={name}");
    let listed = events
        .list(&ListParams::default().fields(&about_the_pod))
        .await
        .inspect_err(|e| tracing::debug!("Cannot list the events of pod {namespace}/{name}: {e}"))
        .ok()?;
    listed
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .max_by_key(|e| {
            let last = e.last_timestamp.as_ref().map(|t| t.0);
            last.or(e.event_time.as_ref().map(|t| t.0)).or(e
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0))
        })
        .map(|e| {
            let reason = e.reason.unwrap_or_else(|| "Warning".into());
            match e.message {
                Some(message) => format!("{reason}: {}", message.trim()),
                None => reason,
            }
        })
}

async fn apply_scheduled(
    ctk: &ChaosToolkitExperiment,
    ctx: &Context,
    names: &Names,
    before: ChaosToolkitExperimentStatus,
) -> Result<Action> {
    ensure_run_objects(ctk, ctx, names, &before).await?;
    if edited(ctk, &before) {
        // A moved run namespace leaves a CronJob behind, which would go on running chaos.
        retire_cron_jobs(ctk, ctx, Some((&names.namespace, &names.runner))).await?;
    }
    let cron = match resources::cron_job(ctk, names, &ctx.defaults) {
        Ok(cron) => cron,
        Err(e) => return invalid(ctk, ctx, &before, e.to_string()).await,
    };
    let crons: Api<CronJob> = Api::namespaced(ctx.client.clone(), &names.namespace);
    if let Err(e) = crons
        .patch(&names.runner, &apply_params(), &Patch::Apply(&cron))
        .await
    {
        if is_status(&e, 422) {
            // An invalid schedule the CRD's pattern let through.
            let message = format!("The CronJob was refused: {}", api_message(&e));
            return invalid(ctk, ctx, &before, message).await;
        }
        return Err(kube_error(format!(
            "apply CronJob {}/{}",
            names.namespace, names.runner
        ))(e));
    }
    let mut listed: Vec<Arc<Pod>> = match ctx.pod_cache() {
        Some(cache) => {
            let uid = ctk.uid().unwrap_or_default();
            cache.state_filter(|pod| {
                pod.namespace().as_ref() == Some(&names.namespace)
                    && pod.labels().get(resources::LABEL_EXPERIMENT_UID) == Some(&uid)
            })
        }
        None => Api::<Pod>::namespaced(ctx.client.clone(), &names.namespace)
            .list(&ListParams::default().labels(&resources::selector(ctk)))
            .await
            .map_err(kube_error(format!("list Pods in {}", names.namespace)))?
            .items
            .into_iter()
            .map(Arc::new)
            .collect(),
    };
    listed.sort_by_key(|p| p.creation_timestamp().map(|t| t.0));
    let mut status = before.clone();
    status.observed_generation = ctk.meta().generation;
    let mut events = Vec::new();
    let mut active = None;
    for pod in &listed {
        let name = pod.name_any();
        match observe::observe(pod) {
            Observation::Finished(f) => {
                if status.last_runs.iter().any(|r| r.pod_name == name) {
                    continue;
                }
                let mut current = ChaosToolkitExperimentStatus::default();
                events.extend(record(
                    &mut current,
                    &status_for(&status, &name),
                    Observation::Finished(f),
                    &name,
                ));
                status.last_runs.insert(
                    0,
                    RunRecord {
                        pod_name: name.clone(),
                        verdict: current.verdict,
                        end_time: current.end_time.clone(),
                    },
                );
                status.verdict = current.verdict;
                status.summary = current.summary;
                status.start_time = current.start_time;
                status.end_time = current.end_time;
                status.pod_name = Some(name);
                status.phase = current.phase;
                status.message = current.message;
            }
            observation => active = Some((name, observation)),
        }
    }
    status.last_runs.truncate(LAST_RUNS);
    if let Some((name, observation)) = active {
        let previous = status_for(&before, &name);
        let mut current = status.clone();
        events.extend(record(&mut current, &previous, observation, &name));
        status.phase = current.phase;
        status.pod_name = Some(name);
        status.start_time = current.start_time;
        status.message = current.message;
    } else if status.phase.is_none() {
        status.phase = Some(Phase::Pending);
        status.message = Some(format!(
            "Scheduled: a run every `{}` (CronJob {}/{}).",
            ctk.spec
                .schedule
                .as_ref()
                .and_then(|s| s.value.clone())
                .unwrap_or_else(|| "* * * * *".into()),
            names.namespace,
            names.runner
        ));
    }
    publish(ctk, ctx, &before, status, events).await?;
    Ok(Action::requeue(RECHECK))
}

/// The status as it stood for the run of pod `name` (to tell whether its start was told).
fn status_for(status: &ChaosToolkitExperimentStatus, name: &str) -> ChaosToolkitExperimentStatus {
    if status.pod_name.as_deref() == Some(name) {
        status.clone()
    } else {
        ChaosToolkitExperimentStatus::default()
    }
}

/// An event to publish once the status that records it is saved.
struct Told {
    type_: EventType,
    reason: &'static str,
    note: String,
    verdict: Option<Verdict>,
    /// The runner pod concerned, as the event's related object: it keeps the events of two
    /// runs apart (the recorder folds events that differ only in their note into a series).
    pod: Option<String>,
}

/// Moves `status` to what `observation` says about the run of `pod`, and returns the events
/// that transition deserves (compared with `before`, so each is told once).
fn record(
    status: &mut ChaosToolkitExperimentStatus,
    before: &ChaosToolkitExperimentStatus,
    observation: Observation,
    pod: &str,
) -> Vec<Told> {
    let mut told = Vec::new();
    let was_started = before.start_time.is_some()
        || matches!(
            before.phase,
            Some(Phase::Running | Phase::Succeeded | Phase::Failed)
        );
    let mut started = |at: &Option<String>, status: &mut ChaosToolkitExperimentStatus| {
        if status.start_time.is_none() {
            status.start_time.clone_from(at);
        }
        if !was_started {
            told.push(Told {
                type_: EventType::Normal,
                reason: "Started",
                note: format!("The run started in pod {pod}."),
                verdict: None,
                pod: Some(pod.to_string()),
            });
        }
    };
    match observation {
        Observation::Waiting(reason) => {
            status.phase = Some(Phase::Pending);
            status.message = Some(match reason {
                Some(reason) => format!("The runner pod {pod} is waiting: {reason}"),
                None => format!("The runner pod {pod} is starting."),
            });
        }
        Observation::Running(since) => {
            started(&since, status);
            status.phase = Some(Phase::Running);
            status.message = Some(format!("The run is in progress in pod {pod}."));
        }
        Observation::Finished(f) => {
            started(&f.start, status);
            let already = matches!(before.phase, Some(Phase::Succeeded | Phase::Failed))
                && before.pod_name.as_deref() == Some(pod);
            status.phase = Some(if f.verdict == Verdict::Completed {
                Phase::Succeeded
            } else {
                Phase::Failed
            });
            status.verdict = Some(f.verdict);
            if f.start.is_some() {
                status.start_time = f.start;
            }
            status.end_time = f.end;
            status.summary = f.summary;
            status.message = Some(f.message.clone());
            if !already {
                let (type_, reason) = match f.verdict {
                    Verdict::Completed => (EventType::Normal, "Completed"),
                    Verdict::Deviated => (EventType::Warning, "Deviated"),
                    _ => (EventType::Warning, "Failed"),
                };
                told.push(Told {
                    type_,
                    reason,
                    // The pod tells runs apart (identical notes would fold into one event).
                    note: format!("{} (pod {pod}).", f.message.trim_end_matches('.')),
                    verdict: Some(f.verdict),
                    pod: Some(pod.to_string()),
                });
            }
        }
    }
    told
}

/// Saves `status` when it changed, then tells the events (after: a failed save retries the
/// whole reconcile, and the events are told then).
async fn publish(
    ctk: &ChaosToolkitExperiment,
    ctx: &Context,
    before: &ChaosToolkitExperimentStatus,
    status: ChaosToolkitExperimentStatus,
    events: Vec<Told>,
) -> Result<()> {
    if &status != before {
        save_status(ctk, ctx, &status).await?;
    }
    let reference = ctk.object_ref(&());
    let run_namespace = Names::of(ctk).namespace;
    for told in events {
        if let Some(verdict) = told.verdict {
            ctx.metrics.run_ended(verdict);
        }
        tracing::info!(
            experiment = %format!("{}/{}", ctk.namespace().unwrap_or_default(), ctk.name_any()),
            reason = told.reason,
            "{}",
            told.note
        );
        let event = KubeEvent {
            type_: told.type_,
            reason: told.reason.into(),
            note: Some(truncate(told.note, 1024)),
            action: "Run".into(),
            secondary: told.pod.map(|name| ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                namespace: Some(run_namespace.clone()),
                ..Default::default()
            }),
        };
        // An event is a courtesy: the status already holds the record.
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(reason = told.reason, "Cannot publish the event: {e}");
        }
    }
    Ok(())
}

/// Puts `message` in the status of an experiment that waits on the user (nothing else
/// changes), unless it is there already.
async fn say(
    ctk: &ChaosToolkitExperiment,
    ctx: &Context,
    before: &ChaosToolkitExperimentStatus,
    message: String,
) -> Result<()> {
    if before.message.as_ref() == Some(&message) {
        return Ok(());
    }
    let status = ChaosToolkitExperimentStatus {
        message: Some(message),
        observed_generation: ctk.meta().generation,
        ..before.clone()
    };
    save_status(ctk, ctx, &status).await
}

/// Merge-patches the whole status, with nulls for what is gone (a rerun clears the verdict).
async fn save_status(
    ctk: &ChaosToolkitExperiment,
    ctx: &Context,
    status: &ChaosToolkitExperimentStatus,
) -> Result<()> {
    let mut value = serde_json::to_value(status).expect("the status serializes");
    for key in [
        "phase",
        "verdict",
        "startTime",
        "endTime",
        "podName",
        "summary",
        "lastRuns",
        "observedGeneration",
        "message",
        "rerun",
    ] {
        value
            .as_object_mut()
            .expect("the status is an object")
            .entry(key)
            .or_insert(Value::Null);
    }
    let api: Api<ChaosToolkitExperiment> =
        Api::namespaced(ctx.client.clone(), &ctk.namespace().unwrap_or_default());
    api.patch_status(
        &ctk.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": value})),
    )
    .await
    .map_err(kube_error(format!(
        "patch the status of {}",
        ctk.name_any()
    )))?;
    ctx.wrote(ctk, status);
    Ok(())
}

/// A spec the operator cannot act on: said in the status and a Warning event, not retried
/// until the spec changes.
async fn invalid(
    ctk: &ChaosToolkitExperiment,
    ctx: &Context,
    before: &ChaosToolkitExperimentStatus,
    message: String,
) -> Result<Action> {
    let status = ChaosToolkitExperimentStatus {
        phase: Some(Phase::Failed),
        verdict: None,
        message: Some(message.clone()),
        observed_generation: ctk.meta().generation,
        ..before.clone()
    };
    let events = if before.message.as_ref() == Some(&message) {
        Vec::new()
    } else {
        vec![Told {
            type_: EventType::Warning,
            reason: "InvalidSpec",
            note: message,
            verdict: None,
            pod: None,
        }]
    };
    publish(ctk, ctx, before, status, events).await?;
    Ok(Action::await_change())
}

/// The namespace, ServiceAccount, Roles and RoleBindings the runner needs. After a spec change
/// (a rerun, or a scheduled experiment edited), grants in namespaces the spec no longer names
/// are revoked: a namespace dropped from `binds_to_namespaces` must not stay open to the runner.
async fn ensure_run_objects(
    ctk: &ChaosToolkitExperiment,
    ctx: &Context,
    names: &Names,
    before: &ChaosToolkitExperimentStatus,
) -> Result<()> {
    ensure_namespace(ctx, &names.namespace).await?;
    let client = &ctx.client;
    if names.own_service_account {
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &names.namespace);
        api.patch(
            &names.service_account,
            &apply_params(),
            &Patch::Apply(resources::service_account(ctk, names)),
        )
        .await
        .map_err(kube_error(format!(
            "apply ServiceAccount {}/{}",
            names.namespace, names.service_account
        )))?;
    }
    for namespace in std::iter::once(&names.namespace).chain(&names.extra_namespaces) {
        if names.own_role {
            let api: Api<Role> = Api::namespaced(client.clone(), namespace);
            api.patch(
                &names.role,
                &apply_params(),
                &Patch::Apply(resources::role(ctk, names, namespace)),
            )
            .await
            .map_err(kube_error(format!("apply Role {namespace}/{}", names.role)))?;
        }
        if names.own_binding {
            let api: Api<RoleBinding> = Api::namespaced(client.clone(), namespace);
            api.patch(
                &names.binding,
                &apply_params(),
                &Patch::Apply(resources::role_binding(ctk, names, namespace)),
            )
            .await
            .map_err(kube_error(format!(
                "apply RoleBinding {namespace}/{}",
                names.binding
            )))?;
        }
    }
    // The first run has nothing stale to revoke; skipping it saves two LISTs per experiment.
    if edited(ctk, before) {
        let keep: Vec<&str> = std::iter::once(&names.namespace)
            .chain(&names.extra_namespaces)
            .map(String::as_str)
            .collect();
        revoke_grants(ctk, ctx, &keep).await?;
    }
    Ok(())
}

/// Whether the spec changed since the status was last written (never on the first reconcile,
/// which has nothing stale to clear up).
fn edited(ctk: &ChaosToolkitExperiment, before: &ChaosToolkitExperimentStatus) -> bool {
    before
        .observed_generation
        .is_some_and(|seen| Some(seen) != ctk.meta().generation)
}

/// Deletes the experiment's CronJobs (found by its uid label, in every namespace) but `keep`
/// (namespace, name). Their Jobs are orphaned rather than deleted: a run in progress finishes;
/// they go with the experiment.
async fn retire_cron_jobs(
    ctk: &ChaosToolkitExperiment,
    ctx: &Context,
    keep: Option<(&str, &str)>,
) -> Result<()> {
    let all: Api<CronJob> = Api::all(ctx.client.clone());
    let kept = |namespace: &str, name: &str| keep == Some((namespace, name));
    let selector = resources::selector(ctk);
    for (namespace, name) in
        delete_everywhere(&all, &selector, kept, &DeleteParams::orphan()).await?
    {
        tracing::info!("Deleted CronJob {namespace}/{name}: the spec no longer asks for it");
    }
    Ok(())
}

/// Deletes the experiment's Roles and RoleBindings (found by its uid label, in every namespace)
/// outside `keep`. By label, so a user's own Role named in the spec is never touched.
async fn revoke_grants(ctk: &ChaosToolkitExperiment, ctx: &Context, keep: &[&str]) -> Result<()> {
    let selector = resources::selector(ctk);
    let kept = |namespace: &str, _: &str| keep.contains(&namespace);
    let background = DeleteParams::background();
    let bindings: Api<RoleBinding> = Api::all(ctx.client.clone());
    for (namespace, name) in delete_everywhere(&bindings, &selector, kept, &background).await? {
        tracing::info!("Revoked RoleBinding {namespace}/{name}");
    }
    let roles: Api<Role> = Api::all(ctx.client.clone());
    delete_everywhere(&roles, &selector, kept, &background).await?;
    Ok(())
}

async fn ensure_namespace(ctx: &Context, name: &str) -> Result<()> {
    if ctx
        .known_namespaces
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(name)
    {
        return Ok(());
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    if api
        .get_opt(name)
        .await
        .map_err(kube_error(format!("get Namespace {name}")))?
        .is_none()
    {
        match api
            .create(&PostParams::default(), &resources::namespace(name))
            .await
        {
            Ok(_) => tracing::info!("Created namespace {name}"),
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(kube_error(format!("create Namespace {name}"))(e)),
        }
    }
    ctx.known_namespaces
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name.to_string());
    Ok(())
}

async fn create_pod(ctx: &Context, pods: &Api<Pod>, names: &Names, pod: Pod) -> Result<Pod> {
    let name = pod.name_any();
    match pods.create(&PostParams::default(), &pod).await {
        Ok(pod) => {
            tracing::info!("Created runner pod {}/{name}", names.namespace);
            Ok(pod)
        }
        // Created by an earlier reconcile whose status save did not land.
        Err(e) if is_status(&e, 409) => pods
            .get(&name)
            .await
            .map_err(kube_error(format!("get Pod {}/{name}", names.namespace))),
        Err(e) => {
            if is_status(&e, 404) {
                // The namespace went away since it was checked.
                ctx.known_namespaces
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&names.namespace);
            }
            Err(kube_error(format!("create Pod {}/{name}", names.namespace))(e))
        }
    }
}

async fn cleanup(ctk: &ChaosToolkitExperiment, ctx: &Context) -> Result<Action> {
    let name = format!("{}/{}", ctk.namespace().unwrap_or_default(), ctk.name_any());
    ctx.written
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&ctk.uid().unwrap_or_default());
    if ctk.spec.keep_resources_on_delete == Some(true) {
        tracing::info!(experiment = %name, "Deleted; its run objects are kept (keep_resources_on_delete).");
        return Ok(Action::await_change());
    }
    // By the experiment's uid label, in every namespace: the spec may have named other run
    // namespaces over time, and objects the operator did not make (the user's ServiceAccount or
    // Role named in the spec, ConfigMaps, Secrets) carry no such label.
    let client = &ctx.client;
    let selector = resources::selector(ctk);
    let (none, background) = (|_: &str, _: &str| false, DeleteParams::background());
    // CronJobs first, so that they start no job while the rest goes.
    delete_everywhere(
        &Api::<CronJob>::all(client.clone()),
        &selector,
        none,
        &background,
    )
    .await?;
    delete_everywhere(
        &Api::<Job>::all(client.clone()),
        &selector,
        none,
        &background,
    )
    .await?;
    delete_everywhere(
        &Api::<Pod>::all(client.clone()),
        &selector,
        none,
        &background,
    )
    .await?;
    revoke_grants(ctk, ctx, &[]).await?;
    let accounts = Api::<ServiceAccount>::all(client.clone());
    delete_everywhere(&accounts, &selector, none, &background).await?;
    tracing::info!(experiment = %name, "Deleted; its run objects are cleaned up.");
    Ok(Action::await_change())
}

/// Deletes every object of `all`'s kind matching `selector`, in every namespace, but those
/// `kept` (namespace, name); returns what it deleted.
async fn delete_everywhere<K>(
    all: &Api<K>,
    selector: &str,
    kept: impl Fn(&str, &str) -> bool,
    params: &DeleteParams,
) -> Result<Vec<(String, String)>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let mut deleted = list_everywhere(all, selector).await?;
    deleted.retain(|(namespace, name)| !kept(namespace, name));
    for (namespace, name) in &deleted {
        let api = Api::<K>::namespaced(all.clone().into_client(), namespace);
        delete_with(&api, name, params).await?;
    }
    Ok(deleted)
}

/// (namespace, name) of every object matching `selector` in `api`'s scope (all namespaces for
/// `Api::all`).
async fn list_everywhere<K>(api: &Api<K>, selector: &str) -> Result<Vec<(String, String)>>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    Ok(api
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .map_err(kube_error(format!(
            "list {} {selector}",
            K::kind(&Default::default())
        )))?
        .items
        .iter()
        .map(|o| (o.namespace().unwrap_or_default(), o.name_any()))
        .collect())
}

/// Deletes `name`; gone already is fine. Dependents (a CronJob's jobs) go in the background.
async fn delete<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    delete_with(api, name, &DeleteParams::background()).await
}

/// Deletes `name` with `params`; gone already is done.
async fn delete_with<K>(api: &Api<K>, name: &str, params: &DeleteParams) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(kube_error(format!(
            "delete {} {name}",
            K::kind(&Default::default())
        ))(e)),
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut at = max - 3;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(verdict: Verdict) -> Observation {
        Observation::Finished(Finished {
            verdict,
            start: Some("2026-11-25T10:00:00Z".into()),
            end: Some("2026-11-25T10:00:07Z".into()),
            summary: None,
            message: "m".into(),
        })
    }

    #[test]
    fn each_transition_is_told_once() {
        let mut status = ChaosToolkitExperimentStatus::default();
        let before = status.clone();
        let told = record(&mut status, &before, Observation::Waiting(None), "p");
        assert!(told.is_empty());
        assert_eq!(status.phase, Some(Phase::Pending));

        let before = status.clone();
        let told = record(
            &mut status,
            &before,
            Observation::Running(Some("2026-11-25T10:00:00Z".into())),
            "p",
        );
        assert_eq!(
            told.iter().map(|t| t.reason).collect::<Vec<_>>(),
            ["Started"]
        );
        let before = status.clone();
        assert!(record(&mut status, &before, Observation::Running(None), "p").is_empty());

        status.pod_name = Some("p".into());
        let before = status.clone();
        let told = record(&mut status, &before, finished(Verdict::Deviated), "p");
        assert_eq!(
            told.iter().map(|t| t.reason).collect::<Vec<_>>(),
            ["Deviated"]
        );
        assert_eq!(status.phase, Some(Phase::Failed));
        assert_eq!(status.verdict, Some(Verdict::Deviated));
        let before = status.clone();
        assert!(record(&mut status, &before, finished(Verdict::Deviated), "p").is_empty());
    }

    #[test]
    fn a_run_seen_only_when_over_is_told_started_and_ended() {
        let mut status = ChaosToolkitExperimentStatus::default();
        let told = record(
            &mut status,
            &ChaosToolkitExperimentStatus::default(),
            finished(Verdict::Completed),
            "p",
        );
        assert_eq!(
            told.iter().map(|t| t.reason).collect::<Vec<_>>(),
            ["Started", "Completed"]
        );
        assert_eq!(status.phase, Some(Phase::Succeeded));
        assert_eq!(status.start_time.as_deref(), Some("2026-11-25T10:00:00Z"));
    }

    #[test]
    fn failure_labels_are_bounded() {
        let e = Error::Kube {
            action: "x".into(),
            source: kube::Error::Api(Box::new(
                kube::core::Status::failure("no", "Forbidden").with_code(403),
            )),
        };
        assert_eq!(e.metric_label(), "forbidden");
    }
}
