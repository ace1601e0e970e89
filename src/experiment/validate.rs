//! Experiment validation: `chaos`'s rules, in its order, with its messages.
//!
//! Unlike `chaos`, which stops at the first problem, every problem is reported at once, each
//! with the place it was found (`method[2].provider.path`) and, where one helps, how to fix it.
//! Validation does no network I/O; it reads the environment (configuration and secrets are
//! resolved, as `chaos` does) and looks executables up on `PATH`.

use std::fmt;

use serde_json::{Map, Value};

use super::config::{self, Env, Vars};
use super::{Experiment, HYPOTHESIS};
use crate::{jsonpath, python, sys};

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: a dotted path into the document (`method[0].provider`), or `` for the document.
    pub path: String,
    /// What: `chaos`'s message for the rule.
    pub message: String,
    /// How to fix it, when not obvious from the message.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// The outcome of validating an experiment.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Problems that make the experiment invalid.
    pub problems: Vec<Problem>,
    /// Things that are accepted but worth telling (deprecations, ignored Python controls...).
    pub warnings: Vec<String>,
}

impl Report {
    /// Whether the experiment is valid.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
            hint: None,
        });
    }

    fn problem_with(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
            hint: Some(hint.into()),
        });
    }
}

/// Validates a loaded document (any JSON value). `vars` are the `--var`/`--var-file`
/// overrides of a run (`chaos` ignores them while validating, so a variable cannot stand in for
/// a missing environment variable there; chaosflow lets it).
pub fn validate(document: &Value, vars: &Vars, env: &dyn Env) -> Report {
    let mut report = Report::default();
    if !python::truthy(document) {
        report.problem_with(
            "",
            "an empty experiment is not an experiment",
            "write at least a title, a description and a method",
        );
        return report;
    }
    let Some(doc) = document.as_object() else {
        report.problem_with(
            "",
            format!(
                "an experiment must be a mapping, not a {}",
                python::type_name(document)
            ),
            "the top level must be a JSON object / YAML mapping",
        );
        return report;
    };
    let experiment = Experiment { doc: doc.clone() };

    if !doc.get("title").is_some_and(python::truthy) {
        report.problem_with(
            "title",
            "experiment requires a title",
            "add a non-empty \"title\"",
        );
    }
    if !doc.get("description").is_some_and(python::truthy) {
        report.problem_with(
            "description",
            "experiment requires a description",
            "add a non-empty \"description\"",
        );
    }
    check_tags(doc.get("tags"), &mut report);
    check_extensions(doc.get("extensions"), &mut report);

    // chaos resolves configuration and secrets while validating.
    match config::load_configuration(doc.get("configuration"), &vars.configuration, env) {
        Ok(_) => {
            if let Err(e) = config::load_secrets(doc.get("secrets"), &vars.secrets, env) {
                report.problem_with(
                    config_path("secrets", &e),
                    e.to_string(),
                    "export the variable before running, or pass it with --var-file (.env)",
                );
            }
        }
        Err(e) => {
            report.problem_with(
                config_path("configuration", &e),
                e.to_string(),
                "export the variable, give the entry a \"default\", or override it with --var",
            );
        }
    }

    check_hypothesis(doc, &mut report);

    match doc.get("method") {
        None => report.problem_with(
            "method",
            "an experiment requires a method, which can be empty for only checking steady \
             state hypothesis ",
            "add \"method\": [] at least",
        ),
        Some(Value::Array(method)) => {
            let targets = experiment.ref_targets();
            for (i, activity) in method.iter().enumerate() {
                let path = format!("method[{i}]");
                check_activity(activity, &path, &mut report);
                if let Some(r) = activity.get("ref").and_then(Value::as_str)
                    && !r.is_empty()
                    && !targets.contains_key(r)
                {
                    report.problem_with(
                        path,
                        format!("referenced activity '{r}' could not be found in the experiment"),
                        "a ref names a method activity or a hypothesis probe",
                    );
                }
            }
        }
        Some(other) => report.problem(
            "method",
            format!(
                "the method must be a list of activities, not a {}",
                python::type_name(other)
            ),
        ),
    }

    match doc.get("rollbacks") {
        None | Some(Value::Null) => {}
        Some(Value::Array(rollbacks)) => {
            for (i, activity) in rollbacks.iter().enumerate() {
                check_activity(activity, &format!("rollbacks[{i}]"), &mut report);
            }
        }
        Some(other) => report.problem(
            "rollbacks",
            format!(
                "rollbacks must be a list of actions, not a {}",
                python::type_name(other)
            ),
        ),
    }

    check_runtime(doc.get("runtime"), &mut report);
    warn_deprecations(&experiment, &mut report);
    check_controls(doc, &mut report);
    for path in config::vault_references(doc.get("secrets")) {
        report.warnings.push(format!(
            "secrets.{path}: Vault secrets are not supported by chaosflow; the secret will be \
             empty (use an env secret fed by your secret store instead)"
        ));
    }
    report
}

fn config_path(section: &str, error: &config::ConfigError) -> String {
    match error {
        config::ConfigError::MissingConfigEnv { entry, .. }
        | config::ConfigError::Conversion { entry, .. }
        | config::ConfigError::MissingSecretEnv { entry, .. }
        | config::ConfigError::MissingKey { entry } => format!("{section}.{entry}"),
        config::ConfigError::NotAMapping { .. } => section.to_owned(),
    }
}

fn check_tags(tags: Option<&Value>, report: &mut Report) {
    let Some(tags) = tags.filter(|t| python::truthy(t)) else {
        return;
    };
    match tags {
        Value::Array(items) => {
            if items.iter().any(|t| t.as_str().is_none_or(str::is_empty)) {
                report.problem("tags", "experiment tags must be a non-empty string");
            }
        }
        // chaos iterates a string's characters, which are all non-empty strings.
        Value::String(_) => {}
        _ => report.problem("tags", "experiment tags must be a non-empty string"),
    }
}

fn check_extensions(extensions: Option<&Value>, report: &mut Report) {
    let Some(Value::Array(items)) = extensions else {
        return;
    };
    for (i, ext) in items.iter().enumerate() {
        let named = ext
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.trim().is_empty());
        if !named {
            report.problem(
                format!("extensions[{i}]"),
                "All extensions require a non-empty name",
            );
        }
    }
}

fn check_hypothesis(doc: &Map<String, Value>, report: &mut Report) {
    let Some(hypothesis) = doc.get(HYPOTHESIS) else {
        return;
    };
    if hypothesis.is_null() {
        return;
    }
    let Some(hypothesis) = hypothesis.as_object() else {
        report.problem(HYPOTHESIS, "the steady-state hypothesis must be a mapping");
        return;
    };
    if !hypothesis.get("title").is_some_and(python::truthy) {
        report.problem_with(
            format!("{HYPOTHESIS}.title"),
            "hypothesis requires a title",
            "add a non-empty \"title\" to the steady-state hypothesis",
        );
    }
    let probes = match hypothesis.get("probes") {
        None | Some(Value::Null) => return,
        Some(Value::Array(p)) => p,
        Some(_) => {
            report.problem(
                format!("{HYPOTHESIS}.probes"),
                "hypothesis probes must be a list",
            );
            return;
        }
    };
    for (i, probe) in probes.iter().enumerate() {
        let path = format!("{HYPOTHESIS}.probes[{i}]");
        if !check_activity(probe, &path, report) {
            continue;
        }
        match probe.get("tolerance") {
            None => report.problem_with(
                path,
                "hypothesis probe must have a tolerance entry",
                "add a \"tolerance\" such as 0 for a process exit code or 200 for an HTTP status",
            ),
            Some(tolerance) => check_tolerance(tolerance, &format!("{path}.tolerance"), report),
        }
    }
}

fn check_tolerance(tolerance: &Value, path: &str, report: &mut Report) {
    let Value::Object(tol) = tolerance else {
        let allowed = match tolerance {
            Value::Bool(_) | Value::String(_) | Value::Array(_) => true,
            Value::Number(n) => !n.is_f64(),
            _ => false,
        };
        if !allowed {
            report.problem(
                path,
                "hypothesis probe tolerance must either be an integer, a string, a boolean or a \
                 pair of values for boundaries. It can also be a dictionary which is a probe \
                 activity definition that takes an argument called `value` with the value of \
                 the probe itself to be validated",
            );
        }
        return;
    };
    match tol.get("type").and_then(Value::as_str) {
        Some("probe") => {
            check_activity(tolerance, path, report);
        }
        Some("regex") => match tol.get("pattern") {
            None => report.problem(
                path,
                "hypothesis regex probe tolerance must have a `pattern` key",
            ),
            Some(Value::String(pattern)) => {
                if let Err(e) = python::compile_regex(pattern) {
                    report.problem(
                        format!("{path}.pattern"),
                        format!("hypothesis probe tolerance pattern {pattern} seems invalid: {e}"),
                    );
                }
            }
            Some(other) => report.problem(
                format!("{path}.pattern"),
                format!(
                    "hypothesis probe tolerance pattern {} has an invalid type",
                    python::to_str(other)
                ),
            ),
        },
        Some("jsonpath") => {
            match tol.get("path") {
                None => report.problem(
                    path,
                    "hypothesis jsonpath probe tolerance must have a `path` key",
                ),
                Some(Value::String(p)) if p.trim().is_empty() => report.problem(
                    format!("{path}.path"),
                    "hypothesis probe tolerance JSON path cannot be empty",
                ),
                Some(Value::String(p)) => {
                    if let Err(e) = jsonpath::JsonPath::parse(p.trim()) {
                        report.problem_with(
                        format!("{path}.path"),
                        format!("hypothesis probe tolerance JSON path {} is invalid", p.trim()),
                        format!("{e}; chaos uses the jsonpath2 dialect, e.g. $.items[*][?(@.ok = true)]"),
                    );
                    }
                }
                Some(other) => report.problem(
                    format!("{path}.path"),
                    format!(
                        "hypothesis probe tolerance JSON path {} has an invalid type",
                        python::to_str(other)
                    ),
                ),
            }
        }
        Some("range") => check_range(tol.get("range"), path, report),
        other => {
            let shown = other.map_or_else(|| "None".to_owned(), str::to_owned);
            report.problem_with(
                path,
                format!("hypothesis probe tolerance type '{shown}' is unsupported"),
                "use one of probe, regex, jsonpath or range",
            );
        }
    }
}

fn check_range(range: Option<&Value>, path: &str, report: &mut Report) {
    let Some(range) = range else {
        report.problem(
            path,
            "hypothesis range probe tolerance must have a `range` key",
        );
        return;
    };
    let Some(bounds) = range.as_array() else {
        report.problem(
            format!("{path}.range"),
            "hypothesis range must be a sequence",
        );
        return;
    };
    if bounds.len() != 2 {
        report.problem(
            format!("{path}.range"),
            "hypothesis range sequence must be made of two values",
        );
        return;
    }
    // Python counts bools as numbers here.
    let number = |v: &Value| matches!(v, Value::Number(_) | Value::Bool(_));
    if !number(&bounds[0]) {
        report.problem(
            format!("{path}.range"),
            "hypothesis range lower boundary must be a number",
        );
    } else if !number(&bounds[1]) {
        report.problem(
            format!("{path}.range"),
            "hypothesis range upper boundary must be a number",
        );
    }
}

/// `chaos`'s `ensure_activity_is_valid`; returns whether the activity is valid.
fn check_activity(activity: &Value, path: &str, report: &mut Report) -> bool {
    let before = report.problems.len();
    check_activity_inner(activity, path, report);
    report.problems.len() == before
}

fn check_activity_inner(activity: &Value, path: &str, report: &mut Report) {
    if !python::truthy(activity) {
        report.problem(path, "empty activity is no activity");
        return;
    }
    let Some(a) = activity.as_object() else {
        report.problem(
            path,
            format!(
                "an activity must be a mapping, not a {}",
                python::type_name(activity)
            ),
        );
        return;
    };
    if let Some(r) = a.get("ref").filter(|r| !r.is_null()) {
        if r.as_str().is_none_or(str::is_empty) {
            report.problem(
                format!("{path}.ref"),
                "reference to activity must be non-empty strings",
            );
        }
        return;
    }
    let Some(kind) = a.get("type").filter(|t| python::truthy(t)) else {
        report.problem_with(
            path,
            "an activity must have a type",
            "set \"type\" to probe or action",
        );
        return;
    };
    if !matches!(kind.as_str(), Some("probe" | "action")) {
        report.problem_with(
            format!("{path}.type"),
            format!(
                "'{}' is not a supported activity type",
                python::to_str(kind)
            ),
            "use probe or action",
        );
        return;
    }
    let Some(name) = a.get("name").filter(|n| python::truthy(n)) else {
        report.problem_with(path, "an activity must have a name", "add a \"name\"");
        return;
    };
    let name = python::to_str(name);
    let Some(provider) = a.get("provider").filter(|p| python::truthy(p)) else {
        report.problem(path, "an activity requires a provider");
        return;
    };
    let Some(provider) = provider.as_object() else {
        report.problem(
            format!("{path}.provider"),
            "an activity provider must be a mapping",
        );
        return;
    };
    let provider_path = format!("{path}.provider");
    let Some(provider_type) = provider.get("type").filter(|t| python::truthy(t)) else {
        report.problem_with(
            &provider_path,
            "a provider must have a type",
            "use process, http or python",
        );
        return;
    };
    let provider_type = python::to_str(provider_type);
    if !matches!(provider_type.as_str(), "python" | "process" | "http") {
        report.problem_with(
            format!("{provider_path}.type"),
            format!("unknown provider type '{provider_type}'"),
            "use process, http or python",
        );
        return;
    }
    if let Some(timeout) = a.get("timeout").filter(|t| !t.is_null())
        && !matches!(timeout, Value::Number(_) | Value::Bool(_))
    {
        report.problem(
            format!("{path}.timeout"),
            "activity timeout must be a number",
        );
        return;
    }
    if let Some(pauses) = a.get("pauses").filter(|p| !p.is_null()) {
        let Some(pauses) = pauses.as_object() else {
            report.problem(
                format!("{path}.pauses"),
                "activity pauses must be a mapping",
            );
            return;
        };
        for when in ["before", "after"] {
            if let Some(Value::String(s)) = pauses.get(when)
                && !(s.starts_with("${") && s.ends_with('}'))
            {
                report.problem_with(
                    format!("{path}.pauses.{when}"),
                    format!(
                        "activity {when} pause must be a number or a pattern to a variable from \
                         the configuration or secrets"
                    ),
                    "write seconds as a number, e.g. 5",
                );
                return;
            }
        }
    }
    if let Some(bg) = a.get("background")
        && !bg.is_boolean()
    {
        report.problem(
            format!("{path}.background"),
            "activity background must be a boolean",
        );
        return;
    }
    match provider_type.as_str() {
        "python" => {
            if !provider.get("module").is_some_and(python::truthy) {
                report.problem(&provider_path, "a Python activity must have a module path");
            } else if !provider.get("func").is_some_and(python::truthy) {
                report.problem(
                    &provider_path,
                    "a Python activity must have a function name",
                );
            } else if provider
                .get("arguments")
                .is_some_and(|v| !v.is_null() && !v.is_object())
            {
                report.problem(
                    format!("{provider_path}.arguments"),
                    "python arguments must be a mapping",
                );
            } else {
                // Native functions need nothing. The others run through the Python bridge,
                // which is not started here: `chaos` imports the module and binds the
                // arguments while validating, but validation must also work where the run's
                // Python is absent (CI, the operator) and importing an SDK costs seconds; a
                // missing module fails the activity when reached, with the same fix.
                let module = python::to_str(&provider["module"]);
                let func = python::to_str(&provider["func"]);
                if let Some(params) = crate::extensions::parameters(&module, &func) {
                    let passed = crate::extensions::passed_by_chaos(&module, &func);
                    bind_native(report, &provider_path, provider, &func, &params, passed);
                } else {
                    report.warnings.push(format!(
                        "{path}: activity '{name}' calls {module}.{func} through the Python \
                         bridge: it needs python3 (or $CHAOSFLOW_PYTHON) able to import \
                         '{module}' ({})",
                        crate::extensions::bridge::install_hint(&module)
                    ));
                }
            }
        }
        "process" => {
            let Some(raw) = provider.get("path").filter(|p| python::truthy(p)) else {
                report.problem_with(
                    &provider_path,
                    "a process activity must have a path",
                    "add \"path\"",
                );
                return;
            };
            let raw = python::to_str(raw);
            if sys::which(&raw).is_none() {
                let hint = if sys::expand_user(&raw).exists() {
                    "the file exists but is not executable: chmod +x it"
                } else {
                    "install it, put it on PATH, or give an absolute path to an executable"
                };
                report.problem_with(
                    format!("{provider_path}.path"),
                    format!("path '{raw}' cannot be found, in activity '{name}'"),
                    hint,
                );
            }
        }
        _ => {
            if !provider.get("url").is_some_and(python::truthy) {
                report.problem_with(
                    &provider_path,
                    "a HTTP activity must have a URL",
                    "add \"url\"",
                );
                return;
            }
            if let Some(headers) = provider.get("headers")
                && python::truthy(headers)
                && !headers.is_object()
            {
                report.problem(
                    format!("{provider_path}.headers"),
                    "a HTTP activities expect headers as a mapping",
                );
            }
        }
    }
}

const STRATEGIES: &[&str] = &[
    "default",
    "before-method-only",
    "after-method-only",
    "during-method-only",
    "continuously",
    // The old misspelling, accepted with a warning wherever the strategy comes from.
    "continously",
    "skip",
];
const ROLLBACK_STRATEGIES: &[&str] = &["default", "always", "never", "deviated"];

/// Checks a `runtime:` block (from the experiment or settings). An unknown hypothesis
/// strategy is a problem (`chaos` crashes on it once running); an unknown rollback strategy is
/// a warning, since `chaos` then plays no rollbacks and carries on.
pub fn check_runtime_block(runtime: Option<&Value>, prefix: &str) -> (Vec<Problem>, Vec<String>) {
    let mut report = Report::default();
    let Some(runtime) = runtime.filter(|r| !r.is_null()) else {
        return (Vec::new(), Vec::new());
    };
    let Some(runtime) = runtime.as_object() else {
        report.problem(prefix, "runtime must be a mapping");
        return (report.problems, report.warnings);
    };
    for (section, allowed) in [
        ("hypothesis", STRATEGIES),
        ("rollbacks", ROLLBACK_STRATEGIES),
    ] {
        let Some(strategy) = runtime.get(section).and_then(|s| s.get("strategy")) else {
            continue;
        };
        if strategy.as_str().is_some_and(|s| allowed.contains(&s)) {
            continue;
        }
        let path = format!("{prefix}.{section}.strategy");
        let message = format!("unknown {section} strategy {}", python::repr(strategy));
        if section == "hypothesis" {
            report.problem_with(path, message, format!("use one of {}", allowed.join(", ")));
        } else {
            report.warnings.push(format!(
                "{path}: {message}; no rollbacks will be played (use one of {})",
                allowed.join(", ")
            ));
        }
    }
    (report.problems, report.warnings)
}

fn check_runtime(runtime: Option<&Value>, report: &mut Report) {
    let (problems, warnings) = check_runtime_block(runtime, "runtime");
    report.problems.extend(problems);
    report.warnings.extend(warnings);
}

fn warn_deprecations(experiment: &Experiment, report: &mut Report) {
    let all = experiment
        .hypothesis_probes()
        .iter()
        .chain(experiment.method())
        .chain(experiment.rollbacks());
    for activity in all {
        let provider = activity.get("provider");
        if provider.and_then(|p| p.get("type")).and_then(Value::as_str) == Some("process")
            && provider
                .and_then(|p| p.get("arguments"))
                .is_some_and(Value::is_object)
        {
            report.warnings.push(
                "Process arguments should now be a list to keep the ordering of the arguments. \
                 Dictionary arguments are deprecated for process activities."
                    .into(),
            );
            break;
        }
    }
}

/// Controls are Python hooks: chaosflow validates their shape and says it ignores them.
fn check_controls(doc: &Map<String, Value>, report: &mut Report) {
    let mut lists: Vec<(String, &Value)> = Vec::new();
    if let Some(c) = doc.get("controls") {
        lists.push(("controls".into(), c));
    }
    if let Some(c) = doc.get(HYPOTHESIS).and_then(|h| h.get("controls")) {
        lists.push((format!("{HYPOTHESIS}.controls"), c));
    }
    for section in ["method", "rollbacks"] {
        if let Some(Value::Array(items)) = doc.get(section) {
            for (i, a) in items.iter().enumerate() {
                if let Some(c) = a.get("controls") {
                    lists.push((format!("{section}[{i}].controls"), c));
                }
            }
        }
    }
    let names: Vec<&str> = lists
        .iter()
        .filter_map(|(_, l)| l.as_array())
        .flatten()
        .filter(|c| c.get("ref").is_none())
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    for (path, list) in &lists {
        let Some(items) = list.as_array() else {
            report.problem(path.as_str(), "controls must be a list");
            continue;
        };
        for (i, control) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            if let Some(r) = control.get("ref") {
                if !r.as_str().is_some_and(|r| names.contains(&r)) {
                    report.problem(&p, "Control reference '{}' declaration cannot be found");
                }
                continue;
            }
            let Some(name) = control.get("name") else {
                report.problem(&p, "A control must have a `name` property");
                continue;
            };
            let name = python::to_str(name);
            if control.get("provider").is_none() {
                report.problem(
                    &p,
                    format!("Control '{name}' must have a `provider` property"),
                );
                continue;
            }
            if let Some(scope) = control.get("scope").filter(|s| python::truthy(s))
                && !matches!(scope.as_str(), Some("before" | "after"))
            {
                report.problem(
                    &p,
                    format!("Control '{name}' scope property must be 'before' or 'after' only"),
                );
                continue;
            }
            report.warnings.push(format!(
                "{p}: control '{name}' is a Python control; chaosflow does not run controls and \
                 ignores it"
            ));
        }
    }
}

/// Binds a native function's arguments as chaos binds them while validating with the
/// extension installed, with its messages (which name the function where they say "activity").
/// `passed` are the parameters among `configuration` and `secrets` the function has: chaos
/// fills them in before binding, so only those may also be in `arguments`.
fn bind_native(
    report: &mut Report,
    provider_path: &str,
    provider: &Map<String, Value>,
    func: &str,
    params: &[(&'static str, bool)],
    passed: &[&str],
) {
    let arguments = provider.get("arguments").and_then(Value::as_object);
    let known = params
        .iter()
        .map(|(p, _)| *p)
        .collect::<Vec<_>>()
        .join(", ");
    for arg in arguments.into_iter().flat_map(Map::keys) {
        if !passed.contains(&arg.as_str()) && !params.iter().any(|(p, _)| p == arg) {
            report.problem_with(
                format!("{provider_path}.arguments.{arg}"),
                format!(
                    "argument {arg} is not part of the function signature in activity '{func}'"
                ),
                format!("{func} takes {known}"),
            );
        }
    }
    for (param, required) in params {
        if *required && !arguments.is_some_and(|a| a.contains_key(*param)) {
            report.problem_with(
                format!("{provider_path}.arguments"),
                format!("required argument {param} is missing from activity '{func}'"),
                format!("add \"{param}\""),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn check(doc: Value) -> Vec<String> {
        validate(&doc, &Vars::default(), &BTreeMap::<String, String>::new())
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect()
    }

    fn valid() -> Value {
        json!({
            "title": "t", "description": "d",
            "steady-state-hypothesis": {"title": "h", "probes": [
                {"type": "probe", "name": "p", "tolerance": 0,
                 "provider": {"type": "process", "path": "true"}}]},
            "method": [{"type": "action", "name": "a", "provider": {"type": "http", "url": "http://x"}}],
            "rollbacks": []
        })
    }

    #[test]
    fn a_valid_experiment_has_no_problems() {
        assert!(check(valid()).is_empty(), "{:?}", check(valid()));
    }

    #[test]
    fn empty_and_missing_basics() {
        assert_eq!(
            check(json!({})),
            [": an empty experiment is not an experiment"]
        );
        assert_eq!(
            check(json!({"method": []})),
            [
                "title: experiment requires a title",
                "description: experiment requires a description"
            ]
        );
        let mut doc = valid();
        doc.as_object_mut().unwrap().remove("method");
        assert!(check(doc)[0].starts_with("method: an experiment requires a method"));
    }

    #[test]
    fn every_problem_is_reported() {
        let doc = json!({
            "title": "t", "description": "d", "tags": ["ok", ""],
            "method": [
                {"type": "action", "name": "a", "provider": {"type": "bogus"}},
                {"type": "thing", "name": "b", "provider": {"type": "process", "path": "true"}},
                {"type": "action", "name": "c", "provider": {"type": "process", "path": "nope-xyz"}},
                {"ref": "missing"},
                {"type": "probe", "name": "d", "provider": {"type": "http"}},
                {"type": "probe", "name": "e", "background": "yes", "provider": {"type": "http", "url": "u"}},
                {"type": "probe", "name": "f", "pauses": {"after": "5s"}, "provider": {"type": "http", "url": "u"}}
            ]
        });
        assert_eq!(
            check(doc),
            [
                "tags: experiment tags must be a non-empty string",
                "method[0].provider.type: unknown provider type 'bogus'",
                "method[1].type: 'thing' is not a supported activity type",
                "method[2].provider.path: path 'nope-xyz' cannot be found, in activity 'c'",
                "method[3]: referenced activity 'missing' could not be found in the experiment",
                "method[4].provider: a HTTP activity must have a URL",
                "method[5].background: activity background must be a boolean",
                "method[6].pauses.after: activity after pause must be a number or a pattern to a variable from the configuration or secrets",
            ]
        );
    }

    #[test]
    fn tolerances() {
        let with_tolerance = |t: Value| {
            let mut doc = valid();
            doc["steady-state-hypothesis"]["probes"][0]["tolerance"] = t;
            check(doc)
        };
        assert!(with_tolerance(json!([200, 201])).is_empty());
        assert!(with_tolerance(json!(true)).is_empty());
        assert!(
            with_tolerance(json!({"type": "range", "range": [1, 2.5], "target": "status"}))
                .is_empty()
        );
        assert!(with_tolerance(json!({"type": "jsonpath", "path": "$.a[*]"})).is_empty());
        assert!(with_tolerance(json!({"type": "regex", "pattern": "^ok$"})).is_empty());
        assert_eq!(with_tolerance(json!(1.5)).len(), 1);
        assert_eq!(with_tolerance(json!(null)).len(), 1);
        assert!(with_tolerance(json!({"type": "nope"}))[0].contains("type 'nope' is unsupported"));
        assert!(
            with_tolerance(json!({"type": "regex", "pattern": "("}))[0].contains("seems invalid")
        );
        assert!(
            with_tolerance(json!({"type": "jsonpath", "path": "$.a-b"}))[0].contains("is invalid")
        );
        assert!(with_tolerance(json!({"type": "range", "range": [1]}))[0].contains("two values"));
        assert!(
            with_tolerance(json!({"type": "range", "range": ["a", 1]}))[0]
                .contains("lower boundary")
        );
        let mut doc = valid();
        doc["steady-state-hypothesis"]["probes"][0]
            .as_object_mut()
            .unwrap()
            .remove("tolerance");
        assert!(check(doc)[0].contains("must have a tolerance entry"));
    }

    #[test]
    fn configuration_env_is_checked() {
        let mut doc = valid();
        doc["configuration"] = json!({"x": {"type": "env", "key": "CHAOSFLOW_TEST_UNSET_VAR"}});
        assert_eq!(
            check(doc),
            [
                "configuration.x: Configuration makes reference to an environment key that does not exist: CHAOSFLOW_TEST_UNSET_VAR"
            ]
        );
    }

    #[test]
    fn python_activities_are_shape_checked_and_warned() {
        let mut doc = valid();
        doc["method"][0]["provider"] = json!({"type": "python", "module": "chaosk8s.pod.actions"});
        assert_eq!(
            check(doc.clone()),
            ["method[0].provider: a Python activity must have a function name"]
        );
        doc["method"][0]["provider"]["func"] = json!("terminate_pods");
        let report = validate(&doc, &Vars::default(), &BTreeMap::<String, String>::new());
        assert!(report.is_valid());
        assert_eq!(
            report.warnings,
            Vec::<String>::new(),
            "native: nothing to say"
        );
        doc["method"][0]["provider"]["module"] = json!("chaosk8s.node.actions");
        doc["method"][0]["provider"]["func"] = json!("drain_nodes");
        let report = validate(&doc, &Vars::default(), &BTreeMap::<String, String>::new());
        assert!(report.is_valid());
        assert!(
            report.warnings[0].contains("chaosk8s.node.actions.drain_nodes through the Python")
                && report.warnings[0].contains("pip install chaostoolkit-kubernetes"),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn native_functions_bind_their_arguments_like_chaos() {
        let mut doc = valid();
        doc["method"][0]["provider"] = json!({"type": "python",
            "module": "chaosk8s.pod.probes", "func": "pods_in_phase",
            "arguments": {"ns": "x", "namespace": "y", "secrets": ["k8s"]}});
        assert_eq!(
            check(doc.clone()),
            [
                "method[0].provider.arguments.namespace: argument namespace is not part of the function signature in activity 'pods_in_phase'",
                "method[0].provider.arguments: required argument label_selector is missing from activity 'pods_in_phase'",
            ]
        );
        // chaosk8s' pod functions take `secrets` but not `configuration`.
        doc["method"][0]["provider"] = json!({"type": "python",
            "module": "chaosk8s.pod.probes", "func": "count_pods",
            "arguments": {"label_selector": "a", "secrets": {}, "configuration": {}}});
        assert_eq!(
            check(doc.clone()),
            [
                "method[0].provider.arguments.configuration: argument configuration is not part of the function signature in activity 'count_pods'",
            ]
        );
        // chaosaws' EC2 functions take both.
        doc["method"][0]["provider"] = json!({"type": "python",
            "module": "chaosaws.ec2.probes", "func": "describe_instances",
            "arguments": {"filters": [], "secrets": {}, "configuration": {}}});
        assert!(check(doc).is_empty());
    }

    #[test]
    fn runtime_strategies() {
        let mut doc = valid();
        doc["runtime"] = json!({"hypothesis": {"strategy": "sometimes"}});
        assert!(
            check(doc)[0].starts_with("runtime.hypothesis.strategy: unknown hypothesis strategy")
        );
    }
}
