//! chaostoolkit-kubernetes' pod functions, natively over kube-rs: the action
//! `chaosk8s.pod.actions.terminate_pods` and the probes `chaosk8s.pod.probes.pods_in_phase`,
//! `pods_not_in_phase` and `count_pods`, with the Python functions' arguments, defaults,
//! outputs (the deleted pod names; a boolean; a count) and failure messages.
//!
//! The cluster is found as chaostoolkit-kubernetes finds it: in a pod (`CHAOSTOOLKIT_IN_POD`
//! set to `true`, as the operator's runner pods have it) the pod's service account, otherwise
//! `$KUBECONFIG` or `~/.kube/config` with its current context, or the context named by
//! `KUBERNETES_CONTEXT` (a secret or an environment variable), else in-cluster when the
//! kubeconfig is missing (kube-rs's inference).

use std::cmp::Ordering;

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

/// Runs the function.
///
/// # Errors
///
/// The function failed, with chaostoolkit-kubernetes' message where it has one.
pub async fn call(call: &Call<'_>) -> Result<Value, String> {
    let args = Args::new(call)?;
    let client = client(call.secrets).await?;
    match call.func {
        "terminate_pods" => terminate_pods(&client, &args).await,
        "pods_in_phase" => pods_in_phase(&client, &args, true).await,
        "pods_not_in_phase" => pods_in_phase(&client, &args, false).await,
        "count_pods" => count_pods(&client, &args).await,
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
            .find(|k| !params.contains(&k.as_str()))
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

    fn get(&self, name: &str) -> Option<&Value> {
        self.call.arguments.get(name).filter(|v| !v.is_null())
    }

    fn str_or(&self, name: &str, default: &str) -> String {
        self.get(name)
            .map(python::to_str)
            .unwrap_or_else(|| default.into())
    }

    fn opt_str(&self, name: &str) -> Option<String> {
        self.get(name).map(python::to_str).filter(|s| !s.is_empty())
    }

    fn flag(&self, name: &str, default: bool) -> bool {
        self.get(name).map_or(default, python::truthy)
    }

    fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .ok_or_else(|| format!("{name}: {n} is not an integer")),
            Some(Value::Bool(b)) => Ok(i64::from(*b)),
            Some(other) => Err(format!(
                "TypeError: {name} must be an integer, not {}",
                python::type_name(other)
            )),
        }
    }
}

async fn client(secrets: &Map<String, Value>) -> Result<Client, String> {
    let env = |name: &str| {
        secrets
            .get(name)
            .map(python::to_str)
            .or_else(|| std::env::var(name).ok())
            .filter(|v| !v.is_empty())
    };
    let config = if env("CHAOSTOOLKIT_IN_POD").as_deref() == Some("true") {
        Config::incluster().map_err(|e| {
            format!("CHAOSTOOLKIT_IN_POD is true but the pod's service account cannot be read: {e}")
        })?
    } else if let Some(context) = env("KUBERNETES_CONTEXT") {
        let kubeconfig =
            Kubeconfig::read().map_err(|e| format!("cannot read the kubeconfig: {e}"))?;
        let options = KubeConfigOptions {
            context: Some(context),
            ..Default::default()
        };
        Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| format!("cannot use the kubeconfig: {e}"))?
    } else {
        Config::infer().await.map_err(|e| {
            format!("no Kubernetes cluster configured: set KUBECONFIG (or ~/.kube/config), or run in a pod with CHAOSTOOLKIT_IN_POD=true ({e})")
        })?
    };
    Client::try_from(config).map_err(|e| format!("cannot build the Kubernetes client: {e}"))
}

async fn list(client: &Client, ns: &str, label_selector: Option<&str>) -> Result<Vec<Pod>, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = match label_selector {
        Some(selector) => ListParams::default().labels(selector),
        None => ListParams::default(),
    };
    let listed = pods.list(&params).await.map_err(|e| api_error(&e))?;
    tracing::debug!(
        "Found {} pods{} in ns '{ns}'",
        listed.items.len(),
        label_selector
            .map(|s| format!(" matching label '{s}'"))
            .unwrap_or_default()
    );
    Ok(listed.items)
}

/// An API failure as the kubernetes Python client reports it: the status and the reason.
fn api_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!(
            "kubernetes.client.exceptions.ApiException: ({})\nReason: {}: {}",
            status.code, status.reason, status.message
        ),
        e => format!("cannot reach the Kubernetes API: {e}"),
    }
}

fn failed(message: impl std::fmt::Display) -> String {
    format!("{ACTIVITY_FAILED_PREFIX}{message}")
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

async fn terminate_pods(client: &Client, args: &Args<'_>) -> Result<Value, String> {
    let ns = args.str_or("ns", "default");
    let qty = args.int("qty", 1)?;
    let mode = args.str_or("mode", "fixed");
    let order = args.str_or("order", "alphabetic");
    if qty < 0 {
        return Err(failed(format!(
            "Cannot select pods. Quantity '{qty}' is negative."
        )));
    }
    if mode != "fixed" && mode != "percentage" {
        return Err(failed(format!(
            "Cannot select pods. Mode '{mode}' is invalid."
        )));
    }
    if order != "alphabetic" && order != "oldest" {
        return Err(failed(format!(
            "Cannot select pods. Order '{order}' is invalid."
        )));
    }
    let mut pods = list(client, &ns, args.opt_str("label_selector").as_deref()).await?;
    if let Some(pattern) = args.opt_str("name_pattern") {
        let regex = python::compile_regex(&pattern)
            .map_err(|e| format!("re.error: name_pattern '{pattern}': {e}"))?;
        pods.retain(|p| regex.is_match(&p.name_any()).unwrap_or(false));
    }
    if order == "oldest" {
        // A stable sort, as Python's: equal timestamps keep the API's order.
        pods.sort_by(|a, b| {
            a.creation_timestamp()
                .partial_cmp(&b.creation_timestamp())
                .unwrap_or(Ordering::Equal)
        });
    }
    if !args.flag("all", false) {
        let count = pods.len() as i64;
        let wanted = if mode == "percentage" {
            // math.ceil(qty * len / 100)
            (qty * count + 99) / 100
        } else {
            qty
        };
        let wanted = usize::try_from(wanted.min(count)).unwrap_or(0);
        if args.flag("rand", false) {
            sample(&mut pods, wanted);
        }
        pods.truncate(wanted);
    }
    let grace = args.int("grace_period", -1)?;
    let params = match u32::try_from(grace) {
        Ok(seconds) => DeleteParams::default().grace_period(seconds),
        Err(_) => DeleteParams::default(),
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut deleted = Vec::with_capacity(pods.len());
    for pod in &pods {
        let name = pod.name_any();
        api.delete(&name, &params)
            .await
            .map_err(|e| api_error(&e))?;
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
async fn pods_in_phase(client: &Client, args: &Args<'_>, wanted: bool) -> Result<Value, String> {
    let ns = args.str_or("ns", "default");
    let selector = args.opt_str("label_selector");
    let label = args.str_or("label_selector", "None");
    let phase_wanted = args.str_or("phase", "Running");
    let raise = args.flag(
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
    let pods = list(client, &ns, selector.as_deref()).await?;
    if pods.is_empty() {
        return verdict(format!("no pods '{label}' were found"));
    }
    for pod in &pods {
        let phase = phase(pod).unwrap_or("None");
        if wanted && phase != phase_wanted {
            return verdict(format!(
                "pod '{label}' is in phase '{phase}' but should be '{phase_wanted}'"
            ));
        }
        if !wanted && phase == phase_wanted {
            return verdict(format!("pod '{label}' should not be in phase '{phase}'"));
        }
    }
    Ok(json!(true))
}

async fn count_pods(client: &Client, args: &Args<'_>) -> Result<Value, String> {
    let ns = args.str_or("ns", "default");
    let pods = list(client, &ns, args.opt_str("label_selector").as_deref()).await?;
    let count = match args.opt_str("phase") {
        Some(wanted) => pods
            .iter()
            .filter(|p| phase(p) == Some(wanted.as_str()))
            .count(),
        None => pods.len(),
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
