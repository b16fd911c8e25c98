"""An aiohttp app on pyloop that logs how busy its loop is, every second.

    python docs/examples/metrics_aiohttp.py [--port 8080] [--every 1.0]

One line a second: the loop's utilization over that second, requests served (from the
callbacks and bytes the loop counted), open connections, the slowest callback, and
lookups waiting on libuv's pool. loop.metrics() is a pyloop extension; on another
loop the app runs without the log.
"""

import argparse
import asyncio
import logging

from aiohttp import web

import pyloop

log = logging.getLogger("loop")


async def hello(request):
    return web.Response(text="Hello, world")


async def log_metrics(every):
    loop = asyncio.get_running_loop()
    if not hasattr(loop, "metrics"):
        log.warning("%s has no metrics(): not logging", type(loop).__name__)
        return
    last = loop.metrics()
    while True:
        await asyncio.sleep(every)
        m = loop.metrics()
        log.info("utilization %5.1f%%  callbacks %6d  read %8d B  written %8d B  tcp %3d  "
                 "slowest callback %.2f ms  lookups waiting %d",
                 100 * (m["utilization_since_last"] or 0), m["callbacks"] - last["callbacks"],
                 m["bytes_read"] - last["bytes_read"], m["bytes_written"] - last["bytes_written"],
                 m["handles"]["tcp"], m["slowest_callback"] * 1e3, m["lookups_pending"])
        last = m


async def start_logging(app):
    app["metrics_logger"] = asyncio.ensure_future(log_metrics(app["every"]))


async def stop_logging(app):
    app["metrics_logger"].cancel()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between log lines")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = web.Application()
    app["every"] = args.every
    app.router.add_get("/", hello)
    app.on_startup.append(start_logging)
    app.on_cleanup.append(stop_logging)
    web.run_app(app, host="127.0.0.1", port=args.port, loop=pyloop.new_event_loop())


if __name__ == "__main__":
    main()
