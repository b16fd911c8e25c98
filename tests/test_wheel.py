"""The wheel is self-contained: libuv is built in (from Debian's pinned upstream
tarball) with its symbols private, so the wheel installs and runs where no libuv is.
An sdist builds too, and a wheel builds from it. (Slow: each build compiles pyloop.)"""

import os
import subprocess
import sys
import textwrap
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Reused between runs, so libuv's tarball is fetched and checked once.
BUILD_DIR = os.path.join(ROOT, "build", "wheel-test", "{wheel_tag}")


def run(cmd, **kw):
    # Builds and the fresh venv run without `make sanitize`'s preloaded sanitizer.
    kw.setdefault("env", {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")})
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
         "--config-settings", f"build-dir={BUILD_DIR}", ROOT], cwd=str(out))
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
    pytest.importorskip("auditwheel")
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


def test_sdist_builds_and_a_wheel_builds_from_it(tmp_path):
    pytest.importorskip("build", reason="python -m build (the 'build' package) is not installed")
    out = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), ROOT], cwd=str(tmp_path))
    (sdist,) = list(out.glob("*.tar.gz"))
    import tarfile
    with tarfile.open(sdist) as t:
        names = t.getnames()
    for needed in ("CMakeLists.txt", "pyproject.toml", "cpp/core/loop.cpp", "pyloop/__init__.py"):
        assert any(n.endswith("/" + needed) for n in names), needed
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
         "--config-settings", f"build-dir={BUILD_DIR}", str(sdist)], cwd=str(tmp_path))
    assert list(out.glob("*.whl"))
