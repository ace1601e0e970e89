//! The `ChaosToolkitExperiment` custom resource (`chaosexperiments.chaostoolkit.org`, `v1`).
//!
//! Every spec field of the upstream operator (chaostoolkit-incubator/kubernetes-crd) keeps its
//! name and meaning, so resources written for it apply unchanged, including its snake_case keys
//! (`role.binds_to_namespaces`, `keep_resources_on_delete`) and the demo fork's
//! `clusterRoleBindNamespaces`. Where upstream validated nothing, the schema checks what it can
//! (types, the schedule kind, the cron syntax) and stays open where resources in the wild are
//! free-form: unknown keys are kept, `pod.env` may be upstream's object or the demo's list of
//! name/value pairs, and `pod.template` is a Pod manifest as a YAML string.
//!
//! The status subresource carries what upstream never wrote: phase, verdict, times, the runner
//! pod, a summary of the journal, and for schedules the last runs; printer columns show them.
//!
//! The operator reads resources as [`ChaosToolkitExperiment`], not as kube-derive's root type
//! ([`ChaosToolkitExperimentSchema`], which only gives the CRD): resources stored under
//! upstream's CRD, which validated nothing, may have no `spec` or one that does not fit the
//! types, and one such resource must not fail the list of every experiment. Its spec reads as
//! the defaults (upstream's reading of a missing spec) or, when it does not fit, is reported on
//! that resource alone.

use std::borrow::Cow;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::NamespaceResourceScope;
use kube::{CustomResource, Resource};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// What a `ChaosToolkitExperiment` asks for. All fields are optional, with upstream's defaults.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "chaostoolkit.org",
    version = "v1",
    kind = "ChaosToolkitExperiment",
    root = "ChaosToolkitExperimentSchema",
    plural = "chaosexperiments",
    singular = "chaosexperiment",
    shortname = "ctk",
    shortname = "ctks",
    namespaced,
    status = "ChaosToolkitExperimentStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Verdict","type":"string","jsonPath":".status.verdict"}"#,
    printcolumn = r#"{"name":"Last run","type":"date","jsonPath":".status.endTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ChaosToolkitExperimentSpec {
    /// Namespace of the run objects (pod, service account, role), created if missing
    /// [chaostoolkit-run].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Upstream's resource templates ConfigMap (accepted; chaosflow renders its own objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<NameRef>,
    /// Run the experiment with `--verbose`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbose: Option<bool>,
    /// An existing ServiceAccount for the runner; none is created then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serviceaccount: Option<NameRef>,
    /// The runner's Role and its bindings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleOptions>,
    /// The runner pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOptions>,
    /// Run on a schedule (a CronJob) instead of once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Keep the run objects when the experiment is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_resources_on_delete: Option<bool>,
    /// The demo fork's name for extra namespaces the runner may act in (as
    /// `role.binds_to_namespaces`).
    #[serde(
        default,
        rename = "clusterRoleBindNamespaces",
        skip_serializing_if = "Option::is_none"
    )]
    pub cluster_role_bind_namespaces: Option<Vec<String>>,
}

/// A reference by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NameRef {
    /// The object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `spec.role`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoleOptions {
    /// An existing Role to bind instead of creating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An existing RoleBinding: no binding is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// Namespaces where the runner gets the same Role, bound to its service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binds_to_namespaces: Option<Vec<String>>,
}

/// `spec.pod`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOptions {
    /// The runner image [the operator's own].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Environment from a ConfigMap and a Secret (upstream's object), or a list of `{name,
    /// value}` pairs (the demo's form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub env: Option<PodEnv>,
    /// The settings Secret, mounted at `/home/svc/.chaostoolkit/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<SettingsOptions>,
    /// Where the experiment comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentOptions>,
    /// Arguments replacing the runner's (`$(VAR)` expands pod environment variables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos_args: Option<Vec<Option<String>>>,
    /// The runner command replacing `chaos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos_command_path: Option<String>,
    /// A whole Pod manifest, as a YAML string; the other pod options are then ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The env ConfigMap, where upstream's documentation put it (upstream's operator read only
    /// `env.configMapName`, which wins when both are set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
}

/// `spec.pod.env`, in either of its forms (its schema accepts any value: structural schemas
/// cannot say "an object or a list").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PodEnv {
    /// Upstream: `{enabled, configMapName, secretName}`.
    Sources(EnvSources),
    /// The demo: `[{name, value}]`.
    Pairs(Vec<EnvPair>),
}

/// Upstream's `spec.pod.env`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvSources {
    /// Whether the env ConfigMap is used [true].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The env ConfigMap [chaostoolkit-env].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
    /// A Secret whose keys become environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// One environment variable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvPair {
    /// Its name.
    pub name: String,
    /// Its value.
    #[serde(default)]
    pub value: String,
}

/// `spec.pod.settings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsOptions {
    /// Whether the settings Secret is mounted [false].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The Secret holding `settings.yaml` [chaostoolkit-settings].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// `spec.pod.experiment`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentOptions {
    /// Mount the experiment from a ConfigMap [true]; false runs `$(EXPERIMENT_URL)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_file: Option<bool>,
    /// The experiment ConfigMap [chaostoolkit-experiment].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
    /// The key (and file name) of the experiment in it [experiment.json].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_experiment_file_name: Option<String>,
}

/// `spec.schedule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Schedule {
    /// `cronjob` (any case), the only kind.
    #[schemars(regex(pattern = r"^[Cc][Rr][Oo][Nn][Jj][Oo][Bb]$"))]
    pub kind: String,
    /// A cron schedule, as a CronJob takes it [`* * * * *`, also when empty].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(\s*|@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+(\s+\S+){4})$"
    ))]
    pub value: Option<String>,
}

/// What the operator reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChaosToolkitExperimentStatus {
    /// Where the experiment is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// How the last run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// When the last run started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the last run ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// The last runner pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The last run's journal, summed up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<RunSummary>,
    /// Scheduled experiments: the most recent runs, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_runs: Vec<RunRecord>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Why the experiment is where it is, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `chaostoolkit.org/rerun` annotation the current run answers (a finished one-shot
    /// experiment runs again when the annotation changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun: Option<String>,
}

/// `status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Accepted; the runner is not running yet.
    Pending,
    /// The runner runs.
    Running,
    /// The run completed without deviating.
    Succeeded,
    /// The run failed, deviated, was aborted or interrupted, or could not start.
    Failed,
}

/// `status.verdict`: the journal's status, with `deviated` when the steady state deviated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Completed, steady state held.
    Completed,
    /// An activity or the hypothesis failed.
    Failed,
    /// The steady state deviated.
    Deviated,
    /// Aborted.
    Aborted,
    /// Interrupted (a signal).
    Interrupted,
}

/// `status.summary`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Activities run (method and rollbacks).
    pub activities: u32,
    /// Of which failed.
    pub failed: u32,
    /// The steady state before the method held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypothesis_before: Option<bool>,
    /// The steady state after the method held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypothesis_after: Option<bool>,
}

/// One run of a scheduled experiment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The runner pod.
    pub pod_name: String,
    /// How it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// When it ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
}

/// A schema that accepts any value and keeps it whole (for fields written in several shapes).
fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// A `ChaosToolkitExperiment` as the operator reads it (see the module header): the resource,
/// with `invalid_spec` set instead of failing when its stored spec does not fit the types.
#[derive(Debug, Clone)]
pub struct ChaosToolkitExperiment {
    /// The resource's metadata.
    pub metadata: ObjectMeta,
    /// Its spec; the defaults when it has none, or when it is invalid.
    pub spec: ChaosToolkitExperimentSpec,
    /// Its status, as the operator wrote it (an unreadable one counts as none).
    pub status: Option<ChaosToolkitExperimentStatus>,
    /// Why the stored spec cannot be read (`spec.verbose: invalid type...`); the reconcile
    /// reports it on the resource and runs nothing.
    pub invalid_spec: Option<String>,
}

impl ChaosToolkitExperiment {
    /// A resource named `name` with `spec` (tests, examples).
    pub fn new(name: &str, spec: ChaosToolkitExperimentSpec) -> Self {
        Self {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
            invalid_spec: None,
        }
    }

    /// The CRD, as `chaosflow crd` prints it: kube-derive's, with `spec` optional and defaulted
    /// to `{}` (upstream's CRD required none, and an API server fills the default in when it
    /// reads a resource stored without one, so clients always see a spec).
    pub fn crd() -> CustomResourceDefinition {
        use kube::CustomResourceExt;
        let mut crd = ChaosToolkitExperimentSchema::crd();
        for version in &mut crd.spec.versions {
            let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            else {
                continue;
            };
            schema.title = Some(ChaosToolkitExperimentSchema::kind(&()).into_owned());
            if let Some(required) = schema.required.as_mut() {
                required.retain(|field| field != "spec");
            }
            if schema.required.as_ref().is_some_and(Vec::is_empty) {
                schema.required = None;
            }
            if let Some(spec) = schema.properties.as_mut().and_then(|p| p.get_mut("spec")) {
                spec.default = Some(
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                        serde_json::json!({}),
                    ),
                );
            }
        }
        crd
    }
}

impl Resource for ChaosToolkitExperiment {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        ChaosToolkitExperimentSchema::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        ChaosToolkitExperimentSchema::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        ChaosToolkitExperimentSchema::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        ChaosToolkitExperimentSchema::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<'de> Deserialize<'de> for ChaosToolkitExperiment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Stored {
            #[serde(default)]
            metadata: ObjectMeta,
            #[serde(default)]
            spec: Value,
            #[serde(default)]
            status: Value,
        }
        let stored = Stored::deserialize(deserializer)?;
        let (spec, invalid_spec) = match stored.spec {
            Value::Null => (ChaosToolkitExperimentSpec::default(), None),
            spec => match serde_path_to_error::deserialize(spec) {
                Ok(spec) => (spec, None),
                Err(e) => {
                    let place = match e.path().to_string() {
                        p if p == "." => "spec".to_string(),
                        p => format!("spec.{p}"),
                    };
                    let problem = format!(
                        "{place}: {}. Fix the resource (`kubectl edit`); the CRD's schema \
                         (deploy/base/crd.yaml) says what each field takes.",
                        e.inner()
                    );
                    (ChaosToolkitExperimentSpec::default(), Some(problem))
                }
            },
        };
        Ok(Self {
            metadata: stored.metadata,
            spec,
            // The operator's own record; anything else in its place is overwritten.
            status: serde_json::from_value(stored.status).ok().flatten(),
            invalid_spec,
        })
    }
}

impl Serialize for ChaosToolkitExperiment {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut object = serializer.serialize_struct("ChaosToolkitExperiment", 5)?;
        object.serialize_field("apiVersion", &Self::api_version(&()))?;
        object.serialize_field("kind", &Self::kind(&()))?;
        object.serialize_field("metadata", &self.metadata)?;
        object.serialize_field("spec", &self.spec)?;
        if let Some(status) = &self.status {
            object.serialize_field("status", status)?;
        }
        object.end()
    }
}

/// The CRD as YAML, as `chaosflow crd` prints it and `deploy/base/crd.yaml` holds it.
///
/// # Panics
///
/// Never: the CRD is plain data.
pub fn crd_yaml() -> String {
    serde_saphyr::to_string(&ChaosToolkitExperiment::crd()).expect("the CRD serializes")
}

/// `ctk` without what a cluster attaches to every object and the operator never reads, for the
/// controller's cache: managed fields, and the copies of the spec that `kubectl apply` and the
/// upstream (kopf) operator keep in annotations (kopf's key stays: it marks a resource the
/// upstream operator ran). On a real cluster these are most of an experiment's size.
pub fn slim(ctk: &mut ChaosToolkitExperiment) {
    use kube::ResourceExt;
    ctk.managed_fields_mut().clear();
    let annotations = ctk.annotations_mut();
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    if let Some(kopf) = annotations.get_mut(super::reconcile::KOPF_HANDLED) {
        kopf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slim_keeps_what_reconciles_read() {
        let mut ctk: ChaosToolkitExperiment = serde_json::from_value(serde_json::json!({
            "apiVersion": "chaostoolkit.org/v1", "kind": "ChaosToolkitExperiment",
            "metadata": {"name": "e", "namespace": "n", "uid": "u", "resourceVersion": "7",
                "finalizers": ["chaostoolkit.org/cleanup"],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}",
                    "kopf.zalando.org/last-handled-configuration": "{...}",
                    "chaostoolkit.org/rerun": "1"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"namespace": "run"},
            "status": {"phase": "Running"},
        }))
        .unwrap();
        let whole = ctk.clone();
        slim(&mut ctk);
        assert_eq!(ctk.spec, whole.spec);
        assert_eq!(ctk.status, whole.status);
        assert!(ctk.metadata.managed_fields.is_none_or(|m| m.is_empty()));
        let annotations = ctk.metadata.annotations.unwrap();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            [
                "chaostoolkit.org/rerun",
                "kopf.zalando.org/last-handled-configuration"
            ]
        );
        assert_eq!(annotations["chaostoolkit.org/rerun"], "1");
        assert_eq!(ctk.metadata.finalizers, whole.metadata.finalizers);
        assert_eq!(
            ctk.metadata.resource_version,
            whole.metadata.resource_version
        );
    }

    fn spec(yaml: &str) -> ChaosToolkitExperimentSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn upstream_and_demo_resources_read_unchanged() {
        let upstream = spec(
            "namespace: chaostoolkit-run\nverbose: true\nrole:\n  binds_to_namespaces: [sock-shop]\npod:\n  image: chaosflow:latest\n  env:\n    configMapName: my-env\n    secretName: my-secret\n  settings:\n    enabled: true\n  experiment:\n    configMapExperimentFileName: experiment.yaml\n  chaosArgs: [run, --var, 'a=b', '$(EXPERIMENT_PATH)']\nschedule:\n  kind: cronJob\n  value: '*/5 * * * *'\nkeep_resources_on_delete: true\n",
        );
        assert_eq!(upstream.namespace.as_deref(), Some("chaostoolkit-run"));
        let pod = upstream.pod.unwrap();
        assert_eq!(
            pod.env,
            Some(PodEnv::Sources(EnvSources {
                enabled: None,
                config_map_name: Some("my-env".into()),
                secret_name: Some("my-secret".into()),
            }))
        );
        assert_eq!(pod.chaos_args.unwrap().len(), 4);
        assert_eq!(
            upstream.schedule.unwrap().value.as_deref(),
            Some("*/5 * * * *")
        );
        assert_eq!(upstream.keep_resources_on_delete, Some(true));
        let demo = spec(
            "namespace: chaostoolkit-run\nclusterRoleBindNamespaces: [sock-shop]\npod:\n  image: tgpski/chaostoolkit:latest\n  env:\n    - name: NAMESPACE\n      value: sock-shop\n",
        );
        assert_eq!(
            demo.pod.unwrap().env,
            Some(PodEnv::Pairs(vec![EnvPair {
                name: "NAMESPACE".into(),
                value: "sock-shop".into()
            }]))
        );
        assert_eq!(demo.cluster_role_bind_namespaces.unwrap(), ["sock-shop"]);
    }

    /// Resources stored under upstream's CRD, which validated nothing, are read one by one: no
    /// spec means the defaults, a spec that does not fit is named on that resource alone.
    #[test]
    fn stored_resources_without_or_with_a_bad_spec_are_read() {
        let read = |object: serde_json::Value| -> ChaosToolkitExperiment {
            serde_json::from_value(object).unwrap()
        };
        let bare = read(serde_json::json!({"apiVersion": "chaostoolkit.org/v1",
            "kind": "ChaosToolkitExperiment", "metadata": {"name": "basic-env-vars"}}));
        assert_eq!(bare.spec, ChaosToolkitExperimentSpec::default());
        assert!(bare.invalid_spec.is_none());
        let bad = read(serde_json::json!({"metadata": {"name": "b"},
            "spec": {"pod": {"settings": {"enabled": "yes"}}}, "status": {"phase": "Exploded"}}));
        let problem = bad.invalid_spec.unwrap();
        assert!(
            problem.starts_with(
                "spec.pod.settings.enabled: invalid type: string \"yes\", expected a boolean"
            ),
            "{problem}"
        );
        assert!(bad.status.is_none(), "not the operator's status");
        // Written back as the API expects it.
        let written = serde_json::to_value(&bare).unwrap();
        assert_eq!(written["apiVersion"], "chaostoolkit.org/v1");
        assert_eq!(written["kind"], "ChaosToolkitExperiment");
        assert_eq!(written["spec"], serde_json::json!({}));
    }

    #[test]
    fn the_crd_has_the_upstream_names_a_status_and_columns() {
        let crd = ChaosToolkitExperiment::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("chaosexperiments.chaostoolkit.org")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, "ChaosToolkitExperiment");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["ctk".to_string(), "ctks".to_string()][..])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1");
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<&str> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Phase", "Verdict", "Last run", "Age"]);
        // No spec is a valid resource (upstream's `basic-env-vars` example has none): the API
        // server fills in `{}`.
        let schema = version.schema.as_ref().unwrap();
        let schema = schema.open_api_v3_schema.as_ref().unwrap();
        assert!(schema.required.is_none(), "{:?}", schema.required);
        let spec = &schema.properties.as_ref().unwrap()["spec"];
        assert_eq!(spec.default.as_ref().unwrap().0, serde_json::json!({}));
        assert_eq!(schema.title.as_deref(), Some("ChaosToolkitExperiment"));
        let yaml = crd_yaml();
        assert!(
            yaml.contains("x-kubernetes-preserve-unknown-fields: true"),
            "{yaml}"
        );
        assert!(yaml.contains("^[Cc][Rr][Oo][Nn][Jj][Oo][Bb]$"), "{yaml}");
    }
}
