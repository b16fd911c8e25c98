"""python -m pyloop.threads: which threads does an asyncio program grow, and why?

    python -m pyloop.threads [--loop asyncio|uvloop|pyloop] [--compare] [-o diagram.png]
                             [--json FILE|-] [--trace FILE] [--interval SECONDS]
                             script.py [args...]

Runs the script (in a child process) with the chosen loop as asyncio's loop, for
asyncio.run(), asyncio.Runner() and asyncio.get_event_loop() alike, and records every
thread of its process: Python threads exactly (name, start, end, the stack that started
them, their executor), other OS threads (libuv's pool, C extensions' threads) from
/proc every --interval seconds (1 ms by default: a non-Python thread that lives less
than that can be missed). Prints a table; -o draws the timeline; --json gives the raw
data (to FILE; with -, to stdout instead of the table, the script's own output going
to stderr); --trace writes a Chrome Trace Event Format trace that ui.perfetto.dev and
chrome://tracing open (a process per loop, a track per thread); --compare runs the
script on each loop that is installed and puts the timelines one above the other.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

from . import draw, trace
from .record import merge, read_record, sample_process

LOOPS = ("asyncio", "uvloop", "pyloop")


def available_loops():
    return [name for name in LOOPS if name != "uvloop" or importlib.util.find_spec("uvloop")]


TRACE_THRESHOLD = 0.0001  # --trace: the shortest callback a pyloop loop records (100 µs)


def record(loop, argv, interval=0.001, stdout=None, trace=False):
    """Runs argv (script and arguments) on loop in a child process: its run (dict).
    stdout: where the script's standard output goes (default: ours). trace: pyloop's
    loops record themselves too (run["loop_events"])."""
    fd, out = tempfile.mkstemp(prefix="pyloop-threads-", suffix=".json")
    os.close(fd)
    env = dict(os.environ)
    if trace:
        env["PYLOOP_TRACE"] = str(TRACE_THRESHOLD)
    else:
        env.pop("PYLOOP_TRACE", None)
    try:
        cmd = [sys.executable, "-m", "pyloop.threads.record", loop, out, *argv]
        proc = subprocess.Popen(cmd, stdout=stdout, env=env)
        samples = sample_process(proc, interval)
        data = read_record(out, proc.returncode)
        if data is None:
            raise SystemExit(f"pyloop.threads: the script did not start on {loop} (exit code {proc.returncode})")
        return merge(data, samples, interval)
    finally:
        os.unlink(out)


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m pyloop.threads", description=__doc__.split("\n\n")[0],
                                epilog="Python threads are recorded exactly, other OS threads sampled from "
                                       "/proc every --interval seconds. More: docs/observability.md.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loop", choices=LOOPS, default="pyloop", help="the loop to run the script on (pyloop)")
    p.add_argument("--compare", action="store_true", help="run on every installed loop, one timeline each")
    p.add_argument("-o", "--output", metavar="PNG", help="draw the timeline(s) into this PNG")
    p.add_argument("--json", metavar="FILE",
                   help="the raw data as JSON, into FILE (-: to stdout, instead of the table)")
    p.add_argument("--trace", metavar="FILE",
                   help="a Chrome Trace Event Format trace (JSON) for ui.perfetto.dev or chrome://tracing")
    p.add_argument("--interval", type=float, default=0.001, metavar="SECONDS",
                   help="how often OS threads are sampled (default 0.001)")
    p.add_argument("script", help="the Python script to run (as __main__)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    ns = p.parse_args(argv)
    if not (0 < ns.interval <= 10):  # (NaN and inf too)
        p.error("--interval must be a positive number of seconds, at most 10")
    for opt, path in (("--trace", ns.trace), ("--json", ns.json if ns.json != "-" else None), ("-o", ns.output)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            p.error(f"{opt}: no such directory: {os.path.dirname(os.path.abspath(path))}")
    if not os.path.isfile(ns.script):
        p.error(f"no such script: {ns.script}")
    if ns.loop == "uvloop" and not ns.compare and "uvloop" not in available_loops():
        p.error("uvloop is not installed (pip install uvloop)")
    return ns


def main(argv=None):
    ns = parse(sys.argv[1:] if argv is None else argv)
    loops = available_loops() if ns.compare else [ns.loop]
    # With the JSON on stdout, the script's own output goes to stderr.
    stdout = sys.stderr if ns.json == "-" else None
    runs = [record(loop, [ns.script, *ns.args], ns.interval, stdout, trace=bool(ns.trace)) for loop in loops]
    data = {"script": ns.script, "args": ns.args, "runs": runs}
    if ns.json == "-":
        json.dump(data, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(draw.table(runs))
        if ns.json:
            with open(ns.json, "w") as f:
                json.dump(data, f, indent=1)
    sys.stdout.flush()
    if ns.trace:
        trace.write(data, ns.trace)
        print(f"trace: {ns.trace} (open it in ui.perfetto.dev or chrome://tracing)", file=sys.stderr)
    if ns.output:
        try:
            draw.png(runs, ns.output, title=f"Threads of {os.path.basename(ns.script)}")
        except ImportError:
            sys.exit("pyloop.threads: drawing needs matplotlib (pip install matplotlib)")
        print(f"diagram: {ns.output}", file=sys.stderr)
    failed = [r for r in runs if r["exit_code"]]
    for r in failed:  # said again where it cannot be missed (the table may be long, or JSON)
        print(f"pyloop.threads: {draw.failure(r)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
