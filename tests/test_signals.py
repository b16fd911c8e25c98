"""add_signal_handler/remove_signal_handler with real signals; Ctrl-C."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest


def test_signal_handler_runs(loop):
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda *a: got.set_result(a), "arg")
    loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR1)
    assert loop.run_until_complete(asyncio.wait_for(got, 5)) == ("arg",)
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_from_thread_while_sleeping(loop):
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR2, lambda: got.done() or got.set_result("sig"))
    t = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR2))
    t.start()
    try:
        assert loop.run_until_complete(asyncio.wait_for(got, 5)) == "sig"
    finally:
        t.join()
        loop.remove_signal_handler(signal.SIGUSR2)


def test_replacing_handler(loop):
    calls = []
    loop.add_signal_handler(signal.SIGUSR1, calls.append, "old")
    loop.add_signal_handler(signal.SIGUSR1, calls.append, "new")
    os.kill(os.getpid(), signal.SIGUSR1)
    loop.run_until_complete(asyncio.sleep(0.05))
    assert calls == ["new"]
    loop.remove_signal_handler(signal.SIGUSR1)


def test_sigint_handler_restored(loop):
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    assert loop.remove_signal_handler(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_close_removes_handlers(loop):
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_bad_signals(loop):
    with pytest.raises(TypeError):
        loop.add_signal_handler("SIGINT", lambda: None)
    with pytest.raises(ValueError):
        loop.add_signal_handler(0, lambda: None)
    with pytest.raises(ValueError):
        loop.add_signal_handler(10_000, lambda: None)
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGKILL, lambda: None)
    with pytest.raises(TypeError):
        loop.remove_signal_handler("x")
    assert loop.remove_signal_handler(signal.SIGUSR1) is False

    async def coro():
        pass

    with pytest.raises(TypeError):
        loop.add_signal_handler(signal.SIGUSR1, coro)


def test_not_main_thread(loop):
    errors = []

    def other():
        try:
            loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        except Exception as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)


CTRL_C_CHILD = textwrap.dedent("""
    import asyncio, os, signal, sys, threading, time
    import pyloop
    loop = pyloop.new_event_loop() if sys.argv[1] == "pyloop" else asyncio.SelectorEventLoop()
    async def main():
        # the signal comes once the loop runs (a slow start must not see it early)
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        await asyncio.sleep(30)
    try:
        loop.run_until_complete(main())
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
    finally:
        loop.close()
""")


@pytest.mark.parametrize("which", ["asyncio", "pyloop"])
def test_ctrl_c_during_run_until_complete(which):
    proc = subprocess.run([sys.executable, "-c", CTRL_C_CHILD, which], capture_output=True, text=True, timeout=20)
    assert proc.stdout.strip() == "KeyboardInterrupt", proc.stderr


RUNNER_CHILD = textwrap.dedent("""
    import asyncio, os, signal, sys, threading
    import pyloop
    async def main():
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            print("cancelled", flush=True)
            raise
    try:
        pyloop.run(main())
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
""")


def test_ctrl_c_under_run_cancels_main_task():
    proc = subprocess.run([sys.executable, "-c", RUNNER_CHILD], capture_output=True, text=True, timeout=20)
    lines = proc.stdout.split()
    assert lines[-1] == "KeyboardInterrupt", proc.stderr
    if sys.version_info >= (3, 11):  # asyncio.Runner cancels the main task first
        assert lines == ["cancelled", "KeyboardInterrupt"]
