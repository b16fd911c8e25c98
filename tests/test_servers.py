"""The server recipes of the README, each started for real in its own process and
asked over HTTP which loop serves it: uvicorn's CLI and uvicorn.run with
`pyloop:new_event_loop`, aiohttp's web.run_app with a pyloop loop; and the policy
class given where a loop factory belongs fails with a message that says what to write."""

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from conftest import needs_module

ASGI_APP = textwrap.dedent("""
    import asyncio

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = type(asyncio.get_running_loop()).__module__.encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()


def serve_and_get(cmd, port, cwd, timeout=30):
    """Starts cmd, GETs http://127.0.0.1:port/ until it answers; returns the body."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}:\n{proc.stdout.read()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    return r.read().decode()
            except OSError:
                time.sleep(0.1)
        raise AssertionError("server did not answer")
    finally:
        stop(proc)


def test_uvicorn_cli(tmp_path):
    needs_module("uvicorn")
    (tmp_path / "asgi.py").write_text(ASGI_APP)
    port = free_port()
    body = serve_and_get([sys.executable, "-m", "uvicorn", "asgi:app", "--port", str(port),
                          "--loop", "pyloop:new_event_loop"], port, str(tmp_path))
    assert body == "pyloop"


def test_uvicorn_run(tmp_path):
    needs_module("uvicorn")
    port = free_port()
    (tmp_path / "serve.py").write_text(ASGI_APP + textwrap.dedent(f"""
        import uvicorn
        uvicorn.run(app, port={port}, loop="pyloop:new_event_loop", log_level="warning")
    """))
    assert serve_and_get([sys.executable, "serve.py"], port, str(tmp_path)) == "pyloop"


def test_aiohttp_run_app(tmp_path):
    needs_module("aiohttp")
    port = free_port()
    (tmp_path / "serve.py").write_text(textwrap.dedent(f"""
        import asyncio
        from aiohttp import web
        import pyloop

        async def hello(request):
            return web.Response(text=type(asyncio.get_running_loop()).__module__)

        app = web.Application()
        app.router.add_get("/", hello)
        web.run_app(app, port={port}, loop=pyloop.new_event_loop(), print=None)
    """))
    assert serve_and_get([sys.executable, "serve.py"], port, str(tmp_path)) == "pyloop"


def test_policy_given_as_a_loop_factory_says_what_to_write(tmp_path):
    needs_module("uvicorn")
    (tmp_path / "asgi.py").write_text(ASGI_APP)
    out = subprocess.run([sys.executable, "-m", "uvicorn", "asgi:app", "--port", str(free_port()),
                          "--loop", "pyloop:EventLoopPolicy"], cwd=str(tmp_path), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    assert "--loop pyloop:new_event_loop" in out.stderr


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11+")
@pytest.mark.filterwarnings("ignore:pyloop.EventLoopPolicy is deprecated:DeprecationWarning")
def test_policy_in_asyncio_runner():
    import asyncio
    import pyloop

    async def main():
        return 1

    coro = main()
    with pytest.raises(AttributeError, match=r"pyloop\.new_event_loop"):
        with asyncio.Runner(loop_factory=pyloop.EventLoopPolicy) as runner:
            runner.run(coro)
    coro.close()
    assert not hasattr(pyloop.EventLoopPolicy(), "no_such_thing")


def test_gunicorn_aiohttp_worker_on_every_worker(tmp_path):
    """gunicorn with pyloop's aiohttp worker class, 2 worker processes: each answers
    from a pyloop loop (the answer names the worker's pid)."""
    needs_module("gunicorn")
    needs_module("aiohttp")
    port = free_port()
    (tmp_path / "app.py").write_text(textwrap.dedent("""
        import asyncio, os
        from aiohttp import web

        async def hello(request):
            return web.Response(text=f"{type(asyncio.get_running_loop()).__module__} {os.getpid()}")

        async def make_app():
            app = web.Application()
            app.router.add_get("/", hello)
            return app
    """))
    cmd = [sys.executable, "-m", "gunicorn", "app:make_app", "-k", "pyloop.gunicorn.AiohttpWorker", "-w", "2",
           "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5"]
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pids = set()
        end = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < end:
            if proc.poll() is not None:
                raise AssertionError(f"gunicorn exited with {proc.returncode}:\n{proc.stdout.read()}")
            try:
                # a new connection each time, so that the kernel spreads them over the workers
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    kind, pid = r.read().decode().split()
                assert kind == "pyloop"
                pids.add(pid)
            except OSError:
                time.sleep(0.05)
        assert len(pids) == 2, f"answers came from {pids}"
    finally:
        stop(proc)
