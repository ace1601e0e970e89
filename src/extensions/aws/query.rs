//! The AWS Query API over HTTP, as botocore speaks it to EC2 and STS: a form-encoded POST
//! (`Action=StopInstances&Version=2016-11-15&InstanceId.1=...`), signed with SigV4 (the
//! `aws-sigv4` crate) or unsigned (STS `AssumeRoleWithWebIdentity`), retried like botocore's
//! default ("legacy") mode, the XML answer or the service's error returned.
//!
//! Endpoints follow botocore too: `AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL`, then
//! the profile's `endpoint_url`, then `https://<service>.<region>.amazonaws.com` (`.com.cn` in
//! the China regions); `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` keeps only the last one.

use std::sync::OnceLock;
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

/// An answer of the service: status, headers (lower-case names) and the XML body.
#[derive(Debug)]
pub(super) struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    /// The XML.
    pub(super) body: String,
    retries: u32,
}

impl Answer {
    /// boto3's `ResponseMetadata`: the request id from the body, the HTTP status, the headers,
    /// the retries made.
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
        meta.insert("RetryAttempts".into(), Value::from(self.retries));
        Value::Object(meta)
    }
}

/// One call: where, as whom, what.
#[derive(Debug)]
pub(super) struct Request<'a> {
    /// The service.
    pub(super) service: Service,
    /// The endpoint URL ([`endpoint`]).
    pub(super) endpoint: &'a str,
    /// The region to sign for.
    pub(super) region: &'a str,
    /// Who signs; `None` sends the request unsigned.
    pub(super) credentials: Option<&'a Credentials>,
    /// `StopInstances`.
    pub(super) action: &'a str,
    /// The action's parameters, serialized (`InstanceId.1`, `Filter.1.Name`...).
    pub(super) params: Vec<(String, String)>,
}

/// Sends a request, with botocore's retries: up to 5 attempts when the connection fails, the
/// service answers 5xx or 429, or throttles; sleeping `rand() * 2^(attempt - 1)` seconds.
///
/// # Errors
///
/// The service's error (`botocore.exceptions.ClientError: An error occurred (Code) when calling
/// the Action operation: Message`), or the endpoint could not be reached.
pub(super) async fn call(request: &Request<'_>) -> Result<Answer, String> {
    const MAX_ATTEMPTS: u32 = 5;
    let mut body = form_encode(&[
        ("Action".to_owned(), request.action.to_owned()),
        ("Version".to_owned(), request.service.version().to_owned()),
    ]);
    if !request.params.is_empty() {
        body.push('&');
        body.push_str(&form_encode(&request.params));
    }
    let url = if request.endpoint.ends_with('/') {
        request.endpoint.to_owned()
    } else {
        format!("{}/", request.endpoint)
    };
    let mut attempt = 1;
    loop {
        let outcome = send_once(request, &url, &body).await;
        let retryable = match &outcome {
            Ok((status, _, text)) => {
                *status >= 500 || *status == 429 || {
                    *status >= 400 && error_code(text).is_some_and(|(code, _)| is_throttling(&code))
                }
            }
            Err(_) => true,
        };
        if !retryable || attempt >= MAX_ATTEMPTS {
            let (status, headers, text) = outcome.map_err(|e| {
                format!(
                    "botocore.exceptions.EndpointConnectionError: Could not connect to the \
                     endpoint URL: \"{url}\" ({e})"
                )
            })?;
            if !(200..300).contains(&status) {
                let (code, message) = error_code(&text).unwrap_or_else(|| {
                    (
                        status.to_string(),
                        reqwest::StatusCode::from_u16(status)
                            .ok()
                            .and_then(|s| s.canonical_reason())
                            .unwrap_or_default()
                            .to_owned(),
                    )
                });
                return Err(format!(
                    "botocore.exceptions.ClientError: An error occurred ({code}) when calling \
                     the {} operation{}: {message}",
                    request.action,
                    if attempt > 1 {
                        format!(" (reached max retries: {})", attempt - 1)
                    } else {
                        String::new()
                    }
                ));
            }
            return Ok(Answer {
                status,
                headers,
                body: text,
                retries: attempt - 1,
            });
        }
        let pause = jitter() * f64::from(1u32 << (attempt - 1));
        tracing::debug!(
            "{} {}: retrying in {pause:.2}s (attempt {attempt} failed)",
            request.service.signing_name(),
            request.action
        );
        tokio::time::sleep(Duration::from_secs_f64(pause)).await;
        attempt += 1;
    }
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
            request.region,
            request.service.signing_name(),
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

/// The error codes botocore's legacy retry mode retries.
fn is_throttling(code: &str) -> bool {
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
            | "RequestTimeout"
            | "RequestTimeoutException"
            | "IDPCommunicationError"
    )
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
