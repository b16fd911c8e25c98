"""loop.set_stall_threshold(): a pyloop extension (asyncio has nothing like it: its debug
mode names a slow callback only after it returned), so these tests run on pyloop only.
A stall is one callback or task step that holds the loop longer than the threshold; it
must be logged while the loop is still blocked, with the frame the loop thread is in,
once, and again with the total when it ends."""

import asyncio
import ctypes
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import pyloop
from conftest import needs_module

THRESHOLD = 0.2
MARGIN = 0.25  # sampling (threshold/8, 25 ms) and scheduling on a loaded machine (CI runs 3 legs on 2 CPUs)


class Records(logging.Handler):
    """asyncio's WARNING records, each with the monotonic time it was emitted."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.items = []

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Event loop"):  # (not debug mode's own slow-callback reports)
            self.items.append((time.monotonic(), message))

    def blocked(self):
        return [(t, m) for t, m in self.items if m.startswith("Event loop blocked for")]

    def ended(self):
        return [(t, m) for t, m in self.items if m.startswith("Event loop was blocked for")]


@pytest.fixture
def records():
    r = Records()
    log = logging.getLogger("asyncio")
    log.addHandler(r)
    try:
        yield r
    finally:
        log.removeHandler(r)


def seconds_in(message):
    return float(message.split(" seconds")[0].rsplit(" ", 1)[1])


def test_asyncio_has_no_stall_threshold():
    loop = asyncio.SelectorEventLoop()
    try:
        assert not hasattr(loop, "set_stall_threshold")  # if asyncio grows one, match it
    finally:
        loop.close()


def test_off_by_default_and_the_values_it_takes(ploop, monkeypatch):
    monkeypatch.delenv("PYLOOP_STALL_THRESHOLD", raising=False)
    fresh = pyloop.new_event_loop()
    try:
        assert fresh.get_stall_threshold() is None
    finally:
        fresh.close()
    ploop.set_stall_threshold(0.25)
    assert ploop.get_stall_threshold() == 0.25
    ploop.set_stall_threshold(2)
    assert ploop.get_stall_threshold() == 2.0
    ploop.set_stall_threshold(None)
    assert ploop.get_stall_threshold() is None
    for bad in (0, -1, 0.0, float("nan"), float("inf"), -float("inf"), 10 ** 400):
        with pytest.raises(ValueError, match="positive"):
            ploop.set_stall_threshold(bad)
    for bad in ("1", b"1", True, [1], object()):
        with pytest.raises(TypeError, match="number of seconds or None"):
            ploop.set_stall_threshold(bad)
    assert ploop.get_stall_threshold() is None


def spin_in_python(seconds, times):
    times.append(time.monotonic())
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # the frame the warning must show
        pass
    times.append(time.monotonic())


def test_stuck_in_python_is_reported_while_it_runs(ploop, records):
    ploop.set_stall_threshold(THRESHOLD)
    times = []

    async def main():
        ploop.call_soon(spin_in_python, 0.8, times)
        await asyncio.sleep(0.05)

    ploop.run_until_complete(main())
    start, end = times
    (t, message), = records.blocked()
    assert THRESHOLD <= t - start <= THRESHOLD + MARGIN, (t - start, message)
    assert t < end  # while it was still blocked
    assert THRESHOLD <= seconds_in(message) <= THRESHOLD + MARGIN
    assert "stall threshold 0.200" in message
    assert "<callback spin_in_python() at " in message
    assert f'File "{__file__}"' in message
    assert ", in spin_in_python\n    while time.monotonic() < end:  # the frame the warning must show" in message
    # The stack starts at the callback: not the test, nor run_forever, nor what called it.
    assert message.split("at:\n", 1)[1].startswith(f'  File "{__file__}", line ')
    assert "in run_forever" not in message and "in run_until_complete" not in message
    (t2, message2), = records.ended()
    assert t2 >= end
    assert 0.75 <= seconds_in(message2) <= 1.2
    assert message2.endswith("in all by <callback spin_in_python() at " + message.split("<callback spin_in_python() at ")[1].split(">")[0] + ">")


def test_a_task_step_blocking_in_a_system_call_is_named_by_its_task(ploop, records):
    ploop.set_stall_threshold(THRESHOLD)
    times = []

    async def handler_that_sleeps():
        times.append(time.monotonic())
        time.sleep(0.6)  # blocking the loop
        times.append(time.monotonic())

    async def main():
        await ploop.create_task(handler_that_sleeps(), name="the-handler")

    ploop.run_until_complete(main())
    start, end = times
    (t, message), = records.blocked()
    assert THRESHOLD <= t - start <= THRESHOLD + MARGIN and t < end
    assert "by <Task pending name='the-handler' coro=<test_a_task_step_blocking_in_a_system_call_is_named_by_its_task.<locals>.handler_that_sleeps() running at" in message
    assert ", in handler_that_sleeps\n    time.sleep(0.6)  # blocking the loop" in message
    (_, message2), = records.ended()
    assert 0.55 <= seconds_in(message2) <= 1.0
    assert "name='the-handler'" in message2


def gil_holding_call(seconds):
    """A C call that holds the GIL for `seconds` of wall time, however loaded the machine
    is (no Python code runs inside it): libc's usleep through ctypes.PyDLL, which keeps
    the GIL across the call (a CPU-bound C call's length would depend on the load)."""
    usleep = ctypes.PyDLL(None).usleep
    return lambda: usleep(int(seconds * 1e6))


def test_stuck_in_c_code_that_holds_the_gil_is_reported_when_it_returns(ploop, records):
    ploop.set_stall_threshold(THRESHOLD)
    call = gil_holding_call(0.6)
    times = []

    def stuck_in_c():
        times.append(time.monotonic())
        call()
        times.append(time.monotonic())

    async def main():
        ploop.call_soon(stuck_in_c)
        await asyncio.sleep(0.05)

    ploop.run_until_complete(main())
    start, end = times
    assert end - start > THRESHOLD + MARGIN, "the C call was too short to test with"
    # Nothing could look while it ran: the first look is as it returns (a message in
    # the callback's last moments, before `end` is taken, is that look).
    assert all(t - start >= end - start - 0.1 for t, _ in records.items), (start, end, records.items)
    (_, message), = records.ended()
    assert "<callback test_stuck_in_c_code_that_holds_the_gil_is_reported_when_it_returns.<locals>.stuck_in_c() at " in message
    assert end - start - 0.05 <= seconds_in(message) <= end - start + MARGIN
    # The watch thread may get the GIL as the call returns, still in the callback: then it
    # shows the line of the C call, and the end's message says "in all".
    for _, m in records.blocked():
        assert "in stuck_in_c\n    call()" in m
    assert message.endswith("its stack could not be taken while it ran)") != bool(records.blocked())


def test_an_idle_loop_and_many_short_callbacks_are_no_stall(ploop, records):
    ploop.set_stall_threshold(0.1)

    async def main():
        await asyncio.sleep(0.4)  # waiting in the poll
        for _ in range(150):
            ploop.call_soon(time.sleep, 0.002)  # 0.3 s in one pass, none over 0.1
        await asyncio.sleep(0)
        await asyncio.sleep(0.05)

    ploop.run_until_complete(main())
    assert records.items == []


def test_reported_once_per_stall_and_for_each_stall(ploop, records):
    ploop.set_stall_threshold(0.1)
    times = []

    async def main():
        ploop.call_soon(spin_in_python, 0.6, times)
        ploop.call_soon(spin_in_python, 0.3, times)  # the next one in the same pass
        await asyncio.sleep(0.05)

    ploop.run_until_complete(main())
    assert len(records.blocked()) == 2 and len(records.ended()) == 2
    kinds = [m.split(" ")[2] for _, m in records.items]
    assert kinds == ["blocked", "was", "blocked", "was"]
    assert 0.55 <= seconds_in(records.ended()[0][1]) <= 0.8
    assert 0.25 <= seconds_in(records.ended()[1][1]) <= 0.5


def test_an_io_callback_that_blocks(ploop, records):
    ploop.set_stall_threshold(THRESHOLD)

    class Slow(asyncio.Protocol):
        def __init__(self):
            self.done = ploop.create_future()

        def data_received(self, data):
            time.sleep(0.5)  # blocking the loop
            self.done.set_result(data)

    async def main():
        import socket
        a, b = socket.socketpair()
        tr, pr = await ploop.connect_accepted_socket(Slow, a)
        b.send(b"x")
        assert await pr.done == b"x"
        tr.close()
        b.close()
        await asyncio.sleep(0.01)

    ploop.run_until_complete(main())
    (_, message), = records.blocked()
    assert ", in data_received\n    time.sleep(0.5)  # blocking the loop" in message
    (_, message2), = records.ended()
    assert 0.45 <= seconds_in(message2) <= 0.5 + MARGIN


def test_a_failing_callback_keeps_its_exception(ploop, records):
    ploop.set_stall_threshold(0.1)

    def spin_then_fail():
        spin_in_python(0.3, [])
        raise ZeroDivisionError("after the stall")

    async def main():
        ploop.call_soon(spin_then_fail)
        await asyncio.sleep(0.05)

    ploop.run_until_complete(main())
    assert len(records.blocked()) == 1 and len(records.ended()) == 1
    (context,) = ploop.test_errors
    assert isinstance(context["exception"], ZeroDivisionError)
    ploop.test_errors.clear()


def stall_tids():
    tids = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() == "pyloop-stall":
                    tids.append(int(tid))
        except FileNotFoundError:
            pass
    return tids


def stall_threads():
    return len(stall_tids())


def context_switches(tid):
    with open(f"/proc/self/task/{tid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])


def test_the_watch_thread_lives_from_a_run_until_off_or_closed(ploop, records):
    ploop.set_stall_threshold(1)
    assert stall_threads() == 0  # never run: no thread

    async def main():
        assert stall_threads() == 1
        ploop.set_stall_threshold(None)
        assert stall_threads() == 0
        ploop.set_stall_threshold(0.1)
        assert stall_threads() == 1
        spin_in_python(0.3, [])  # the step that turned it on again is watched

    ploop.run_until_complete(main())
    assert len(records.blocked()) == 1
    (tid,) = stall_tids()  # kept between runs
    time.sleep(0.05)  # (its next look, at most threshold/8 on, finds the loop stopped)
    switches = context_switches(tid)
    time.sleep(0.3)  # a stopped loop is no stall, and the thread does not wake for it
    assert context_switches(tid) == switches
    for _ in range(50):
        ploop.run_until_complete(asyncio.sleep(0))
    assert stall_tids() == [tid]  # one thread for every run
    assert len(records.blocked()) == 1

    async def stall():
        spin_in_python(0.3, [])

    ploop.run_until_complete(stall())  # and it still watches
    assert len(records.blocked()) == 2 and stall_tids() == [tid]
    ploop.set_stall_threshold(None)
    assert stall_threads() == 0  # off: gone, running or not
    ploop.set_stall_threshold(0.1)
    assert stall_threads() == 0  # on again: from the next run
    ploop.run_until_complete(asyncio.sleep(0))
    assert stall_threads() == 1
    ploop.close()
    assert stall_threads() == 0  # closed: gone
    ploop.set_stall_threshold(0.5)  # a closed loop only keeps the number
    assert stall_threads() == 0


def test_turned_off_during_a_stall(ploop, records):
    ploop.set_stall_threshold(0.1)

    def off_then_spin():
        ploop.set_stall_threshold(None)
        spin_in_python(0.3, [])

    async def main():
        ploop.call_soon(off_then_spin)
        await asyncio.sleep(0.05)

    ploop.run_until_complete(main())
    assert records.items == []


SCRIPT = """
import asyncio, time
async def main():
    time.sleep(0.5)
asyncio.run(main())
"""


@pytest.mark.parametrize("value", ["0.1", "abc", ""])
def test_the_environment_variable(tmp_path, value):
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYLOOP_STALL_THRESHOLD=value)
    proc = subprocess.run([sys.executable, "-m", "pyloop", "run", str(script)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    if value == "0.1":
        assert "Event loop blocked for " in proc.stderr and "(stall threshold 0.100)" in proc.stderr
        assert ", in main\n    time.sleep(0.5)" in proc.stderr
        assert "Event loop was blocked for " in proc.stderr
    else:
        assert "Event loop" not in proc.stderr
        if value:
            assert "RuntimeWarning: PYLOOP_STALL_THRESHOLD='abc' is not a positive number of seconds" in proc.stderr


def test_the_aiohttp_example(tmp_path):
    # docs/examples/stall_aiohttp.py: a slow handler and a blocking call inside a library,
    # each logged while it runs, at its own line.
    needs_module("aiohttp")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, os.path.join(root, "docs", "examples", "stall_aiohttp.py"), "--demo"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert err.count("Event loop blocked for ") == 2 and err.count("Event loop was blocked for ") == 2, err
    first, second = err.split("Event loop blocked for ")[1:]
    assert ", in build_report\n" in first  # (the list, the sort or the totals: all its own lines)
    assert "in latest\n    with urllib.request.urlopen(self.url, timeout=5) as reply:  # blocks the caller" in second
    # named by the task that ran the handler: aiohttp's connection task where it starts
    # handlers eagerly (3.12+), else the handler's own
    assert "by <Task pending name=" in first and " running at " in first
    # loop.metrics() at the end of the demo names the task step that blocked longest
    assert "app INFO slowest callback: Task-" in err and "(group of 1)" in err, err


def test_turned_on_and_off_from_another_thread_while_it_runs(ploop, records):
    stop = threading.Event()
    errors = []

    def toggle():
        try:
            while not stop.is_set():
                ploop.set_stall_threshold(0.05)
                ploop.set_stall_threshold(None)
        except BaseException as exc:  # the test fails on it below
            errors.append(exc)

    th = threading.Thread(target=toggle)
    th.start()

    async def main():
        for _ in range(100):
            await asyncio.sleep(0.001)

    try:
        ploop.run_until_complete(main())
    finally:
        stop.set()
        th.join(10)
    assert errors == [] and not th.is_alive()
    assert stall_threads() == 0
    ploop.set_stall_threshold(0.1)  # and it still works
    ploop.run_until_complete(asyncio.sleep(0))
    records.items.clear()

    async def stall():
        spin_in_python(0.3, [])

    ploop.run_until_complete(stall())
    assert len(records.blocked()) == 1 and len(records.ended()) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_the_watch_runs(ploop, records):
    # The child has no watch thread (only the forking thread survives a fork): turning
    # the watch off and on again there must not wait for the parent's thread, and the
    # child's own watch reports its stall.
    ploop.set_stall_threshold(0.1)

    async def main():
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # (3.12+: fork with threads running)
            pid = os.fork()
        if pid == 0:
            code = 3
            try:
                ploop.set_stall_threshold(None)
                ploop.set_stall_threshold(0.1)
                records.items.clear()
                spin_in_python(0.3, [])
                code = 0 if stall_threads() == 1 and len(records.blocked()) == 1 else 1
            finally:
                os._exit(code)
        _, status = await asyncio.get_running_loop().run_in_executor(None, os.waitpid, pid, 0)
        return os.waitstatus_to_exitcode(status)

    assert ploop.run_until_complete(main()) == 0
    assert stall_threads() == 1  # the parent's, kept for its next run
