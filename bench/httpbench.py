"""The HTTP benchmark: aiohttp and uvicorn + httptools servers (bench/httpbench_server.py)
on each loop, loaded by wrk. Server processes are pinned to CPU 0 (and 1, 2, ... when
there are several) and wrk to the last CPU. The headline figure is the servers' CPU
time per request (utime+stime from /proc), which stays meaningful on a busy machine;
requests/s is reported too.

    python bench/httpbench.py LOOP APP ROUTE keepalive|close [SECONDS] [WORKERS]

runs one measurement and prints "<requests/s> <server CPU µs per request>".
"""

import importlib.util
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys

import rivals

HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")
CONNECTIONS = 50
# (app, route, keep-alive, server processes)
CASES = [("aiohttp", "/", True, 1), ("aiohttp", "/json", True, 1), ("aiohttp", "/", False, 1),
         ("uvicorn", "/", True, 1), ("uvicorn", "/json", True, 1), ("uvicorn", "/", False, 1),
         ("aiohttp", "/", True, 2), ("uvicorn", "/", True, 2)]


def case_name(app, route, keepalive, workers):
    name = f"{app} {'hello' if route == '/' else '16 KiB json'} {'keep-alive' if keepalive else 'close'}"
    return name + (f", {workers} processes" if workers > 1 else "")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(port, route, keepalive, seconds, cpu):
    cmd = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s"]
    if not keepalive:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}{route}"], capture_output=True, text=True,
                         timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr}")
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out.stdout)
    if not m:
        raise RuntimeError(f"wrk printed no count:\n{out.stdout}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if bad:
        raise RuntimeError(f"{bad.group(1)} failed responses:\n{out.stdout}")
    elapsed = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    return int(m.group(1)), elapsed


def run_once(loop, app, route, keepalive, seconds=2.0, workers=1):
    ncpu = os.cpu_count()
    port = free_port()
    servers = []
    try:
        for i in range(workers):
            p = subprocess.Popen([*rivals.python(), os.path.join(HERE, "httpbench_server.py"), loop, app, str(port)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=rivals.environment())
            servers.append(p)
            try:
                os.sched_setaffinity(p.pid, {i % ncpu})
            except OSError:
                pass
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{loop}/{app}: server did not start")
        load_cpu = ncpu - 1 if ncpu > workers else 0
        wrk(port, route, keepalive, 1, load_cpu)  # warm up
        cpu0 = sum(cpu_seconds(p.pid) for p in servers)
        requests, elapsed = wrk(port, route, keepalive, seconds, load_cpu)
        cpu1 = sum(cpu_seconds(p.pid) for p in servers)
        return requests / elapsed, (cpu1 - cpu0) / max(requests, 1) * 1e6
    finally:
        for p in servers:
            p.stdin.close()
        for p in servers:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def versions():
    import importlib.metadata as md
    v = {}
    for pkg in ("aiohttp", "uvicorn", "httptools", "uvloop", "rloop", "rsloop"):
        try:
            v[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    wrk_out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    v["wrk"] = (wrk_out.stdout or wrk_out.stderr).split()[1] if shutil.which("wrk") else None
    return v


def run(loops, repeat=5, seconds=2.0, only=""):
    """Rows of (name, {loop: (requests/s, CPU µs/request)}), medians of alternating rounds."""
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk; make bench installs it)")
    rows = []
    for app, route, keepalive, workers in CASES:
        name = case_name(app, route, keepalive, workers)
        if only not in name or workers > os.cpu_count() or importlib.util.find_spec(app) is None:
            continue
        res = rivals.interleaved(loops, repeat, name, lambda lp: run_once(lp, app, route, keepalive, seconds, workers))
        rows.append((name, {lp: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
                            for lp, v in res.items()}))
        print(".", end="", flush=True)
    print()
    return rows


def main():
    loop, app, route, mode = sys.argv[1:5]
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 2.0
    workers = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    rate, cpu = run_once(loop, app, route, mode == "keepalive", seconds, workers)
    print(f"{rate:.0f} {cpu:.2f}")


if __name__ == "__main__":
    main()
