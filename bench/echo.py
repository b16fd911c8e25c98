"""The echo benchmark: servers in four styles on each loop, driven by a small C load
generator (bench/echo_load.c, built here with cc). The server is pinned to CPU 0 and
the load to CPU 1; besides requests/s it reports the server's CPU time per request
(utime+stime from /proc), which stays meaningful when the machine is busy. The
protocol rows also run bench/echo_floor.c, an echo server in C over epoll: the floor
a loop's cost is measured against.
"""

import os
import statistics
import subprocess
import sys
import tempfile

import rivals

HERE = os.path.dirname(os.path.abspath(__file__))
# one folder per architecture: the checkout is shared with the arm64 root (make wheels-test)
BUILD = os.path.join(HERE, "build", os.uname().machine)
LOAD = os.path.join(BUILD, "echo_load")
FLOOR = os.path.join(BUILD, "echo_floor")
FLOOR_NAME = "C floor"
STYLES = ["protocol", "buffered", "streams", "sock"]
KINDS = ["tcp", "unix", "udp"]
SIZES = [1024, 10 * 1024, 100 * 1024]
# UDP: a DatagramProtocol server and a sock_recvfrom/sock_sendto one, one datagram per
# request (so no 100 KiB). uvloop has no sock_recvfrom (NotImplementedError), rloop no
# sock_recvfrom and no Unix sockets: those rows go without them. A rival that fails a row
# for another reason is left out of it with a note.
UDP_STYLES = ["protocol", "sock"]
UDP_SIZES = [1024, 10 * 1024]
LACKS = {("uvloop", "udp", "sock"), ("rloop", "udp", "sock")} | {("rloop", "unix", s) for s in STYLES}
TICK = os.sysconf("SC_CLK_TCK")


def build_load_generator():
    for binary in (LOAD, FLOOR):
        src = os.path.join(HERE, os.path.basename(binary) + ".c")
        if os.path.exists(binary) and os.path.getmtime(binary) >= os.path.getmtime(src):
            continue
        os.makedirs(BUILD, exist_ok=True)
        # built beside and renamed into place: two runs at once (CI's legs) never run a
        # half-written binary
        tmp = f"{binary}.{os.getpid()}.tmp"
        subprocess.run(["cc", "-O2", "-o", tmp, src], check=True)
        os.replace(tmp, binary)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def pin(pid, cpu):
    try:
        os.sched_setaffinity(pid, {cpu % os.cpu_count()})
    except OSError:
        pass


def run_once(loop, style, kind, size, seconds, connections):
    with tempfile.TemporaryDirectory() as tmp:
        addr = os.path.join(tmp, "echo.sock") if kind == "unix" else "0"
        cmd = [FLOOR, kind, addr] if loop == FLOOR_NAME else \
            [*rivals.python(), os.path.join(HERE, "echo_server.py"), loop, style, kind, addr]
        server = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env=rivals.environment())
        try:
            pin(server.pid, 0)
            line = server.stdout.readline().split()
            if not line or line[0] != "ready":
                raise RuntimeError(f"{loop}/{style}/{kind}: server did not start")
            target = [kind, "127.0.0.1", line[1]] if kind != "unix" else ["unix", addr]
            cpu0 = cpu_seconds(server.pid)
            load = subprocess.Popen(["taskset", "-c", str(1 % os.cpu_count()), LOAD, *target, str(connections),
                                     str(size), str(seconds)], stdout=subprocess.PIPE, text=True)
            out, _ = load.communicate(timeout=seconds + 60)
            cpu1 = cpu_seconds(server.pid)
            if load.returncode != 0:
                raise RuntimeError(f"{loop}/{style}/{kind}/{size}: load generator failed")
            requests, elapsed = out.split()
            requests, elapsed = int(requests), float(elapsed)
            return requests / elapsed, (cpu1 - cpu0) / max(requests, 1) * 1e6
        finally:
            server.stdin.close()
            server.wait(timeout=30)


def run(loops, repeat=3, seconds=1.0, connections=8, only=""):
    build_load_generator()
    rows = []
    for kind in KINDS:
        for style in UDP_STYLES if kind == "udp" else STYLES:
            for size in UDP_SIZES if kind == "udp" else SIZES:
                name = f"{kind} {style} {size // 1024} KiB"
                if only not in name:
                    continue
                servers = [lp for lp in loops if (lp, kind, style) not in LACKS]
                if style == "protocol" and kind != "udp":
                    servers.append(FLOOR_NAME)
                res = rivals.interleaved(servers, repeat, name,
                                         lambda lp: run_once(lp, style, kind, size, seconds, connections))
                rows.append((name, {lp: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
                                    for lp, v in res.items()}))
                print(".", end="", flush=True)
    print()
    return rows


def print_rows(rows, loops):
    headers = ["benchmark"] + [f"{lp} req/s" for lp in loops] + [f"{lp} CPU µs/req" for lp in loops]
    headers.append("CPU/req pyloop/best other")
    floor = any(FLOOR_NAME in med for _, med in rows)
    if floor:
        headers += [f"{FLOOR_NAME} CPU µs/req", f"pyloop/{FLOOR_NAME}"]
    table = []
    for name, med in rows:
        line = [name] + [f"{med[lp][0]:.0f}" if lp in med else "-" for lp in loops] + \
            [f"{med[lp][1]:.1f}" if lp in med else "-" for lp in loops]
        others = [(v[1], lp) for lp, v in med.items() if lp not in ("pyloop", FLOOR_NAME) and v[1]]
        best, best_name = min(others) if others else (None, None)
        line.append(f"{med['pyloop'][1] / best:.2f}x ({best_name})" if best else "-")
        if floor:
            f = med.get(FLOOR_NAME)
            line += [f"{f[1]:.1f}", f"{med['pyloop'][1] / f[1]:.2f}x"] if f and f[1] else ["-", "-"]
        table.append(line)
    widths = [max(len(str(r[i])) for r in [headers] + table) for i in range(len(headers))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in table:
        print("| " + " | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                                for i, (c, w) in enumerate(zip(r, widths))) + " |")
