//! chaostoolkit-aws' EC2 functions, natively: the EC2 Query API signed with SigV4, no Python,
//! no AWS SDK.
//!
//! - `ec2`: `chaosaws.ec2.actions.stop_instance`, `stop_instances`, `start_instances` and
//!   `chaosaws.ec2.probes.describe_instances`, with chaostoolkit-aws 0.35's arguments, checks,
//!   messages and outputs (boto3's response dicts, as the journal shows them);
//! - `credentials`: where boto3 finds credentials (secrets, environment, profiles, web
//!   identity, container and instance endpoints);
//! - `profile`: the environment and the shared `~/.aws/config` and `~/.aws/credentials`;
//! - `query`: the Query API over HTTP: endpoints, SigV4, retries, errors;
//! - `shapes`: the XML answers turned into boto3's dicts.
//!
//! The region is chaosaws' own rule: the configuration's `aws_region`, else `AWS_REGION`,
//! else `AWS_DEFAULT_REGION` (a profile's `region` is not used: chaosaws always passes a
//! region to boto3, or stops).

mod credentials;
mod ec2;
mod profile;
mod query;
mod shapes;

use serde_json::{Map, Value};

use super::Call;
use credentials::Credentials;
use profile::{Env, Profiles};

/// The parameters of `module.func` (name, required), when it is one of this module's.
pub fn parameters(module: &str, func: &str) -> Option<&'static [(&'static str, bool)]> {
    ec2::parameters(module, func)
}

/// Whether `module.func` is one of this module's.
pub fn handles(module: &str, func: &str) -> bool {
    ec2::parameters(module, func).is_some()
}

/// Runs the function.
///
/// # Errors
///
/// The function failed: bad arguments, no region or credentials, or EC2/STS refused. The
/// message reads like the Python exception `chaos` would show.
pub async fn call(call: &Call<'_>) -> Result<Value, String> {
    ec2::call(call).await
}

static NO_SECRETS: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

/// What chaosaws' `aws_client("ec2", configuration, secrets)` sets up: the region, the EC2
/// client (endpoint, retries) and, at the first request, the credentials.
#[derive(Debug)]
struct Session<'a> {
    env: Env,
    region: String,
    profiles: Profiles,
    ec2: query::Client,
    secrets: &'a Map<String, Value>,
    configuration: &'a Map<String, Value>,
    credentials: Option<Credentials>,
}

impl<'a> Session<'a> {
    /// chaosaws' `aws_client`: the region (or stop), the profile (or stop when a named one does
    /// not exist), the client's retry configuration (or stop when it is invalid). Credentials are looked for at the first request, as boto3 does.
    fn new(call: &'a Call<'a>) -> Result<Self, String> {
        let configuration = call.configuration;
        let env = Env::process(call.env);
        let configured = configuration
            .get("aws_region")
            .filter(|v| crate::python::truthy(v))
            .map(crate::python::to_str);
        let Some(region) = configured
            .or_else(|| env.get("AWS_REGION"))
            .or_else(|| env.get("AWS_DEFAULT_REGION"))
        else {
            return Err(
                "chaoslib.exceptions.InterruptExecution: AWS requires a region to be set! \
                 (set the configuration key aws_region, or AWS_REGION or AWS_DEFAULT_REGION)"
                    .into(),
            );
        };
        let profile_name = configuration
            .get("aws_profile_name")
            .filter(|v| !v.is_null())
            .map(crate::python::to_str);
        let profiles = Profiles::load(&env, profile_name.as_deref())?;
        let ec2 = query::Client::new(query::Service::Ec2, &region, &env, &profiles)?;
        Ok(Self {
            env,
            region,
            profiles,
            ec2,
            // chaos passes `secrets` to the function only when the provider declares some;
            // otherwise a `secrets` argument is what the function gets.
            secrets: call.passed_secrets()?.unwrap_or(&NO_SECRETS),
            configuration,
            credentials: None,
        })
    }

    /// The credentials requests are signed with: the chain's, or, when the configuration has
    /// `aws_assume_role_arn`, the role's (STS `AssumeRole` with the chain's, session name
    /// `aws_assume_role_session_name` or `ChaosToolkit`, as chaosaws does).
    async fn credentials(&mut self) -> Result<Credentials, String> {
        if let Some(c) = &self.credentials {
            return Ok(c.clone());
        }
        let ctx = credentials::Context {
            env: &self.env,
            profiles: &self.profiles,
            region: &self.region,
            secrets: self.secrets,
        };
        let mut c = credentials::resolve(&ctx).await?;
        if let Some(role) = self
            .configuration
            .get("aws_assume_role_arn")
            .filter(|v| crate::python::truthy(v))
            .map(crate::python::to_str)
        {
            let session = self
                .configuration
                .get("aws_assume_role_session_name")
                .filter(|v| crate::python::truthy(v))
                .map_or_else(|| "ChaosToolkit".to_owned(), crate::python::to_str);
            let sts =
                query::Client::new(query::Service::Sts, &self.region, &self.env, &self.profiles)?;
            c = credentials::assume_role(&sts, &c, &role, &session, None, None).await?;
        }
        tracing::debug!(
            "AWS region '{}', endpoint {}, credentials from {}",
            self.region,
            self.ec2.endpoint,
            if c.source.is_empty() { "?" } else { &c.source }
        );
        self.credentials = Some(c.clone());
        Ok(c)
    }

    /// One EC2 action; its answer as boto3's dict (`ResponseMetadata` included).
    async fn ec2(
        &mut self,
        action: &str,
        params: Vec<(String, String)>,
        output: &[shapes::Member],
    ) -> Result<Map<String, Value>, String> {
        let credentials = self.credentials().await?;
        tracing::debug!("EC2 {action} {}", query::form_encode(&params));
        let answer = query::call(&query::Request {
            client: &self.ec2,
            credentials: Some(&credentials),
            action,
            params,
        })
        .await?;
        let doc = roxmltree::Document::parse(&answer.body)
            .map_err(|e| query::unparsable(&answer.body, &e))?;
        let mut out = shapes::structure(doc.root_element(), output);
        out.insert(
            "ResponseMetadata".into(),
            answer.metadata(query::request_id(&doc)),
        );
        Ok(out)
    }
}
