"""Loop tracing for `python -m pyloop.threads --trace`: core/trace.hpp records what a loop
does (slow callbacks, waits in the poll, turns of I/O callbacks, counters, name lookups);
this module starts it on every new loop when PYLOOP_TRACE is set (seconds: the shortest
callback recorded), records child processes from the Python side, and turns the records
into Chrome Trace Event Format events."""

import asyncio
import os
import time
import warnings
from asyncio import format_helpers

from . import _core

ENV = "PYLOOP_TRACE"
SINKS = []  # (loop number, records) of every loop traced in this process


def threshold_from_environment():
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    try:
        value = float(text)
        if not (0 <= value < float("inf")):
            raise ValueError
        return value
    except ValueError:
        warnings.warn(f"{ENV}={text!r} is not a number of seconds: no trace", RuntimeWarning, stacklevel=3)
        return None


def start(loop, threshold):
    records = []
    SINKS.append((len(SINKS) + 1, records))
    _core.trace_start(loop, records, threshold)


def name_of(what):
    """A slow callback's name on the trace (core/trace.cpp calls it as it returns): a task
    step is "<task name>: <coroutine>()", a callback "<function>()"."""
    if what is None:
        return "I/O callback"
    callback = what._callback if isinstance(what, (asyncio.Handle, _core.Handle)) else what
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        qualname = getattr(coro, "__qualname__", None) or type(coro).__name__
        return f"{owner.get_name()}: {qualname}()"
    try:
        return format_helpers._format_callback(callback, (), {})
    except Exception:  # (a private helper: its signature may change)
        return f"{getattr(callback, '__qualname__', type(callback).__name__)}()"


def process_started():
    return time.monotonic()


def process_exited(loop, started, pid, args, returncode):
    """A child process ran from `started` until now (transport._process_exited)."""
    if started is not None:
        _core.trace_add(loop, ("process", started, time.monotonic(), 0, (pid, repr(args), returncode)))


def chrome_events(t0):
    """Every traced loop's records as trace events (without pid: the tool adds it), with
    times in microseconds from t0 (time.monotonic())."""
    def us(t):
        return round((t - t0) * 1e6, 3)

    events = []
    for number, records in SINKS:
        prefix = f"loop {number}: " if len(SINKS) > 1 else ""
        for i, (kind, a, b, tid, what) in enumerate(list(records)):
            if kind == "callback":
                events.append({"name": what, "cat": "callback", "ph": "X", "ts": us(a), "dur": round(us(b) - us(a), 3),
                               "tid": tid, "args": {"ms": round((b - a) * 1e3, 3)}})
            elif kind == "idle":
                events.append({"name": "idle (waiting in the poll)", "cat": "idle", "ph": "X", "ts": us(a),
                               "dur": round(us(b) - us(a), 3), "tid": tid})
            elif kind == "io":
                events.append({"name": "I/O callbacks", "cat": "io", "ph": "X", "ts": us(a), "dur": round(us(b) - us(a), 3),
                               "tid": tid})
            elif kind == "counters":
                ready, handles, read, written = what
                for name, value in (("ready callbacks", ready), ("open handles", handles),
                                    ("bytes read", read), ("bytes written", written)):
                    events.append({"name": prefix + name, "cat": "counter", "ph": "C", "ts": us(a), "tid": tid,
                                   "args": {name: value}})
            elif kind in ("lookup", "process"):
                if kind == "lookup":
                    (host, port), outcome, pool_tid, p0, p1 = what
                    name = f"lookup {host}:{port}"
                    args = {"host": host, "port": port, "answer": outcome}
                    if pool_tid:  # the call itself, on the pool thread that made it
                        events.append({"name": prefix + name, "cat": "lookup", "ph": "X", "ts": us(p0),
                                       "dur": round(us(p1) - us(p0), 3), "tid": pool_tid, "args": args})
                else:
                    pid, argv, code = what
                    name = f"process {pid}"
                    args = {"pid": pid, "args": argv, "returncode": code}
                # Lookups and processes overlap: async slices (a track per name; tid unused).
                common = {"name": prefix + name, "cat": kind, "id": f"{kind}-{number}-{i}", "tid": tid}
                events.append({**common, "ph": "b", "ts": us(a), "args": args})
                events.append({**common, "ph": "e", "ts": us(b)})
    return events
