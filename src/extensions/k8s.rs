//! chaostoolkit-kubernetes' pod functions, natively over kube-rs: the action
//! `chaosk8s.pod.actions.terminate_pods` and the probes `chaosk8s.pod.probes.pods_in_phase`,
//! `pods_not_in_phase` and `count_pods`, with the Python functions' arguments, defaults,
//! outputs (the deleted pod names; a boolean; a count) and failure messages.
//!
//! Arguments mean what they mean to the Python functions (chaostoolkit-kubernetes 0.39): an
//! explicit `null` is Python's `None` and replaces the default (`mode: null` is an invalid
//! mode, `phase: null` matches pods without a phase), a falsy value (`false`, `0`, `""`)
//! selects what `None` selects wherever the Python tests truthiness, and a value of the wrong
//! type fails with the `TypeError` or pydantic `ValidationError` the Python function raises.
//! The functions take `secrets` (a `secrets` argument is what they get when the provider
//! declares none) but not `configuration`.
//!
//! The cluster is found as chaostoolkit-kubernetes' `create_k8s_api_client` finds it, each
//! setting read from the function's secrets where chaosk8s reads them there, then from the
//! `.env` var files' variables (chaos exports them into its environment), then from the
//! process environment:
//! 1. the kubeconfig at `KUBECONFIG` (else `~/.kube/config`) when that file exists, with the
//!    context `KUBERNETES_CONTEXT` names, else its current one;
//! 2. else, when `CHAOSTOOLKIT_IN_POD` is `true` (in the environment only: chaosk8s does not
//!    look for it in secrets), the pod's service account; the operator's runner pods set it
//!    and mount no kubeconfig;
//! 3. else `KUBERNETES_HOST` (default `http://localhost`), with `KUBERNETES_API_KEY` sent as
//!    `Authorization: <KUBERNETES_API_KEY_PREFIX, default Bearer> <key>`, or else the client
//!    certificate `KUBERNETES_CERT_FILE` (`KUBERNETES_KEY_FILE`); the server's certificate is
//!    only checked (against `KUBERNETES_CA_CERT_FILE`, or the usual roots) when
//!    `KUBERNETES_VERIFY_SSL` is set to anything but a `false` secret.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::{Map, Value, json};

use super::Call;
use crate::journal::ACTIVITY_FAILED_PREFIX;
use crate::python;

const ACTIONS: &str = "chaosk8s.pod.actions";
const PROBES: &str = "chaosk8s.pod.probes";

/// Whether `module.func` is one of this module's.
pub fn handles(module: &str, func: &str) -> bool {
    matches!(
        (module, func),
        (ACTIONS, "terminate_pods")
            | (PROBES, "pods_in_phase" | "pods_not_in_phase" | "count_pods")
    )
}

/// The function's parameters (besides `secrets`) and the required ones, as in
/// chaostoolkit-kubernetes; `None` for a function of another module.
pub fn signature(func: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    Some(match func {
        "terminate_pods" => (
            &[
                "label_selector",
                "name_pattern",
                "all",
                "rand",
                "mode",
                "qty",
                "grace_period",
                "ns",
                "order",
            ],
            &[],
        ),
        "pods_in_phase" => (
            &["label_selector", "phase", "ns", "raise_on_invalid_phase"],
            &["label_selector"],
        ),
        "pods_not_in_phase" => (
            &["label_selector", "phase", "ns", "raise_on_in_phase"],
            &["label_selector"],
        ),
        "count_pods" => (&["label_selector", "phase", "ns"], &["label_selector"]),
        _ => return None,
    })
}

/// What chaos passes the functions itself, besides their [`signature`]: they all take
/// `secrets`, none takes `configuration` (which is then an unexpected argument).
pub const PASSED_BY_CHAOS: &[&str] = &["secrets"];

/// Runs the function.
///
/// # Errors
///
/// The function failed, with chaostoolkit-kubernetes' message where it has one.
pub async fn call(call: &Call<'_>) -> Result<Value, String> {
    let args = Args::new(call)?;
    let kube = Kube::connect(call).await?;
    match call.func {
        "terminate_pods" => terminate_pods(&kube, &args).await,
        "pods_in_phase" => pods_in_phase(&kube, &args, true).await,
        "pods_not_in_phase" => pods_in_phase(&kube, &args, false).await,
        "count_pods" => count_pods(&kube, &args).await,
        other => Err(format!("{ACTIONS}.{other} is not implemented natively")),
    }
}

/// The activity's arguments, checked against the function's signature as Python binds them.
struct Args<'a> {
    call: &'a Call<'a>,
}

impl<'a> Args<'a> {
    fn new(call: &'a Call<'a>) -> Result<Self, String> {
        let (params, required) = signature(call.func).unwrap_or_default();
        if let Some(unknown) = call
            .arguments
            .keys()
            .find(|k| !params.contains(&k.as_str()) && !PASSED_BY_CHAOS.contains(&k.as_str()))
        {
            return Err(format!(
                "TypeError: {}() got an unexpected keyword argument '{unknown}'",
                call.func
            ));
        }
        if let Some(missing) = required.iter().find(|r| !call.arguments.contains_key(**r)) {
            return Err(format!(
                "TypeError: {}() missing 1 required positional argument: '{missing}'",
                call.func
            ));
        }
        Ok(Self { call })
    }

    /// The argument as the Python function sees it: `default` when absent; an explicit
    /// `null` is `None`, which replaces the default as it does in Python.
    fn get(&self, name: &str, default: Value) -> Value {
        self.call.arguments.get(name).cloned().unwrap_or(default)
    }

    /// `if <argument>:` in the Python function.
    fn truthy(&self, name: &str, default: bool) -> bool {
        self.call
            .arguments
            .get(name)
            .map_or(default, python::truthy)
    }
}

/// Where chaosk8s reads its settings from.
struct Settings<'a> {
    /// The `secrets` the function gets (read first by `lookup`).
    secrets: Option<&'a Map<String, Value>>,
    /// Variables of `.env` var files: chaos exports them over its own environment.
    env: &'a BTreeMap<String, String>,
}

impl Settings<'_> {
    /// `os.environ.get(name)` in chaos: var files' variables, then the process's.
    fn environ(&self, name: &str) -> Option<String> {
        self.env
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }

    /// chaosk8s' `secrets.get(name, os.environ.get(name))`: a secret set to `null` is `None`,
    /// it does not fall through to the environment.
    fn lookup(&self, name: &str) -> Option<Value> {
        match self.secrets.and_then(|s| s.get(name)) {
            Some(value) => Some(value.clone()),
            None => self.environ(name).map(Value::String),
        }
    }

    /// [`Self::lookup`] as a string, `None` when unset or `null`.
    fn lookup_str(&self, name: &str) -> Option<String> {
        self.lookup(name)
            .filter(|v| !v.is_null())
            .map(|v| python::to_str(&v))
    }

    /// `name in os.environ or name in secrets`.
    fn has(&self, name: &str) -> bool {
        self.secrets.is_some_and(|s| s.contains_key(name)) || self.environ(name).is_some()
    }

    /// `os.path.expanduser`: a leading `~` is `$HOME` (as chaos's environment has it).
    fn expand_user(&self, path: &str) -> PathBuf {
        match (path.strip_prefix('~'), self.environ("HOME")) {
            (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
                PathBuf::from(format!("{}{rest}", home.trim_end_matches('/')))
            }
            _ => PathBuf::from(path),
        }
    }
}

/// A client for the cluster, and where its configuration came from (failures to reach the
/// cluster name it, so that a wrong cluster is easy to tell).
struct Kube {
    client: Client,
    url: String,
    origin: String,
}

impl Kube {
    /// chaosk8s' `create_k8s_api_client`, in its order: the kubeconfig file when it exists,
    /// else in-cluster when `CHAOSTOOLKIT_IN_POD` is `true`, else `KUBERNETES_HOST` and co.
    async fn connect(call: &Call<'_>) -> Result<Self, String> {
        let settings = Settings {
            secrets: call.passed_secrets()?,
            env: call.env,
        };
        // `is not False`: any string verifies, even "false"; only a `false` secret does not.
        let verify_ssl = !matches!(
            settings.lookup("KUBERNETES_VERIFY_SSL"),
            None | Some(Value::Bool(false))
        );
        let kubeconfig = settings.expand_user(
            &settings
                .environ("KUBECONFIG")
                .unwrap_or_else(|| "~/.kube/config".into()),
        );
        let (config, origin) = if kubeconfig.exists() {
            from_kubeconfig(&settings, &kubeconfig).await?
        } else if settings.environ("CHAOSTOOLKIT_IN_POD").as_deref() == Some("true") {
            let config = Config::incluster().map_err(|e| {
                format!(
                    "CHAOSTOOLKIT_IN_POD is true and there is no kubeconfig at {}, but the \
                     pod's service account cannot be read: {e}",
                    kubeconfig.display()
                )
            })?;
            (config, "the pod's service account".to_owned())
        } else {
            from_host(&settings, verify_ssl, &kubeconfig)?
        };
        tracing::debug!(
            "Using the Kubernetes API at {} ({origin})",
            config.cluster_url
        );
        let url = config.cluster_url.to_string();
        let client = Client::try_from(config)
            .map_err(|e| format!("cannot build the Kubernetes client ({origin}): {e}"))?;
        Ok(Self {
            client,
            url,
            origin,
        })
    }

    /// An API failure as the kubernetes Python client reports it: the status and the reason.
    fn error(&self, e: &kube::Error) -> String {
        match e {
            kube::Error::Api(status) => format!(
                "kubernetes.client.exceptions.ApiException: ({})\nReason: {}: {}",
                status.code, status.reason, status.message
            ),
            e => format!(
                "cannot reach the Kubernetes API at {} ({}): {e}",
                self.url, self.origin
            ),
        }
    }
}

/// The kubeconfig file, with the context `KUBERNETES_CONTEXT` names (else the current one).
async fn from_kubeconfig(settings: &Settings<'_>, path: &Path) -> Result<(Config, String), String> {
    let kubeconfig = Kubeconfig::read_from(path)
        .map_err(|e| format!("cannot read the kubeconfig {}: {e}", path.display()))?;
    // An empty context is Python's falsy one: the current context.
    let context = settings
        .lookup_str("KUBERNETES_CONTEXT")
        .filter(|c| !c.is_empty());
    if let Some(context) = &context
        && !kubeconfig.contexts.iter().any(|c| &c.name == context)
    {
        return Err(format!(
            "kubernetes.config.config_exception.ConfigException: Invalid kube-config file. \
             Expected object with name {context} in {}/contexts list",
            path.display()
        ));
    }
    let origin = format!(
        "kubeconfig {}, context {}",
        path.display(),
        context.as_deref().unwrap_or("current")
    );
    let options = KubeConfigOptions {
        context,
        ..Default::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| format!("cannot use the kubeconfig {}: {e}", path.display()))?;
    Ok((config, origin))
}

/// chaosk8s' last resort, a configuration from `KUBERNETES_HOST` and its companions.
fn from_host(
    settings: &Settings<'_>,
    verify_ssl: bool,
    kubeconfig: &Path,
) -> Result<(Config, String), String> {
    let (host, origin) = match settings.lookup_str("KUBERNETES_HOST") {
        Some(host) => (host, "KUBERNETES_HOST".to_owned()),
        None => (
            "http://localhost".to_owned(),
            format!(
                "chaostoolkit-kubernetes' default with no kubeconfig at {}, CHAOSTOOLKIT_IN_POD \
                 not true and KUBERNETES_HOST unset: set KUBECONFIG (or ~/.kube/config), \
                 KUBERNETES_HOST, or CHAOSTOOLKIT_IN_POD=true in a pod",
                kubeconfig.display()
            ),
        ),
    };
    let url = match host.parse() {
        Ok(url) => url,
        Err(e) => return Err(format!("KUBERNETES_HOST '{host}' is not a URL: {e}")),
    };
    let mut config = Config::new(url);
    // Without verification (the default) urllib3 checks no certificate, the CA's included.
    config.accept_invalid_certs = !verify_ssl;
    if verify_ssl && let Some(ca) = settings.lookup_str("KUBERNETES_CA_CERT_FILE") {
        config.root_cert_file = Some(ca.into());
    }
    // One way to authenticate, in chaosk8s' order. A username and password are not one:
    // chaosk8s sets them on the client's configuration, but the kubernetes client only ever
    // sends an API key, so neither do we.
    if settings.has("KUBERNETES_API_KEY") {
        // `get_api_key_with_prefix`: no header for an empty key, no prefix for an empty one.
        if let Some(key) = settings
            .lookup_str("KUBERNETES_API_KEY")
            .filter(|k| !k.is_empty())
        {
            let prefix = match settings.lookup("KUBERNETES_API_KEY_PREFIX") {
                None => "Bearer".to_owned(),
                Some(Value::Null) => String::new(),
                Some(prefix) => python::to_str(&prefix),
            };
            let value = if prefix.is_empty() {
                key
            } else {
                format!("{prefix} {key}")
            };
            let value = match value.parse() {
                Ok(value) => value,
                Err(e) => {
                    return Err(format!(
                        "KUBERNETES_API_KEY cannot be sent in an Authorization header: {e}"
                    ));
                }
            };
            config.headers.push((
                "authorization"
                    .parse()
                    .map_err(|e| format!("authorization: {e}"))?,
                value,
            ));
            if let Some((_, value)) = config.headers.last_mut() {
                value.set_sensitive(true);
            }
        }
    } else if settings.has("KUBERNETES_CERT_FILE")
        && let Some(cert) = settings.lookup_str("KUBERNETES_CERT_FILE")
    {
        // As Python's `load_cert_chain`, a missing key file means the key is in the cert file.
        let key = settings
            .lookup_str("KUBERNETES_KEY_FILE")
            .unwrap_or_else(|| cert.clone());
        config.auth_info.client_certificate = Some(cert);
        config.auth_info.client_key = Some(key);
    } else if settings.has("KUBERNETES_USERNAME") {
        tracing::debug!(
            "KUBERNETES_USERNAME is set but, as with chaostoolkit-kubernetes, no basic \
             authentication is sent"
        );
    }
    Ok((config, origin))
}

/// `v1.list_namespaced_pod(ns, label_selector=...)`, the label selector passed only when it
/// is truthy, as every function does; the client's pydantic check wants both strings.
async fn list(kube: &Kube, ns: &Value, label_selector: &Value) -> Result<Vec<Pod>, String> {
    let selector = Some(label_selector).filter(|s| python::truthy(s));
    let mut invalid = Vec::new();
    if !ns.is_string() {
        // `ns` is passed positionally: pydantic names it by its position.
        invalid.push(("1", ns));
    }
    if let Some(selector) = selector
        && !selector.is_string()
    {
        invalid.push(("label_selector", selector));
    }
    if !invalid.is_empty() {
        return Err(validation_error(
            "CoreV1Api.list_namespaced_pod",
            "string",
            &invalid,
        ));
    }
    let ns = python::to_str(ns);
    let selector = selector.map(python::to_str);
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &ns);
    let params = match &selector {
        Some(selector) => ListParams::default().labels(selector),
        None => ListParams::default(),
    };
    let listed = pods.list(&params).await.map_err(|e| kube.error(&e))?;
    tracing::debug!(
        "Found {} pods{} in ns '{ns}'",
        listed.items.len(),
        selector
            .map(|s| format!(" matching label '{s}'"))
            .unwrap_or_default()
    );
    Ok(listed.items)
}

/// The `ValidationError` pydantic raises when the kubernetes client's strict types refuse
/// arguments: each `(location, value)` is not a valid `expected` ("string", "integer").
fn validation_error(model: &str, expected: &str, invalid: &[(&str, &Value)]) -> String {
    let kind = if expected == "string" {
        "string_type"
    } else {
        "int_type"
    };
    let plural = if invalid.len() == 1 { "" } else { "s" };
    let mut message = format!(
        "pydantic_core._pydantic_core.ValidationError: {} validation error{plural} for {model}",
        invalid.len()
    );
    for (location, value) in invalid {
        let _ = write!(
            message,
            "\n{location}\n  Input should be a valid {expected} [type={kind}, input_value={}, \
             input_type={}]\n    For further information visit \
             https://errors.pydantic.dev/2.14/v/{kind}",
            python::repr(value),
            python::type_name(value)
        );
    }
    message
}

fn failed(message: impl std::fmt::Display) -> String {
    format!("{ACTIVITY_FAILED_PREFIX}{message}")
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// Python's `pod.status.phase == phase`: a string matches that phase, `None` a pod without
/// one, anything else no pod.
fn in_phase(pod: &Pod, wanted: &Value) -> bool {
    match (phase(pod), wanted) {
        (Some(phase), Value::String(wanted)) => phase == wanted,
        (None, Value::Null) => true,
        _ => false,
    }
}

/// `qty` as Python holds it: an int (a bool is one) or a float.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Qty {
    Int(i128),
    Float(f64),
}

impl Qty {
    /// `_select_pods`' first check, `qty < 0`, which also refuses what is not a number.
    fn new(value: &Value) -> Result<Self, String> {
        let qty = match value {
            Value::Bool(b) => Self::Int(i128::from(*b)),
            Value::Number(n) => match n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
            {
                Some(i) => Self::Int(i),
                None => Self::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            other => {
                return Err(format!(
                    "TypeError: '<' not supported between instances of '{}' and 'int'",
                    python::type_name(other)
                ));
            }
        };
        if matches!(qty, Self::Int(i) if i < 0) || matches!(qty, Self::Float(f) if f < 0.0) {
            return Err(failed(format!(
                "Cannot select pods. Quantity '{}' is negative.",
                python::to_str(value)
            )));
        }
        Ok(qty)
    }
}

/// How many of `available` pods `_select_pods` keeps when not `all`: `qty`, or in percentage
/// mode `math.ceil((qty * len(pods)) / 100)`, then `min(qty, len(pods))`; a float still left
/// then fails where Python slices or samples with it.
fn how_many(qty: Qty, percentage: bool, available: usize, rand: bool) -> Result<usize, String> {
    let count = i128::try_from(available).unwrap_or(i128::MAX);
    let qty = match qty {
        // Exact integer arithmetic: Python's float division differs from it only for shares
        // far above any pod count, which the cap below makes equal. An overflow is such a share.
        Qty::Int(q) if percentage => Qty::Int(
            q.checked_mul(count)
                .map_or(count, |all| all / 100 + i128::from(all % 100 != 0)),
        ),
        Qty::Float(q) if percentage => {
            let share = (q * available as f64 / 100.0).ceil();
            if !share.is_finite() {
                return Err("OverflowError: cannot convert float infinity to integer".into());
            }
            // Saturating: a share beyond i128 is capped below anyway.
            Qty::Int(share as i128)
        }
        fixed => fixed,
    };
    let kept = match qty {
        Qty::Int(q) => q.min(count),
        // `min` keeps its first argument on a tie: a float equal to the count stays a float.
        Qty::Float(q) if (available as f64) < q => count,
        Qty::Float(_) if rand => {
            return Err("TypeError: can't multiply sequence by non-int of type 'float'".into());
        }
        Qty::Float(_) => {
            return Err(
                "TypeError: slice indices must be integers or None or have an __index__ method"
                    .into(),
            );
        }
    };
    Ok(usize::try_from(kept).unwrap_or(0))
}

/// `grace_period`: a negative number keeps the pods' own grace period; otherwise it goes into
/// `V1DeleteOptions`, whose pydantic model wants a strict integer.
fn grace_period(value: &Value) -> Result<Option<u32>, String> {
    let strict = |value: &Value| {
        validation_error(
            "V1DeleteOptions",
            "integer",
            &[("grace_period_seconds", value)],
        )
    };
    match value {
        Value::Bool(_) => Err(strict(value)),
        Value::Number(n) => match n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
        {
            Some(seconds) if seconds < 0 => Ok(None),
            Some(seconds) => u32::try_from(seconds).map(Some).map_err(|_| {
                format!(
                    "grace_period {seconds} is too large: at most {} seconds",
                    u32::MAX
                )
            }),
            None if n.as_f64().is_some_and(|f| f < 0.0) => Ok(None),
            None => Err(strict(value)),
        },
        other => Err(format!(
            "TypeError: '>=' not supported between instances of '{}' and 'int'",
            python::type_name(other)
        )),
    }
}

async fn terminate_pods(kube: &Kube, args: &Args<'_>) -> Result<Value, String> {
    // `_select_pods`' checks, in its order, before anything is listed.
    let qty = Qty::new(&args.get("qty", json!(1)))?;
    let mode = args.get("mode", json!("fixed"));
    let percentage = match mode.as_str() {
        Some("fixed") => false,
        Some("percentage") => true,
        _ => {
            return Err(failed(format!(
                "Cannot select pods. Mode '{}' is invalid.",
                python::to_str(&mode)
            )));
        }
    };
    let order = args.get("order", json!("alphabetic"));
    let oldest = match order.as_str() {
        Some("alphabetic") => false,
        Some("oldest") => true,
        _ => {
            return Err(failed(format!(
                "Cannot select pods. Order '{}' is invalid.",
                python::to_str(&order)
            )));
        }
    };
    let ns = args.get("ns", json!("default"));
    let mut pods = list(kube, &ns, &args.get("label_selector", Value::Null)).await?;
    let pattern = args.get("name_pattern", Value::Null);
    if python::truthy(&pattern) {
        let Value::String(pattern) = &pattern else {
            return Err("TypeError: first argument must be string or compiled pattern".into());
        };
        let regex = python::compile_regex(pattern)
            .map_err(|e| format!("re.error: name_pattern '{pattern}': {e}"))?;
        pods.retain(|p| regex.is_match(&p.name_any()).unwrap_or(false));
    }
    if oldest {
        // A stable sort, as Python's: equal timestamps keep the API's order.
        pods.sort_by(|a, b| {
            a.creation_timestamp()
                .partial_cmp(&b.creation_timestamp())
                .unwrap_or(Ordering::Equal)
        });
    }
    if !args.truthy("all", false) {
        let rand = args.truthy("rand", false);
        let wanted = how_many(qty, percentage, pods.len(), rand)?;
        if rand {
            sample(&mut pods, wanted);
        }
        pods.truncate(wanted);
    }
    let params = match grace_period(&args.get("grace_period", json!(-1)))? {
        Some(seconds) => DeleteParams::default().grace_period(seconds),
        None => DeleteParams::default(),
    };
    let ns = python::to_str(&ns);
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &ns);
    let mut deleted = Vec::with_capacity(pods.len());
    for pod in &pods {
        let name = pod.name_any();
        api.delete(&name, &params)
            .await
            .map_err(|e| kube.error(&e))?;
        tracing::debug!("Terminated pod '{name}' in ns '{ns}'");
        deleted.push(Value::String(name));
    }
    Ok(Value::Array(deleted))
}

/// Moves a uniform random sample of `n` pods to the front (a partial Fisher-Yates shuffle).
fn sample(pods: &mut [Pod], n: usize) {
    let mut state = uuid::Uuid::new_v4().as_u128() as u64 | 1;
    let mut next = |bound: usize| {
        // xorshift64*: plenty for picking victims, seeded from the OS's randomness.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound as u64) as usize
    };
    for i in 0..n.min(pods.len()) {
        let j = i + next(pods.len() - i);
        pods.swap(i, j);
    }
}

/// `pods_in_phase` (`wanted` true) and `pods_not_in_phase` (`wanted` false).
async fn pods_in_phase(kube: &Kube, args: &Args<'_>, wanted: bool) -> Result<Value, String> {
    let selector = args.get("label_selector", Value::Null);
    let label = python::to_str(&selector);
    let phase_wanted = args.get("phase", json!("Running"));
    let raise = args.truthy(
        if wanted {
            "raise_on_invalid_phase"
        } else {
            "raise_on_in_phase"
        },
        true,
    );
    let verdict = |message: String| {
        if raise {
            Err(failed(message))
        } else {
            tracing::debug!("{message}");
            Ok(json!(false))
        }
    };
    let pods = list(kube, &args.get("ns", json!("default")), &selector).await?;
    if pods.is_empty() {
        return verdict(format!("no pods '{label}' were found"));
    }
    for pod in &pods {
        let phase = phase(pod).unwrap_or("None");
        let matches = in_phase(pod, &phase_wanted);
        if wanted && !matches {
            return verdict(format!(
                "pod '{label}' is in phase '{phase}' but should be '{}'",
                python::to_str(&phase_wanted)
            ));
        }
        if !wanted && matches {
            return verdict(format!("pod '{label}' should not be in phase '{phase}'"));
        }
    }
    Ok(json!(true))
}

async fn count_pods(kube: &Kube, args: &Args<'_>) -> Result<Value, String> {
    let pods = list(
        kube,
        &args.get("ns", json!("default")),
        &args.get("label_selector", Value::Null),
    )
    .await?;
    // `if not phase`: every pod, for `null`, `false`, `""`... as for no phase at all.
    let phase = args.get("phase", Value::Null);
    let count = if python::truthy(&phase) {
        pods.iter().filter(|p| in_phase(p, &phase)).count()
    } else {
        pods.len()
    };
    Ok(json!(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_native_functions_are_handled() {
        assert!(handles("chaosk8s.pod.actions", "terminate_pods"));
        assert!(handles("chaosk8s.pod.probes", "count_pods"));
        assert!(!handles("chaosk8s.pod.actions", "exec_in_pods"));
        assert!(!handles("chaosk8s.node.actions", "drain_nodes"));
    }

    #[test]
    fn arguments_are_bound_like_python_binds_them() {
        let configuration = Map::new();
        let secrets = Map::new();
        let env = std::collections::BTreeMap::new();
        let call = |func, arguments: Value| Call {
            activity: "a",
            module: PROBES,
            func,
            arguments: arguments.as_object().unwrap().clone(),
            configuration: &configuration,
            secrets: &secrets,
            secrets_declared: false,
            env: &env,
        };
        let bad = call("count_pods", json!({"label_selector": "a=b", "qtyy": 1}));
        assert_eq!(
            Args::new(&bad).err().unwrap(),
            "TypeError: count_pods() got an unexpected keyword argument 'qtyy'"
        );
        let missing = call("pods_in_phase", json!({"ns": "x"}));
        assert_eq!(
            Args::new(&missing).err().unwrap(),
            "TypeError: pods_in_phase() missing 1 required positional argument: 'label_selector'"
        );
        // The functions take `secrets`, not `configuration`.
        let with_secrets = call("count_pods", json!({"label_selector": "a", "secrets": {}}));
        assert!(Args::new(&with_secrets).is_ok());
        let with_configuration = call(
            "count_pods",
            json!({"label_selector": "a", "configuration": {}}),
        );
        assert_eq!(
            Args::new(&with_configuration).err().unwrap(),
            "TypeError: count_pods() got an unexpected keyword argument 'configuration'"
        );
    }

    #[test]
    fn selection_counts_follow_python_arithmetic() {
        let int = |q: i128| Qty::Int(q);
        assert_eq!(how_many(int(50), true, 3, false), Ok(2));
        assert_eq!(how_many(int(0), true, 3, false), Ok(0));
        // No overflow, however large the quantity: capped at the pods there are.
        assert_eq!(how_many(int(i128::from(u64::MAX)), true, 4, false), Ok(4));
        assert_eq!(
            how_many(int(i128::MAX), true, usize::MAX, false),
            Ok(usize::MAX)
        );
        assert_eq!(how_many(int(7), false, 4, false), Ok(4));
        // Floats: computed as floats, then the ceiling (50.5% of 2 pods is 2).
        assert_eq!(how_many(Qty::Float(50.5), true, 2, false), Ok(2));
        assert_eq!(how_many(Qty::Float(33.3), true, 3, false), Ok(1));
        assert_eq!(
            how_many(Qty::Float(1e308), true, 3, false),
            Err("OverflowError: cannot convert float infinity to integer".into())
        );
        assert!(
            how_many(Qty::Float(1.5), false, 3, false)
                .unwrap_err()
                .starts_with("TypeError: slice indices")
        );
        assert!(
            how_many(Qty::Float(3.0), false, 3, true)
                .unwrap_err()
                .starts_with("TypeError: can't multiply sequence")
        );
        assert_eq!(how_many(Qty::Float(3.5), false, 3, false), Ok(3));
    }

    #[test]
    fn quantities_and_grace_periods_are_checked_as_python_compares_them() {
        assert_eq!(Qty::new(&json!(true)), Ok(Qty::Int(1)));
        assert_eq!(
            Qty::new(&json!(u64::MAX)),
            Ok(Qty::Int(i128::from(u64::MAX)))
        );
        assert_eq!(
            Qty::new(&json!(null)).unwrap_err(),
            "TypeError: '<' not supported between instances of 'NoneType' and 'int'"
        );
        assert!(
            Qty::new(&json!(-1.5))
                .unwrap_err()
                .ends_with("Quantity '-1.5' is negative.")
        );
        assert_eq!(grace_period(&json!(-1)), Ok(None));
        assert_eq!(grace_period(&json!(-0.5)), Ok(None));
        assert_eq!(grace_period(&json!(5)), Ok(Some(5)));
        assert!(grace_period(&json!(5.0)).unwrap_err().contains(
            "grace_period_seconds\n  Input should be a valid integer [type=int_type, input_value=5.0, input_type=float]"
        ));
        assert_eq!(
            grace_period(&json!("5")).unwrap_err(),
            "TypeError: '>=' not supported between instances of 'str' and 'int'"
        );
    }

    #[test]
    fn settings_come_from_secrets_then_var_files_then_the_process() {
        let mut secrets = Map::new();
        secrets.insert("KUBERNETES_HOST".into(), json!("http://from-secrets"));
        secrets.insert("KUBERNETES_CONTEXT".into(), Value::Null);
        let mut env = BTreeMap::new();
        env.insert("KUBERNETES_HOST".into(), "http://from-env-file".into());
        env.insert("KUBERNETES_CONTEXT".into(), "ctx".into());
        env.insert("HOME".into(), "/home/someone/".into());
        let settings = Settings {
            secrets: Some(&secrets),
            env: &env,
        };
        assert_eq!(
            settings.lookup_str("KUBERNETES_HOST").as_deref(),
            Some("http://from-secrets")
        );
        // A null secret is None, not a reason to look in the environment.
        assert_eq!(settings.lookup_str("KUBERNETES_CONTEXT"), None);
        assert!(settings.has("KUBERNETES_CONTEXT"));
        assert_eq!(
            settings.expand_user("~/.kube/config"),
            PathBuf::from("/home/someone/.kube/config")
        );
        assert_eq!(settings.expand_user("~x/y"), PathBuf::from("~x/y"));
        let settings = Settings {
            secrets: None,
            env: &env,
        };
        assert_eq!(
            settings.lookup_str("KUBERNETES_HOST").as_deref(),
            Some("http://from-env-file")
        );
    }

    #[test]
    fn a_sample_is_a_permutation_prefix() {
        let mut pods: Vec<Pod> = (0..10)
            .map(|i| {
                let mut p = Pod::default();
                p.metadata.name = Some(format!("p{i}"));
                p
            })
            .collect();
        sample(&mut pods, 3);
        let mut names: Vec<String> = pods.iter().map(ResourceExt::name_any).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 10, "a permutation: nothing lost or repeated");
    }
}
