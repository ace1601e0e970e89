//! `type: python` activities without Python: the functions of Chaos Toolkit extensions that
//! experiments call most, implemented natively with the same module, function, arguments and
//! output shape, and a bridge to a real Python for every other one.
//!
//! - [`k8s`]: `chaosk8s.pod.actions.terminate_pods`, `chaosk8s.pod.probes.pods_in_phase`,
//!   `count_pods`, `pods_not_in_phase` (chaostoolkit-kubernetes), over kube-rs;
//! - [`aws`]: `chaosaws.ec2.actions.stop_instance`, `stop_instances`, `start_instances` and
//!   `chaosaws.ec2.probes.describe_instances` (chaostoolkit-aws), over the EC2 Query API signed
//!   with SigV4;
//! - [`bridge`]: any other function, run by `python3` in a small bridge process when the
//!   module is installed.
//!
//! Every function gets its arguments already substituted (`${name}` from configuration and
//! secrets) and returns the activity's output as JSON, or an error message: the activity then
//! fails, as it does in `chaos` when the Python function raises.

pub mod aws;
pub mod bridge;
pub mod k8s;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One call of an extension function.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// The activity's name, for messages.
    pub activity: &'a str,
    /// `chaosk8s.pod.actions`.
    pub module: &'a str,
    /// `terminate_pods`.
    pub func: &'a str,
    /// The activity's `arguments`, substituted.
    pub arguments: Map<String, Value>,
    /// The run's configuration (what Chaos Toolkit passes as `configuration`).
    pub configuration: &'a Map<String, Value>,
    /// The secrets the activity may see (what Chaos Toolkit passes as `secrets`).
    pub secrets: &'a Map<String, Value>,
    /// Whether the provider has a `secrets` key: Chaos Toolkit passes `secrets` only then.
    pub secrets_declared: bool,
    /// Variables from `.env` var files (Chaos Toolkit exports them into its environment).
    pub env: &'a BTreeMap<String, String>,
}

impl Call<'_> {
    /// What chaos passes the function as `secrets` (for a function that takes them): the
    /// provider's secrets when it declares some (they replace a `secrets` argument), else the
    /// activity's `secrets` argument, as given, else `None`.
    ///
    /// # Errors
    ///
    /// A truthy `secrets` argument that is not a mapping: the Python functions call its
    /// `.get`, which fails.
    pub fn passed_secrets(&self) -> Result<Option<&Map<String, Value>>, String> {
        if self.secrets_declared {
            return Ok(Some(self.secrets));
        }
        match self.arguments.get("secrets") {
            Some(Value::Object(secrets)) => Ok(Some(secrets)),
            Some(other) if crate::python::truthy(other) => Err(format!(
                "AttributeError: '{}' object has no attribute 'get'",
                crate::python::type_name(other)
            )),
            _ => Ok(None),
        }
    }
}

/// Whether `module.func` is implemented natively (validation says so instead of warning).
pub fn is_native(module: &str, func: &str) -> bool {
    k8s::handles(module, func) || aws::handles(module, func)
}

/// A native function's parameters, each with whether it is required (`configuration` and
/// `secrets`, which chaos passes itself, are not listed): validation binds the arguments as
/// chaos does with the extension installed. `None` for a bridged function.
pub fn parameters(module: &str, func: &str) -> Option<Vec<(&'static str, bool)>> {
    if k8s::handles(module, func) {
        let (params, required) = k8s::signature(func)?;
        return Some(params.iter().map(|p| (*p, required.contains(p))).collect());
    }
    aws::parameters(module, func).map(<[_]>::to_vec)
}

/// Which of `configuration` and `secrets` a native function's signature has: chaos passes
/// those itself, so they may also appear in `arguments` (chaos replaces `configuration`, and
/// `secrets` when the provider declares some); the other one is an unexpected argument, as
/// with any name the function does not take. Empty for a bridged function.
pub fn passed_by_chaos(module: &str, func: &str) -> &'static [&'static str] {
    if k8s::handles(module, func) {
        k8s::PASSED_BY_CHAOS
    } else if aws::handles(module, func) {
        // Every chaostoolkit-aws EC2 function ends with `configuration=None, secrets=None`.
        &["configuration", "secrets"]
    } else {
        &[]
    }
}

/// Calls the function: natively when it is one of ours, through the bridge otherwise.
///
/// # Errors
///
/// The function failed; the message becomes the activity's failure.
pub async fn call(call: Call<'_>) -> Result<Value, String> {
    if k8s::handles(call.module, call.func) {
        k8s::call(&call).await
    } else if aws::handles(call.module, call.func) {
        aws::call(&call).await
    } else {
        bridge::call(&call).await
    }
}
