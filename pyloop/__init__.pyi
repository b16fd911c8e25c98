# Type information for pyloop (PEP 561): the public face. The loop is an
# asyncio.AbstractEventLoop, so its methods are typed as asyncio's.
import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypedDict, TypeVar

from ._core import Handle as Handle, TimerHandle as TimerHandle

_T = TypeVar("_T")

__version__: str
__all__ = ("Loop", "Handle", "TimerHandle", "new_event_loop", "EventLoopPolicy", "install", "run")

class LoopHandles(TypedDict):
    poller: int
    tcp: int
    unix: int
    udp: int
    pipe: int
    process: int
    sock: int
    signal: int

class LoopMetrics(TypedDict):
    """What Loop.metrics() returns (docs/observability.md)."""
    utilization: float | None
    utilization_since_last: float | None
    running_time: float
    busy_time: float
    idle_time: float
    iterations: int
    callbacks: int
    ready: int
    timers_pending: int
    handles: LoopHandles
    bytes_read: int
    bytes_written: int
    lookups: int
    lookups_pending: int
    lookups_in_flight: int
    lookups_queued: int
    slowest_callback: float
    slowest_callback_group: int
    slowest_callback_repr: str | None
    slowest_callback_name: str | None
    slowest_callback_name_seconds: float | None

class Loop(asyncio.AbstractEventLoop):
    """pyloop's event loop: asyncio's API, a C++ core over libuv."""
    def __init__(self) -> None: ...
    def metrics(self) -> LoopMetrics:
        """How busy the loop is and what it holds (a pyloop extension)."""
    def set_stall_threshold(self, seconds: float | None) -> None:
        """Log, while it happens, a callback that blocks the loop longer (a pyloop extension)."""
    def get_stall_threshold(self) -> float | None: ...

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
