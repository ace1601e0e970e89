//! The deployment files in `deploy/` and the Dockerfile, checked without a cluster: kustomize
//! builds, Kubernetes' schemas, the CRD's schema on the example resources, the Terraform
//! against the manifests and hadolint (all in `scripts/check-deploy`), and the example
//! experiments kept equal to their files in `experiments/`.

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

/// Each example whose name is an experiment of `experiments/` carries that file itself, byte
/// for byte, in the ConfigMap and under the key its `ChaosToolkitExperiment` reads: the run in a
/// cluster is the one the rest of the suite checks.
#[test]
fn the_example_configmaps_hold_the_experiments() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(support::repo().join("deploy/examples")).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let experiment = format!("experiments/{stem}.yaml");
        if !support::repo().join(&experiment).is_file() {
            continue;
        }
        let example = format!("deploy/examples/{stem}.yaml");
        let docs: Vec<Value> = serde_saphyr::from_multiple(&read(&example)).unwrap();
        let cr = docs
            .iter()
            .find(|d| d["kind"] == "ChaosToolkitExperiment")
            .unwrap_or_else(|| panic!("no ChaosToolkitExperiment in {example}"));
        let options = &cr["spec"]["pod"]["experiment"];
        let key = options["configMapExperimentFileName"]
            .as_str()
            .unwrap_or_else(|| panic!("{example} names no configMapExperimentFileName"));
        let name = options["configMapName"]
            .as_str()
            .unwrap_or("chaostoolkit-experiment");
        let embedded = docs
            .iter()
            .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == name)
            .and_then(|cm| cm["data"][key].as_str())
            .unwrap_or_else(|| panic!("{example}: no ConfigMap {name} with a key {key}"));
        assert!(
            embedded == read(&experiment),
            "{example} embeds another experiment than {experiment}: copy the file into the \
             ConfigMap again"
        );
        checked.push(stem);
    }
    assert!(checked.contains(&"hello-world".to_owned()), "{checked:?}");
}
