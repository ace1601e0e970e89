"""hello-world with every sink on against no sink at all, interleaved, medians.

Receivers run on 127.0.0.1: one Python server answers the batched http sink and Slack's Web
API (chat.postMessage, chat.update), rotel takes OTLP over gRPC, the file sink writes to a temp
dir and the exec sink feeds `cat > /dev/null`. Reported: the process's wall time (start to
exit: settings, sinks started, run, drain), the run's own duration from its journal, and the
peak RSS (GNU time's %M).

    python3 scripts/bench_sinks.py CHAOSFLOW ROTEL_AGENT RUNS
"""

import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from bench import peak_rss_kib, wall


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real receivers
    # Headers and body leave in separate writes: without this, Nagle's algorithm holds the
    # body until the client's delayed ACK (40 ms), which no real receiver does.
    disable_nagle_algorithm = True

    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        if self.path.startswith("/api/"):
            ts = f"{time.time():.6f}"
            body = json.dumps({"ok": True, "channel": "C1", "ts": ts,
                               "message": {"ts": ts, "text": "", "type": "message"}}).encode()
            kind = "application/json; charset=utf-8"
        else:
            body, kind = b"", "text/plain"
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    chaosflow, rotel_agent, runs = os.path.abspath(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    hello = os.path.join(repo, "experiments", "hello-world.yaml")
    work = tempfile.mkdtemp(prefix="chaosflow-bench-sinks-")
    os.chdir(work)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    grpc, http_port = free_port(), free_port()
    rotel = subprocess.Popen(
        [rotel_agent, "start", "--exporter", "blackhole",
         "--otlp-grpc-endpoint", f"127.0.0.1:{grpc}",
         "--otlp-http-endpoint", f"127.0.0.1:{http_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", grpc), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)

    with open("all-sinks.yaml", "w") as f:
        f.write(f"""\
notifications:
  - type: http
    url: {base}/notify
sinks:
  - type: file
    path: {work}/events.jsonl
  - type: http
    url: {base}/events
    format: events
  - type: slack
    token: xoxb-bench
    channel: "#chaos"
    api_url: {base}/api
  - type: otlp
    endpoint: http://127.0.0.1:{grpc}
  - type: exec
    command: ["sh", "-c", "cat > /dev/null"]
""")
    variants = [
        ("no sinks", [chaosflow, "--settings", "/nonexistent", "run", hello]),
        ("all sinks", [chaosflow, "--settings", "all-sinks.yaml", "run", hello]),
    ]
    try:
        check = subprocess.run(variants[1][1], capture_output=True, text=True)
        summary = [line for line in check.stderr.splitlines() if "Sink " in line]
        if check.returncode != 0 or len(summary) != 6 or any(
                "0 retried, 0 dropped, 0 failed" not in line for line in summary):
            raise SystemExit(f"the all-sinks run did not deliver everything:\n{check.stderr}")
        print("every sink delivers (one run's summary):")
        for line in summary:
            print("  " + line.split("] ", 1)[-1])
        print()

        walls = {name: [] for name, _ in variants}
        durations = {name: [] for name, _ in variants}
        rss = {name: [] for name, _ in variants}
        for _, argv in variants:  # warm up
            wall(argv)
        for i in range(runs):
            order = variants if i % 2 == 0 else list(reversed(variants))
            for name, argv in order:
                walls[name].append(wall(argv))
                with open("journal.json") as j:
                    durations[name].append(json.load(j)["duration"])
            for name, argv in order:
                rss[name].append(peak_rss_kib(argv))
    finally:
        rotel.kill()
        server.shutdown()

    print(f"{'hello-world':<12} {'runs':>4} {'median wall':>12} {'run duration':>13} {'peak RSS':>10}")
    med = {}
    for name, _ in variants:
        med[name] = (statistics.median(walls[name]), statistics.median(durations[name]),
                     statistics.median(rss[name]))
        print(f"{name:<12} {runs:>4} {med[name][0] * 1000:>9.1f} ms {med[name][1] * 1000:>10.1f} ms "
              f"{med[name][2] / 1024:>6.1f} MiB")
    slower = (med["all sinks"][0] / med["no sinks"][0] - 1) * 100
    run_slower = (med["all sinks"][1] / med["no sinks"][1] - 1) * 100
    print(f"\nall sinks vs none: wall {slower:+.1f}%, the run itself {run_slower:+.1f}% "
          f"(target: < 5% slower)")


if __name__ == "__main__":
    main()
