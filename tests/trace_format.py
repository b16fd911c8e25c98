"""A checker of Chrome's Trace Event Format (the JSON object form), written from its
specification ("Trace Event Format", Google, the document chrome://tracing and Perfetto's
JSON importer follow), for the traces `python -m pyloop.threads --trace` writes. The
Perfetto trace processor from PyPI fetches a binary of its own at run time, which this
machine cannot; this checks what a consumer relies on instead:

- the top level is an object with a "traceEvents" list (and optionally displayTimeUnit
  "ms" or "ns", and otherData, an object);
- every event is an object with a known phase ("ph") and the fields that phase needs,
  of the right types: name (a string), pid and tid (integers), ts (a number, in
  microseconds), dur for complete events ("X", not negative), args an object where
  there are args; counters ("C") carry numbers only; instant events ("i"/"I") a scope
  of "g", "p" or "t"; metadata ("M") one of the known names with its argument;
- begin/end pairs ("B"/"E") match per thread, and complete events on one thread nest
  (a slice that starts inside another ends inside it): both are drawn as a stack;
  async slices ("b"/"e") carry a category and an id, and each begin has its end.

check(trace) returns the list of problems (empty when it is well formed).
"""

import numbers

PHASES = {"B", "E", "X", "i", "I", "C", "M", "b", "e", "n", "s", "t", "f", "P", "O", "N", "D"}
METADATA = {"process_name": "name", "process_labels": "labels", "process_sort_index": "sort_index",
            "thread_name": "name", "thread_sort_index": "sort_index"}


def _num(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check(trace):
    problems = []
    if not isinstance(trace, dict) or not isinstance(trace.get("traceEvents"), list):
        return ["the top level must be an object with a traceEvents list"]
    if trace.get("displayTimeUnit", "ms") not in ("ms", "ns"):
        problems.append(f"displayTimeUnit {trace['displayTimeUnit']!r} is neither 'ms' nor 'ns'")
    if "otherData" in trace and not isinstance(trace["otherData"], dict):
        problems.append("otherData must be an object")
    slices, stacks, async_open = {}, {}, {}
    for i, e in enumerate(trace["traceEvents"]):
        where = f"event {i} ({e.get('name') if isinstance(e, dict) else e!r})"
        if not isinstance(e, dict):
            problems.append(f"{where}: not an object")
            continue
        ph = e.get("ph")
        if ph not in PHASES:
            problems.append(f"{where}: unknown phase {ph!r}")
            continue
        if not isinstance(e.get("name"), str) and ph != "E":
            problems.append(f"{where}: name must be a string")
        if not _int(e.get("pid")) or ("tid" in e and not _int(e["tid"])):
            problems.append(f"{where}: pid and tid must be integers")
        if "args" in e and not isinstance(e["args"], dict):
            problems.append(f"{where}: args must be an object")
        if ph == "M":
            key = METADATA.get(e.get("name"))
            if key is None or key not in e.get("args", {}):
                problems.append(f"{where}: metadata must be one of {sorted(METADATA)} with its argument")
            elif key == "sort_index" and not _int(e["args"][key]):
                problems.append(f"{where}: sort_index must be an integer")
            elif key == "name" and not isinstance(e["args"][key], str):
                problems.append(f"{where}: a name must be a string")
            continue
        if not _num(e.get("ts")) or e["ts"] < 0:
            problems.append(f"{where}: ts must be a number of microseconds, not negative")
            continue
        if ph == "X":
            if not _num(e.get("dur")) or e["dur"] < 0:
                problems.append(f"{where}: a complete event needs a duration, not negative")
                continue
            # (compared in whole nanoseconds, as a consumer converts them: a slice's end and
            # the next one's start, both rounded microseconds, may differ by float noise)
            start = round(e["ts"] * 1000)
            slices.setdefault((e["pid"], e.get("tid")), []).append((start, start + round(e["dur"] * 1000), where))
        elif ph == "C":
            if not e.get("args") or not all(_num(v) for v in e["args"].values()):
                problems.append(f"{where}: a counter's args must be numbers")
        elif ph in ("i", "I"):
            if e.get("s", "t") not in ("g", "p", "t"):
                problems.append(f"{where}: an instant's scope must be g, p or t")
        elif ph in ("b", "e"):
            if "id" not in e or not isinstance(e.get("cat"), str):
                problems.append(f"{where}: an async event needs an id and a category")
            else:
                key = (e["pid"], e["cat"], str(e["id"]))
                if ph == "b":
                    async_open[key] = async_open.get(key, 0) + 1
                elif not async_open.get(key):
                    problems.append(f"{where}: an async end without its begin")
                else:
                    async_open[key] -= 1
        elif ph == "B":
            stacks.setdefault((e["pid"], e.get("tid")), []).append(where)
        elif ph == "E":
            if not stacks.get((e["pid"], e.get("tid"))):
                problems.append(f"{where}: an end without a begin on its thread")
            else:
                stacks[(e["pid"], e.get("tid"))].pop()
    for key, n in async_open.items():
        if n:
            problems.append(f"async event {key}: begun and never ended")
    for key, open_ in stacks.items():
        for where in open_:
            problems.append(f"{where}: a begin without an end on its thread")
    for key, items in slices.items():
        items.sort(key=lambda s: (s[0], -s[1]))
        stack = []
        for start, end, where in items:
            while stack and stack[-1][1] <= start:
                stack.pop()
            if stack and end > stack[-1][1]:
                problems.append(f"{where}: starts inside {stack[-1][2]} and ends after it (slices must nest)")
            stack.append((start, end, where))
    return problems
