//! The operator binary end to end, against the loopback fake API server
//! (`tests/fake-apiserver`): the real REST and watch protocol, no cluster. The fake runs no
//! controllers, so the tests play the kubelet: they set the runner pod's status, with the
//! termination message a real `chaosflow run --termination-log` wrote.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use serde_json::{Value, json};

use crate::support::{self, Run};

const CTK: &str = "chaostoolkit.org/v1";
const KIND: &str = "ChaosToolkitExperiment";

/// The operator binary, running against `server`, killed on drop.
struct Operator {
    child: Child,
    metrics: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Operator {
    fn start(server: &FakeApiServer, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        let port = free_port();
        let log = dir.path().join("operator.log");
        let child = Command::new(support::chaosflow_bin())
            .args(["operator", "--image", "chaosflow:test", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("CHAOSFLOW_WATCH_NAMESPACE")
            .env_remove("POD_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Operator {
            child,
            metrics: format!("127.0.0.1:{port}"),
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.metrics, path)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, body)
}

/// Polls `check` until it gives a value, for at most 20 s.
fn wait_for<T>(what: &str, operator: &Operator, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; operator log:\n{}",
            operator.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server with the CRD (from deploy/, as users install it) and the experiments' namespace.
fn server_with_crd() -> FakeApiServer {
    crd_installed(FakeApiServer::spawn().unwrap())
}

fn crd_installed(server: FakeApiServer) -> FakeApiServer {
    for object in yaml_documents(&support::repo().join("deploy/base/crd.yaml")) {
        server.apply(object).unwrap();
    }
    server
        .apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "chaostoolkit-crd"}}))
        .unwrap();
    server
}

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// The ChaosToolkitExperiment of `deploy/examples/<file>`.
fn example(file: &str) -> Value {
    yaml_documents(&support::repo().join("deploy/examples").join(file))
        .into_iter()
        .find(|o| o["kind"] == KIND)
        .unwrap_or_else(|| panic!("deploy/examples/{file} holds a ChaosToolkitExperiment"))
}

/// The example ChaosToolkitExperiment users apply first.
fn example_experiment() -> Value {
    example("hello-world.yaml")
}

/// What a real `chaosflow run --termination-log` writes for `experiment`.
fn termination_message(experiment: &Path) -> String {
    let out = Run::chaosflow()
        .args(["run", "--termination-log", "outcome.json"])
        .args([experiment.display().to_string()])
        .run();
    std::fs::read_to_string(out.dir.path().join("outcome.json")).unwrap()
}

/// Plays the kubelet: the runner container ran and ended with `exit_code` and `message`.
fn finish_pod(server: &FakeApiServer, namespace: &str, pod: &str, exit_code: i32, message: &str) {
    let container = |name: &str, state: Value| {
        json!({"name": name, "image": "chaosflow:test", "imageID": "", "ready": false,
               "restartCount": 0, "state": state})
    };
    server
        .patch_status(
            "v1",
            "Pod",
            namespace,
            pod,
            json!({
                "phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
                "initContainerStatuses": [container("chaosflow-sidecar", json!({"terminated": {"exitCode": 0}}))],
                "containerStatuses": [container("chaostoolkit", json!({"terminated": {
                    "exitCode": exit_code, "message": message, "reason": if exit_code == 0 { "Completed" } else { "Error" },
                    "startedAt": "2026-11-25T10:00:00Z", "finishedAt": "2026-11-25T10:00:02Z"}}))],
            }),
        )
        .unwrap();
}

fn run_pod(server: &FakeApiServer, namespace: &str, pod: &str) {
    server
        .patch_status(
            "v1",
            "Pod",
            namespace,
            pod,
            json!({"phase": "Running", "containerStatuses": [{"name": "chaostoolkit", "image": "chaosflow:test",
                "imageID": "", "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-11-25T10:00:00Z"}}}]}),
        )
        .unwrap();
}

/// Kubernetes' own schemas (kubernetes-validate, strict: no unknown field) accept what the
/// operator made: the fake server validates nothing, so this is where a misspelt field of the
/// pod spec would show. 1.29: the oldest version with native sidecars on by default.
fn assert_valid_kubernetes(objects: &[Value]) {
    let dir = tempfile::tempdir().unwrap();
    for (i, object) in objects.iter().enumerate() {
        let path = dir.path().join(format!(
            "{i}-{}.json",
            object["kind"].as_str().unwrap_or("object")
        ));
        std::fs::write(&path, object.to_string()).unwrap();
        support::assert_kubernetes_valid(&path, Some("1.29"));
    }
}

fn status(server: &FakeApiServer, name: &str) -> Value {
    server
        .get(CTK, KIND, "chaostoolkit-crd", name)
        .map(|o| o["status"].clone())
        .unwrap_or(Value::Null)
}

fn event_reasons(server: &FakeApiServer, name: &str) -> Vec<String> {
    server
        .list("events.k8s.io/v1", "Event", Some("chaostoolkit-crd"))
        .into_iter()
        .filter(|e| e["regarding"]["name"] == name && e["regarding"]["kind"] == KIND)
        .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn suffix(server: &FakeApiServer, name: &str) -> String {
    let uid = server.get(CTK, KIND, "chaostoolkit-crd", name).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    chaosflow::operator::resources::suffix(&uid)
}

/// Apply the example -> the run objects exist as specified; the runner's termination message
/// -> status, events and metrics show the verdict; rerun; delete -> everything the operator
/// made is gone, the user's objects and the namespace stay.
#[test]
fn an_experiment_runs_reports_its_verdict_and_is_cleaned_up() {
    let server = server_with_crd();
    let operator = Operator::start(&server, &["--namespace", "chaostoolkit-crd"]);
    wait_for("readiness", &operator, || {
        (operator.get("/readyz").0 == 200).then_some(())
    });
    // The user's objects: the settings Secret (never touched) and the experiment.
    for object in yaml_documents(&support::repo().join("deploy/examples/settings-secret.yaml")) {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_string();
        server
            .apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .unwrap();
        server.apply(object).unwrap();
    }
    server.apply(example_experiment()).unwrap();
    let sfx = suffix(&server, "hello-world");
    let pod_name = format!("chaostoolkit-{sfx}");

    let pod = wait_for("the runner pod", &operator, || {
        server.get("v1", "Pod", "chaostoolkit-run", &pod_name)
    });
    let spec = &pod["spec"];
    assert_eq!(spec["serviceAccountName"], format!("chaostoolkit-{sfx}"));
    assert_eq!(spec["restartPolicy"], "Never");
    let runner = &spec["containers"][0];
    assert_eq!(runner["name"], "chaostoolkit");
    assert_eq!(runner["image"], "chaosflow:test");
    assert_eq!(runner["args"], json!(["run", "$(EXPERIMENT_PATH)"]));
    assert!(
        runner["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "EXPERIMENT_PATH", "value": "/home/svc/experiment.yaml"}))
    );
    let sidecar = &spec["initContainers"][0];
    assert_eq!(sidecar["name"], "chaosflow-sidecar");
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(sidecar["args"][0], "sidecar");
    for container in [runner, sidecar] {
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert!(
            container["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"] == "/home/svc/.chaostoolkit"),
            "the settings Secret is mounted where Chaos Toolkit reads it: {container}"
        );
    }
    assert!(spec["volumes"].as_array().unwrap().contains(
        &json!({"name": "chaostoolkit-settings", "secret": {"secretName": "chaostoolkit-settings"}})
    ));
    let sa = server
        .get(
            "v1",
            "ServiceAccount",
            "chaostoolkit-run",
            &format!("chaostoolkit-{sfx}"),
        )
        .expect("the runner's service account");
    assert_eq!(
        sa["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "chaosflow"
    );
    let role_name = format!("chaostoolkit-experiment-{sfx}");
    let role = server
        .get(
            "rbac.authorization.k8s.io/v1",
            "Role",
            "chaostoolkit-run",
            &role_name,
        )
        .expect("the runner's role");
    assert!(role["rules"].to_string().contains("\"pods\""));
    let binding = server
        .get(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            "chaostoolkit-run",
            &role_name,
        )
        .expect("the runner's role binding");
    assert_eq!(
        binding["subjects"][0]["name"],
        format!("chaostoolkit-{sfx}")
    );
    let ctk = server
        .get(CTK, KIND, "chaostoolkit-crd", "hello-world")
        .unwrap();
    assert_eq!(
        ctk["metadata"]["finalizers"],
        json!(["chaostoolkit.org/cleanup"])
    );
    let namespace = server
        .get("v1", "Namespace", "", "chaostoolkit-run")
        .unwrap();
    assert_valid_kubernetes(&[pod.clone(), sa, role, binding, namespace]);
    wait_for("phase Pending", &operator, || {
        (status(&server, "hello-world")["phase"] == "Pending").then_some(())
    });

    // The kubelet starts it, then it ends: the real runner's outcome of the same experiment.
    run_pod(&server, "chaostoolkit-run", &pod_name);
    wait_for("phase Running", &operator, || {
        (status(&server, "hello-world")["phase"] == "Running").then_some(())
    });
    let message = termination_message(&support::repo().join("experiments/hello-world.yaml"));
    finish_pod(&server, "chaostoolkit-run", &pod_name, 0, &message);
    let done = wait_for("phase Succeeded", &operator, || {
        let s = status(&server, "hello-world");
        (s["phase"] == "Succeeded").then_some(s)
    });
    assert_eq!(done["verdict"], "completed");
    assert_eq!(done["podName"], pod_name.as_str());
    // The pod's changes reached the reconciles through the operator's watch, not by GETs (read
    // from the API, its start, run and end take three or more; one or two reconciles may race
    // the new pod's first watch event on a loaded machine).
    let stats = server.stats();
    let pod_gets = stats.by_resource.get("pods").and_then(|v| v.get("get"));
    assert!(pod_gets.copied().unwrap_or(0) <= 2, "{stats:?}");
    assert_eq!(done["startTime"], "2026-11-25T10:00:00Z");
    assert_eq!(done["endTime"], "2026-11-25T10:00:02Z");
    assert_eq!(
        done["summary"],
        json!({"activities": 2, "failed": 0, "hypothesisBefore": true, "hypothesisAfter": true})
    );
    wait_for("the Started and Completed events", &operator, || {
        let reasons = event_reasons(&server, "hello-world");
        (reasons.contains(&"Started".to_string()) && reasons.contains(&"Completed".to_string()))
            .then_some(())
    });
    let metrics = operator.get("/metrics").1;
    assert!(
        metrics.contains("chaosflow_operator_runs_total{verdict=\"completed\"} 1"),
        "{metrics}"
    );

    // A spec change does not rerun a finished experiment; the rerun annotation does.
    let mut changed = example_experiment();
    changed["spec"]["verbose"] = json!(true);
    server.apply(changed).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status(&server, "hello-world")["phase"], "Succeeded");
    assert_eq!(server.list("v1", "Pod", Some("chaostoolkit-run")).len(), 1);
    let mut rerun = example_experiment();
    rerun["metadata"]["annotations"] = json!({"chaostoolkit.org/rerun": "again"});
    server.apply(rerun).unwrap();
    let second = wait_for("the rerun's pod", &operator, || {
        let s = status(&server, "hello-world");
        let name = s["podName"].as_str()?.to_string();
        (name != pod_name && s["rerun"] == "again").then_some(name)
    });
    assert!(
        server
            .get("v1", "Pod", "chaostoolkit-run", &second)
            .is_some()
    );
    assert!(
        server
            .get("v1", "Pod", "chaostoolkit-run", &pod_name)
            .is_none(),
        "the finished pod goes"
    );
    assert_eq!(
        server
            .get("v1", "Pod", "chaostoolkit-run", &second)
            .unwrap()["spec"]["containers"][0]["args"],
        json!(["--verbose", "run", "$(EXPERIMENT_PATH)"]),
        "the rerun uses the spec as it is now"
    );
    // This time the steady state deviates.
    let deviating = support::repo().join("tests/conformance/deviated.yaml");
    let message = termination_message(&deviating);
    finish_pod(&server, "chaostoolkit-run", &second, 1, &message);
    let deviated = wait_for("the deviated verdict", &operator, || {
        let s = status(&server, "hello-world");
        (s["verdict"] == "deviated").then_some(s)
    });
    assert_eq!(deviated["phase"], "Failed");
    assert_eq!(deviated["summary"]["hypothesisAfter"], false);
    wait_for("the Deviated event", &operator, || {
        event_reasons(&server, "hello-world")
            .contains(&"Deviated".to_string())
            .then_some(())
    });

    // Deletion: the finalizer cleans up what the operator made, and only that.
    server
        .delete(CTK, KIND, "chaostoolkit-crd", "hello-world")
        .unwrap();
    wait_for("the experiment to go", &operator, || {
        server
            .get(CTK, KIND, "chaostoolkit-crd", "hello-world")
            .is_none()
            .then_some(())
    });
    assert!(
        server
            .list("v1", "Pod", Some("chaostoolkit-run"))
            .is_empty()
    );
    assert!(
        server
            .get(
                "v1",
                "ServiceAccount",
                "chaostoolkit-run",
                &format!("chaostoolkit-{sfx}")
            )
            .is_none()
    );
    assert!(
        server
            .get(
                "rbac.authorization.k8s.io/v1",
                "Role",
                "chaostoolkit-run",
                &role_name
            )
            .is_none()
    );
    assert!(
        server
            .get(
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                "chaostoolkit-run",
                &role_name
            )
            .is_none()
    );
    assert!(
        server
            .get("v1", "Secret", "chaostoolkit-run", "chaostoolkit-settings")
            .is_some()
    );
    assert!(
        server
            .get("v1", "Namespace", "", "chaostoolkit-run")
            .is_some()
    );
    let metrics = operator.get("/metrics").1;
    assert!(
        metrics.contains("chaosflow_operator_runs_total{verdict=\"deviated\"} 1"),
        "{metrics}"
    );
    assert_granted_by_deployed_rbac(&server);
}

/// What `deploy/base/rbac.yaml` grants the operator's ServiceAccount: each rule, with the
/// namespace its binding is limited to (`None`: a ClusterRoleBinding, everywhere).
fn deployed_grants() -> Vec<(Value, Option<String>)> {
    let documents = yaml_documents(&support::repo().join("deploy/base/rbac.yaml"));
    let is_operator = |subject: &Value| {
        subject["kind"] == "ServiceAccount"
            && subject["name"] == "chaosflow-operator"
            && subject["namespace"] == "chaostoolkit-crd"
    };
    let mut grants = Vec::new();
    for binding in &documents {
        let scope = match binding["kind"].as_str() {
            Some("ClusterRoleBinding") => None,
            Some("RoleBinding") => Some(
                binding["metadata"]["namespace"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            _ => continue,
        };
        if !binding["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .any(is_operator)
        {
            continue;
        }
        let role_ref = &binding["roleRef"];
        let role = documents
            .iter()
            .find(|d| {
                d["kind"] == role_ref["kind"]
                    && d["metadata"]["name"] == role_ref["name"]
                    && (d["kind"] == "ClusterRole"
                        || d["metadata"]["namespace"].as_str() == scope.as_deref())
            })
            .unwrap_or_else(|| panic!("rbac.yaml binds a missing role: {role_ref}"));
        for rule in role["rules"].as_array().unwrap() {
            grants.push((rule.clone(), scope.clone()));
        }
    }
    grants
}

/// Every request the operator made of the fake server (which authorizes nothing) is one the
/// deployed RBAC allows: a call added to the operator without its permission fails here, not
/// in a user's cluster.
fn assert_granted_by_deployed_rbac(server: &FakeApiServer) {
    let grants = deployed_grants();
    let has = |list: &Value, item: &str| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|v| v == item || v == "*"))
    };
    let allowed = |access: &fake_apiserver::Access, verb: &str| {
        grants.iter().any(|(rule, scope)| {
            (scope.is_none() || scope == &access.namespace)
                && has(&rule["apiGroups"], &access.group)
                && has(&rule["resources"], &access.resource)
                && has(&rule["verbs"], verb)
                // Rules limited to names grant only requests for one object.
                && (rule.get("resourceNames").is_none() || matches!(verb, "get" | "patch" | "update" | "delete"))
        })
    };
    let stats = server.stats();
    assert!(!stats.accesses.is_empty());
    let refused: Vec<_> = stats
        .accesses
        .iter()
        .filter(|a| !allowed(a, &a.verb) || (a.apply && !allowed(a, "create")))
        .collect();
    assert!(
        refused.is_empty(),
        "deploy/base/rbac.yaml does not grant these requests of the operator: {refused:#?}"
    );
}

/// Resources stored under upstream's CRD, which validated nothing: one without a spec runs with
/// the defaults (as upstream's `basic-env-vars` example), one whose spec does not fit is named
/// on its own status, and neither stops the others.
#[test]
fn resources_stored_without_a_schema_are_run_or_named_one_by_one() {
    let server = server_with_crd();
    // The fake validates nothing, as a cluster with upstream's CRD did not.
    server
        .apply(json!({"apiVersion": CTK, "kind": KIND,
            "metadata": {"name": "bare", "namespace": "chaostoolkit-crd"}}))
        .unwrap();
    server
        .apply(json!({"apiVersion": CTK, "kind": KIND,
            "metadata": {"name": "typo", "namespace": "chaostoolkit-crd"},
            "spec": {"verbose": "yes"}}))
        .unwrap();
    server.apply(example_experiment()).unwrap();
    let operator = Operator::start(&server, &["--namespace", "chaostoolkit-crd"]);
    wait_for("readiness", &operator, || {
        (operator.get("/readyz").0 == 200).then_some(())
    });
    for name in ["bare", "hello-world"] {
        let sfx = suffix(&server, name);
        wait_for("its runner pod", &operator, || {
            server.get(
                "v1",
                "Pod",
                "chaostoolkit-run",
                &format!("chaostoolkit-{sfx}"),
            )
        });
    }
    let typo = wait_for("the typo named", &operator, || {
        let s = status(&server, "typo");
        (s["phase"] == "Failed").then_some(s)
    });
    let message = typo["message"].as_str().unwrap();
    assert!(
        message.starts_with("spec.verbose: invalid type: string \"yes\", expected a boolean"),
        "{message}"
    );
    assert!(typo.get("verdict").is_none_or(Value::is_null), "{typo}");
    wait_for("the InvalidSpec event", &operator, || {
        event_reasons(&server, "typo")
            .contains(&"InvalidSpec".to_string())
            .then_some(())
    });
    assert_eq!(server.list("v1", "Pod", Some("chaostoolkit-run")).len(), 2);
}

/// An edit that moves the run namespace of a scheduled experiment moves its CronJob; one that
/// removes the schedule stops it, without running the experiment there and then (the rerun
/// annotation does); deletion finds what the experiment left in every namespace.
#[test]
fn an_edited_schedule_moves_or_stops_its_cron_job() {
    let server = server_with_crd();
    let operator = Operator::start(&server, &["--namespace", "chaostoolkit-crd"]);
    let mut scheduled = example("scheduled.yaml");
    let name = scheduled["metadata"]["name"].as_str().unwrap().to_string();
    server.apply(scheduled.clone()).unwrap();
    let sfx = suffix(&server, &name);
    let runner = format!("chaostoolkit-{sfx}");
    let cron_in = |namespace: &str| server.get("batch/v1", "CronJob", namespace, &runner);
    wait_for("the CronJob", &operator, || cron_in("chaostoolkit-run"));
    wait_for("phase Pending", &operator, || {
        (status(&server, &name)["phase"] == "Pending").then_some(())
    });

    scheduled["spec"]["namespace"] = json!("chaos-elsewhere");
    server.apply(scheduled.clone()).unwrap();
    wait_for("the CronJob in the new namespace", &operator, || {
        cron_in("chaos-elsewhere")
    });
    wait_for("the old CronJob to go", &operator, || {
        cron_in("chaostoolkit-run").is_none().then_some(())
    });

    // As `kubectl apply` of the file without it (the fake's apply is a merge: null removes).
    scheduled["spec"]["schedule"] = Value::Null;
    server.apply(scheduled.clone()).unwrap();
    let stopped = wait_for("the schedule to stop", &operator, || {
        let s = status(&server, &name);
        (cron_in("chaos-elsewhere").is_none()
            && s["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("No schedule")))
        .then_some(s)
    });
    assert_eq!(stopped["phase"], "Pending", "{stopped}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.list("v1", "Pod", None).is_empty(),
        "removing a schedule runs nothing"
    );

    scheduled["metadata"]["annotations"] = json!({"chaostoolkit.org/rerun": "now"});
    server.apply(scheduled).unwrap();
    let pod = wait_for("the run asked for", &operator, || {
        let s = status(&server, &name);
        let pod = s["podName"].as_str()?.to_string();
        server.get("v1", "Pod", "chaos-elsewhere", &pod)
    });
    assert_eq!(
        pod["metadata"]["labels"]["chaostoolkit.org/experiment"],
        name.as_str()
    );

    server.delete(CTK, KIND, "chaostoolkit-crd", &name).unwrap();
    wait_for("the experiment to go", &operator, || {
        server
            .get(CTK, KIND, "chaostoolkit-crd", &name)
            .is_none()
            .then_some(())
    });
    for namespace in ["chaostoolkit-run", "chaos-elsewhere"] {
        assert!(server.list("v1", "Pod", Some(namespace)).is_empty());
        assert!(
            server
                .get("v1", "ServiceAccount", namespace, &runner)
                .is_none(),
            "the runner's ServiceAccount in {namespace}"
        );
        assert!(
            server
                .list("batch/v1", "CronJob", Some(namespace))
                .is_empty()
        );
    }
    assert_granted_by_deployed_rbac(&server);
}

/// What keeps a run from happening is said on the resource, not only in the operator's log: a
/// namespace the spec names that does not exist (the API refuses the Role), a volume the
/// kubelet cannot mount (told only in the pod's events), a field that means nothing here.
#[test]
fn what_stops_a_run_is_said_on_the_resource() {
    let server = server_with_crd();
    let operator = Operator::start(&server, &["--namespace", "chaostoolkit-crd"]);
    let mut blocked = example_experiment();
    blocked["metadata"]["name"] = json!("blocked");
    blocked["spec"]["role"] = json!({"binds_to_namespaces": ["sock-shop"]});
    server.apply(blocked).unwrap();
    let mut templated = example_experiment();
    templated["spec"]["template"] = json!({"name": "my-resource-templates"});
    server.apply(templated).unwrap();

    let refused = wait_for("the refusal on the status", &operator, || {
        let s = status(&server, "blocked");
        s["message"].as_str().map(String::from)
    });
    assert!(
        refused.starts_with(
            "Cannot go on, retrying every 15 s: apply Role sock-shop/chaostoolkit-experiment-"
        ) && refused.contains("namespaces \"sock-shop\" not found"),
        "{refused}"
    );
    wait_for("the ReconcileFailed event", &operator, || {
        event_reasons(&server, "blocked")
            .contains(&"ReconcileFailed".to_string())
            .then_some(())
    });
    wait_for("the IgnoredField event", &operator, || {
        event_reasons(&server, "hello-world")
            .contains(&"IgnoredField".to_string())
            .then_some(())
    });

    // Play the kubelet: the settings Secret is missing, so the pod stays ContainerCreating and
    // the kubelet says why in an event.
    let pod = format!("chaostoolkit-{}", suffix(&server, "hello-world"));
    wait_for("the runner pod", &operator, || {
        server.get("v1", "Pod", "chaostoolkit-run", &pod)
    });
    let why = "MountVolume.SetUp failed for volume \"chaostoolkit-settings\" : secret \"chaostoolkit-settings\" not found";
    server
        .apply(json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{pod}.1"), "namespace": "chaostoolkit-run"},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": "chaostoolkit-run"},
            "type": "Warning", "reason": "FailedMount", "message": why,
            "lastTimestamp": "2026-11-25T10:00:00Z"}))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let message = loop {
        let s = status(&server, "hello-world");
        let message = s["message"].as_str().unwrap_or_default().to_string();
        if message.contains("FailedMount") || Instant::now() > deadline {
            break message;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        message,
        format!("The runner pod {pod} is waiting: FailedMount: {why}"),
        "{}",
        operator.log()
    );
    assert_eq!(status(&server, "hello-world")["phase"], "Pending");
    assert_granted_by_deployed_rbac(&server);
}

/// Upstream's custom-image example: an image built for `chaos` with extensions. The runner runs
/// there with chaosflow copied in (so its Python bridge finds the extensions), the sidecar in
/// the operator's image.
#[test]
fn a_runner_image_of_the_users_gets_chaosflow_and_the_sidecar_stays_ours() {
    let server = server_with_crd();
    let operator = Operator::start(&server, &["--namespace", "chaostoolkit-crd"]);
    let mut custom = example_experiment();
    custom["spec"]["pod"]["image"] = json!("chaostoolkit/chaostoolkit:full");
    server.apply(custom).unwrap();
    let pod_name = format!("chaostoolkit-{}", suffix(&server, "hello-world"));
    let pod = wait_for("the runner pod", &operator, || {
        server.get("v1", "Pod", "chaostoolkit-run", &pod_name)
    });
    let spec = &pod["spec"];
    assert_eq!(
        spec["containers"][0]["image"],
        "chaostoolkit/chaostoolkit:full"
    );
    assert_eq!(
        spec["containers"][0]["command"],
        json!(["/var/run/chaosflow-bin/chaosflow"])
    );
    let inits: Vec<(&str, &str)> = spec["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["image"].as_str().unwrap()))
        .collect();
    assert_eq!(
        inits,
        [
            ("chaosflow-install", "chaosflow:test"),
            ("chaosflow-sidecar", "chaosflow:test")
        ]
    );
    assert_valid_kubernetes(&[pod]);
}

/// A resource name may be longer than a label value: the pod's label holds a shortened name,
/// an annotation the whole one, and the run's end still reaches the experiment's status.
#[test]
fn an_experiment_with_a_long_name_runs_to_its_verdict() {
    let server = server_with_crd();
    let operator = Operator::start(&server, &["--namespace", "chaostoolkit-crd"]);
    let name = format!("hello-world-{}", "with-a-very-long-name-".repeat(4));
    let name = name.trim_end_matches('-').to_string();
    assert!(name.len() > 63, "{}", name.len());
    let mut long = example_experiment();
    long["metadata"]["name"] = json!(name);
    server.apply(long).unwrap();
    let pod_name = format!("chaostoolkit-{}", suffix(&server, &name));
    let pod = wait_for("the runner pod", &operator, || {
        server.get("v1", "Pod", "chaostoolkit-run", &pod_name)
    });
    let label = pod["metadata"]["labels"]["chaostoolkit.org/experiment"]
        .as_str()
        .unwrap();
    assert!(
        label.len() <= 63 && name.starts_with(&label[..40]),
        "{label}"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["chaostoolkit.org/experiment"],
        name.as_str()
    );
    assert_valid_kubernetes(&[pod]);
    let message = termination_message(&support::repo().join("experiments/hello-world.yaml"));
    finish_pod(&server, "chaostoolkit-run", &pod_name, 0, &message);
    wait_for("the verdict", &operator, || {
        (status(&server, &name)["verdict"] == "completed").then_some(())
    });
}

/// A schedule becomes a CronJob; each job's pod that ends is recorded in `lastRuns`.
#[test]
fn a_scheduled_experiment_becomes_a_cron_job_and_records_its_runs() {
    let server = server_with_crd();
    let operator = Operator::start(&server, &[]);
    let scheduled = example("scheduled.yaml");
    let name = scheduled["metadata"]["name"].as_str().unwrap().to_string();
    let schedule = scheduled["spec"]["schedule"]["value"].clone();
    server.apply(scheduled).unwrap();
    let sfx = suffix(&server, &name);
    let cron = wait_for("the CronJob", &operator, || {
        server.get(
            "batch/v1",
            "CronJob",
            "chaostoolkit-run",
            &format!("chaostoolkit-{sfx}"),
        )
    });
    assert_eq!(cron["spec"]["schedule"], schedule);
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let template = cron["spec"]["jobTemplate"]["spec"]["template"].clone();
    assert_valid_kubernetes(std::slice::from_ref(&cron));
    assert_eq!(
        template["spec"]["initContainers"][0]["restartPolicy"],
        "Always"
    );
    wait_for("phase Pending", &operator, || {
        (status(&server, &name)["phase"] == "Pending").then_some(())
    });

    // Play the CronJob controller: a job's pod from the template, which then ends.
    let message = termination_message(&support::repo().join("experiments/hello-world.yaml"));
    for run in ["chaostoolkit-x-1", "chaostoolkit-x-2"] {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": run, "namespace": "chaostoolkit-run", "labels": template["metadata"]["labels"]},
            "spec": template["spec"]});
        pod["metadata"]["labels"]["job-name"] = json!(run);
        server.apply(pod).unwrap();
        finish_pod(&server, "chaostoolkit-run", run, 0, &message);
        wait_for("the run's record", &operator, || {
            let s = status(&server, &name);
            (s["lastRuns"][0]["podName"] == run).then_some(())
        });
    }
    let s = status(&server, &name);
    assert_eq!(s["lastRuns"].as_array().unwrap().len(), 2);
    assert_eq!(s["lastRuns"][1]["podName"], "chaostoolkit-x-1");
    assert_eq!(s["verdict"], "completed");
    assert_eq!(s["phase"], "Succeeded");
    wait_for("one Completed event per run", &operator, || {
        let reasons = event_reasons(&server, &name);
        (reasons.iter().filter(|r| *r == "Completed").count() == 2).then_some(())
    });

    server.delete(CTK, KIND, "chaostoolkit-crd", &name).unwrap();
    // The finalizer goes last, once everything is cleaned up.
    wait_for("the experiment to go", &operator, || {
        server
            .get(CTK, KIND, "chaostoolkit-crd", &name)
            .is_none()
            .then_some(())
    });
    assert!(
        server
            .get(
                "batch/v1",
                "CronJob",
                "chaostoolkit-run",
                &format!("chaostoolkit-{sfx}"),
            )
            .is_none()
    );
    assert!(
        server
            .list("v1", "Pod", Some("chaostoolkit-run"))
            .is_empty()
    );
}

/// Grants follow the spec: a namespace dropped from `role.binds_to_namespaces` (here of a
/// scheduled experiment, whose runs go on) loses the runner's Role and RoleBinding at once, and
/// deletion revokes the rest; a Role of the user's in the same namespace stays.
#[test]
fn grants_in_namespaces_the_spec_drops_are_revoked() {
    let server = server_with_crd();
    let operator = Operator::start(&server, &[]);
    let mut scheduled = example("scheduled.yaml");
    let name = scheduled["metadata"]["name"].as_str().unwrap().to_string();
    for namespace in ["shop", "billing"] {
        server
            .apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
            )
            .unwrap();
    }
    scheduled["spec"]["role"] = json!({"binds_to_namespaces": ["shop", "billing"]});
    server.apply(scheduled.clone()).unwrap();
    let users_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "team-reader", "namespace": "billing"}, "rules": []});
    server.apply(users_role).unwrap();
    let sfx = suffix(&server, &name);
    // (Role, RoleBinding) present in `namespace`: two writes, which a check may fall between.
    let grant = |namespace: &str| {
        let name = format!("chaostoolkit-experiment-{sfx}");
        let role = server.get("rbac.authorization.k8s.io/v1", "Role", namespace, &name);
        let binding = server.get(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            namespace,
            &name,
        );
        (role.is_some(), binding.is_some())
    };
    let granted = |namespace: &str| grant(namespace) == (true, true);
    let revoked = |namespace: &str| grant(namespace) == (false, false);
    wait_for("grants in both namespaces", &operator, || {
        (granted("shop") && granted("billing")).then_some(())
    });

    scheduled["spec"]["role"] = json!({"binds_to_namespaces": ["shop"]});
    server.apply(scheduled).unwrap();
    wait_for("the grant in billing to go", &operator, || {
        revoked("billing").then_some(())
    });
    assert!(granted("shop") && granted("chaostoolkit-run"));

    server.delete(CTK, KIND, "chaostoolkit-crd", &name).unwrap();
    wait_for("the experiment to go", &operator, || {
        server
            .get(CTK, KIND, "chaostoolkit-crd", &name)
            .is_none()
            .then_some(())
    });
    assert!(revoked("shop") && revoked("billing") && revoked("chaostoolkit-run"));
    assert!(
        server
            .get(
                "rbac.authorization.k8s.io/v1",
                "Role",
                "billing",
                "team-reader"
            )
            .is_some(),
        "the user's own Role stays"
    );
}

/// Bad specs are said in the status and a Warning event, with the field and the fix.
#[test]
fn a_bad_pod_template_is_reported_on_the_resource() {
    let server = server_with_crd();
    let operator = Operator::start(&server, &[]);
    server
        .apply(json!({"apiVersion": CTK, "kind": KIND,
            "metadata": {"name": "bad", "namespace": "chaostoolkit-crd"},
            "spec": {"pod": {"template": "kind: Pod\nmetadata: {name: x}\n"}}}))
        .unwrap();
    let s = wait_for("the failure", &operator, || {
        let s = status(&server, "bad");
        (s["phase"] == "Failed").then_some(s)
    });
    assert_eq!(
        s["message"],
        "spec.pod.template: no `spec` object: it must be a whole Pod manifest (apiVersion, kind, metadata, spec)."
    );
    wait_for("the InvalidSpec event", &operator, || {
        event_reasons(&server, "bad")
            .contains(&"InvalidSpec".to_string())
            .then_some(())
    });
    assert!(server.list("v1", "Pod", None).is_empty());
}

/// Without the CRD the operator stops at once and says how to install it.
#[test]
fn without_the_crd_the_operator_says_how_to_install_it() {
    let server = FakeApiServer::spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let out = Command::new(support::chaosflow_bin())
        .args(["operator", "--listen", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("chaosexperiments.chaostoolkit.org is not installed: `kubectl apply -f deploy/base/crd.yaml`"),
        "{stderr}"
    );
}

/// SIGTERM: no new reconcile starts, running ones finish, exit 0; also when it comes while
/// the first lists are still in flight (a slow API server), when there is nothing to finish.
#[test]
fn the_operator_stops_gracefully_on_sigterm() {
    let idle = server_with_crd();
    let slow = crd_installed(
        FakeApiServer::builder()
            .latency(Duration::from_millis(1500))
            .spawn()
            .unwrap(),
    );
    for (server, when) in [(&idle, "idle"), (&slow, "listing")] {
        let operator = Operator::start(server, &[]);
        wait_for("liveness", &operator, || {
            (operator.get("/healthz").0 == 200).then_some(())
        });
        if when == "listing" {
            // The watches' first lists are answered 1.5 s late: the signal comes before, and
            // the operator is not ready until they are in.
            assert_eq!(
                slow.stats()
                    .count("chaosexperiments.chaostoolkit.org", "list"),
                0
            );
            assert_eq!(operator.get("/readyz").0, 503);
        } else {
            wait_for("readiness", &operator, || {
                (operator.get("/readyz").0 == 200).then_some(())
            });
        }
        stop_within(operator, Duration::from_secs(5), when);
    }
}

fn stop_within(mut operator: Operator, limit: Duration, when: &str) {
    support::signal(&operator.child, "TERM");
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = operator.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            Instant::now() < deadline,
            "{when}: still running {limit:?} after SIGTERM: {}",
            operator.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0), "{when}: {}", operator.log());
    assert!(
        operator.log().contains("Stopped"),
        "{when}: {}",
        operator.log()
    );
}

/// The reconcile function itself, called directly: the first call only adds the finalizer,
/// the second makes the run objects, further calls only read (no write, so no watch event and
/// no loop), and a lost status does not make a second pod.
#[test]
fn reconcile_is_idempotent() {
    use chaosflow::operator::crd::ChaosToolkitExperiment;
    use chaosflow::operator::reconcile::{Context, reconcile};
    use chaosflow::operator::resources::Defaults;
    use std::sync::Arc;

    let server = server_with_crd();
    server.apply(example_experiment()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client =
            kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
        let ctx = Arc::new(Context::new(
            client.clone(),
            kube::runtime::events::Recorder::new(client.clone(), "test".to_string().into()),
            Arc::default(),
            Defaults {
                image: "chaosflow:test".into(),
            },
        ));
        let api: kube::Api<ChaosToolkitExperiment> =
            kube::Api::namespaced(client, "chaostoolkit-crd");
        let step = || async {
            let ctk = api.get("hello-world").await.unwrap();
            reconcile(Arc::new(ctk), ctx.clone()).await.unwrap();
        };
        step().await;
        let ctk = server
            .get(CTK, KIND, "chaostoolkit-crd", "hello-world")
            .unwrap();
        assert_eq!(
            ctk["metadata"]["finalizers"],
            json!(["chaostoolkit.org/cleanup"])
        );
        assert!(
            server.list("v1", "Pod", None).is_empty(),
            "the finalizer comes first"
        );

        step().await;
        let pods = server.list("v1", "Pod", Some("chaostoolkit-run"));
        assert_eq!(pods.len(), 1);
        let version = server.resource_version();
        server.reset_stats();
        step().await;
        step().await;
        assert_eq!(server.resource_version(), version, "nothing was written");
        let stats = server.stats();
        assert_eq!(
            stats.by_verb.keys().collect::<Vec<_>>(),
            ["get"],
            "{stats:?}"
        );

        // The status that names the pod was lost (an operator killed between creating the pod
        // and saving the status): the pod is found again, not made twice.
        server
            .patch_status(CTK, KIND, "chaostoolkit-crd", "hello-world", Value::Null)
            .unwrap();
        step().await;
        assert_eq!(server.list("v1", "Pod", Some("chaostoolkit-run")).len(), 1);
        assert_eq!(status(&server, "hello-world")["phase"], "Pending");
    });
}

/// Switching from the upstream operator: a resource it ran (kopf's annotation, no status) is
/// not run again by surprise; its old pod, if still there, gives the outcome.
#[test]
fn experiments_the_upstream_operator_ran_are_not_run_again() {
    let server = server_with_crd();
    let kopf = json!({"kopf.zalando.org/last-handled-configuration": "{\"spec\":{}}"});
    for name in ["ran-pod-gone", "ran-pod-kept"] {
        server
            .apply(json!({"apiVersion": CTK, "kind": KIND,
                "metadata": {"name": name, "namespace": "chaostoolkit-crd", "annotations": kopf},
                "spec": {"namespace": "chaostoolkit-run"}}))
            .unwrap();
    }
    // The upstream runner pod of the second, ended: `chaos` exited 1, without an outcome.
    let kept = format!("chaostoolkit-{}", suffix(&server, "ran-pod-kept"));
    server
        .apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "chaostoolkit-run"}}))
        .unwrap();
    server
        .apply(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": kept, "namespace": "chaostoolkit-run"},
            "spec": {"containers": [{"name": "chaostoolkit", "image": "chaostoolkit/chaostoolkit"}]}}))
        .unwrap();
    finish_pod(&server, "chaostoolkit-run", &kept, 1, "");
    let operator = Operator::start(&server, &[]);
    let gone = wait_for("the status of the one whose pod is gone", &operator, || {
        let s = status(&server, "ran-pod-gone");
        s["message"].is_string().then_some(s)
    });
    assert!(gone["phase"].is_null(), "{gone}");
    assert!(
        gone["message"]
            .as_str()
            .unwrap()
            .contains("Set the annotation chaostoolkit.org/rerun"),
        "{gone}"
    );
    let kept_status = wait_for("the outcome of the kept pod", &operator, || {
        let s = status(&server, "ran-pod-kept");
        (s["phase"] == "Failed").then_some(s)
    });
    assert_eq!(kept_status["verdict"], "failed");
    assert_eq!(
        server.list("v1", "Pod", Some("chaostoolkit-run")).len(),
        1,
        "nothing ran"
    );
}
