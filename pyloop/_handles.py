"""repr() of pyloop's Handle and TimerHandle, in asyncio's format."""

import inspect
from asyncio import format_helpers

from . import _core

# From 3.13 asyncio shows a callback's arguments only in debug mode.
_TAKES_DEBUG = "debug" in inspect.signature(format_helpers._format_callback_source).parameters


def format_callback(callback, args, loop):
    """asyncio's 'func(args) at file:line' for a callback, as its Handle shows it."""
    if _TAKES_DEBUG:
        return format_helpers._format_callback_source(callback, args, debug=loop.get_debug())
    return format_helpers._format_callback_source(callback, args)


def handle_repr(handle):
    info = [type(handle).__name__]
    if handle._cancelled:
        info.append("cancelled")
    if isinstance(handle, _core.TimerHandle):
        info.append(f"when={handle._when}")
    if handle._callback is not None:
        info.append(format_callback(handle._callback, handle._args, handle._loop))
    tb = handle._source_traceback
    if tb:
        frame = tb[-1]
        info.append(f"created at {frame[0]}:{frame[1]}")
    return "<{}>".format(" ".join(info))
