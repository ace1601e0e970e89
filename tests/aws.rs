//! The native chaostoolkit-aws EC2 functions (`chaosaws.ec2.*`) through `chaosflow run`, against
//! moto's EC2 and STS (`moto_server` from `.venv`, one fresh server per test), and the real
//! `chaos` with chaostoolkit-aws on an identical fresh server as the oracle: the demo's
//! stop-ec2-by-id experiment, filters and zones, start, describe, failures, and every source of
//! credentials. A moto that checks SigV4 (`INITIAL_NO_AUTH_ACTION_COUNT`) proves the signing;
//! moto's request recorder shows which credentials signed what. Retries are compared with
//! `chaos` against a stub EC2 that always fails ([`Stub`]).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{self, Outcome, Run, server};

const REGION: &str = "us-west-2";

/// A moto server on 127.0.0.1, killed on drop.
struct Moto {
    child: Child,
    url: String,
    /// Keys it accepts (any, unless it checks signatures).
    key: String,
    secret: String,
    dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn venv(bin: &str) -> PathBuf {
    let path = support::repo().join(".venv/bin").join(bin);
    assert!(
        path.is_file(),
        "{} is missing: scripts/setup-test-peers installs moto[server], boto3 and \
         chaostoolkit-aws into .venv",
        path.display()
    );
    path
}

/// Removes the AWS settings of the environment the tests run in (a developer's profile or keys
/// must not leak into the runs).
fn hermetic(command: &mut Command) {
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
}

impl Moto {
    /// A server that accepts any credentials.
    fn start() -> Self {
        Self::spawn(None)
    }

    /// A server that checks SigV4 signatures once an IAM user (allowed everything) and its
    /// access key exist: the keys are then [`Moto::key`] and [`Moto::secret`].
    fn checking_signatures() -> Self {
        let mut moto = Self::spawn(Some(3));
        let keys = moto.python(
            r#"
iam = client("iam")
iam.create_user(UserName="chaos")
iam.put_user_policy(UserName="chaos", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="chaos")["AccessKey"]
out = [key["AccessKeyId"], key["SecretAccessKey"]]
"#,
            &[],
        );
        moto.key = keys[0].as_str().unwrap().to_owned();
        moto.secret = keys[1].as_str().unwrap().to_owned();
        moto
    }

    fn spawn(unauthenticated_calls: Option<u32>) -> Self {
        let bin = venv("moto_server");
        let dir = tempfile::tempdir().unwrap();
        let port = support::otel::free_port();
        let mut command = Command::new(bin);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording.jsonl"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("moto.log")).unwrap());
        hermetic(&mut command);
        if let Some(n) = unauthenticated_calls {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let mut child = command.spawn().expect("moto_server starts");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "moto_server exited ({status}): {}",
                    std::fs::read_to_string(dir.path().join("moto.log")).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto_server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            key: "AKIDTESTING".into(),
            secret: "testing-secret".into(),
            dir,
        }
    }

    /// Runs boto3 code against the server (`client(service)`, `ec2`, `json`, `url` are
    /// defined); prints and returns what it puts in `out`.
    fn python(&self, code: &str, env: &[(&str, &str)]) -> Value {
        let prelude = r#"
import boto3, json, os, urllib.request
url = os.environ["MOTO_URL"]
def client(service="ec2"):
    return boto3.client(service, endpoint_url=url, region_name="us-west-2",
                        aws_access_key_id=os.environ["MOTO_KEY"],
                        aws_secret_access_key=os.environ["MOTO_SECRET"])
ec2 = client()
out = None
"#;
        let script = format!("{prelude}{code}\nprint(json.dumps(out))\n");
        let mut command = Command::new(venv("python"));
        command
            .args(["-c", &script])
            .env("MOTO_URL", &self.url)
            .env("MOTO_KEY", &self.key)
            .env("MOTO_SECRET", &self.secret);
        hermetic(&mut command);
        for (k, v) in env {
            command.env(k, v);
        }
        let output = command.output().expect("the venv's python runs");
        assert!(
            output.status.success(),
            "boto3 failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("boto3's script prints JSON")
    }

    /// Launches instances: for each `(zone, app tag, count)`, their ids.
    fn launch(&self, specs: &[(&str, &str, usize)]) -> Vec<Vec<String>> {
        let specs = serde_json::to_string(specs).unwrap();
        let ids = self.python(
            r#"
image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
out = []
for zone, app, count in json.loads(os.environ["SPECS"]):
    r = ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count,
        Placement={"AvailabilityZone": zone},
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "app", "Value": app}]}])
    out.append([i["InstanceId"] for i in r["Instances"]])
"#,
            &[("SPECS", &specs)],
        );
        serde_json::from_value(ids).unwrap()
    }

    /// Requests a spot instance in `zone`: its id (moto fulfils the request at once).
    fn launch_spot(&self, zone: &str) -> String {
        let id = self.python(
            r#"
image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
r = ec2.request_spot_instances(InstanceCount=1, LaunchSpecification={
    "ImageId": image, "Placement": {"AvailabilityZone": os.environ["ZONE"]}})
out = r["SpotInstanceRequests"][0]["InstanceId"]
"#,
            &[("ZONE", zone)],
        );
        id.as_str().unwrap().to_owned()
    }

    /// Every instance's state, by id (described with boto3).
    fn states(&self) -> HashMap<String, String> {
        let states = self.python(
            r#"
out = {i["InstanceId"]: i["State"]["Name"]
       for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
"#,
            &[],
        );
        serde_json::from_value(states).unwrap()
    }

    /// Starts moto's request recorder (requests with their headers, from now on).
    fn record(&self) {
        self.python(
            r#"urllib.request.urlopen(urllib.request.Request(
    url + "/moto-api/recorder/start-recording", method="POST"))"#,
            &[],
        );
    }

    /// The requests recorded since [`Moto::record`].
    fn recording(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("recording.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The environment of a run against this server: its endpoint, keys, region, a home
    /// without `~/.aws`, no instance metadata service, the application's URL.
    fn env(&self, home: &Path) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.url.as_str()),
            ("AWS_ACCESS_KEY_ID", &self.key),
            ("AWS_SECRET_ACCESS_KEY", &self.secret),
            ("AWS_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("HOME", &home.display().to_string()),
            (
                "APPLICATION_ENTRYPOINT_URL",
                &format!("{}/json", server::base_url()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

/// A recorded request's body (moto's recorder stores it base64-encoded).
fn body(request: &Value) -> String {
    let text = request["body"].as_str().unwrap_or_default();
    if request["body_encoded"] != true {
        return text.to_owned();
    }
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = alphabet.iter().position(|a| *a == c).expect("base64") as u32;
        acc = (acc << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    String::from_utf8(bytes).expect("a form body")
}

/// The action of a recorded request (`Action=...` in its form body).
fn action(request: &Value) -> String {
    body(request)
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .unwrap_or_default()
        .to_owned()
}

/// The access key id that signed a recorded request (`None`: unsigned).
fn signer(request: &Value) -> Option<String> {
    let auth = request["headers"]["Authorization"].as_str()?;
    let credential = auth.split("Credential=").nth(1)?;
    Some(credential.split('/').next()?.to_owned())
}

/// Which tool runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tool {
    Chaosflow,
    Chaos,
}

/// Runs `experiment` (a path, or YAML text written to a file) with `tool`, in a fresh
/// directory, with exactly the AWS environment given.
fn run(tool: Tool, experiment: &str, args: &[&str], env: &[(String, String)]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let path = if experiment.contains('\n') {
        let path = dir.path().join("experiment.yaml");
        std::fs::write(&path, experiment).unwrap();
        path.display().to_string()
    } else {
        experiment.to_owned()
    };
    let base = match tool {
        Tool::Chaosflow => Run::chaosflow(),
        Tool::Chaos => Run::chaos(),
    };
    let mut command = base
        .args(["run"])
        .args(args.iter().copied())
        .args([path])
        .command(dir.path());
    hermetic(&mut command);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("the tool runs");
    support::outcome(output, dir)
}

/// Environment variables of a run.
type Env = Vec<(String, String)>;

fn with(env: &[(String, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .cloned()
        .collect();
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

fn without(env: &[(String, String)], names: &[&str]) -> Vec<(String, String)> {
    env.iter()
        .filter(|(k, _)| !names.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// A value's shape: its keys and the types of its leaves.
fn shape(value: &Value) -> Value {
    match value {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(n) if n.is_f64() => json!("float"),
        Value::Number(_) => json!("int"),
        Value::String(_) => json!("str"),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
    }
}

/// The last line of an item's exception (`chaoslib.exceptions.ActivityFailed: ...`).
fn failure(item: &Value) -> String {
    item["exception"]
        .as_array()
        .and_then(|lines| lines.last())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

/// chaosflow's and chaos' items of a journal section agree: names, statuses, output shapes
/// (ids, times and request ids differ), and failures (chaosflow's may add a hint).
fn assert_same_items(ours: &Value, theirs: &Value, section: &str) {
    let ours = ours[section].as_array().unwrap();
    let theirs = theirs[section].as_array().unwrap();
    assert_eq!(ours.len(), theirs.len(), "{section}: not as many items");
    for (a, b) in ours.iter().zip(theirs) {
        let name = a["activity"]["name"].as_str().unwrap();
        assert_eq!(name, b["activity"]["name"], "{section}");
        assert_eq!(a["status"], b["status"], "{section}/{name}: {a:#}");
        assert_eq!(
            shape(&a["output"]),
            shape(&b["output"]),
            "{section}/{name}: the outputs differ in shape:\nchaosflow: {:#}\nchaos: {:#}",
            a["output"],
            b["output"]
        );
        let (fa, fb) = (failure(a), failure(b));
        assert!(
            fa.starts_with(&fb),
            "{section}/{name}: chaosflow failed with\n  {fa}\nchaos with\n  {fb}"
        );
    }
}

fn item<'a>(journal: &'a Value, section: &str, name: &str) -> &'a Value {
    journal[section]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["activity"]["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {section}: {journal:#}"))
}

fn experiment_path() -> String {
    support::repo()
        .join("experiments/stop-ec2-by-id.yaml")
        .display()
        .to_string()
}

/// The demo experiment: the application answers, the instance is stopped, the hypothesis
/// still holds, the rollback starts it again. Same outcome and output shapes as `chaos`.
#[test]
fn stop_ec2_by_id_stops_the_instance_like_chaos() {
    let home = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let ids = moto.launch(&[("us-west-2a", "web", 1), ("us-west-2a", "web", 1)]);
    let (id, kept) = (&ids[0][0], &ids[1][0]);
    let env = with(&moto.env(home.path()), &[("EC2_INSTANCE_ID", id)]);

    let ours = run(
        Tool::Chaosflow,
        &experiment_path(),
        &["--dry", "pause"],
        &env,
    );
    assert_eq!(ours.code, 0, "{}", ours.stderr);
    let journal = ours.journal();
    assert_eq!(journal["status"], "completed");
    assert_eq!(journal["deviated"], false);
    let stop = item(journal, "run", "stop_instance");
    assert_eq!(stop["status"], "succeeded");
    let change = &stop["output"][0]["StoppingInstances"][0];
    assert_eq!(change["InstanceId"], id.as_str());
    assert_eq!(
        change["PreviousState"],
        json!({"Code": 16, "Name": "running"})
    );
    assert_eq!(
        change["CurrentState"],
        json!({"Code": 64, "Name": "stopping"})
    );
    let meta = &stop["output"][0]["ResponseMetadata"];
    assert_eq!(meta["HTTPStatusCode"], 200);
    assert_eq!(meta["RetryAttempts"], 0);
    let start = item(journal, "rollbacks", "start_instance");
    assert_eq!(start["output"][0]["InstanceId"], id.as_str());
    assert_eq!(start["output"][0]["PreviousState"]["Name"], "stopped");
    let states = moto.states();
    assert_eq!(states[id.as_str()], "running", "the rollback restarted it");
    assert_eq!(states[kept.as_str()], "running");

    // Without the rollback, the instance stays stopped.
    let env = with(&env, &[("EC2_INSTANCE_ID", kept)]);
    let never = run(
        Tool::Chaosflow,
        &experiment_path(),
        &["--dry", "pause", "--rollback-strategy", "never"],
        &env,
    );
    assert_eq!(never.code, 0, "{}", never.stderr);
    assert_eq!(moto.states()[kept.as_str()], "stopped");

    // chaos, on a server set up the same way.
    let other = Moto::start();
    let ids = other.launch(&[("us-west-2a", "web", 1)]);
    let env = with(&other.env(home.path()), &[("EC2_INSTANCE_ID", &ids[0][0])]);
    let theirs = run(Tool::Chaos, &experiment_path(), &["--dry", "pause"], &env);
    assert_eq!(theirs.code, ours.code, "{}", theirs.stderr);
    let oracle = theirs.journal();
    assert_eq!(oracle["status"], journal["status"]);
    assert_eq!(oracle["deviated"], journal["deviated"]);
    assert_same_items(journal, oracle, "run");
    assert_same_items(journal, oracle, "rollbacks");
    assert_eq!(other.states()[ids[0][0].as_str()], "running");
}

/// Zones, filters, a random pick, describe, start, `force`, and chaosaws' "nothing found"
/// failures, each activity as `chaos` runs it on a server set up the same way.
#[test]
fn filters_zones_start_and_describe_like_chaos() {
    let experiment = r#"
title: ec2 functions
description: every selection rule
method:
  - type: action
    name: stop-web-in-2a
    provider:
      type: python
      module: chaosaws.ec2.actions
      func: stop_instances
      arguments:
        az: us-west-2a
        filters: [{Name: "tag:app", Values: [web]}]
  - type: action
    name: stop-one-in-2b
    provider:
      type: python
      module: chaosaws.ec2.actions
      func: stop_instance
      arguments:
        az: us-west-2b
  - type: probe
    name: stopped-web
    provider:
      type: python
      module: chaosaws.ec2.probes
      func: describe_instances
      arguments:
        filters:
          - {Name: "tag:app", Values: [web]}
          - {Name: instance-state-name, Values: [stopped]}
  - type: action
    name: stop-in-empty-zone
    provider:
      type: python
      module: chaosaws.ec2.actions
      func: stop_instances
      arguments:
        az: us-west-2c
  - type: action
    name: start-web
    provider:
      type: python
      module: chaosaws.ec2.actions
      func: start_instances
      arguments:
        filters: [{Name: "tag:app", Values: [web]}]
  - type: action
    name: start-in-empty-zone
    provider:
      type: python
      module: chaosaws.ec2.actions
      func: start_instances
      arguments:
        az: us-west-2c
  - type: action
    name: force-stop-db
    provider:
      type: python
      module: chaosaws.ec2.actions
      func: stop_instances
      arguments:
        instance_ids: ["${db}"]
        force: true
  - type: action
    name: stop-spot
    provider:
      type: python
      module: chaosaws.ec2.actions
      func: stop_instances
      arguments:
        instance_ids: ["${spot}"]
configuration:
  db:
    type: env
    key: DB_INSTANCE
  spot:
    type: env
    key: SPOT_INSTANCE
"#;
    let home = tempfile::tempdir().unwrap();
    let setup = [
        ("us-west-2a", "web", 2),
        ("us-west-2b", "web", 1),
        ("us-west-2a", "db", 1),
    ];
    let mut journals = Vec::new();
    for tool in [Tool::Chaosflow, Tool::Chaos] {
        let moto = Moto::start();
        let ids = moto.launch(&setup);
        let db = &ids[2][0];
        let spot = moto.launch_spot("us-west-2a");
        let env = with(
            &moto.env(home.path()),
            &[("DB_INSTANCE", db), ("SPOT_INSTANCE", &spot)],
        );
        let out = run(tool, experiment, &[], &env);
        assert_eq!(out.code, 0, "{tool:?}: {}", out.stderr);
        let journal = out.journal().clone();
        let states = moto.states();
        for web in ids[..2].iter().flatten() {
            assert_eq!(states[web.as_str()], "running", "{tool:?}: {web}");
        }
        assert_eq!(states[db.as_str()], "stopped", "{tool:?}");

        let stopped: Vec<&str> =
            item(&journal, "run", "stop-web-in-2a")["output"][0]["StoppingInstances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["InstanceId"].as_str().unwrap())
                .collect();
        let mut expected: Vec<&str> = ids[0].iter().map(String::as_str).collect();
        let mut got = stopped.clone();
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected, "{tool:?}: both web instances of us-west-2a");
        assert_eq!(
            item(&journal, "run", "stop-one-in-2b")["output"][0]["StoppingInstances"][0]["InstanceId"],
            ids[1][0].as_str()
        );
        let described = &item(&journal, "run", "stopped-web")["output"]["Reservations"];
        let described: usize = described
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Instances"].as_array().unwrap().len())
            .sum();
        assert_eq!(described, 3, "{tool:?}");
        assert_eq!(
            item(&journal, "run", "start-web")["output"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            failure(item(&journal, "run", "stop-in-empty-zone")),
            "chaoslib.exceptions.ActivityFailed: chaoslib.exceptions.ActivityFailed: No \
             instances in availability zone: us-west-2c"
        );
        assert_eq!(
            failure(item(&journal, "run", "start-in-empty-zone")),
            "chaoslib.exceptions.ActivityFailed: chaoslib.exceptions.ActivityFailed: No \
             instances found matching filters: [{'Name': 'availability-zone', 'Values': \
             ['us-west-2c']}]"
        );
        // moto's spot instances lack the SpotInstanceRequestId chaosaws reads.
        assert!(
            failure(item(&journal, "run", "stop-spot")).starts_with(
                "chaoslib.exceptions.ActivityFailed: KeyError: 'SpotInstanceRequestId'"
            ),
            "{tool:?}: {:#}",
            item(&journal, "run", "stop-spot")
        );
        journals.push(journal);
    }
    assert_same_items(&journals[0], &journals[1], "run");
}

/// EC2's errors, a missing region, missing credentials and arguments boto3 refuses fail the
/// activity, with `chaos`'s message (chaosflow adds where it looked, for the last two).
#[test]
fn failures_read_like_chaos() {
    let experiment = r#"
title: failures
description: what goes wrong
configuration:
  aws_region:
    type: env
    key: AWS_REGION
    default: ""
method:
  - type: action
    name: unknown-instance
    provider:
      type: python
      module: chaosaws.ec2.actions
      func: stop_instances
      arguments:
        instance_ids: [i-0123456789abcdef0]
  - type: action
    name: nothing-to-stop
    provider:
      type: python
      module: chaosaws.ec2.actions
      func: stop_instance
      arguments:
        instance_id: ""
  - type: probe
    name: bad-filters
    provider:
      type: python
      module: chaosaws.ec2.probes
      func: describe_instances
      arguments:
        filters: [{Name: "tag:app", Value: web}]
"#;
    let home = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let env = moto.env(home.path());
    let no_region = without(&env, &["AWS_REGION"]);
    let no_credentials = without(&env, &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]);
    for (label, env) in [
        ("errors", &env),
        ("no region", &no_region),
        ("no credentials", &no_credentials),
    ] {
        let ours = run(Tool::Chaosflow, experiment, &[], env);
        let theirs = run(Tool::Chaos, experiment, &[], env);
        assert_eq!(ours.code, theirs.code, "{label}: {}", ours.stderr);
        assert_same_items(ours.journal(), theirs.journal(), "run");
        let unknown = failure(item(ours.journal(), "run", "unknown-instance"));
        match label {
            "errors" => {
                assert_eq!(
                    unknown,
                    "chaoslib.exceptions.ActivityFailed: botocore.exceptions.ClientError: An \
                     error occurred (InvalidInstanceID.NotFound) when calling the \
                     DescribeInstances operation: The instance ID 'i-0123456789abcdef0' does \
                     not exist"
                );
                let bad = failure(item(ours.journal(), "run", "bad-filters"));
                assert!(
                    bad.contains("Unknown parameter in Filters[0]: \"Value\""),
                    "{bad}"
                );
            }
            "no region" => assert!(
                unknown.contains(
                    "AWS requires a region to be set! (set the configuration key aws_region"
                ),
                "{unknown}"
            ),
            _ => {
                assert!(
                    unknown.contains("Unable to locate credentials: no AWS credentials found: set AWS_ACCESS_KEY_ID"),
                    "{unknown}"
                );
                assert!(
                    unknown.contains(&home.path().join(".aws/credentials").display().to_string()),
                    "{unknown}"
                );
            }
        }
        let nothing = failure(item(ours.journal(), "run", "nothing-to-stop"));
        assert!(nothing.ends_with("you must specify either the instance id, an AZ to pick a random instance from, or a set of filters."), "{nothing}");
    }
}

/// moto checks signatures: the right keys pass, from the environment, a profile of the shared
/// credentials file (`aws_profile_name` then wins over the environment, as in boto3), a profile
/// of the config file (`AWS_PROFILE`) or the activity's secrets; a wrong secret is refused with
/// EC2's AuthFailure. No secret shows in the journal, the log or the console.
#[test]
fn sigv4_signatures_and_credentials_from_files_profiles_and_secrets() {
    let moto = Moto::checking_signatures();
    let ids = moto.launch(&[("us-west-2a", "web", 1)]);
    let id = &ids[0][0];
    let home = tempfile::tempdir().unwrap();
    let aws = home.path().join(".aws");
    std::fs::create_dir(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = AKIAWRONGDEFAULT\naws_secret_access_key = nope\n\n\
             [chaos]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            moto.key, moto.secret
        ),
    )
    .unwrap();
    let config = home.path().join("custom-config");
    std::fs::write(
        &config,
        format!(
            "[profile from-config]\nregion = eu-west-3\naws_access_key_id = {}\n\
             aws_secret_access_key = {}\n",
            moto.key, moto.secret
        ),
    )
    .unwrap();
    // The probe, with the activity's secrets when `secrets` (chaos has no default for
    // secrets read from the environment).
    let experiment = |secrets: bool| {
        let mut text = String::from(
            r#"
title: credentials
description: who signs
configuration:
  instance:
    type: env
    key: INSTANCE
  aws_profile_name:
    type: env
    key: PROFILE_NAME
    default: null
method:
  - type: probe
    name: describe
    provider:
      type: python
      module: chaosaws.ec2.probes
      func: describe_instances
      arguments:
        filters: [{Name: instance-id, Values: ["${instance}"]}]
"#,
        );
        if secrets {
            text.push_str(
                "      secrets: [aws]\nsecrets:\n  aws:\n    aws_access_key_id:\n      type: env\n      \
                 key: SECRET_KEY_ID\n    aws_secret_access_key:\n      type: env\n      key: SECRET_KEY\n",
            );
        }
        text
    };
    let base = with(&moto.env(home.path()), &[("INSTANCE", id)]);
    let wrong = "wr0ng-s3cret-value";
    let cases: Vec<(&str, Env, bool)> = vec![
        ("environment", base.clone(), true),
        (
            "wrong secret",
            with(&base, &[("AWS_SECRET_ACCESS_KEY", wrong)]),
            false,
        ),
        (
            "aws_profile_name over the environment",
            with(
                &base,
                &[("PROFILE_NAME", "chaos"), ("AWS_SECRET_ACCESS_KEY", wrong)],
            ),
            true,
        ),
        (
            "AWS_PROFILE and AWS_CONFIG_FILE",
            with(
                &without(&base, &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]),
                &[
                    ("AWS_PROFILE", "from-config"),
                    ("AWS_CONFIG_FILE", &config.display().to_string()),
                ],
            ),
            true,
        ),
        (
            "default profile, wrong keys",
            without(&base, &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]),
            false,
        ),
        (
            "secrets over the environment",
            with(
                &base,
                &[
                    ("SECRET_KEY_ID", &moto.key),
                    ("SECRET_KEY", &moto.secret),
                    ("AWS_SECRET_ACCESS_KEY", wrong),
                ],
            ),
            true,
        ),
    ];
    for (label, env, ok) in cases {
        let text = experiment(label.starts_with("secrets"));
        let out = run(Tool::Chaosflow, &text, &[], &env);
        let probe = item(out.journal(), "run", "describe");
        if ok {
            assert_eq!(probe["status"], "succeeded", "{label}: {probe:#}");
            let reservations = probe["output"]["Reservations"].as_array().unwrap();
            assert_eq!(reservations[0]["Instances"][0]["InstanceId"], id.as_str());
        } else {
            assert_eq!(
                failure(probe),
                "chaoslib.exceptions.ActivityFailed: botocore.exceptions.ClientError: An error \
                 occurred (AuthFailure) when calling the DescribeInstances operation: AWS was not \
                 able to validate the provided access credentials",
                "{label}"
            );
        }
        let log = std::fs::read_to_string(out.dir.path().join("chaostoolkit.log")).unwrap();
        let journal = out.journal().to_string();
        for secret in [moto.secret.as_str(), wrong] {
            assert!(
                !journal.contains(secret) && !log.contains(secret) && !out.stderr.contains(secret),
                "{label}: a secret leaked"
            );
        }
    }
    // chaos agrees on the profile's precedence.
    let env = with(
        &base,
        &[("PROFILE_NAME", "chaos"), ("AWS_SECRET_ACCESS_KEY", wrong)],
    );
    let theirs = run(Tool::Chaos, &experiment(false), &[], &env);
    assert_eq!(
        item(theirs.journal(), "run", "describe")["status"],
        "succeeded"
    );
}

/// IRSA: the token file and role of the environment are exchanged with STS (an unsigned
/// AssumeRoleWithWebIdentity, once for the whole run), and EC2 calls are signed with the
/// temporary credentials and their session token. `AWS_ENDPOINT_URL_EC2`/`_STS` route them.
#[test]
fn web_identity_credentials_from_sts() {
    let moto = Moto::start();
    let ids = moto.launch(&[("us-west-2a", "web", 1)]);
    let home = tempfile::tempdir().unwrap();
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl";
    let token_file = home.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let env = with(
        &without(
            &moto.env(home.path()),
            &[
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_ENDPOINT_URL",
            ],
        ),
        &[
            ("AWS_ENDPOINT_URL_EC2", &moto.url),
            ("AWS_ENDPOINT_URL_STS", &moto.url),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                &token_file.display().to_string(),
            ),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/chaos"),
            ("AWS_ROLE_SESSION_NAME", "chaosflow-test"),
            ("EC2_INSTANCE_ID", &ids[0][0]),
        ],
    );
    moto.record();
    let out = run(
        Tool::Chaosflow,
        &experiment_path(),
        &["--dry", "pause"],
        &env,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        item(out.journal(), "rollbacks", "start_instance")["status"],
        "succeeded"
    );
    let requests = moto.recording();
    let sts: Vec<&Value> = requests
        .iter()
        .filter(|r| action(r) == "AssumeRoleWithWebIdentity")
        .collect();
    assert_eq!(sts.len(), 1, "one exchange for the run: {requests:#?}");
    assert_eq!(
        signer(sts[0]),
        None,
        "AssumeRoleWithWebIdentity is unsigned"
    );
    let body = body(sts[0]);
    assert!(body.contains("RoleSessionName=chaosflow-test"), "{body}");
    assert!(
        body.contains(&format!("WebIdentityToken={token}")),
        "{body}"
    );
    let ec2: Vec<&Value> = requests
        .iter()
        .filter(|r| action(r).ends_with("Instances"))
        .collect();
    assert_eq!(ec2.len(), 4, "describe+stop, describe+start: {requests:#?}");
    for request in ec2 {
        let key = signer(request).expect("signed");
        assert!(
            key.starts_with("ASIA"),
            "signed with STS credentials: {key}"
        );
        assert!(request["headers"]["X-Amz-Security-Token"].is_string());
    }
    let log = std::fs::read_to_string(out.dir.path().join("chaostoolkit.log")).unwrap();
    assert!(!log.contains(token) && !out.journal().to_string().contains(token));
}

/// `aws_assume_role_arn` (chaosaws' own) and a profile's `role_arn` with `source_profile`:
/// STS AssumeRole signed with the base keys, EC2 with the role's.
#[test]
fn assumed_roles_from_configuration_and_profiles() {
    let moto = Moto::start();
    let ids = moto.launch(&[("us-west-2a", "web", 1)]);
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        "[profile base]\naws_access_key_id = AKIDBASEPROFILE\naws_secret_access_key = b\n\
         [profile role]\nrole_arn = arn:aws:iam::123456789012:role/from-profile\n\
         source_profile = base\nrole_session_name = profile-session\n",
    )
    .unwrap();
    let experiment = r#"
title: roles
description: assumed
configuration:
  aws_assume_role_arn:
    type: env
    key: ROLE_ARN
    default: ""
method:
  - type: probe
    name: describe
    provider:
      type: python
      module: chaosaws.ec2.probes
      func: describe_instances
      arguments:
        filters: []
"#;
    let env = moto.env(home.path());
    for (label, extra) in [
        (
            "configuration",
            vec![(
                "ROLE_ARN",
                "arn:aws:iam::123456789012:role/from-configuration",
            )],
        ),
        ("profile", vec![("AWS_PROFILE", "role")]),
    ] {
        let mut env = with(&env, &extra);
        if label == "profile" {
            env = without(&env, &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]);
        }
        moto.record();
        let out = run(Tool::Chaosflow, experiment, &[], &env);
        let probe = item(out.journal(), "run", "describe");
        assert_eq!(probe["status"], "succeeded", "{label}: {probe:#}");
        assert_eq!(
            probe["output"]["Reservations"][0]["Instances"][0]["InstanceId"],
            ids[0][0].as_str()
        );
        let requests = moto.recording();
        let assume = requests
            .iter()
            .rev()
            .find(|r| action(r) == "AssumeRole")
            .unwrap_or_else(|| panic!("{label}: no AssumeRole: {requests:#?}"));
        let body = body(assume);
        let (base, session) = if label == "configuration" {
            (moto.key.as_str(), "RoleSessionName=ChaosToolkit")
        } else {
            ("AKIDBASEPROFILE", "RoleSessionName=profile-session")
        };
        assert_eq!(signer(assume).as_deref(), Some(base), "{label}");
        assert!(body.contains(session), "{label}: {body}");
        let describe = requests
            .iter()
            .rev()
            .find(|r| action(r) == "DescribeInstances")
            .unwrap();
        assert!(signer(describe).unwrap().starts_with("ASIA"), "{label}");
    }
}

/// Credentials from the container endpoint (EKS Pod Identity, ECS) and from the EC2 instance
/// metadata service (IMDSv2), both played by the tests' scripted HTTP server.
#[test]
fn container_and_instance_metadata_credentials() {
    let moto = Moto::start();
    moto.launch(&[("us-west-2a", "web", 1)]);
    let home = tempfile::tempdir().unwrap();
    let experiment = r#"
title: endpoints
description: credentials from endpoints
method:
  - type: probe
    name: describe
    provider:
      type: python
      module: chaosaws.ec2.probes
      func: describe_instances
      arguments:
        filters: []
"#;
    let creds = |key: &str| {
        json!({
            "Code": "Success", "AccessKeyId": key, "SecretAccessKey": "endpoint-secret-value",
            "Token": "endpoint-session-token", "Expiration": "2099-01-01T00:00:00Z"
        })
        .to_string()
    };
    let env = without(
        &moto.env(home.path()),
        &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    );

    let container_key = format!("aws-container-{}", std::process::id());
    let container_body = creds("ASIACONTAINER");
    server::script(
        &container_key,
        vec![(
            200,
            vec![("Content-Type", "application/json")],
            &container_body,
        )],
    );
    let container_env = with(
        &env,
        &[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                &format!("{}/v1/credentials", server::capture_url(&container_key)),
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-identity-token"),
        ],
    );
    moto.record();
    let out = run(Tool::Chaosflow, experiment, &[], &container_env);
    assert_eq!(
        item(out.journal(), "run", "describe")["status"],
        "succeeded",
        "{}",
        out.stderr
    );
    let asked = server::captured(&container_key);
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].path, "/v1/credentials");
    assert_eq!(asked[0].header("authorization"), Some("pod-identity-token"));
    let requests = moto.recording();
    assert_eq!(
        signer(requests.last().unwrap()).as_deref(),
        Some("ASIACONTAINER")
    );

    let imds_key = format!("aws-imds-{}", std::process::id());
    let imds_body = creds("ASIAINSTANCE");
    server::script(
        &imds_key,
        vec![
            (200, vec![], "imds-session-token"),
            (200, vec![], "chaos-role\n"),
            (200, vec![], &imds_body),
        ],
    );
    let imds_env = with(
        &without(&env, &["AWS_EC2_METADATA_DISABLED"]),
        &[(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            &server::capture_url(&imds_key),
        )],
    );
    moto.record();
    let out = run(Tool::Chaosflow, experiment, &[], &imds_env);
    assert_eq!(
        item(out.journal(), "run", "describe")["status"],
        "succeeded",
        "{}",
        out.stderr
    );
    let asked = server::captured(&imds_key);
    let calls: Vec<(String, String)> = asked
        .iter()
        .map(|c| (c.method.clone(), c.path.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            ("PUT", "/latest/api/token"),
            ("GET", "/latest/meta-data/iam/security-credentials/"),
            (
                "GET",
                "/latest/meta-data/iam/security-credentials/chaos-role"
            ),
        ]
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
    );
    assert_eq!(
        asked[0].header("x-aws-ec2-metadata-token-ttl-seconds"),
        Some("21600")
    );
    assert_eq!(
        asked[2].header("x-aws-ec2-metadata-token"),
        Some("imds-session-token")
    );
    let requests = moto.recording();
    assert_eq!(
        signer(requests.last().unwrap()).as_deref(),
        Some("ASIAINSTANCE")
    );
}

/// Spot instances, as chaosaws stops them (their request cancelled, then terminated), and
/// botocore's retry of a 503, against a scripted EC2 (moto's spot instances have no request
/// id): the calls made, in order, and the output.
#[test]
fn spot_instances_are_cancelled_and_terminated_after_a_retried_503() {
    let key = format!("aws-ec2-spot-{}", std::process::id());
    let describe = "<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
        <requestId>req-describe</requestId><reservationSet><item><reservationId>r-1</reservationId>\
        <ownerId>123456789012</ownerId><groupSet/><instancesSet><item>\
        <instanceId>i-0spot</instanceId><instanceLifecycle>spot</instanceLifecycle>\
        <spotInstanceRequestId>sir-abc</spotInstanceRequestId>\
        <instanceState><code>16</code><name>running</name></instanceState>\
        </item></instancesSet></item></reservationSet></DescribeInstancesResponse>";
    let cancel = "<CancelSpotInstanceRequestsResponse><requestId>req-cancel</requestId>\
        <spotInstanceRequestSet><item><spotInstanceRequestId>sir-abc</spotInstanceRequestId>\
        <state>cancelled</state></item></spotInstanceRequestSet>\
        </CancelSpotInstanceRequestsResponse>";
    let terminate = "<TerminateInstancesResponse><requestId>req-terminate</requestId>\
        <instancesSet><item><instanceId>i-0spot</instanceId>\
        <currentState><code>32</code><name>shutting-down</name></currentState>\
        <previousState><code>16</code><name>running</name></previousState></item>\
        </instancesSet></TerminateInstancesResponse>";
    let xml = vec![("Content-Type", "text/xml;charset=UTF-8")];
    server::script(
        &key,
        vec![
            // Empty: botocore's generic 5xx (a body that is not XML would not be retried).
            (503, vec![], ""),
            (200, xml.clone(), describe),
            (200, xml.clone(), describe),
            (200, xml.clone(), cancel),
            (200, xml, terminate),
        ],
    );
    let experiment = r#"
title: spot
description: spot instances
method:
  - type: action
    name: stop-spot
    provider:
      type: python
      module: chaosaws.ec2.actions
      func: stop_instance
      arguments:
        instance_id: i-0spot
"#;
    let home = tempfile::tempdir().unwrap();
    let env: Env = [
        ("AWS_ENDPOINT_URL_EC2", server::capture_url(&key)),
        ("AWS_ACCESS_KEY_ID", "AKIDSCRIPTED".into()),
        ("AWS_SECRET_ACCESS_KEY", "scripted-secret".into()),
        ("AWS_DEFAULT_REGION", "eu-west-1".into()),
        ("HOME", home.path().display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let out = run(Tool::Chaosflow, experiment, &[], &env);
    let stop = item(out.journal(), "run", "stop-spot");
    assert_eq!(stop["status"], "succeeded", "{stop:#}");
    let calls: Vec<String> = server::captured(&key)
        .iter()
        .map(|c| {
            let auth = c.header("authorization").unwrap();
            assert!(
                auth.contains("Credential=AKIDSCRIPTED/") && auth.contains("/eu-west-1/ec2/"),
                "signed for AWS_DEFAULT_REGION: {auth}"
            );
            c.body.clone()
        })
        .collect();
    assert_eq!(
        calls,
        [
            "Action=DescribeInstances&Version=2016-11-15&InstanceId.1=i-0spot",
            "Action=DescribeInstances&Version=2016-11-15&InstanceId.1=i-0spot",
            "Action=DescribeInstances&Version=2016-11-15&InstanceId.1=i-0spot",
            "Action=CancelSpotInstanceRequests&Version=2016-11-15&SpotInstanceRequestId.1=sir-abc",
            "Action=TerminateInstances&Version=2016-11-15&InstanceId.1=i-0spot",
        ]
    );
    let output = stop["output"].as_array().unwrap();
    assert_eq!(output.len(), 1, "the TerminateInstances response only");
    assert_eq!(
        output[0]["TerminatingInstances"][0],
        json!({"InstanceId": "i-0spot", "CurrentState": {"Code": 32, "Name": "shutting-down"},
               "PreviousState": {"Code": 16, "Name": "running"}})
    );
    assert_eq!(output[0]["ResponseMetadata"]["RequestId"], "req-terminate");
    assert_eq!(output[0]["ResponseMetadata"]["RetryAttempts"], 0);
}

/// An EC2 endpoint that gives every request the same answer, and counts the requests.
struct Stub {
    url: String,
    hits: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
}

impl Stub {
    fn answering(status: u16, body: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (hits, done) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (counter, stop) = (hits.clone(), done.clone());
        // A closed connection after each answer: no client reuses it.
        let answer = format!(
            "HTTP/1.1 {status} Stub\r\ncontent-type: text/xml;charset=UTF-8\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                if read_request(&mut stream) {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.write_all(answer.as_bytes());
                }
            }
        });
        Self { url, hits, done }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        // Wakes the accept loop up so that it sees `done`.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

/// Reads one request, headers and body (`content-length`), so that the answer is not sent
/// while the client still writes. `false`: the connection ended first.
fn read_request(stream: &mut TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return true;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
        }
    }
}

/// botocore's retries, as chaosaws' clients get them (standard mode, 3 attempts; legacy mode,
/// 5; `AWS_MAX_ATTEMPTS`, `AWS_RETRY_MODE` and the profile's `max_attempts`), against a stub
/// EC2 that fails every request: the attempts made and the failure, for chaosflow and for
/// `chaos` (each against its own stub, all runs at once to keep the test short).
#[test]
fn retries_like_botocore() {
    let experiment = r#"
title: retries
description: an EC2 that keeps failing
method:
  - type: probe
    name: describe
    provider:
      type: python
      module: chaosaws.ec2.probes
      func: describe_instances
      arguments:
        filters: []
"#;
    let limit = "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit \
                 exceeded.</Message></Error></Errors><RequestID>req-1</RequestID></Response>";
    let unknown = "<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>no \
                   such instance</Message></Error></Errors><RequestID>req-2</RequestID></Response>";
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    std::fs::write(&config, "[default]\nmax_attempts = 2\n").unwrap();
    let config = config.display().to_string();
    let failed = |code: &str, suffix: &str, message: &str| {
        format!(
            "chaoslib.exceptions.ActivityFailed: botocore.exceptions.ClientError: An error \
             occurred ({code}) when calling the DescribeInstances operation{suffix}: {message}"
        )
    };
    // (label, the stub's status and body, environment, attempts, failure)
    type Case<'a> = (
        &'a str,
        u16,
        &'a str,
        Vec<(&'a str, &'a str)>,
        usize,
        String,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "an empty 503, the defaults",
            503,
            "",
            vec![],
            3,
            failed("503", " (reached max retries: 2)", "Service Unavailable"),
        ),
        (
            "throttled, AWS_MAX_ATTEMPTS=2",
            503,
            limit,
            vec![("AWS_MAX_ATTEMPTS", "2")],
            2,
            failed(
                "RequestLimitExceeded",
                " (reached max retries: 1)",
                "Request limit exceeded.",
            ),
        ),
        (
            "the profile's max_attempts",
            503,
            "",
            vec![("AWS_CONFIG_FILE", &config)],
            2,
            failed("503", " (reached max retries: 1)", "Service Unavailable"),
        ),
        (
            "legacy mode, 5 attempts",
            503,
            "",
            vec![("AWS_RETRY_MODE", "legacy")],
            5,
            failed("503", " (reached max retries: 4)", "Service Unavailable"),
        ),
        (
            "legacy mode does not retry a throttling code EC2 sends with a 400",
            400,
            limit,
            vec![("AWS_RETRY_MODE", "legacy")],
            1,
            failed("RequestLimitExceeded", "", "Request limit exceeded."),
        ),
        (
            "a single attempt allowed is reached, whatever the error",
            400,
            unknown,
            vec![("AWS_MAX_ATTEMPTS", "1")],
            1,
            failed(
                "InvalidInstanceID.NotFound",
                " (reached max retries: 0)",
                "no such instance",
            ),
        ),
        (
            "a 503 that is not XML is not retried",
            503,
            "Service Unavailable",
            vec![],
            1,
            "chaoslib.exceptions.ActivityFailed: botocore.parsers.ResponseParserError: Unable \
             to parse response (syntax error: line 1, column 0), invalid XML received. Further \
             retries may succeed:\nb'Service Unavailable'"
                .to_owned(),
        ),
    ];
    let runs = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .flat_map(|(_, status, body, extra, _, _)| {
                [Tool::Chaosflow, Tool::Chaos].map(|tool| {
                    let home = home.path();
                    scope.spawn(move || {
                        let stub = Stub::answering(*status, body);
                        let mut env: Env = [
                            ("AWS_ENDPOINT_URL", stub.url.as_str()),
                            ("AWS_ACCESS_KEY_ID", "AKIDSTUB"),
                            ("AWS_SECRET_ACCESS_KEY", "stub-secret"),
                            ("AWS_REGION", REGION),
                            ("AWS_EC2_METADATA_DISABLED", "true"),
                        ]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect();
                        env.push(("HOME".into(), home.display().to_string()));
                        let env = with(&env, extra);
                        let start = Instant::now();
                        let out = run(tool, experiment, &[], &env);
                        (out, stub.hits(), start.elapsed())
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    for ((label, _, _, _, attempts, expected), pair) in cases.iter().zip(runs.chunks(2)) {
        let [(ours, our_hits, our_time), (theirs, their_hits, their_time)] = pair else {
            unreachable!()
        };
        eprintln!("{label}: chaosflow {our_time:.1?}, chaos {their_time:.1?}");
        let ours_failed = failure(item(ours.journal(), "run", "describe"));
        let theirs_failed = failure(item(theirs.journal(), "run", "describe"));
        assert_eq!(
            (*their_hits, theirs_failed.as_str()),
            (*attempts, expected.as_str()),
            "{label}: chaos, the oracle, disagrees with the test"
        );
        assert_eq!(
            (*our_hits, ours_failed.as_str()),
            (*attempts, expected.as_str()),
            "{label}: chaosflow"
        );
        // Back-offs are random; the bound only catches a run that hangs or sleeps unbounded.
        assert!(*our_time < Duration::from_secs(60), "{label}: {our_time:?}");
        // Each retry is logged.
        let log = std::fs::read_to_string(ours.dir.path().join("chaostoolkit.log")).unwrap();
        assert_eq!(
            log.matches("ec2 DescribeInstances: retrying in").count(),
            attempts - 1,
            "{label}: {log}"
        );
    }
}
