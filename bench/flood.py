"""Timer and I/O latency while other threads flood call_soon_threadsafe, on one loop,
in this fresh process.

    python bench/flood.py LOOP THREADS SECONDS [WORK [before]]

THREADS threads call loop.call_soon_threadsafe(cb) in a tight loop for SECONDS (cb
counts, then runs an empty `for` WORK times); the
loop meanwhile sleeps 10 ms again and again (asyncio.sleep: a timer) and echoes a byte
over a socketpair (I/O). With `before`, the threads start before the loop runs, and a
10 ms call_later made then is the first timer sample (what the flood queued before
run_forever() began delays it). prints: timer_p50_ms timer_max_ms io_p50_ms io_max_ms
peak_queue callbacks_per_s
  timer_*: how late each 10 ms sleep woke (ms past its 10 ms);
  io_*: a byte's round trip through the loop's reader (ms);
  peak_queue: the most callbacks waiting in the ready queue at a sample;
  callbacks_per_s: the flood's callbacks the loop ran per second.
"""

import asyncio
import socket
import statistics
import sys
import threading
import time

from micro import make_loop


def main():
    name, nthreads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    loop = make_loop(name)
    asyncio.set_event_loop(loop)
    ran = 0

    work = range(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    before = len(sys.argv) > 5 and sys.argv[5] == "before"

    def noop():
        nonlocal ran
        ran += 1
        for _ in work:
            pass

    def queued():
        if name == "pyloop":
            return loop.metrics()["ready"]
        return len(getattr(loop, "_ready", ()))  # (uvloop does not show its queue: 0)

    # The threads stop by the clock, not by the loop: a loop they starve does not make
    # the run longer than SECONDS (plus what it takes to drain its queue).
    deadline = time.monotonic() + seconds

    def flood():
        call = loop.call_soon_threadsafe
        while time.monotonic() < deadline:
            for _ in range(100):
                call(noop)

    async def timers(lates, peak):
        while True:  # at least one sample, however late
            t0 = loop.time()
            await asyncio.sleep(0.01)
            lates.append((loop.time() - t0 - 0.01) * 1e3)
            peak[0] = max(peak[0], queued())
            if time.monotonic() >= deadline:
                break

    async def io(rtts):
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        while True:
            got = loop.create_future()
            loop.add_reader(b, lambda: (b.recv(1), got.done() or got.set_result(None)))
            t0 = time.perf_counter()
            a.send(b"x")
            await got
            rtts.append((time.perf_counter() - t0) * 1e3)
            loop.remove_reader(b)
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.005)
        a.close()
        b.close()

    lates, rtts, peak = [], [], [0]
    threads = [threading.Thread(target=flood) for _ in range(nthreads)]

    def start_threads():
        for t in threads:
            t.start()

    if before:
        start_threads()
        t_first = loop.time()
        loop.call_later(0.01, lambda: lates.append((loop.time() - t_first - 0.01) * 1e3))

    async def run():
        if not before:
            start_threads()
        t0 = time.perf_counter()
        await asyncio.gather(timers(lates, peak), io(rtts))
        for t in threads:
            t.join()
        start_ran = ran
        took = time.perf_counter() - t0
        return start_ran / took

    rate = loop.run_until_complete(run())
    loop.close()
    print(f"{statistics.median(lates):.2f} {max(lates):.2f} {statistics.median(rtts):.3f} {max(rtts):.2f} {peak[0]} "
          f"{rate:.0f}")


if __name__ == "__main__":
    main()
