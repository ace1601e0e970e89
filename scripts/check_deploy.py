"""The Python half of scripts/check-deploy: what needs parsing rather than a tool's verdict.

    check_deploy.py builtins OUT FILE...         objects of built-in kinds, for kubernetes-validate
    check_deploy.py crs CRD BASE EXAMPLE...      custom resources against the CRD's schema
    check_deploy.py settings OUTDIR EXAMPLE...   the settings.yaml of each example Secret, as files
    check_deploy.py terraform DIR CRD BASE       the Terraform against deploy/base

BASE is `kubectl kustomize deploy/base`, rendered. Every command prints what it checked and
exits 1 with the reasons when something is wrong. Runs with the .venv of setup-test-peers
(PyYAML, jsonschema, python-hcl2).
"""

import base64
import copy
import pathlib
import re
import sys

import jsonschema
import yaml

GROUP = "chaostoolkit.org"
CR_KIND = "ChaosToolkitExperiment"


def docs(path):
    """The objects of a multi-document YAML file (empty documents skipped)."""
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def is_custom(obj):
    return obj.get("apiVersion", "").split("/")[0] == GROUP


def describe(obj):
    meta = obj.get("metadata", {})
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {ns}{meta.get('name')}"


class Failures:
    def __init__(self):
        self.reasons = []

    def add(self, reason):
        self.reasons.append(reason)
        print(f"  FAIL {reason}")

    def check(self, ok, reason):
        if not ok:
            self.add(reason)
        return ok

    def exit(self):
        if self.reasons:
            print(f"{len(self.reasons)} problem(s)")
            sys.exit(1)


# --- builtins ------------------------------------------------------------------------------


def cmd_builtins(out, *files):
    """Writes the built-in objects of FILES to OUT: kubernetes-validate has no schema for a
    custom resource and would only warn and pass it (the `crs` command checks those)."""
    kept, skipped = [], []
    for path in files:
        for obj in docs(path):
            (skipped if is_custom(obj) else kept).append(obj)
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(kept, f, sort_keys=False)
    print(
        f"  {len(kept)} built-in object(s) from {len(files)} file(s); left to the CRD check: "
        + (", ".join(describe(o) for o in skipped) or "none")
    )


# --- crs -----------------------------------------------------------------------------------

# What Kubernetes requires of a custom resource's name (a DNS-1123 subdomain) and of a
# namespace's (a DNS-1123 label).
NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def structural_to_jsonschema(schema, unchecked):
    """A Kubernetes structural schema (OpenAPI v3 with x-kubernetes-* extensions) as JSON
    Schema, with what the API server does on `kubectl apply` (strict field validation, the
    default since Kubernetes 1.27):
    - `nullable: true` admits null (in `type` and in `enum`);
    - an object's fields not in `properties` are rejected, unless it has
      `x-kubernetes-preserve-unknown-fields: true` or `additionalProperties` (the API server
      prunes them and strict validation turns that into an error);
    - `x-kubernetes-int-or-string: true` is an integer or a string;
    - `x-kubernetes-embedded-resource` has apiVersion, kind and metadata.
    CEL rules (`x-kubernetes-validations`) cannot be evaluated here: their paths go to
    `unchecked`."""

    def convert(s, path):
        out = {}
        for key in ("enum", "pattern", "minimum", "maximum", "exclusiveMinimum",
                    "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems",
                    "minProperties", "maxProperties", "required", "uniqueItems", "multipleOf"):
            if key in s:
                out[key] = s[key]
        if s.get("x-kubernetes-validations"):
            unchecked.append(path or "(root)")
        if s.get("x-kubernetes-list-type") == "set":
            out["uniqueItems"] = True
        if "type" in s:
            out["type"] = s["type"]
        if s.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        props = dict(s.get("properties", {}))
        if s.get("x-kubernetes-embedded-resource"):
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            props.setdefault("metadata", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
        if props:
            out["properties"] = {k: convert(v, f"{path}.{k}") for k, v in props.items()}
        if "items" in s:
            out["items"] = convert(s["items"], f"{path}[]")
        for key in ("allOf", "anyOf", "oneOf"):
            if key in s:
                out.setdefault("allOf", []).append(
                    {key: [convert(x, path) for x in s[key]]}
                )
        if "not" in s:
            out["not"] = convert(s["not"], path)
        if isinstance(s.get("additionalProperties"), dict):
            out["additionalProperties"] = convert(s["additionalProperties"], f"{path}.*")
        elif s.get("additionalProperties") is False or (
            s.get("type") == "object"
            and not s.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in s
        ):
            out["additionalProperties"] = False
        if s.get("nullable"):
            if isinstance(out.get("type"), str):
                out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
            if "anyOf" in out:
                out["anyOf"] = [*out["anyOf"], {"type": "null"}]
        return out

    return convert(schema, "")


def cr_validator(crd_path):
    """The validator of the CRD's served version, and the paths it cannot check."""
    crd = docs(crd_path)[0]
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    unchecked = []
    schema = structural_to_jsonschema(version["schema"]["openAPIV3Schema"], unchecked)
    # The API server adds these to every custom resource's schema.
    schema.setdefault("properties", {}).update(
        apiVersion={"const": f"{crd['spec']['group']}/{version['name']}"},
        kind={"const": crd["spec"]["names"]["kind"]},
        metadata={
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": NAME, "maxLength": 253},
                "namespace": {"type": "string", "pattern": LABEL, "maxLength": 63},
            },
        },
    )
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema), unchecked


def errors(validator, obj):
    found = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in found]


def with_change(obj, path, value):
    """A copy of obj with the dotted path set to value (or removed, for REMOVE)."""
    obj = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node = obj
    for p in parents:
        node = node.setdefault(p, {})
    if value is REMOVE:
        node.pop(last, None)
    else:
        node[last] = value
    return obj


REMOVE = object()

# Resources the CRD must refuse: each says what is wrong with it.
BAD = [
    ("spec.schedule", {"kind": "daily", "value": "0 3 * * *"}, "schedule.kind: daily (only cronjob)"),
    ("spec.schedule", {"kind": "cronjob", "value": "not a cron"}, "schedule.value: not a cron"),
    ("spec.schedule", {"value": "*/5 * * * *"}, "schedule without kind (upstream crashed on it)"),
    ("spec.verbose", "yes", 'verbose: "yes" (a string, not a boolean)'),
    ("spec.pod.experiment.asFile", "false", 'pod.experiment.asFile: "false" (a string)'),
    ("spec.pod.imagee", "busybox", "pod.imagee (a misspelt field: strict validation)"),
    ("spec.role.binds_to_namespaces", "sock-shop", "role.binds_to_namespaces: a string, not a list"),
    ("metadata.name", "Hello_World", "metadata.name: Hello_World (not a DNS name)"),
]

# Resources the CRD must accept: upstream's and the demo's forms.
GOOD = [
    ("spec.schedule", {"kind": "CronJob", "value": "@hourly"}, "schedule kind in any case, @hourly"),
    ("spec.pod.env", [{"name": "NAMESPACE", "value": "sock-shop"}], "the demo's list-form pod.env"),
    ("spec.pod.env", {"enabled": False, "secretName": "creds"}, "upstream's object-form pod.env"),
    ("spec.clusterRoleBindNamespaces", ["sock-shop"], "the demo's clusterRoleBindNamespaces"),
    ("spec.keep_resources_on_delete", True, "upstream's snake_case keep_resources_on_delete"),
    ("spec.verbose", None, "an explicit null (nullable)"),
    ("spec.somethingNew", {"x": 1}, "an unknown spec field (spec preserves unknown fields)"),
    ("spec", REMOVE, "no spec at all (upstream's basic-env-vars example)"),
    ("spec.schedule", {"kind": "cronjob", "value": ""}, "an empty schedule.value (upstream: every minute)"),
    ("spec.pod.configMapName", "my-env", "pod.configMapName, where upstream's documentation put it"),
]


def watched_namespace(base):
    """The namespace the rendered operator Deployment passes to `--namespace`."""
    for obj in base:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "chaosflow-operator":
            args = obj["spec"]["template"]["spec"]["containers"][0].get("args", [])
            if "--namespace" in args:
                return args[args.index("--namespace") + 1]
    return None


def cmd_crs(crd_path, base_path, *examples):
    fail = Failures()
    validator, unchecked = cr_validator(crd_path)
    if unchecked:
        print(f"  note: CEL rules not evaluated at {', '.join(unchecked)}")
    base = docs(base_path)
    watched = watched_namespace(base)
    base_namespaces = {o["metadata"]["name"] for o in base if o["kind"] == "Namespace"}
    objects = [(path, obj) for path in examples for obj in docs(path)]
    crs = [(path, o) for path, o in objects if is_custom(o)]
    fail.check(crs, "no ChaosToolkitExperiment in the examples")

    for path, cr in crs:
        problems = errors(validator, cr)
        if fail.check(not problems, f"{path}: {describe(cr)}: {'; '.join(problems)}"):
            print(f"  ok   {path}: {describe(cr)} matches the CRD's schema")
        check_references(fail, path, cr, objects, watched)

    # Every example goes into a namespace deploy/base creates.
    for path, obj in objects:
        ns = obj.get("metadata", {}).get("namespace")
        fail.check(
            ns in base_namespaces,
            f"{path}: {describe(obj)} is in {ns!r}, which deploy/base does not create "
            f"({', '.join(sorted(base_namespaces))})",
        )

    # The validator itself: it must refuse broken resources and accept upstream's forms.
    sample = crs[0][1] if crs else {"apiVersion": f"{GROUP}/v1", "kind": CR_KIND,
                                    "metadata": {"name": "x"}, "spec": {}}
    for path, value, why in BAD:
        problems = errors(validator, with_change(sample, path, value))
        if fail.check(problems, f"the CRD's schema accepted a bad resource: {why}"):
            print(f"  ok   rejected {why}: {problems[0]}")
    for path, value, why in GOOD:
        problems = errors(validator, with_change(sample, path, value))
        if fail.check(not problems, f"the CRD's schema refused {why}: {'; '.join(problems)}"):
            print(f"  ok   accepted {why}")
    fail.exit()


def check_references(fail, path, cr, objects, watched):
    """The experiment's ConfigMap and settings Secret are among the examples, in its run
    namespace, with the keys the runner pod mounts; the experiment sits where the operator
    looks."""
    name = describe(cr)
    ns = cr["metadata"].get("namespace")
    fail.check(
        ns == watched,
        f"{path}: {name} is in {ns!r} but the operator only watches {watched!r} (--namespace)",
    )
    spec = cr.get("spec") or {}
    run_ns = spec.get("namespace") or "chaostoolkit-run"
    pod = spec.get("pod") or {}

    def find(kind, obj_name):
        for _, o in objects:
            meta = o.get("metadata", {})
            if o.get("kind") == kind and meta.get("name") == obj_name and meta.get("namespace") == run_ns:
                return o
        return None

    experiment = pod.get("experiment") or {}
    if experiment.get("asFile", True) is not False and not pod.get("template"):
        cm_name = experiment.get("configMapName") or "chaostoolkit-experiment"
        key = experiment.get("configMapExperimentFileName") or "experiment.json"
        cm = find("ConfigMap", cm_name)
        if fail.check(cm is not None, f"{path}: {name} needs ConfigMap {run_ns}/{cm_name}, in no example"):
            ok = fail.check(key in (cm.get("data") or {}),
                            f"{path}: {name} reads key {key!r} of ConfigMap {cm_name}, which lacks it")
            if ok:
                print(f"  ok   {name}: experiment from ConfigMap {run_ns}/{cm_name} key {key}")
    settings = pod.get("settings") or {}
    if settings.get("enabled"):
        secret_name = settings.get("secretName") or "chaostoolkit-settings"
        secret = find("Secret", secret_name)
        if fail.check(secret is not None, f"{path}: {name} mounts Secret {run_ns}/{secret_name}, in no example"):
            keys = {*(secret.get("data") or {}), *(secret.get("stringData") or {})}
            if fail.check("settings.yaml" in keys,
                          f"{path}: Secret {secret_name} has no settings.yaml key"):
                print(f"  ok   {name}: settings from Secret {run_ns}/{secret_name}")


# --- settings ------------------------------------------------------------------------------


def cmd_settings(outdir, *examples):
    """Writes each example Secret's settings.yaml to OUTDIR (one file per Secret) and prints
    the paths, for `chaosflow settings check`."""
    out = pathlib.Path(outdir)
    for path in examples:
        for obj in docs(path):
            if obj.get("kind") != "Secret":
                continue
            text = (obj.get("stringData") or {}).get("settings.yaml")
            if text is None and "settings.yaml" in (obj.get("data") or {}):
                text = base64.b64decode(obj["data"]["settings.yaml"]).decode()
            if text is not None:
                target = out / f"{obj['metadata']['name']}.settings.yaml"
                target.write_text(text, encoding="utf-8")
                print(target)


# --- terraform -----------------------------------------------------------------------------

# Terraform resource type -> Kubernetes kind.
KINDS = {
    "kubernetes_namespace_v1": "Namespace",
    "kubernetes_service_account_v1": "ServiceAccount",
    "kubernetes_cluster_role_v1": "ClusterRole",
    "kubernetes_cluster_role_binding_v1": "ClusterRoleBinding",
    "kubernetes_role_binding_v1": "RoleBinding",
    "kubernetes_deployment_v1": "Deployment",
    "kubernetes_service_v1": "Service",
}
# Blocks that stand for a list's items (one block per item); every other block is one object.
REPEATED = {"rule": "rules", "subject": "subjects", "container": "containers", "env": "env",
            "port": "ports", "volume": "volumes", "volume_mount": "volumeMounts"}
# Attributes whose keys are data (labels, annotations), not field names (a Service's selector
# is such a map; a Deployment's is a block).
MAPS = {"labels", "annotations", "match_labels", "selector", "requests", "limits", "data"}


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


class Terraform:
    """The .tf files of a directory, parsed, with just enough evaluation to compare them with
    manifests: variable defaults, locals, and `<type>.<name>.metadata[0].name` references."""

    def __init__(self, directory):
        import hcl2

        options = hcl2.SerializationOptions(
            strip_string_quotes=True, explicit_blocks=False, with_comments=False
        )
        self.files = {}
        for tf in sorted(pathlib.Path(directory).glob("*.tf")):
            with open(tf, encoding="utf-8") as f:
                self.files[tf.name] = hcl2.load(f, serialization_options=options)
        self.variables, self.locals, self.resources = {}, {}, {}
        for parsed in self.files.values():
            for block in parsed.get("variable", []):
                for name, body in block.items():
                    self.variables[name] = body.get("default")
            for block in parsed.get("locals", []):
                self.locals.update(block)
            for block in parsed.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        self.resources[(rtype, name)] = body

    def value(self, v):
        if isinstance(v, str):
            m = re.fullmatch(r"\$\{var\.(\w+)\}", v)
            if m:
                return self.variables[m[1]]
            m = re.fullmatch(r"\$\{local\.(\w+)\}", v)
            if m:
                return self.value(self.locals[m[1]])
            m = re.fullmatch(r"\$\{(\w+)\.(\w+)\.metadata\[0\]\.name\}", v)
            if m:
                return self.value(self.resources[(m[1], m[2])]["metadata"][0]["name"])
            return v
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, dict):
            return {k: self.value(x) for k, x in v.items()}
        return v

    def manifest(self, body):
        """A resource body as the Kubernetes object it stands for (blocks -> objects/lists,
        snake_case -> camelCase, expressions evaluated)."""
        out = {}
        for key, v in body.items():
            if key == "depends_on":
                continue
            blocks = isinstance(v, list) and v and all(isinstance(b, dict) for b in v)
            if key in MAPS and not blocks:
                out[camel(key)] = self.value(v)
            elif blocks and key in REPEATED:
                out[REPEATED[key]] = [self.manifest(b) for b in v]
            elif blocks:
                out[camel(key)] = self.manifest(v[0])
            else:
                out[camel(key)] = self.value(v)
        return out


def comparable(obj):
    """The fields both sides describe (no apiVersion, kind or status)."""
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}


def diff(base, terraform, path=""):
    """Where two objects differ, one line per field."""
    if isinstance(base, dict) and isinstance(terraform, dict):
        return [line for k in sorted({*base, *terraform}, key=str)
                for line in diff(base.get(k, MISSING), terraform.get(k, MISSING), f"{path}.{k}")]
    if isinstance(base, list) and isinstance(terraform, list) and len(base) == len(terraform):
        return [line for i, (b, t) in enumerate(zip(base, terraform))
                for line in diff(b, t, f"{path}[{i}]")]
    if base == terraform:
        return []
    return [f"{path.lstrip('.')}: deploy/base has {base!r}, terraform has {terraform!r}"]


MISSING = "(absent)"


def cmd_terraform(directory, crd_path, base_path):
    fail = Failures()
    tf = Terraform(directory)
    print(f"  parsed {', '.join(tf.files)} ({len(tf.resources)} resources)")

    providers = {}
    for parsed in tf.files.values():
        for block in parsed.get("terraform", []):
            for req in block.get("required_providers", []):
                providers.update(req)
    kube = providers.get("kubernetes", {})
    fail.check(
        kube.get("source") == "hashicorp/kubernetes" and kube.get("version") == "~> 2.36",
        f"required_providers.kubernetes is {kube}, not hashicorp/kubernetes ~> 2.36",
    )

    crd_manifests = [b for (t, _), b in tf.resources.items() if t == "kubernetes_manifest"]
    expected = '${yamldecode(file("${path.module}/../base/crd.yaml"))}'
    if fail.check(
        any(b.get("manifest") == expected for b in crd_manifests),
        f"no kubernetes_manifest with manifest = {expected[2:-1]}",
    ):
        target = (pathlib.Path(directory) / "../base/crd.yaml").resolve()
        if fail.check(target == pathlib.Path(crd_path).resolve(),
                      f"the kubernetes_manifest reads {target}, not {crd_path}"):
            print("  ok   the CRD is deploy/base/crd.yaml through kubernetes_manifest")

    # Every object of deploy/base but the CRD has its Terraform twin, field for field.
    base = {(o["kind"], o["metadata"]["name"]): o for o in docs(base_path)}
    twins = {}
    for (rtype, name), body in tf.resources.items():
        if rtype in KINDS:
            obj = tf.manifest(body)
            twins[(KINDS[rtype], obj["metadata"]["name"])] = (f"{rtype}.{name}", obj)
    for key, obj in base.items():
        if key[0] == "CustomResourceDefinition":
            continue
        if not fail.check(key in twins, f"{key[0]} {key[1]} of deploy/base has no Terraform resource"):
            continue
        address, twin = twins[key]
        differences = diff(comparable(obj), twin)
        if fail.check(
            not differences,
            f"{address} differs from deploy/base's {key[0]} {key[1]}:\n      "
            + "\n      ".join(differences),
        ):
            print(f"  ok   {address} = deploy/base's {key[0]} {key[1]}")
    for key, (address, _) in twins.items():
        fail.check(key in base, f"{address} ({key[0]} {key[1]}) is not in deploy/base")
    for kind in ("Deployment", "ClusterRole"):
        fail.check(any(k == kind for k, _ in twins), f"no {kind} in the Terraform")
    fail.exit()


if __name__ == "__main__":
    commands = {"builtins": cmd_builtins, "crs": cmd_crs, "settings": cmd_settings,
                "terraform": cmd_terraform}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
