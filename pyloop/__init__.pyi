# Type information for pyloop (PEP 561): the public face. The loop is an
# asyncio.AbstractEventLoop, so its methods are typed as asyncio's.
import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._core import Handle as Handle, TimerHandle as TimerHandle

_T = TypeVar("_T")

__version__: str
__all__ = ("Loop", "Handle", "TimerHandle", "new_event_loop", "EventLoopPolicy", "install", "run")

class Loop(asyncio.AbstractEventLoop):
    """pyloop's event loop: asyncio's API, a C++ core over libuv."""
    def __init__(self) -> None: ...

def new_event_loop() -> Loop: ...

if sys.version_info >= (3, 14):
    _PolicyBase = asyncio.events._AbstractEventLoopPolicy
else:
    _PolicyBase = asyncio.AbstractEventLoopPolicy

class EventLoopPolicy(_PolicyBase):
    """An asyncio event loop policy whose loops are pyloop loops (policies are
    deprecated from Python 3.14: prefer pyloop.run or loop_factory)."""
    def get_event_loop(self) -> asyncio.AbstractEventLoop: ...
    def set_event_loop(self, loop: asyncio.AbstractEventLoop | None) -> None: ...
    def new_event_loop(self) -> Loop: ...
    if sys.version_info < (3, 14):
        def get_child_watcher(self) -> Any: ...
        def set_child_watcher(self, watcher: Any) -> None: ...

def install() -> None: ...
def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T: ...
