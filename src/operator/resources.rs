//! The objects the operator creates for a `ChaosToolkitExperiment`, as pure functions of the
//! resource: names, labels, the runner's ServiceAccount, Role and RoleBindings, and the runner
//! pod (alone, or in a CronJob's job template).
//!
//! The layout follows the upstream operator's templates (same names, same mounts, same
//! `$(EXPERIMENT_PATH)` argument), so resources written for it behave the same, with these
//! deliberate differences:
//! - the runner is `chaosflow run`, told through the environment to leave delivery to a native
//!   sidecar (`chaosflow sidecar --native-sidecar`, an init container with `restartPolicy:
//!   Always`) and to write its outcome to the termination message, which the operator reads;
//! - upstream's bugs are fixed: the env ConfigMap reference is the name the user gave (marked
//!   optional, so no empty ConfigMap has to be created), a RoleBinding binds the service account
//!   the pod really uses, and `deployments` are granted in the `apps` group, where they live;
//! - secure defaults: non-root, read-only root filesystem (the working directory and `/tmp`
//!   are emptyDirs), no privilege escalation, all capabilities dropped, seccomp RuntimeDefault,
//!   requests and limits on both containers.
//!
//! Nothing here talks to the API server; `reconcile` applies what these functions return.

use std::collections::BTreeMap;

use blake2::Blake2bVar;
use blake2::digest::{Update, VariableOutput};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::crd::{ChaosToolkitExperiment, PodEnv};

/// Labels every created object carries; the operator finds its objects by them.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGER: &str = "chaosflow";
/// The experiment's name (shortened when it is longer than a label value may be: see
/// [`ANNOTATION_EXPERIMENT`]).
pub const LABEL_EXPERIMENT: &str = "chaostoolkit.org/experiment";
/// The experiment's whole name, on runner pods whose [`LABEL_EXPERIMENT`] had to be shortened
/// (a resource name may have 253 characters, a label value 63): the operator maps a pod's
/// changes to its experiment by it.
pub const ANNOTATION_EXPERIMENT: &str = "chaostoolkit.org/experiment";
/// The experiment's namespace (runs may live in another one).
pub const LABEL_EXPERIMENT_NAMESPACE: &str = "chaostoolkit.org/experiment-namespace";
/// The experiment's uid: tells apart a deleted experiment's leftovers from a new one's.
pub const LABEL_EXPERIMENT_UID: &str = "chaostoolkit.org/experiment-uid";
/// The runner container, as upstream names it (`kubectl logs -c chaostoolkit`).
pub const RUNNER: &str = "chaostoolkit";
/// The sidecar container.
pub const SIDECAR: &str = "chaosflow-sidecar";
/// Where runner and sidecar share the events file.
pub const SHARED_DIR: &str = "/var/run/chaosflow";
/// The events file the runner writes and the sidecar follows.
pub const EVENTS_PATH: &str = "/var/run/chaosflow/events.jsonl";
/// The runner's home and working directory, as in upstream's image (`svc`, uid 1001).
pub const HOME: &str = "/home/svc";
/// The working directory of a runner in the user's own image (`spec.pod.image`), whose home
/// may hold what the image was built for (upstream's images keep their virtualenv there).
pub const WORK_DIR: &str = "/home/svc/work";
/// Where a runner in the user's own image finds the chaosflow binary, copied there from the
/// operator's image by an init container (it is static: it runs in any Linux image).
pub const BIN_DIR: &str = "/var/run/chaosflow-bin";
/// The init container that copies it.
pub const INSTALLER: &str = "chaosflow-install";
/// The chaosflow binary in the operator's image.
const IMAGE_BINARY: &str = "/usr/local/bin/chaosflow";
/// The user runner pods run as (upstream's `svc`).
pub const RUN_AS: i64 = 1001;

/// What the objects need besides the resource.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// The operator's image (chaosflow's): the sidecar's, and the runner's when
    /// `spec.pod.image` is absent.
    pub image: String,
}

/// The names derived from an experiment, stable across restarts: upstream's suffix, the first
/// 5 bytes of BLAKE2b over the uid, in hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `<10 hex digits>`.
    pub suffix: String,
    /// Namespace of the run objects.
    pub namespace: String,
    /// The runner's ServiceAccount (the user's, or `chaostoolkit-<suffix>`).
    pub service_account: String,
    /// Whether the operator creates that ServiceAccount.
    pub own_service_account: bool,
    /// The runner's Role (the user's, or `chaostoolkit-experiment-<suffix>`).
    pub role: String,
    /// Whether the operator creates that Role.
    pub own_role: bool,
    /// Whether the operator creates RoleBindings (not when `role.bind` names one).
    pub own_binding: bool,
    /// The RoleBinding, `chaostoolkit-experiment-<suffix>`.
    pub binding: String,
    /// The CronJob or the first run's pod, `chaostoolkit-<suffix>`.
    pub runner: String,
    /// Extra namespaces the runner may act in.
    pub extra_namespaces: Vec<String>,
}

impl Names {
    /// Derives the names of `ctk`'s objects.
    pub fn of(ctk: &ChaosToolkitExperiment) -> Self {
        let suffix = suffix(ctk.uid().as_deref().unwrap_or_default());
        let spec = &ctk.spec;
        let user_sa = spec.serviceaccount.as_ref().and_then(|s| s.name.clone());
        let role = spec.role.clone().unwrap_or_default();
        let mut extra_namespaces: Vec<String> = role
            .binds_to_namespaces
            .iter()
            .flatten()
            .chain(spec.cluster_role_bind_namespaces.iter().flatten())
            .cloned()
            .collect();
        extra_namespaces.sort();
        extra_namespaces.dedup();
        let namespace = spec
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "chaostoolkit-run".into());
        extra_namespaces.retain(|n| *n != namespace);
        Names {
            namespace,
            own_service_account: user_sa.is_none(),
            service_account: user_sa.unwrap_or_else(|| format!("chaostoolkit-{suffix}")),
            own_role: role.name.is_none(),
            role: role
                .name
                .unwrap_or_else(|| format!("chaostoolkit-experiment-{suffix}")),
            own_binding: role.bind.is_none(),
            binding: format!("chaostoolkit-experiment-{suffix}"),
            runner: format!("chaostoolkit-{suffix}"),
            suffix,
            extra_namespaces,
        }
    }

    /// The pod of a rerun asked for with `token`: its own name, so that the finished pod's
    /// deletion and the new pod's creation cannot race.
    pub fn rerun_pod(&self, token: &str) -> String {
        format!("{}-{}", self.runner, &suffix(token)[..6])
    }
}

/// Upstream's naming suffix: BLAKE2b with a 5-byte digest, in hex.
pub fn suffix(input: &str) -> String {
    let mut hasher = Blake2bVar::new(5).expect("5 is a valid BLAKE2b output size");
    hasher.update(input.as_bytes());
    let mut out = [0u8; 5];
    hasher
        .finalize_variable(&mut out)
        .expect("the buffer has the output size");
    out.iter().map(|b| format!("{b:02x}")).collect()
}

/// The labels of every object made for `ctk` (selectors use them; see the `LABEL_*` consts).
pub fn labels(ctk: &ChaosToolkitExperiment) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".into(), "chaostoolkit".into()),
        ("app.kubernetes.io/name".into(), "chaostoolkit".into()),
        (LABEL_MANAGED_BY.into(), MANAGER.into()),
        (LABEL_EXPERIMENT.into(), label_value(&ctk.name_any())),
        (
            LABEL_EXPERIMENT_NAMESPACE.into(),
            ctk.namespace().unwrap_or_default(),
        ),
        (
            LABEL_EXPERIMENT_UID.into(),
            ctk.uid().unwrap_or_default().to_string(),
        ),
    ])
}

/// `text` as a label value: itself when it fits in 63 characters, else its start and a hash
/// of the whole (a resource name is a DNS subdomain, so what is left is a valid value).
pub fn label_value(text: &str) -> String {
    if text.len() <= 63 {
        return text.to_string();
    }
    let start = text[..52].trim_end_matches(['-', '.']);
    format!("{start}-{}", suffix(text))
}

/// A runner pod's annotations: the experiment's name when its label could not hold it.
fn pod_annotations(ctk: &ChaosToolkitExperiment) -> BTreeMap<String, String> {
    let name = ctk.name_any();
    let mut annotations = BTreeMap::new();
    if label_value(&name) != name {
        annotations.insert(ANNOTATION_EXPERIMENT.to_string(), name);
    }
    annotations
}

/// A runner pod's labels: upstream copies the experiment's labels onto it; the operator's own
/// win.
fn pod_labels(ctk: &ChaosToolkitExperiment) -> BTreeMap<String, String> {
    let mut labels = labels(ctk);
    for (key, value) in ctk.labels() {
        labels.entry(key.clone()).or_insert_with(|| value.clone());
    }
    labels
}

/// The label selector matching every object made for `ctk`.
pub fn selector(ctk: &ChaosToolkitExperiment) -> String {
    format!(
        "{LABEL_EXPERIMENT_UID}={}",
        ctk.uid().as_deref().unwrap_or_default()
    )
}

/// Metadata for an object named `name` in `namespace`. It is owned by the experiment only in
/// the experiment's own namespace: Kubernetes forbids owners in another namespace (the garbage
/// collector would treat the owner as gone and delete the object), so elsewhere the finalizer
/// cleans up by label.
fn metadata(ctk: &ChaosToolkitExperiment, name: &str, namespace: &str) -> Value {
    let mut meta = json!({"name": name, "namespace": namespace, "labels": labels(ctk)});
    if ctk.namespace().as_deref() == Some(namespace)
        && let Some(owner) = ctk.controller_owner_ref(&())
    {
        meta["ownerReferences"] = json!([owner]);
    }
    meta
}

/// The run namespace, as created when missing (an existing one is left as it is: it may be
/// the user's, and is never deleted).
pub fn namespace(name: &str) -> Namespace {
    typed(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {LABEL_MANAGED_BY: MANAGER}},
    }))
}

/// The runner's ServiceAccount.
pub fn service_account(ctk: &ChaosToolkitExperiment, names: &Names) -> ServiceAccount {
    typed(json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(ctk, &names.service_account, &names.namespace),
    }))
}

/// The runner's Role in `namespace`: what Chaos Toolkit's Kubernetes activities need (upstream's
/// rules, with `deployments` in `apps`).
pub fn role(ctk: &ChaosToolkitExperiment, names: &Names, namespace: &str) -> Role {
    let verbs = ["create", "get", "delete", "list"];
    typed(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(ctk, &names.role, namespace),
        "rules": [
            {"apiGroups": [""], "resources": ["pods", "services", "endpoints", "configmaps"], "verbs": verbs},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": verbs},
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": verbs},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
        ],
    }))
}

/// Binds the runner's Role in `namespace` to the service account the pod really uses.
pub fn role_binding(ctk: &ChaosToolkitExperiment, names: &Names, namespace: &str) -> RoleBinding {
    typed(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(ctk, &names.binding, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names.role},
        "subjects": [{"kind": "ServiceAccount", "name": names.service_account, "namespace": names.namespace}],
    }))
}

/// Input the operator cannot turn into a pod.
#[derive(Debug, thiserror::Error)]
#[error("spec.pod.template: {0}")]
pub struct BadTemplate(String);

/// The runner pod named `name`.
///
/// # Errors
///
/// `spec.pod.template` is not a Pod manifest.
pub fn pod(
    ctk: &ChaosToolkitExperiment,
    names: &Names,
    name: &str,
    defaults: &Defaults,
) -> Result<Pod, BadTemplate> {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(ctk, name, &names.namespace),
        "spec": pod_spec(ctk, names, defaults)?,
    });
    pod["metadata"]["labels"] = json!(pod_labels(ctk));
    pod["metadata"]["annotations"] = json!(pod_annotations(ctk));
    serde_json::from_value(pod).map_err(|e| BadTemplate(e.to_string()))
}

/// The CronJob of a scheduled experiment: one runner pod per tick, never two at once (an
/// experiment overlapping itself would disturb its own hypothesis), never retried (a rerun of
/// chaos is a decision, not a recovery).
///
/// # Errors
///
/// `spec.pod.template` is not a Pod manifest.
pub fn cron_job(
    ctk: &ChaosToolkitExperiment,
    names: &Names,
    defaults: &Defaults,
) -> Result<CronJob, BadTemplate> {
    let schedule = ctk
        .spec
        .schedule
        .as_ref()
        .and_then(|s| s.value.clone())
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "* * * * *".into());
    let pod_labels = pod_labels(ctk);
    let cron = json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(ctk, &names.runner, &names.namespace),
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "metadata": {"labels": pod_labels, "annotations": pod_annotations(ctk)},
                        "spec": pod_spec(ctk, names, defaults)?,
                    },
                },
            },
        },
    });
    serde_json::from_value(cron).map_err(|e| BadTemplate(e.to_string()))
}

/// The pod spec: upstream's template rendered with the spec's options, or the user's
/// `pod.template`, with the sidecar added either way.
fn pod_spec(
    ctk: &ChaosToolkitExperiment,
    names: &Names,
    defaults: &Defaults,
) -> Result<Value, BadTemplate> {
    let options = ctk.spec.pod.clone().unwrap_or_default();
    let image = options
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| defaults.image.clone());
    if let Some(template) = &options.template {
        return from_template(template, names, &defaults.image);
    }
    // The user's own image (upstream's resources name images with `chaos` and the extensions
    // their experiments use): chaosflow is copied in and runs there, so its Python bridge finds
    // those extensions; the image's home is left as built.
    let own_image = image != defaults.image;
    let settings = options.settings.clone().unwrap_or_default();
    let experiment = options.experiment.clone().unwrap_or_default();
    let as_file = experiment.as_file.unwrap_or(true);
    let file_name = experiment
        .config_map_experiment_file_name
        .clone()
        .unwrap_or_else(|| "experiment.json".into());
    let command_path = options.chaos_command_path.clone().filter(|c| !c.is_empty());
    let install = own_image && command_path.is_none();
    let command = command_path.unwrap_or_else(|| {
        if install {
            format!("{BIN_DIR}/chaosflow")
        } else {
            "chaosflow".into()
        }
    });
    let work_dir = if own_image { WORK_DIR } else { HOME };
    let mut args: Vec<String> = match &options.chaos_args {
        // Upstream drops null and empty entries (an empty argument crashed chaos).
        Some(args) => args
            .iter()
            .flatten()
            .filter(|a| !a.is_empty())
            .cloned()
            .collect(),
        None if as_file => vec!["run".into(), "$(EXPERIMENT_PATH)".into()],
        None => vec!["run".into(), "$(EXPERIMENT_URL)".into()],
    };
    if ctk.spec.verbose == Some(true) && command.contains("chaos") {
        args.insert(0, "--verbose".into());
    }

    let mut env = vec![
        json!({"name": "CHAOSTOOLKIT_IN_POD", "value": "true"}),
        json!({"name": "HOME", "value": HOME}),
    ];
    if as_file {
        env.push(json!({"name": "EXPERIMENT_PATH", "value": format!("{HOME}/{file_name}")}));
    }
    let mut env_from = Vec::new();
    match &options.env {
        Some(PodEnv::Pairs(pairs)) => {
            env.extend(
                pairs
                    .iter()
                    .map(|p| json!({"name": p.name, "value": p.value})),
            );
        }
        Some(PodEnv::Sources(sources)) => {
            if sources.enabled.unwrap_or(true) {
                let name = sources
                    .config_map_name
                    .clone()
                    .or_else(|| options.config_map_name.clone())
                    .unwrap_or_else(|| "chaostoolkit-env".into());
                env_from.push(json!({"configMapRef": {"name": name, "optional": true}}));
                if let Some(secret) = &sources.secret_name {
                    env_from.push(json!({"secretRef": {"name": secret}}));
                }
            }
        }
        None => {
            let name = options
                .config_map_name
                .clone()
                .unwrap_or_else(|| "chaostoolkit-env".into());
            env_from.push(json!({"configMapRef": {"name": name, "optional": true}}));
        }
    }
    env.extend(delivery_env());

    // Writable places on a read-only root: the working directory (the journal, the log, what
    // experiments write) and /tmp.
    let mut mounts = vec![
        json!({"name": "chaosflow", "mountPath": SHARED_DIR}),
        json!({"name": "home", "mountPath": work_dir}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    let mut volumes = vec![
        json!({"name": "chaosflow", "emptyDir": {}}),
        json!({"name": "home", "emptyDir": {}}),
        json!({"name": "tmp", "emptyDir": {}}),
    ];
    let mut init_containers = Vec::new();
    if install {
        mounts.push(json!({"name": "chaosflow-bin", "mountPath": BIN_DIR, "readOnly": true}));
        volumes.push(json!({"name": "chaosflow-bin", "emptyDir": {}}));
        init_containers.push(installer(&defaults.image));
    }
    if as_file {
        mounts.push(json!({
            "name": "chaostoolkit-experiment",
            "mountPath": format!("{HOME}/{file_name}"),
            "subPath": file_name,
            "readOnly": true,
        }));
        volumes.push(json!({
            "name": "chaostoolkit-experiment",
            "configMap": {"name": experiment.config_map_name.clone().unwrap_or_else(|| "chaostoolkit-experiment".into())},
        }));
    }
    let settings_mount = settings.enabled.unwrap_or(false).then(|| {
        volumes.push(json!({
            "name": "chaostoolkit-settings",
            "secret": {"secretName": settings.secret_name.clone().unwrap_or_else(|| "chaostoolkit-settings".into())},
        }));
        json!({"name": "chaostoolkit-settings", "mountPath": format!("{HOME}/.chaostoolkit"), "readOnly": true})
    });
    mounts.extend(settings_mount.clone());

    let mut runner = json!({
        "name": RUNNER,
        "image": image,
        "command": [command],
        "args": args,
        "workingDir": work_dir,
        "env": env,
        "volumeMounts": mounts,
        "securityContext": container_security(),
        // The runner is light; process providers may not be.
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
        // The outcome JSON; a runner that dies before writing it leaves its last log lines.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    if !env_from.is_empty() {
        runner["envFrom"] = json!(env_from);
    }
    // The sidecar is chaosflow's, whatever image the runner has.
    init_containers.push(sidecar(&defaults.image, settings_mount));
    Ok(json!({
        "restartPolicy": "Never",
        "serviceAccountName": names.service_account,
        "securityContext": pod_security(),
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "chaostoolkit"}},
        }],
        "initContainers": init_containers,
        "containers": [runner],
        "volumes": volumes,
    }))
}

/// What tells `chaosflow run` to leave delivery to the sidecar and report its outcome, through
/// the environment so that `chaosArgs` written for upstream keep working unchanged.
fn delivery_env() -> Vec<Value> {
    vec![
        json!({"name": "CHAOSFLOW_DELIVERY", "value": "sidecar"}),
        json!({"name": "CHAOSFLOW_EVENTS_PATH", "value": EVENTS_PATH}),
        json!({"name": "CHAOSFLOW_TERMINATION_LOG", "value": "/dev/termination-log"}),
    ]
}

/// Copies the chaosflow binary from the operator's image for a runner in the user's image.
fn installer(image: &str) -> Value {
    json!({
        "name": INSTALLER,
        "image": image,
        "command": ["cp", IMAGE_BINARY, format!("{BIN_DIR}/chaosflow")],
        "volumeMounts": [{"name": "chaosflow-bin", "mountPath": BIN_DIR}],
        "securityContext": container_security(),
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}},
    })
}

/// The native sidecar: started before the runner, stopped by the kubelet once the runner has
/// ended (it then reads the file to its end and drains), so the pod completes.
fn sidecar(image: &str, settings_mount: Option<Value>) -> Value {
    let mut mounts = vec![json!({"name": "chaosflow", "mountPath": SHARED_DIR})];
    mounts.extend(settings_mount);
    json!({
        "name": SIDECAR,
        "image": image,
        "restartPolicy": "Always",
        "command": ["chaosflow"],
        "args": ["sidecar", "--native-sidecar", "--events", EVENTS_PATH],
        "env": [{"name": "HOME", "value": HOME}],
        "volumeMounts": mounts,
        "securityContext": container_security(),
        // Measured: under 10 MiB with a full 1M-event backlog.
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
    })
}

fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

fn container_security() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

/// The user's whole Pod manifest (`spec.pod.template`, a YAML string, as upstream): its spec,
/// with the service account, the shared volume, the delivery environment on the runner (the
/// container named `chaostoolkit`, else the first) and the sidecar added.
fn from_template(template: &str, names: &Names, image: &str) -> Result<Value, BadTemplate> {
    let pod: Value = serde_saphyr::from_str(template).map_err(|e| {
        BadTemplate(format!(
            "not YAML: {e}. It must be a Pod manifest as a string (`template: |`)."
        ))
    })?;
    let Some(mut spec) = pod.get("spec").filter(|s| s.is_object()).cloned() else {
        return Err(BadTemplate(
            "no `spec` object: it must be a whole Pod manifest (apiVersion, kind, metadata, spec)."
                .into(),
        ));
    };
    let settings = {
        let Some(containers) = spec["containers"].as_array_mut().filter(|c| !c.is_empty()) else {
            return Err(BadTemplate("spec.containers is missing or empty.".into()));
        };
        let at = containers
            .iter()
            .position(|c| c["name"] == RUNNER)
            .unwrap_or(0);
        let runner = &mut containers[at];
        let env = runner["env"].as_array().cloned().unwrap_or_default();
        runner["env"] = json!([env, delivery_env()].concat());
        let mounts = runner["volumeMounts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // The sidecar reads the settings where the template mounts them for the runner.
        let settings = mounts
            .iter()
            .find(|m| {
                m["mountPath"]
                    .as_str()
                    .is_some_and(|p| p.contains(".chaostoolkit"))
            })
            .cloned();
        runner["volumeMounts"] = json!(
            [
                mounts,
                vec![json!({"name": "chaosflow", "mountPath": SHARED_DIR})]
            ]
            .concat()
        );
        settings
    };
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    spec["volumes"] = json!([volumes, vec![json!({"name": "chaosflow", "emptyDir": {}})]].concat());
    let inits = spec["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !inits.iter().any(|c| c["name"] == SIDECAR) {
        spec["initContainers"] = json!([inits, vec![sidecar(image, settings)]].concat());
    }
    spec["serviceAccountName"] = json!(names.service_account);
    spec["restartPolicy"] = json!("Never");
    Ok(spec)
}

/// Converts an object written as JSON into its type; the shapes above are fixed, so a failure
/// is a bug caught by the unit tests.
fn typed<K: serde::de::DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("the operator's own manifests are well-formed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::ChaosToolkitExperimentSpec;

    fn ctk(spec: &str) -> ChaosToolkitExperiment {
        let spec: ChaosToolkitExperimentSpec = serde_saphyr::from_str(spec).unwrap();
        let mut ctk = ChaosToolkitExperiment::new("hello", spec);
        ctk.metadata.namespace = Some("chaostoolkit-crd".into());
        ctk.metadata.uid = Some("6a3f1c2e-0000-4000-8000-000000000001".into());
        ctk.metadata.labels = Some(BTreeMap::from([("team".into(), "sre".into())]));
        ctk
    }

    fn defaults() -> Defaults {
        Defaults {
            image: "ghcr.io/chaosflow/chaosflow:test".into(),
        }
    }

    fn pod_json(ctk: &ChaosToolkitExperiment) -> Value {
        let names = Names::of(ctk);
        serde_json::to_value(pod(ctk, &names, &names.runner, &defaults()).unwrap()).unwrap()
    }

    #[test]
    fn the_suffix_is_upstreams() {
        // hashlib.blake2b(b"6a3f1c2e-0000-4000-8000-000000000001", digest_size=5).hexdigest()
        assert_eq!(suffix("6a3f1c2e-0000-4000-8000-000000000001"), "900088e37b");
        let names = Names::of(&ctk("{}"));
        assert_eq!(names.runner, "chaostoolkit-900088e37b");
        assert_eq!(names.service_account, "chaostoolkit-900088e37b");
        assert_eq!(names.role, "chaostoolkit-experiment-900088e37b");
        assert_eq!(names.namespace, "chaostoolkit-run");
    }

    #[test]
    fn the_default_pod_runs_chaosflow_with_a_native_sidecar_and_secure_defaults() {
        let pod = pod_json(&ctk("pod:\n  settings:\n    enabled: true\n"));
        let spec = &pod["spec"];
        assert_eq!(pod["metadata"]["namespace"], "chaostoolkit-run");
        // Cross-namespace owners are forbidden: the finalizer cleans up instead.
        assert!(pod["metadata"].get("ownerReferences").is_none());
        assert_eq!(pod["metadata"]["labels"]["team"], "sre");
        assert_eq!(pod["metadata"]["labels"][LABEL_MANAGED_BY], MANAGER);
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["serviceAccountName"], "chaostoolkit-900088e37b");
        let runner = &spec["containers"][0];
        assert_eq!(runner["name"], RUNNER);
        assert_eq!(runner["command"], json!(["chaosflow"]));
        assert_eq!(runner["args"], json!(["run", "$(EXPERIMENT_PATH)"]));
        let env = &runner["env"];
        assert!(
            env.as_array().unwrap().contains(
                &json!({"name": "EXPERIMENT_PATH", "value": "/home/svc/experiment.json"})
            )
        );
        assert!(
            env.as_array()
                .unwrap()
                .contains(&json!({"name": "CHAOSFLOW_DELIVERY", "value": "sidecar"}))
        );
        assert_eq!(
            runner["envFrom"],
            json!([{"configMapRef": {"name": "chaostoolkit-env", "optional": true}}])
        );
        let sidecar = &spec["initContainers"][0];
        assert_eq!(sidecar["name"], SIDECAR);
        assert_eq!(sidecar["restartPolicy"], "Always");
        for c in [runner, sidecar] {
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true);
            assert_eq!(sc["allowPrivilegeEscalation"], false);
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
            assert!(c["resources"]["limits"]["memory"].is_string());
            // Both read the settings where Chaos Toolkit expects them.
            assert!(
                c["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["mountPath"] == "/home/svc/.chaostoolkit" && m["readOnly"] == true)
            );
        }
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            spec["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let mounts = runner["volumeMounts"].as_array().unwrap();
        assert!(mounts.contains(&json!({"name": "chaostoolkit-experiment", "mountPath": "/home/svc/experiment.json", "subPath": "experiment.json", "readOnly": true})));
    }

    #[test]
    fn upstream_options_keep_their_meaning() {
        let pod = pod_json(&ctk(
            "verbose: true\nnamespace: chaostoolkit-crd\nserviceaccount:\n  name: mine\npod:\n  image: custom:1\n  chaosCommandPath: /usr/local/bin/chaosflow\n  chaosArgs: [run, null, '', --journal-path, /var/run/chaosflow/journal.json, '$(EXPERIMENT_PATH)']\n  env:\n    configMapName: my-env\n    secretName: my-secret\n  experiment:\n    configMapName: exp\n    configMapExperimentFileName: experiment.yaml\n",
        ));
        let runner = &pod["spec"]["containers"][0];
        assert_eq!(runner["image"], "custom:1");
        assert_eq!(runner["command"], json!(["/usr/local/bin/chaosflow"]));
        assert_eq!(
            runner["args"],
            json!([
                "--verbose",
                "run",
                "--journal-path",
                "/var/run/chaosflow/journal.json",
                "$(EXPERIMENT_PATH)"
            ])
        );
        // Upstream rewrote this to `my-env-<suffix>`, a ConfigMap that never existed.
        assert_eq!(
            runner["envFrom"],
            json!([{"configMapRef": {"name": "my-env", "optional": true}}, {"secretRef": {"name": "my-secret"}}])
        );
        assert_eq!(pod["spec"]["serviceAccountName"], "mine");
        // Settings are off by default, as upstream.
        assert!(!pod.to_string().contains(".chaostoolkit"));
        assert!(
            pod["spec"]["volumes"].as_array().unwrap().contains(
                &json!({"name": "chaostoolkit-experiment", "configMap": {"name": "exp"}})
            )
        );
        // Same namespace as the experiment: owned, so deleting it collects the pod.
        assert_eq!(pod["metadata"]["ownerReferences"][0]["name"], "hello");
    }

    #[test]
    fn long_names_fit_in_labels() {
        assert_eq!(label_value("hello-world"), "hello-world");
        let long = "a".repeat(70);
        let value = label_value(&long);
        assert_eq!(value, format!("{}-{}", "a".repeat(52), suffix(&long)));
        assert_eq!(value.len(), 63);
        // Never ends its start with a separator.
        let dotted = format!("{}.{}", "a".repeat(51), "b".repeat(20));
        assert_eq!(
            label_value(&dotted),
            format!("{}-{}", "a".repeat(51), suffix(&dotted))
        );
    }

    /// Upstream's custom-image example: an image with `chaos` and extensions, no chaosflow.
    #[test]
    fn a_runner_in_the_users_image_gets_chaosflow_copied_in() {
        let pod = pod_json(&ctk(
            "pod:\n  image: chaostoolkit/chaostoolkit:full\n  configMapName: my-env\n  settings:\n    enabled: true\n",
        ));
        let spec = &pod["spec"];
        let runner = &spec["containers"][0];
        assert_eq!(runner["image"], "chaostoolkit/chaostoolkit:full");
        assert_eq!(runner["command"], json!([format!("{BIN_DIR}/chaosflow")]));
        // The image's home (its virtualenv) stays visible; the run writes in an emptyDir.
        assert_eq!(runner["workingDir"], WORK_DIR);
        let mounts = runner["volumeMounts"].as_array().unwrap();
        assert!(!mounts.iter().any(|m| m["mountPath"] == HOME), "{mounts:?}");
        assert!(
            mounts.contains(
                &json!({"name": "chaosflow-bin", "mountPath": BIN_DIR, "readOnly": true})
            )
        );
        assert!(
            mounts
                .iter()
                .any(|m| m["mountPath"] == "/home/svc/.chaostoolkit")
        );
        assert_eq!(runner["securityContext"]["readOnlyRootFilesystem"], true);
        // Where upstream's documentation put the env ConfigMap.
        assert_eq!(
            runner["envFrom"],
            json!([{"configMapRef": {"name": "my-env", "optional": true}}])
        );
        let inits = spec["initContainers"].as_array().unwrap();
        let names: Vec<&str> = inits.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [INSTALLER, SIDECAR],
            "the binary is there before the runner"
        );
        for init in inits {
            assert_eq!(init["image"], defaults().image, "{init}");
        }
        assert_eq!(
            inits[0]["command"],
            json!([
                "cp",
                "/usr/local/bin/chaosflow",
                format!("{BIN_DIR}/chaosflow")
            ])
        );
        assert_valid_pod_volumes(spec);
    }

    /// Every mount names a volume of the pod.
    fn assert_valid_pod_volumes(spec: &Value) {
        let volumes: Vec<&str> = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        let containers = [&spec["containers"], &spec["initContainers"]];
        for container in containers.iter().flat_map(|c| c.as_array().unwrap()) {
            for mount in container["volumeMounts"].as_array().unwrap() {
                let name = mount["name"].as_str().unwrap();
                assert!(
                    volumes.contains(&name),
                    "{name} is not a volume: {volumes:?}"
                );
            }
        }
    }

    #[test]
    fn the_demos_env_list_and_urls_work() {
        let pod = pod_json(&ctk(
            "pod:\n  env:\n    - name: NAMESPACE\n      value: sock-shop\n  experiment:\n    asFile: false\n",
        ));
        let runner = &pod["spec"]["containers"][0];
        assert_eq!(runner["args"], json!(["run", "$(EXPERIMENT_URL)"]));
        assert!(
            runner["env"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "NAMESPACE", "value": "sock-shop"}))
        );
        assert!(runner.get("envFrom").is_none());
        assert!(!pod.to_string().contains("EXPERIMENT_PATH\""));
    }

    #[test]
    fn bindings_bind_the_service_account_the_pod_uses() {
        let ctk = ctk(
            "serviceaccount:\n  name: mine\nrole:\n  binds_to_namespaces: [sock-shop]\nclusterRoleBindNamespaces: [sock-shop, other]\n",
        );
        let names = Names::of(&ctk);
        assert!(!names.own_service_account);
        assert_eq!(names.extra_namespaces, ["other", "sock-shop"]);
        let binding = serde_json::to_value(role_binding(&ctk, &names, "sock-shop")).unwrap();
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "mine", "namespace": "chaostoolkit-run"}])
        );
        let role = serde_json::to_value(role(&ctk, &names, "sock-shop")).unwrap();
        assert_eq!(role["rules"][1]["apiGroups"], json!(["apps"]));
    }

    #[test]
    fn a_template_gets_the_sidecar_and_a_bad_one_is_named() {
        let ctk1 = ctk(
            "pod:\n  template: |\n    apiVersion: v1\n    kind: Pod\n    metadata:\n      name: x\n    spec:\n      containers:\n        - name: chaostoolkit\n          image: mine:1\n          volumeMounts:\n            - name: settings\n              mountPath: /home/svc/.chaostoolkit\n      volumes:\n        - name: settings\n          secret:\n            secretName: s\n",
        );
        let pod = pod_json(&ctk1);
        let spec = &pod["spec"];
        assert_eq!(spec["containers"][0]["image"], "mine:1");
        assert_eq!(spec["initContainers"][0]["name"], SIDECAR);
        assert_eq!(
            spec["initContainers"][0]["volumeMounts"][1]["mountPath"],
            "/home/svc/.chaostoolkit"
        );
        assert_eq!(spec["serviceAccountName"], "chaostoolkit-900088e37b");
        let bad = ctk("pod:\n  template: 'just words'\n");
        let names = Names::of(&bad);
        let err = super::pod(&bad, &names, "p", &defaults())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("spec.pod.template: no `spec` object"),
            "{err}"
        );
    }

    #[test]
    fn a_schedule_becomes_a_cron_job_that_never_overlaps() {
        let ctk = ctk("schedule:\n  kind: cronjob\n  value: '*/5 * * * *'\n");
        let names = Names::of(&ctk);
        let cron = serde_json::to_value(cron_job(&ctk, &names, &defaults()).unwrap()).unwrap();
        assert_eq!(cron["spec"]["schedule"], "*/5 * * * *");
        assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
        let template = &cron["spec"]["jobTemplate"]["spec"]["template"];
        assert_eq!(
            template["metadata"]["labels"][LABEL_EXPERIMENT_UID],
            "6a3f1c2e-0000-4000-8000-000000000001"
        );
        assert_eq!(template["spec"]["initContainers"][0]["name"], SIDECAR);
    }
}
