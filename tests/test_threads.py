"""python -m pyloop.threads: real child processes on each loop, real lookups."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

from pyloop.threads import draw
from pyloop.threads.record import condensed_stack, merge

from conftest import EMULATED, missing

LOOPS = ["asyncio", "pyloop"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])
THREAD_FIELDS = {"tid", "kind", "name", "comm", "start", "end", "cpu", "busy", "started_from", "executor"}

DNS3 = """
import asyncio
async def main():
    loop = asyncio.get_running_loop()
    for port in (80, 81, 82):
        await loop.getaddrinfo("localhost", port)
    print(type(loop).__module__.split(".")[0])
asyncio.run(main())
"""


def tool(tmp_path, script_text, *args, check=True):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(script_text))
    # Not from the repository's root: the child must import the installed pyloop.
    proc = subprocess.run([sys.executable, "-m", "pyloop.threads", *args, str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def threads_of(run):
    """A run's threads, less qemu-user's own thread when the suite runs emulated (make
    wheels-test's aarch64 runs: conftest.EMULATED): an OS thread there from the start,
    named as the main thread."""
    threads = run["threads"]
    if not EMULATED:
        return threads
    main = threads[0]
    qemu = [t for t in threads if t["kind"] == "os" and t["comm"] == main["comm"] and t["start"] == 0]
    assert len(qemu) == 1, threads
    return [t for t in threads if t is not qemu[0]]


def run_json(tmp_path, script_text, *args):
    out = tmp_path / "out.json"
    proc = tool(tmp_path, script_text, "--json", str(out), *args)
    return json.loads(out.read_text()), proc


@pytest.mark.parametrize("loop", LOOPS)
def test_lookups_on_each_loop(tmp_path, loop):
    data, proc = run_json(tmp_path, DNS3, "--loop", loop)
    (run,) = data["runs"]
    assert run["loop"] == loop and run["exit_code"] == 0
    assert {"asyncio": "asyncio", "uvloop": "uvloop",
            "pyloop": "pyloop"}[loop] in proc.stdout.splitlines()  # the script ran on it
    threads = threads_of(run)
    assert threads[0]["kind"] == "main"
    python = [t for t in threads if t["kind"] == "python"]
    others = [t for t in threads if t["kind"] == "os"]
    if loop == "asyncio":
        workers = [t for t in python if t["executor"] and "default executor" in t["executor"]]
        assert workers, threads
        for t in workers:
            assert t["started_from"][:2] == ["loop.run_in_executor", "loop.getaddrinfo"], t
            assert "main" in t["started_from"]
        assert not others, others
    else:
        assert not python, python  # names resolve on libuv's C pool
        assert others, threads     # ... whose threads are OS threads
        assert all(t["started_from"] == [] for t in others)
        if loop == "pyloop":  # libuv 1.45+ names its pool threads (pyloop's bundled 1.52.1)
            assert len([t for t in others if t["comm"] == "libuv-worker"]) == 4, others  # the default pool
    for t in threads:
        assert THREAD_FIELDS <= set(t), t
        assert 0 <= t["start"] <= t["end"] <= run["duration"] + 0.01
        for a, b, frac in t["busy"]:
            assert 0 <= a <= b and 0 < frac <= 1


def test_no_lookup_no_thread(tmp_path):
    # The recorder adds no thread of its own: a program without threads shows one.
    data, _ = run_json(tmp_path, """
        import asyncio
        asyncio.run(asyncio.sleep(0.02))
    """, "--loop", "pyloop")
    (run,) = data["runs"]
    assert [t["kind"] for t in threads_of(run)] == ["main"], run["threads"]
    assert run["threads"][0]["cpu"] > 0


@pytest.mark.parametrize("how", ["runner", "get_event_loop", "new_event_loop"])
def test_every_way_to_get_a_loop(tmp_path, how):
    body = {
        "runner": "with asyncio.Runner() as r:\n    print(type(r.get_loop()).__module__.split('.')[0])",
        "get_event_loop": "import warnings\nwarnings.simplefilter('ignore')\n"
                          "loop = asyncio.get_event_loop()\nprint(type(loop).__module__.split('.')[0])\nloop.close()",
        "new_event_loop": "loop = asyncio.new_event_loop()\nprint(type(loop).__module__.split('.')[0])\nloop.close()",
    }[how]
    if how == "runner" and sys.version_info < (3, 11):
        pytest.skip("asyncio.Runner is 3.11+")
    if how == "get_event_loop" and sys.version_info >= (3, 14):
        # 3.14's get_event_loop() makes no loop, whatever the policy: the script fails as
        # it does on asyncio, with asyncio's message.
        proc = tool(tmp_path, "import asyncio\n" + body, "--loop", "pyloop", check=False)
        assert proc.returncode == 1
        assert "RuntimeError: There is no current event loop in thread 'MainThread'." in proc.stderr
        return
    _, proc = run_json(tmp_path, "import asyncio\n" + body, "--loop", "pyloop")
    assert "pyloop" in proc.stdout.splitlines()


def test_python_threads_exactly(tmp_path):
    # Threads shorter than the sampling interval are still there, with their origin
    # and their executor.
    data, _ = run_json(tmp_path, """
        import asyncio, concurrent.futures, threading, time

        def quick():
            pass

        async def main():
            threading.Thread(target=quick, name="quick-one").start()
            with concurrent.futures.ThreadPoolExecutor(thread_name_prefix="mine") as ex:
                await asyncio.get_running_loop().run_in_executor(ex, time.sleep, 0.01)

        asyncio.run(main())
    """, "--loop", "pyloop", "--interval", "0.05")
    threads = {t["name"]: t for t in data["runs"][0]["threads"]}
    quick = threads["quick-one"]
    assert quick["kind"] == "python" and quick["started_from"][0] == "main"
    assert quick["end"] - quick["start"] < 0.05
    mine = threads["mine_0"]
    assert mine["executor"] == "ThreadPoolExecutor mine"
    assert mine["started_from"][:2] == ["loop.run_in_executor", "main"], mine


def test_png_and_compare(tmp_path):
    if importlib.util.find_spec("matplotlib") is None:
        missing("matplotlib is not installed")
    png = tmp_path / "d.png"
    data, proc = run_json(tmp_path, DNS3, "--compare", "-o", str(png))
    assert [r["loop"] for r in data["runs"]] == [loop for loop in ("asyncio", "uvloop", "pyloop") if loop in LOOPS]
    blob = png.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 10_000
    # The table names each run.
    for r in data["runs"]:
        assert draw.summary(r) in proc.stdout


def test_json_to_stdout(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("print('hello from the script')\n")
    proc = subprocess.run([sys.executable, "-m", "pyloop.threads", "--json", "-", str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # the script's own output goes to stderr meanwhile
    assert data["script"] == str(script) and data["runs"][0]["loop"] == "pyloop"
    assert "hello from the script" in proc.stderr


def test_script_arguments_and_failures(tmp_path):
    proc = tool(tmp_path, """
        import sys
        print(sys.argv[1:])
        sys.exit(3)
    """, check=False)
    assert proc.returncode == 1
    assert "['a', '--b']" not in proc.stdout  # no arguments given here
    script = tmp_path / "script.py"
    proc = subprocess.run([sys.executable, "-m", "pyloop.threads", str(script), "a", "--b"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "['a', '--b']" in proc.stdout
    assert "pyloop: 0 Python threads" in proc.stdout  # still reported
    proc = tool(tmp_path, "raise ValueError('boom')\n", check=False)
    assert proc.returncode == 1 and "ValueError: boom" in proc.stderr and "MainThread" in proc.stdout


@pytest.mark.parametrize("args, message", [
    ([], "the following arguments are required: script"),
    (["missing.py"], "no such script"),
    (["--interval", "0", "x.py"], "--interval must be a positive"),
    (["--interval", "nan", "x.py"], "--interval must be a positive"),
    (["--interval", "inf", "x.py"], "--interval must be a positive"),
    (["--interval", "-1", "x.py"], "--interval must be a positive"),
    (["--loop", "tokio", "x.py"], "invalid choice"),
])
def test_bad_arguments(tmp_path, args, message):
    (tmp_path / "x.py").write_text("")
    proc = subprocess.run([sys.executable, "-m", "pyloop.threads", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_a_thread_that_used_a_little_cpu_over_a_long_sample_is_busy():
    # A loaded machine stretches a 1 ms sample: a pool thread's 20 us of a lookup over
    # 0.2 s is a fraction of 0.0001, which rounded to 0.0 (CI). Busy spans stay > 0.
    t0 = 1000.0
    data = {"script_start": t0, "script_end": t0 + 0.5, "main_tid": 1, "python_threads": [], "loop": "pyloop",
            "python": "x", "exit_code": 0}
    rec = {"comm": "libuv-worker", "first": t0 + 0.1, "last": t0 + 0.5, "cpu_first": 0, "cpu": 20_000,
           "busy": [[t0 + 0.1, t0 + 0.3, 20_000]], "samples": 3}
    main = dict(rec, comm="python", first=t0, busy=[[t0, t0 + 0.5, 400_000_000]])
    run = merge(data, {1: main, 2: rec}, 0.001)
    assert [t["busy"] for t in run["threads"]] == [[[0.0, 0.5, 0.8]], [[0.1, 0.3, 0.001]]]


def test_condensed_stack_names_the_loop():
    import asyncio

    async def main():
        return condensed_stack(__import__("sys")._getframe())

    loop = asyncio.new_event_loop()
    try:
        frames = loop.run_until_complete(main())
    finally:
        loop.close()
    assert frames[0].endswith("main") and not any("_run_once" in f for f in frames)


def test_example_scripts_run(tmp_path):
    # The README's two diagrams come from these; they must keep working.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in ("fetch3.py", "redis_unix.py"):
        proc = subprocess.run([sys.executable, "-m", "pyloop.threads", "--json", "-",
                               os.path.join(root, "docs", "examples", name)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        (run,) = json.loads(proc.stdout)["runs"]
        assert not [t for t in run["threads"] if t["kind"] == "python"], run["threads"]


def test_os_exit_and_threads_left_running(tmp_path):
    # A script that leaves through os._exit keeps what it recorded until then; a
    # thread still running at the end ends with the process.
    out = tmp_path / "out.json"
    proc = tool(tmp_path, """
        import os, threading, time
        threading.Thread(target=time.sleep, args=(30,), name="sleeper", daemon=True).start()
        time.sleep(0.05)
        os._exit(5)
    """, "--json", str(out), check=False)
    assert proc.returncode == 1, proc.stderr
    (run,) = json.loads(out.read_text())["runs"]
    assert run["exit_code"] == 5
    sleeper = [t for t in run["threads"] if t["name"] == "sleeper"]
    assert len(sleeper) == 1 and sleeper[0]["kind"] == "python"
    assert sleeper[0]["end"] >= 0.04 and sleeper[0]["end"] <= run["duration"]


def test_ctrl_c_reaches_the_script_and_the_report_follows(tmp_path):
    # Ctrl-C in a terminal signals the tool and the script together: the script's
    # way out is recorded and the table printed.
    import signal
    import time
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import asyncio
        print("ready", flush=True)
        try:
            asyncio.run(asyncio.sleep(30))
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """))
    proc = subprocess.Popen([sys.executable, "-m", "pyloop.threads", "--loop", "pyloop", str(script)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "interrupted" in out and "pyloop: 0 Python threads" in out


def test_a_failing_script_is_reported_as_failed(tmp_path):
    # A script that fails (here: a module it needs is missing, as aiohttp for README's
    # example) gets its table, marked as a failure with the error, and the tool says so
    # on stderr and exits with 1.
    proc = tool(tmp_path, """
        import no_such_module_here
    """, check=False)
    assert proc.returncode == 1
    failed = ("the script FAILED on pyloop (exit code 1: ModuleNotFoundError: "
              "No module named 'no_such_module_here')")
    assert f"  {failed}: below is what it did until then" in proc.stdout
    assert f"pyloop.threads: {failed}" in proc.stderr
