"""python -m pyloop.threads --trace: a Chrome Trace Event Format trace of a real program
on each loop, checked by tests/trace_format.py (written from the format's
specification), and that checker's own ability to refuse a malformed trace."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from trace_format import check

from test_threads import DNS3, LOOPS, tool


def test_the_checker_refuses_what_a_consumer_cannot_read():
    good = {"traceEvents": [
        {"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "p"}},
        {"name": "outer", "ph": "X", "ts": 0, "dur": 10, "pid": 1, "tid": 2},
        {"name": "inner", "ph": "X", "ts": 2, "dur": 8, "pid": 1, "tid": 2},
        {"name": "ready", "ph": "C", "ts": 3, "pid": 1, "args": {"ready": 4}},
        {"name": "b", "ph": "B", "ts": 1, "pid": 1, "tid": 3}, {"ph": "E", "ts": 2, "pid": 1, "tid": 3},
        # back to back, the first one's end a float's noise past the second's start
        {"name": "c", "ph": "X", "ts": 100.1, "dur": 0.30000000000001137, "pid": 1, "tid": 4},
        {"name": "d", "ph": "X", "ts": 100.4, "dur": 5, "pid": 1, "tid": 4},
    ], "displayTimeUnit": "ms"}
    assert check(good) == []
    bad = [
        [],  # not an object
        {"events": []},
        {"traceEvents": [{"name": "x", "ph": "Q", "ts": 0, "pid": 1, "tid": 1}]},
        {"traceEvents": [{"name": "x", "ph": "X", "ts": 0, "pid": 1, "tid": 1}]},  # no dur
        {"traceEvents": [{"name": "x", "ph": "X", "ts": -1, "dur": 1, "pid": 1, "tid": 1}]},
        {"traceEvents": [{"name": "x", "ph": "X", "ts": 0, "dur": 1, "pid": "1", "tid": 1}]},
        {"traceEvents": [{"name": 5, "ph": "X", "ts": 0, "dur": 1, "pid": 1, "tid": 1}]},
        {"traceEvents": [{"name": "a", "ph": "X", "ts": 0, "dur": 5, "pid": 1, "tid": 1},
                         {"name": "b", "ph": "X", "ts": 3, "dur": 5, "pid": 1, "tid": 1}]},  # overlap
        {"traceEvents": [{"name": "a", "ph": "X", "ts": 0, "dur": 5.002, "pid": 1, "tid": 1},
                         {"name": "b", "ph": "X", "ts": 5.001, "dur": 5, "pid": 1, "tid": 1}]},  # by 1 ns
        {"traceEvents": [{"name": "c", "ph": "C", "ts": 0, "pid": 1, "args": {"v": "7"}}]},
        {"traceEvents": [{"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {}}]},
        {"traceEvents": [{"name": "b", "ph": "B", "ts": 0, "pid": 1, "tid": 1}]},  # never ends
        {"traceEvents": [{"ph": "E", "ts": 0, "pid": 1, "tid": 1}]},
        {"traceEvents": [{"name": "i", "ph": "i", "s": "x", "ts": 0, "pid": 1, "tid": 1}]},
        {"traceEvents": [], "displayTimeUnit": "s"},
        {"traceEvents": [{"name": "x", "ph": "X", "ts": float("nan"), "dur": 1, "pid": 1, "tid": 1}]},
        {"traceEvents": [{"name": "l", "ph": "b", "cat": "lookup", "id": "1", "ts": 0, "pid": 1, "tid": 1}]},
        {"traceEvents": [{"name": "l", "ph": "e", "cat": "lookup", "id": "1", "ts": 0, "pid": 1, "tid": 1}]},
        {"traceEvents": [{"name": "l", "ph": "b", "ts": 0, "pid": 1, "tid": 1}]},  # no id, no category
    ]
    for trace in bad:
        assert check(trace), trace


def test_a_trace_of_each_loop(tmp_path):
    out = tmp_path / "trace.json"
    proc = tool(tmp_path, DNS3, "--compare", "--trace", str(out))
    assert f"trace: {out}" in proc.stderr
    trace = json.loads(out.read_text())
    assert check(trace) == []
    events = trace["traceEvents"]
    processes = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert sorted(name.split(" on ")[1].split(" ")[0] for name in processes.values()) == sorted(LOOPS)
    assert sorted(trace["otherData"]["loops"]) == sorted(LOOPS)
    by_loop = {name.split(" on ")[1].split(" ")[0]: pid for pid, name in processes.items()}
    tracks = {}
    for e in events:
        if e["name"] == "thread_name":
            tracks.setdefault(e["pid"], {})[e["tid"]] = e["args"]["name"]
    # asyncio resolves on its default executor: a Python thread, started from getaddrinfo
    asyncio_tracks = tracks[by_loop["asyncio"]]
    assert "MainThread" in asyncio_tracks.values()
    executor = [tid for tid, name in asyncio_tracks.items()
                if name.endswith("[Python thread; the loop's default executor (ThreadPoolExecutor)]")]
    assert 1 <= len(executor) <= 3
    for tid in executor:
        life = [e for e in events if e["pid"] == by_loop["asyncio"] and e.get("tid") == tid and e.get("cat") == "thread"]
        assert len(life) == 1 and life[0]["args"]["started_from"] == "loop.run_in_executor <- loop.getaddrinfo <- main"
    # pyloop resolves on libuv's pool: no Python thread, libuv's workers
    pyloop_tracks = tracks[by_loop["pyloop"]]
    assert not any("Python thread" in name for name in pyloop_tracks.values())
    assert any(name.startswith("libuv-worker") and name.endswith("[libuv's pool]") for name in pyloop_tracks.values())
    # every thread's life is a slice, and its CPU use a counter within it
    for pid, names in tracks.items():
        for tid, label in names.items():
            lives = [e for e in events if e.get("ph") == "X" and e["pid"] == pid and e["tid"] == tid
                     and e.get("cat") == "thread"]
            assert len(lives) == 1
            start, end = lives[0]["ts"], lives[0]["ts"] + lives[0]["dur"]
            cpu = [e for e in events if e.get("ph") == "C" and e["pid"] == pid and e["name"] == f"CPU %: {label} ({tid})"]
            assert cpu and all(start <= e["ts"] <= end and 0 <= e["args"]["cpu"] <= 100 for e in cpu)
            if label == "MainThread":
                assert max(e["args"]["cpu"] for e in cpu) > 0


@pytest.mark.parametrize("where", ["missing/dir/trace.json"])
def test_a_trace_that_cannot_be_written(tmp_path, where):
    proc = tool(tmp_path, "print('ok')", "--trace", str(tmp_path / where), check=False)
    assert proc.returncode != 0
    assert f"--trace: no such directory: {tmp_path / 'missing' / 'dir'}" in proc.stderr


LOOP_STORY = """
import asyncio, socket, sys, time

def busy_callback():
    end = time.monotonic() + 0.005
    while time.monotonic() < end:
        pass

async def main():
    loop = asyncio.get_running_loop()
    loop.call_soon(busy_callback)
    await asyncio.sleep(0.03)                       # the loop waits in its poll
    await loop.getaddrinfo("localhost", 8080)       # on libuv's pool
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()
    a, b = socket.socketpair()
    r, w = await asyncio.open_connection(sock=a)
    w.write(b"x" * 1000)
    await w.drain()
    b.setblocking(False)
    assert len(await loop.sock_recv(b, 1000)) > 0
    w.close()
    b.close()
    await asyncio.sleep(0.01)

asyncio.run(main())
"""


def test_what_the_pyloop_loop_records_of_itself(tmp_path):
    out = tmp_path / "trace.json"
    tool(tmp_path, LOOP_STORY, "--loop", "pyloop", "--trace", str(out))
    trace = json.loads(out.read_text())
    assert check(trace) == []
    events = trace["traceEvents"]
    main_tid = next(e["tid"] for e in events if e["name"] == "thread_name" and e["args"]["name"] == "MainThread")
    # the slow callback, named by its function, on the loop thread
    slow = [e for e in events if e.get("cat") == "callback" and e["name"] == "busy_callback()"]
    assert len(slow) == 1 and slow[0]["tid"] == main_tid and slow[0]["dur"] >= 5000
    # a task step names its task and coroutine
    assert any(e.get("cat") == "callback" and e["name"] == "Task-1: main()" for e in events)
    # the wait in the poll: the 30 ms sleep, less the 5 ms callback that ran first (its
    # timer was set before it: about 25 ms, a little less on a loaded machine)
    idle = [e for e in events if e.get("cat") == "idle" and e["tid"] == main_tid]
    assert any(e["dur"] >= 20_000 for e in idle), idle
    # the lookup, from submission to answer
    lookups = [e for e in events if e.get("cat") == "lookup"]
    begin = [e for e in lookups if e["ph"] == "b"]
    assert len(begin) == 1 and begin[0]["name"] == "lookup localhost:8080"
    assert begin[0]["args"]["host"] == "localhost" and begin[0]["args"]["port"] == "8080"
    assert begin[0]["args"]["answer"].endswith("answer(s)")
    (end,) = [e for e in lookups if e["ph"] == "e"]
    # ... and the call itself, on the libuv pool thread that made it, within that wait
    (call,) = [e for e in lookups if e["ph"] == "X"]
    assert call["name"] == "lookup localhost:8080" and call["args"] == begin[0]["args"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name" and e["pid"] == call["pid"]}
    assert names[call["tid"]].startswith("libuv-worker"), names
    assert begin[0]["ts"] <= call["ts"] <= call["ts"] + call["dur"] <= end["ts"]
    # the child process, from spawn to exit
    procs = [e for e in events if e.get("cat") == "process" and e["ph"] == "b"]
    assert len(procs) == 1 and procs[0]["args"]["returncode"] == 0 and "'-c', 'pass'" in procs[0]["args"]["args"]
    # the counters
    counters = {e["name"] for e in events if e.get("cat") == "counter"}
    assert counters == {"ready callbacks", "open handles", "bytes read", "bytes written"}
    written = [e["args"]["bytes written"] for e in events if e["name"] == "bytes written"]
    assert written == sorted(written) and written[-1] >= 1000


LOOKUPS = """
import asyncio, socket, sys
import pyloop

async def main():
    loop = asyncio.get_running_loop()
    print(sorted(await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)))
    print(await loop.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV))
    for host in ["", "a." * 130, "no-such-host.invalid"]:  # empty, over 255 bytes, unknown
        try:
            await loop.getaddrinfo(host, 80)
        except socket.gaierror as e:
            print(type(e).__name__, e.errno)
    # cancelled while the pool is busy (four slow lookups ahead of it)
    slow = [asyncio.ensure_future(loop.getaddrinfo(f"slow-{i}.invalid", 80)) for i in range(4)]
    t = asyncio.ensure_future(loop.getaddrinfo("localhost", 81))
    await asyncio.sleep(0)
    t.cancel()
    print([type(r).__name__ for r in await asyncio.gather(t, return_exceptions=True)])
    await asyncio.gather(*slow, return_exceptions=True)

pyloop.run(main())
# the loop closed with a lookup still on the pool: nothing waits for it, nothing crashes
loop = pyloop.new_event_loop()
fut = asyncio.ensure_future(loop.getaddrinfo("also-slow.invalid", 80), loop=loop)
loop.run_until_complete(asyncio.sleep(0.001))
loop.close()
print("closed")
"""


def test_lookups_answer_the_same_when_traced(tmp_path):
    # Traced, a lookup is a work item of libuv's pool making the same libuv call on the
    # pool thread: the answers and errors must be those of the untraced loop (whose own
    # are tests/test_dns.py's, against asyncio).
    script = tmp_path / "lookups.py"
    script.write_text(textwrap.dedent(LOOKUPS))
    outs = []
    for traced in (False, True):
        env = {k: v for k, v in os.environ.items() if k != "PYLOOP_TRACE"}
        if traced:
            env["PYLOOP_TRACE"] = "0.0001"
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout)
    assert outs[0] == outs[1]
    lines = outs[0].splitlines()
    assert lines[1] == "('127.0.0.1', '80')"
    # (the empty and the long name: EAI_NONAME; the unknown one, as this machine's
    # resolver answers)
    assert lines[2:4] == [f"gaierror {socket.EAI_NONAME}"] * 2 and lines[4].startswith("gaierror ")
    assert lines[5] == "['CancelledError']" and lines[-1] == "closed"


def test_a_trace_drawn(tmp_path):
    # python -m pyloop.threads.draw_trace: the lanes of a known script's trace, and its PNG
    pytest.importorskip("matplotlib")
    from pyloop.threads import draw_trace
    out = tmp_path / "trace.json"
    tool(tmp_path, LOOP_STORY, "--loop", "pyloop", "--trace", str(out))
    trace = json.loads(out.read_text())
    lanes = draw_trace.lanes_of(trace)
    titles = [title for title, _, _ in lanes]
    assert titles[0] == "MainThread" and "lookups, from asked to answered" in titles
    assert "child processes" in titles and titles[-1] == "ready callbacks (counter)"
    main = lanes[0][2]
    assert any(name == "busy_callback()" and cat == "callback" and b - a >= 5 for a, b, name, cat, _ in main)
    workers = [sl for title, kind, sl in lanes if title.startswith("libuv-worker")]
    assert [name for sl in workers for _, _, name, cat, _ in sl if cat == "lookup"] == ["lookup localhost:8080"]
    png = tmp_path / "trace.png"
    proc = subprocess.run([sys.executable, "-m", "pyloop.threads.draw_trace", str(out), "-o", str(png), "--from", "0",
                           "--to", "500"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--from", "5", "--to", "5"], "nothing to draw: the window is empty"),
    (["--from", "nan"], "nothing to draw: the window is empty"),
    (["--to", "-1"], "nothing to draw: the window is empty"),
])
def test_draw_trace_bad_window(tmp_path, args, message):
    pytest.importorskip("matplotlib")
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps({"traceEvents": [
        {"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "p"}},
        {"name": "thread_name", "ph": "M", "pid": 1, "tid": 7, "args": {"name": "MainThread"}},
        {"name": "MainThread", "cat": "thread", "ph": "X", "ts": 0, "dur": 10000, "pid": 1, "tid": 7}]}))
    proc = subprocess.run([sys.executable, "-m", "pyloop.threads.draw_trace", str(trace), "-o", str(tmp_path / "p.png"),
                           *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "p.png").exists()


def test_draw_trace_not_a_trace(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"runs": []}')
    proc = subprocess.run([sys.executable, "-m", "pyloop.threads.draw_trace", str(bad), "-o", str(tmp_path / "p.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not a trace of python -m pyloop.threads --trace" in proc.stderr, proc.stderr
