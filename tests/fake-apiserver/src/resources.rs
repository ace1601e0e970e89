//! The resource catalogue: which kinds the fake serves and where, the built-in set, the
//! resources a CustomResourceDefinition registers, and the discovery documents that kubectl
//! and kube-rs read to find them all.

use serde_json::{Value, json};
use std::cmp::Reverse;

/// One served group/version/resource.
#[derive(Clone, Debug)]
pub(crate) struct Resource {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) plural: String,
    pub(crate) singular: String,
    pub(crate) kind: String,
    pub(crate) list_kind: String,
    pub(crate) namespaced: bool,
    pub(crate) short_names: Vec<String>,
    /// Whether a `/status` subresource exists (and so the main endpoint ignores `status`).
    pub(crate) status: bool,
    /// The CRD that registered it, so re-applying or deleting that CRD replaces its versions.
    pub(crate) crd: Option<String>,
}

impl Resource {
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key: all versions of one group/resource share objects, as in a real server
    /// whose CRD conversion strategy is `None`.
    pub(crate) fn key(&self) -> (String, String) {
        (self.group.clone(), self.plural.clone())
    }

    /// `plural.group` (or just `plural` for the core group), as in API error messages.
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub(crate) fn is_crd(&self) -> bool {
        self.group == "apiextensions.k8s.io" && self.plural == "customresourcedefinitions"
    }

    /// The object as seen through this version: `apiVersion` and `kind` set.
    pub(crate) fn view(&self, obj: &Value) -> Value {
        let mut out = json!({"apiVersion": self.api_version(), "kind": self.kind});
        if let (Some(out), Some(obj)) = (out.as_object_mut(), obj.as_object()) {
            for (k, v) in obj {
                if k != "apiVersion" && k != "kind" {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        out
    }

    fn discovery(&self) -> Vec<Value> {
        let verbs = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        let mut main = json!({
            "name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
            "kind": self.kind, "verbs": verbs,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        let mut out = vec![main];
        if self.status {
            out.push(json!({
                "name": format!("{}/status", self.plural), "singularName": "",
                "namespaced": self.namespaced, "kind": self.kind, "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

/// `apiVersion plural Kind`, then `cluster` (not namespaced), `status` (has the
/// subresource) and short names.
const BUILTINS: &[&str] = &[
    "v1 namespaces Namespace cluster status ns",
    "v1 pods Pod status po",
    "v1 configmaps ConfigMap cm",
    "v1 secrets Secret",
    "v1 serviceaccounts ServiceAccount sa",
    "v1 events Event ev",
    "v1 services Service status svc",
    "rbac.authorization.k8s.io/v1 roles Role",
    "rbac.authorization.k8s.io/v1 rolebindings RoleBinding",
    "rbac.authorization.k8s.io/v1 clusterroles ClusterRole cluster",
    "rbac.authorization.k8s.io/v1 clusterrolebindings ClusterRoleBinding cluster",
    "batch/v1 cronjobs CronJob status cj",
    "batch/v1 jobs Job status",
    "events.k8s.io/v1 events Event ev",
    "apiextensions.k8s.io/v1 customresourcedefinitions CustomResourceDefinition cluster status crd crds",
    "coordination.k8s.io/v1 leases Lease",
];

pub(crate) fn builtins() -> Vec<Resource> {
    let parse = |line: &&str| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (group, version) = words[0].rsplit_once('/').unwrap_or(("", words[0]));
        let flags = &words[3..];
        Resource {
            group: group.into(),
            version: version.into(),
            plural: words[1].into(),
            singular: words[2].to_lowercase(),
            kind: words[2].into(),
            list_kind: format!("{}List", words[2]),
            namespaced: !flags.contains(&"cluster"),
            short_names: flags
                .iter()
                .filter(|f| !matches!(**f, "cluster" | "status"))
                .map(|f| f.to_string())
                .collect(),
            status: flags.contains(&"status"),
            crd: None,
        }
    };
    BUILTINS.iter().map(parse).collect()
}

/// The resources a CRD serves, most preferred version first; `Err` is a validation message.
pub(crate) fn from_crd(crd: &Value) -> Result<Vec<Resource>, String> {
    let text = |ptr: &str| crd.pointer(ptr).and_then(Value::as_str).unwrap_or_default();
    let (group, plural, kind) = (
        text("/spec/group"),
        text("/spec/names/plural"),
        text("/spec/names/kind"),
    );
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Err("spec.group, spec.names.plural and spec.names.kind are required".into());
    }
    let name = text("/metadata/name");
    if name != format!("{plural}.{group}") {
        return Err(format!(
            "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
        ));
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.iter().filter(|v| v["storage"] == true).count() != 1 {
        return Err(
            "spec.versions: Invalid value: must have exactly one version marked as storage version"
                .into(),
        );
    }
    let short_names = crd
        .pointer("/spec/names/shortNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let singular = match text("/spec/names/singular") {
        "" => kind.to_lowercase(),
        s => s.to_string(),
    };
    let list_kind = match text("/spec/names/listKind") {
        "" => format!("{kind}List"),
        s => s.to_string(),
    };
    let mut out: Vec<Resource> = versions
        .iter()
        .filter(|v| v["served"] == true)
        .map(|v| Resource {
            group: group.into(),
            version: v["name"].as_str().unwrap_or_default().into(),
            plural: plural.into(),
            singular: singular.clone(),
            kind: kind.into(),
            list_kind: list_kind.clone(),
            namespaced: text("/spec/scope") != "Cluster",
            short_names: Vec::clone(&short_names),
            status: v.pointer("/subresources/status").is_some(),
            crd: Some(name.into()),
        })
        .collect();
    out.sort_by_key(|r| Reverse(version_priority(&r.version)));
    Ok(out)
}

/// Kubernetes' version ordering: GA before beta before alpha, higher numbers first, and
/// versions not of that shape last (the server sorts those alphabetically; order is kept here).
fn version_priority(v: &str) -> (u8, u64, u64) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let Ok(major) = rest[..digits].parse::<u64>() else {
        return (0, 0, 0);
    };
    let (stage, minor) = match &rest[digits..] {
        "" => (3, 0),
        tail => match (tail.strip_prefix("beta"), tail.strip_prefix("alpha")) {
            (Some(n), _) => (2, n.parse().unwrap_or(0)),
            (_, Some(n)) => (1, n.parse().unwrap_or(0)),
            _ => return (0, 0, 0),
        },
    };
    (stage, major, minor)
}

/// `/version`.
pub(crate) fn version_info() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "fake",
        "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
        "compiler": "gc", "platform": "linux/amd64",
    })
}

/// `/api`.
pub(crate) fn api_versions(addr: &str) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}],
    })
}

/// The `APIGroup` for `group`, versions in registration (preference) order.
pub(crate) fn api_group(resources: &[Resource], group: &str) -> Option<Value> {
    let mut versions: Vec<Value> = Vec::new();
    for r in resources.iter().filter(|r| r.group == group) {
        let gv = json!({"groupVersion": r.api_version(), "version": r.version});
        if !versions.contains(&gv) {
            versions.push(gv);
        }
    }
    let preferred = versions.first()?.clone();
    Some(json!({"name": group, "versions": versions, "preferredVersion": preferred}))
}

/// `/apis`: the plain `APIGroupList`, whatever the Accept header asks for (clients fall back
/// from aggregated discovery when the response content type says so).
pub(crate) fn group_list(resources: &[Resource]) -> Value {
    let mut groups: Vec<&str> = Vec::new();
    for r in resources.iter().filter(|r| !r.group.is_empty()) {
        if !groups.contains(&r.group.as_str()) {
            groups.push(&r.group);
        }
    }
    let groups: Vec<Value> = groups
        .iter()
        .filter_map(|g| api_group(resources, g))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/api/v1` or `/apis/<group>/<version>`; `None` when nothing is served there.
pub(crate) fn resource_list(resources: &[Resource], group: &str, version: &str) -> Option<Value> {
    let served: Vec<&Resource> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    let group_version = served.first()?.api_version();
    let list: Vec<Value> = served.iter().flat_map(|r| r.discovery()).collect();
    Some(json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_versions_sorted_by_priority() {
        let crd = json!({
            "metadata": {"name": "things.example.com"},
            "spec": {"group": "example.com", "scope": "Cluster",
                "names": {"plural": "things", "kind": "Thing"},
                "versions": [
                    {"name": "v1alpha1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                    {"name": "v2beta1", "served": true, "storage": false},
                    {"name": "v3", "served": false, "storage": false}]}});
        let rs = from_crd(&crd).unwrap();
        let versions: Vec<&str> = rs.iter().map(|r| r.version.as_str()).collect();
        assert_eq!(versions, ["v1", "v2beta1", "v1alpha1"]);
        assert!(rs[0].status && !rs[1].status && !rs[0].namespaced);
        assert_eq!(rs[0].list_kind, "ThingList");
    }
}
