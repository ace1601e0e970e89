//! Loading an experiment from a local JSON/YAML file or an http(s) URL.
//!
//! Parsing keeps the document as written (key order, unknown keys), because the journal shows
//! it back. Syntax errors name the file, the line and the column. YAML is read as PyYAML reads
//! it for `chaos` (YAML 1.1 resolution: `yes` is true but `y` a string, `0755` is octal...).

use std::path::Path;

use serde_json::Value;
use url::Url;

use crate::http_client;

/// Why an experiment could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Neither an existing path nor a URL (`chaos`: `Path "X" does not exist.`).
    #[error("Path \"{0}\" does not exist.")]
    NotFound(String),
    /// A URL with a scheme other than http/https.
    #[error("'{0}' is not a supported source scheme.")]
    Scheme(String),
    /// A local file whose extension is not .json/.yaml/.yml.
    #[error("{0}: only files with json, yaml or yml extensions are supported")]
    Extension(String),
    /// The file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        error: std::io::Error,
    },
    /// Malformed JSON or YAML.
    #[error("{source_name}:{line}:{column}: invalid {format}: {message}")]
    Syntax {
        /// File or URL.
        source_name: String,
        /// `JSON` or `YAML`.
        format: &'static str,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
        /// What the parser expected.
        message: String,
    },
    /// The URL could not be fetched.
    #[error("Failed to fetch the experiment: {0}")]
    Fetch(String),
    /// The server answered something that is not an experiment.
    #[error("{0}")]
    Content(String),
}

/// A loaded experiment document and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The parsed document, exactly as written.
    pub document: Value,
    /// The source as given on the command line (for messages).
    pub source: String,
}

/// Loads SOURCE: an existing local path, else an http(s) URL.
///
/// `bearer` is the loader token (`CHAOSTOOLKIT_LOADER_AUTH_BEARER_TOKEN`), `auth` the
/// `type value` credentials that settings' `auths:` give for the URL's host.
///
/// # Errors
///
/// See [`LoadError`].
pub async fn load(
    source: &str,
    verify_tls: bool,
    authorization: Option<String>,
) -> Result<Loaded, LoadError> {
    let path = Path::new(source);
    if path.exists() {
        let document = load_file(path)?;
        return Ok(Loaded {
            document,
            source: source.to_owned(),
        });
    }
    let url = match Url::parse(source) {
        Ok(url) => url,
        Err(_) => return Err(LoadError::NotFound(source.to_owned())),
    };
    // A Windows-looking `c:\x` or a bare word parse as URLs with odd schemes; keep chaos' rule:
    // no scheme or a missing path is "does not exist".
    if !matches!(url.scheme(), "http" | "https") {
        return Err(LoadError::Scheme(url.scheme().to_owned()));
    }
    let document = load_url(&url, verify_tls, authorization).await?;
    Ok(Loaded {
        document,
        source: source.to_owned(),
    })
}

fn load_file(path: &Path) -> Result<Value, LoadError> {
    let name = path.display().to_string();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(ext, "json" | "yaml" | "yml") {
        return Err(LoadError::Extension(name));
    }
    let text = std::fs::read_to_string(path).map_err(|error| LoadError::Io {
        path: name.clone(),
        error,
    })?;
    if ext == "json" {
        parse_json(&text, &name)
    } else {
        parse_yaml(&text, &name)
    }
}

async fn load_url(
    url: &Url,
    verify_tls: bool,
    authorization: Option<String>,
) -> Result<Value, LoadError> {
    let mut headers = vec![(
        "Accept".to_owned(),
        "application/json, application/x-yaml".to_owned(),
    )];
    if let Some(auth) = authorization {
        headers.push(("Authorization".into(), auth));
    }
    let request = http_client::Request {
        method: "GET".into(),
        url: url.clone(),
        headers,
        body: None,
    };
    let options = http_client::Options {
        verify_tls,
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        max_retries: 0,
    };
    let response = http_client::send(request, options)
        .await
        .map_err(|e| LoadError::Fetch(e.to_string()))?;
    let text = response.text();
    if response.status != 200 {
        return Err(LoadError::Fetch(format!(
            "HTTP {}: {}",
            response.status,
            text.trim()
        )));
    }
    let name = url.to_string();
    let content_type = response.header("content-type").unwrap_or("").to_owned();
    if content_type.contains("application/json") {
        return parse_json(&text, &name);
    }
    if content_type.contains("application/x-yaml") || content_type.contains("text/yaml") {
        return parse_yaml(&text, &name);
    }
    let ext = url.path().rsplit('.').next().unwrap_or("");
    if content_type.contains("text/plain") || matches!(ext, "json" | "yaml" | "yml") {
        // As chaos does for text/plain: JSON first, then YAML.
        return parse_json(&text, &name).or_else(|_| parse_yaml(&text, &name));
    }
    Err(LoadError::Content(format!(
        "{name}: served as '{content_type}'; only JSON or YAML experiments are supported \
         (serve it as application/json, application/x-yaml or text/plain)"
    )))
}

/// Parses JSON text, reporting the line and column of a syntax error.
///
/// # Errors
///
/// [`LoadError::Syntax`] naming `source_name`.
pub fn parse_json(text: &str, source_name: &str) -> Result<Value, LoadError> {
    serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        // serde_json appends " at line L column C"; the position is reported separately.
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_owned(),
            None => message,
        };
        LoadError::Syntax {
            source_name: source_name.to_owned(),
            format: "JSON",
            line: e.line() as u64,
            column: e.column() as u64,
            message,
        }
    })
}

/// Parses YAML text as PyYAML would for `chaos` (see [`super::yaml`]), reporting the position
/// of a syntax error.
///
/// # Errors
///
/// [`LoadError::Syntax`] naming `source_name`.
pub fn parse_yaml(text: &str, source_name: &str) -> Result<Value, LoadError> {
    super::yaml::parse(text).map_err(|e| LoadError::Syntax {
        source_name: source_name.to_owned(),
        format: "YAML",
        line: e.line,
        column: e.column,
        message: e.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_errors_have_positions() {
        let err = parse_json("{\n  \"title\": \"x\",\n  oops\n}", "e.json").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("e.json:3:3: invalid JSON: "), "{text}");
    }

    #[test]
    fn yaml_errors_have_positions() {
        let err = parse_yaml("title: x\nmethod: [\n  - a\n", "e.yaml").unwrap_err();
        let LoadError::Syntax { line, .. } = err else {
            panic!("expected a syntax error, got {err}")
        };
        assert!(line >= 2);
    }

    #[test]
    fn yaml_reads_like_pyyaml() {
        let v = parse_yaml(
            "a: yes\nb: 0755\nc: 1_000\nd: x\nd: z\ne: '010'\nf: off\n",
            "e.yaml",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"a": true, "b": 493, "c": 1000, "d": "z", "e": "010", "f": false})
        );
    }

    #[test]
    fn key_order_is_kept() {
        let v = parse_json(r#"{"z": 1, "a": 2, "m": 3}"#, "e.json").unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "m"]);
        let v = parse_yaml("z: 1\na: 2\nm: 3\n", "e.yaml").unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }
}
