"""Runs chaos and chaosflow on the same experiments, interleaved, and reports medians.

Wall time: the whole command, spawned with posix_spawn. Peak RSS: the runner process's own
maximum resident set (GNU time's %M, from wait4), in separate runs so that measuring does not
slow the timed ones. Both tools are measured the same way.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

DEVNULL = os.open(os.devnull, os.O_WRONLY)


def wall(argv):
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ,
                         file_actions=[(os.POSIX_SPAWN_DUP2, DEVNULL, 1),
                                       (os.POSIX_SPAWN_DUP2, DEVNULL, 2)])
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed")
    return elapsed


def peak_rss_kib(argv):
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name] + argv,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        return int(out.read().strip().splitlines()[-1])


def many_activities(path, count):
    experiment = {
        "title": f"{count} process activities",
        "description": "Benchmark: a method of many short process actions",
        "steady-state-hypothesis": {
            "title": "holds",
            "probes": [{"type": "probe", "name": "ok", "tolerance": 0,
                        "provider": {"type": "process", "path": "true"}}],
        },
        "method": [
            {"type": "action", "name": f"action-{i}",
             "provider": {"type": "process", "path": "echo", "arguments": [str(i)]}}
            for i in range(count)
        ],
        "rollbacks": [],
    }
    with open(path, "w") as f:
        json.dump(experiment, f)


def main():
    chaosflow, chaos = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    runs = int(sys.argv[3])
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = tempfile.mkdtemp(prefix="chaosflow-bench-")
    os.chdir(work)
    big = os.path.join(work, "200-activities.json")
    many_activities(big, 200)
    experiments = [
        ("hello-world", os.path.join(repo, "experiments", "hello-world.yaml"), runs),
        ("200 activities", big, max(3, runs // 3)),
    ]
    tools = [
        ("chaos", [chaos, "--no-version-check", "--settings", "/nonexistent", "run"]),
        ("chaosflow", [chaosflow, "--settings", "/nonexistent", "run"]),
    ]
    print(f"chaosflow: {chaosflow}\nchaos:     {chaos}\n")
    print(f"{'experiment':<16} {'tool':<10} {'runs':>4} {'median wall':>12} {'median peak RSS':>16}")
    summary = []
    for name, path, n in experiments:
        walls = {tool: [] for tool, _ in tools}
        rss = {tool: [] for tool, _ in tools}
        for _, argv in tools:  # warm the page cache
            wall(argv + [path])
        for i in range(n):
            order = tools if i % 2 == 0 else list(reversed(tools))
            for tool, argv in order:
                walls[tool].append(wall(argv + [path]))
            for tool, argv in order:
                rss[tool].append(peak_rss_kib(argv + [path]))
        medians = {}
        for tool, _ in tools:
            medians[tool] = (statistics.median(walls[tool]), statistics.median(rss[tool]))
            print(f"{name:<16} {tool:<10} {n:>4} {medians[tool][0] * 1000:>9.1f} ms "
                  f"{medians[tool][1] / 1024:>12.1f} MiB")
        summary.append((name, medians["chaos"][0] / medians["chaosflow"][0],
                        medians["chaos"][1] / medians["chaosflow"][1]))
    print()
    for name, speed, memory in summary:
        print(f"{name}: chaosflow is {speed:.1f}x faster and uses {memory:.1f}x less memory")


if __name__ == "__main__":
    main()
