"""python -m pyloop.threads --trace: a Chrome Trace Event Format trace of a real program
on each loop, checked by tests/trace_format.py (written from the format's
specification), and that checker's own ability to refuse a malformed trace."""

import json

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
        {"traceEvents": [{"name": "c", "ph": "C", "ts": 0, "pid": 1, "args": {"v": "7"}}]},
        {"traceEvents": [{"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {}}]},
        {"traceEvents": [{"name": "b", "ph": "B", "ts": 0, "pid": 1, "tid": 1}]},  # never ends
        {"traceEvents": [{"ph": "E", "ts": 0, "pid": 1, "tid": 1}]},
        {"traceEvents": [{"name": "i", "ph": "i", "s": "x", "ts": 0, "pid": 1, "tid": 1}]},
        {"traceEvents": [], "displayTimeUnit": "s"},
        {"traceEvents": [{"name": "x", "ph": "X", "ts": float("nan"), "dur": 1, "pid": 1, "tid": 1}]},
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
    # every thread's life is a slice, and its time on a CPU lies inside it
    for pid, names in tracks.items():
        for tid in names:
            lives = [e for e in events if e.get("ph") == "X" and e["pid"] == pid and e["tid"] == tid
                     and e.get("cat") == "thread"]
            assert len(lives) == 1
            start, end = lives[0]["ts"], lives[0]["ts"] + lives[0]["dur"]
            for e in events:
                if e.get("ph") == "X" and e["pid"] == pid and e["tid"] == tid and e.get("cat") == "cpu":
                    assert start <= e["ts"] and e["ts"] + e["dur"] <= end
                    assert 0 < e["args"]["cpu_share"] <= 1


@pytest.mark.parametrize("where", ["missing/dir/trace.json"])
def test_a_trace_that_cannot_be_written(tmp_path, where):
    proc = tool(tmp_path, "print('ok')", "--trace", str(tmp_path / where), check=False)
    assert proc.returncode != 0
    assert f"--trace: no such directory: {tmp_path / 'missing' / 'dir'}" in proc.stderr
