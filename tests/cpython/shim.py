"""Make every loop that CPython's asyncio tests create a pyloop loop.

The tests make loops through asyncio.new_event_loop() and the default policy (also what
asyncio.run, asyncio.Runner and IsolatedAsyncioTestCase use), and by name:
asyncio.SelectorEventLoop(selector) and asyncio.EventLoop. Each of those names gives a
pyloop loop here; the selector argument is accepted and not used. Tests that need
asyncio's own classes (BaseEventLoop, the selector loop's internals) reach them through
asyncio.base_events / asyncio.selector_events, which stay as they are.
"""

import asyncio
import asyncio.unix_events as unix_events

import pyloop


class PyloopTestLoop(pyloop.Loop):
    """pyloop.Loop as asyncio.SelectorEventLoop is called: with an optional selector."""

    def __init__(self, selector=None):
        super().__init__()


def install():
    for mod in (asyncio, unix_events):
        mod.SelectorEventLoop = PyloopTestLoop
        if hasattr(mod, "EventLoop"):  # 3.13+
            mod.EventLoop = PyloopTestLoop
    unix_events._UnixDefaultEventLoopPolicy._loop_factory = PyloopTestLoop
