//! The jsonpath2 dialect against jsonpath2 itself (the library `chaos` uses), on a corpus of
//! paths and documents: same matches, same values, same rejections.

use serde_json::{Value, json};

use chaosflow::jsonpath::JsonPath;

use crate::support;

const ORACLE: &str = r#"
import json, sys
from jsonpath2.path import Path
out = []
for doc, path in json.load(sys.stdin):
    try:
        p = Path.parse_str(path)
    except Exception:
        out.append({"invalid": True})
        continue
    out.append({"matches": [m.current_value for m in p.match(doc)]})
print(json.dumps(out))
"#;

#[test]
fn matches_jsonpath2() {
    let doc = json!({
        "services": [
            {"name": "a", "latency": 3, "ok": true, "tags": ["x"]},
            {"name": "b", "latency": 9.5, "ok": false, "tags": []},
            {"name": "c", "latency": 7, "ok": true, "nested": {"latency": 1}}
        ],
        "meta": {"count": 3, "word": "hello", "flag": true, "none": null, "idx": 1, "key": "count"},
        "matrix": [[1, 2], [3, 4]],
        "empty": {}
    });
    let paths = [
        "$",
        "$.meta",
        "$.meta.count",
        "$[\"meta\"][\"word\"]",
        "$.services[0]",
        "$.services[-1].name",
        "$.services[5]",
        "$.services[*].name",
        "$.services[0:2].name",
        "$.services[1:].name",
        "$.services[:2].name",
        "$.services[::2].name",
        "$.services[-2:].name",
        "$.services[0,2].name",
        "$.services[:-1].name",
        "$.services[::-1].name",
        "$..latency",
        "$..name",
        "$..[0]",
        "$.matrix[*][1]",
        "$.matrix..[0]",
        "$.services[*][?(@.latency > 5)].name",
        "$.services[*][?(@.latency >= 7)].name",
        "$.services[*][?(@.latency < 7)].name",
        "$.services[*][?(@.ok = true)].name",
        "$.services[*][?(@.ok != true)].name",
        "$.services[*][?(@.name = \"b\")].latency",
        "$.services[*][?(@.tags)].name",
        "$.services[*][?(not @.nested)].name",
        "$.services[*][?(@.ok = true and @.latency > 5)].name",
        "$.services[*][?(@.ok = false or @.latency < 5)].name",
        "$.services[*][?(@.ok = true or @.ok = false and @.latency > 8)].name",
        "$.services[*][?((@.latency > 5))].name",
        "$.services[?(@.latency > 5)]",
        "$.services[*][?(@.latency > \"5\")].name",
        "$.services[*][?(@.nested.latency = 1)].name",
        "$.services[*][?(@.tags = [\"x\"])].name",
        "$.services[*][?(@.latency = 9.5)].name",
        "$.meta[?(@.count = 3)].word",
        "$.meta[?(@.none = null)].word",
        "$.meta[?(@.flag = 1)].word",
        "$.services.length()",
        "$.meta.word.length()",
        "$.meta.keys()",
        "$.meta.values()",
        "$.matrix.entries()",
        "$.meta.entries()",
        "$.meta.word.charAt(1)",
        "$.meta.word.charAt(-1)",
        "$.meta.word.charAt(10)",
        "$.meta.word.substring(1)",
        "$.meta.word.substring(1, 3)",
        "$.meta.word.substring(-3, -1)",
        "$.services[$.meta.idx].name",
        "$.meta[$.meta.key]",
        "$.services[*][?(@.name.length() = 1)].name",
        "$.empty.keys()",
        "$[length()]",
        "$.services[*].tags[*]",
        "$.missing",
        "$.meta.count.missing",
        "$..nested..latency",
        // rejected (single quotes too)
        "$['meta']['word']",
        "",
        "meta",
        "$.",
        "$.meta-data",
        "$[",
        "$.services[1.5]",
        "$.nope()",
        "$[?(@.a == 1)]",
        "$.true",
        "$..",
        "$ meta",
        "@.meta",
        "$[?@.a]",
        "$['unterminated]",
    ];
    let corpus: Vec<Value> = paths.iter().map(|p| json!([doc, p])).collect();
    let python = support::repo().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "needs the test venv (./scripts/test creates it)"
    );
    let mut child = std::process::Command::new(python)
        .args(["-c", ORACLE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(Value::Array(corpus).to_string().as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let expected: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let rejected = expected
        .iter()
        .filter(|e| e.get("invalid").is_some())
        .count();
    assert_eq!(rejected, 15, "the oracle rejects exactly the invalid paths");
    assert_eq!(expected[2], json!({"matches": [3]}));
    let mut diffs = Vec::new();
    for (path, want) in paths.iter().zip(expected) {
        let got = match JsonPath::parse(path) {
            Ok(p) => json!({"matches": p.query(&doc)}),
            Err(_) => json!({"invalid": true}),
        };
        if got != want {
            diffs.push(format!("{path:?}: jsonpath2={want} chaosflow={got}"));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
