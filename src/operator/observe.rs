//! What a runner pod says about its run, as a pure function of the pod: waiting (and why),
//! running, or finished with a verdict read from the runner's termination message (the JSON
//! `chaosflow run --termination-log` writes), falling back to the exit code when the runner
//! died before writing it.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use super::crd::{RunSummary, Verdict};
use super::resources::RUNNER;

/// A runner pod's run, as far as the pod tells.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// Not running yet; the reason when the kubelet gives one (a missing Secret, an image that
    /// cannot be pulled).
    Waiting(Option<String>),
    /// Running since the given time (RFC 3339).
    Running(Option<String>),
    /// Ended.
    Finished(Finished),
}

/// An ended run.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// How it ended.
    pub verdict: Verdict,
    /// When the runner started and ended (RFC 3339).
    pub start: Option<String>,
    /// When the runner ended (RFC 3339).
    pub end: Option<String>,
    /// The journal's summary, when the runner wrote its outcome.
    pub summary: Option<RunSummary>,
    /// A sentence for `status.message` and the event.
    pub message: String,
}

/// The termination message of `chaosflow run --termination-log`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outcome {
    status: Option<String>,
    #[serde(default)]
    deviated: bool,
    #[serde(default)]
    activities: u32,
    #[serde(default)]
    failed: u32,
    hypothesis_before: Option<bool>,
    hypothesis_after: Option<bool>,
    error: Option<String>,
}

/// Reads `pod`'s run.
pub fn observe(pod: &Pod) -> Observation {
    let status = pod.status.clone().unwrap_or_default();
    let runner = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == RUNNER)
        .or_else(|| status.container_statuses.iter().flatten().next());
    if let Some(state) = runner.and_then(|c| c.state.as_ref()) {
        if let Some(done) = &state.terminated {
            return Observation::Finished(finished(
                done.exit_code,
                done.message.as_deref(),
                done.reason.as_deref(),
                time(&done.started_at),
                time(&done.finished_at),
            ));
        }
        if let Some(running) = &state.running {
            return Observation::Running(time(&running.started_at));
        }
    }
    if status.phase.as_deref() == Some("Failed") {
        // Evicted or rejected before the runner ran.
        let reason = [status.reason, status.message]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        return Observation::Finished(Finished {
            verdict: Verdict::Failed,
            start: None,
            end: None,
            summary: None,
            message: format!("The runner pod failed before the run: {reason}"),
        });
    }
    Observation::Waiting(waiting_reason(
        status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(runner),
    ))
}

/// `pod` cut down to what [`observe`] and the operator's lookups read (identity, labels,
/// creation time; phase, reason, message and the containers' states), for the operator's pod
/// store: the spec, managed fields and the rest of the status would be most of its memory.
pub fn slim(pod: &mut Pod) {
    let meta = std::mem::take(&mut pod.metadata);
    // Of the annotations, only the one that names a long-named experiment.
    let annotations = meta.annotations.and_then(|mut all| {
        let name = all.remove(super::resources::ANNOTATION_EXPERIMENT)?;
        Some([(super::resources::ANNOTATION_EXPERIMENT.to_string(), name)].into())
    });
    pod.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        labels: meta.labels,
        annotations,
        resource_version: meta.resource_version,
        creation_timestamp: meta.creation_timestamp,
        deletion_timestamp: meta.deletion_timestamp,
        ..ObjectMeta::default()
    };
    pod.spec = None;
    pod.status = pod.status.take().map(|status| {
        let states = |statuses: Option<Vec<ContainerStatus>>| {
            statuses.map(|all| {
                all.into_iter()
                    .map(|c| ContainerStatus {
                        name: c.name,
                        state: c.state,
                        ..ContainerStatus::default()
                    })
                    .collect()
            })
        };
        PodStatus {
            phase: status.phase,
            reason: status.reason,
            message: status.message,
            container_statuses: states(status.container_statuses),
            init_container_statuses: states(status.init_container_statuses),
            ..PodStatus::default()
        }
    });
}

fn waiting_reason<'a>(statuses: impl Iterator<Item = &'a ContainerStatus>) -> Option<String> {
    statuses.into_iter().find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        // The normal start-up states say nothing worth reporting.
        if reason == "ContainerCreating" || reason == "PodInitializing" {
            return None;
        }
        Some(match &waiting.message {
            Some(message) => format!("{} ({reason}): {message}", c.name),
            None => format!("{} ({reason})", c.name),
        })
    })
}

fn finished(
    exit_code: i32,
    message: Option<&str>,
    reason: Option<&str>,
    start: Option<String>,
    end: Option<String>,
) -> Finished {
    let outcome = message.and_then(|m| serde_json::from_str::<Outcome>(m.trim()).ok());
    let Some(outcome) = outcome else {
        // No outcome: the runner died (OOMKilled, a bad command) or is not chaosflow.
        let tail = message
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| format!(": {}", last_line(m)))
            .unwrap_or_default();
        let why = reason.unwrap_or("Error");
        return Finished {
            verdict: if exit_code == 0 {
                Verdict::Completed
            } else {
                Verdict::Failed
            },
            start,
            end,
            summary: None,
            message: if exit_code == 0 {
                "The runner exited 0 without an outcome.".into()
            } else {
                format!("The runner ended without an outcome ({why}, exit code {exit_code}){tail}")
            },
        };
    };
    let verdict = match outcome.status.as_deref() {
        Some("completed") if outcome.deviated => Verdict::Deviated,
        Some("completed") => Verdict::Completed,
        Some("aborted") => Verdict::Aborted,
        Some("interrupted") => Verdict::Interrupted,
        _ if outcome.deviated => Verdict::Deviated,
        _ => Verdict::Failed,
    };
    let summary = RunSummary {
        activities: outcome.activities,
        failed: outcome.failed,
        hypothesis_before: outcome.hypothesis_before,
        hypothesis_after: outcome.hypothesis_after,
    };
    let message = match (&outcome.error, outcome.status.as_deref()) {
        (Some(error), Some("invalid")) => format!("The experiment is invalid: {error}"),
        (Some(error), _) => format!("The run {}: {error}", verdict_word(verdict)),
        (None, _) => format!("The run {}: {}.", verdict_word(verdict), describe(&summary)),
    };
    Finished {
        verdict,
        start,
        end,
        summary: (outcome.status.as_deref() != Some("invalid")).then_some(summary),
        message,
    }
}

/// "completed", "deviated"... as a verb phrase.
pub fn verdict_word(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Completed => "completed",
        Verdict::Failed => "failed",
        Verdict::Deviated => "deviated from the steady state",
        Verdict::Aborted => "was aborted",
        Verdict::Interrupted => "was interrupted",
    }
}

/// "3 activities, 1 failed; steady state met before, not after".
pub fn describe(summary: &RunSummary) -> String {
    let word = |met: Option<bool>| match met {
        Some(true) => "met",
        Some(false) => "not met",
        None => "not checked",
    };
    format!(
        "{} activit{}, {} failed; steady state {} before, {} after",
        summary.activities,
        if summary.activities == 1 { "y" } else { "ies" },
        summary.failed,
        word(summary.hypothesis_before),
        word(summary.hypothesis_after)
    )
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
}

fn time(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<String> {
    t.as_ref().map(|t| t.0.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    }

    fn terminated(exit: i32, message: &str) -> Pod {
        pod(
            json!({"phase": if exit == 0 {"Succeeded"} else {"Failed"}, "containerStatuses": [{
            "name": "chaostoolkit", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit, "message": message,
                "startedAt": "2026-11-25T10:00:00Z", "finishedAt": "2026-11-25T10:00:07Z"}}}]}),
        )
    }

    #[test]
    fn the_outcome_gives_the_verdict_and_summary() {
        let Observation::Finished(f) = observe(&terminated(
            1,
            r#"{"status":"completed","deviated":true,"exitCode":1,"activities":3,"failed":0,"hypothesisBefore":true,"hypothesisAfter":false}"#,
        )) else {
            panic!()
        };
        assert_eq!(f.verdict, Verdict::Deviated);
        assert_eq!(f.start.as_deref(), Some("2026-11-25T10:00:00Z"));
        assert_eq!(f.end.as_deref(), Some("2026-11-25T10:00:07Z"));
        assert_eq!(
            f.message,
            "The run deviated from the steady state: 3 activities, 0 failed; steady state met before, not met after."
        );
        let Observation::Finished(f) = observe(&terminated(
            0,
            r#"{"status":"completed","deviated":false,"activities":1,"failed":0,"hypothesisBefore":true,"hypothesisAfter":true}"#,
        )) else {
            panic!()
        };
        assert_eq!(f.verdict, Verdict::Completed);
        assert_eq!(f.summary.unwrap().activities, 1);
        let Observation::Finished(f) = observe(&terminated(
            1,
            r#"{"status":"invalid","deviated":false,"exitCode":1,"error":"experiment.json: missing title"}"#,
        )) else {
            panic!()
        };
        assert_eq!(f.verdict, Verdict::Failed);
        assert_eq!(
            f.message,
            "The experiment is invalid: experiment.json: missing title"
        );
        assert!(f.summary.is_none());
    }

    #[test]
    fn a_runner_without_outcome_fails_with_its_last_words() {
        let Observation::Finished(f) =
            observe(&terminated(137, "starting\nout of memory: killed\n"))
        else {
            panic!()
        };
        assert_eq!(f.verdict, Verdict::Failed);
        assert!(
            f.message.contains("exit code 137): out of memory: killed"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_slim_pod_says_what_the_whole_one_says() {
        let failed = pod(
            json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory",
            "podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "False"}]}),
        );
        let waiting = pod(json!({"phase": "Pending", "initContainerStatuses": [{
            "name": "chaosflow-sidecar", "image": "i", "imageID": "x", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}]}));
        for whole in [
            terminated(0, "{}"),
            terminated(137, "killed"),
            failed,
            waiting,
        ] {
            let mut cut = whole.clone();
            slim(&mut cut);
            assert_eq!(observe(&cut), observe(&whole));
            assert_eq!(cut.metadata.name, whole.metadata.name);
        }
    }

    #[test]
    fn waiting_says_why_and_running_says_since_when() {
        let waiting = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "chaostoolkit", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"x\" not found"}}}]}));
        assert_eq!(
            observe(&waiting),
            Observation::Waiting(Some(
                "chaostoolkit (CreateContainerConfigError): secret \"x\" not found".into()
            ))
        );
        let running = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "chaostoolkit", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-11-25T10:00:00Z"}}}]}));
        assert_eq!(
            observe(&running),
            Observation::Running(Some("2026-11-25T10:00:00Z".into()))
        );
        assert_eq!(observe(&pod(json!({}))), Observation::Waiting(None));
    }
}
