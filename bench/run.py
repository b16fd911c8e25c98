"""pyloop's benchmark suite: stock asyncio, uvloop, rloop and rsloop (each when installed:
bench/rivals.py) and pyloop, in one run. A rival that cannot serve a row (rloop has no Unix
sockets, no TLS, no sock_sendto/sock_recvfrom) is left out of it, with a note.

Suites: `micro` (the loop's own operations), `dns` (2,000 lookups at concurrency
1,000 and 3: time, and peak Python and OS threads), `echo` (echo servers in four
styles over TCP and Unix sockets, driven by a small C load generator: requests/s and
the server's CPU time per request), `tls` (a TLS echo server and new TLS connections,
driven by ssl-module client processes: the server's CPU per request and per
handshake), `proc` (spawn+wait and pipe throughput, with peak thread counts) and
`http` (aiohttp and uvicorn + httptools servers loaded by wrk: the server's CPU per
request) and `scale` (RSS per idle connection, per pending timer and per queued
callback) and `flood` (timer and I/O latency while 8 threads flood
call_soon_threadsafe), and `observe` (what the stall watch and tracing cost: pyloop as
it is, with loop.set_stall_threshold() on, and recording itself for --trace, on the rows
they could slow).

Every figure is the median of several runs, each in a fresh process, interleaved
across loops so that machine noise hits them alike. Each suite prints a table and
writes bench/results/<suite>.json (and bench/results/micro.png when matplotlib is
installed).

    python bench/run.py [--suite LIST] [--repeat N] [--scale F] [--seconds S] [--only SUBSTRING]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, HERE)

import rivals  # noqa: E402
from micro import BENCHES, NEEDS  # noqa: E402


def run_script(script, loop, *argv):
    """bench/<script> LOOP ARGV... in a fresh process: the numbers it printed.
    RuntimeError (the last line it wrote to stderr) if it failed."""
    out = subprocess.run([*rivals.python(), os.path.join(HERE, script), loop, *map(str, argv)],
                         capture_output=True, text=True, timeout=600, env=rivals.environment())
    if out.returncode != 0:
        raise RuntimeError((out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1])
    return [float(x) for x in out.stdout.split()]


def fresh_runs(script, loops, repeat, *argv):
    """bench/<script> LOOP ARGV... in a fresh process per run, `repeat` rounds
    interleaved across the loops: {loop: [the numbers each run printed]}, without a
    rival whose run failed (with a note). asyncio's or pyloop's failure ends the bench."""
    return rivals.interleaved(loops, repeat, f"{script} {' '.join(map(str, argv))}",
                              lambda lp: run_script(script, lp, *argv))


def by_benchmark(rows, value):
    """[{benchmark, loop, ...}] as [(benchmark, {loop: value(row)})], in order."""
    out = {}
    for r in rows:
        out.setdefault(r["benchmark"], {})[r["loop"]] = value(r)
    return list(out.items())


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def best_rival(med):
    """The fastest loop other than pyloop in a row {loop: ns or µs}: (name, value)."""
    others = [(v, lp) for lp, v in med.items() if lp != "pyloop" and v]
    return min(others)[::-1] if others else (None, None)


def print_micro_table(rows, loops):
    headers = ["benchmark"] + [f"{lp} ns/op" for lp in loops] + ["pyloop/asyncio", "pyloop/best other"]
    table = []
    for bench, med in rows.items():
        name, best = best_rival(med)
        line = [bench] + [f"{med[lp]:.1f}" if lp in med else "-" for lp in loops] + \
            [ratio(med["pyloop"], med["asyncio"]), f"{ratio(med['pyloop'], best)} ({name})" if name else "-"]
        table.append(line)
    widths = [max(len(str(r[i])) for r in [headers] + table) for i in range(len(headers))]
    fmt = lambda r: "| " + " | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                                      for i, (c, w) in enumerate(zip(r, widths))) + " |"
    print(fmt(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in table:
        print(fmt(r))


def cpu_rows(data, key):
    """[(benchmark, {loop: row[loop][key]})] of the echo, tls and http results."""
    return [(r["benchmark"], {lp: v[key] for lp, v in r.items() if isinstance(v, dict)}) for r in data["rows"]]


# How each suite's saved results become its chart: (rows from the JSON, x label,
# title, log scale, relative to which loop).
CHARTS = {
    "micro": (lambda d: list(d["median"].items()), "time per operation relative to stock asyncio (lower is faster)",
              "Micro-benchmarks", False, "asyncio"),
    "dns": (lambda d: by_benchmark([{**r, "benchmark": f"{d['lookups']} lookups, concurrency {r['concurrency']}"}
                                    for r in d["rows"]], lambda r: r["seconds"] * 1e3),
            "time, ms (lower is better)", "DNS: lookups of 'localhost'", False, None),
    "echo": (lambda d: cpu_rows(d, "cpu_us_per_request"), "server CPU time per request, µs (log scale; lower is "
             "better)", "Echo servers", True, None),
    "tls": (lambda d: cpu_rows(d, "cpu_us"), "server CPU time per request or handshake, µs (log scale; lower is "
            "better)", "TLS", True, None),
    "proc": (lambda d: by_benchmark(d["rows"], lambda r: r["seconds"] * 1e3), "time, ms (log scale; lower is better)",
             "Subprocesses and pipes", True, None),
    "http": (lambda d: cpu_rows(d, "cpu_us_per_request"), "server CPU time per request, µs (lower is better)",
             "HTTP servers under wrk", False, None),
    "flood": (lambda d: by_benchmark(d["rows"], lambda r: r["timer_late_p50_ms"]),
              "how late a 10 ms timer fires, median ms (lower is better)", "Under a call_soon_threadsafe flood", False,
              None),
    "scale": (lambda d: by_benchmark(d["rows"], lambda r: r["bytes_per_item"]),
              "RSS growth per item, bytes (lower is better)", "Memory and scale", False, None),
}


def chart_suite(results, suite):
    """Draws <results>/<suite>.png from <results>/<suite>.json."""
    path = os.path.join(results, f"{suite}.json")
    if suite not in CHARTS or not os.path.exists(path):
        return
    with open(path) as f:
        data = json.load(f)
    rows_of, xlabel, title, log, relative_to = CHARTS[suite]
    chart(results, suite, rows_of(data), xlabel, f"{title} (Python {data.get('python', '?')}, {data.get('when', '')})",
          log=log, relative_to=relative_to)


def chart(results, suite, rows, xlabel, title, log=False, relative_to=None):
    """<results>/<suite>.png: one group of horizontal bars per row, one bar per loop.
    rows: [(name, {loop: value})]; values relative_to one loop's when given, and a
    row without some loop's value simply lacks that bar."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no chart)")
        return
    if not rows:
        return
    loops = [lp for lp in rivals.ORDER + ["C floor"] if any(lp in v for _, v in rows)]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) * max(1, len(loops) / 3) + 1.6))
    h = 0.8 / len(loops)
    for i, lp in enumerate(loops):
        ys, vals = [], []
        for y, (_, v) in enumerate(rows):
            ref = v.get(relative_to) if relative_to else 1.0
            if lp in v and ref:
                ys.append(y + i * h)
                vals.append(v[lp] / ref)
        ax.barh(ys, vals, height=h, label=lp)
    ax.set_yticks([y + h * (len(loops) - 1) / 2 for y in range(len(rows))])
    ax.set_yticklabels([name for name, _ in rows])
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    if relative_to:
        ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = os.path.join(results, f"{suite}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"chart: {os.path.relpath(path)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure (median taken)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply each benchmark's N")
    ap.add_argument("--only", default="", help="run the benchmarks whose name contains this")
    ap.add_argument("--suite", default="micro,dns,echo,tls,proc,http,scale,flood,observe",
                    help="comma-separated: micro, dns, echo, tls, proc, http, scale, flood, observe")
    ap.add_argument("--seconds", type=float, default=1.0, help="echo: seconds of load per run")
    ap.add_argument("--results", default=RESULTS, help="where the JSON results (and the charts) go")
    ap.add_argument("--charts", action="store_true", help="only redraw the suites' charts from their saved results")
    args = ap.parse_args()
    suites = args.suite.split(",")
    if args.charts:
        for suite in suites:
            chart_suite(args.results, suite)
        return

    loops, missing = rivals.available()
    for lp, why in missing.items():
        print(f"{lp}: {why}; the benchmarks run without it")
    libc = " ".join(platform.libc_ver())
    if rivals.python() != [sys.executable]:
        libc = f"Debian 13's glibc 2.41 (for rsloop; {os.path.relpath(rivals.GLIBC)})"
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, {libc}; "
          f"loops: {', '.join(loops)}; {args.repeat} fresh-process runs per figure (median)\n")
    runs = {"micro": run_micro, "dns": run_dns, "echo": run_echo, "tls": run_tls, "proc": run_proc,
            "http": run_http, "scale": run_scale, "flood": run_flood, "observe": run_observe}
    for name, run in runs.items():  # in this order, whatever the order asked
        if name in suites:
            run(args, loops)


def run_proc(args, loops):
    cases = (("serial", max(10, int(1000 * args.scale)), "spawn+wait /bin/true, one after another"),
             ("parallel", max(10, int(100 * args.scale)), "spawn+wait /bin/true, all at once"),
             ("heavy", max(10, int(200 * args.scale)), "spawn+wait /bin/true in a row, parent holding 512 MiB"),
             ("pipe", max(1, int(100 * args.scale)), "MiB from cat through a pipe"))
    print(f"\nSubprocesses: median of {args.repeat} fresh processes per figure\n")
    rows = []
    for what, n, label in cases:
        if args.only not in what:
            continue
        samples = fresh_runs("procs.py", loops, args.repeat, what, n)  # seconds, peak threads: Python, OS
        for lp in samples:
            s = samples[lp]
            rows.append({"benchmark": f"{n} {label}", "loop": lp,
                         "seconds": statistics.median(x[0] for x in s),
                         "peak_python_threads": int(max(x[1] for x in s)),
                         "peak_os_threads": int(max(x[2] for x in s))})
    headers = ["benchmark", "loop", "time (ms)", "peak Python threads", "peak OS threads", "time vs pyloop"]
    base = {r["benchmark"]: r["seconds"] for r in rows if r["loop"] == "pyloop"}
    table = [[r["benchmark"], r["loop"], f"{r['seconds'] * 1e3:.1f}", r["peak_python_threads"],
              r["peak_os_threads"], f"{r['seconds'] / base[r['benchmark']]:.2f}x"] for r in rows]
    print_table(headers, table)
    save(args, "proc", {"repeat": args.repeat, "rows": rows})


def run_tls(args, loops):
    if "rloop" in loops:
        rivals.left_out("rloop", "the TLS rows", "it has no TLS")
        loops = [lp for lp in loops if lp != "rloop"]
    seconds = max(0.5, 2 * args.seconds)
    print(f"\nTLS: echo over TLS (TCP; an asyncio Protocol server, or asyncio streams) and new TLS "
          f"connections, 4 blocking ssl-module client processes, {seconds:g} s per run; server CPU "
          f"from /proc; median of {args.repeat} runs\n")
    rows = {}
    for what, style, label in (("1024", "protocol", "tls protocol 1 KiB"),
                               ("102400", "protocol", "tls protocol 100 KiB"),
                               ("1024", "streams", "tls streams 1 KiB"),
                               ("102400", "streams", "tls streams 100 KiB"),
                               ("handshake", "protocol", "tls handshakes")):
        if args.only not in label:
            continue
        samples = fresh_runs("tls.py", loops, args.repeat, what, seconds, style)  # rate, CPU µs
        rows[label] = {lp: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
                       for lp, v in samples.items()}
    import echo
    echo.print_rows(list(rows.items()), loops)  # a handshake counts as one request
    save(args, "tls", {"seconds": seconds, "repeat": args.repeat,
                       "rows": [{"benchmark": label, **{lp: {"per_s": v[0], "cpu_us": v[1]} for lp, v in med.items()}}
                                for label, med in rows.items()]})


def run_echo(args, loops):
    import echo
    print(f"\nEcho: 8 connections, {args.seconds:g} s of load per run, server pinned to CPU 0 and the "
          f"C load generator to CPU 1; median of {args.repeat} runs\n")
    rows = echo.run(loops, repeat=args.repeat, seconds=args.seconds, only=args.only)
    echo.print_rows(rows, loops)
    save(args, "echo", {"seconds": args.seconds, "repeat": args.repeat,
                        "rows": [{"benchmark": name, **{lp: {"requests_per_s": v[0], "cpu_us_per_request": v[1]}
                                                        for lp, v in med.items()}} for name, med in rows]})


def run_scale(args, loops):
    cases = (("conns", max(100, int(10_000 * args.scale)), "idle TCP connections", "bytes/conn"),
             ("timers", max(100, int(100_000 * args.scale)), "pending timers", "bytes/timer"),
             ("callbacks", max(100, int(1_000_000 * args.scale)), "callbacks queued and run", "bytes/callback"))
    print(f"\nMemory and scale: RSS growth per item and the time taken, median of {args.repeat} fresh processes\n")
    rows = []
    for what, n, label, unit in cases:
        if args.only not in label:
            continue
        samples = fresh_runs("scale.py", loops, args.repeat, what, n)  # seconds, bytes per item
        for lp in samples:
            rows.append({"benchmark": f"{n:,} {label}", "loop": lp, "unit": unit,
                         "seconds": statistics.median(x[0] for x in samples[lp]),
                         "bytes_per_item": statistics.median(x[1] for x in samples[lp])})
    base = {r["benchmark"]: r for r in rows if r["loop"] == "pyloop"}
    headers = ["benchmark", "loop", "time (ms)", "RSS per item (bytes)", "time vs pyloop", "RSS vs pyloop"]
    table = [[r["benchmark"], r["loop"], f"{r['seconds'] * 1e3:.1f}", f"{r['bytes_per_item']:.0f}",
              ratio(r["seconds"], base[r["benchmark"]]["seconds"]),
              ratio(r["bytes_per_item"], base[r["benchmark"]]["bytes_per_item"])] for r in rows]
    print_table(headers, table)
    save(args, "scale", {"repeat": args.repeat, "rows": rows})


def run_flood(args, loops):
    seconds = max(0.5, 3 * args.seconds)
    cases = ((8, 0, "", "8 threads, empty callbacks"), (8, 100, "", "8 threads, callbacks of ~2 us"),
             (8, 0, "before", "8 threads started before the loop runs"))
    print(f"\nUnder a call_soon_threadsafe flood: {seconds:g} s per run, a 10 ms sleep repeated and a byte echoed "
          f"through add_reader meanwhile; median of {args.repeat} fresh processes\n")
    rows = []
    for nthreads, work, when, label in cases:
        if args.only not in label:
            continue
        samples = fresh_runs("flood.py", loops, args.repeat, nthreads, seconds, work, *([when] if when else []))
        for lp in samples:
            med = [statistics.median(x[i] for x in samples[lp]) for i in range(6)]
            rows.append({"benchmark": label, "loop": lp, "timer_late_p50_ms": med[0], "timer_late_max_ms": med[1],
                         "io_rtt_p50_ms": med[2], "io_rtt_max_ms": med[3], "peak_queue": med[4],
                         "callbacks_per_s": med[5]})
    headers = ["benchmark", "loop", "10 ms timer late p50/max (ms)", "I/O round trip p50/max (ms)", "peak queue",
               "flood callbacks/s"]
    table = [[r["benchmark"], r["loop"], f"{r['timer_late_p50_ms']:.1f} / {r['timer_late_max_ms']:.1f}",
              f"{r['io_rtt_p50_ms']:.2f} / {r['io_rtt_max_ms']:.1f}", f"{r['peak_queue']:,.0f}",
              f"{r['callbacks_per_s']:,.0f}"] for r in rows]
    print_table(headers, table)
    save(args, "flood", {"seconds": seconds, "repeat": args.repeat, "rows": rows})


def run_http(args, loops):
    import echo
    import httpbench
    seconds = max(1, round(2 * args.seconds))
    v = httpbench.versions()
    print(f"\nHTTP: wrk, {httpbench.CONNECTIONS} connections, {seconds} s per run after 1 s of warm-up; servers "
          f"pinned to CPU 0 (and 1), wrk to the last CPU; median of {args.repeat} alternating rounds; "
          + ", ".join(f"{k} {x}" for k, x in v.items()) + "\n")
    rows = httpbench.run(loops, repeat=args.repeat, seconds=seconds, only=args.only)
    echo.print_rows(rows, loops)
    save(args, "http", {"seconds": seconds, "repeat": args.repeat, "versions": v,
                        "rows": [{"benchmark": name, **{lp: {"requests_per_s": x[0], "cpu_us_per_request": x[1]}
                                                        for lp, x in med.items()}} for name, med in rows]})


def save(args, suite, data):
    """Writes <results>/<suite>.json: when, the Python version, and data."""
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, f"{suite}.json")
    with open(path, "w") as f:
        json.dump({"when": time.strftime("%Y-%m-%d %H:%M:%S"), "python": platform.python_version(), **data},
                  f, indent=2)
    print(f"\nresults: {os.path.relpath(path)}")
    chart_suite(args.results, suite)


def print_table(headers, table):
    """A Markdown table: headers left-aligned, cells right-aligned."""
    widths = [max(len(str(x[i])) for x in [headers] + table) for i in range(len(headers))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table:
        print("| " + " | ".join(str(c).rjust(w) for c, w in zip(row, widths)) + " |")


def run_dns(args, loops):
    n = max(10, int(2000 * args.scale))
    print(f"\nDNS: {n} lookups of 'localhost' (from /etc/hosts), median of {args.repeat} fresh processes\n")
    rows = {}
    for conc in (1000, 3):
        samples = fresh_runs("dns.py", loops, args.repeat, n, conc)  # seconds, peak threads: Python, OS
        for lp in samples:
            s = samples[lp]
            rows[(conc, lp)] = {
                "seconds": statistics.median(x[0] for x in s),
                "peak_python_threads": int(max(x[1] for x in s)),
                "peak_os_threads": int(max(x[2] for x in s)),
            }
    headers = ["concurrency", "loop", "time (ms)", "lookups/s", "peak Python threads", "peak OS threads",
               "time vs pyloop"]
    table = []
    for (conc, lp), r in rows.items():
        base = rows[(conc, "pyloop")]["seconds"]
        table.append([conc, lp, f"{r['seconds'] * 1e3:.1f}", f"{n / r['seconds']:.0f}",
                      r["peak_python_threads"], r["peak_os_threads"], f"{r['seconds'] / base:.2f}x"])
    print_table(headers, table)
    save(args, "dns", {"lookups": n, "repeat": args.repeat,
                       "rows": [{"concurrency": c, "loop": lp, **r} for (c, lp), r in rows.items()]})


# The rows the stall watch could slow: its cost on the loop thread is per callback.
OBSERVE_ROWS = (("micro", "chained call_soon"), ("micro", "chained call_soon, fd watched"),
                ("echo", "tcp protocol 1 KiB"), ("echo", "tcp streams 1 KiB"),
                ("http", "aiohttp hello keep-alive"), ("http", "uvicorn hello keep-alive"))


def run_observe(args, _loops):
    import echo
    import httpbench
    variants = ["pyloop", "pyloop+stall", "pyloop+trace"]
    print(f"\nObservability's cost: pyloop as it is, with loop.set_stall_threshold(0.1), and recording itself "
          f"for python -m pyloop.threads --trace; interleaved fresh processes, median of {args.repeat}\n")
    rows = []
    for suite, name in OBSERVE_ROWS:
        if args.only not in name:
            continue
        if suite == "micro":
            n = max(1, int(BENCHES[name][1] * args.scale))
            res = fresh_runs("micro.py", variants, args.repeat, name, n)
            med = {lp: statistics.median(x[0] for x in v) for lp, v in res.items()}
            unit = "ns/op"
        else:
            run = echo.run(variants, repeat=args.repeat, seconds=args.seconds, only=name) if suite == "echo" else \
                httpbench.run(variants, repeat=args.repeat, seconds=max(1, round(2 * args.seconds)), only=name)
            med = {lp: v[1] for lp, v in run[0][1].items() if lp in variants}
            unit = "server CPU µs/request"
        rows.append({"benchmark": name, "unit": unit, "off": med["pyloop"], "stall_watch_on": med["pyloop+stall"],
                     "tracing": med["pyloop+trace"]})
    table = [[r["benchmark"], r["unit"], f"{r['off']:.2f}", f"{r['stall_watch_on']:.2f}",
              ratio(r["stall_watch_on"], r["off"]), f"{r['tracing']:.2f}", ratio(r["tracing"], r["off"])]
             for r in rows]
    print_table(["benchmark", "unit", "off", "stall watch on", "stall / off", "tracing", "tracing / off"], table)
    save(args, "observe", {"repeat": args.repeat, "stall_threshold": 0.1, "rows": rows})


def run_micro(args, loops):
    benches = {b: v for b, v in BENCHES.items() if args.only in b and sys.version_info >= NEEDS.get(b, (3,))}
    samples = {}
    for b, (_, n) in benches.items():
        n = max(1, int(n * args.scale))
        samples[b] = {lp: [x[0] for x in v] for lp, v in fresh_runs("micro.py", loops, args.repeat, b, n).items()}
    rows = {b: {lp: statistics.median(v) for lp, v in per.items()} for b, per in samples.items()}
    print_micro_table(rows, loops)

    save(args, "micro", {"machine": platform.machine(), "cpus": os.cpu_count(), "repeat": args.repeat,
                         "unit": "ns/op", "median": rows, "samples": samples})


if __name__ == "__main__":
    main()
