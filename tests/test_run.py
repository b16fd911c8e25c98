"""run_forever, run_until_complete, stop, close, is_running, time, nesting."""

import asyncio
import time

import pytest

import pyloop


def test_is_abstract_event_loop(loop):
    assert isinstance(loop, asyncio.AbstractEventLoop)


def test_run_until_complete_coroutine(loop):
    async def coro():
        await asyncio.sleep(0)
        return 42

    assert loop.run_until_complete(coro()) == 42


def test_run_until_complete_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "ok")
    assert loop.run_until_complete(fut) == "ok"
    assert fut.get_loop() is loop


def test_run_until_complete_raises_result_exception(loop):
    async def boom():
        raise ValueError("x")

    with pytest.raises(ValueError, match="x"):
        loop.run_until_complete(boom())


def test_stopped_before_future_completed(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed."):
        loop.run_until_complete(fut)
    fut.cancel()


def test_run_forever_stop(loop):
    calls = []
    loop.call_soon(calls.append, 1)
    loop.call_soon(loop.stop)
    loop.call_soon(calls.append, 2)
    loop.run_forever()
    # stop() lets the callbacks already ready finish this iteration
    assert calls == [1, 2]
    assert not loop.is_running()


def test_stop_then_run_runs_one_iteration(loop):
    calls = []
    loop.call_soon(calls.append, 1)
    loop.stop()
    loop.run_forever()
    assert calls == [1]
    # the loop can run again
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_callbacks_scheduled_later_wait_for_next_run(loop):
    calls = []

    def first():
        calls.append("first")
        loop.call_soon(calls.append, "second")
        loop.stop()

    loop.call_soon(first)
    loop.run_forever()
    assert calls == ["first"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["first", "second"]


def test_is_running_and_running_loop(loop):
    seen = []

    def cb():
        seen.append((loop.is_running(), asyncio.get_running_loop() is loop, asyncio.get_event_loop() is loop))
        loop.stop()

    assert not loop.is_running()
    loop.call_soon(cb)
    loop.run_forever()
    assert seen == [(True, True, True)]
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_nested_run_raises(loop):
    async def inner():
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already running"):
            loop.run_until_complete(coro)
        coro.close()
        with pytest.raises(RuntimeError, match="already running"):
            loop.run_forever()

    loop.run_until_complete(inner())


def test_run_inside_another_running_loop(loop):
    other = pyloop.new_event_loop() if not isinstance(loop, pyloop.Loop) else asyncio.SelectorEventLoop()
    try:
        async def inner():
            coro = asyncio.sleep(0)
            with pytest.raises(RuntimeError, match="another loop is running"):
                other.run_until_complete(coro)
            coro.close()
        loop.run_until_complete(inner())
    finally:
        other.close()


def test_close(loop):
    assert not loop.is_closed()
    loop.call_soon(lambda: None)
    loop.call_later(10, lambda: None)
    loop.close()
    assert loop.is_closed()
    loop.close()  # twice is fine
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_soon(lambda: None)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_later(1, lambda: None)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_soon_threadsafe(lambda: None)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_forever()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.create_task(coro)
    coro.close()


def test_close_running_loop_raises(loop):
    async def inner():
        with pytest.raises(RuntimeError, match="Cannot close a running event loop"):
            loop.close()

    loop.run_until_complete(inner())


def test_time_is_monotonic_clock(loop):
    t0 = time.monotonic()
    t = loop.time()
    t1 = time.monotonic()
    assert t0 <= t <= t1


def test_keyboard_interrupt_in_callback_leaves_run(loop):
    calls = []

    def boom():
        raise KeyboardInterrupt

    loop.call_soon(boom)
    loop.call_soon(calls.append, "after")
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()
    # the rest of the queue is still there and runs next time
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["after"]


def test_system_exit_in_callback_leaves_run(loop):
    loop.call_soon(lambda: (_ for _ in ()).throw(SystemExit(3)))
    with pytest.raises(SystemExit):
        loop.run_forever()


def test_exception_in_callback_goes_to_handler(loop):
    calls = []

    def bad():
        raise ZeroDivisionError("nope")

    h = loop.call_soon(bad)
    loop.call_soon(calls.append, 1)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == [1]
    [ctx] = loop.test_errors
    loop.test_errors.clear()
    assert ctx["message"].startswith("Exception in callback ")
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert ctx["handle"] is h


def test_base_exception_in_callback_goes_to_handler(loop):
    class Custom(BaseException):
        pass

    def bad():
        raise Custom()

    loop.call_soon(bad)
    loop.call_soon(loop.stop)
    loop.run_forever()
    [ctx] = loop.test_errors
    loop.test_errors.clear()
    assert isinstance(ctx["exception"], Custom)


def test_unclosed_loop_warns():
    lp = pyloop.new_event_loop()
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        lp.__del__()
    assert lp.is_closed()
