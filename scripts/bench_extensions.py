#!/usr/bin/env python3
"""Benchmark of the native extensions (issue 6), side by side in one run: the demo's
stop-ec2-by-id experiment run by `chaos` (with the real chaostoolkit-aws) and by `chaosflow`
(native EC2), against the same moto server, interleaved; median wall time and peak RSS of the
runner process. Also the Python bridge's cost per call: an experiment of N calls to a
function of a local module, through chaosflow's bridge and through chaos.

usage: bench_extensions.py CHAOSFLOW [RUNS]
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv/bin"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(argv, env, cwd):
    """Wall time (s) and peak RSS (MiB) of one run, through GNU time."""
    start = time.monotonic()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], env=env, cwd=cwd,
                         capture_output=True, text=True)
    wall = time.monotonic() - start
    rss = int(out.stderr.strip().splitlines()[-1]) / 1024
    return wall, rss, out.returncode


def report(label, results):
    for tool, runs in results.items():
        walls = [w for w, _, _ in runs]
        rsss = [r for _, r, _ in runs]
        codes = sorted({c for _, _, c in runs})
        print(f"  {label:<28} {tool:<10} {statistics.median(walls) * 1000:>9.1f} ms "
              f"{statistics.median(rsss):>7.1f} MiB   exit {codes}")
    chaos, flow = results["chaos"], results["chaosflow"]
    speed = statistics.median(w for w, _, _ in chaos) / statistics.median(w for w, _, _ in flow)
    memory = statistics.median(r for _, r, _ in chaos) / statistics.median(r for _, r, _ in flow)
    print(f"  {label:<28} chaosflow is {speed:.1f}x faster, {memory:.1f}x less memory")


def main():
    chaosflow = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    port = free_port()
    moto = subprocess.Popen([str(VENV / "moto_server"), "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    http_port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "http.server", str(http_port),
                            "--bind", "127.0.0.1"], cwd=tempfile.gettempdir(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", http_port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
                   AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                   AWS_REGION="us-west-2", AWS_EC2_METADATA_DISABLED="true",
                   APPLICATION_ENTRYPOINT_URL=f"http://127.0.0.1:{http_port}/")
        instance = subprocess.run([str(VENV / "python"), "-c", f"""
import boto3
ec2 = boto3.client("ec2", endpoint_url="http://127.0.0.1:{port}", region_name="us-west-2",
                   aws_access_key_id="test", aws_secret_access_key="test")
r = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
print(r["Instances"][0]["InstanceId"])
"""], capture_output=True, text=True, check=True).stdout.strip()
        env["EC2_INSTANCE_ID"] = instance
        experiment = str(REPO / "experiments/stop-ec2-by-id.yaml")
        tools = {
            "chaos": [str(VENV / "chaos"), "--no-version-check", "run", "--dry", "pause"],
            "chaosflow": [chaosflow, "run", "--dry", "pause"],
        }
        results = {tool: [] for tool in tools}
        with tempfile.TemporaryDirectory() as cwd:
            for _ in range(runs):
                for tool, argv in tools.items():
                    results[tool].append(measure([*argv, experiment], env, cwd))
        print(f"\nextensions benchmark ({runs} interleaved runs per tool, medians)")
        report("stop-ec2-by-id (moto)", results)

        # The bridge: 20 and 200 calls of a trivial function of a local module; the
        # difference gives the cost of one call once Python runs and the module is imported.
        bridge_dir = REPO / "tests/bridge"
        benv = dict(env, PYTHONPATH=str(bridge_dir), CHAOSFLOW_PYTHON=str(VENV / "python"))
        walls = {}
        for calls in (20, 200):
            with tempfile.TemporaryDirectory() as cwd:
                exp = Path(cwd) / "bridge.yaml"
                exp.write_text("title: t\ndescription: d\nmethod:\n" + "".join(
                    f"  - type: probe\n    name: p{i}\n    provider:\n      type: python\n"
                    f"      module: chaosflow_bridge_demo\n      func: count\n"
                    for i in range(calls)))
                results = {tool: [] for tool in tools}
                for _ in range(max(3, runs // 2)):
                    for tool, argv in tools.items():
                        results[tool].append(measure([*argv, str(exp)], benv, cwd))
                report(f"{calls} bridged calls", results)
                walls[calls] = {tool: statistics.median(w for w, _, _ in runs_)
                                for tool, runs_ in results.items()}
        for tool in tools:
            per_call = (walls[200][tool] - walls[20][tool]) / 180 * 1000
            print(f"  {'one more bridged call':<28} {tool:<10} {per_call:>9.2f} ms")
    finally:
        moto.terminate()
        web.terminate()


if __name__ == "__main__":
    main()
