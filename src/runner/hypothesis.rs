//! The steady-state hypothesis and its tolerances.
//!
//! Probes run one after another; the first failed probe or unmet tolerance ends the evaluation
//! (later probes do not run). Tolerances follow `chaos` to the letter, including its
//! surprises: a bool or string tolerance never matches a process/http output, an int or a list
//! is checked against the output's `status` (membership, even for two elements), a probe
//! tolerance is met whenever its provider runs. Where `chaos` crashes (a regex on a whole
//! output, a range over a mapping), chaosflow reports the error and aborts the run cleanly.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Value, json};

use super::activity::{self, Abort, Record};
use super::{Ctx, Dry, ProviderError};
use crate::events::{Phase, names};
use crate::journal::SteadyState;
use crate::jsonpath::JsonPath;
use crate::python;
use crate::substitute::substitute;

/// The hypothesis could not be evaluated: an unexpected error, with the state so far.
#[derive(Debug, Clone)]
pub(crate) struct HypothesisAbort {
    /// The evaluation up to the error.
    pub state: SteadyState,
    /// What went wrong.
    pub error: String,
}

/// Evaluates the steady-state hypothesis once.
pub(crate) async fn evaluate(
    ctx: &Arc<Ctx>,
    phase: Phase,
    iteration: Option<u64>,
) -> Result<SteadyState, HypothesisAbort> {
    let title = ctx
        .experiment
        .hypothesis()
        .and_then(|h| h.get("title"))
        .cloned()
        .unwrap_or(Value::Null);
    tracing::info!("Steady state hypothesis: {}", python::to_str(&title));
    ctx.emitter.emit(
        names::HYPOTHESIS_STARTED,
        phase,
        json!({"title": title, "iteration": iteration}),
        None,
    );
    let result = evaluate_probes(ctx, phase).await;
    let (state, error) = match &result {
        Ok(state) => (state, None),
        Err(abort) => (&abort.state, Some(abort.error.clone())),
    };
    ctx.emitter.emit(
        names::HYPOTHESIS_COMPLETED,
        phase,
        json!({
            "title": title,
            "iteration": iteration,
            "steady_state_met": state.steady_state_met,
            "probes": state.probes,
        }),
        error,
    );
    result
}

async fn evaluate_probes(ctx: &Arc<Ctx>, phase: Phase) -> Result<SteadyState, HypothesisAbort> {
    let mut state = SteadyState {
        steady_state_met: None,
        probes: Vec::new(),
    };
    for (index, entry) in ctx.experiment.hypothesis_probes().iter().enumerate() {
        let executed = match activity::execute(ctx, entry, phase, Record::Probe(index)).await {
            Ok(e) => e,
            Err(Abort { error, item }) => {
                if let Some(mut item) = item {
                    item.tolerance_met = Some(false);
                    state.probes.push(*item);
                }
                state.steady_state_met = Some(false);
                return Err(HypothesisAbort { state, error });
            }
        };
        let mut item = executed.item;
        if item.status == Some(crate::journal::ItemStatus::Failed) {
            item.tolerance_met = Some(false);
            state.steady_state_met = Some(false);
            tracing::warn!(
                "Probe terminated unexpectedly, so its tolerance could not be validated"
            );
            activity::emit_completed(ctx, phase, &item, executed.started_seq, None);
            state.probes.push(item);
            return Ok(state);
        }
        item.tolerance_met = Some(true);
        if matches!(ctx.dry, Some(Dry::Probes | Dry::Activities)) {
            // Dry probes have no output to check: the tolerance counts as met.
            activity::emit_completed(ctx, phase, &item, executed.started_seq, None);
            state.probes.push(item);
            continue;
        }
        let mut tolerance = entry.get("tolerance").cloned().unwrap_or(Value::Null);
        if tolerance.is_string() {
            tolerance = substitute(&tolerance, &ctx.scope);
        }
        tracing::debug!("allowed tolerance is {}", python::to_str(&tolerance));
        match within_tolerance(ctx, index, &tolerance, &item.output).await {
            Ok(true) => {
                activity::emit_completed(ctx, phase, &item, executed.started_seq, None);
                state.probes.push(item);
            }
            Ok(false) => {
                item.tolerance_met = Some(false);
                state.steady_state_met = Some(false);
                activity::emit_completed(ctx, phase, &item, executed.started_seq, None);
                state.probes.push(item);
                return Ok(state);
            }
            Err(error) => {
                let error = format!(
                    "cannot check the tolerance of probe '{}': {error}",
                    item.activity
                        .get("name")
                        .map(python::to_str)
                        .unwrap_or_default()
                );
                item.tolerance_met = Some(false);
                state.steady_state_met = Some(false);
                activity::emit_completed(
                    ctx,
                    phase,
                    &item,
                    executed.started_seq,
                    Some(error.clone()),
                );
                state.probes.push(item);
                return Err(HypothesisAbort { state, error });
            }
        }
    }
    state.steady_state_met = Some(true);
    tracing::info!("Steady state hypothesis is met!");
    Ok(state)
}

/// Whether `output` is within `tolerance`; `Err` where `chaos` would raise.
async fn within_tolerance(
    ctx: &Arc<Ctx>,
    probe_index: usize,
    tolerance: &Value,
    output: &Value,
) -> Result<bool, String> {
    match tolerance {
        Value::Bool(_) | Value::String(_) => Ok(python::eq(output, tolerance)),
        Value::Number(n) if !n.is_f64() => Ok(match output.get("status") {
            Some(status) if output.is_object() => python::eq(status, tolerance),
            _ => python::eq(output, tolerance),
        }),
        Value::Array(list) => {
            if let Some(status) = output.as_object().and_then(|o| o.get("status")) {
                return Ok(python::contains(list, status));
            }
            if list.len() == 2 {
                let lo = python::partial_cmp(&list[0], output);
                let hi = python::partial_cmp(output, &list[1]);
                return match (lo, hi) {
                    (Some(lo), Some(hi)) => Ok(lo != Ordering::Greater && hi != Ordering::Greater),
                    _ => Err(format!(
                        "cannot compare {} with the bounds {}",
                        python::repr(output),
                        python::repr(tolerance)
                    )),
                };
            }
            Ok(python::contains(list, output))
        }
        Value::Object(spec) => match spec.get("type").and_then(Value::as_str) {
            Some("probe") => probe_tolerance(ctx, probe_index, tolerance, output).await,
            Some("regex") => {
                let value = target(spec, output)?;
                let pattern = spec.get("pattern").map(|p| substitute(p, &ctx.scope));
                let Some(Value::String(pattern)) = pattern else {
                    return Err("a regex tolerance needs a string `pattern`".into());
                };
                tracing::debug!("Applied pattern is: {pattern}");
                let regex = python::compile_regex(&pattern)
                    .map_err(|e| format!("invalid pattern {pattern}: {e}"))?;
                let Value::String(text) = value else {
                    return Err(format!(
                        "a regex tolerance searches text, but the value is a {} (set `target` to \
                         the field to search, e.g. stdout or body)",
                        python::type_name(value)
                    ));
                };
                regex
                    .is_match(text)
                    .map_err(|e| format!("pattern {pattern} failed: {e}"))
            }
            Some("jsonpath") => {
                let value = target(spec, output)?;
                let path = spec.get("path").map(|p| substitute(p, &ctx.scope));
                let Some(Value::String(path)) = path else {
                    return Err("a jsonpath tolerance needs a string `path`".into());
                };
                tracing::debug!("Applied jsonpath is: {path}");
                let compiled = JsonPath::parse(path.trim())
                    .map_err(|e| format!("invalid JSON path {path}: {e}"))?;
                // A string holding JSON (a text body, stdout) is parsed first.
                let document = match value {
                    Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| value.clone()),
                    other => other.clone(),
                };
                let values = compiled.query(&document);
                let mut result = !values.is_empty();
                if let Some(count) = spec.get("count").filter(|c| !c.is_null()) {
                    result = python::eq(&Value::from(values.len()), count);
                }
                if let Some(expect) = spec.get("expect") {
                    let expect = substitute(expect, &ctx.scope);
                    let found = Value::Array(values.clone());
                    result = match &expect {
                        Value::Array(_) => python::eq(&found, &expect),
                        other => python::eq(&found, &Value::Array(vec![other.clone()])),
                    };
                    if !result {
                        tracing::debug!(
                            "jsonpath found '{}' but expected '{}'",
                            python::to_str(&found),
                            python::to_str(&expect)
                        );
                    }
                } else if !result {
                    let found = python::to_str(&Value::Array(values));
                    tracing::debug!("jsonpath found '{found}'");
                }
                Ok(result)
            }
            Some("range") => {
                let value = target(spec, output)?;
                let number = match value {
                    Value::Number(n) => n.as_f64(),
                    Value::Bool(b) => Some(f64::from(u8::from(*b))),
                    Value::String(s) => decimal(s),
                    other => {
                        return Err(format!(
                            "a range tolerance needs a number, but the value is a {} (set \
                             `target` to the numeric field, e.g. status)",
                            python::type_name(other)
                        ));
                    }
                };
                let Some(v) = number else {
                    tracing::debug!("range check expects a number value");
                    return Ok(false);
                };
                let bounds = spec.get("range").and_then(Value::as_array);
                let bound = |i: usize| -> Option<f64> {
                    match bounds?.get(i)? {
                        Value::Number(n) => n.as_f64(),
                        Value::Bool(b) => Some(f64::from(u8::from(*b))),
                        _ => None,
                    }
                };
                match (bound(0), bound(1)) {
                    (Some(lo), Some(hi)) => Ok(lo <= v && v <= hi),
                    _ => Err("a range tolerance needs `range: [low, high]`".into()),
                }
            }
            // An unknown type checks nothing and is never met (chaos returns None).
            _ => Ok(false),
        },
        // Floats and null are not tolerances chaos dispatches on: never met.
        _ => Ok(false),
    }
}

/// `value.get(target, value)`: the targeted field of a mapping output, else the output.
fn target<'a>(
    spec: &serde_json::Map<String, Value>,
    output: &'a Value,
) -> Result<&'a Value, String> {
    match spec.get("target").filter(|t| python::truthy(t)) {
        None => Ok(output),
        Some(t) => {
            let key = python::to_str(t);
            match output {
                Value::Object(map) => Ok(map.get(&key).unwrap_or(output)),
                other => Err(format!(
                    "`target: {key}` needs a mapping output, but the output is a {}",
                    python::type_name(other)
                )),
            }
        }
    }
}

/// Python's `Decimal(str)`: surrounding whitespace allowed, `None` when not a number.
fn decimal(s: &str) -> Option<f64> {
    let t = s.trim().replace('_', "");
    let body = t.strip_prefix(['+', '-']).unwrap_or(&t);
    let lowered = body.to_ascii_lowercase();
    if matches!(lowered.as_str(), "inf" | "infinity") {
        return t.parse::<f64>().ok();
    }
    let mut digits = false;
    let valid = body.chars().enumerate().all(|(i, c)| {
        if c.is_ascii_digit() {
            digits = true;
            true
        } else {
            matches!(c, '.' | 'e' | 'E') || (matches!(c, '+' | '-') && i > 0)
        }
    });
    if !valid || !digits {
        return None;
    }
    t.parse::<f64>().ok()
}

/// A `type: probe` tolerance: the output is given to the checker as `arguments.value`, and the
/// tolerance is met when the checker runs and returns something truthy.
async fn probe_tolerance(
    ctx: &Arc<Ctx>,
    probe_index: usize,
    tolerance: &Value,
    output: &Value,
) -> Result<bool, String> {
    let mut checker = tolerance.clone();
    let name = checker.get("name").map(python::to_str).unwrap_or_default();
    let arguments = checker
        .get_mut("provider")
        .and_then(|p| p.get_mut("arguments"))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| {
            format!(
                "probe tolerance '{name}' needs `provider.arguments` (a mapping) to receive the \
                 checked output as `value`"
            )
        })?;
    arguments.insert("value".into(), output.clone());
    ctx.record_tolerance_value(probe_index, output.clone());
    let Some(provider) = checker.get("provider").and_then(Value::as_object) else {
        return Err(format!("probe tolerance '{name}' needs a provider"));
    };
    let has_tolerance = checker.get("tolerance").is_some();
    match super::run_provider(ctx, provider, &name, has_tolerance, None).await {
        Ok(result) => Ok(python::truthy(&result)),
        Err(ProviderError::Failed(_)) => Ok(false),
        Err(ProviderError::Fatal(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_parsing_like_python() {
        assert_eq!(decimal("7\n"), Some(7.0));
        assert_eq!(decimal(" 2.5 "), Some(2.5));
        assert_eq!(decimal("1e3"), Some(1000.0));
        assert_eq!(decimal("-3"), Some(-3.0));
        assert_eq!(decimal("abc"), None);
        assert_eq!(decimal(""), None);
        assert_eq!(decimal("1.2.3"), None);
    }
}
