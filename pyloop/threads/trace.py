"""The runs of `python -m pyloop.threads` as a Chrome Trace Event Format trace (its JSON
object form), which ui.perfetto.dev and chrome://tracing open as it is.

Each run is a process (named by the script and the loop); each thread a track named as
the table names it, with a slice for its life (what started it, its executor, its CPU
time in the slice's arguments), and a counter of its CPU use (percent of one CPU, over
each sampling interval). What a pyloop loop recorded of itself (run["loop_events"]:
its slow callbacks, its waits, its counters, name lookups and child processes) goes on
the loop thread's track and on tracks of their own. Times are microseconds from the
script's start.
"""

import json

ON_CPU_MIN = 0.05  # a sampling interval with less CPU than this is off the CPU


def thread_label(t):
    """The name of a thread's track: its name, and what it is when that is not plain."""
    if t["kind"] == "main":
        return "MainThread"
    if t["kind"] == "python":
        return f"{t['name']} [Python thread{'; ' + t['executor'] if t.get('executor') else ''}]"
    comm = t["comm"] or "?"
    if comm.startswith("libuv-worker"):
        return f"{comm} [libuv's pool]"
    if comm == "pyloop-stall":
        return f"{comm} [pyloop's stall watch]"
    return f"{comm} [OS thread]"


def us(seconds):
    """Seconds as the trace's microseconds (a slice's end is us(end), never us(start) +
    us(duration): rounded apart, a slice could outlast the one it is in)."""
    return round(seconds * 1e6, 3)


def on_cpu_stretches(busy):
    """Consecutive sampling intervals with CPU use, merged: [(start, end, share)]."""
    out = []
    for a, b, frac in busy:
        if frac < ON_CPU_MIN:
            continue
        if out and abs(out[-1][1] - a) < 1e-9:
            s, _, used = out[-1]
            out[-1] = (s, b, used + frac * (b - a))
        else:
            out.append((a, b, frac * (b - a)))
    return [(a, b, used / (b - a) if b > a else 0.0) for a, b, used in out]


def run_events(run, pid, sort_index):
    """The trace events of one run (a process of the trace)."""
    ev = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
           "args": {"name": f"{run.get('script', 'script')} on {run['loop']} (Python {run['python']})"}},
          {"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": sort_index}}]
    # A thread's life covers what the loop recorded on its track: sampled every
    # interval, a pool thread made for a lookup is first seen after that lookup began.
    extent = {}
    for e in run.get("loop_events", ()):
        if e.get("ph") == "X":
            a, b = e["ts"], e["ts"] + e["dur"]
            lo, hi = extent.get(e["tid"], (a, b))
            extent[e["tid"]] = (min(lo, a), max(hi, b))
    for i, t in enumerate(run["threads"]):
        tid = t["tid"]
        ev.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": thread_label(t)}})
        ev.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": i}})
        start, end = t["start"], max(t["end"], t["start"])
        args = {"kind": t["kind"], "tid": tid, "cpu_seconds": t["cpu"]}
        if t.get("started_from"):
            args["started_from"] = " <- ".join(t["started_from"])
        if t.get("executor"):
            args["executor"] = t["executor"]
        ts, te = us(start), us(end)
        if tid in extent:
            ts, te = min(ts, extent[tid][0]), max(te, extent[tid][1])
        ev.append({"name": thread_label(t), "cat": "thread", "ph": "X", "ts": ts, "dur": round(te - ts, 3),
                   "pid": pid, "tid": tid, "args": args})
        # Its CPU use, as a counter (percent of one CPU) of its own: slices would cross the
        # loop's own slices on the same track, and slices on a track must nest.
        cpu_name = f"CPU %: {thread_label(t)} ({tid})"
        ev.append({"name": cpu_name, "cat": "cpu", "ph": "C", "ts": us(start), "pid": pid, "args": {"cpu": 0}})
        for a, b, share in on_cpu_stretches(t["busy"]):
            a, b = max(a, start), min(b, end)
            if b > a:
                ev.append({"name": cpu_name, "cat": "cpu", "ph": "C", "ts": us(a), "pid": pid,
                           "args": {"cpu": round(100 * share, 1)}})
                ev.append({"name": cpu_name, "cat": "cpu", "ph": "C", "ts": us(b), "pid": pid, "args": {"cpu": 0}})
    for e in run.get("loop_events", ()):
        ev.append({**e, "pid": pid})
    return ev


def trace(data):
    """The whole trace (a dict) of `python -m pyloop.threads` data (script, args, runs)."""
    events = []
    for i, run in enumerate(data["runs"]):
        events += run_events({**run, "script": data.get("script", "script")}, i + 1, i)
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"tool": "python -m pyloop.threads", "script": data.get("script"),
                          "args": data.get("args", []), "loops": [r["loop"] for r in data["runs"]]}}


def write(data, path):
    with open(path, "w") as f:
        json.dump(trace(data), f)
