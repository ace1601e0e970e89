//! AWS credentials, found where boto3 (as chaostoolkit-aws sets it up) finds them, first hit
//! wins:
//!
//! 1. the activity's secrets `aws_access_key_id`, `aws_secret_access_key`,
//!    `aws_session_token` (chaosaws passes them to the client explicitly);
//! 2. `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (skipped when the
//!    configuration names a profile with `aws_profile_name`, as botocore skips them then);
//! 3. the profile's `role_arn` with `source_profile` or `credential_source` (STS
//!    `AssumeRole`);
//! 4. web identity (IRSA): `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (+
//!    `AWS_ROLE_SESSION_NAME`), or the profile's `web_identity_token_file` + `role_arn`, through
//!    STS `AssumeRoleWithWebIdentity` (an unsigned call);
//! 5. the profile in the shared credentials file (`[name]`), then in the config file
//!    (`[profile name]`, `[default]`);
//! 6. the container endpoint (ECS task roles, EKS Pod Identity):
//!    `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `..._FULL_URI`, with
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)`;
//! 7. the EC2 instance metadata service (IMDSv2, falling back to v1), unless
//!    `AWS_EC2_METADATA_DISABLED=true`.
//!
//! Profiles that need SSO, `credential_process` or an MFA code are refused with a message
//! naming the setting, rather than skipped. Temporary credentials (STS, container, instance)
//! are cached for the process until 15 minutes before they expire, as botocore refreshes them.
//! Every secret value met is registered with [`crate::redact`] before anything can print it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::profile::{Env, Profiles};
use super::query::{self, Client, Request, Service};

/// A set of credentials.
#[derive(Clone)]
pub(super) struct Credentials {
    /// `AKIA...` / `ASIA...`.
    pub(super) access_key_id: String,
    /// The secret key.
    pub(super) secret_access_key: String,
    /// The session token of temporary credentials.
    pub(super) session_token: Option<String>,
    /// When temporary credentials expire.
    expiry: Option<SystemTime>,
    /// Where they came from, for debug lines.
    pub(super) source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Long-term (or given) credentials.
    pub(super) fn fixed(access_key_id: &str, secret: &str, token: Option<&str>) -> Self {
        Self {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret.to_owned(),
            session_token: token.map(str::to_owned),
            expiry: None,
            source: String::new(),
        }
    }

    fn from(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Whether they are still good for 15 minutes.
    fn fresh(&self) -> bool {
        self.expiry
            .is_none_or(|at| at > SystemTime::now() + Duration::from_secs(15 * 60))
    }

    /// Registers the secret parts with the redactor.
    fn remember(&self) {
        let mut values = vec![Value::String(self.secret_access_key.clone())];
        if let Some(token) = &self.session_token {
            values.push(Value::String(token.clone()));
        }
        crate::redact::global().register(values.iter());
    }
}

/// What the chain needs: the environment, the profiles, the region (for STS) and the
/// activity's secrets.
#[derive(Debug)]
pub(super) struct Context<'a> {
    /// Environment variables.
    pub(super) env: &'a Env,
    /// The shared files and the profile in use.
    pub(super) profiles: &'a Profiles,
    /// The region, for STS.
    pub(super) region: &'a str,
    /// The activity's secrets.
    pub(super) secrets: &'a Map<String, Value>,
}

/// The credentials given explicitly in the activity's secrets, if any.
///
/// # Errors
///
/// Only one of the key id and the secret is given (botocore's `PartialCredentialsError`).
pub(super) fn explicit(secrets: &Map<String, Value>) -> Result<Option<Credentials>, String> {
    let get = |key: &str| match secrets.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => Some(crate::python::to_str(v)),
    };
    let key = get("aws_access_key_id");
    let secret = get("aws_secret_access_key");
    let token = get("aws_session_token");
    match (key, secret) {
        (Some(key), Some(secret)) => {
            let c = Credentials::fixed(&key, &secret, token.as_deref()).from("secrets");
            c.remember();
            Ok(Some(c))
        }
        (Some(_), None) => Err(partial("explicit", "aws_secret_access_key")),
        (None, Some(_)) => Err(partial("explicit", "aws_access_key_id")),
        (None, None) => Ok(None),
    }
}

fn partial(provider: &str, missing: &str) -> String {
    format!(
        "botocore.exceptions.PartialCredentialsError: Partial credentials found in {provider}, \
         missing: {missing}"
    )
}

/// Resolves the credentials: explicit ones first, then the default chain.
///
/// # Errors
///
/// Nothing found (with where it looked), partial or invalid settings, or a failed STS,
/// container or instance metadata call.
pub(super) async fn resolve(ctx: &Context<'_>) -> Result<Credentials, String> {
    if let Some(c) = explicit(ctx.secrets)? {
        return Ok(c);
    }
    chain(ctx).await
}

async fn chain(ctx: &Context<'_>) -> Result<Credentials, String> {
    let env = ctx.env;
    let profiles = ctx.profiles;
    let name = profiles.name.as_str();
    let mut looked =
        vec!["the activity's secrets (aws_access_key_id, aws_secret_access_key)".to_owned()];

    if profiles.explicit {
        looked.push(
            "not AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY nor AWS_WEB_IDENTITY_TOKEN_FILE \
             (ignored because aws_profile_name is set)"
                .to_owned(),
        );
    } else {
        if let Some(c) = from_env(env)? {
            return Ok(c);
        }
        looked.push("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY".to_owned());
    }

    if let Some(c) = profile_role(ctx, name, 0).await? {
        return Ok(c);
    }

    if let Some(c) = web_identity(ctx).await? {
        return Ok(c);
    }
    looked.push(format!(
        "web identity (AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN{})",
        if profiles.exists(name) {
            format!(", or web_identity_token_file in profile '{name}'")
        } else {
            String::new()
        }
    ));

    unsupported_profile(profiles, name)?;
    if let Some(c) = static_profile(profiles, name)? {
        return Ok(c);
    }
    looked.push(format!(
        "profile '{name}' in {} and {}",
        profiles.credentials_path.display(),
        profiles.config_path.display()
    ));

    if let Some(c) = container(env).await? {
        return Ok(c);
    }
    looked.push(
        "the container endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI)".into(),
    );

    if env.flag("AWS_EC2_METADATA_DISABLED") {
        looked.push("not the EC2 instance metadata service (AWS_EC2_METADATA_DISABLED)".into());
    } else {
        if let Some(c) = instance_metadata(env).await {
            return Ok(c);
        }
        looked.push("the EC2 instance metadata service".into());
    }

    Err(format!(
        "botocore.exceptions.NoCredentialsError: Unable to locate credentials: no AWS \
         credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give the \
         activity the secrets aws_access_key_id and aws_secret_access_key, or name a profile \
         of your shared credentials file (AWS_PROFILE, configuration aws_profile_name), or use \
         web identity (AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE). Looked at: {}",
        looked.join("; ")
    ))
}

/// `AWS_ACCESS_KEY_ID` and friends.
fn from_env(env: &Env) -> Result<Option<Credentials>, String> {
    let Some(key) = env.get("AWS_ACCESS_KEY_ID") else {
        return Ok(None);
    };
    let Some(secret) = env.get("AWS_SECRET_ACCESS_KEY") else {
        return Err(partial("env", "AWS_SECRET_ACCESS_KEY"));
    };
    let token = env
        .get("AWS_SESSION_TOKEN")
        .or_else(|| env.get("AWS_SECURITY_TOKEN"));
    let c = Credentials::fixed(&key, &secret, token.as_deref()).from("environment variables");
    c.remember();
    Ok(Some(c))
}

/// Static keys of a profile: the credentials file's section, then the config file's.
fn static_profile(profiles: &Profiles, name: &str) -> Result<Option<Credentials>, String> {
    let files = [
        (profiles.credentials(name), "shared-credentials-file"),
        (profiles.config(name), "config-file"),
    ];
    for (settings, provider) in files {
        let Some(settings) = settings else { continue };
        let get = |k: &str| settings.get(k).filter(|v| !v.is_empty());
        let Some(key) = get("aws_access_key_id") else {
            continue;
        };
        let Some(secret) = get("aws_secret_access_key") else {
            return Err(partial(provider, "aws_secret_access_key"));
        };
        let token = get("aws_session_token").or_else(|| get("aws_security_token"));
        let c = Credentials::fixed(key, secret, token.map(String::as_str))
            .from(format!("profile '{name}' ({provider})"));
        c.remember();
        return Ok(Some(c));
    }
    Ok(None)
}

/// Profiles whose credentials come from somewhere chaosflow does not go: refused by name.
fn unsupported_profile(profiles: &Profiles, name: &str) -> Result<(), String> {
    for key in ["sso_session", "sso_start_url", "credential_process"] {
        if profiles.setting(name, key).is_some() {
            return Err(format!(
                "profile '{name}' gets its credentials with '{key}', which chaosflow does not \
                 support: export the credentials (for instance with `aws configure \
                 export-credentials --format env`) or use another profile"
            ));
        }
    }
    Ok(())
}

/// A profile that assumes a role (`role_arn` with `source_profile` or `credential_source`).
async fn profile_role(
    ctx: &Context<'_>,
    name: &str,
    depth: usize,
) -> Result<Option<Credentials>, String> {
    let profiles = ctx.profiles;
    let Some(role_arn) = profiles.setting(name, "role_arn") else {
        return Ok(None);
    };
    if profiles.setting(name, "web_identity_token_file").is_some() {
        // The web identity step handles it.
        return Ok(None);
    }
    if depth > 5 {
        return Err(format!(
            "botocore.exceptions.InfiniteLoopConfigError: profile '{name}': source_profile \
             chain too long or circular"
        ));
    }
    if profiles.setting(name, "mfa_serial").is_some() {
        return Err(format!(
            "profile '{name}' assumes a role with an MFA code (mfa_serial), which chaosflow \
             cannot prompt for"
        ));
    }
    let base = match (
        profiles.setting(name, "source_profile"),
        profiles.setting(name, "credential_source"),
    ) {
        (Some(source), _) => {
            if !profiles.exists(source) {
                return Err(format!(
                    "botocore.exceptions.InvalidConfigError: The source_profile \"{source}\" \
                     referenced in the profile \"{name}\" does not exist."
                ));
            }
            let chained = if source == name {
                None
            } else {
                Box::pin(profile_role(ctx, source, depth + 1)).await?
            };
            match chained {
                Some(c) => c,
                None => static_profile(profiles, source)?.ok_or_else(|| {
                    format!(
                        "botocore.exceptions.InvalidConfigError: The source_profile \
                         \"{source}\" must specify either static credentials or an \
                         assume role configuration"
                    )
                })?,
            }
        }
        (None, Some("Environment")) => from_env(ctx.env)?.ok_or_else(|| {
            format!(
                "botocore.exceptions.CredentialRetrievalError: Error when retrieving \
                 credentials from Environment: No credentials found in credential_source \
                 referenced in profile {name}"
            )
        })?,
        (None, Some("EcsContainer")) => container(ctx.env).await?.ok_or_else(|| {
            format!("profile '{name}': credential_source EcsContainer found no container endpoint")
        })?,
        (None, Some("Ec2InstanceMetadata")) => {
            instance_metadata(ctx.env).await.ok_or_else(|| {
                format!(
                    "profile '{name}': credential_source Ec2InstanceMetadata found no \
                     instance credentials"
                )
            })?
        }
        (None, Some(other)) => {
            return Err(format!(
                "botocore.exceptions.InvalidConfigError: The credential_source \"{other}\" \
                 is not supported (profile \"{name}\")"
            ));
        }
        (None, None) => {
            return Err(format!(
                "botocore.exceptions.InvalidConfigError: The profile \"{name}\" has role_arn \
                 but neither source_profile nor credential_source"
            ));
        }
    };
    let session = profiles
        .setting(name, "role_session_name")
        .map_or_else(default_session_name, str::to_owned);
    let external_id = profiles.setting(name, "external_id");
    let duration = profiles.setting(name, "duration_seconds");
    let sts = Client::new(Service::Sts, ctx.region, ctx.env, profiles)?;
    let c = assume_role(&sts, &base, role_arn, &session, external_id, duration).await?;
    Ok(Some(c))
}

/// `botocore-session-<unix time>`, botocore's default role session name.
fn default_session_name() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!("botocore-session-{now}")
}

/// Web identity from the environment (unless a profile was named) or the profile.
async fn web_identity(ctx: &Context<'_>) -> Result<Option<Credentials>, String> {
    let env = ctx.env;
    let profiles = ctx.profiles;
    let name = profiles.name.as_str();
    let get = |env_key: &str, profile_key: &str| {
        (!profiles.explicit)
            .then(|| env.get(env_key))
            .flatten()
            .or_else(|| profiles.setting(name, profile_key).map(str::to_owned))
    };
    let Some(token_file) = get("AWS_WEB_IDENTITY_TOKEN_FILE", "web_identity_token_file") else {
        return Ok(None);
    };
    let Some(role_arn) = get("AWS_ROLE_ARN", "role_arn") else {
        return Err(
            "botocore.exceptions.InvalidConfigError: The provided profile or the current \
             environment is configured to assume role with web identity but has no role ARN \
             configured. Ensure that the profile has the role_arn configuration set or the \
             AWS_ROLE_ARN env var is set."
                .into(),
        );
    };
    let session = get("AWS_ROLE_SESSION_NAME", "role_session_name");
    let sts = Client::new(Service::Sts, ctx.region, env, profiles)?;
    let key = format!(
        "web-identity\n{}\n{role_arn}\n{token_file}\n{session:?}",
        sts.endpoint
    );
    if let Some(c) = cached(&key) {
        return Ok(Some(c));
    }
    let path = env.expand(&token_file);
    // botocore sends the file's content as it is, read again at every refresh (the kubelet
    // rotates projected tokens).
    let token = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read the web identity token file {} (AWS_WEB_IDENTITY_TOKEN_FILE): {e}",
            path.display()
        )
    })?;
    crate::redact::global().register([&Value::String(token.clone())]);
    let session = session.unwrap_or_else(default_session_name);
    let answer = query::call(&Request {
        client: &sts,
        credentials: None,
        action: "AssumeRoleWithWebIdentity",
        params: vec![
            ("RoleArn".into(), role_arn.clone()),
            ("RoleSessionName".into(), session),
            ("WebIdentityToken".into(), token),
        ],
    })
    .await?;
    let c = sts_credentials(&answer.body)?.from(format!("web identity ({role_arn})"));
    tracing::debug!("AWS credentials: web identity, role {role_arn}");
    store(key, &c);
    Ok(Some(c))
}

/// STS `AssumeRole` with `base` through the `sts` client, cached.
///
/// # Errors
///
/// STS refused, or answered something unreadable.
pub(super) async fn assume_role(
    sts: &Client,
    base: &Credentials,
    role_arn: &str,
    session: &str,
    external_id: Option<&str>,
    duration_seconds: Option<&str>,
) -> Result<Credentials, String> {
    let key = format!(
        "assume-role\n{}\n{}\n{role_arn}\n{session}\n{external_id:?}",
        sts.endpoint, base.access_key_id
    );
    if let Some(c) = cached(&key) {
        return Ok(c);
    }
    let mut params = vec![
        ("RoleArn".to_owned(), role_arn.to_owned()),
        ("RoleSessionName".to_owned(), session.to_owned()),
    ];
    if let Some(id) = external_id {
        params.push(("ExternalId".into(), id.to_owned()));
    }
    if let Some(seconds) = duration_seconds {
        params.push(("DurationSeconds".into(), seconds.to_owned()));
    }
    let answer = query::call(&Request {
        client: sts,
        credentials: Some(base),
        action: "AssumeRole",
        params,
    })
    .await?;
    let c = sts_credentials(&answer.body)?.from(format!("assumed role {role_arn}"));
    tracing::debug!("AWS credentials: assumed role {role_arn} (session {session})");
    store(key, &c);
    Ok(c)
}

/// The `<Credentials>` of an STS answer.
fn sts_credentials(xml: &str) -> Result<Credentials, String> {
    let doc = roxmltree::Document::parse(xml)
        .map_err(|e| format!("STS answered something that is not XML: {e}"))?;
    let creds = doc
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "Credentials")
        .ok_or("STS answered without Credentials")?;
    let get = |name: &str| {
        creds
            .children()
            .find(|c| c.is_element() && c.tag_name().name() == name)
            .map(super::shapes::text)
    };
    let (Some(key), Some(secret)) = (get("AccessKeyId"), get("SecretAccessKey")) else {
        return Err("STS answered without AccessKeyId or SecretAccessKey".into());
    };
    let mut c = Credentials::fixed(&key, &secret, get("SessionToken").as_deref());
    c.expiry = get("Expiration").as_deref().and_then(parse_time);
    c.remember();
    Ok(c)
}

fn parse_time(text: &str) -> Option<SystemTime> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text.trim()).ok()?;
    let secs = u64::try_from(parsed.timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The container credentials endpoint (ECS task roles, EKS Pod Identity).
async fn container(env: &Env) -> Result<Option<Credentials>, String> {
    let url = if let Some(relative) = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        format!("http://169.254.170.2{relative}")
    } else if let Some(full) = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        check_container_url(&full)?;
        full
    } else {
        return Ok(None);
    };
    let key = format!("container\n{url}");
    if let Some(c) = cached(&key) {
        return Ok(Some(c));
    }
    let token = if let Some(file) = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Some(std::fs::read_to_string(env.expand(&file)).map_err(|e| {
            format!("cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {file}: {e}")
        })?)
    } else {
        env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    };
    let mut headers = vec![("accept", "application/json".to_owned())];
    if let Some(token) = token {
        if token.contains(['\r', '\n']) {
            return Err("ValueError: Auth token value is not a legal header value".into());
        }
        crate::redact::global().register([&Value::String(token.clone())]);
        headers.push(("authorization", token));
    }
    // botocore: 2-second timeout, 3 attempts.
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        match query::fetch(reqwest::Method::GET, &url, &headers, Duration::from_secs(2)).await {
            Ok((200, body)) => {
                let c = json_credentials(&body, "Token")?.from("container endpoint");
                store(key, &c);
                return Ok(Some(c));
            }
            Ok((status, body)) => last = format!("HTTP {status}: {}", body.trim()),
            Err(e) => last = e,
        }
    }
    Err(format!(
        "botocore.exceptions.CredentialRetrievalError: Error when retrieving credentials from \
         container-role: Error retrieving metadata: {url}: {last}"
    ))
}

/// botocore's rule for `AWS_CONTAINER_CREDENTIALS_FULL_URI`: https, a loopback address, or
/// the ECS/EKS agents' addresses.
fn check_container_url(full: &str) -> Result<(), String> {
    let parsed =
        url::Url::parse(full).map_err(|e| format!("AWS_CONTAINER_CREDENTIALS_FULL_URI: {e}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    let allowed = [
        "169.254.170.2",
        "169.254.170.23",
        "fd00:ec2::23",
        "localhost",
    ];
    if parsed.scheme() == "https" || loopback || allowed.contains(&bare) {
        Ok(())
    } else {
        Err(format!(
            "ValueError: Unsupported host '{bare}'.  Can only retrieve metadata from a loopback \
             address or one of these hosts: {}",
            allowed.join(", ")
        ))
    }
}

/// `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}` (container and instance
/// endpoints).
fn json_credentials(body: &str, token_key: &str) -> Result<Credentials, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| {
        format!("the credentials endpoint answered something that is not JSON: {e}")
    })?;
    let get = |k: &str| value.get(k).and_then(Value::as_str);
    let (Some(key), Some(secret)) = (get("AccessKeyId"), get("SecretAccessKey")) else {
        return Err(
            "the credentials endpoint answered without AccessKeyId or SecretAccessKey".into(),
        );
    };
    let mut c = Credentials::fixed(key, secret, get(token_key));
    c.expiry = get("Expiration").and_then(parse_time);
    c.remember();
    Ok(c)
}

/// The EC2 instance metadata service; `None` when it is not there (not an error: most
/// machines are not EC2 instances).
async fn instance_metadata(env: &Env) -> Option<Credentials> {
    let base = env
        .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or_else(|| {
            if env
                .get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")
                .is_some_and(|m| m.eq_ignore_ascii_case("ipv6"))
            {
                "http://[fd00:ec2::254]".into()
            } else {
                "http://169.254.169.254".into()
            }
        });
    let base = base.trim_end_matches('/').to_owned();
    let key = format!("imds\n{base}");
    if let Some(c) = cached(&key) {
        return Some(c);
    }
    let timeout = Duration::from_secs_f64(
        env.get("AWS_METADATA_SERVICE_TIMEOUT")
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(1.0),
    );
    let mut headers = Vec::new();
    // IMDSv2's session token; v1 (no token) when the service does not offer one.
    match query::fetch(
        reqwest::Method::PUT,
        &format!("{base}/latest/api/token"),
        &[("x-aws-ec2-metadata-token-ttl-seconds", "21600".to_owned())],
        timeout,
    )
    .await
    {
        Ok((200, token)) => headers.push(("x-aws-ec2-metadata-token", token)),
        Ok((403..=405, _)) => {}
        Ok(_) | Err(_) => return None,
    }
    let prefix = format!("{base}/latest/meta-data/iam/security-credentials/");
    let (status, roles) = query::fetch(reqwest::Method::GET, &prefix, &headers, timeout)
        .await
        .ok()?;
    let role = roles
        .lines()
        .next()
        .filter(|_| status == 200)?
        .trim()
        .to_owned();
    let (status, body) = query::fetch(
        reqwest::Method::GET,
        &format!("{prefix}{role}"),
        &headers,
        timeout,
    )
    .await
    .ok()?;
    if status != 200 {
        return None;
    }
    let c = json_credentials(&body, "Token")
        .ok()?
        .from(format!("instance metadata (role {role})"));
    store(key, &c);
    Some(c)
}

static CACHE: Mutex<Option<HashMap<String, Credentials>>> = Mutex::new(None);

fn cached(key: &str) -> Option<Credentials> {
    let cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    cache
        .as_ref()
        .and_then(|m| m.get(key))
        .filter(|c| c.fresh())
        .cloned()
}

fn store(key: String, credentials: &Credentials) {
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    cache
        .get_or_insert_with(HashMap::new)
        .insert(key, credentials.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_run<T>(
        pairs: &[(&str, &str)],
        profile: Option<&str>,
        secrets: &Map<String, Value>,
        f: impl FnOnce(Result<Credentials, String>) -> T,
    ) -> T {
        let env = Env::from_pairs(pairs);
        let profiles = Profiles::load(&env, profile).unwrap();
        let ctx = Context {
            env: &env,
            profiles: &profiles,
            region: "us-east-1",
            secrets,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        f(rt.block_on(resolve(&ctx)))
    }

    fn files(dir: &std::path::Path, config: &str, credentials: &str) -> Vec<(String, String)> {
        std::fs::write(dir.join("config"), config).unwrap();
        std::fs::write(dir.join("credentials"), credentials).unwrap();
        vec![
            (
                "AWS_CONFIG_FILE".into(),
                dir.join("config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                dir.join("credentials").display().to_string(),
            ),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
        v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
    }

    #[test]
    fn secrets_win_and_partial_secrets_fail() {
        let mut secrets = Map::new();
        secrets.insert("aws_access_key_id".into(), "AKIASECRETS".into());
        secrets.insert("aws_secret_access_key".into(), "s3cr3t-from-secrets".into());
        ctx_run(
            &[
                ("AWS_ACCESS_KEY_ID", "AKIAENV"),
                ("AWS_SECRET_ACCESS_KEY", "x"),
            ],
            None,
            &secrets,
            |c| assert_eq!(c.unwrap().access_key_id, "AKIASECRETS"),
        );
        secrets.remove("aws_secret_access_key");
        ctx_run(&[], None, &secrets, |c| {
            let e = c.unwrap_err();
            assert!(
                e.contains("Partial credentials found in explicit, missing: aws_secret_access_key"),
                "{e}"
            );
        });
    }

    #[test]
    fn environment_then_files_and_explicit_profiles_skip_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = files(
            dir.path(),
            "[profile cfg]\naws_access_key_id = AKIACONFIG\naws_secret_access_key = c\n",
            "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = d\n\
             [ci]\naws_access_key_id = AKIACI\naws_secret_access_key = e\n",
        );
        let none = Map::new();
        ctx_run(&pairs(&env), None, &none, |c| {
            assert_eq!(c.unwrap().access_key_id, "AKIADEFAULT");
        });
        env.push(("AWS_ACCESS_KEY_ID".into(), "AKIAENV".into()));
        env.push(("AWS_SECRET_ACCESS_KEY".into(), "x".into()));
        ctx_run(&pairs(&env), None, &none, |c| {
            assert_eq!(c.unwrap().access_key_id, "AKIAENV");
        });
        // AWS_PROFILE does not hide the environment's keys; aws_profile_name does.
        env.push(("AWS_PROFILE".into(), "ci".into()));
        ctx_run(&pairs(&env), None, &none, |c| {
            assert_eq!(c.unwrap().access_key_id, "AKIAENV");
        });
        ctx_run(&pairs(&env), Some("ci"), &none, |c| {
            assert_eq!(c.unwrap().access_key_id, "AKIACI");
        });
        ctx_run(&pairs(&env), Some("cfg"), &none, |c| {
            assert_eq!(c.unwrap().access_key_id, "AKIACONFIG");
        });
    }

    #[test]
    fn nothing_found_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let env = files(dir.path(), "", "");
        ctx_run(&pairs(&env), None, &Map::new(), |c| {
            let e = c.unwrap_err();
            assert!(
                e.starts_with(
                    "botocore.exceptions.NoCredentialsError: Unable to locate credentials"
                ),
                "{e}"
            );
            assert!(e.contains("set AWS_ACCESS_KEY_ID"), "{e}");
            assert!(e.contains("AWS_WEB_IDENTITY_TOKEN_FILE"), "{e}");
            assert!(
                e.contains(&dir.path().join("credentials").display().to_string()),
                "{e}"
            );
        });
    }

    #[test]
    fn refused_profiles_and_partial_files() {
        let dir = tempfile::tempdir().unwrap();
        let env = files(
            dir.path(),
            "[profile sso]\nsso_session = corp\n[profile half]\naws_access_key_id = AKIA\n",
            "",
        );
        ctx_run(&pairs(&env), Some("sso"), &Map::new(), |c| {
            let e = c.unwrap_err();
            assert!(e.contains("'sso_session'"), "{e}");
        });
        ctx_run(&pairs(&env), Some("half"), &Map::new(), |c| {
            let e = c.unwrap_err();
            assert!(
                e.contains("Partial credentials found in config-file"),
                "{e}"
            );
        });
    }

    #[test]
    fn container_urls_as_botocore_allows() {
        assert!(check_container_url("http://127.0.0.1:8080/creds").is_ok());
        assert!(check_container_url("http://169.254.170.23/v1/credentials").is_ok());
        assert!(check_container_url("https://example.com/creds").is_ok());
        assert!(check_container_url("http://example.com/creds").is_err());
    }

    #[test]
    fn sts_answers() {
        let xml = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>\
                   <Credentials><AccessKeyId>ASIA1</AccessKeyId>\
                   <SecretAccessKey>sts-secret-value</SecretAccessKey>\
                   <SessionToken>sts-token-value</SessionToken>\
                   <Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>\
                   </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        let c = sts_credentials(xml).unwrap();
        assert_eq!(c.access_key_id, "ASIA1");
        assert_eq!(c.session_token.as_deref(), Some("sts-token-value"));
        assert!(c.fresh());
        assert_eq!(
            crate::redact::global().text("sts-secret-value and sts-token-value"),
            "*** and ***"
        );
        let mut stale = c.clone();
        stale.expiry = Some(SystemTime::now() + Duration::from_secs(60));
        assert!(!stale.fresh());
        assert!(!format!("{c:?}").contains("sts-secret-value"));
    }
}
