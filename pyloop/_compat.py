"""What asyncio renamed or deprecated between 3.10 and 3.15, in one place.

pyloop calls none of asyncio's deprecated functions: where 3.14 deprecates a public name
(policies, asyncio.iscoroutinefunction), the name asyncio itself uses internally on that
version is taken instead, so no DeprecationWarning is attributed to pyloop's modules.
"""

import sys
from asyncio import coroutines, events

PY311 = sys.version_info >= (3, 11)
PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)
PY314 = sys.version_info >= (3, 14)
PY315 = sys.version_info >= (3, 15)

# asyncio's check for coroutine functions (3.14 deprecates the public name; its private
# twin also knows the objects asyncio marks as coroutine functions, unlike inspect's).
iscoroutinefunction = getattr(coroutines, "_iscoroutinefunction", None) or coroutines.iscoroutinefunction

# The policy base class and the policy get/set, without 3.14's deprecation warnings.
BaseDefaultEventLoopPolicy = getattr(events, "_BaseDefaultEventLoopPolicy", None) or events.BaseDefaultEventLoopPolicy
get_event_loop_policy = getattr(events, "_get_event_loop_policy", None) or events.get_event_loop_policy
set_event_loop_policy = getattr(events, "_set_event_loop_policy", None) or events.set_event_loop_policy


def iscoroutine_or_function(callback):
    """asyncio's test for what call_soon() and add_signal_handler() refuse."""
    return coroutines.iscoroutine(callback) or iscoroutinefunction(callback)
