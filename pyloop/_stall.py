"""loop.set_stall_threshold(): the messages. core/stall.cpp finds the stalls and calls
report_blocked() from its own thread (with the GIL) while the loop is still blocked, and
report_ended() from the loop thread when the callback returns. Both log to asyncio's
logger, at WARNING."""

import asyncio
import math
import os
import traceback
import warnings
from asyncio import format_helpers
from asyncio.log import logger

from . import _core

ENV = "PYLOOP_STALL_THRESHOLD"
MAX_FRAMES = 30  # of the loop thread's stack, innermost last


def check_threshold(seconds):
    """None (off) or a positive finite number of seconds, as a float (0.0 for None)."""
    if seconds is None:
        return 0.0
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"the stall threshold must be a number of seconds or None, not {type(seconds).__name__}")
    try:
        value = float(seconds)
    except OverflowError:
        value = math.inf
    if not (0 < value < math.inf):
        raise ValueError(f"the stall threshold must be a positive, finite number of seconds (or None), not {seconds!r}")
    return value


def threshold_from_environment():
    """PYLOOP_STALL_THRESHOLD's seconds, or None when it is unset or empty. A value that
    is not a positive number warns (RuntimeWarning) and leaves the watch off: a typo in
    the environment must not stop the program."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    try:
        return check_threshold(float(text))
    except (TypeError, ValueError):
        warnings.warn(f"{ENV}={text!r} is not a positive number of seconds: no stall watch", RuntimeWarning,
                      stacklevel=3)
        return None


def describe(what):
    """What a callback runs: a task step names its task (with its coroutine and where it
    runs); any other callback, its function and where it was defined (not its arguments:
    the same whether the loop kept its Handle or only the call). None: an I/O callback."""
    if what is None:
        return None
    callback = what._callback if isinstance(what, (asyncio.Handle, _core.Handle)) else what
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return repr(owner)
    return f"<callback {format_helpers._format_callback_source(callback, ())}>"


LOOP_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_loop.py")


def format_stack(stack):
    """stack: (filename, line, function) of each frame, innermost last. What called
    run_forever (and run_forever itself) is left out: the stack starts at the callback."""
    for i, (filename, _, name) in enumerate(stack):
        if name == "run_forever" and os.path.abspath(filename) == LOOP_FILE:
            stack = stack[i + 1:]
            break
    summary = traceback.StackSummary.from_list([(f, n, name, None) for f, n, name in stack[-MAX_FRAMES:]])
    return "".join(summary.format()).rstrip("\n") or "  (no Python frame)"


def report_blocked(loop, what, stack, elapsed, threshold):
    """The watch thread, while the loop is blocked: logs where the loop thread was when it
    looked, and returns the callback's description (the end's message names it again)."""
    desc = describe(what) or "an I/O callback"
    logger.warning("Event loop blocked for %.3f seconds (stall threshold %.3f) by %s; it is still running, at:\n%s",
                   elapsed, threshold, desc, format_stack(stack))
    return desc


def report_ended(loop, what, total, warned, desc):
    """The loop thread, when the callback that stalled it returned."""
    desc = describe(what) or desc or "an I/O callback"
    if warned:
        logger.warning("Event loop was blocked for %.3f seconds in all by %s", total, desc)
    else:
        logger.warning("Event loop was blocked for %.3f seconds by %s (C code that held the GIL all along: "
                       "its stack could not be taken while it ran)", total, desc)
