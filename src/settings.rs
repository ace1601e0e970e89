//! The Chaos Toolkit `settings.yaml`, as far as the runner reads it.
//!
//! Found at `--settings` (default `~/.chaostoolkit/settings.yaml`); a missing file means
//! empty settings, as with `chaos`. The runner reads `runtime:` (default hypothesis and
//! rollback strategies) and `auths:` (credentials per host for experiments loaded from a URL).
//! Unlike `chaos`, which logs a YAML error and carries on without settings, a malformed file
//! stops the command before anything runs: running without the notifications a user
//! configured would lose their events silently.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::experiment::load::{self, LoadError};

/// Loaded settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where they were looked for.
    pub path: PathBuf,
    /// Whether the file exists.
    pub found: bool,
    /// The document (`{}` when missing).
    pub document: Value,
}

/// Why settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Unreadable or malformed file.
    #[error("settings {0}")]
    Load(#[from] LoadError),
    /// The file is not a mapping.
    #[error("settings {0}: the settings file must be a YAML mapping")]
    NotAMapping(String),
}

impl Settings {
    /// The default location: `~/.chaostoolkit/settings.yaml`.
    pub fn default_path() -> PathBuf {
        crate::sys::expand_user("~/.chaostoolkit/settings.yaml")
    }

    /// Reads settings from `path`.
    ///
    /// # Errors
    ///
    /// The file exists but cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let name = path.display().to_string();
        if !path.exists() {
            tracing::debug!("The Chaos Toolkit settings file could not be found at '{name}'.");
            return Ok(Self {
                path: path.to_owned(),
                found: false,
                document: Value::Object(Default::default()),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|error| LoadError::Io {
            path: name.clone(),
            error,
        })?;
        let document = match load::parse_yaml(&text, &name)? {
            Value::Null => Value::Object(Default::default()),
            v @ Value::Object(_) => v,
            _ => return Err(SettingsError::NotAMapping(name)),
        };
        Ok(Self {
            path: path.to_owned(),
            found: true,
            document,
        })
    }

    /// `runtime.<section>.strategy`, when set.
    pub fn runtime_strategy(&self, section: &str) -> Option<String> {
        self.document
            .get("runtime")?
            .get(section)?
            .get("strategy")
            .map(crate::python::to_str)
    }

    /// The `runtime` block.
    pub fn runtime(&self) -> Option<&Value> {
        self.document.get("runtime")
    }

    /// `Authorization` for an experiment URL's `host[:port]`, from `auths:`.
    pub fn authorization_for(&self, netloc: &str) -> Option<String> {
        let auth = self.document.get("auths")?.get(netloc)?;
        let kind = auth.get("type").map(crate::python::to_str)?;
        let value = auth.get("value").map(crate::python::to_str)?;
        Some(format!("{kind} {value}"))
    }

    /// Every secret-like value of the settings (auth values), to keep out of logs.
    pub fn secret_values(&self) -> Vec<Value> {
        self.document
            .get("auths")
            .and_then(Value::as_object)
            .map(|auths| {
                auths
                    .values()
                    .filter_map(|a| a.get("value").cloned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_empty_settings() {
        let s = Settings::load(Path::new("/nonexistent/settings.yaml")).unwrap();
        assert!(!s.found);
        assert_eq!(s.runtime_strategy("rollbacks"), None);
    }

    #[test]
    fn reads_runtime_and_auths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.yaml");
        std::fs::write(
            &path,
            "runtime:\n  rollbacks:\n    strategy: always\nauths:\n  example.com:8080:\n    type: bearer\n    value: tok3n\n",
        )
        .unwrap();
        let s = Settings::load(&path).unwrap();
        assert_eq!(s.runtime_strategy("rollbacks").as_deref(), Some("always"));
        assert_eq!(
            s.authorization_for("example.com:8080").as_deref(),
            Some("bearer tok3n")
        );
    }

    #[test]
    fn malformed_file_is_an_error_with_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.yaml");
        std::fs::write(&path, "runtime: [\n").unwrap();
        let err = Settings::load(&path).unwrap_err().to_string();
        assert!(err.contains("settings.yaml:"), "{err}");
    }
}
