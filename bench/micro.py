"""One micro-benchmark on one loop, in this (fresh) process; prints ns per operation.

    python bench/micro.py LOOP BENCH N      LOOP: asyncio | uvloop | rloop | rsloop | pyloop
"""

import asyncio
import sys
import time


def make_loop(name):
    if name == "asyncio":
        return asyncio.SelectorEventLoop()
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    if name == "rloop":
        import rloop
        return rloop.new_event_loop()
    if name == "rsloop":
        import rsloop
        return rsloop.new_event_loop()
    if name == "pyloop":
        import pyloop
        return pyloop.new_event_loop()
    if name == "pyloop+stall":
        return pyloop_with_stall_watch()
    if name == "pyloop+trace":
        return pyloop_traced()
    raise SystemExit(f"unknown loop {name}")


STALL_THRESHOLD = 0.1  # the `observe` suite's pyloop+stall: the watch on, as a service would run it


def pyloop_traced():
    """A pyloop loop recording itself as `python -m pyloop.threads --trace` has it do."""
    import pyloop
    from pyloop import _trace
    loop = pyloop.new_event_loop()
    _trace.start(loop, 0.0001)
    return loop


def pyloop_with_stall_watch():
    """A pyloop loop with loop.set_stall_threshold() on (bench/run.py --suite observe)."""
    import pyloop
    loop = pyloop.new_event_loop()
    loop.set_stall_threshold(STALL_THRESHOLD)
    return loop


def chained_call_soon(loop, n):
    left = n

    def step():
        nonlocal left
        left -= 1
        if left:
            loop.call_soon(step)
        else:
            loop.stop()

    t0 = time.perf_counter()
    loop.call_soon(step)
    loop.run_forever()
    return time.perf_counter() - t0


def batched_call_soon(loop, n):
    def cb():
        pass

    t0 = time.perf_counter()
    for _ in range(n):
        loop.call_soon(cb)
    loop.call_soon(loop.stop)
    loop.run_forever()
    return time.perf_counter() - t0


def sleep0(loop, n):
    async def main():
        for _ in range(n):
            await asyncio.sleep(0)

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0


def future_round_trip(loop, n):
    async def main():
        for _ in range(n):
            fut = loop.create_future()
            loop.call_soon(fut.set_result, None)
            await fut

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0


def gather(loop, n):
    async def one():
        pass

    async def main():
        await asyncio.gather(*[one() for _ in range(n)])

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0


def call_later(loop, n):
    left = n

    def cb():
        nonlocal left
        left -= 1
        if not left:
            loop.stop()

    t0 = time.perf_counter()
    for i in range(n):
        loop.call_later((i % 100) * 0.0001, cb)
    loop.run_forever()
    return time.perf_counter() - t0


def call_later_cancel(loop, n):
    def cb():
        pass

    t0 = time.perf_counter()
    for _ in range(n):
        loop.call_later(10, cb).cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    return time.perf_counter() - t0


def timeout_around_await(loop, n):
    # What every timeout does: a timer made for an await that completes first, then
    # cancelled (asyncio.timeout reschedules and cancels it; wait_for on 3.12+ is this).
    async def main():
        for _ in range(n):
            async with asyncio.timeout(10):
                await asyncio.sleep(0)

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0


def task_group(loop, n):
    async def one():
        pass

    async def main():
        async with asyncio.TaskGroup() as tg:
            for _ in range(n):
                tg.create_task(one())

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0


def chained_with_fd(loop, n):
    # As chained call_soon, with a socket watched: every callback is an iteration whose
    # poll must see I/O that came before it (asyncio polls each iteration).
    import socket
    a, b = socket.socketpair()
    loop.add_reader(a.fileno(), lambda: None)  # (rloop takes only a number)
    try:
        return chained_call_soon(loop, n)
    finally:
        loop.remove_reader(a.fileno())
        a.close()
        b.close()


BENCHES = {
    "chained call_soon": (chained_call_soon, 500_000),
    "chained call_soon, fd watched": (chained_with_fd, 300_000),
    "batched call_soon": (batched_call_soon, 500_000),
    "await sleep(0)": (sleep0, 200_000),
    "future round trip": (future_round_trip, 200_000),
    "gather 200k coroutines": (gather, 200_000),
    "200k call_later": (call_later, 200_000),
    "call_later + cancel": (call_later_cancel, 200_000),
    "asyncio.timeout() around an await": (timeout_around_await, 200_000),
    "TaskGroup 200k tasks": (task_group, 200_000),
}
# asyncio.timeout and TaskGroup are 3.11+.
NEEDS = {"asyncio.timeout() around an await": (3, 11), "TaskGroup 200k tasks": (3, 11)}


def main():
    loop_name, bench = sys.argv[1], sys.argv[2]
    fn, n = BENCHES[bench]
    if len(sys.argv) > 3:
        n = int(sys.argv[3])
    loop = make_loop(loop_name)
    try:
        fn(loop, max(1, n // 20))  # warm up
        elapsed = fn(loop, n)
    finally:
        loop.close()
    print(f"{elapsed / n * 1e9:.3f}")


if __name__ == "__main__":
    main()
