"""gunicorn worker classes that serve on pyloop, one loop per worker process:

    gunicorn app:make_app -k pyloop.gunicorn.AiohttpWorker -w 4 --bind 0.0.0.0:8080

AiohttpWorker is aiohttp's GunicornWebWorker (an `aiohttp.web.Application`, or a
coroutine function that returns one) with a pyloop loop made after the fork.
Importing this module needs aiohttp and gunicorn.
"""

import asyncio

from aiohttp.worker import GunicornWebWorker
from gunicorn.workers.base import Worker

import pyloop

__all__ = ("AiohttpWorker",)


class AiohttpWorker(GunicornWebWorker):
    """aiohttp's gunicorn worker on a pyloop loop."""

    def init_process(self) -> None:
        # What aiohttp's init_process does, with pyloop's loop instead of asyncio's
        # (a loop inherited through the fork is not used).
        self.loop = pyloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        Worker.init_process(self)  # gunicorn's: sets the worker up and runs it
