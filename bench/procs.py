"""Subprocess benchmark on one loop, in this fresh process.

    python bench/procs.py LOOP serial N     N spawn+wait of /bin/true in a row
    python bench/procs.py LOOP parallel N   N children of /bin/true at once
    python bench/procs.py LOOP heavy N      N spawn+wait in a row from a process holding 512 MiB
    python bench/procs.py LOOP pipe MIB     MIB MiB from `cat FILE` through a pipe
prints: seconds peak_python_threads peak_os_threads
"""

import asyncio
import os
import sys
import tempfile
import threading
import time

from micro import make_loop

PIPE = asyncio.subprocess.PIPE


def os_threads():
    return len(os.listdir("/proc/self/task"))


class Peak:
    def __init__(self):
        self.py = threading.active_count()
        self.os = os_threads()

    def sample(self):
        self.py = max(self.py, threading.active_count())
        self.os = max(self.os, os_threads())


async def serial(n, peak):
    for _ in range(n):
        p = await asyncio.create_subprocess_exec("/bin/true")
        peak.sample()
        await p.wait()


async def parallel(n, peak):
    async def one():
        p = await asyncio.create_subprocess_exec("/bin/true")
        peak.sample()
        await p.wait()

    await asyncio.gather(*(one() for _ in range(n)))


async def pipe(path, peak):
    p = await asyncio.create_subprocess_exec("cat", path, stdout=PIPE)
    peak.sample()
    n = 0
    while chunk := await p.stdout.read(1 << 18):
        n += len(chunk)
    await p.wait()
    return n


def main():
    name, what, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    loop = make_loop(name)
    asyncio.set_event_loop(loop)
    path = None
    try:
        if what == "pipe":
            fd, path = tempfile.mkstemp()
            with os.fdopen(fd, "wb") as f:
                block = b"\0" * (1 << 20)
                for _ in range(n):
                    f.write(block)
            work = lambda peak: pipe(path, peak)  # noqa: E731
        elif what in ("serial", "heavy"):
            if what == "heavy":  # written, so every page is mapped: what fork() must copy the tables of
                ballast = bytearray(b"\1") * (512 << 20)  # noqa: F841
            work = lambda peak: serial(n, peak)  # noqa: E731
        else:
            work = lambda peak: parallel(n, peak)  # noqa: E731
        loop.run_until_complete(serial(3, Peak()))  # warm up
        peak = Peak()

        def tick():  # samples the thread counts every millisecond meanwhile
            peak.sample()
            ticker[0] = loop.call_later(0.001, tick)

        ticker = [loop.call_later(0.001, tick)]
        t0 = time.perf_counter()
        loop.run_until_complete(work(peak))
        secs = time.perf_counter() - t0
        ticker[0].cancel()
    finally:
        if path:
            os.unlink(path)
        loop.close()
    print(f"{secs:.6f} {peak.py} {peak.os}")


if __name__ == "__main__":
    main()
