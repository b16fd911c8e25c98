"""repr() of pyloop's Handle and TimerHandle, in asyncio's format."""

from asyncio import format_helpers

from . import _core


def handle_repr(handle):
    info = [type(handle).__name__]
    if handle._cancelled:
        info.append("cancelled")
    if isinstance(handle, _core.TimerHandle):
        info.append(f"when={handle._when}")
    if handle._callback is not None:
        info.append(format_helpers._format_callback_source(handle._callback, handle._args))
    tb = handle._source_traceback
    if tb:
        frame = tb[-1]
        info.append(f"created at {frame[0]}:{frame[1]}")
    return "<{}>".format(" ".join(info))
