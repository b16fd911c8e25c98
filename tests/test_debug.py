"""Debug mode: slow callbacks, thread checks, PYTHONASYNCIODEBUG, exception handler API."""

import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest


def test_set_get_debug(loop):
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_slow_callback_logged(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.02
    loop.call_soon(time.sleep, 0.05)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(asyncio.sleep(0.01))
    msgs = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert any(m.startswith("Executing <Handle sleep(0.05)") and "seconds" in m for m in msgs), msgs


def test_fast_callbacks_not_logged(loop, caplog):
    loop.set_debug(True)
    loop.call_soon(lambda: None)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(asyncio.sleep(0.01))
    assert not [r for r in caplog.records if "took" in r.getMessage()]


def test_debug_rejects_coroutines_and_non_callables(loop):
    loop.set_debug(True)

    async def coro():
        pass

    with pytest.raises(TypeError, match="coroutines cannot be used with call_soon"):
        loop.call_soon(coro)
    with pytest.raises(TypeError, match="a callable object was expected by call_at"):
        loop.call_later(1, 42)


def test_debug_non_thread_safe_call(loop):
    loop.set_debug(True)
    errors = []

    async def main():
        def other():
            try:
                loop.call_soon(lambda: None)
            except RuntimeError as exc:
                errors.append(exc)
        t = threading.Thread(target=other)
        t.start()
        await asyncio.sleep(0.05)
        t.join()

    loop.run_until_complete(main())
    assert len(errors) == 1 and "Non-thread-safe operation" in str(errors[0])


def test_debug_source_traceback(loop):
    loop.set_debug(True)
    h = loop.call_soon(lambda: None)
    assert h._source_traceback
    assert h._source_traceback[-1][2] == "test_debug_source_traceback"
    h.cancel()


@pytest.mark.parametrize("which", ["asyncio", "pyloop"])
def test_pythonasynciodebug_env(which):
    code = ("import asyncio, pyloop; "
            f"lp = pyloop.new_event_loop() if {which!r} == 'pyloop' else asyncio.SelectorEventLoop(); "
            "print(lp.get_debug()); lp.close()")
    env = dict(os.environ, PYTHONASYNCIODEBUG="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "True", out.stderr


def test_exception_handler_api(loop):
    assert loop.get_exception_handler() is not None  # the fixture's
    with pytest.raises(TypeError):
        loop.set_exception_handler(42)
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    loop.call_exception_handler({"message": "hello"})
    assert seen == [{"message": "hello"}]
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


def test_default_exception_handler_logs(loop, caplog):
    loop.set_exception_handler(None)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        try:
            raise ValueError("boom")
        except ValueError as exc:
            loop.call_exception_handler({"message": "Something", "exception": exc, "extra": 1})
    [rec] = caplog.records
    assert rec.getMessage().splitlines() == ["Something", "extra: 1"]
    assert rec.exc_info[0] is ValueError


def test_failing_custom_handler_is_logged(loop, caplog):
    def handler(lp, ctx):
        raise RuntimeError("handler broke")

    loop.set_exception_handler(handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "x"})
    assert any("Unhandled error in exception handler" in r.getMessage() for r in caplog.records)


def test_callback_error_logged_by_default_handler(loop, caplog):
    loop.set_exception_handler(None)

    def bad():
        raise KeyError("k")

    loop.call_soon(bad)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.run_until_complete(asyncio.sleep(0.01))
    [rec] = caplog.records
    assert rec.getMessage().startswith("Exception in callback ")
    assert "handle: <Handle" in rec.getMessage()


def test_handle_traceback_in_default_handler(loop, caplog):
    # In debug mode, errors reported while a callback runs name where its handle was made.
    loop.set_debug(True)
    loop.set_exception_handler(None)
    loop.call_soon(lambda: loop.call_exception_handler({"message": "reported"}))
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.run_until_complete(asyncio.sleep(0.01))
    [rec] = [r for r in caplog.records if r.getMessage().startswith("reported")]
    assert "Handle created at (most recent call last):" in rec.getMessage()
    assert "test_handle_traceback_in_default_handler" in rec.getMessage()


def test_a_cancelled_handle_says_so_in_debug_mode(loop):
    # asyncio keeps the repr taken at cancel(), callback and arguments included (a slow
    # callback's warning names it); the handle itself lets them go. Outside debug mode
    # nothing is kept.
    def callback(*args):
        pass

    loop.set_debug(True)
    handle = loop.call_soon(callback, 1, "x")
    timer = loop.call_later(10, callback, 2, "y")
    handle.cancel()
    timer.cancel()
    where = f"at {__file__}:{callback.__code__.co_firstlineno}"
    assert repr(handle).startswith(f"<Handle cancelled test_a_cancelled_handle_says_so_in_debug_mode.<locals>."
                                   f"callback(1, 'x') {where} created at {__file__}:")
    assert repr(timer).startswith(f"<TimerHandle cancelled when={timer.when()} test_a_cancelled_handle_says_so_in_"
                                  f"debug_mode.<locals>.callback(2, 'y') {where} created at {__file__}:")
    assert (handle._callback, handle._args, timer._callback, timer._args) == (None, None, None, None)
    loop.set_debug(False)
    quiet = loop.call_soon(callback, 3)
    quiet.cancel()
    assert repr(quiet) == "<Handle cancelled>"


@pytest.mark.parametrize("method", ["sock_recv", "sock_recv_into", "sock_sendall", "sock_accept", "sock_connect"])
def test_closed_blocking_socket_in_debug_mode(loop, method):
    # asyncio's debug check (the socket must be non-blocking) comes first: ValueError,
    # not the OSError a closed socket's call would raise.
    loop.set_debug(True)
    sock = socket.socket()
    sock.close()
    args = {"sock_recv": (1,), "sock_recv_into": (bytearray(1),), "sock_sendall": (b"x",), "sock_accept": (),
            "sock_connect": (("127.0.0.1", 9),)}[method]
    with pytest.raises(ValueError, match="the socket must be non-blocking"):
        loop.run_until_complete(getattr(loop, method)(sock, *args))
