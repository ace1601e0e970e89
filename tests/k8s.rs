//! The native chaostoolkit-kubernetes functions (`chaosk8s.pod.*`) through `chaosflow run`,
//! against the loopback fake API server: the demo's kill-pods-with-label experiment, then each
//! function's selection rules and failures.

use std::path::Path;

use fake_apiserver::FakeApiServer;
use serde_json::{Value, json};

use crate::support::{self, Outcome, Run, server};

/// A fake cluster with pods in `sock-shop`: three `name=front-end` (Running), one
/// `name=catalogue` (Pending); a kubeconfig for it in `dir`.
fn cluster(dir: &Path) -> FakeApiServer {
    let server = FakeApiServer::spawn().unwrap();
    server.write_kubeconfig(dir.join("kubeconfig")).unwrap();
    server
        .apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sock-shop"}}))
        .unwrap();
    let pods = [
        ("front-end-a", "front-end", "Running"),
        ("front-end-b", "front-end", "Running"),
        ("front-end-c", "front-end", "Running"),
        ("catalogue-a", "catalogue", "Pending"),
    ];
    for (name, app, phase) in pods {
        server
            .apply(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "sock-shop", "labels": {"name": app}},
                "spec": {"containers": [{"name": "app", "image": "weaveworksdemos/front-end"}]}}))
            .unwrap();
        server
            .patch_status("v1", "Pod", "sock-shop", name, json!({"phase": phase}))
            .unwrap();
    }
    server
}

fn pod_names(server: &FakeApiServer) -> Vec<String> {
    let mut names: Vec<String> = server
        .list("v1", "Pod", Some("sock-shop"))
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn run(dir: &Path, experiment: &Path, env: &[(&str, &str)]) -> Outcome {
    let mut run = Run::chaosflow()
        .args(["run", "--dry", "pause"])
        .args([experiment.display().to_string()])
        .env("KUBECONFIG", &dir.join("kubeconfig").display().to_string())
        .env("CHAOSTOOLKIT_IN_POD", "false");
    for (key, value) in env {
        run = run.env(key, value);
    }
    run.run()
}

/// The demo experiment: the service answers, the front-end pods run, one is terminated.
#[test]
fn kill_pods_with_label_terminates_one_selected_pod() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster(dir.path());
    let service = format!("{}/json", server::base_url());
    let out = run(
        dir.path(),
        &support::repo().join("experiments/kill-pods-with-label.yaml"),
        &[("SERVICE_URL", &service)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let journal = out.journal();
    assert_eq!(journal["status"], "completed");
    assert_eq!(journal["deviated"], false);
    let before = &journal["steady_states"]["before"]["probes"];
    assert_eq!(before[1]["activity"]["name"], "selected-pods-are-running");
    assert_eq!(before[1]["output"], true);
    assert_eq!(before[1]["tolerance_met"], true);
    let terminated = &journal["run"][0]["output"];
    let terminated = terminated.as_array().expect("a list of pod names");
    assert_eq!(terminated.len(), 1, "qty defaults to 1: {terminated:?}");
    assert_eq!(
        terminated[0], "front-end-a",
        "alphabetic, not random, by default"
    );
    assert_eq!(
        pod_names(&server),
        ["catalogue-a", "front-end-b", "front-end-c"]
    );
    // The two left still run: the hypothesis holds after.
    assert_eq!(journal["steady_states"]["after"]["steady_state_met"], true);
}

/// An experiment of one action or probe with `arguments`, run against the fake cluster.
fn call(dir: &Path, module: &str, func: &str, arguments: Value) -> Value {
    let (kind, tolerance) = if module.ends_with("actions") {
        ("action", None)
    } else {
        ("probe", Some(json!(true)))
    };
    let mut activity = json!({"type": kind, "name": func,
        "provider": {"type": "python", "module": module, "func": func, "arguments": arguments}});
    if let Some(tolerance) = tolerance {
        activity["tolerance"] = tolerance;
    }
    let experiment = dir.join(format!("{func}.json"));
    std::fs::write(
        &experiment,
        json!({"title": "t", "description": "d", "method": [activity]}).to_string(),
    )
    .unwrap();
    let out = run(dir, &experiment, &[]);
    out.journal()["run"][0].clone()
}

#[test]
fn terminate_pods_selects_as_chaostoolkit_kubernetes_does() {
    let actions = "chaosk8s.pod.actions";
    // percentage: ceil(50% of 3) = 2; a name pattern narrows first.
    let dir = tempfile::tempdir().unwrap();
    let server = cluster(dir.path());
    let item = call(
        dir.path(),
        actions,
        "terminate_pods",
        json!({"label_selector": "name=front-end", "ns": "sock-shop", "mode": "percentage", "qty": 50}),
    );
    assert_eq!(item["output"], json!(["front-end-a", "front-end-b"]));
    assert_eq!(pod_names(&server), ["catalogue-a", "front-end-c"]);

    let dir = tempfile::tempdir().unwrap();
    let server = cluster(dir.path());
    let item = call(
        dir.path(),
        actions,
        "terminate_pods",
        json!({"name_pattern": "-[bc]$", "ns": "sock-shop", "all": true}),
    );
    assert_eq!(item["output"], json!(["front-end-b", "front-end-c"]));
    assert_eq!(pod_names(&server), ["catalogue-a", "front-end-a"]);

    // rand: two of the three front-ends, whichever; more than there are is capped.
    let dir = tempfile::tempdir().unwrap();
    let server = cluster(dir.path());
    let item = call(
        dir.path(),
        actions,
        "terminate_pods",
        json!({"label_selector": "name=front-end", "ns": "sock-shop", "rand": true, "qty": 2}),
    );
    let chosen = item["output"].as_array().unwrap();
    assert_eq!(chosen.len(), 2);
    assert!(
        chosen
            .iter()
            .all(|n| n.as_str().unwrap().starts_with("front-end-"))
    );
    assert_eq!(pod_names(&server).len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let _server = cluster(dir.path());
    let item = call(
        dir.path(),
        actions,
        "terminate_pods",
        json!({"label_selector": "name=front-end", "ns": "sock-shop", "qty": 10}),
    );
    assert_eq!(item["output"].as_array().unwrap().len(), 3);

    // Bad arguments fail the activity with chaostoolkit-kubernetes' message.
    let item = call(
        dir.path(),
        actions,
        "terminate_pods",
        json!({"ns": "sock-shop", "mode": "half"}),
    );
    assert_eq!(item["status"], "failed");
    assert_eq!(
        item["exception"][0],
        "chaoslib.exceptions.ActivityFailed: chaoslib.exceptions.ActivityFailed: Cannot select pods. Mode 'half' is invalid.\n"
    );
}

#[test]
fn pod_probes_report_phases_and_counts() {
    let probes = "chaosk8s.pod.probes";
    let dir = tempfile::tempdir().unwrap();
    let _server = cluster(dir.path());
    let count = |arguments| call(dir.path(), probes, "count_pods", arguments)["output"].clone();
    assert_eq!(
        count(json!({"label_selector": "name=front-end", "ns": "sock-shop"})),
        3
    );
    assert_eq!(
        count(json!({"label_selector": "name", "ns": "sock-shop", "phase": "Pending"})),
        1
    );
    assert_eq!(
        count(json!({"label_selector": "name=nothing", "ns": "sock-shop"})),
        0
    );

    let in_phase = call(
        dir.path(),
        probes,
        "pods_in_phase",
        json!({"label_selector": "name=catalogue", "ns": "sock-shop"}),
    );
    assert_eq!(in_phase["status"], "failed");
    assert_eq!(
        in_phase["exception"][0],
        "chaoslib.exceptions.ActivityFailed: chaoslib.exceptions.ActivityFailed: pod 'name=catalogue' is in phase 'Pending' but should be 'Running'\n"
    );
    let quiet = call(
        dir.path(),
        probes,
        "pods_in_phase",
        json!({"label_selector": "name=catalogue", "ns": "sock-shop", "raise_on_invalid_phase": false}),
    );
    assert_eq!(quiet["output"], false);
    let none = call(
        dir.path(),
        probes,
        "pods_in_phase",
        json!({"label_selector": "name=nothing", "ns": "sock-shop"}),
    );
    assert!(
        none["exception"][0]
            .as_str()
            .unwrap()
            .ends_with("no pods 'name=nothing' were found\n"),
        "{none}"
    );
    let not_in = call(
        dir.path(),
        probes,
        "pods_not_in_phase",
        json!({"label_selector": "name=catalogue", "ns": "sock-shop"}),
    );
    assert_eq!(not_in["output"], true);
    let not_in = call(
        dir.path(),
        probes,
        "pods_not_in_phase",
        json!({"label_selector": "name=front-end", "ns": "sock-shop", "raise_on_in_phase": false}),
    );
    assert_eq!(not_in["output"], false);
    // A misspelt argument: refused by validation, as chaos refuses it with the extension
    // installed; without validation, the activity fails as Python would bind it.
    let experiment = dir.path().join("misspelt.json");
    std::fs::write(
        &experiment,
        json!({"title": "t", "description": "d", "method": [{"type": "probe", "name": "count",
            "provider": {"type": "python", "module": probes, "func": "count_pods",
                "arguments": {"label_selector": "name", "namespace": "sock-shop"}}}]})
        .to_string(),
    )
    .unwrap();
    let refused = run(dir.path(), &experiment, &[]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains(
            "method[0].provider.arguments.namespace: argument namespace is not part of the function signature in activity 'count_pods'"
        ),
        "{}",
        refused.stderr
    );
    let unvalidated = Run::chaosflow()
        .args(["run", "--no-validation"])
        .args([experiment.display().to_string()])
        .env(
            "KUBECONFIG",
            &dir.path().join("kubeconfig").display().to_string(),
        )
        .run();
    let item = &unvalidated.journal()["run"][0];
    assert!(
        item["exception"][0]
            .as_str()
            .unwrap()
            .contains("count_pods() got an unexpected keyword argument 'namespace'"),
        "{item}"
    );
}

/// No cluster: a clear failure naming where the configuration was looked for.
#[test]
fn without_a_cluster_the_activity_says_how_to_configure_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kubeconfig"), "").unwrap();
    let experiment = dir.path().join("e.json");
    std::fs::write(
        &experiment,
        json!({"title": "t", "description": "d", "method": [{"type": "action", "name": "kill",
            "provider": {"type": "python", "module": "chaosk8s.pod.actions", "func": "terminate_pods",
                "arguments": {"ns": "x"}}}]})
        .to_string(),
    )
    .unwrap();
    let out = Run::chaosflow()
        .args(["run", experiment.display().to_string().as_str()])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", &dir.path().display().to_string())
        .run();
    let item = &out.journal()["run"][0];
    assert_eq!(item["status"], "failed");
    assert!(
        item["exception"][0]
            .as_str()
            .unwrap()
            .contains("set KUBECONFIG"),
        "{item}"
    );
}
