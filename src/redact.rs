//! Keeping secrets out of everything chaosflow writes: logs, the journal and events.
//!
//! `chaos` copies inline secrets into the journal and logs substituted arguments verbatim.
//! chaosflow instead registers every secret value of a run (inline or read from the
//! environment) here as soon as it is known, and every writer passes its text through
//! [`global()`]: occurrences become `***`. Values of credential-bearing headers
//! (`Authorization`, cookies, API keys...) in `headers` mappings are masked as well.
//! Values shorter than [`MIN_SECRET_LEN`] characters are not masked: masking every `1` or `on`
//! would garble the output without protecting anything.

use std::borrow::Cow;
use std::sync::{PoisonError, RwLock};

use serde_json::Value;

/// Shortest secret value that gets masked.
pub const MIN_SECRET_LEN: usize = 4;
/// What a secret becomes.
pub const MASK: &str = "***";

/// The set of secret strings to mask.
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: RwLock<Vec<String>>,
}

static GLOBAL: Redactor = Redactor {
    secrets: RwLock::new(Vec::new()),
};

/// The process-wide redactor every writer uses.
pub fn global() -> &'static Redactor {
    &GLOBAL
}

impl Redactor {
    /// Registers secret values (strings, and strings nested in arrays and objects).
    pub fn register<'a>(&self, values: impl IntoIterator<Item = &'a Value>) {
        let mut found = Vec::new();
        for value in values {
            collect_strings(value, &mut found);
        }
        if found.is_empty() {
            return;
        }
        let mut secrets = self.secrets.write().unwrap_or_else(PoisonError::into_inner);
        for s in found {
            if s.chars().count() >= MIN_SECRET_LEN && !secrets.contains(&s) {
                secrets.push(s);
            }
        }
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Masks secrets in a text.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let secrets = self.secrets.read().unwrap_or_else(PoisonError::into_inner);
        if secrets.is_empty() || !secrets.iter().any(|s| text.contains(s.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_owned();
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        Cow::Owned(out)
    }

    /// Masks secrets and credential headers throughout a JSON value, in place.
    pub fn value(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(masked) = self.text(s) {
                    *s = masked;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if key.eq_ignore_ascii_case("headers")
                        && let Value::Object(headers) = v
                    {
                        for (name, header) in headers.iter_mut() {
                            if is_credential_header(name) && !header.is_null() {
                                *header = Value::String(MASK.into());
                            }
                        }
                    }
                    self.value(v);
                }
            }
            _ => {}
        }
    }
}

fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// Whether a header carries credentials.
pub fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "x-api-key"
    ) || ["token", "secret", "password", "api-key", "apikey"]
        .iter()
        .any(|w| n.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_registered_values_and_credential_headers() {
        let r = Redactor::default();
        r.register(&[
            json!("s3cr3t-token"),
            json!({"nested": "hunter22"}),
            json!("no"),
        ]);
        assert_eq!(r.text("Bearer s3cr3t-token here"), "Bearer *** here");
        assert_eq!(r.text("say no"), "say no");
        let mut v = json!({
            "output": {"stdout": "pw=hunter22\n"},
            "provider": {"headers": {"Authorization": "Basic abc", "Accept": "*/*", "X-Auth-Token": "t"}}
        });
        r.value(&mut v);
        assert_eq!(
            v,
            json!({
                "output": {"stdout": "pw=***\n"},
                "provider": {"headers": {"Authorization": "***", "Accept": "*/*", "X-Auth-Token": "***"}}
            })
        );
    }

    #[test]
    fn longer_secrets_win() {
        let r = Redactor::default();
        r.register(&[json!("abcd"), json!("abcdefgh")]);
        assert_eq!(r.text("xabcdefghx abcd"), "x***x ***");
    }
}
