"""The wheel is self-contained: libuv is built in (vendor/libuv) with its symbols private,
so the wheel installs and runs where no libuv is, also when it is built after a
development build (`make test`, then `make wheel`: this suite runs after the former). An
sdist carries libuv and builds into a wheel with no network. PYLOOP_LIBUV=system, the
opt-in for distributions, links the system's libuv. (Slow: each build compiles pyloop.)"""

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

from conftest import INSTALLED, missing, needs_module

if INSTALLED:  # make wheels-test: pyloop is a wheel already, and its venv has no build tools
    pytest.skip("builds wheels from the sources (make test runs these)", allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# No network for the builds: a proxy nobody listens on, and no package index.
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "PIP_NO_INDEX": "1"}


def run(cmd, **kw):
    kw.setdefault("env", clean_env())
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def clean_env(**extra):
    # Builds and fresh venvs run without `make sanitize`'s preloaded sanitizer.
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    env.update(extra)
    return env


# `make wheel` (this machine's compiler) is the same build on every Python: it is made on
# two (one in each CI leg); make wheels and make wheels-test cover the twelve manylinux ones.
@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    if sys.version_info[:2] not in ((3, 12), (3, 15)):
        pytest.skip("make wheel is built on 3.12 and 3.15 only (slow)")
    # What `make wheel` runs, in the source tree the editable build (make setup) used.
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), ROOT],
        cwd=str(out), env=clean_env(**OFFLINE))
    (whl,) = [p for p in out.iterdir() if p.suffix == ".whl"]
    return whl


def core_of(wheel, where):
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.startswith("pyloop/_core") and n.endswith(".so")]
        z.extract(name, where)
    return os.path.join(where, name)


def test_core_needs_no_libuv_and_exports_none_of_it(wheel, tmp_path):
    so = core_of(wheel, tmp_path)
    needed = [line for line in run(["readelf", "-d", so]).splitlines() if "NEEDED" in line]
    assert needed and not [n for n in needed if "libuv" in n], needed
    exported = [line for line in run(["nm", "-D", "--defined-only", so]).splitlines() if " uv_" in line]
    assert exported == []


def test_auditwheel_finds_only_system_libraries(wheel):
    needs_module("auditwheel")
    out = run([sys.executable, "-m", "auditwheel", "show", str(wheel)])
    assert "consistent with" in out and "manylinux" in out, out
    assert "external shared libraries are required" not in out and "libuv" not in out, out


def test_installs_and_runs_without_libuv(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])
    script = textwrap.dedent("""
        import asyncio, pyloop

        class Echo(asyncio.Protocol):
            def connection_made(self, t):
                self.t = t
            def data_received(self, d):
                self.t.write(d)

        async def main():
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo("localhost", 0)
            server = await loop.create_server(Echo, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"ping")
            got = await r.readexactly(4)
            w.close()
            server.close()
            return len(infos) > 0, got

        print(pyloop.run(main()))
        print([l.split()[-1] for l in open("/proc/self/maps") if "libuv" in l])
        print(pyloop.__file__)
    """)
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(tmp_path / "nowhere")}
    out = run([py, "-c", script], cwd=str(tmp_path), env=env).splitlines()
    assert out[0] == "(True, b'ping')"
    assert out[1] == "[]"  # no libuv mapped in the process
    assert out[2].startswith(str(venv))
    report = run([py, "-m", "pyloop"], cwd=str(tmp_path), env=env)
    assert "libuv built with    1.52.1 (built in)" in report and "libuv running       1.52.1" in report, report


# What the sdist holds is the same on every Python, and every Python builds its wheel from
# the tree above: the sdist's own build runs on the oldest and the newest (one in each CI leg).
@pytest.mark.skipif(sys.version_info[:2] not in ((3, 10), (3, 15)), reason="built on 3.10 and 3.15 only (slow)")
def test_sdist_carries_libuv_and_builds_offline(tmp_path):
    pytest.importorskip("build", reason="python -m build (the 'build' package) is not installed")
    out = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), ROOT], cwd=str(tmp_path),
        env=clean_env(**OFFLINE))
    (sdist,) = list(out.glob("*.tar.gz"))
    import tarfile
    with tarfile.open(sdist) as t:
        names = t.getnames()
    for needed in ("CMakeLists.txt", "pyproject.toml", "cpp/core/loop.cpp", "pyloop/__init__.py",
                   "vendor/libuv/CMakeLists.txt", "vendor/libuv/LICENSE", "vendor/libuv/src/unix/core.c",
                   "vendor/libuv/include/uv.h", "vendor/README.md"):
        assert any(n.endswith("/" + needed) for n in names), needed
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
         "--config-settings", f"build-dir={tmp_path / 'build'}", str(sdist)], cwd=str(tmp_path),
        env=clean_env(**OFFLINE))
    (whl,) = list(out.glob("*.whl"))
    core = core_of(whl, tmp_path)
    needed = [line for line in run(["readelf", "-d", core]).splitlines() if "NEEDED" in line]
    assert not [n for n in needed if "libuv" in n], needed


def system_libuv():
    if not shutil.which("pkg-config"):
        return None
    out = subprocess.run(["pkg-config", "--modversion", "libuv"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


# One build more per Python: made on 3.13 (this machine's libuv1-dev) and 3.14 (the
# sid root's newer libuv), the two in CI that have a system libuv to link.
@pytest.mark.skipif(sys.version_info[:2] not in ((3, 13), (3, 14)), reason="built on 3.13 and 3.14 only (slow)")
def test_system_libuv_is_an_opt_in(tmp_path):
    version = system_libuv()
    if version is None:
        missing("no system libuv (pkg-config libuv): nothing to link")
    out = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
         "--config-settings", "cmake.define.PYLOOP_LIBUV=system",
         "--config-settings", f"build-dir={os.path.join(ROOT, 'build', 'system-libuv', '{wheel_tag}')}", ROOT],
        cwd=str(tmp_path), env=clean_env(**OFFLINE))
    (whl,) = list(out.glob("*.whl"))
    core = core_of(whl, tmp_path / "x")
    needed = [line for line in run(["readelf", "-d", core]).splitlines() if "NEEDED" in line]
    assert [n for n in needed if "libuv.so" in n], needed
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(whl)])
    report = run([py, "-m", "pyloop"], cwd=str(tmp_path), env=clean_env())
    assert "(the system library)" in report, report
    assert f"libuv running       {version}" in report, report
    assert run([py, "-c", "import pyloop; print(pyloop.run(__import__('asyncio').sleep(0, 'ok')))"],
               cwd=str(tmp_path), env=clean_env()).strip() == "ok"
