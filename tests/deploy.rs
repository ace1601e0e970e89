//! The deployment files in `deploy/` and the Dockerfile, checked without a cluster: kustomize
//! builds, Kubernetes' schemas, the CRD's schema on the example resources, the Terraform
//! against the manifests and hadolint (all in `scripts/check-deploy`), and the example
//! experiment kept equal to `experiments/hello-world.yaml`.

use std::process::Command;

use serde_json::Value;

use crate::support;

fn read(path: &str) -> String {
    let path = support::repo().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_deploy_directory_passes_the_offline_checks() {
    let script = support::repo().join("scripts/check-deploy");
    let out = Command::new(&script)
        // The example settings are checked by the binary under test.
        .env("CHAOSFLOW_BIN", support::chaosflow_bin())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "scripts/check-deploy failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The example ConfigMap carries `experiments/hello-world.yaml` itself, under the key the
/// example experiment reads: the run in a cluster is the one the rest of the suite checks.
#[test]
fn the_example_configmap_holds_the_hello_world_experiment() {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&read("deploy/examples/hello-world.yaml")).unwrap();
    let of_kind = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in deploy/examples/hello-world.yaml"))
    };
    let key = of_kind("ChaosToolkitExperiment")["spec"]["pod"]["experiment"]
        ["configMapExperimentFileName"]
        .as_str()
        .expect("the example names the experiment's key");
    let embedded = of_kind("ConfigMap")["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap has no {key}"));
    let embedded: Value = serde_saphyr::from_str(embedded).unwrap();
    let original: Value = serde_saphyr::from_str(&read("experiments/hello-world.yaml")).unwrap();
    assert!(
        embedded == original,
        "deploy/examples/hello-world.yaml embeds another experiment than experiments/hello-world.yaml: copy the file into the ConfigMap again"
    );
}
