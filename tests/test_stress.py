"""Stress: a million chained callbacks, memory returned afterwards; fork."""

import asyncio
import gc
import os
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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("which", ["asyncio", "pyloop"])
def test_new_loop_after_fork(which):
    factory = pyloop.new_event_loop if which == "pyloop" else asyncio.SelectorEventLoop
    parent = factory()
    try:
        parent.run_until_complete(asyncio.sleep(0.01))
        pid = os.fork()
        if pid == 0:  # child
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
        assert os.waitstatus_to_exitcode(status) == 0
        parent.run_until_complete(asyncio.sleep(0.01))
    finally:
        parent.close()
