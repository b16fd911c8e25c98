"""`make bench` runs bench/run.py: every suite, once, at the smallest size, into a
temporary folder. It checks that the suites run to the end and write their results;
the figures themselves mean nothing at this size (speed is never asserted in tests)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import missing

RUN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "run.py")

SUITES = {  # suite: the smallest case of it
    "micro": ["--scale", "0.001", "--only", "call_soon"],
    "dns": ["--scale", "0.01"],
    "echo": ["--seconds", "0.1", "--only", "tcp protocol 1 KiB"],
    "tls": ["--seconds", "0.1", "--only", "handshakes"],
    "proc": ["--scale", "0.01", "--only", "pipe"],
    "http": ["--seconds", "0.5", "--only", "aiohttp hello keep-alive"],
    "scale": ["--scale", "0.01"],
    "flood": ["--seconds", "0.1", "--only", "empty"],
    "observe": ["--scale", "0.001", "--seconds", "0.1", "--only", "tcp protocol"],
}


@pytest.mark.parametrize("suite", SUITES)
def test_a_bench_suite_runs_and_writes_its_results(suite, tmp_path):
    if suite == "http" and not shutil.which("wrk"):
        missing("wrk is not installed (make bench installs it)")
    out = subprocess.run([sys.executable, RUN, "--suite", suite, "--repeat", "1", "--results", str(tmp_path),
                          *SUITES[suite]], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    with open(tmp_path / f"{suite}.json") as f:
        data = json.load(f)
    assert data["python"] and data["when"]
    assert "pyloop" in out.stdout


FAILING_RIVAL = '''
def new_event_loop():
    raise NotImplementedError("this rival cannot serve the row")
'''


def test_a_rival_that_fails_a_row_is_left_out_with_a_note(tmp_path):
    (tmp_path / "rloop").mkdir()
    (tmp_path / "rloop" / "__init__.py").write_text(FAILING_RIVAL)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    env.pop("PYLOOP_BENCH_PYTHON", None)
    out = subprocess.run([sys.executable, RUN, "--suite", "micro", "--repeat", "1", "--results", str(tmp_path),
                          "--scale", "0.001", "--only", "chained call_soon,"], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "(rloop left out of micro.py chained call_soon, fd watched 300: NotImplementedError: this rival " \
           "cannot serve the row)" in out.stdout, out.stdout
    with open(tmp_path / "micro.json") as f:
        median = json.load(f)["median"]["chained call_soon, fd watched"]
    assert "rloop" not in median and {"asyncio", "pyloop"} <= set(median)


@pytest.mark.timeout(300)
def test_rsloop_runs_on_debian_13s_glibc_where_the_system_has_an_older_one(tmp_path):
    """bench/rivals.py setup, into a folder of the test's: where this system's glibc is
    older than rsloop's wheels need, benchmark processes start through Debian 13's."""
    sys.path.insert(0, os.path.dirname(RUN))
    import rivals
    if rivals.glibc_version() is None or rivals.glibc_version() >= (2, 39):
        pytest.skip("this system's glibc runs rsloop's wheels as they are")
    env = {**os.environ, "PYLOOP_BENCH_RIVALS": str(tmp_path)}
    env.pop("PYLOOP_BENCH_PYTHON", None)
    # (rsloop only: a setup of every rival would pip-install uvloop and rloop into this
    # interpreter, and the suite's later modules, which decided at import, would see them)
    setup = subprocess.run([sys.executable, os.path.join(os.path.dirname(RUN), "rivals.py"), "setup", "rsloop"],
                           capture_output=True, text=True, timeout=240, env=env)
    assert setup.returncode == 0, setup.stderr
    if "glibc 2.39" not in setup.stdout:
        missing(f"rsloop or Debian's glibc could not be had: {setup.stdout}")
    probe = "import platform, sys, rsloop; print(platform.libc_ver()[1], sys.executable)"
    show = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {os.path.dirname(RUN)!r}); "
                           "import json, rivals; print(json.dumps(rivals.python()))"],
                          capture_output=True, text=True, timeout=120, env=env)
    cmd = json.loads(show.stdout)
    assert cmd[0].startswith(str(tmp_path)) and cmd[-1] == os.path.realpath(sys.executable)
    run_env = {**env, "PYTHONPATH": os.path.join(str(tmp_path), rivals.TAG)}
    out = subprocess.run([*cmd, "-c", probe], capture_output=True, text=True, timeout=120, env=run_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2.41", sys.executable]
