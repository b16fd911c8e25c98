"""Stress: a million chained callbacks, memory returned afterwards; fork."""

import gc
import os
import subprocess
import sys
import tracemalloc

import pytest

import pyloop


def test_million_chained_callbacks(loop):
    n = 1_000_000
    count = 0

    def step():
        nonlocal count
        count += 1
        if count < n:
            loop.call_soon(step)
        else:
            loop.stop()

    loop.call_soon(step)
    loop.run_forever()
    assert count == n


def test_chained_callbacks_free_memory(loop):
    gc.collect()
    tracemalloc.start()
    try:
        def burst(n=200_000):
            left = n

            def step():
                nonlocal left
                left -= 1
                if left:
                    loop.call_soon(step)
                else:
                    loop.stop()

            loop.call_soon(step)
            loop.run_forever()

        burst()
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        burst()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - base < 500_000


def test_many_pending_callbacks_freed_on_close():
    lp = pyloop.new_event_loop()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(100_000):
            lp.call_soon(lambda: None)
            lp.call_later(100, lambda: None)
        lp.close()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - base < 500_000


FORK_CHILD = """
import asyncio, os, sys
import pyloop
factory = pyloop.new_event_loop if sys.argv[1] == "pyloop" else asyncio.SelectorEventLoop
parent = factory()
parent.run_until_complete(asyncio.sleep(0.01))
pid = os.fork()
if pid == 0:
    code = 1
    try:
        child = factory()
        async def main():
            await asyncio.sleep(0.01)
            fut = child.create_future()
            child.call_later(0.01, fut.set_result, 7)
            return await asyncio.wait_for(fut, 5)
        code = 0 if child.run_until_complete(main()) == 7 else 2
        child.close()
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
parent.run_until_complete(asyncio.sleep(0.01))
parent.close()
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("which", ["asyncio", "pyloop"])
def test_new_loop_after_fork(which):
    # In a fresh single-threaded process: forking a multi-threaded one is unsafe.
    out = subprocess.run([sys.executable, "-c", FORK_CHILD, which], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"
