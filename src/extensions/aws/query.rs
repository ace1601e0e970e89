//! The AWS Query API over HTTP, as botocore speaks it to EC2 and STS: a form-encoded POST
//! (`Action=StopInstances&Version=2016-11-15&InstanceId.1=...`), signed with SigV4 (the
//! `aws-sigv4` crate) or unsigned (STS `AssumeRoleWithWebIdentity`), retried as botocore
//! retries, the XML answer or the service's error returned.
//!
//! Endpoints follow botocore too: `AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL`, then
//! the profile's `endpoint_url`, then `https://<service>.<region>.amazonaws.com` (`.com.cn` in
//! the China regions); `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` keeps only the last one.
//!
//! Retries are configured as boto3 configures the clients chaosaws creates (it passes no
//! `Config(retries=...)`): the mode from `AWS_RETRY_MODE`, else the profile's `retry_mode`,
//! else `standard`; the total attempts from `AWS_MAX_ATTEMPTS`, else the profile's
//! `max_attempts`, else 3 (5 in `legacy` mode). Invalid values fail the call as botocore fails
//! the client's creation.
//!
//! - `standard` (botocore's `retries/standard.py`) retries HTTP 500/502/503/504, the transient
//!   codes (`RequestTimeout`...), the throttling codes (`RequestLimitExceeded`...), a 429 whose
//!   code the operation does not model, STS's `IDPCommunicationError`, and connection errors.
//!   It sleeps `rand() * min(scale * 2^(attempt - 1), 20)` s, `scale` 1 s for throttling and
//!   50 ms otherwise, raised to `x-amz-retry-after` (at most 5 s more). Each client has a retry
//!   quota of 500: a retry costs 5 (throttling) or 14, a success gives some back.
//! - `adaptive` is `standard` here: botocore adds a client-side rate limiter (a token bucket
//!   that slows the client's later requests after throttling), not implemented.
//! - `legacy` (botocore's `data/_retry.json`) retries 429/500/502/503/504/509, the throttling
//!   codes with HTTP 400, and connection errors, sleeping `rand() * 2^(attempt - 1)` s.
//!
//! An answer that is not XML (an error of 500 or more may also be empty or HTML) is botocore's
//! `ResponseParserError`, never retried. An error after the last attempt says `(reached max
//! retries: N)`, as botocore's `ClientError` does.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde_json::{Map, Value};

use super::credentials::Credentials;
use super::profile::{Env, Profiles};

/// A service spoken over the Query API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Service {
    /// EC2, API version 2016-11-15.
    Ec2,
    /// STS, API version 2011-06-15.
    Sts,
}

impl Service {
    fn signing_name(self) -> &'static str {
        match self {
            Self::Ec2 => "ec2",
            Self::Sts => "sts",
        }
    }

    fn version(self) -> &'static str {
        match self {
            Self::Ec2 => "2016-11-15",
            Self::Sts => "2011-06-15",
        }
    }

    /// The suffix of its `AWS_ENDPOINT_URL_<ID>` variable (botocore: the service id, upper-case,
    /// spaces as underscores).
    fn env_id(self) -> &'static str {
        match self {
            Self::Ec2 => "EC2",
            Self::Sts => "STS",
        }
    }
}

/// The URL requests for `service` in `region` go to.
pub(super) fn endpoint(
    service: Service,
    region: &str,
    env: &Env,
    profiles: Option<&Profiles>,
) -> String {
    let configured = if env.flag("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") {
        None
    } else {
        env.get(&format!("AWS_ENDPOINT_URL_{}", service.env_id()))
            .or_else(|| env.get("AWS_ENDPOINT_URL"))
            .or_else(|| {
                profiles.and_then(|p| p.setting(&p.name, "endpoint_url").map(str::to_owned))
            })
    };
    configured.unwrap_or_else(|| {
        let domain = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("https://{}.{region}.{domain}", service.signing_name())
    })
}

/// How a client retries: botocore's retry mode and its total attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RetryPolicy {
    mode: RetryMode,
    max_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetryMode {
    Legacy,
    Standard,
    /// `standard` without the client-side rate limiter (see the module's header).
    Adaptive,
}

impl RetryPolicy {
    /// The policy boto3 gives a client: `AWS_RETRY_MODE` / `AWS_MAX_ATTEMPTS`, else the
    /// profile's `retry_mode` / `max_attempts`, else `standard` and 3 attempts (5 in legacy).
    ///
    /// # Errors
    ///
    /// What botocore raises when it creates the client: `max_attempts` not an integer
    /// (`ValueError`) or below 1, a mode it does not know.
    pub(super) fn configured(env: &Env, profiles: &Profiles) -> Result<Self, String> {
        // botocore's config store: a variable set to nothing is set, to an invalid value.
        let setting = |var: &str, key: &str| {
            env.raw(var)
                .or_else(|| profiles.raw_setting(&profiles.name, key).map(str::to_owned))
        };
        let max_attempts = match setting("AWS_MAX_ATTEMPTS", "max_attempts") {
            None => None,
            Some(text) => {
                // Python's int(): surrounding whitespace and a sign are fine.
                let n: i128 = text.trim().parse().map_err(|_| {
                    format!(
                        "ValueError: invalid literal for int() with base 10: {}",
                        crate::python::repr(&Value::String(text.clone()))
                    )
                })?;
                if n < 1 {
                    return Err(format!(
                        "botocore.exceptions.InvalidMaxRetryAttemptsError: Value provided to \
                         \"max_attempts\": {n} must be an integer greater than or equal to 1."
                    ));
                }
                Some(u32::try_from(n).unwrap_or(u32::MAX))
            }
        };
        let mode = match setting("AWS_RETRY_MODE", "retry_mode").as_deref() {
            None | Some("standard") => RetryMode::Standard,
            Some("legacy") => RetryMode::Legacy,
            Some("adaptive") => RetryMode::Adaptive,
            Some(other) => {
                return Err(format!(
                    "botocore.exceptions.InvalidRetryModeError: Invalid value provided to \
                     \"mode\": \"{other}\" must be one of: ('legacy', 'standard', 'adaptive')"
                ));
            }
        };
        Ok(Self {
            mode,
            max_attempts: max_attempts.unwrap_or(if mode == RetryMode::Legacy { 5 } else { 3 }),
        })
    }

    /// Whether botocore retries an answer (`status` and error `code`; no status: the
    /// connection failed).
    fn retryable(self, service: Service, action: &str, status: Option<u16>, code: &str) -> bool {
        let Some(status) = status else {
            return true;
        };
        match self.mode {
            // `_retry.json`'s policies for every service, EC2 (RequestLimitExceeded and
            // EC2ThrottledException with a 503, a 503 anyway) and STS.
            RetryMode::Legacy => {
                matches!(status, 429 | 500 | 502 | 503 | 504 | 509)
                    || status == 400
                        && (matches!(
                            code,
                            "Throttling"
                                | "ThrottlingException"
                                | "ThrottledException"
                                | "RequestThrottledException"
                                | "ProvisionedThroughputExceededException"
                        ) || service == Service::Sts && code == "IDPCommunicationError")
            }
            RetryMode::Standard | RetryMode::Adaptive => {
                matches!(status, 500 | 502 | 503 | 504)
                    || matches!(
                        code,
                        "RequestTimeout" | "RequestTimeoutException" | "PriorRequestNotComplete"
                    )
                    || throttling(service, action, status, code)
                    || service == Service::Sts && code == "IDPCommunicationError"
            }
        }
    }

    /// Seconds to sleep after the failed `attempt` (1-based).
    fn delay(self, attempt: u32, throttled: bool, retry_after: Option<f64>) -> f64 {
        let growth = 2f64.powi(i32::try_from(attempt - 1).unwrap_or(i32::MAX));
        match self.mode {
            RetryMode::Legacy => jitter() * growth,
            RetryMode::Standard | RetryMode::Adaptive => {
                let scale = if throttled { 1.0 } else { 0.05 };
                let t = jitter() * (scale * growth).min(20.0);
                retry_after.map_or(t, |after| t.max(after.min(t + 5.0)))
            }
        }
    }
}

/// The capacity of a client's retry quota (botocore's `RetryQuota`), and what a retry takes
/// from it: standard mode stops retrying when a client has failed too often.
const QUOTA: u32 = 500;
const RETRY_COST: u32 = 14;
const THROTTLING_RETRY_COST: u32 = 5;

/// A client of one service, as boto3's `client(...)` sets one up: where its calls go, the
/// region it signs for, how it retries, and its retry quota (botocore keeps one per client).
#[derive(Debug)]
pub(super) struct Client {
    /// The service.
    pub(super) service: Service,
    /// The endpoint URL ([`endpoint`]).
    pub(super) endpoint: String,
    /// The region to sign for.
    pub(super) region: String,
    retry: RetryPolicy,
    quota: AtomicU32,
}

impl Client {
    /// A client of `service` in `region`, with the endpoint and retries configured by `env`
    /// and the profile.
    ///
    /// # Errors
    ///
    /// The retry configuration is invalid ([`RetryPolicy::configured`]).
    pub(super) fn new(
        service: Service,
        region: &str,
        env: &Env,
        profiles: &Profiles,
    ) -> Result<Self, String> {
        Ok(Self {
            service,
            endpoint: endpoint(service, region, env, Some(profiles)),
            region: region.to_owned(),
            retry: RetryPolicy::configured(env, profiles)?,
            quota: AtomicU32::new(QUOTA),
        })
    }

    /// Takes `cost` from the retry quota; `false` when not that much is left.
    fn acquire(&self, cost: u32) -> bool {
        self.quota
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(cost)
            })
            .is_ok()
    }

    /// Gives `amount` back to the retry quota, up to its capacity.
    fn release(&self, amount: u32) {
        let _ = self
            .quota
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_add(amount).min(QUOTA))
            });
    }
}

/// An answer of the service: status, headers (lower-case names) and the XML body.
#[derive(Debug)]
pub(super) struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    /// The XML.
    pub(super) body: String,
    retries: u32,
    /// Standard mode's `MaxAttemptsReached`: the answer came at the last attempt allowed.
    max_attempts_reached: bool,
}

impl Answer {
    /// boto3's `ResponseMetadata`: the request id from the body, the HTTP status, the headers,
    /// whether the last attempt allowed was reached (only when it was), the retries made.
    pub(super) fn metadata(&self, request_id: Option<String>) -> Value {
        let mut meta = Map::new();
        if let Some(id) = request_id {
            meta.insert("RequestId".into(), Value::String(id));
        }
        meta.insert("HTTPStatusCode".into(), Value::from(self.status));
        let mut headers = Map::new();
        for (name, value) in &self.headers {
            match headers.get_mut(name) {
                // Repeated headers are joined, as urllib3's header dict does.
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(value);
                }
                _ => {
                    headers.insert(name.clone(), Value::String(value.clone()));
                }
            }
        }
        meta.insert("HTTPHeaders".into(), Value::Object(headers));
        if self.max_attempts_reached {
            meta.insert("MaxAttemptsReached".into(), Value::Bool(true));
        }
        meta.insert("RetryAttempts".into(), Value::from(self.retries));
        Value::Object(meta)
    }
}

/// One call: with which client, as whom, what.
#[derive(Debug)]
pub(super) struct Request<'a> {
    /// The client (service, endpoint, region, retries).
    pub(super) client: &'a Client,
    /// Who signs; `None` sends the request unsigned.
    pub(super) credentials: Option<&'a Credentials>,
    /// `StopInstances`.
    pub(super) action: &'a str,
    /// The action's parameters, serialized (`InstanceId.1`, `Filter.1.Name`...).
    pub(super) params: Vec<(String, String)>,
}

/// Sends a request, retried as the client's [`RetryPolicy`] says (see the module's header).
///
/// # Errors
///
/// The service's error (`botocore.exceptions.ClientError: An error occurred (Code) when calling
/// the Action operation: Message`), an answer that is not XML, or the endpoint could not be
/// reached.
pub(super) async fn call(request: &Request<'_>) -> Result<Answer, String> {
    let client = request.client;
    let policy = client.retry;
    let mut body = form_encode(&[
        ("Action".to_owned(), request.action.to_owned()),
        ("Version".to_owned(), client.service.version().to_owned()),
    ]);
    if !request.params.is_empty() {
        body.push('&');
        body.push_str(&form_encode(&request.params));
    }
    let url = if client.endpoint.ends_with('/') {
        client.endpoint.clone()
    } else {
        format!("{}/", client.endpoint)
    };
    // What this call's last retry took from the quota: a success gives it back.
    let mut taken = None;
    let mut attempt = 1;
    loop {
        let outcome = send_once(request, &url, &body).await;
        // botocore parses an answer before it decides on a retry: one it cannot parse is
        // raised at once.
        let error = match &outcome {
            Ok((status, _, text)) if !(200..300).contains(status) => {
                Some(service_error(*status, text)?)
            }
            _ => None,
        };
        let status = outcome.as_ref().ok().map(|(status, _, _)| *status);
        let code = error.as_ref().map_or("", |(code, _)| code.as_str());
        let retryable = policy.retryable(client.service, request.action, status, code);
        let throttled = status.is_some_and(|s| throttling(client.service, request.action, s, code));
        let (reached, mut retry) = match policy.mode {
            // The legacy handler marks the limit only on an answer it would have retried.
            RetryMode::Legacy => (
                retryable && attempt >= policy.max_attempts,
                retryable && attempt < policy.max_attempts,
            ),
            // The standard one checks the limit first, whatever the answer.
            RetryMode::Standard | RetryMode::Adaptive => (
                attempt >= policy.max_attempts,
                retryable && attempt < policy.max_attempts,
            ),
        };
        if retry && policy.mode != RetryMode::Legacy {
            let cost = if throttled {
                THROTTLING_RETRY_COST
            } else {
                RETRY_COST
            };
            retry = client.acquire(cost);
            if retry {
                taken = Some(cost);
            } else {
                tracing::debug!(
                    "{} {}: not retried, the client's retry quota is spent",
                    client.service.signing_name(),
                    request.action
                );
            }
        }
        if !retry {
            let (status, headers, text) = outcome.map_err(|e| {
                format!(
                    "botocore.exceptions.EndpointConnectionError: Could not connect to the \
                     endpoint URL: \"{url}\" ({e})"
                )
            })?;
            if let Some((code, message)) = error {
                return Err(format!(
                    "botocore.exceptions.ClientError: An error occurred ({code}) when calling \
                     the {} operation{}: {message}",
                    request.action,
                    if reached {
                        format!(" (reached max retries: {})", attempt - 1)
                    } else {
                        String::new()
                    }
                ));
            }
            if policy.mode != RetryMode::Legacy {
                client.release(taken.unwrap_or(1));
            }
            return Ok(Answer {
                status,
                headers,
                body: text,
                retries: attempt - 1,
                max_attempts_reached: reached && policy.mode != RetryMode::Legacy,
            });
        }
        let retry_after = outcome.as_ref().ok().and_then(|(_, headers, _)| {
            let (_, value) = headers.iter().find(|(n, _)| n == "x-amz-retry-after")?;
            // Milliseconds, as Python's int() reads them; a negative or bad value is ignored.
            let ms: i64 = value.trim().parse().ok()?;
            (ms >= 0).then(|| ms as f64 / 1000.0)
        });
        let pause = policy.delay(attempt, throttled, retry_after);
        tracing::debug!(
            "{} {}: retrying in {pause:.2}s (attempt {attempt} of {} failed)",
            client.service.signing_name(),
            request.action,
            policy.max_attempts
        );
        // A legacy back-off can outgrow a Duration (2^64 s): it then never ends, as in Python.
        tokio::time::sleep(Duration::try_from_secs_f64(pause).unwrap_or(Duration::MAX)).await;
        attempt += 1;
    }
}

/// Whether botocore's standard mode takes an answer for throttling: a throttling code, or a
/// 429 whose code the operation does not model.
fn throttling(service: Service, action: &str, status: u16, code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "TransactionInProgressException"
            | "RequestLimitExceeded"
            | "BandwidthLimitExceeded"
            | "LimitExceededException"
            | "RequestThrottled"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "EC2ThrottledException"
    ) || status == 429 && !modeled_error(service, action, code)
}

/// Whether `code` is one of the errors the operation's model lists (EC2's model lists none;
/// none of these is marked retryable).
fn modeled_error(service: Service, action: &str, code: &str) -> bool {
    let modeled: &[&str] = match (service, action) {
        (Service::Sts, "AssumeRole") => &[
            "MalformedPolicyDocument",
            "PackedPolicyTooLarge",
            "RegionDisabledException",
            "ExpiredTokenException",
            "InvalidContextAssertion",
        ],
        (Service::Sts, "AssumeRoleWithWebIdentity") => &[
            "MalformedPolicyDocument",
            "PackedPolicyTooLarge",
            "IDPRejectedClaim",
            "IDPCommunicationError",
            "InvalidIdentityToken",
            "ExpiredTokenException",
            "RegionDisabledException",
        ],
        _ => &[],
    };
    modeled.contains(&code)
}

/// The code and message of an error answer, as botocore's parser finds them: a 5xx with an
/// empty or HTML body is generic (its status and reason), anything else must be XML.
fn service_error(status: u16, text: &str) -> Result<(String, String), String> {
    let generic = || {
        let reason = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or_default();
        (status.to_string(), reason.to_owned())
    };
    let trimmed = text.trim_ascii();
    if status >= 500 && (trimmed.is_empty() || trimmed.starts_with("<html>")) {
        return Ok(generic());
    }
    roxmltree::Document::parse(text).map_err(|e| unparsable(text, &e))?;
    Ok(error_code(text).unwrap_or_else(generic))
}

/// botocore's `ResponseParserError` for a body that is not XML. The reason in parentheses is
/// expat's for an empty body or one that does not start with a tag, roxmltree's otherwise.
pub(super) fn unparsable(text: &str, error: &roxmltree::Error) -> String {
    let skipped = text.len() - text.trim_ascii_start().len();
    let before = &text[..skipped];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1);
    let reason = if skipped == text.len() {
        format!("no element found: line {line}, column {column}")
    } else if !text[skipped..].starts_with('<') {
        format!("syntax error: line {line}, column {column}")
    } else {
        error.to_string()
    };
    format!(
        "botocore.parsers.ResponseParserError: Unable to parse response ({reason}), invalid XML \
         received. Further retries may succeed:\n{}",
        bytes_repr(text.as_bytes())
    )
}

/// Python's `repr()` of bytes: `b'...'`.
fn bytes_repr(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut out = format!("b{quote}");
    for &byte in bytes {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if char::from(byte) == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out.push(quote);
    out
}

type Raw = (u16, Vec<(String, String)>, String);

async fn send_once(request: &Request<'_>, url: &str, body: &str) -> Result<Raw, String> {
    const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
    let mut builder = client()
        .post(url)
        .header("content-type", CONTENT_TYPE)
        .body(body.to_owned());
    if let Some(credentials) = request.credentials {
        let headers = sign_headers(
            credentials,
            &request.client.region,
            request.client.service.signing_name(),
            url,
            &[("content-type", CONTENT_TYPE)],
            body,
        )?;
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
    }
    let response = builder.send().await.map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let text = response.text().await.map_err(|e| describe(&e))?;
    Ok((status, headers, text))
}

/// A reqwest error with its causes (reqwest's own text says only "error sending request").
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`) for a request.
fn sign_headers(
    credentials: &Credentials,
    region: &str,
    service: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Vec<(String, String)>, String> {
    let identity: Identity = aws_credential_types::Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.clone(),
        credentials.session_token.clone(),
        None,
        "chaosflow",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| format!("cannot sign the request to {url}: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("cannot sign the request to {url}: {e}"))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect())
}

/// The process's HTTP client for AWS: chaosflow's TLS policy, botocore's 60 s timeouts.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        chaosflow_sinks::reqwest_client(true)
            .connect_timeout(Duration::from_secs(60))
            .read_timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default()
    })
}

/// A plain GET or PUT for the credential endpoints of containers and instances (not the Query
/// API): status and body.
pub(super) async fn fetch(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, String)],
    timeout: Duration,
) -> Result<(u16, String), String> {
    let mut builder = client().request(method, url).timeout(timeout);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let response = builder.send().await.map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| describe(&e))?;
    Ok((status, text))
}

/// The error code and message of an error document: EC2's
/// `<Response><Errors><Error><Code>` or STS's `<ErrorResponse><Error><Code>`.
fn error_code(text: &str) -> Option<(String, String)> {
    let doc = roxmltree::Document::parse(text).ok()?;
    let error = doc
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "Error")?;
    let child = |name: &str| {
        error
            .children()
            .find(|c| c.is_element() && c.tag_name().name() == name)
            .map(super::shapes::text)
    };
    Some((child("Code")?, child("Message").unwrap_or_default()))
}

/// The request id of an answer: `<requestId>` (EC2) or `<ResponseMetadata><RequestId>` (STS).
pub(super) fn request_id(doc: &roxmltree::Document<'_>) -> Option<String> {
    doc.descendants()
        .find(|n| n.is_element() && matches!(n.tag_name().name(), "requestId" | "RequestId"))
        .map(super::shapes::text)
}

/// A number in [0, 1) for back-off jitter, from the OS's random source (through uuid v4).
fn jitter() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u64_pair().0 >> 11;
    // 53 random bits: every f64 in [0, 1) with that resolution.
    bits as f64 / (1u64 << 53) as f64
}

/// `application/x-www-form-urlencoded`, as botocore encodes Query API bodies (`urlencode` with
/// `quote`: only `A-Za-z0-9-_.~` stay as they are; spaces are `%20`).
pub(super) fn form_encode(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent(&mut out, key);
        out.push('=');
        percent(&mut out, value);
    }
    out
}

fn percent(out: &mut String, s: &str) {
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_in_botocores_order() {
        let env = Env::from_pairs(&[]);
        assert_eq!(
            endpoint(Service::Ec2, "eu-west-1", &env, None),
            "https://ec2.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            endpoint(Service::Sts, "cn-north-1", &env, None),
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
        let env = Env::from_pairs(&[
            ("AWS_ENDPOINT_URL", "http://all"),
            ("AWS_ENDPOINT_URL_STS", "http://sts"),
        ]);
        assert_eq!(endpoint(Service::Ec2, "r", &env, None), "http://all");
        assert_eq!(endpoint(Service::Sts, "r", &env, None), "http://sts");
        let env = Env::from_pairs(&[
            ("AWS_ENDPOINT_URL", "http://all"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "True"),
        ]);
        assert_eq!(
            endpoint(Service::Ec2, "us-east-1", &env, None),
            "https://ec2.us-east-1.amazonaws.com"
        );
    }

    #[test]
    fn errors_of_ec2_and_sts() {
        let ec2 = "<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code>\
                   <Message>The instance ID 'i-1' does not exist</Message></Error></Errors>\
                   <RequestID>x</RequestID></Response>";
        assert_eq!(
            error_code(ec2),
            Some((
                "InvalidInstanceID.NotFound".into(),
                "The instance ID 'i-1' does not exist".into()
            ))
        );
        let sts = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
                   <Type>Sender</Type><Code>AccessDenied</Code><Message>no</Message></Error>\
                   </ErrorResponse>";
        assert_eq!(error_code(sts), Some(("AccessDenied".into(), "no".into())));
        assert_eq!(error_code("<html>"), None);
    }

    #[test]
    fn form_encoding_like_botocore() {
        let pairs = vec![
            ("Filter.1.Name".to_owned(), "tag:app name".to_owned()),
            ("Filter.1.Value.1".to_owned(), "a/b=c*".to_owned()),
        ];
        assert_eq!(
            form_encode(&pairs),
            "Filter.1.Name=tag%3Aapp%20name&Filter.1.Value.1=a%2Fb%3Dc%2A"
        );
    }

    fn policy(pairs: &[(&str, &str)]) -> Result<RetryPolicy, String> {
        let env = Env::from_pairs(pairs);
        RetryPolicy::configured(&env, &Profiles::load(&env, None).unwrap())
    }

    #[test]
    fn retry_policy_from_environment_then_profile() {
        let standard = |max_attempts| RetryPolicy {
            mode: RetryMode::Standard,
            max_attempts,
        };
        assert_eq!(policy(&[]), Ok(standard(3)));
        assert_eq!(policy(&[("AWS_MAX_ATTEMPTS", " 7 ")]), Ok(standard(7)));
        assert_eq!(
            policy(&[("AWS_RETRY_MODE", "legacy")]).map(|p| (p.mode, p.max_attempts)),
            Ok((RetryMode::Legacy, 5))
        );
        assert_eq!(
            policy(&[("AWS_RETRY_MODE", "adaptive"), ("AWS_MAX_ATTEMPTS", "1")])
                .map(|p| (p.mode, p.max_attempts)),
            Ok((RetryMode::Adaptive, 1))
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::write(
            &config,
            "[default]\nretry_mode = legacy\nmax_attempts = 2\n[profile odd]\nretry_mode =\n",
        )
        .unwrap();
        let file = ("AWS_CONFIG_FILE", config.to_str().unwrap());
        assert_eq!(
            policy(&[file]).map(|p| (p.mode, p.max_attempts)),
            Ok((RetryMode::Legacy, 2))
        );
        assert_eq!(
            policy(&[
                file,
                ("AWS_RETRY_MODE", "standard"),
                ("AWS_MAX_ATTEMPTS", "4")
            ]),
            Ok(standard(4))
        );
        // botocore's errors, an empty value included.
        let err = policy(&[file, ("AWS_PROFILE", "odd")]).unwrap_err();
        assert!(err.contains("\"mode\": \"\" must be one of"), "{err}");
        assert_eq!(
            policy(&[("AWS_MAX_ATTEMPTS", "abc")]),
            Err("ValueError: invalid literal for int() with base 10: 'abc'".into())
        );
        let err = policy(&[("AWS_MAX_ATTEMPTS", "")]).unwrap_err();
        assert!(err.ends_with("base 10: ''"), "{err}");
        assert_eq!(
            policy(&[("AWS_MAX_ATTEMPTS", "0")]),
            Err(
                "botocore.exceptions.InvalidMaxRetryAttemptsError: Value provided to \
                 \"max_attempts\": 0 must be an integer greater than or equal to 1."
                    .into()
            )
        );
        assert_eq!(
            policy(&[("AWS_RETRY_MODE", "Standard")]),
            Err(
                "botocore.exceptions.InvalidRetryModeError: Invalid value provided to \"mode\": \
                 \"Standard\" must be one of: ('legacy', 'standard', 'adaptive')"
                    .into()
            )
        );
    }

    #[test]
    fn what_each_mode_retries() {
        let standard = policy(&[]).unwrap();
        let legacy = policy(&[("AWS_RETRY_MODE", "legacy")]).unwrap();
        let ec2 = |p: RetryPolicy, status, code| p.retryable(Service::Ec2, "X", status, code);
        for (status, code, by_standard, by_legacy) in [
            (None, "", true, true),
            (Some(200), "", false, false),
            (Some(500), "500", true, true),
            (Some(503), "RequestLimitExceeded", true, true),
            (Some(501), "501", false, false),
            (Some(509), "509", false, true),
            (Some(429), "Anything", true, true),
            (Some(400), "Throttling", true, true),
            (Some(400), "RequestLimitExceeded", true, false),
            (Some(400), "RequestTimeout", true, false),
            (Some(400), "InvalidInstanceID.NotFound", false, false),
            (Some(403), "Throttling", true, false),
        ] {
            assert_eq!(
                ec2(standard, status, code),
                by_standard,
                "{status:?} {code}"
            );
            assert_eq!(ec2(legacy, status, code), by_legacy, "{status:?} {code}");
        }
        let sts = |status, action, code| standard.retryable(Service::Sts, action, status, code);
        assert!(sts(Some(400), "AssumeRole", "IDPCommunicationError"));
        assert!(!ec2(standard, Some(400), "IDPCommunicationError"));
        // A 429 is throttling unless the operation models its code.
        assert!(sts(Some(429), "AssumeRole", "Whatever"));
        assert!(!sts(Some(429), "AssumeRole", "RegionDisabledException"));
        assert!(throttling(Service::Ec2, "X", 503, "EC2ThrottledException"));
        assert!(!throttling(Service::Ec2, "X", 503, "503"));
    }

    #[test]
    fn back_off_bounds() {
        let standard = policy(&[]).unwrap();
        let legacy = policy(&[("AWS_RETRY_MODE", "legacy")]).unwrap();
        for _ in 0..200 {
            assert!(standard.delay(1, false, None) < 0.05);
            assert!(standard.delay(3, false, None) < 0.2);
            assert!(standard.delay(2, true, None) < 2.0);
            assert!(standard.delay(10, true, None) < 20.0);
            assert!(legacy.delay(3, false, None) < 4.0);
            // x-amz-retry-after raises the delay, by 5 s at most.
            let d = standard.delay(1, false, Some(2.5));
            assert!((2.5..2.55).contains(&d), "{d}");
            assert!(standard.delay(1, true, Some(60.0)) < 6.0);
        }
        assert!(legacy.delay(70, false, None).is_finite());
    }

    #[test]
    fn retry_quota_per_client() {
        let env = Env::from_pairs(&[]);
        let profiles = Profiles::load(&env, None).unwrap();
        let client = Client::new(Service::Ec2, "us-east-1", &env, &profiles).unwrap();
        let taken = (0..100).take_while(|_| client.acquire(RETRY_COST)).count();
        assert_eq!(taken, 35, "500 / 14");
        // 10 left: two throttled retries.
        assert!(client.acquire(THROTTLING_RETRY_COST));
        assert!(client.acquire(THROTTLING_RETRY_COST));
        assert!(!client.acquire(THROTTLING_RETRY_COST));
        client.release(RETRY_COST);
        assert!(client.acquire(RETRY_COST));
        client.release(10_000);
        assert_eq!(client.quota.load(Ordering::Relaxed), QUOTA);
    }

    #[test]
    fn error_answers_as_botocore_parses_them() {
        let unavailable = Ok(("503".to_owned(), "Service Unavailable".to_owned()));
        assert_eq!(service_error(503, ""), unavailable);
        assert_eq!(
            service_error(503, "\n<html><body>busy</body></html>"),
            unavailable
        );
        assert_eq!(
            service_error(503, "Service Unavailable"),
            Err(
                "botocore.parsers.ResponseParserError: Unable to parse response (syntax \
                 error: line 1, column 0), invalid XML received. Further retries may \
                 succeed:\nb'Service Unavailable'"
                    .into()
            )
        );
        let empty = service_error(429, "").unwrap_err();
        assert!(
            empty.contains("(no element found: line 1, column 0)") && empty.ends_with("\nb''"),
            "{empty}"
        );
        let ec2 = "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>slow \
                   down</Message></Error></Errors></Response>";
        assert_eq!(
            service_error(503, ec2),
            Ok(("RequestLimitExceeded".into(), "slow down".into()))
        );
        assert_eq!(bytes_repr(b"it's\t\\\x80"), "b\"it's\\t\\\\\\x80\"");
        assert_eq!(bytes_repr(b"'\""), "b'\\'\"'");
    }

    #[test]
    fn metadata_says_when_the_last_attempt_answered() {
        let answer = Answer {
            status: 200,
            headers: vec![],
            body: String::new(),
            retries: 2,
            max_attempts_reached: true,
        };
        let meta = answer.metadata(Some("r".into()));
        let keys: Vec<&String> = meta.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "RequestId",
                "HTTPStatusCode",
                "HTTPHeaders",
                "MaxAttemptsReached",
                "RetryAttempts"
            ]
        );
    }

    #[test]
    fn jitter_is_a_fraction() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }

    #[test]
    fn signed_headers() {
        let credentials = Credentials::fixed("AKIDEXAMPLE", "secret", Some("token"));
        let headers = sign_headers(
            &credentials,
            "us-east-1",
            "ec2",
            "https://ec2.us-east-1.amazonaws.com/",
            &[("content-type", "application/x-www-form-urlencoded")],
            "Action=DescribeInstances&Version=2016-11-15",
        )
        .unwrap();
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"authorization"), "{names:?}");
        assert!(names.contains(&"x-amz-date"));
        assert!(names.contains(&"x-amz-security-token"));
        let auth = &headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
        assert!(auth.contains("/us-east-1/ec2/aws4_request"));
        assert!(!auth.contains("secret"));
    }
}
