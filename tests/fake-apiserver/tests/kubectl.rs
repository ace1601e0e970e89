//! The fake as kubectl (at /usr/bin/kubectl or on PATH) sees it, and the `fake-apiserver`
//! binary. kubectl is required: these tests fail, loudly, without it.

use fake_apiserver::FakeApiServer;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// kubectl against `kubeconfig`, caching discovery next to it rather than in ~/.kube.
fn command(kubeconfig: &Path) -> Command {
    let mut command = Command::new("kubectl");
    command.arg("--kubeconfig").arg(kubeconfig);
    command
        .arg("--cache-dir")
        .arg(kubeconfig.with_file_name("cache"));
    command
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = command(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl must be installed for these tests");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// Reads lines of a child's stdout until one satisfies `want`, or panics after 10 s.
fn wait_line(lines: &mpsc::Receiver<String>, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("expected output line did not come");
        if want(&line) {
            return line;
        }
    }
}

fn line_reader(stdout: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn kubectl_get_create_and_watch() {
    let server = FakeApiServer::spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kc).unwrap();

    assert_eq!(kubectl(&kc, &["get", "pods", "-A"]), "");
    assert!(kubectl(&kc, &["get", "ns", "-o", "name"]).contains("namespace/default"));

    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "chaosexperiments.chaostoolkit.org"},
        "spec": {"group": "chaostoolkit.org", "scope": "Namespaced",
            "names": {"plural": "chaosexperiments", "singular": "chaosexperiment",
                "kind": "ChaosToolkitExperiment", "shortNames": ["ctk", "ctks"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let experiment = json!({"apiVersion": "chaostoolkit.org/v1", "kind": "ChaosToolkitExperiment",
        "metadata": {"name": "exp1"}, "spec": {"verbose": true}});
    for (file, object) in [("crd.json", &crd), ("exp.json", &experiment)] {
        let path = dir.path().join(file);
        std::fs::write(&path, object.to_string()).unwrap();
        let out = kubectl(
            &kc,
            &["create", "-f", path.to_str().unwrap(), "--validate=false"],
        );
        assert!(out.contains("created"), "{out}");
    }
    assert!(kubectl(&kc, &["get", "ctk"]).contains("exp1"));
    let fetched = kubectl(
        &kc,
        &[
            "get",
            "chaosexperiments.chaostoolkit.org",
            "exp1",
            "-o",
            "json",
        ],
    );
    let fetched: serde_json::Value = serde_json::from_str(&fetched).unwrap();
    assert_eq!(fetched["spec"]["verbose"], true);

    let mut watch = command(&kc)
        .args(["get", "cm", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl must be installed for these tests");
    let lines = line_reader(watch.stdout.take().unwrap());
    server
        .apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watched"}}))
        .unwrap();
    wait_line(&lines, |l| l.starts_with("ADDED") && l.contains("watched"));
    server.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watched"}, "data": {"a": "b"}})).unwrap();
    wait_line(&lines, |l| {
        l.starts_with("MODIFIED") && l.contains("watched")
    });
    server
        .delete("v1", "ConfigMap", "default", "watched")
        .unwrap();
    wait_line(&lines, |l| {
        l.starts_with("DELETED") && l.contains("watched")
    });
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(server.stats().count("configmaps", "watch"), 1);
}

#[test]
fn binary_applies_files_and_stops_when_stdin_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (kc, manifest) = (
        dir.path().join("kubeconfig"),
        dir.path().join("objects.yaml"),
    );
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: demo\ndata:\n  k: v\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-apiserver"))
        .arg("--kubeconfig")
        .arg(&kc)
        .arg("--apply")
        .arg(&manifest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_reader(child.stdout.take().unwrap());
    let url = wait_line(&lines, |_| true);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let data = kubectl(
        &kc,
        &[
            "get",
            "cm",
            "settings",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.k}",
        ],
    );
    assert_eq!(data, "v");

    let mut stdin = child.stdin.take().unwrap();
    stdin.flush().unwrap();
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "fake-apiserver did not stop when stdin closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
