"""python -m pyloop: the report, `run SCRIPT`, `repl`."""

import os
import platform
import shutil
import subprocess
import sys
import textwrap

import pyloop
from conftest import INSTALLED
from pyloop import _core


def pyloop_cmd(*args, **kw):
    env = dict(os.environ, **kw.pop("env", {}))
    return subprocess.run([sys.executable, "-m", "pyloop", *args], capture_output=True, text=True, timeout=60,
                          env=env, **kw)


def test_report(tmp_path):
    out = pyloop_cmd(cwd=str(tmp_path), env={"UV_THREADPOOL_SIZE": "7"})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"pyloop              {pyloop.__version__}" in text
    v = _core.libuv_build_version
    how = "built in" if _core.libuv_linkage == "bundled" else "the system library"
    assert f"libuv built with    {v // 10000}.{v // 100 % 100}.{v % 100} ({how})" in text
    assert f"libuv running       {_core.libuv_version_string()}" in text
    assert "libuv pool threads  7 (UV_THREADPOOL_SIZE=7" in text
    off = pyloop_cmd(cwd=str(tmp_path), env={"PYLOOP_IO_PEEK": "off"}).stdout
    assert "busy iterations     poll through libuv every time (PYLOOP_IO_PEEK=off)\n" in off
    assert "busy iterations     skip libuv's" in text
    assert f"Python              CPython {'.'.join(map(str, sys.version_info[:3]))}" in text
    assert "uvloop" in text
    tag, machine = f"cp{sys.version_info[0]}{sys.version_info[1]}", platform.machine()
    installed = next(line for line in text.splitlines() if line.startswith("installed from"))
    if INSTALLED:  # make wheels-test: a wheel of make wheels
        assert installed == (f"installed from      a wheel: {tag}-{tag}-manylinux_2_17_{machine}, "
                             f"{tag}-{tag}-manylinux2014_{machine}")
        assert ", libc++ " in _core.compiler and "clang" in _core.compiler.lower(), _core.compiler
    else:  # make setup's editable build, or make sanitize's wheel built here
        assert installed in ("installed from      an editable build (pip install -e)",
                             f"installed from      a wheel: {tag}-{tag}-linux_{machine}"), installed
    assert f"compiled by         {_core.compiler}\n" in text and _core.compiler


def test_run_script(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent("""
        import asyncio, sys
        import helper  # next to the script, as `python app.py` finds it

        async def main():
            return type(asyncio.get_running_loop()).__module__

        print(asyncio.run(main()), sys.argv[1:], helper.X, __name__)
        loop = asyncio.new_event_loop()
        print(type(loop).__module__)
        loop.close()
    """))
    (tmp_path / "helper.py").write_text("X = 42\n")
    elsewhere = tmp_path / "cwd"  # not the script's folder: run puts that on sys.path
    elsewhere.mkdir()
    out = pyloop_cmd("run", str(script), "a", "--b", cwd=str(elsewhere))
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first == "pyloop ['a', '--b'] 42 __main__"
    assert second == "pyloop"


def test_run_script_errors(tmp_path):
    assert pyloop_cmd("run", cwd=str(tmp_path)).returncode != 0
    out = pyloop_cmd("frobnicate", cwd=str(tmp_path))
    assert out.returncode != 0 and "unknown command" in out.stderr


def test_repl_runs_on_pyloop(tmp_path):
    lines = "import asyncio\nawait asyncio.sleep(0)\nprint('loop:', type(asyncio.get_running_loop()).__module__)\n"
    out = pyloop_cmd("repl", input=lines, cwd=str(tmp_path), env={"TERM": "dumb", "PYTHON_BASIC_REPL": "1"})
    assert "loop: pyloop" in out.stdout + out.stderr, (out.stdout, out.stderr)


def test_libuv_is_the_bundled_1_52_1():
    # Every build but an explicit PYLOOP_LIBUV=system links vendor/libuv in (its README).
    assert _core.libuv_linkage == "bundled"
    assert _core.libuv_build_version == 15201
    assert _core.libuv_version_string() == "1.52.1"


def test_run_from_a_source_folder_says_what_happened(tmp_path):
    # A checkout's top folder holds pyloop's sources without the compiled _core; run from
    # there, Python finds them before the installed package. Python's own message blames
    # a circular import; pyloop says what happened and what to do. (-S: no site-packages,
    # so no installed pyloop could be found first.)
    src = os.path.dirname(pyloop.__file__)
    dst = tmp_path / "pyloop"
    dst.mkdir()
    for name in os.listdir(src):
        if name.endswith(".py"):
            shutil.copyfile(os.path.join(src, name), dst / name)
    out = subprocess.run([sys.executable, "-S", "-m", "pyloop"], cwd=str(tmp_path), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    assert "circular import" not in out.stderr
    assert (f"ImportError: pyloop was imported from {dst}, a source folder with no compiled pyloop._core"
            in out.stderr), out.stderr
    assert "Run from another folder to use the installed pyloop, or build this checkout in place" in out.stderr


def test_report_into_a_closed_pipe_ends_quietly(tmp_path):
    # `python -m pyloop | head -1`: the reader goes away; no BrokenPipeError traceback.
    r, w = os.pipe()
    os.close(r)  # gone before the report is written: every write fails with EPIPE
    try:
        out = subprocess.run([sys.executable, "-m", "pyloop"], stdout=w, stderr=subprocess.PIPE, text=True,
                             cwd=str(tmp_path), timeout=60)
    finally:
        os.close(w)
    assert out.returncode == 1
    assert out.stderr == ""
