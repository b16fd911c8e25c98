"""A trace of `python -m pyloop.threads --trace` drawn as ui.perfetto.dev lays it out: a
lane per thread with its slices (the thread's life, and on pyloop's loop thread its slow
callbacks and task steps, its waits in the poll, its turns of I/O callbacks; on the pool
threads the name lookups they made), lanes for the loop's lookups and child processes
from start to end, and the ready-queue counter.

    python -m pyloop.threads.draw_trace trace.json -o trace.png [--from MS] [--to MS]

--from and --to (milliseconds from the script's start) draw a part of it.
"""

import argparse
import json
import sys

# What each kind of slice is, in the legend, and its colour.
_CATEGORIES = {
    "callback": ("callback or task step (100 µs or more)", "#ff7f0e"),
    "idle": ("waiting in the poll (idle)", "#9ecae1"),
    "io": ("I/O callbacks", "#2ca02c"),
    "lookup": ("name lookup", "#9467bd"),
    "process": ("child process", "#8c564b"),
}
_THREAD_COLOR = "#c7c7c7"


def lanes_of(trace):
    """The trace's lanes, in its own order: [(title, kind, slices)], where kind is
    "thread" (slices: (start, end, name, category, depth)), "async" (the same, each
    on its own row) or "counter" (slices: [(time, value)]). Times in ms."""
    events = trace["traceEvents"]
    processes = {e["pid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e["name"] == "process_name"}
    threads, order = {}, {}
    for e in events:
        if e.get("ph") == "M" and e["name"] == "thread_name":
            threads[(e["pid"], e["tid"])] = e["args"]["name"]
        elif e.get("ph") == "M" and e["name"] == "thread_sort_index":
            order[(e["pid"], e["tid"])] = e["args"]["sort_index"]
    prefix = (lambda pid: f"{processes.get(pid, pid)}: ") if len(processes) > 1 else (lambda pid: "")
    slices = {key: [] for key in threads}
    for e in events:
        if e.get("ph") == "X" and (e["pid"], e["tid"]) in slices:
            depth = 0 if e.get("cat") == "thread" else 1
            slices[(e["pid"], e["tid"])].append((e["ts"] / 1e3, (e["ts"] + e["dur"]) / 1e3, e["name"],
                                                 e.get("cat"), depth))
    lanes = []
    for pid in sorted(processes):
        keys = sorted((k for k in threads if k[0] == pid), key=lambda k: order.get(k, 0))
        for key in keys:
            lanes.append((prefix(pid) + threads[key], "thread", slices[key]))
        opened = {}
        spans = {"lookup": [], "process": []}
        for e in events:
            if e.get("pid") != pid or e.get("cat") not in spans:
                continue
            if e["ph"] == "b":
                opened[e["id"]] = e
            elif e["ph"] == "e" and e["id"] in opened:
                b = opened.pop(e["id"])
                spans[e["cat"]].append((b["ts"] / 1e3, e["ts"] / 1e3, b["name"], e["cat"], 0))
        if spans["lookup"]:
            lanes.append((prefix(pid) + "lookups, from asked to answered", "async", spans["lookup"]))
        if spans["process"]:
            lanes.append((prefix(pid) + "child processes", "async", spans["process"]))
        ready = [(e["ts"] / 1e3, e["args"]["ready callbacks"]) for e in events
                 if e.get("pid") == pid and e.get("ph") == "C" and e["name"].endswith("ready callbacks")]
        if ready:
            lanes.append((prefix(pid) + "ready callbacks (counter)", "counter", sorted(ready)))
    return lanes


def png(trace, path, start_ms=None, end_ms=None, title=None):
    """Draws the trace (a dict) into path: the lanes of lanes_of(), between start_ms
    and end_ms (the whole trace by default)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lanes = lanes_of(trace)
    ends = [s[1] for _, kind, sl in lanes if kind != "counter" for s in sl] or [1.0]
    lo = 0.0 if start_ms is None else start_ms
    hi = max(ends) if end_ms is None else end_ms
    if not hi > lo:
        raise ValueError("nothing to draw: the window is empty")
    width = hi - lo
    # Each lane's height: a thread lane 1, an async lane a row per overlapping slice.
    rows = []
    for _, kind, sl in lanes:
        if kind == "async":
            placed = []  # the end of each row's last slice
            layout = []
            for s in sorted(sl):
                row = next((i for i, end in enumerate(placed) if end <= s[0]), None)
                if row is None:
                    placed.append(s[1])
                    row = len(placed) - 1
                else:
                    placed[row] = s[1]
                layout.append((s, row))
            rows.append((max(len(placed), 1), layout))
        else:
            rows.append((1, None))
    total = sum(r for r, _ in rows)
    fig, ax = plt.subplots(figsize=(12, 1.4 + 0.5 * total))
    y = total
    ticks, labels = [], []
    for (title_, kind, sl), (n, layout) in zip(lanes, rows):
        y -= n
        ticks.append(y + n / 2)
        labels.append(title_)
        if kind == "counter":
            peak = max((v for _, v in sl), default=0) or 1
            xs = [t for t, _ in sl]
            ys = [y + 0.1 + 0.8 * v / peak for _, v in sl]
            ax.step(xs, ys, where="post", color="#444444", linewidth=0.8)
            ax.text(lo + width * 0.002, y + 0.92, f"peak {peak}", fontsize=6.5, va="top", color="#444444")
            continue
        if kind == "async":
            items = [(s, y + n - 1 - row, 0.7) for s, row in layout]
        else:
            items = [(s, y + (0.3 if s[4] == 0 else 0.15), 0.4 if s[4] == 0 else 0.7) for s in sl]
        for (a, b, name, cat, depth), base, height in items:
            if b < lo or a > hi:
                continue
            color = _THREAD_COLOR if cat == "thread" else _CATEGORIES.get(cat, ("", "#7f7f7f"))[1]
            span = max(b - a, width / 1500)  # (a slice too short to see still shows)
            ax.broken_barh([(a, span)], (base, height), facecolors=color, alpha=0.5 if cat == "thread" else 0.9,
                           edgecolor="none" if cat == "thread" else "white", linewidth=0.6)
            if cat != "thread" and b - a > width / 12:
                ax.text(max(a, lo) + width * 0.003, base + height / 2, name, fontsize=6.5, va="center",
                        clip_on=True)
        if kind == "thread":
            ax.axhline(y, color="#eeeeee", linewidth=0.5)
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=7.5)
    ax.set_ylim(0, total)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("milliseconds since the script started")
    ax.grid(axis="x", alpha=0.3)
    used = {s[3] for _, kind, sl in lanes if kind != "counter" for s in sl}
    handles = [Patch(color=_THREAD_COLOR, alpha=0.5, label="thread alive")]
    handles += [Patch(color=c, label=label) for cat, (label, c) in _CATEGORIES.items() if cat in used]
    fig.legend(handles=handles, loc="lower center", fontsize=7.5, ncol=len(handles), frameon=False)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.96 if title else 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pyloop.threads.draw_trace", description=__doc__.split("\n\n")[0])
    p.add_argument("trace", help="a trace written by python -m pyloop.threads --trace")
    p.add_argument("-o", "--output", required=True, metavar="PNG")
    p.add_argument("--from", dest="start", type=float, metavar="MS", help="draw from this time (ms)")
    p.add_argument("--to", dest="end", type=float, metavar="MS", help="draw until this time (ms)")
    p.add_argument("--title")
    ns = p.parse_args(argv)
    try:
        with open(ns.trace) as f:
            trace = json.load(f)
        lanes_of(trace)
    except (OSError, ValueError, KeyError, TypeError) as e:
        p.error(f"{ns.trace}: not a trace of python -m pyloop.threads --trace ({e})")
    try:
        png(trace, ns.output, ns.start, ns.end, ns.title)
    except ImportError:
        sys.exit("pyloop.threads.draw_trace: drawing needs matplotlib (pip install matplotlib)")
    except ValueError as e:
        p.error(str(e))
    print(f"drawing: {ns.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
