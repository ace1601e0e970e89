//! `chaosflow operator`: turns `ChaosToolkitExperiment` resources into runner pods (or
//! CronJobs) with the sidecar, and their runs back into the resources' status and events.
//!
//! - [`crd`]: the custom resource, from which `chaosflow crd` prints the CRD;
//! - [`resources`]: the objects made for an experiment, as pure functions;
//! - [`observe`]: what a runner pod says about its run;
//! - [`reconcile`]: the reconcile loop's body, its errors, the finalizer;
//! - [`metrics`]: counters and the `/metrics`, `/healthz`, `/readyz` endpoint.
//!
//! One replica is enough and is what `deploy/` runs: the operator keeps no state besides the
//! resources' status, reconciles are idempotent, and the Deployment's `Recreate` strategy
//! never runs two at once (two would only repeat API calls: names are derived from uids and
//! "already exists" is success).

pub mod crd;
pub mod metrics;
pub mod observe;
pub mod reconcile;
pub mod resources;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::runtime::controller::{Config as ControllerConfig, Controller, Error as ControllerError};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};

use crd::ChaosToolkitExperiment;
use metrics::Metrics;
use reconcile::Context;
use resources::{
    ANNOTATION_EXPERIMENT, Defaults, LABEL_EXPERIMENT, LABEL_EXPERIMENT_NAMESPACE,
    LABEL_MANAGED_BY, MANAGER,
};

/// The CRD the operator needs.
const CRD_NAME: &str = "chaosexperiments.chaostoolkit.org";

/// What `chaosflow operator` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Watch only this namespace's experiments (all when `None`).
    pub namespace: Option<String>,
    /// The runner and sidecar image (else the operator's own, else the release's).
    pub image: Option<String>,
    /// Where to serve metrics and health.
    pub listen: SocketAddr,
}

/// Runs the operator until SIGTERM or SIGINT; returns the exit code. The caller's runtime is
/// one thread: the work is waiting on the API server, and memory is a feature.
pub async fn run(options: &Options) -> u8 {
    match operate(options).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    }
}

async fn operate(options: &Options) -> anyhow::Result<()> {
    use anyhow::Context as _;
    // Listening from the start: a signal that came before the controller's first poll would
    // otherwise be lost, and the pod would hang until the kubelet's SIGKILL.
    let mut signals = Signals::listen().context("Cannot listen for SIGTERM and SIGINT")?;
    let client = Client::try_default().await.context(
        "Cannot reach the Kubernetes API: in a pod the service account is used, elsewhere $KUBECONFIG or ~/.kube/config",
    )?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get_opt(CRD_NAME).await {
        Ok(Some(_)) => {}
        Ok(None) => anyhow::bail!(
            "The CustomResourceDefinition {CRD_NAME} is not installed: `kubectl apply -f deploy/base/crd.yaml` (or `chaosflow crd | kubectl apply -f -`), then start the operator again."
        ),
        Err(e) => {
            return Err(e).context(format!(
                "Cannot read the CustomResourceDefinition {CRD_NAME}"
            ));
        }
    }
    let image = match &options.image {
        Some(image) => image.clone(),
        None => own_image(&client).await,
    };
    tracing::info!("Runner pods use the image {image} unless spec.pod.image says otherwise.");

    let metrics = Arc::new(Metrics::default());
    let bound = metrics::serve(options.listen, metrics.clone())
        .with_context(|| format!("Cannot listen on {}", options.listen))?;
    tracing::info!("Serving /metrics, /healthz and /readyz on http://{bound}");

    let reporter = Reporter {
        controller: reconcile::FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    // Runner pods live in the run namespaces, anywhere: watched cluster-wide, by label, into a
    // store the reconciles read (it is updated before the pod's change triggers a reconcile).
    // Only what the reconciles read is kept (observe::slim).
    let (pod_cache, pod_writer) = reflector::store();
    let runner_pods = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let pod_changes = watcher(Api::<Pod>::all(client.clone()), runner_pods)
        .modify(observe::slim)
        .reflect(pod_writer)
        .touched_objects();
    let context = Arc::new(
        Context::new(
            client.clone(),
            Recorder::new(client.clone(), reporter),
            metrics.clone(),
            Defaults { image },
        )
        .with_pods(pod_cache),
    );
    let experiments: Api<ChaosToolkitExperiment> = match &options.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    tracing::info!(
        "Watching ChaosToolkitExperiments in {}.",
        options.namespace.as_deref().map_or_else(
            || "all namespaces".to_string(),
            |ns| format!("namespace {ns}")
        )
    );
    // The experiments' cache, as Controller::new would keep it but without what no reconcile
    // reads (crd::slim).
    let (experiment_cache, experiment_writer) = reflector::store();
    let experiment_changes = watcher(experiments, watcher::Config::default().any_semantic())
        .modify(crd::slim)
        .reflect(experiment_writer)
        .applied_objects();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = Controller::for_stream(experiment_changes, experiment_cache.clone())
        .with_config(ControllerConfig::default().concurrency(16))
        .watches_stream(pod_changes, |pod| {
            let labels = pod.labels();
            let name = pod
                .annotations()
                .get(ANNOTATION_EXPERIMENT)
                .or_else(|| labels.get(LABEL_EXPERIMENT))?;
            let namespace = labels.get(LABEL_EXPERIMENT_NAMESPACE)?;
            Some(ObjectRef::<ChaosToolkitExperiment>::new(name).within(namespace))
        })
        .graceful_shutdown_on(async {
            let _ = stopped.await;
        })
        .run(reconcile::reconcile, reconcile::error_policy, context)
        .for_each(|result| async move {
            match result {
                // Logged by the error policy, with the experiment.
                Err(ControllerError::ReconcilerFailed(..)) => {}
                // A watch that fails (RBAC, an unreachable API) stops every reconcile: loud.
                Err(e) => {
                    tracing::warn!("Watching experiments and runner pods failed (retrying): {e}")
                }
                Ok(_) => {}
            }
        });
    // Ready once the experiments are listed: a watch the API refuses keeps the pod unready,
    // where `kubectl get pods` shows it.
    let ready = {
        let cache = experiment_cache.clone();
        let metrics = metrics.clone();
        async move {
            if cache.wait_until_ready().await.is_ok() {
                metrics.ready.store(true, Ordering::Release);
                tracing::info!("Experiments listed: ready.");
            }
        }
    };
    let controller = futures::future::join(controller, ready).map(|_| ());
    let mut controller = std::pin::pin!(controller);
    let signal = tokio::select! {
        () = &mut controller => {
            tracing::info!("Stopped: the watches ended.");
            return Ok(());
        }
        signal = signals.recv() => signal,
    };
    metrics.ready.store(false, Ordering::Release);
    tracing::info!(
        "{signal}: no new reconcile starts; waiting for the running ones (again to stop now)."
    );
    let _ = stop.send(());
    // kube's runner starts reconciles only once the first list has filled the cache, and on a
    // stop still waits for that list, which the stop has cut off. Before it no reconcile
    // started: nothing to wait for. (The controller is not polled between the signal and this
    // check, so the answer cannot change.)
    if experiment_cache.wait_until_ready().now_or_never().is_none() {
        tracing::info!("Stopped before the first list of experiments: no reconcile had started.");
        return Ok(());
    }
    tokio::select! {
        () = &mut controller => tracing::info!("Stopped: running reconciles finished."),
        signal = signals.recv() => tracing::warn!(
            "{signal} again: stopped now; the reconciles cut short run again at the next start (they are idempotent)."
        ),
    }
    Ok(())
}

/// SIGTERM (the kubelet) and SIGINT (a terminal), registered when made.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// The operator's own image, read from its pod (`POD_NAME`, `POD_NAMESPACE` from the downward
/// API), so that one `images:` line in kustomize sets operator and runners alike; the release's
/// image otherwise.
async fn own_image(client: &Client) -> String {
    let fallback = format!("ghcr.io/chaosflow/chaosflow:{}", env!("CARGO_PKG_VERSION"));
    let (Ok(name), Ok(namespace)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE"))
    else {
        return fallback;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    match pods.get(&name).await {
        Ok(pod) => pod
            .spec
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.image)
            .unwrap_or(fallback),
        Err(e) => {
            tracing::warn!(
                "Cannot read the operator's own pod {namespace}/{name} ({e}); runner pods use {fallback}."
            );
            fallback
        }
    }
}
