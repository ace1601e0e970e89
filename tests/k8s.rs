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

/// `chaosflow run --no-validation` against the cluster of `dir`: what the call itself does
/// with arguments validation would refuse.
fn run_unvalidated(dir: &Path, experiment: &Path) -> Outcome {
    Run::chaosflow()
        .args(["run", "--no-validation"])
        .args([experiment.display().to_string()])
        .env("KUBECONFIG", &dir.join("kubeconfig").display().to_string())
        .run()
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

/// An experiment of one action or probe with `arguments`, written in `dir`; `secrets` become
/// the experiment's secrets scope `k8s`, which the provider then declares.
fn experiment(
    dir: &Path,
    module: &str,
    func: &str,
    arguments: Value,
    secrets: Option<Value>,
) -> std::path::PathBuf {
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
    let mut doc = json!({"title": "t", "description": "d", "method": [activity]});
    if let Some(secrets) = secrets {
        doc["secrets"] = json!({"k8s": secrets});
        doc["method"][0]["provider"]["secrets"] = json!(["k8s"]);
    }
    let experiment = dir.join(format!("{func}.json"));
    std::fs::write(&experiment, doc.to_string()).unwrap();
    experiment
}

/// An experiment of one action or probe with `arguments`, run against the fake cluster.
fn call(dir: &Path, module: &str, func: &str, arguments: Value) -> Value {
    let experiment = experiment(dir, module, func, arguments, None);
    let out = run(dir, &experiment, &[]);
    out.journal()["run"][0].clone()
}

/// The first line of the activity's exception (Python's message) for a failed activity.
fn failure(item: &Value) -> String {
    assert_eq!(item["status"], "failed", "{item}");
    item["exception"][0]
        .as_str()
        .unwrap()
        .trim_end()
        .strip_prefix("chaoslib.exceptions.ActivityFailed: ")
        .unwrap_or_else(|| panic!("{item}"))
        .to_owned()
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
    let unvalidated = run_unvalidated(dir.path(), &experiment);
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

/// An explicit `null` is Python's `None`, which replaces the default: each argument then does
/// what chaostoolkit-kubernetes does with `None` (read from its source, and as chaos reports
/// it with the extension installed).
#[test]
fn an_explicit_null_is_none_not_the_default() {
    let actions = "chaosk8s.pod.actions";
    let probes = "chaosk8s.pod.probes";
    let dir = tempfile::tempdir().unwrap();
    let server = cluster(dir.path());
    let terminate = |arguments: Value| {
        let mut arguments = arguments;
        arguments["ns"] = arguments.get("ns").cloned().unwrap_or(json!("sock-shop"));
        arguments["label_selector"] = json!("name=catalogue");
        call(dir.path(), actions, "terminate_pods", arguments)
    };
    assert_eq!(
        failure(&terminate(json!({"mode": null}))),
        "chaoslib.exceptions.ActivityFailed: Cannot select pods. Mode 'None' is invalid."
    );
    assert_eq!(
        failure(&terminate(json!({"order": null}))),
        "chaoslib.exceptions.ActivityFailed: Cannot select pods. Order 'None' is invalid."
    );
    assert_eq!(
        failure(&terminate(json!({"qty": null}))),
        "TypeError: '<' not supported between instances of 'NoneType' and 'int'"
    );
    assert_eq!(
        failure(&terminate(json!({"grace_period": null}))),
        "TypeError: '>=' not supported between instances of 'NoneType' and 'int'"
    );
    // The kubernetes client's pydantic check refuses a namespace that is not a string.
    assert_eq!(
        failure(&terminate(json!({"ns": null}))),
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for \
         CoreV1Api.list_namespaced_pod\n1\n  Input should be a valid string [type=string_type, \
         input_value=None, input_type=NoneType]\n    For further information visit \
         https://errors.pydantic.dev/2.14/v/string_type"
    );
    assert_eq!(pod_names(&server).len(), 4, "no failure deleted anything");
    // Where None is falsy, it is the default's `False` or no filter.
    let item = terminate(json!({"name_pattern": null, "all": null, "rand": null}));
    assert_eq!(item["output"], json!(["catalogue-a"]));

    let in_phase = call(
        dir.path(),
        probes,
        "pods_in_phase",
        json!({"label_selector": "name=front-end", "ns": "sock-shop", "phase": null}),
    );
    assert_eq!(
        failure(&in_phase),
        "chaoslib.exceptions.ActivityFailed: pod 'name=front-end' is in phase 'Running' but should be 'None'"
    );
    // `raise_on_invalid_phase: null` is falsy: a verdict, not a failure.
    let quiet = call(
        dir.path(),
        probes,
        "pods_in_phase",
        json!({"label_selector": "name=front-end", "ns": "sock-shop", "phase": "Pending",
            "raise_on_invalid_phase": null}),
    );
    assert_eq!(quiet["output"], false, "{quiet}");
    let count = call(
        dir.path(),
        probes,
        "count_pods",
        json!({"label_selector": null, "ns": "sock-shop", "phase": null}),
    );
    assert_eq!(count["output"], 3, "every pod left: {count}");
}

/// `if not phase` / `if label_selector`: Python's truthiness decides, before any string is
/// made of the value; a truthy value that is not a string is refused by the client.
#[test]
fn falsy_values_select_what_none_selects() {
    let probes = "chaosk8s.pod.probes";
    let dir = tempfile::tempdir().unwrap();
    let server = cluster(dir.path());
    let count = |arguments| call(dir.path(), probes, "count_pods", arguments)["output"].clone();
    for phase in [json!(false), json!(0), json!(""), json!([])] {
        assert_eq!(
            count(json!({"label_selector": "name=front-end", "ns": "sock-shop", "phase": phase})),
            3,
            "phase {phase} counts every pod"
        );
    }
    for selector in [json!(false), json!(0), json!("")] {
        assert_eq!(
            count(json!({"label_selector": selector, "ns": "sock-shop"})),
            4,
            "label_selector {selector} selects every pod"
        );
    }
    // A truthy phase that is no pod's phase counts none.
    assert_eq!(
        count(json!({"label_selector": "name=front-end", "ns": "sock-shop", "phase": true})),
        0
    );
    let refused = call(
        dir.path(),
        probes,
        "count_pods",
        json!({"label_selector": 5, "ns": "sock-shop"}),
    );
    assert!(
        failure(&refused).contains(
            "\nlabel_selector\n  Input should be a valid string [type=string_type, input_value=5, input_type=int]"
        ),
        "{refused}"
    );
    let item = call(
        dir.path(),
        "chaosk8s.pod.actions",
        "terminate_pods",
        json!({"label_selector": false, "name_pattern": "", "ns": "sock-shop", "all": true}),
    );
    assert_eq!(item["output"].as_array().unwrap().len(), 4, "{item}");
    assert!(pod_names(&server).is_empty());
}

/// `qty`: percentages computed as Python computes them (no overflow; floats then the
/// ceiling), and a fractional quantity in fixed mode failing where Python slices with it.
#[test]
fn quantities_compute_as_python_does() {
    let actions = "chaosk8s.pod.actions";
    let terminate = |dir: &Path, arguments: Value| {
        let mut arguments = arguments;
        arguments["ns"] = json!("sock-shop");
        arguments["label_selector"] = json!("name=front-end");
        call(dir, actions, "terminate_pods", arguments)
    };
    for qty in [json!(i64::MAX), json!(u64::MAX)] {
        let dir = tempfile::tempdir().unwrap();
        let _server = cluster(dir.path());
        let item = terminate(dir.path(), json!({"mode": "percentage", "qty": qty}));
        assert_eq!(
            item["output"],
            json!(["front-end-a", "front-end-b", "front-end-c"]),
            "{qty}% is every pod: {item}"
        );
    }
    // 50.5% of 2 pods: ceil(1.01) = 2.
    let dir = tempfile::tempdir().unwrap();
    let _server = cluster(dir.path());
    let item = terminate(
        dir.path(),
        json!({"mode": "percentage", "qty": 50.5, "name_pattern": "-[ab]$"}),
    );
    assert_eq!(item["output"], json!(["front-end-a", "front-end-b"]));

    let dir = tempfile::tempdir().unwrap();
    let server = cluster(dir.path());
    assert_eq!(
        failure(&terminate(dir.path(), json!({"qty": 1.5}))),
        "TypeError: slice indices must be integers or None or have an __index__ method"
    );
    assert_eq!(
        failure(&terminate(dir.path(), json!({"qty": 1.5, "rand": true}))),
        "TypeError: can't multiply sequence by non-int of type 'float'"
    );
    // min(3.0, 3) is 3.0, still a float.
    assert!(failure(&terminate(dir.path(), json!({"qty": 3.0}))).starts_with("TypeError"));
    assert_eq!(
        failure(&terminate(
            dir.path(),
            json!({"mode": "percentage", "qty": 1e308})
        )),
        "OverflowError: cannot convert float infinity to integer"
    );
    assert_eq!(pod_names(&server).len(), 4, "no failure deleted anything");
    // min(3.5, 3) is the int 3.
    let item = terminate(dir.path(), json!({"qty": 3.5}));
    assert_eq!(item["output"].as_array().unwrap().len(), 3, "{item}");
}

/// `secrets` in `arguments` is what the function gets when the provider declares no secrets
/// (chaos binds it, the functions take `secrets`); declared secrets replace it. The functions
/// take no `configuration`: validation refuses it, as chaos does.
#[test]
fn secrets_and_configuration_arguments_bind_as_chaos_binds_them() {
    let probes = "chaosk8s.pod.probes";
    let dir = tempfile::tempdir().unwrap();
    let _server = cluster(dir.path());
    let item = call(
        dir.path(),
        "chaosk8s.pod.actions",
        "terminate_pods",
        json!({"label_selector": "name=catalogue", "ns": "sock-shop", "secrets": {}}),
    );
    assert_eq!(item["output"], json!(["catalogue-a"]), "{item}");
    let item = call(
        dir.path(),
        probes,
        "count_pods",
        json!({"label_selector": "name", "ns": "sock-shop",
            "secrets": {"KUBERNETES_CONTEXT": "nope"}}),
    );
    assert!(
        failure(&item).contains("Expected object with name nope in "),
        "the argument's context is used: {item}"
    );
    let item = call(
        dir.path(),
        probes,
        "count_pods",
        json!({"label_selector": "name", "ns": "sock-shop", "secrets": "k8s"}),
    );
    assert_eq!(
        failure(&item),
        "AttributeError: 'str' object has no attribute 'get'"
    );
    // Declared secrets win over the argument.
    let declared = experiment(
        dir.path(),
        probes,
        "count_pods",
        json!({"label_selector": "name", "ns": "sock-shop",
            "secrets": {"KUBERNETES_CONTEXT": "nope"}}),
        Some(json!({"KUBERNETES_CONTEXT": "fake"})),
    );
    let out = run(dir.path(), &declared, &[]);
    assert_eq!(out.journal()["run"][0]["output"], 3, "{}", out.stderr);

    let configured = experiment(
        dir.path(),
        probes,
        "count_pods",
        json!({"label_selector": "name", "ns": "sock-shop", "configuration": {}}),
        None,
    );
    let refused = run(dir.path(), &configured, &[]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains(
            "method[0].provider.arguments.configuration: argument configuration is not part of the function signature in activity 'count_pods'"
        ),
        "{}",
        refused.stderr
    );
    let unvalidated = run_unvalidated(dir.path(), &configured);
    assert_eq!(
        failure(&unvalidated.journal()["run"][0]),
        "TypeError: count_pods() got an unexpected keyword argument 'configuration'"
    );
}

/// `chaosflow run` in `dir` with no kubeconfig anywhere (`KUBECONFIG` and `HOME` lead
/// nowhere), `CHAOSTOOLKIT_IN_POD` unset, and `env` on top.
fn run_without_kubeconfig(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut run = Run::chaosflow()
        .args(["run", "--dry", "pause"])
        .args(args.iter().copied())
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", &dir.display().to_string())
        .env("CHAOSTOOLKIT_IN_POD", "");
    for (key, value) in env {
        run = run.env(key, value);
    }
    run.run()
}

/// Variables of a `.env` var file are in chaos's environment, where chaosk8s reads
/// `KUBECONFIG`, `KUBERNETES_CONTEXT` and `CHAOSTOOLKIT_IN_POD`.
#[test]
fn a_var_file_configures_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let _server = cluster(dir.path());
    let experiment = experiment(
        dir.path(),
        "chaosk8s.pod.probes",
        "count_pods",
        json!({"label_selector": "name=front-end", "ns": "sock-shop"}),
        None,
    );
    let kubeconfig = dir.path().join("kubeconfig");
    let env_file = dir.path().join("cluster.env");
    let with_var_file = |contents: String| {
        std::fs::write(&env_file, contents).unwrap();
        run_without_kubeconfig(
            dir.path(),
            &[
                "--var-file",
                &env_file.display().to_string(),
                &experiment.display().to_string(),
            ],
            &[],
        )
    };
    let out = with_var_file(format!("KUBECONFIG={}\n", kubeconfig.display()));
    assert_eq!(out.journal()["run"][0]["output"], 3, "{}", out.stderr);
    let out = with_var_file(format!(
        "KUBECONFIG={}\nKUBERNETES_CONTEXT=nope\n",
        kubeconfig.display()
    ));
    assert!(
        failure(&out.journal()["run"][0]).contains(&format!(
            "Expected object with name nope in {}/contexts list",
            kubeconfig.display()
        )),
        "{}",
        out.journal()["run"][0]
    );
    // No kubeconfig: in-cluster, which fails outside a pod.
    let out = with_var_file("CHAOSTOOLKIT_IN_POD=true\n".into());
    assert!(
        failure(&out.journal()["run"][0]).contains("pod's service account cannot be read"),
        "{}",
        out.journal()["run"][0]
    );
}

/// chaosk8s' order: an existing kubeconfig first (even in a pod, even with
/// `KUBERNETES_HOST`), then in-cluster when `CHAOSTOOLKIT_IN_POD` is `true` in the
/// environment, then `KUBERNETES_HOST` from secrets or the environment.
#[test]
fn the_cluster_is_chosen_in_chaostoolkit_kubernetes_order() {
    let probes = "chaosk8s.pod.probes";
    let arguments = json!({"label_selector": "name=front-end", "ns": "sock-shop"});
    let dir = tempfile::tempdir().unwrap();
    let server = cluster(dir.path());
    let plain = experiment(dir.path(), probes, "count_pods", arguments.clone(), None);
    let count = |out: &Outcome| out.journal()["run"][0].clone();

    let out = run(
        dir.path(),
        &plain,
        &[
            ("CHAOSTOOLKIT_IN_POD", "true"),
            ("KUBERNETES_HOST", "http://127.0.0.1:1"),
        ],
    );
    assert_eq!(
        count(&out)["output"],
        3,
        "the kubeconfig wins: {}",
        count(&out)
    );

    let plain_arg = plain.display().to_string();
    let out = run_without_kubeconfig(
        dir.path(),
        &[&plain_arg],
        &[("KUBERNETES_HOST", &server.url())],
    );
    assert_eq!(count(&out)["output"], 3, "{}", count(&out));
    let out = run_without_kubeconfig(
        dir.path(),
        &[&plain_arg],
        &[
            ("KUBERNETES_HOST", &server.url()),
            ("CHAOSTOOLKIT_IN_POD", "true"),
        ],
    );
    assert!(
        failure(&count(&out)).contains("pod's service account cannot be read"),
        "in-cluster before KUBERNETES_HOST: {}",
        count(&out)
    );
    // Secrets: KUBERNETES_HOST is read there first, CHAOSTOOLKIT_IN_POD never.
    let declared = experiment(
        dir.path(),
        probes,
        "count_pods",
        arguments.clone(),
        Some(json!({"KUBERNETES_HOST": server.url(), "CHAOSTOOLKIT_IN_POD": "true"})),
    );
    let out = run_without_kubeconfig(
        dir.path(),
        &[&declared.display().to_string()],
        &[("KUBERNETES_HOST", "http://127.0.0.1:1")],
    );
    assert_eq!(count(&out)["output"], 3, "{}", count(&out));
    let mut with_secrets = arguments.clone();
    with_secrets["secrets"] = json!({"KUBERNETES_HOST": server.url()});
    let argued = experiment(dir.path(), probes, "count_pods", with_secrets, None);
    let out = run_without_kubeconfig(dir.path(), &[&argued.display().to_string()], &[]);
    assert_eq!(count(&out)["output"], 3, "{}", count(&out));
}

/// `KUBERNETES_API_KEY` goes out as `Authorization: <prefix> <key>` (prefix `Bearer` unless
/// `KUBERNETES_API_KEY_PREFIX` says otherwise); a username and password do not (the
/// kubernetes Python client never sends them).
#[test]
fn kubernetes_host_authenticates_as_the_python_client_does() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = experiment(
        dir.path(),
        "chaosk8s.pod.probes",
        "count_pods",
        json!({"label_selector": "name=front-end", "ns": "sock-shop"}),
        None,
    );
    let pods = r#"{"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}"#;
    // (capture key, environment, the Authorization header expected)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: [Case<'_>; 4] = [
        (
            "k8s-auth-bearer",
            &[("KUBERNETES_API_KEY", "t0ken")],
            Some("Bearer t0ken"),
        ),
        (
            "k8s-auth-prefix",
            &[
                ("KUBERNETES_API_KEY", "t0ken"),
                ("KUBERNETES_API_KEY_PREFIX", "Token"),
            ],
            Some("Token t0ken"),
        ),
        (
            "k8s-auth-no-prefix",
            &[
                ("KUBERNETES_API_KEY", "t0ken"),
                ("KUBERNETES_API_KEY_PREFIX", ""),
            ],
            Some("t0ken"),
        ),
        (
            "k8s-auth-basic",
            &[("KUBERNETES_USERNAME", "u"), ("KUBERNETES_PASSWORD", "p")],
            None,
        ),
    ];
    for (key, env, authorization) in cases {
        server::script(
            key,
            vec![(200, vec![("Content-Type", "application/json")], pods)],
        );
        let host = server::capture_url(key);
        let mut env = env.to_vec();
        env.push(("KUBERNETES_HOST", &host));
        let out = run_without_kubeconfig(dir.path(), &[&experiment.display().to_string()], &env);
        let item = &out.journal()["run"][0];
        assert_eq!(item["output"], 0, "{key}: {item}");
        let requests = server::captured(key);
        assert_eq!(requests.len(), 1, "{key}: {requests:?}");
        assert!(
            requests[0]
                .path
                .starts_with("/api/v1/namespaces/sock-shop/pods"),
            "{key}: {requests:?}"
        );
        assert_eq!(requests[0].header("authorization"), authorization, "{key}");
    }
}
