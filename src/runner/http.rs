//! The `http` provider: one HTTP call, as `chaos` makes it with `requests`.
//!
//! `url`, `headers`, `timeout` (a number, or `[connect, read]`) and `arguments` are
//! substituted. A GET sends `arguments` as query parameters; other methods send them as a JSON
//! body when `headers` has exactly `Content-Type: application/json`, else form-encoded. The
//! output is `{"status", "headers", "body"}` with the body parsed as JSON only when the
//! response's Content-Type is exactly `application/json`. No status code is a failure;
//! connection errors and timeouts are.
//!
//! When the run is traced (an OTLP sink), the request carries the activity span's W3C
//! `traceparent`, unless the experiment sets one itself.

use std::time::Duration;

use serde_json::{Map, Value, json};
use url::Url;

use super::ProviderError;
use crate::http_client::{self, Request};
use crate::python;
use crate::substitute::{Scope, substitute};

/// Runs an http provider and returns its output.
pub(crate) async fn run(
    provider: &Map<String, Value>,
    has_tolerance: bool,
    scope: &Scope,
    traceparent: Option<&str>,
) -> Result<Value, ProviderError> {
    let url = provider
        .get("url")
        .map(|u| substitute(u, scope))
        .ok_or_else(|| ProviderError::Fatal("a HTTP activity must have a URL".into()))?;
    let url_text = python::to_str(&url);
    let method = provider
        .get("method")
        .map_or_else(|| "GET".to_owned(), |m| python::to_str(m).to_uppercase());
    let headers = match provider.get("headers").map(|h| substitute(h, scope)) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(h)) => h,
        Some(other) => {
            return Err(ProviderError::Fatal(format!(
                "http headers must be a mapping, not {}",
                python::type_name(&other)
            )));
        }
    };
    let (connect_timeout, read_timeout) =
        timeouts(provider.get("timeout").map(|t| substitute(t, scope)))?;
    let mut arguments = provider.get("arguments").cloned().unwrap_or(Value::Null);
    if python::truthy(&arguments) && !scope.is_empty() {
        arguments = substitute(&arguments, scope);
    }
    let verify_tls = provider.get("verify_tls").is_none_or(python::truthy);
    let max_retries = provider
        .get("max_retries")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(u64::from(u32::MAX)) as u32;

    let mut parsed = Url::parse(&url_text).map_err(|e| {
        ProviderError::Fatal(format!(
            "invalid URL '{url_text}': {e} (use an absolute http(s) URL)"
        ))
    })?;
    let mut header_list = Vec::with_capacity(headers.len());
    for (name, value) in &headers {
        let Value::String(v) = value else {
            return Err(ProviderError::Fatal(format!(
                "header '{name}' must be a string, not {}",
                python::type_name(value)
            )));
        };
        header_list.push((name.clone(), v.clone()));
    }
    if let Some(traceparent) = traceparent
        && !headers
            .keys()
            .any(|n| n.eq_ignore_ascii_case("traceparent"))
    {
        header_list.push(("traceparent".into(), traceparent.to_owned()));
    }

    let mut body = None;
    if method == "GET" {
        let query = encode_params(&arguments);
        if !query.is_empty() {
            let joined = match parsed.query() {
                Some(existing) if !existing.is_empty() => format!("{existing}&{query}"),
                _ => query,
            };
            parsed.set_query(Some(&joined));
        }
    } else if headers.get("Content-Type").and_then(Value::as_str) == Some("application/json") {
        if !arguments.is_null() {
            body = Some(python::json_dumps(&arguments).into_bytes());
        }
    } else {
        match &arguments {
            Value::Null => {}
            Value::String(s) => body = Some(s.clone().into_bytes()),
            other => {
                let form = encode_params(other);
                if !header_list
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                {
                    header_list.push((
                        "Content-Type".into(),
                        "application/x-www-form-urlencoded".into(),
                    ));
                }
                body = Some(form.into_bytes());
            }
        }
    }

    let request = Request {
        method,
        url: parsed,
        headers: header_list,
        body,
    };
    let options = http_client::Options {
        connect_timeout,
        read_timeout,
        verify_tls,
        max_retries,
    };
    let response = match http_client::send(request, options).await {
        Ok(r) => r,
        Err(http_client::Error::Connect(e)) => {
            return Err(ProviderError::Failed(format!(
                "failed to connect to {url_text}: {e}"
            )));
        }
        Err(http_client::Error::ReadTimeout) => {
            return Err(ProviderError::Failed(
                "activity took too long to complete".into(),
            ));
        }
        Err(e) => return Err(ProviderError::Fatal(format!("{url_text}: {e}"))),
    };

    let body = if response.header("Content-Type") == Some("application/json") {
        let text = response.text();
        serde_json::from_str(&text).map_err(|e| {
            ProviderError::Fatal(format!(
                "{url_text} answered Content-Type application/json with a body that is not \
                 JSON: {e}"
            ))
        })?
    } else {
        Value::String(response.text())
    };
    if !has_tolerance && response.status > 399 {
        tracing::warn!(
            "This HTTP call returned a response with a HTTP status code above 400. This may \
             indicate some error and not what you expected. Please have a look at the logs."
        );
    }
    let headers: Map<String, Value> = response
        .headers
        .into_iter()
        .map(|(n, v)| (n, Value::String(v)))
        .collect();
    Ok(json!({"status": response.status, "headers": headers, "body": body}))
}

/// `requests`' `timeout`: one number for both, or `[connect, read]`.
fn timeouts(value: Option<Value>) -> Result<(Option<Duration>, Option<Duration>), ProviderError> {
    let secs = |v: &Value| -> Result<Option<Duration>, ProviderError> {
        match v {
            Value::Null => Ok(None),
            Value::Number(n) => {
                let s = n.as_f64().unwrap_or(0.0);
                if s <= 0.0 {
                    return Err(ProviderError::Fatal(format!(
                        "http timeout must be positive, not {}",
                        python::repr(v)
                    )));
                }
                Ok(Some(
                    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX),
                ))
            }
            other => Err(ProviderError::Fatal(format!(
                "http timeout must be a number or [connect, read], not {}",
                python::repr(other)
            ))),
        }
    };
    match value {
        None | Some(Value::Null) => Ok((None, None)),
        Some(Value::Array(pair)) if pair.len() == 2 => Ok((secs(&pair[0])?, secs(&pair[1])?)),
        Some(v) => {
            let t = secs(&v)?;
            Ok((t, t))
        }
    }
}

/// `urlencode(params, doseq=True)` with `quote_plus`, as `requests` encodes `params`/`data`.
fn encode_params(params: &Value) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: &Value| match v {
        Value::Null => {}
        Value::Array(items) => {
            for item in items.iter().filter(|i| !i.is_null()) {
                pairs.push((k.to_owned(), python::to_str(item)));
            }
        }
        other => pairs.push((k.to_owned(), python::to_str(other))),
    };
    match params {
        Value::Object(map) => map.iter().for_each(|(k, v)| push(k, v)),
        // A list of [key, value] pairs.
        Value::Array(items) => {
            for item in items {
                if let Some([k, v]) = item.as_array().map(Vec::as_slice) {
                    push(&python::to_str(k), v);
                }
            }
        }
        Value::String(s) => return s.clone(),
        _ => {}
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Python's `urllib.parse.quote_plus`.
fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_encode_like_requests() {
        assert_eq!(
            encode_params(
                &json!({"a": 1, "b": "two words", "c": [1, 2], "d": null, "e": true, "f": "x/y*"})
            ),
            "a=1&b=two+words&c=1&c=2&e=True&f=x%2Fy%2A"
        );
        assert_eq!(encode_params(&json!("raw=1&x")), "raw=1&x");
    }

    #[test]
    fn timeout_shapes() {
        assert_eq!(timeouts(None).unwrap(), (None, None));
        let two = Some(Duration::from_secs(2));
        assert_eq!(timeouts(Some(json!(2))).unwrap(), (two, two));
        assert_eq!(
            timeouts(Some(json!([1, 2]))).unwrap(),
            (Some(Duration::from_secs(1)), two)
        );
        assert!(timeouts(Some(json!("soon"))).is_err());
    }
}
