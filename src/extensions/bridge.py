"""chaosflow's Python bridge: calls functions of Chaos Toolkit extensions the way chaoslib's
run_python_activity (chaostoolkit-lib 1.44.0) does, for src/extensions/bridge.rs. One bridge
serves a whole run, as one `chaos` process does: modules are imported once and keep their
state from one activity to the next.

Requests, JSON lines on stdin:
    {"id", "main", "activity", "module", "func", "arguments", "configuration", "secrets"}
    (`secrets` is null when the provider declares none: the function then never gets them).
Replies, JSON lines on the original stdout, which nothing else writes to:
    {"log": <levelno>, "message": "..."}  a record of the `chaostoolkit` logger, as it happens;
and for each request exactly one of (with its "id")
    {"result": <output>}                   the function returned;
    {"error": "<Type>: <message>"}         it raised (chaoslib's ActivityFailed text);
    {"import_error": "<Type>: <message>"}  the module cannot be imported;
    {"no_function": true}                  the module has no such attribute.
The end of stdin (chaosflow is done, or gone) ends the bridge at once.

A call with "main" true runs on the main thread, as `chaos` runs the method's activities, the
rollbacks and the configuration's probes (some libraries only work there: signal handlers,
asyncio's default loop), one after the other; the others (background activities, the
hypothesis checked during the method) run on threads of their own, as `chaos` runs those on
its thread pools.
"""

import importlib
import inspect
import json
import logging
import math
import os
import queue
import signal
import sys
import threading
import traceback

# chaosflow cancels a call by killing the bridge; Ctrl-C reaches the whole process group, so
# the bridge dies quietly on it too instead of printing a KeyboardInterrupt traceback.
signal.signal(signal.SIGINT, signal.SIG_DFL)

# The replies keep the original stdout; everything else written to fd 1 (print, C extensions,
# subprocesses) goes to stderr, which chaosflow passes through, so it cannot corrupt them.
replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
os.dup2(2, 1)
sys.stdout = sys.stderr
lock = threading.Lock()  # the function's threads may log while the result is written

# `chaos` imports extensions from its own sys.path, never from the working directory.
if sys.path and sys.path[0] == "":
    del sys.path[0]


def reply(message):
    line = json.dumps(message, allow_nan=False)
    with lock:
        replies.write(line + "\n")
        replies.flush()


class Forward(logging.Handler):
    """Sends the records of the `chaostoolkit` logger (the one extensions log to) to chaosflow,
    which logs them as `chaos` would: console at INFO and above, log file at DEBUG."""

    def emit(self, record):
        try:
            reply({"log": record.levelno, "message": self.format(record)})
        except Exception:
            self.handleError(record)


logger = logging.getLogger("chaostoolkit")
logger.setLevel(logging.DEBUG)
logger.propagate = False
logger.addHandler(Forward())


def failure(x):
    # The text chaoslib puts in ActivityFailed, hence in the journal's `exception`.
    return traceback.format_exception_only(type(x), x)[0].strip()


def encode(o, odd_types):
    """chaostoolkit's journal encoder, then a fallback for what it lacks (`chaos` crashes
    writing such a journal; chaosflow writes the closest JSON and says so)."""
    # An instance of these types means their module is loaded: importing them up front would
    # cost every call ~13 ms.
    dt, dec, uid = (sys.modules.get(m) for m in ("datetime", "decimal", "uuid"))
    if dt and isinstance(o, dt.date):
        return o.isoformat()
    if (dec and isinstance(o, dec.Decimal)) or (uid and isinstance(o, uid.UUID)):
        return str(o)
    odd_types.add(type(o).__name__)
    if dt and isinstance(o, dt.time):
        return o.isoformat()
    if isinstance(o, (bytes, bytearray)):
        return o.decode("utf-8", "replace")
    if isinstance(o, (set, frozenset)):
        try:
            return sorted(o)
        except TypeError:
            return list(o)
    return str(o)


def plain(o, odd_types):
    """The output as json.dump(default=encoder) writes it, as plain JSON values; the types
    JSON lacks are added to `odd_types`."""
    if isinstance(o, dict):
        # json.dump itself turns str/int/float/bool/None keys into strings.
        return {
            k
            if k is None or isinstance(k, (str, int, float))
            else str(plain(k, odd_types)): plain(v, odd_types)
            for k, v in o.items()
        }
    if isinstance(o, (list, tuple)):
        return [plain(v, odd_types) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        odd_types.add("float " + repr(o))  # `chaos` writes NaN/Infinity, which is not JSON
        return None
    if o is None or isinstance(o, (str, int, float)):
        return o
    return plain(encode(o, odd_types), odd_types)


def call(request):
    try:
        module = importlib.import_module(request["module"])
    except Exception as x:
        return {"import_error": failure(x)}
    if not hasattr(module, request["func"]):
        return {"no_function": True}
    func = getattr(module, request["func"])
    try:
        logger.debug(
            "Activity '%s' loaded from '%s'", request["activity"], inspect.getfile(func)
        )
    except TypeError:
        pass
    arguments = dict(request["arguments"])
    try:
        parameters = inspect.signature(func).parameters
        if request["secrets"] is not None and "secrets" in parameters:
            arguments["secrets"] = request["secrets"]
        if "configuration" in parameters:
            arguments["configuration"] = request["configuration"]
        output = func(**arguments)
    except Exception as x:
        logger.debug("Activity failed", exc_info=True)
        return {"error": failure(x)}
    odd_types = set()
    output = plain(output, odd_types)
    if odd_types:
        logger.warning(
            "Activity '%s' returned %s, which chaos cannot write to its journal; "
            "chaosflow writes the closest JSON (text, lists, null)",
            request["activity"],
            ", ".join(sorted(odd_types)),
        )
    return {"result": output}


def serve(request):
    try:
        answer = call(request)
    except BaseException as x:  # SystemExit and the like: the activity fails, the bridge stays
        answer = {"error": failure(x)}
    answer["id"] = request["id"]
    sys.stderr.flush()
    reply(answer)


main_calls = queue.Queue()


def read_requests():
    for line in sys.stdin.buffer:
        request = json.loads(line)
        if request["main"]:
            main_calls.put(request)
        else:
            threading.Thread(target=serve, args=(request,), daemon=True).start()
    # chaosflow is done (or gone). Threads a function left running end here; in `chaos` they
    # end when its process does.
    sys.stderr.flush()
    os._exit(0)


threading.Thread(target=read_requests, daemon=True).start()
while True:
    serve(main_calls.get())
