"""Memory and scale on one loop, in this fresh process.

    python bench/scale.py LOOP conns N       N idle TCP connections held open
    python bench/scale.py LOOP timers N      N pending call_later timers
    python bench/scale.py LOOP callbacks N   N callbacks queued with call_soon, then run

prints: seconds bytes_per_item
  conns: the time to accept all N (from a client process connecting as fast as it
         can) and the server's RSS growth per connection (transport, protocol, socket);
  timers: the time to schedule them and the RSS growth per timer;
  callbacks: the time to queue and run them and the peak RSS growth per callback.
"""

import asyncio
import gc
import os
import resource
import socket
import subprocess
import sys
import time

from micro import make_loop

CLIENT = r"""
import socket, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
print("connected", flush=True)
sys.stdin.read()  # hold them until the server is done measuring
"""


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n + 200))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < n + 100:
        raise SystemExit(f"the fd limit ({hard}) is too low for {n} connections")


async def conns(loop, n):
    raise_fd_limit(n)
    made = 0
    all_made = loop.create_future()

    class Idle(asyncio.Protocol):
        def connection_made(self, transport):
            nonlocal made
            self.transport = transport
            made += 1
            if made == n and not all_made.done():
                all_made.set_result(None)

    server = await loop.create_server(Idle, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    gc.collect()
    before = rss()
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(n), str(port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True,
                              preexec_fn=lambda: raise_fd_limit(n))
    t0 = time.perf_counter()
    await asyncio.wait_for(all_made, 120)
    secs = time.perf_counter() - t0
    gc.collect()
    per = (rss() - before) / n
    client.stdin.close()
    client.wait()
    server.close()
    return secs, per


async def timers(loop, n):
    gc.collect()
    before = rss()
    t0 = time.perf_counter()
    handles = [loop.call_later(3600 + i * 1e-6, int) for i in range(n)]
    secs = time.perf_counter() - t0
    gc.collect()
    per = (rss() - before) / n
    for h in handles:
        h.cancel()
    return secs, per


async def callbacks(loop, n):
    gc.collect()
    before = rss()
    done = loop.create_future()
    left = n

    def cb():
        nonlocal left
        left -= 1
        if not left:
            done.set_result(None)

    t0 = time.perf_counter()
    for _ in range(n):
        loop.call_soon(cb)
    peak = rss()
    await done
    secs = time.perf_counter() - t0
    return secs, (peak - before) / n


def main():
    name, what, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    loop = make_loop(name)
    asyncio.set_event_loop(loop)
    try:
        secs, per = loop.run_until_complete({"conns": conns, "timers": timers, "callbacks": callbacks}[what](loop, n))
    finally:
        loop.close()
    print(f"{secs:.6f} {per:.1f}")


if __name__ == "__main__":
    main()
