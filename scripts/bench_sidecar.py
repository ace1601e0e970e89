#!/usr/bin/env python3
"""Sidecar benchmark (issue 4): tail a JSON Lines events file and post it to HTTP in batches.

chaosflow sidecar and syslog-ng (file() source -> http() destination, the log shipper of the
same job that installs here) read the same 1,000,000-event file and post to the same local
receiver, in alternating rounds. Reported: events/s (median), peak RSS (median), the ratio,
and the sidecar's idle RSS.

The receiver is nginx (`return 204`), the fastest one that installs here, so that the figures
measure the shippers rather than the receiver (a Python receiver takes a whole core at these
rates). It logs each request's Content-Length; the bytes add up to the file's size once every
event has arrived.

    bench_sidecar.py CHAOSFLOW_BINARY [EVENTS] [ROUNDS]
"""

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


class Nginx:
    """nginx on 127.0.0.1 answering 204 to everything, logging each request's Content-Length."""

    def __init__(self, work):
        self.prefix = os.path.join(work, "nginx")
        os.makedirs(os.path.join(self.prefix, "logs"), exist_ok=True)
        self.log = os.path.join(self.prefix, "logs", "access.log")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        with open(os.path.join(self.prefix, "nginx.conf"), "w") as f:
            f.write(f"""daemon off;
worker_processes 1;
error_log {self.prefix}/logs/error.log;
pid {self.prefix}/nginx.pid;
events {{ worker_connections 512; }}
http {{
  log_format sizes '$content_length';
  access_log {self.log} sizes;
  client_max_body_size 64m;
  server {{ listen 127.0.0.1:{self.port}; location / {{ return 204; }} }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", os.path.join(self.prefix, "nginx.conf"),
                                      "-p", self.prefix + "/"])
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}/ingest"

    def reset(self):
        open(self.log, "w").close()

    def received_bytes(self):
        with open(self.log) as f:
            return sum(int(line) for line in f if line.strip().isdigit())

    def wait_bytes(self, expected, timeout):
        deadline = time.time() + timeout
        while self.received_bytes() < expected:
            if time.time() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def write_events(path, count):
    pad = "x" * 300
    with open(path, "w") as f:
        for seq in range(count):
            name = "stream-ended" if seq + 1 == count else "activity-completed"
            f.write(json.dumps({
                "id": f"bench:{seq}", "run_id": "bench", "seq": seq,
                "ts": "2026-11-25T08:41:23.123456Z", "name": name, "phase": "method",
                "payload": {"activity": {"name": f"step-{seq}"}, "pad": pad},
                "error": None,
            }, separators=(",", ":")) + "\n")


def peak_rss_kib(pid, stop, out):
    """Samples VmHWM (the kernel's own peak) until `stop`."""
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        out[0] = max(out[0], int(line.split()[1]))
        except OSError:
            return
        time.sleep(0.02)


def run_chaosflow(binary, work, nginx, count, size):
    events = os.path.join(work, "events.jsonl")
    for leftover in ("events.jsonl.checkpoint", "events.jsonl.sidecar"):
        try:
            os.remove(os.path.join(work, leftover))
        except FileNotFoundError:
            pass
    settings = os.path.join(work, "settings.yaml")
    with open(settings, "w") as f:
        f.write(f"sinks:\n  - type: http\n    url: {nginx.url}\n    format: events\n"
                "    batch: {max_events: 1000, max_wait: 0.05}\n")
    nginx.reset()
    started = time.perf_counter()
    proc = subprocess.Popen([binary, "sidecar", "--events", events, "--settings", settings],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rss, stop = [0], threading.Event()
    sampler = threading.Thread(target=peak_rss_kib, args=(proc.pid, stop, rss))
    sampler.start()
    # It exits once the last event is delivered.
    code = proc.wait(300)
    elapsed = time.perf_counter() - started
    stop.set()
    sampler.join()
    assert code == 0, f"chaosflow sidecar exited {code}"
    received = nginx.received_bytes()
    assert received == size, f"chaosflow delivered {received} of {size} bytes"
    return count / elapsed, rss[0]


def run_syslog_ng(work, nginx, count, size):
    events = os.path.join(work, "events.jsonl")
    conf = os.path.join(work, "sng.conf")
    for leftover in ("sng.persist", "sng.ctl", "sng.pid"):
        try:
            os.remove(os.path.join(work, leftover))
        except FileNotFoundError:
            pass
    with open(conf, "w") as f:
        f.write(f"""@version: 3.38
options {{ stats-freq(0); }};
source s_events {{ file("{events}" follow-freq(0.2) flags(no-parse) log-msg-size(65536)); }};
destination d_http {{
  http(url("{nginx.url}") method("POST") body("${{MESSAGE}}")
       body-suffix("\\n") batch-lines(1000) batch-timeout(50) workers(2));
}};
log {{ source(s_events); destination(d_http); }};
""")
    nginx.reset()
    started = time.perf_counter()
    proc = subprocess.Popen(["syslog-ng", "-F", "-f", conf, "-R", os.path.join(work, "sng.persist"),
                             "-p", os.path.join(work, "sng.pid"), "-c", os.path.join(work, "sng.ctl"),
                             "--no-caps"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rss, stop = [0], threading.Event()
    sampler = threading.Thread(target=peak_rss_kib, args=(proc.pid, stop, rss))
    sampler.start()
    finished = nginx.wait_bytes(size, 300)
    elapsed = time.perf_counter() - started
    stop.set()
    sampler.join()
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert finished, f"syslog-ng delivered {nginx.received_bytes()} of {size} bytes"
    return count / elapsed, rss[0]


def idle_rss(binary, work, url):
    events = os.path.join(work, "idle.jsonl")
    settings = os.path.join(work, "idle.yaml")
    with open(settings, "w") as f:
        f.write(f"sinks:\n  - type: http\n    url: {url}\n    format: events\n")
    proc = subprocess.Popen([binary, "sidecar", "--events", events, "--settings", settings],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    with open(f"/proc/{proc.pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    return rss


def main():
    binary = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    for tool in ("syslog-ng", "nginx"):
        if not shutil.which(tool):
            sys.exit(f"bench_sidecar: {tool} is not installed (scripts/bench-sidecar installs it)")
    with tempfile.TemporaryDirectory() as work:
        nginx = Nginx(work)
        try:
            write_events(os.path.join(work, "events.jsonl"), count)
            size = os.path.getsize(os.path.join(work, "events.jsonl"))
            results = {"chaosflow sidecar": [], "syslog-ng 3.38": []}
            for _ in range(rounds):
                results["chaosflow sidecar"].append(run_chaosflow(binary, work, nginx, count, size))
                results["syslog-ng 3.38"].append(run_syslog_ng(work, nginx, count, size))
            idle = idle_rss(binary, work, nginx.url)
        finally:
            nginx.stop()
    print(f"tail {count} events ({size / count:.0f} bytes each) -> batched HTTP (1000 per request),"
          f" median of {rounds} rounds")
    print(f"{'shipper':<20} {'events/s':>10} {'peak RSS':>10}")
    medians = {}
    for name, rows in results.items():
        rate = statistics.median(r for r, _ in rows)
        rss = statistics.median(m for _, m in rows)
        medians[name] = (rate, rss)
        print(f"{name:<20} {rate:>10.0f} {rss / 1024:>7.1f} MiB")
    (a_rate, a_rss), (b_rate, b_rss) = medians["chaosflow sidecar"], medians["syslog-ng 3.38"]
    print(f"\nchaosflow vs syslog-ng: {a_rate / b_rate:.2f}x the throughput, "
          f"{b_rss / a_rss:.2f}x less peak memory")
    print(f"chaosflow sidecar idle RSS: {idle / 1024:.1f} MiB (target < 10 MiB); "
          f"targets: >= 200000 events/s, bounded under the burst")


if __name__ == "__main__":
    main()
