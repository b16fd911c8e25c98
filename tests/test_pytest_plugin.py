"""pyloop's pytest plugin on small sample projects: `pytest --pyloop` (or the `pyloop`
ini option) runs pytest-asyncio tests and aiohttp's fixtures on pyloop; without it
they run on stock asyncio."""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import needs_module

ASYNCIO_TESTS = textwrap.dedent("""
    import asyncio
    import pytest

    @pytest.mark.asyncio
    async def test_loop_kind():
        kind = type(asyncio.get_running_loop()).__module__
        print("LOOP", kind)
        await asyncio.sleep(0)
""")

AIOHTTP_CONFTEST = 'pytest_plugins = ["aiohttp.pytest_plugin"]\n'
AIOHTTP_TESTS = textwrap.dedent("""
    import asyncio
    from aiohttp import web

    async def hello(request):
        return web.Response(text=type(asyncio.get_running_loop()).__module__)

    async def test_client(aiohttp_client):
        app = web.Application()
        app.router.add_get("/", hello)
        client = await aiohttp_client(app)
        resp = await client.get("/")
        print("LOOP", await resp.text())

    def test_loop_fixture(loop):
        print("LOOP", type(loop).__module__)
""")


def run_pytest(project, *args):
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    out = subprocess.run([sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", *args],
                         cwd=str(project), capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return sorted({line.split()[1] for line in out.stdout.splitlines() if line.startswith("LOOP ")})


def make_project(tmp_path, files, ini=""):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n" + ini)
    return tmp_path


def test_pytest_asyncio_project(tmp_path):
    needs_module("pytest_asyncio")
    project = make_project(tmp_path, {"test_a.py": ASYNCIO_TESTS})
    assert run_pytest(project, "--pyloop") == ["pyloop"]
    assert run_pytest(project) == ["asyncio.unix_events"]


def test_ini_option(tmp_path):
    needs_module("pytest_asyncio")
    project = make_project(tmp_path, {"test_a.py": ASYNCIO_TESTS}, ini="pyloop = true\n")
    assert run_pytest(project) == ["pyloop"]


def test_aiohttp_project(tmp_path):
    needs_module("aiohttp")
    project = make_project(tmp_path, {"conftest.py": AIOHTTP_CONFTEST, "test_b.py": AIOHTTP_TESTS})
    assert run_pytest(project, "--pyloop", "-p", "no:asyncio") == ["pyloop"]
    assert run_pytest(project, "-p", "no:asyncio") == ["asyncio.unix_events"]


def test_report_header(tmp_path):
    project = make_project(tmp_path, {"test_c.py": "def test_nothing():\n    pass\n"})
    out = subprocess.run([sys.executable, "-m", "pytest", "--pyloop", "-p", "no:cacheprovider"], cwd=str(project),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "async tests run on pyloop's event loop" in out.stdout


def test_a_project_with_warnings_as_errors_starts(tmp_path):
    # aiohttp's and AnyIO's configurations turn every warning into an error: pyloop's plugin
    # (an entry point every pytest run loads) must not warn, installed editable (this suite
    # runs on an editable install, make setup) or from a wheel.
    needs_module("pytest_asyncio")
    project = make_project(tmp_path, {"test_a.py": ASYNCIO_TESTS}, ini="filterwarnings =\n    error\n")
    assert run_pytest(project, "-W", "error") == ["asyncio.unix_events"]
    assert run_pytest(project, "-W", "error", "--pyloop") == ["pyloop"]
    out = subprocess.run([sys.executable, "-W", "error", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
                         cwd=str(project), capture_output=True, text=True, timeout=120)
    assert "PytestAssertRewriteWarning" not in out.stdout + out.stderr
    assert out.returncode == 0, out.stdout + out.stderr
