"""Fetch http://localhost:PORT/ three times with aiohttp: the question pyloop began with.

    python -m pyloop.threads --compare -o threads.png docs/examples/fetch3.py

The HTTP server runs in a separate process (started first, not part of the picture),
so the diagram shows the client's threads only: on asyncio the name lookups run on
the loop's default ThreadPoolExecutor (Python threads); on uvloop and pyloop they
run on libuv's C thread pool.
"""

import asyncio
import socket
import subprocess
import sys
import time

import aiohttp


def start_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return server, port
        except OSError:
            time.sleep(0.02)
    server.kill()
    raise SystemExit("the HTTP server did not start")


async def main(port):
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            # A new connection each time (force_close): each one looks the name up.
            async with session.get(f"http://localhost:{port}/", headers={"Connection": "close"}) as resp:
                await resp.read()
                print(resp.status, resp.headers.get("Server"))
    await asyncio.sleep(0.05)  # (a little time on the timeline after the last request)


if __name__ == "__main__":
    server, port = start_server()
    try:
        asyncio.run(main(port))
    finally:
        server.kill()
        server.wait()
