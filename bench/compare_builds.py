"""Two builds of pyloop on the micro benchmarks, alternating fresh processes: the
before/after figure of a change to the core.

    pip install --no-deps --target /tmp/before .   # at the commit before
    pip install --no-deps --target /tmp/after .    # with the change
    python bench/compare_builds.py /tmp/before /tmp/after [--repeat 9] [--only chained]

Each run is `python -S bench/micro.py pyloop BENCH` with PYTHONPATH set to one build
(-S: no site-packages, so an editable install cannot shadow it), pinned to the last CPU.
Prints the medians (ns per operation) and after/before.
"""

import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from micro import BENCHES  # noqa: E402


def run_once(path, bench):
    cpu = str(os.cpu_count() - 1)
    out = subprocess.run(["taskset", "-c", cpu, sys.executable, "-S", os.path.join(HERE, "micro.py"), "pyloop", bench],
                         env={"PYTHONPATH": path}, capture_output=True, text=True, cwd="/")
    if out.returncode:
        sys.exit(f"{bench} on {path} failed:\n{out.stderr}")
    return float(out.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--only", default="")
    ns = p.parse_args()
    benches = [b for b in BENCHES if ns.only in b]
    results = {(b, k): [] for b in benches for k in ("before", "after")}
    for _ in range(ns.repeat):
        for b in benches:
            results[(b, "before")].append(run_once(ns.before, b))
            results[(b, "after")].append(run_once(ns.after, b))
    width = max(len(b) for b in benches)
    print(f"{'benchmark'.ljust(width)}  before ns/op  after ns/op  after/before  ({ns.repeat} runs each, medians)")
    for b in benches:
        before, after = statistics.median(results[(b, "before")]), statistics.median(results[(b, "after")])
        print(f"{b.ljust(width)}  {before:12.1f}  {after:11.1f}  {after / before:12.3f}")


if __name__ == "__main__":
    main()
