"""pyloop: a drop-in asyncio event loop written in C++ over libuv.

    import pyloop
    pyloop.run(main())                                  # like asyncio.run
    asyncio.Runner(loop_factory=pyloop.new_event_loop)  # 3.11+
    asyncio.run(main(), loop_factory=pyloop.new_event_loop)  # 3.12+
"""

import asyncio as _asyncio
import sys as _sys
from asyncio import coroutines as _coroutines, events as _events

from . import _compat

try:
    from . import _core
except ImportError as _exc:
    import os as _os

    _here = _os.path.dirname(_os.path.abspath(__file__))
    if "_core" in str(_exc) and not any(n.startswith("_core.") and n.endswith((".so", ".pyd"))
                                        for n in _os.listdir(_here)):
        # The folder imported is pyloop's sources (a checkout: the current directory
        # comes first on sys.path), which hold no compiled _core; the installed package,
        # if any, is hidden behind it. Python's own message blames a circular import.
        raise ImportError(
            f"pyloop was imported from {_here}, a source folder with no compiled pyloop._core: "
            f"Python found it before the installed package because {_os.path.dirname(_here)} is "
            "on sys.path (the current directory, when you run python there). Run from another "
            "folder to use the installed pyloop, or build this checkout in place first "
            "(make build, or pip install -e .).", name="pyloop._core", path=_here) from None
    raise
from ._core import Handle, TimerHandle
from ._loop import Loop

Loop.__module__ = "pyloop"

__all__ = ("Loop", "Handle", "TimerHandle", "new_event_loop", "install", "run")
if not _compat.PY314:  # 3.14's asyncio leaves its deprecated policies out of __all__ too
    __all__ += ("EventLoopPolicy",)
__version__ = "0.1.0"


def new_event_loop():
    """A new pyloop event loop."""
    return Loop()


class _EventLoopPolicy(_compat.BaseDefaultEventLoopPolicy):
    """An asyncio event loop policy whose loops are pyloop loops.

    asyncio.set_event_loop_policy(pyloop.EventLoopPolicy()); asyncio.run(main())
    Policies are deprecated from Python 3.14 on and go in 3.16, as asyncio's own: use
    pyloop.run(main()), or asyncio.run(main(), loop_factory=pyloop.new_event_loop).
    """

    def _loop_factory(self):
        return new_event_loop()

    def __repr__(self):
        return f"<{type(self).__module__}.{type(self).__qualname__}>"

    def __getattr__(self, name):
        # Reached only for what a policy lacks: a loop's method means the policy class
        # was given where a loop factory belongs (uvicorn's --loop pyloop:EventLoopPolicy,
        # asyncio.Runner(loop_factory=pyloop.EventLoopPolicy)). Say what to write.
        if not name.startswith("__") and hasattr(_asyncio.AbstractEventLoop, name):
            raise AttributeError(
                f"{self!r} is an event loop policy, not an event loop: it was used where a loop "
                f"factory belongs. Pass pyloop.new_event_loop instead (uvicorn: --loop "
                f"pyloop:new_event_loop; asyncio.Runner(loop_factory=pyloop.new_event_loop))",
                name=name, obj=self)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


_POLICY_ADVICE = "use pyloop.run(), or asyncio.Runner(loop_factory=pyloop.new_event_loop)"


def install():
    """Make pyloop the default event loop through the asyncio policy (deprecated from
    3.12 on, as uvloop.install(); policies go in 3.16)."""
    if _compat.PY312:
        import warnings
        warnings.warn("pyloop.install() sets an event loop policy, which asyncio deprecates; "
                      + _POLICY_ADVICE, DeprecationWarning, stacklevel=2)
    _compat.set_event_loop_policy(_EventLoopPolicy())


if _compat.PY314:
    def __getattr__(name):
        # asyncio 3.14 deprecates its policy classes on access (removed in 3.16): so does
        # pyloop for its own. The class stays importable, and works, until then.
        if name == "EventLoopPolicy":
            import warnings
            warnings.warn("pyloop.EventLoopPolicy is deprecated and slated for removal in "
                          "Python 3.16, as asyncio's policies are; " + _POLICY_ADVICE,
                          DeprecationWarning, stacklevel=2)
            return _EventLoopPolicy
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
else:
    EventLoopPolicy = _EventLoopPolicy
_EventLoopPolicy.__name__ = _EventLoopPolicy.__qualname__ = "EventLoopPolicy"


def run(main, *, debug=None):
    """Run the coroutine `main` on a new pyloop loop and return its result, like
    asyncio.run(): the loop is closed afterwards, after pending tasks are cancelled,
    async generators finalized and the default executor shut down."""
    if _sys.version_info >= (3, 11):
        with _asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
            return runner.run(main)
    return _run_310(main, debug)


def _cancel_all_tasks(loop):
    pending = _asyncio.all_tasks(loop)
    if not pending:
        return
    for task in pending:
        task.cancel()
    loop.run_until_complete(_asyncio.gather(*pending, return_exceptions=True))
    for task in pending:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler({
                "message": "unhandled exception during pyloop.run() shutdown",
                "exception": task.exception(),
                "task": task,
            })


def _run_310(main, debug):
    # Python 3.10 has no asyncio.Runner: the same steps as asyncio.run there.
    if _events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    if not _coroutines.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    loop = new_event_loop()
    try:
        _events.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            _events.set_event_loop(None)
            loop.close()
