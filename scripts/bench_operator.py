#!/usr/bin/env python3
"""Operator benchmark (issue 5): reconcile N ChaosToolkitExperiments against the loopback fake
API server (tests/fake-apiserver), with the release binary.

Each round, on a fresh server holding the CRD and N experiments:
  1. start:    the operator starts; time until every experiment has its runner pod and a status
               (phase Pending);
  2. verdicts: the benchmark plays the kubelet and ends all N pods at once with a real runner
               outcome; time until every status shows the verdict (and its Events are sent);
  3. restart:  the operator is stopped (SIGTERM, timed) and started again over the N finished
               experiments; time until it has looked at them all, and how many writes that took
               (the answer should be none).
API calls are counted by the server; the benchmark's own requests (polls, pod status patches)
are subtracted. Peak RSS is the operator's VmHWM. Medians over the rounds.

usage: bench_operator.py CHAOSFLOW FAKE_APISERVER [N] [ROUNDS]
"""

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POLL = 0.25


def main():
    chaosflow, fake = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    outcome = runner_outcome(chaosflow)
    results = [one_round(chaosflow, fake, count, outcome, r) for r in range(rounds)]
    print()
    print(f"operator benchmark: {count} ChaosToolkitExperiments, {rounds} rounds, medians")
    rows = [
        ("start: all pods created, status Pending", "start_s", "s"),
        ("  experiments per second", "start_rate", "/s"),
        ("verdicts: all statuses final after the pods end", "verdict_s", "s"),
        ("graceful stop (SIGTERM to exit)", "stop_s", "s"),
        ("restart over the finished ones: all looked at", "restart_s", "s"),
        ("API calls per experiment, start + verdicts", "calls_per_exp", ""),
        ("  writes per experiment", "writes_per_exp", ""),
        ("API writes during the restart", "restart_writes", ""),
        ("operator peak RSS", "rss_mib", " MiB"),
    ]
    for label, key, unit in rows:
        values = [r[key] for r in results]
        print(f"  {label:<48} {statistics.median(values):>9.2f}{unit}   "
              f"(rounds: {', '.join(f'{v:.2f}' for v in values)})")
    verbs = results[len(results) // 2]["verbs"]
    print("  calls by verb (median round): "
          + ", ".join(f"{v} {n / count:.2f}" for v, n in sorted(verbs.items())))


def runner_outcome(chaosflow):
    """What a real `chaosflow run --termination-log` writes for hello-world."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([chaosflow, "--no-log-file", "--settings", "/nonexistent",
                        "run", "--termination-log", "outcome.json",
                        str(REPO / "experiments/hello-world.yaml")],
                       cwd=tmp, check=False, capture_output=True)
        return (Path(tmp) / "outcome.json").read_text()


class Api:
    """A keep-alive client for the fake server that counts its own requests."""

    def __init__(self, url):
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.requests = 0

    def call(self, method, path, body=None, content_type="application/json"):
        self.requests += 1
        headers = {"Content-Type": content_type} if body is not None else {}
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data)

    def experiments(self):
        return self.call("GET", "/apis/chaostoolkit.org/v1/namespaces/chaostoolkit-crd/chaosexperiments")["items"]

    def stats(self):
        stats = self.call("GET", "/fake/stats")
        self.requests -= 1  # /fake/stats may or may not count itself; keep the arithmetic honest
        return stats


def wait(api, done, what, timeout=600):
    start = time.monotonic()
    while True:
        items = api.experiments()
        if all(done(i) for i in items) and items:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            ready = sum(1 for i in items if done(i))
            raise SystemExit(f"timed out waiting for {what}: {ready}/{len(items)}")
        time.sleep(POLL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_operator(chaosflow, kubeconfig, log, port):
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    env.pop("POD_NAME", None)
    return subprocess.Popen(
        [chaosflow, "--log-format", "json", "operator", "--image", "chaosflow:bench",
         "--listen", f"127.0.0.1:{port}"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)


def reconciles(port):
    """The operator's own count of reconciles (0 while it is not up yet)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("chaosflow_operator_reconciles_total "):
            return int(line.split()[1])
    return 0


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stop(process):
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    return time.monotonic() - start


def one_round(chaosflow, fake, count, outcome, number):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "chaostoolkit-crd"}}]
        objects += [{
            "apiVersion": "chaostoolkit.org/v1", "kind": "ChaosToolkitExperiment",
            "metadata": {"name": f"exp-{i:04}", "namespace": "chaostoolkit-crd"},
            "spec": {"namespace": "chaostoolkit-run", "pod": {"settings": {"enabled": True}}},
        } for i in range(count)]
        # As `kubectl apply` leaves them: a copy of the applied object in an annotation.
        for o in objects[1:]:
            o["metadata"]["annotations"] = {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(o, separators=(",", ":"))}
        # One JSON List: a YAML stream of this many documents exceeds the YAML parser's budget.
        (tmp / "objects.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        kubeconfig = tmp / "kubeconfig"
        server = subprocess.Popen(
            [fake, "--kubeconfig", str(kubeconfig), "--apply",
             str(REPO / "deploy/base/crd.yaml"), str(tmp / "objects.json")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            url = server.stdout.readline().strip()
            api = Api(url)
            base = api.stats()["total"]
            log = open(tmp / "operator.log", "w")
            operator = start_operator(chaosflow, kubeconfig, log, free_port())

            pending = lambda i: (i.get("status") or {}).get("phase") == "Pending"
            start_s = wait(api, pending, "pods and Pending statuses")

            pods = api.call("GET", "/api/v1/namespaces/chaostoolkit-run/pods")["items"]
            assert len(pods) == count, f"{len(pods)} pods for {count} experiments"
            ended = time.monotonic()
            for pod in pods:
                name = pod["metadata"]["name"]
                api.call("PATCH", f"/api/v1/namespaces/chaostoolkit-run/pods/{name}/status", {
                    "status": {"phase": "Succeeded", "containerStatuses": [{
                        "name": "chaostoolkit", "image": "chaosflow:bench", "imageID": "",
                        "ready": False, "restartCount": 0, "state": {"terminated": {
                            "exitCode": 0, "message": outcome, "reason": "Completed",
                            "startedAt": "2026-11-25T10:00:00Z",
                            "finishedAt": "2026-11-25T10:00:02Z"}}}]}},
                    content_type="application/merge-patch+json")
            verdict = lambda i: (i.get("status") or {}).get("verdict") == "completed"
            wait(api, verdict, "verdicts")
            verdict_s = time.monotonic() - ended
            time.sleep(1.0)  # let the last events go out before counting
            stats = api.stats()
            calls = stats["total"] - base - api.requests
            verbs = dict(stats["by_verb"])
            mine = {"list": 0, "patch": count}
            for verb, n in mine.items():
                verbs[verb] = verbs.get(verb, 0) - n
            # Our polls are lists of chaosexperiments; everything else of ours is a pod patch.
            verbs["list"] -= api.requests - count
            verbs = {v: n for v, n in verbs.items() if n > 0}
            writes = sum(n for v, n in verbs.items() if v in ("create", "update", "patch", "delete"))
            rss = peak_rss_mib(operator.pid)
            stop_s = stop(operator)

            # Restart over N finished experiments: it lists and looks, and writes nothing.
            before = api.stats()
            port = free_port()
            restart_start = time.monotonic()
            operator = start_operator(chaosflow, kubeconfig, log, port)
            looked = 0
            while time.monotonic() - restart_start < 120:
                looked = reconciles(port)
                if looked >= count:
                    break
                time.sleep(0.02)
            restart_s = time.monotonic() - restart_start
            time.sleep(1.0)
            after = api.stats()
            restart_writes = sum(
                after["by_verb"].get(v, 0) - before["by_verb"].get(v, 0)
                for v in ("create", "update", "patch", "delete"))
            stop(operator)
            log.close()
            result = {
                "start_s": start_s, "start_rate": count / start_s, "verdict_s": verdict_s,
                "stop_s": stop_s, "restart_s": restart_s if looked >= count else float("nan"),
                "calls_per_exp": calls / count, "writes_per_exp": writes / count,
                "restart_writes": restart_writes, "rss_mib": rss, "verbs": verbs,
            }
            print(f"round {number + 1}: start {start_s:.2f}s, verdicts {verdict_s:.2f}s, "
                  f"restart {restart_s:.2f}s ({looked} reconciles, {restart_writes} writes), "
                  f"{calls / count:.2f} calls/experiment, peak RSS {rss:.1f} MiB", flush=True)
            return result
        finally:
            server.stdin.close()
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
