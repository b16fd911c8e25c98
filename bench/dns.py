"""DNS benchmark: N lookups at a given concurrency on one loop, in this fresh process.

    python bench/dns.py LOOP N CONCURRENCY     prints: seconds peak_python_threads peak_os_threads

Names come from /etc/hosts ("localhost"), so the figure is the loop's resolver
machinery (threads, hand-offs), not a network's latency.
"""

import asyncio
import os
import sys
import threading
import time

from micro import make_loop


def os_threads():
    return len(os.listdir("/proc/self/task"))


async def lookups(n, concurrency):
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(concurrency)
    peak = [threading.active_count(), os_threads()]

    async def one(i):
        async with sem:
            await loop.getaddrinfo("localhost", 1024 + i % 50000)
            peak[0] = max(peak[0], threading.active_count())
            peak[1] = max(peak[1], os_threads())

    t0 = time.perf_counter()
    await asyncio.gather(*[one(i) for i in range(n)])
    return time.perf_counter() - t0, peak[0], peak[1]


def main():
    name, n, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    loop = make_loop(name)
    try:
        loop.run_until_complete(lookups(20, conc))  # warm up: pools and executors exist
        secs, py_threads, threads = loop.run_until_complete(lookups(n, conc))
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    print(f"{secs:.6f} {py_threads} {threads}")


if __name__ == "__main__":
    main()
