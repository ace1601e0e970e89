//! `chaosaws.ec2.actions.stop_instance`, `stop_instances`, `start_instances` and
//! `chaosaws.ec2.probes.describe_instances`, as chaostoolkit-aws 0.35.1 runs them.
//!
//! - The checks and messages are chaosaws' (`To stop an EC2 instance, you must specify...`,
//!   `No instances in availability zone: ...`), and boto3's parameter validation
//!   (`Parameter validation failed: Invalid type for parameter InstanceIds[0]...`) for what
//!   boto3 would refuse before sending anything.
//! - Without ids, the instances are found with `DescribeInstances` and the given filters plus
//!   `availability-zone` when `az` is set; `stop_instance` then picks one at random.
//! - Instances are grouped by their `InstanceLifecycle` (absent: `normal`): normal ones are
//!   stopped with `StopInstances` (`Force` as given); spot ones have their spot requests
//!   cancelled and are terminated (`CancelSpotInstanceRequests`, `TerminateInstances`), as
//!   chaosaws does because spot instances cannot be stopped; `scheduled` ones fail the
//!   activity after the others are handled. `start_instances` starts every group.
//! - Outputs: the stop functions return the list of `StopInstances` (and
//!   `TerminateInstances`) responses, `start_instances` the concatenated `StartingInstances`
//!   entries, `describe_instances` the `DescribeInstances` response.

use serde_json::{Map, Value};

use super::super::Call;
use super::{Session, shapes};
use crate::python;

const ACTIONS: &str = "chaosaws.ec2.actions";
const PROBES: &str = "chaosaws.ec2.probes";

/// A function's parameters (besides `configuration` and `secrets`): name and whether it is
/// required (no default).
pub(super) fn parameters(module: &str, func: &str) -> Option<&'static [(&'static str, bool)]> {
    Some(match (module, func) {
        (ACTIONS, "stop_instance") => &[
            ("instance_id", false),
            ("az", false),
            ("force", false),
            ("filters", false),
        ],
        (ACTIONS, "stop_instances") => &[
            ("instance_ids", false),
            ("az", false),
            ("filters", false),
            ("force", false),
        ],
        (ACTIONS, "start_instances") => {
            &[("instance_ids", false), ("az", false), ("filters", false)]
        }
        (PROBES, "describe_instances") => &[("filters", true)],
        _ => return None,
    })
}

/// Binds the arguments as Python would call the function, then runs it.
pub(super) async fn call(call: &Call<'_>) -> Result<Value, String> {
    let params = parameters(call.module, call.func)
        .ok_or_else(|| format!("{}.{} is not implemented", call.module, call.func))?;
    let func = call.func;
    for name in call.arguments.keys() {
        // chaos passes configuration and secrets itself; in `arguments` they are overridden.
        if !params.iter().any(|(p, _)| p == name) && name != "configuration" && name != "secrets" {
            return Err(format!(
                "TypeError: {func}() got an unexpected keyword argument '{name}'"
            ));
        }
    }
    let missing: Vec<&str> = params
        .iter()
        .filter(|(p, required)| *required && !call.arguments.contains_key(*p))
        .map(|(p, _)| *p)
        .collect();
    if let [one] = missing.as_slice() {
        return Err(format!(
            "TypeError: {func}() missing 1 required positional argument: '{one}'"
        ));
    }
    let arg = |name: &str| call.arguments.get(name).cloned().unwrap_or(Value::Null);
    let run = Run { call };
    match func {
        "stop_instance" => {
            run.stop(
                One(arg("instance_id")),
                arg("az"),
                arg("filters"),
                force(&call.arguments),
            )
            .await
        }
        "stop_instances" => {
            run.stop(
                Many(arg("instance_ids")),
                arg("az"),
                arg("filters"),
                force(&call.arguments),
            )
            .await
        }
        "start_instances" => {
            run.start(arg("instance_ids"), arg("az"), arg("filters"))
                .await
        }
        _ => run.describe(arg("filters")).await,
    }
}

/// `force`, `False` when not given.
fn force(arguments: &Map<String, Value>) -> Value {
    arguments
        .get("force")
        .cloned()
        .unwrap_or(Value::Bool(false))
}

/// Which instances the caller named: one id (`stop_instance`) or a list (`stop_instances`).
enum Target {
    One(Value),
    Many(Value),
}
use Target::{Many, One};

impl Target {
    fn given(&self) -> bool {
        match self {
            One(v) | Many(v) => python::truthy(v),
        }
    }

    /// `InstanceIds` as chaosaws passes it: `[instance_id]` or `instance_ids`.
    fn ids(&self) -> Value {
        match self {
            One(v) => Value::Array(vec![v.clone()]),
            Many(v) => v.clone(),
        }
    }
}

struct Run<'a> {
    call: &'a Call<'a>,
}

/// Instance ids grouped by lifecycle (`normal`, `spot`, `scheduled`...), in order of first
/// appearance, as chaosaws' `get_instance_type_from_response` builds them.
type Groups = Vec<(String, Vec<String>)>;

impl Run<'_> {
    fn session(&self) -> Result<Session<'_>, String> {
        Session::new(self.call)
    }

    async fn stop(
        &self,
        target: Target,
        az: Value,
        filters: Value,
        force: Value,
    ) -> Result<Value, String> {
        let single = matches!(target, One(_));
        if !python::truthy(&az) && !target.given() && !python::truthy(&filters) {
            return Err(activity_failed(if single {
                "To stop an EC2 instance, you must specify either the instance id, an AZ to \
                 pick a random instance from, or a set of filters."
            } else {
                "To stop EC2 instances, you must specify either the instance ids, an AZ to pick \
                 random instances from, or a set of filters."
            }));
        }
        if python::truthy(&az) && !target.given() && !python::truthy(&filters) {
            tracing::warn!(
                "Based on configuration provided I am going to stop {} in AZ {}!",
                if single {
                    "a random instance"
                } else {
                    "all instances"
                },
                python::to_str(&az)
            );
        }
        let mut session = self.session()?;
        let groups = if target.given() {
            by_ids(&mut session, &target.ids()).await?
        } else {
            let filters = with_az(&filters, &az);
            let mut groups = by_filters(&mut session, &filters).await?;
            if single {
                groups = pick_one(groups);
            }
            if groups.is_empty() {
                return Err(activity_failed(&format!(
                    "No instances in availability zone: {}",
                    python::to_str(&az)
                )));
            }
            groups
        };
        tracing::debug!(
            "Picked EC2 instance(s) {groups:?} from AZ '{}' to be stopped",
            python::to_str(&az)
        );
        stop_any_type(&mut session, &groups, &force).await
    }

    async fn start(&self, ids: Value, az: Value, filters: Value) -> Result<Value, String> {
        if !python::truthy(&ids) && !python::truthy(&az) && !python::truthy(&filters) {
            return Err(activity_failed(
                "To start instances, you must specify the instance-id, an Availability Zone, \
                 or provide a set of filters",
            ));
        }
        if python::truthy(&az) && !python::truthy(&ids) && !python::truthy(&filters) {
            tracing::warn!(
                "Based on configuration provided I am going to start all instances in AZ {}!",
                python::to_str(&az)
            );
        }
        let mut session = self.session()?;
        let groups = if python::truthy(&ids) {
            by_ids(&mut session, &ids).await?
        } else {
            let filters = with_az(&filters, &az);
            let groups = by_filters(&mut session, &filters).await?;
            if groups.is_empty() {
                return Err(activity_failed(&format!(
                    "No instances found matching filters: {}",
                    python::repr(&filters)
                )));
            }
            groups
        };
        let mut results = Vec::new();
        for (lifecycle, ids) in &groups {
            tracing::debug!("Starting {lifecycle} instance(s): {ids:?}");
            let mut response = session
                .ec2("StartInstances", instance_ids(ids), shapes::START_INSTANCES)
                .await?;
            if let Some(Value::Array(starting)) = response.remove("StartingInstances") {
                results.extend(starting);
            }
        }
        Ok(Value::Array(results))
    }

    async fn describe(&self, filters: Value) -> Result<Value, String> {
        let mut session = self.session()?;
        let params = filter_params(&filters)?;
        let response = session
            .ec2("DescribeInstances", params, shapes::DESCRIBE_INSTANCES)
            .await?;
        Ok(Value::Object(response))
    }
}

/// chaosaws' `FailedActivity`, as `chaos` prints it.
fn activity_failed(message: &str) -> String {
    format!("chaoslib.exceptions.ActivityFailed: {message}")
}

/// The filters (copied) plus `availability-zone` when `az` is set.
fn with_az(filters: &Value, az: &Value) -> Value {
    let mut list = match filters {
        Value::Array(items) => items.clone(),
        // boto3 will refuse anything else that is truthy; an empty value means no filters.
        other if python::truthy(other) => return other.clone(),
        _ => Vec::new(),
    };
    if python::truthy(az) {
        let mut filter = Map::new();
        filter.insert("Name".into(), Value::String("availability-zone".into()));
        filter.insert("Values".into(), Value::Array(vec![az.clone()]));
        list.push(Value::Object(filter));
    }
    Value::Array(list)
}

async fn by_ids(session: &mut Session<'_>, ids: &Value) -> Result<Groups, String> {
    let params = id_params("InstanceIds", "InstanceId", ids)?;
    let response = session
        .ec2("DescribeInstances", params, shapes::DESCRIBE_INSTANCES)
        .await?;
    Ok(group(&response))
}

async fn by_filters(session: &mut Session<'_>, filters: &Value) -> Result<Groups, String> {
    tracing::debug!("EC2 instances query: {}", python::repr(filters));
    let params = filter_params(filters)?;
    let response = session
        .ec2("DescribeInstances", params, shapes::DESCRIBE_INSTANCES)
        .await?;
    Ok(group(&response))
}

/// Every described instance's id under its lifecycle.
fn group(response: &Map<String, Value>) -> Groups {
    let mut groups: Groups = Vec::new();
    for instance in instances(response) {
        let lifecycle = instance
            .get("InstanceLifecycle")
            .and_then(Value::as_str)
            .unwrap_or("normal");
        let Some(id) = instance.get("InstanceId").and_then(Value::as_str) else {
            continue;
        };
        match groups.iter_mut().find(|(l, _)| l == lifecycle) {
            Some((_, ids)) => ids.push(id.to_owned()),
            None => groups.push((lifecycle.to_owned(), vec![id.to_owned()])),
        }
    }
    groups
}

fn instances(response: &Map<String, Value>) -> impl Iterator<Item = &Map<String, Value>> {
    response
        .get("Reservations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("Instances").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_object)
}

/// One instance chosen at random among all groups, in its group.
fn pick_one(groups: Groups) -> Groups {
    let total: usize = groups.iter().map(|(_, ids)| ids.len()).sum();
    if total == 0 {
        return Vec::new();
    }
    let bits = uuid::Uuid::new_v4().as_u64_pair().0;
    let mut index = usize::try_from(bits % total as u64).unwrap_or(0);
    for (lifecycle, ids) in groups {
        if index < ids.len() {
            return vec![(lifecycle, vec![ids[index].clone()])];
        }
        index -= ids.len();
    }
    Vec::new()
}

/// chaosaws' `stop_instances_any_type`.
async fn stop_any_type(
    session: &mut Session<'_>,
    groups: &Groups,
    force: &Value,
) -> Result<Value, String> {
    let find = |name: &str| groups.iter().find(|(l, _)| l == name).map(|(_, ids)| ids);
    let mut responses = Vec::new();
    if let Some(ids) = find("normal") {
        tracing::debug!("Stopping instances: {ids:?}");
        let mut params = instance_ids(ids);
        let Value::Bool(force) = force else {
            return Err(param_error(&invalid_type("Force", force, "<class 'bool'>")));
        };
        params.push(("Force".into(), force.to_string()));
        let response = session
            .ec2("StopInstances", params, shapes::STOP_INSTANCES)
            .await?;
        responses.push(Value::Object(response));
    }
    if let Some(ids) = find("spot") {
        let described = session
            .ec2(
                "DescribeInstances",
                instance_ids(ids),
                shapes::DESCRIBE_INSTANCES,
            )
            .await?;
        let mut requests = Vec::new();
        for instance in instances(&described)
            .filter(|i| i.get("InstanceLifecycle").and_then(Value::as_str) == Some("spot"))
        {
            // chaosaws indexes the field: an instance without one raises KeyError.
            let Some(request) = instance
                .get("SpotInstanceRequestId")
                .and_then(Value::as_str)
            else {
                return Err(format!(
                    "KeyError: 'SpotInstanceRequestId' (spot instance {} has no spot request \
                     to cancel; chaosaws stops spot instances by cancelling their request and \
                     terminating them)",
                    python::to_str(instance.get("InstanceId").unwrap_or(&Value::Null))
                ));
            };
            requests.push(request.to_owned());
        }
        tracing::debug!("Canceling spot requests: {requests:?}");
        let params = requests
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("SpotInstanceRequestId.{}", i + 1), id.clone()))
            .collect();
        session
            .ec2(
                "CancelSpotInstanceRequests",
                params,
                shapes::CANCEL_SPOT_INSTANCE_REQUESTS,
            )
            .await?;
        tracing::debug!("Terminating spot instances: {ids:?}");
        let response = session
            .ec2(
                "TerminateInstances",
                instance_ids(ids),
                shapes::TERMINATE_INSTANCES,
            )
            .await?;
        responses.push(Value::Object(response));
    }
    if find("scheduled").is_some() {
        return Err(activity_failed(
            "Scheduled instances support is not implemented",
        ));
    }
    Ok(Value::Array(responses))
}

/// `InstanceId.N` for ids already known to be strings.
fn instance_ids(ids: &[String]) -> Vec<(String, String)> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| (format!("InstanceId.{}", i + 1), id.clone()))
        .collect()
}

/// A list of strings parameter (`InstanceIds`), checked as boto3 checks it, serialized as the
/// EC2 protocol wants it (`InstanceId.1`, `InstanceId.2`...).
fn id_params(param: &str, wire: &str, value: &Value) -> Result<Vec<(String, String)>, String> {
    let mut errors = Vec::new();
    let items = string_list(param, value, &mut errors);
    if !errors.is_empty() {
        return Err(param_error(&errors.join("\n")));
    }
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, id)| (format!("{wire}.{}", i + 1), id))
        .collect())
}

/// `Filters`, checked as boto3 checks them, as `Filter.N.Name` and `Filter.N.Value.M`.
fn filter_params(filters: &Value) -> Result<Vec<(String, String)>, String> {
    let mut errors = Vec::new();
    let mut params = Vec::new();
    match filters {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("Filters[{i}]");
                let Value::Object(filter) = item else {
                    errors.push(invalid_type(&path, item, "<class 'dict'>"));
                    continue;
                };
                for key in filter.keys() {
                    if key != "Name" && key != "Values" {
                        errors.push(format!(
                            "Unknown parameter in {path}: \"{key}\", must be one of: Name, \
                             Values"
                        ));
                    }
                }
                let n = i + 1;
                if let Some(name) = filter.get("Name") {
                    match name {
                        Value::String(s) => params.push((format!("Filter.{n}.Name"), s.clone())),
                        other => errors.push(invalid_type(
                            &format!("{path}.Name"),
                            other,
                            "<class 'str'>",
                        )),
                    }
                }
                if let Some(values) = filter.get("Values") {
                    let values = string_list(&format!("{path}.Values"), values, &mut errors);
                    for (j, v) in values.into_iter().enumerate() {
                        params.push((format!("Filter.{n}.Value.{}", j + 1), v));
                    }
                }
            }
        }
        other => errors.push(invalid_type(
            "Filters",
            other,
            "<class 'list'>, <class 'tuple'>",
        )),
    }
    if errors.is_empty() {
        Ok(params)
    } else {
        Err(param_error(&errors.join("\n")))
    }
}

/// The strings of a list parameter; type errors go to `errors`.
fn string_list(path: &str, value: &Value, errors: &mut Vec<String>) -> Vec<String> {
    let Value::Array(items) = value else {
        errors.push(invalid_type(path, value, "<class 'list'>, <class 'tuple'>"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) => out.push(s.clone()),
            other => errors.push(invalid_type(
                &format!("{path}[{i}]"),
                other,
                "<class 'str'>",
            )),
        }
    }
    out
}

fn invalid_type(path: &str, value: &Value, valid: &str) -> String {
    format!(
        "Invalid type for parameter {path}, value: {}, type: <class '{}'>, valid types: {valid}",
        python::to_str(value),
        python::type_name(value)
    )
}

fn param_error(report: &str) -> String {
    format!("botocore.exceptions.ParamValidationError: Parameter validation failed:\n{report}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn filters_as_the_ec2_protocol_and_botos_checks() {
        let params = filter_params(&json!([
            {"Name": "tag:app", "Values": ["a", "b"]},
            {"Name": "availability-zone", "Values": ["us-west-2a"]}
        ]))
        .unwrap();
        assert_eq!(
            params,
            [
                ("Filter.1.Name", "tag:app"),
                ("Filter.1.Value.1", "a"),
                ("Filter.1.Value.2", "b"),
                ("Filter.2.Name", "availability-zone"),
                ("Filter.2.Value.1", "us-west-2a"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        let err = filter_params(&json!([{"Name": "x", "Value": "y", "Values": "z"}])).unwrap_err();
        assert_eq!(
            err,
            "botocore.exceptions.ParamValidationError: Parameter validation failed:\n\
             Unknown parameter in Filters[0]: \"Value\", must be one of: Name, Values\n\
             Invalid type for parameter Filters[0].Values, value: z, type: <class 'str'>, \
             valid types: <class 'list'>, <class 'tuple'>"
        );
        assert!(
            filter_params(&Value::Null).unwrap_err().contains(
                "Invalid type for parameter Filters, value: None, type: <class 'NoneType'>"
            )
        );
    }

    #[test]
    fn ids_and_az_filters() {
        assert_eq!(
            id_params("InstanceIds", "InstanceId", &json!(["i-1", "i-2"])).unwrap(),
            [("InstanceId.1", "i-1"), ("InstanceId.2", "i-2")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert!(
            id_params("InstanceIds", "InstanceId", &json!([1]))
                .unwrap_err()
                .contains("InstanceIds[0], value: 1, type: <class 'int'>")
        );
        assert_eq!(
            with_az(&Value::Null, &json!("us-west-2a")),
            json!([{"Name": "availability-zone", "Values": ["us-west-2a"]}])
        );
        assert_eq!(
            with_az(&json!([{"Name": "x", "Values": ["y"]}]), &Value::Null),
            json!([{"Name": "x", "Values": ["y"]}])
        );
    }

    #[test]
    fn groups_by_lifecycle_and_random_pick() {
        let response = json!({"Reservations": [
            {"Instances": [{"InstanceId": "i-1"}, {"InstanceId": "i-2", "InstanceLifecycle": "spot"}]},
            {"Instances": [{"InstanceId": "i-3"}]}
        ]});
        let groups = group(response.as_object().unwrap());
        assert_eq!(
            groups,
            vec![
                (
                    "normal".to_owned(),
                    vec!["i-1".to_owned(), "i-3".to_owned()]
                ),
                ("spot".to_owned(), vec!["i-2".to_owned()])
            ]
        );
        for _ in 0..20 {
            let picked = pick_one(groups.clone());
            assert_eq!(picked.len(), 1);
            assert_eq!(picked[0].1.len(), 1);
        }
        assert!(pick_one(Vec::new()).is_empty());
    }

    #[test]
    fn python_call_errors() {
        let configuration = Map::new();
        let secrets = Map::new();
        let env = std::collections::BTreeMap::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let run = |func: &'static str, arguments: Value| {
            let call = Call {
                activity: "a",
                module: if func == "describe_instances" {
                    PROBES
                } else {
                    ACTIONS
                },
                func,
                arguments: arguments.as_object().unwrap().clone(),
                configuration: &configuration,
                secrets: &secrets,
                secrets_declared: false,
                env: &env,
            };
            rt.block_on(super::call(&call)).unwrap_err()
        };
        assert_eq!(
            run("stop_instance", json!({"instance": "i-1"})),
            "TypeError: stop_instance() got an unexpected keyword argument 'instance'"
        );
        assert_eq!(
            run("describe_instances", json!({})),
            "TypeError: describe_instances() missing 1 required positional argument: 'filters'"
        );
        assert_eq!(
            run("stop_instance", json!({"instance_id": "", "az": null})),
            "chaoslib.exceptions.ActivityFailed: To stop an EC2 instance, you must specify \
             either the instance id, an AZ to pick a random instance from, or a set of filters."
        );
        assert_eq!(
            run("start_instances", json!({"instance_ids": []})),
            "chaoslib.exceptions.ActivityFailed: To start instances, you must specify the \
             instance-id, an Availability Zone, or provide a set of filters"
        );
    }
}
