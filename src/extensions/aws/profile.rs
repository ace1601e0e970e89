//! The environment and the shared AWS files as botocore reads them: which profile is in use,
//! and its settings from `~/.aws/config` (`[profile x]`, `[default]`) and
//! `~/.aws/credentials` (`[x]`).
//!
//! Files are parsed like Python's `configparser.RawConfigParser`, which botocore uses: `key =
//! value` or `key: value` lines, names lower-cased, whole-line `#`/`;` comments, indented lines
//! continuing the previous value. Indented sub-sections (`s3 =` blocks) stay raw text: nothing
//! here reads them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// Where environment variables come from: the process, or a fixed set in unit tests (which
/// must not change the process environment, shared by every test thread).
#[derive(Clone)]
pub(super) struct Env(Arc<Lookup>);

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env")
    }
}

impl Env {
    /// The process environment, under the variables of the run's `.env` var files (which
    /// `chaos` exports into its own environment, where boto3 reads them).
    pub(super) fn process(overrides: &BTreeMap<String, String>) -> Self {
        let overrides = overrides.clone();
        Self(Arc::new(move |name| {
            overrides
                .get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
        }))
    }

    /// A fixed environment.
    #[cfg(test)]
    pub(super) fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self(Arc::new(move |name| map.get(name).cloned()))
    }

    /// A variable's value; unset and empty are the same (as botocore treats most of them).
    pub(super) fn get(&self, name: &str) -> Option<String> {
        self.raw(name).filter(|v| !v.is_empty())
    }

    /// A variable's value, empty included: botocore's config store (`AWS_RETRY_MODE`,
    /// `AWS_MAX_ATTEMPTS`) takes a variable that is set to nothing as set.
    pub(super) fn raw(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }

    /// A boolean variable (`true`, case-insensitive, as botocore's `ensure_boolean`).
    pub(super) fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// A path with `~` expanded, as `os.path.expanduser` does.
    pub(super) fn expand(&self, path: &str) -> PathBuf {
        match path.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                let home = self.get("HOME").unwrap_or_default();
                PathBuf::from(format!("{home}{rest}"))
            }
            _ => PathBuf::from(path),
        }
    }
}

/// One profile's settings.
pub(super) type Settings = HashMap<String, String>;

/// The shared files and the profile chosen.
#[derive(Debug, Default)]
pub(super) struct Profiles {
    /// The profile in use.
    pub(super) name: String,
    /// Whether it was named by the experiment (`aws_profile_name`): botocore then ignores the
    /// credential environment variables.
    pub(super) explicit: bool,
    /// The config file's path.
    pub(super) config_path: PathBuf,
    /// The credentials file's path.
    pub(super) credentials_path: PathBuf,
    /// Every profile of the config file.
    config: HashMap<String, Settings>,
    /// Every profile of the credentials file.
    credentials: HashMap<String, Settings>,
}

impl Profiles {
    /// Reads the files and picks the profile: `aws_profile_name` from the configuration, else
    /// `AWS_PROFILE`, else `AWS_DEFAULT_PROFILE`, else `default`.
    ///
    /// # Errors
    ///
    /// A file that exists but cannot be read or parsed, or a profile named explicitly (by the
    /// configuration or the environment) that neither file has (botocore's `ProfileNotFound`).
    pub(super) fn load(env: &Env, configured: Option<&str>) -> Result<Self, String> {
        let config_path = env.expand(
            &env.get("AWS_CONFIG_FILE")
                .unwrap_or_else(|| "~/.aws/config".into()),
        );
        let credentials_path = env.expand(
            &env.get("AWS_SHARED_CREDENTIALS_FILE")
                .unwrap_or_else(|| "~/.aws/credentials".into()),
        );
        let mut config = HashMap::new();
        for (section, settings) in read_ini(&config_path)? {
            // `[default]` and `[profile x]`; any other section (`[sso-session x]`, `[services
            // x]`) is not a profile.
            if section == "default" {
                config.insert(section, settings);
            } else if section.starts_with("profile") {
                let parts: Vec<&str> = section.split_whitespace().collect();
                if let [_, name] = parts.as_slice() {
                    config.insert((*name).to_owned(), settings);
                }
            }
        }
        let credentials = read_ini(&credentials_path)?.into_iter().collect();
        let named = configured
            .filter(|n| !n.is_empty())
            .map(|n| (n.to_owned(), true))
            .or_else(|| {
                env.get("AWS_PROFILE")
                    .or_else(|| env.get("AWS_DEFAULT_PROFILE"))
                    .map(|n| (n, false))
            });
        let profiles = Self {
            name: named
                .as_ref()
                .map_or_else(|| "default".to_owned(), |(n, _)| n.clone()),
            explicit: named.as_ref().is_some_and(|(_, explicit)| *explicit),
            config_path,
            credentials_path,
            config,
            credentials,
        };
        if named.is_some() && !profiles.exists(&profiles.name) {
            return Err(format!(
                "botocore.exceptions.ProfileNotFound: The config profile ({}) could not be \
                 found (looked in {} and {})",
                profiles.name,
                profiles.config_path.display(),
                profiles.credentials_path.display()
            ));
        }
        Ok(profiles)
    }

    /// Whether either file has the profile.
    pub(super) fn exists(&self, name: &str) -> bool {
        self.config.contains_key(name) || self.credentials.contains_key(name)
    }

    /// A profile's settings in the config file.
    pub(super) fn config(&self, name: &str) -> Option<&Settings> {
        self.config.get(name)
    }

    /// A profile's settings in the credentials file.
    pub(super) fn credentials(&self, name: &str) -> Option<&Settings> {
        self.credentials.get(name)
    }

    /// A setting of a profile, from the credentials file first, then the config file (botocore
    /// merges both files, the credentials file winning).
    pub(super) fn setting(&self, name: &str, key: &str) -> Option<&str> {
        self.raw_setting(name, key).filter(|v| !v.is_empty())
    }

    /// A setting of a profile, empty included (`retry_mode =` is a value to botocore's config
    /// store, and an invalid one).
    pub(super) fn raw_setting(&self, name: &str, key: &str) -> Option<&str> {
        self.credentials(name)
            .and_then(|s| s.get(key))
            .or_else(|| self.config(name).and_then(|s| s.get(key)))
            .map(String::as_str)
    }
}

/// Reads an INI file; a missing file is an empty one.
fn read_ini(path: &std::path::Path) -> Result<Vec<(String, Settings)>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_ini(&text).map_err(|e| {
            format!(
                "botocore.exceptions.ConfigParseError: Unable to parse config file: {}: {e}",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Parses INI text into its sections, in order.
fn parse_ini(text: &str) -> Result<Vec<(String, Settings)>, String> {
    let mut sections: Vec<(String, Settings)> = Vec::new();
    let mut last_key: Option<String> = None;
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indented = line.len() != trimmed.len();
        if indented && let (Some(key), Some((_, settings))) = (&last_key, sections.last_mut()) {
            // A continuation line: configparser appends it to the value after a newline.
            if let Some(value) = settings.get_mut(key) {
                value.push('\n');
                value.push_str(trimmed);
            }
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some(end) = rest.rfind(']') else {
                return Err(format!("line {}: {raw:?}", number + 1));
            };
            let name = rest[..end].trim().to_owned();
            last_key = None;
            if let Some(pos) = sections.iter().position(|(n, _)| *n == name) {
                // configparser refuses duplicates; keeping the later values is kinder.
                let section = sections.remove(pos);
                sections.push(section);
            } else {
                sections.push((name, Settings::new()));
            }
            continue;
        }
        let Some((_, settings)) = sections.last_mut() else {
            return Err(format!(
                "File contains no section headers: line {}: {raw:?}",
                number + 1
            ));
        };
        let split = trimmed
            .find(['=', ':'])
            .ok_or_else(|| format!("line {}: {raw:?}", number + 1))?;
        let key = trimmed[..split].trim().to_ascii_lowercase();
        let value = trimmed[split + 1..].trim().to_owned();
        settings.insert(key.clone(), value);
        last_key = Some(key);
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_like_configparser() {
        let text = "# comment\n[default]\nregion = eu-west-1\n\n[profile dev]\n\
                    AWS_Access_Key_Id: AKIA\n; comment\ns3 =\n  addressing_style = path\n\
                    [sso-session x]\nsso_region=us-east-1\n";
        let sections = parse_ini(text).unwrap();
        assert_eq!(sections.len(), 3);
        assert_eq!(sections[0].1["region"], "eu-west-1");
        assert_eq!(sections[1].0, "profile dev");
        assert_eq!(sections[1].1["aws_access_key_id"], "AKIA");
        assert_eq!(sections[1].1["s3"], "\naddressing_style = path");
        assert!(parse_ini("key = value\n").is_err());
    }

    #[test]
    fn profile_choice_and_missing_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        let creds = dir.path().join("credentials");
        std::fs::write(
            &config,
            "[profile dev]\nregion = eu-west-1\n[default]\nx = 1\n",
        )
        .unwrap();
        std::fs::write(&creds, "[ci]\naws_access_key_id = AKIA\n").unwrap();
        let base = [
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
        ];
        let env = Env::from_pairs(&base);
        let p = Profiles::load(&env, None).unwrap();
        assert_eq!((p.name.as_str(), p.explicit), ("default", false));
        let p = Profiles::load(&env, Some("ci")).unwrap();
        assert_eq!((p.name.as_str(), p.explicit), ("ci", true));
        assert_eq!(p.setting("ci", "aws_access_key_id"), Some("AKIA"));
        let mut with_env = base.to_vec();
        with_env.push(("AWS_PROFILE", "dev"));
        let p = Profiles::load(&Env::from_pairs(&with_env), None).unwrap();
        assert_eq!((p.name.as_str(), p.explicit), ("dev", false));
        assert_eq!(p.setting("dev", "region"), Some("eu-west-1"));
        let err = Profiles::load(&env, Some("nope")).unwrap_err();
        assert!(
            err.contains("The config profile (nope) could not be found"),
            "{err}"
        );
    }

    #[test]
    fn home_expansion() {
        let env = Env::from_pairs(&[("HOME", "/home/u")]);
        assert_eq!(
            env.expand("~/.aws/config"),
            PathBuf::from("/home/u/.aws/config")
        );
        assert_eq!(env.expand("/etc/aws"), PathBuf::from("/etc/aws"));
    }
}
