"""loop.metrics(): a pyloop extension (asyncio has no such method), so these tests run
on pyloop only; the workloads are the ones the parity tests run on both loops."""

import asyncio
import os
import signal
import socket
import sys
import threading
import time

import pytest

import pyloop

KEYS = {
    "utilization", "utilization_since_last", "running_time", "busy_time", "idle_time", "iterations",
    "callbacks", "ready", "timers_pending", "handles", "bytes_read", "bytes_written", "lookups",
    "lookups_pending", "lookups_in_flight", "lookups_queued", "slowest_callback", "slowest_callback_group",
    "slowest_callback_repr", "slowest_callback_name", "slowest_callback_name_seconds",
}
KINDS = {"poller", "tcp", "unix", "udp", "pipe", "process", "sock", "signal"}


def run(loop, coro):
    return loop.run_until_complete(coro)


def test_asyncio_has_no_metrics():
    loop = asyncio.SelectorEventLoop()
    try:
        assert not hasattr(loop, "metrics")  # if asyncio grows one, match its shape
    finally:
        loop.close()


def test_fields_before_the_first_run(ploop):
    m = ploop.metrics()
    assert set(m) == KEYS
    assert set(m["handles"]) == KINDS
    assert m["utilization"] is None and m["utilization_since_last"] is None
    assert m["running_time"] == m["busy_time"] == m["idle_time"] == 0
    assert m["iterations"] == m["callbacks"] == m["bytes_read"] == m["bytes_written"] == 0
    assert all(v == 0 for v in m["handles"].values())
    assert m["slowest_callback"] == 0 and m["slowest_callback_group"] == 0
    assert m["slowest_callback_repr"] is None
    assert m["slowest_callback_name"] is None and m["slowest_callback_name_seconds"] is None


def test_sleeping_loop_is_idle(ploop):
    ploop.metrics()
    run(ploop, asyncio.sleep(0.3))
    m = ploop.metrics()
    assert m["utilization_since_last"] < 0.2, m
    assert m["idle_time"] > 0.2
    assert 0.29 <= m["running_time"] < 5
    assert m["busy_time"] + m["idle_time"] == pytest.approx(m["running_time"])


def test_busy_loop_is_busy(ploop):
    async def spin():
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            await asyncio.sleep(0)

    run(ploop, asyncio.sleep(0))
    ploop.metrics()
    run(ploop, spin())
    m = ploop.metrics()
    assert m["utilization_since_last"] > 0.8, m
    assert m["callbacks"] > 1000
    assert m["iterations"] >= 1


def test_utilization_since_last_covers_only_the_period(ploop):
    run(ploop, asyncio.sleep(0.2))
    ploop.metrics()
    ploop.call_soon(time.sleep, 0.2)  # a blocking callback: the loop is busy throughout
    run(ploop, asyncio.sleep(0))
    m = ploop.metrics()
    assert m["utilization_since_last"] > 0.8, m
    assert m["utilization"] < m["utilization_since_last"]  # the sleep before was idle


def test_slowest_callback(ploop):
    ploop.call_soon(time.sleep, 0.05)
    run(ploop, asyncio.sleep(0.01))
    m = ploop.metrics()
    assert 0.05 <= m["slowest_callback"] < 1
    assert m["slowest_callback_group"] >= 1
    if not ploop.get_debug():  # (PYTHONASYNCIODEBUG=1)
        assert m["slowest_callback_repr"] is None  # only in debug mode
    # The period starts again: quick callbacks only now.
    run(ploop, asyncio.sleep(0.01))
    m = ploop.metrics()
    assert m["slowest_callback"] < 0.05


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def named(m):
    return m["slowest_callback_name"], m["slowest_callback_group"]


def one_pass(loop, n, odd_at, odd, other):
    """n callbacks in one pass, the one at odd_at `odd`, the others `other`: the
    metrics after it."""
    for i in range(n):
        loop.call_soon(odd if i == odd_at else other)
    run(loop, asyncio.sleep(0))
    return loop.metrics()


def test_slowest_callback_is_named(ploop):
    def blocking_callback():
        time.sleep(0.03)

    ploop.call_soon(blocking_callback)
    run(ploop, asyncio.sleep(0.01))
    m = ploop.metrics()
    assert named(m) == ("test_slowest_callback_is_named.<locals>.blocking_callback()", 1)
    assert m["slowest_callback_name_seconds"] == m["slowest_callback"] >= 0.03
    m = ploop.metrics()  # a new period
    assert m["slowest_callback_name"] is None and m["slowest_callback_name_seconds"] is None


def test_slowest_task_step_is_named_by_its_task_and_coroutine(ploop):
    async def handler():
        await asyncio.sleep(0)
        time.sleep(0.03)  # a blocking call in a coroutine

    async def main():
        await asyncio.gather(ploop.create_task(handler(), name="the-handler"), asyncio.sleep(0.01))

    ploop.metrics()
    run(ploop, main())
    m = ploop.metrics()
    assert named(m) == ("the-handler: test_slowest_task_step_is_named_by_its_task_and_coroutine.<locals>.handler()", 1)
    assert m["slowest_callback_name_seconds"] == m["slowest_callback"] >= 0.03


def test_long_callbacks_are_each_timed_and_named(ploop):
    # Callbacks of 50 us (a server's handlers): after the first group, each is timed on
    # its own, so a slow one among them is measured and named exactly.
    def handler():
        spin(50e-6)

    def slow_handler():
        spin(0.02)

    m = one_pass(ploop, 40, 30, slow_handler, handler)
    assert named(m) == ("test_long_callbacks_are_each_timed_and_named.<locals>.slow_handler()", 1)
    assert 0.02 <= m["slowest_callback"] == m["slowest_callback_name_seconds"] < 1


def test_a_slow_callback_among_short_ones_is_named_when_it_runs_again(ploop):
    # Short callbacks are timed in groups: the first slow one is found in its group
    # (unnamed, or named after a callback timed alone that is faster); the loop then
    # times the next callbacks alone, and the same work, run again, is named.
    def quick():
        pass

    def slow_again():
        time.sleep(0.02)

    def slow_first():
        time.sleep(0.01)

    m = one_pass(ploop, 50, 37, slow_first, quick)
    assert 0.01 <= m["slowest_callback"] < 1
    if m["slowest_callback_group"] == 1:
        assert m["slowest_callback_name"].endswith("slow_first()")
    else:
        assert m["slowest_callback_name"] is None or m["slowest_callback_name_seconds"] < 0.01, m
    m = one_pass(ploop, 20, 17, slow_again, quick)
    assert named(m) == ("test_a_slow_callback_among_short_ones_is_named_when_it_runs_again.<locals>.slow_again()", 1)
    assert 0.02 <= m["slowest_callback"] == m["slowest_callback_name_seconds"] < 1


def test_a_name_that_calls_metrics(ploop):
    # Naming runs Python code (a task's get_name): here it asks for the metrics itself,
    # which ends the period. The inner call sees the period before; the outer one the
    # slow step, with its name.
    inner = []

    class Task(asyncio.Task):
        def get_name(self):
            inner.append(ploop.metrics())
            return "odd"

    async def blocking():
        time.sleep(0.02)

    ploop.set_task_factory(lambda loop, coro, **kw: Task(coro, loop=loop, **kw))
    ploop.metrics()
    run(ploop, blocking())
    m = ploop.metrics()
    assert len(inner) >= 1 and all(set(i) == KEYS for i in inner)
    assert named(m) == ("odd: test_a_name_that_calls_metrics.<locals>.blocking()", 1)
    assert m["slowest_callback"] >= 0.02


def test_slowest_callback_among_many(ploop):
    # Dozens of callbacks in one pass: the slow one is found within its group.
    for i in range(50):
        ploop.call_soon(time.sleep, 0.03 if i == 37 else 0)
    run(ploop, asyncio.sleep(0))
    m = ploop.metrics()
    assert 0.03 <= m["slowest_callback"] < 1
    assert 1 <= m["slowest_callback_group"] <= 8


def test_slowest_callback_in_debug_mode_has_its_repr(ploop):
    ploop.set_debug(True)
    ploop.slow_callback_duration = 10  # no slow-callback warning in the log
    ploop.call_soon(time.sleep, 0.03)
    run(ploop, asyncio.sleep(0.01))
    m = ploop.metrics()
    assert m["slowest_callback"] >= 0.03
    assert m["slowest_callback_group"] == 1
    assert "sleep" in m["slowest_callback_repr"], m["slowest_callback_repr"]
    assert named(m) == ("sleep()", 1)
    assert ploop.metrics()["slowest_callback_repr"] is None  # reset by the call before


def test_callbacks_and_timers(ploop):
    before = ploop.metrics()["callbacks"]
    for _ in range(100):
        ploop.call_soon(lambda: None)
    handles = [ploop.call_later(100, lambda: None) for _ in range(5)]
    handles[0].cancel()
    handles[1].cancel()
    run(ploop, asyncio.sleep(0))
    m = ploop.metrics()
    assert m["callbacks"] - before >= 100
    assert m["timers_pending"] == 3
    ploop.call_soon(lambda: None)
    assert ploop.metrics()["ready"] == 1
    for h in handles:
        h.cancel()


ECHO_N, ECHO_SIZE = 50, 1000


async def echo_workload(loop, family):
    async def handle(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    if family == socket.AF_UNIX:
        import tempfile
        path = os.path.join(tempfile.mkdtemp(), "s")
        server = await asyncio.start_unix_server(handle, path)
        reader, writer = await asyncio.open_unix_connection(path)
    else:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
    during = loop.metrics()
    for _ in range(ECHO_N):
        writer.write(b"x" * ECHO_SIZE)
        await reader.readexactly(ECHO_SIZE)
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.01)
    return during


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_UNIX], ids=["tcp", "unix"])
def test_echo_counts(ploop, family):
    kind = "unix" if family == socket.AF_UNIX else "tcp"
    m0 = ploop.metrics()
    during = run(ploop, echo_workload(ploop, family))
    m1 = ploop.metrics()
    # The listening socket and both ends of the connection.
    assert during["handles"][kind] == 3, during["handles"]
    assert m1["handles"][kind] == 0, m1["handles"]
    # Client and server are both on this loop: each byte is written and read twice.
    assert m1["bytes_written"] - m0["bytes_written"] == 2 * ECHO_N * ECHO_SIZE
    assert m1["bytes_read"] - m0["bytes_read"] == 2 * ECHO_N * ECHO_SIZE
    assert m1["callbacks"] - m0["callbacks"] >= 2 * ECHO_N
    assert m1["iterations"] - m0["iterations"] >= ECHO_N


def test_udp_and_sock_counts(ploop):
    async def main():
        received = asyncio.Queue()

        class Echo(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                received.put_nowait(data)

        transport, _ = await ploop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        addr = transport.get_extra_info("sockname")
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setblocking(False)
        before = ploop.metrics()
        await ploop.sock_sendto(client, b"a" * 100, addr)
        transport.sendto(b"b" * 30, client.getsockname())
        assert await received.get() == b"a" * 100
        assert await ploop.sock_recv(client, 1000) == b"b" * 30
        wait = asyncio.ensure_future(ploop.sock_recv(client, 1000))
        await asyncio.sleep(0.01)
        during = ploop.metrics()
        wait.cancel()
        transport.close()
        client.close()
        await asyncio.sleep(0.01)
        return before, during, ploop.metrics()

    before, during, after = run(ploop, main())
    assert during["handles"]["udp"] == 1 and during["handles"]["sock"] == 1, during["handles"]
    assert after["handles"]["udp"] == 0 and after["handles"]["sock"] == 0, after["handles"]
    assert during["bytes_written"] - before["bytes_written"] == 130
    assert during["bytes_read"] - before["bytes_read"] == 130


def test_pollers_signals_pipes_processes(ploop):
    async def main():
        a, b = socket.socketpair()
        ploop.add_reader(a, lambda: None)
        ploop.add_writer(b, lambda: None)
        ploop.add_signal_handler(signal.SIGUSR1, lambda: None)
        rfd, wfd = os.pipe()
        pipe = os.fdopen(rfd, "rb")
        transport, _ = await ploop.connect_read_pipe(asyncio.Protocol, pipe)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import sys; sys.stdin.read()",
                                                    stdin=asyncio.subprocess.PIPE)
        m = ploop.metrics()["handles"]
        proc.stdin.close()
        await proc.wait()
        transport.close()
        os.close(wfd)
        ploop.remove_reader(a)
        ploop.remove_writer(b)
        ploop.remove_signal_handler(signal.SIGUSR1)
        a.close()
        b.close()
        await asyncio.sleep(0.01)
        return m, ploop.metrics()["handles"]

    during, after = run(ploop, main())
    assert during["poller"] == 2 and during["signal"] == 1, during
    assert during["pipe"] == 2, during  # the read pipe and the child's stdin
    assert during["process"] == (1 if hasattr(os, "pidfd_open") else 0), during
    assert all(v == 0 for v in after.values()), after


def test_lookups(ploop):
    async def main():
        m0 = ploop.metrics()
        await ploop.getaddrinfo("localhost", 80)
        await ploop.getaddrinfo("127.0.0.1", 80)  # numeric: answered at once, not a lookup
        return m0, ploop.metrics()

    m0, m1 = run(ploop, main())
    assert m1["lookups"] - m0["lookups"] == 1
    assert m1["lookups_pending"] == m1["lookups_in_flight"] == m1["lookups_queued"] == 0


def test_lookups_in_flight(ploop):
    # More lookups than pool threads at once: some wait in libuv's queue.
    async def main():
        tasks = [ploop.create_task(ploop.getaddrinfo("localhost", i)) for i in range(1, 41)]
        await asyncio.sleep(0)
        m = ploop.metrics()
        await asyncio.gather(*tasks)
        return m

    m = run(ploop, main())
    # all 40 started (the tasks ran before main() resumed) and none answered yet (the
    # loop has not polled since): pool threads take what they can, the rest wait
    threads = pyloop._dns.pool_size()[0]
    assert (m["lookups_pending"], m["lookups_in_flight"], m["lookups_queued"]) == (40, threads, 40 - threads)
    assert ploop.metrics()["lookups_pending"] == 0


def test_from_another_thread_while_the_loop_waits(ploop):
    seen = []

    def ask():
        time.sleep(0.2)
        seen.append(ploop.metrics())

    t = threading.Thread(target=ask)
    ploop.metrics()
    t.start()
    run(ploop, asyncio.sleep(0.4))
    t.join()
    (m,) = seen
    # Asked during the wait: the wait so far counts as idle.
    assert m["idle_time"] > 0.15 and m["utilization_since_last"] < 0.3, m


def test_closed_loop_still_reports(ploop):
    run(ploop, asyncio.sleep(0.01))
    ploop.close()
    m = ploop.metrics()
    assert m["running_time"] > 0 and m["iterations"] >= 1
    assert all(v == 0 for v in m["handles"].values())


def test_called_from_callbacks_and_a_flood(ploop):
    # metrics() inside callbacks, many times, among threads queueing callbacks.
    stop = threading.Event()

    def flood():
        while not stop.is_set():
            ploop.call_soon_threadsafe(ploop.metrics)

    threads = [threading.Thread(target=flood) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        run(ploop, asyncio.sleep(0.2))
    finally:
        stop.set()
        for t in threads:
            t.join()
    run(ploop, asyncio.sleep(0))
    assert ploop.metrics()["callbacks"] > 100


def test_aiohttp_logging_example(tmp_path):
    # docs/examples/metrics_aiohttp.py: a line per period, with the requests' work in it.
    import re
    import subprocess
    import urllib.request
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, os.path.join(root, "docs", "examples", "metrics_aiohttp.py"),
                             "--port", str(port), "--every", "0.3"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # aiohttp's banner is a print()
    try:
        lines = []
        deadline = time.monotonic() + 30
        while "Running on" not in "".join(lines) and time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
        for _ in range(10):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
                assert resp.read() == b"Hello, world"
        busy = None
        while busy is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            m = re.search(r"loop utilization +([\d.]+)%  callbacks +(\d+)  read +(\d+) B  written +(\d+) B", line)
            if m and int(m.group(3)) > 0:
                busy = m
        assert busy, "".join(lines)
        assert float(busy.group(1)) > 0 and int(busy.group(2)) >= 10 and int(busy.group(4)) > int(busy.group(3))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_debug_mode_callback_raising_systemexit(ploop):
    # The slowest callback's repr is not taken with the exception that leaves the loop set.
    ploop.set_debug(True)
    ploop.slow_callback_duration = 10

    def leave():
        time.sleep(0.02)
        raise SystemExit(7)

    ploop.call_soon(leave)
    with pytest.raises(SystemExit) as info:
        ploop.run_forever()
    assert info.value.code == 7
    ploop.metrics()


def test_repr_that_calls_metrics(ploop):
    # A callback argument whose repr (taken in debug mode) asks for the metrics itself.
    inner = []

    class Odd:
        def __repr__(self):
            inner.append(ploop.metrics())
            return "Odd()"

    ploop.set_debug(True)
    ploop.slow_callback_duration = 10
    ploop.call_soon(time.sleep, 0.01)
    ploop.call_soon(lambda o: time.sleep(0.03), Odd())
    run(ploop, asyncio.sleep(0))
    m = ploop.metrics()  # no crash, no leak (make sanitize)
    assert set(m) == KEYS
    # The slowest callback's repr is taken when it becomes the slowest, before its time
    # counts: the repr's own metrics() call sees the 10 ms sleep as the slowest, time and
    # repr alike, and ends that period; the 30 ms callback is the next one's slowest.
    assert [set(i) for i in inner] == [KEYS]
    assert 0.01 <= inner[0]["slowest_callback"] < 0.03
    assert inner[0]["slowest_callback_repr"].startswith("<Handle sleep(0.01) created at ")
    assert m["slowest_callback"] >= 0.03
    assert ".<lambda>(Odd()) at " in m["slowest_callback_repr"], m["slowest_callback_repr"]
    assert named(m) == ("test_repr_that_calls_metrics.<locals>.<lambda>()", 1)
    assert inner[0]["slowest_callback_name"] == "sleep()"
