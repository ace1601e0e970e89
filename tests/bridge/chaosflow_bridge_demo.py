"""Functions for chaosflow's Python bridge tests (tests/bridge.rs).

The same experiments run through the real `chaos` and through `chaosflow`, so each function
exercises one thing the bridge must do exactly as chaoslib does: return values of each JSON
type and of types JSON lacks, receive `configuration` and `secrets` only when chaoslib would
pass them, print, log through the `chaostoolkit` logger, and raise.
"""

import datetime
import decimal
import logging
import os
import sys
import threading
import time
import uuid

logger = logging.getLogger("chaostoolkit")


def service(name="api"):
    return {"name": name, "healthy": True, "replicas": [1, 2, 3], "ratio": 0.25}


def replicas():
    return [3, 1, 2]


def greet(who):
    return f"hello {who}"


def count(extra=0):
    return 3 + extra


def nothing():
    return None


def is_positive(value):
    # A probe tolerance: chaos passes the checked probe's output as `value`.
    return value > 0


def read_configuration(key, configuration):
    return {"key": key, "value": configuration.get(key), "keys": sorted(configuration)}


def read_secrets(secrets):
    # Never the values themselves: chaosflow masks secret values in what it writes.
    return {"names": sorted(secrets), "token_length": len(secrets.get("token", ""))}


def what_was_passed(configuration=None, secrets=None):
    return {
        "configuration": configuration is not None,
        "secrets": None if secrets is None else sorted(secrets),
    }


def noisy():
    print("a line on stdout from the extension")
    print("a line on stderr from the extension", file=sys.stderr)
    logger.info("an info record from the extension")
    logger.warning("a warning record from the extension")
    logger.debug("a debug record from the extension")
    return "said things"


def fail(message="boom"):
    raise ValueError(message)


class QuotaExceeded(Exception):
    pass


def fail_with_own_exception():
    raise QuotaExceeded("too many pods: 12 > 10")


def fail_with_many_lines():
    raise RuntimeError("first line\nsecond line")


def moments():
    return {
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=datetime.timezone.utc),
        "naive": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "day": datetime.date(2024, 1, 2),
        "price": decimal.Decimal("1.10"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "pair": (1, "two"),
        1: "an int key",
        2.5: "a float key",
        False: "a bool key",
        None: "a None key",
    }


def odd_values():
    # Types chaos's journal encoder does not know: `chaos` crashes when it writes the journal.
    return {"bytes": b"caf\xc3\xa9", "set": {3, 1, 2}, "nan": float("nan")}


def needs_argument(required):
    return required


def environment(name):
    return os.environ.get(name)


def sleeper(pid_file, seconds):
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return "woke up"


# State kept in the module from one activity to the next, and activities that meet while they
# run: both need the activities of a run to share one Python, as they do in `chaos`.
calls = 0
gate = threading.Event()


def counter():
    global calls
    calls += 1
    return calls


def wait_for_gate(seconds):
    # A background activity: True once a later activity has opened the gate.
    return gate.wait(seconds)


def open_gate():
    gate.set()
    return "opened"


def on_main_thread():
    # `chaos` runs the method's activities on its main thread.
    return threading.current_thread() is threading.main_thread()


def leave_a_thread(pid_file, seconds):
    # A function that returns while a (non-daemon) thread it started goes on: `chaos` waits
    # for such a thread before it exits; chaosflow's bridge ends with the run.
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    threading.Thread(target=time.sleep, args=(seconds,)).start()
    return os.getpid()
