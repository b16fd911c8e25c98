"""An aiohttp app on pyloop with two ways of blocking its loop, found by the stall watch.

    python docs/examples/stall_aiohttp.py [--port 8080] [--threshold 0.1] [--demo]

/ answers at once. /report is a slow handler: it builds and sorts a large report in the
request's task. /rates calls a client library whose method looks harmless and makes a
blocking HTTP request (urllib) to a rates service, here a slow local server this script
starts. loop.set_stall_threshold() logs each stall while it happens, with the line the
loop is on, and its total when it ends. --demo requests /, /report, / and /rates once
each (by the name localhost, a pause between them) and exits; under
`python -m pyloop.threads --trace trace.json` it is docs/observability.md's trace.
Without editing the app: PYLOOP_STALL_THRESHOLD=0.1 python -m pyloop run app.py.
"""

import argparse
import asyncio
import http.server
import json
import logging
import threading
import time
import urllib.request

from aiohttp import ClientSession, web

import pyloop


# ---- a client library, as one installs it: nothing says it blocks ---------------------
class RatesClient:
    def __init__(self, url):
        self.url = url

    def latest(self):
        with urllib.request.urlopen(self.url, timeout=5) as reply:  # blocks the caller
            return json.load(reply)


def slow_rates_service():
    """A rates service that takes 0.3 s to answer, on a thread: its URL."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(0.3)
            body = json.dumps({"EUR": 1.0, "USD": 1.08}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/rates"


# ---- the app ---------------------------------------------------------------------------
def build_report(n):
    rows = [{"id": i, "score": (i * 7919) % 10007, "name": f"row {i}"} for i in range(n)]
    top = sorted(rows, key=lambda r: (r["score"], r["name"]))[:10]
    checksum = 0
    for _ in range(4):
        for r in rows:  # the totals, in pure Python
            checksum = (checksum * 31 + r["score"]) % 1_000_003
    return {"top": top, "checksum": checksum}


async def report(request):
    return web.json_response(build_report(300_000))  # the work runs in the request's task


async def hello(request):
    return web.Response(text="Hello")


async def rates(request):
    return web.json_response(request.app["rates"].latest())


def make_app(rates_url):
    app = web.Application()
    app["rates"] = RatesClient(rates_url)
    app.router.add_get("/", hello)
    app.router.add_get("/report", report)
    app.router.add_get("/rates", rates)
    return app


async def main(port, threshold, demo):
    loop = asyncio.get_running_loop()
    loop.set_stall_threshold(threshold)
    runner = web.AppRunner(make_app(slow_rates_service()), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    logging.getLogger("app").info("serving on http://127.0.0.1:%d (/, /report, /rates)", port)
    try:
        if demo:
            async with ClientSession() as session:
                for route in ("/", "/report", "/", "/rates"):
                    async with session.get(f"http://localhost:{port}{route}") as reply:
                        await reply.read()
                    await asyncio.sleep(0.05)
            m = loop.metrics()  # (since the loop started: nothing asked before)
            logging.getLogger("app").info("slowest callback: %s, %.3f s (group of %d)", m["slowest_callback_name"],
                                          m["slowest_callback"], m["slowest_callback_group"])
        else:
            await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--threshold", type=float, default=0.1)
    ap.add_argument("--demo", action="store_true", help="request both routes once (on a free port), then exit")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    pyloop.run(main(0 if args.demo else args.port, args.threshold, args.demo))
