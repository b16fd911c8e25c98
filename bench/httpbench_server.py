"""An HTTP server for bench/httpbench.py: one process, one loop.

    python bench/httpbench_server.py LOOP APP PORT

LOOP is asyncio, uvloop or pyloop; APP is `aiohttp` (aiohttp.web) or `uvicorn` (a raw
ASGI app under uvicorn with httptools). It listens on 127.0.0.1:PORT with SO_REUSEPORT
(several of these processes share one port: one process per core), prints "ready",
and serves until stdin closes. Routes: `/` a hello text, `/json` 16 KiB of JSON
(serialized per request, as an application does).
"""

import asyncio
import json
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from micro import make_loop  # noqa: E402

HELLO = b"Hello, World!"
DATA = {"items": [{"id": i, "name": f"item {i}", "price": i * 1.25, "tags": ["a", "b"]} for i in range(230)]}
assert 15 << 10 < len(json.dumps(DATA)) < 17 << 10

# uvicorn's --loop: a name it knows, or an import string of a loop factory.
UVICORN_LOOPS = {"asyncio": "asyncio", "uvloop": "uvloop", "rloop": "rloop:new_event_loop",
                 "rsloop": "rsloop:new_event_loop", "pyloop": "pyloop:new_event_loop",
                 "pyloop+stall": "micro:pyloop_with_stall_watch", "pyloop+trace": "micro:pyloop_traced"}


def listening_socket(port):
    # IPPROTO_TCP, as getaddrinfo gives it: asyncio sets TCP_NODELAY only on sockets whose
    # proto says TCP (with proto 0, Nagle and delayed ACKs stall every reply by 40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def stop_when_stdin_closes(stop):
    def wait():
        sys.stdin.read()
        stop()

    threading.Thread(target=wait, daemon=True).start()


def serve_aiohttp(loop_name, sock):
    from aiohttp import web

    async def hello(request):
        return web.Response(body=HELLO, content_type="text/plain")

    async def data(request):
        return web.json_response(DATA)

    async def main():
        app = web.Application()
        app.router.add_get("/", hello)
        app.router.add_get("/json", data)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        done = asyncio.get_running_loop().create_future()
        stop_when_stdin_closes(lambda: loop.call_soon_threadsafe(done.set_result, None))
        print("ready", flush=True)
        await done
        await runner.cleanup()

    loop = make_loop(loop_name)
    loop.run_until_complete(main())
    loop.close()


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/json":
        body, ctype = json.dumps(DATA).encode(), b"application/json"
    else:
        body, ctype = HELLO, b"text/plain"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve_uvicorn(loop_name, sock):
    import uvicorn

    config = uvicorn.Config(asgi_app, loop=UVICORN_LOOPS[loop_name], http="httptools", lifespan="off",
                            access_log=False, log_level="warning")
    server = uvicorn.Server(config)

    async def started():
        while not server.started:
            await asyncio.sleep(0.01)
        print("ready", flush=True)

    def stop():
        server.should_exit = True

    stop_when_stdin_closes(stop)
    serve = server.serve

    async def serve_and_report(sockets):
        asyncio.ensure_future(started())
        await serve(sockets=sockets)

    server.serve = serve_and_report
    server.run(sockets=[sock])


def main():
    loop_name, app, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sock = listening_socket(port)
    {"aiohttp": serve_aiohttp, "uvicorn": serve_uvicorn}[app](loop_name, sock)


if __name__ == "__main__":
    main()
