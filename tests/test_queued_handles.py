"""What the loop's queues hold: each handle's context, and handles the garbage collector
sees as asyncio's (pyloop shares one copy of the context between handles made while it
holds the same variables, and does not have the collector walk handles only its queues
hold: docs/architecture.md, "Hot paths"). Each test compares with asyncio."""

import asyncio
import contextvars
import gc
import weakref

import pytest

VAR = contextvars.ContextVar("VAR", default="unset")


def run_briefly(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def context_of(handle):
    # asyncio's Handle has get_context() from 3.12; _context on every version
    return handle._context


def test_handles_made_alike_run_in_contexts_of_their_own(loop):
    seen = []

    def setter(tag):
        seen.append((tag, VAR.get()))
        VAR.set(tag)

    token = VAR.set("outer")
    try:
        handles = [loop.call_soon(setter, f"h{i}") for i in range(3)]
        timer = loop.call_later(0, setter, "t")
    finally:
        VAR.reset(token)
    loop.run_until_complete(asyncio.sleep(0.01))
    # no callback saw what another set, and each handle keeps the context its callback changed
    assert seen == [("h0", "outer"), ("h1", "outer"), ("h2", "outer"), ("t", "outer")]
    contexts = [context_of(h) for h in handles + [timer]]
    assert [ctx[VAR] for ctx in contexts] == ["h0", "h1", "h2", "t"]
    assert len({id(ctx) for ctx in contexts}) == 4
    assert VAR.get() == "unset"


def test_the_context_asked_for_before_the_run_is_the_one_it_runs_in(loop):
    seen = []
    VAR.set("outer")
    h1 = loop.call_soon(lambda: seen.append(("h1", VAR.get())))
    h2 = loop.call_soon(lambda: seen.append(("h2", VAR.get())))
    ctx = context_of(h1)
    assert context_of(h1) is ctx
    assert ctx is not context_of(h2)
    assert ctx[VAR] == "outer"
    ctx.run(VAR.set, "changed through the handle's context")
    assert context_of(h2)[VAR] == "outer"
    run_briefly(loop)
    assert seen == [("h1", "changed through the handle's context"), ("h2", "outer")]
    assert context_of(h1) is ctx


def test_a_variable_set_between_calls_is_seen_by_the_later_ones_only(loop):
    seen = []
    values = [["a"], ["b"], ["a"]]  # the third equals the first and is another object
    for v in values:
        VAR.set(v)
        loop.call_soon(lambda: seen.append(VAR.get()))
    VAR.set("last")
    run_briefly(loop)
    assert seen == values
    assert [id(v) for v in seen] == [id(v) for v in values]


def test_a_callback_that_sets_a_variable_then_schedules_passes_it_on(loop):
    seen = []

    def first():
        VAR.set("from first")
        loop.call_soon(lambda: seen.append(("child", VAR.get())))

    VAR.set("outer")
    loop.call_soon(first)
    loop.call_soon(lambda: seen.append(("sibling", VAR.get())))
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == [("sibling", "outer"), ("child", "from first")]


def test_threadsafe_callbacks_get_the_calling_threads_context(loop):
    import threading
    seen = []

    def thread_main():
        VAR.set("thread")
        loop.call_soon_threadsafe(lambda: seen.append(VAR.get()))

    VAR.set("loop")
    loop.call_soon(lambda: seen.append(VAR.get()))
    t = threading.Thread(target=thread_main)
    t.start()
    t.join(10)
    loop.call_soon(lambda: seen.append(VAR.get()))
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == ["loop", "thread", "loop"]


class Node:
    def __init__(self, i):
        self.me = self  # a cycle only the handle holding it keeps alive
        self.i = i


def test_queued_callbacks_and_arguments_survive_collections(loop):
    """Objects only queued handles refer to, each in a cycle of its own, through full
    collections: nothing of them may be cleared before the callbacks run."""
    checked = []

    def check(node, i):
        assert node.me is node and node.i == i
        checked.append(i)

    def closure(i):
        def cb():
            assert cb.me is cb
            checked.append(-i)
        cb.me = cb
        return cb

    n = 3000
    for i in range(n):
        loop.call_soon(check, Node(i), i)
        loop.call_later(0.001, closure(i + 1))
    for _ in range(3):
        gc.collect()
    loop.run_until_complete(asyncio.sleep(0.05))
    assert not loop.test_errors
    assert sorted(checked) == sorted(list(range(n)) + [-(i + 1) for i in range(n)])


def test_handles_the_user_keeps_are_tracked_by_the_collector(loop):
    kept = loop.call_soon(lambda: None)
    timer = loop.call_later(10, lambda: None)
    loop.call_soon(lambda: None)  # (pyloop decides about the one before when it queues the next)
    loop.call_later(10, lambda: None)
    assert gc.is_tracked(kept) and gc.is_tracked(timer)
    run_briefly(loop)
    timer.cancel()
    assert gc.is_tracked(kept) and gc.is_tracked(timer)


def test_a_handle_its_callback_handed_out_is_tracked_after_its_run(loop):
    def boom():
        raise ZeroDivisionError

    loop.call_soon(boom)
    loop.call_soon(lambda: None)
    run_briefly(loop)
    (context,) = loop.test_errors
    loop.test_errors.clear()
    assert isinstance(context["exception"], ZeroDivisionError)
    assert gc.is_tracked(context["handle"])


DROPPED_LOOP = """
import asyncio, gc, sys, warnings, weakref
sys.path.insert(0, {tests!r})
from conftest import LOOP_FACTORIES

class Owner:
    def __init__(self, loop):
        self.loop = loop
        self.timer = loop.call_later(3600, self.tick)   # kept: the handle is in the cycle
    def tick(self):
        pass

def make():
    loop = LOOP_FACTORIES[{which!r}]()
    Owner(loop)
    for _ in range(1000):
        loop.call_soon(loop.stop)        # dropped: only the queue holds them
        loop.call_later(3600, loop.time)
    Owner(loop)                           # the last one queued, still kept
    return weakref.ref(loop)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ref = make()
    gc.collect()
    gc.collect()
messages = [str(w.message) for w in caught]
del caught  # (3.15's record keeps the warning's source: the loop)
gc.collect()
assert ref() is None, "the dropped loop was not collected"
assert any("unclosed event loop" in m for m in messages), messages
print("ok")
"""


@pytest.mark.parametrize("which", ["asyncio", "pyloop"])
def test_a_dropped_loop_with_queued_callbacks_is_collected(which):
    import os
    import subprocess
    import sys
    code = DROPPED_LOOP.format(tests=os.path.dirname(os.path.abspath(__file__)), which=which)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_get_referents_of_a_loop_with_queued_handles(loop):
    marker = object()
    for _ in range(10):
        loop.call_soon(lambda m=marker: None)
        loop.call_later(10, print, marker)
    gc.get_referents(loop)  # must not crash; what it lists is the loop's business
    weak = weakref.ref(loop)
    assert weak() is loop
    run_briefly(loop)


def test_handles_do_not_bring_collections_sooner():
    """pyloop's handles are allocated without the allocation count that starts a
    collection (core/handle.cpp, alloc_handle): a queued handle gives the collector
    nothing to walk. (asyncio's handles are Python objects: each counts.)"""
    import pyloop
    loop = pyloop.new_event_loop()
    loop.set_debug(False)  # (debug mode's source tracebacks are objects of their own: make test-debug)
    try:
        keep = []
        gc.disable()
        try:
            before = gc.get_count()[0]
            for _ in range(5000):
                keep.append(loop.call_soon(print))  # (more than the free list of 256 holds)
                loop.call_later(10, print)
            grew = gc.get_count()[0] - before
        finally:
            gc.enable()
        assert grew < 100, grew  # the list's own growth, not 10,000 handles
        for h in keep:
            h.cancel()
        weak = weakref.ref(keep[0])
        del keep
        assert weak() is not None  # still queued
        run_briefly(loop)
        gc.collect()
        assert weak() is None
    finally:
        loop.close()


def test_collections_while_the_loop_runs_leave_queued_callbacks_whole(loop):
    """A running loop does not report its queues to the collector (what they hold is
    reachable through it); collections made by a callback while thousands of handles
    wait, each holding a cycle nothing else refers to, must leave them whole."""
    checked = []

    def check(node, i):
        assert node.me is node and node.i == i
        checked.append(i)

    def collector():
        for i in range(2000):
            loop.call_soon(check, Node(i), i)
            loop.call_later(0.001, check, Node(-i - 1), -i - 1)
        gc.collect()
        gc.collect()

    loop.call_soon(collector)
    loop.run_until_complete(asyncio.sleep(0.05))
    assert not loop.test_errors
    assert sorted(checked) == sorted(list(range(2000)) + [-i - 1 for i in range(2000)])


# ---- calls whose handle the caller dropped -------------------------------------------
# pyloop's ready queue keeps what such a handle would run (callback, one argument,
# context) and lets the Handle go (core/loop.hpp, push_ready). Everything a program can
# see must stay as in asyncio: the order, the argument, the context, the handle an
# exception report names, debug mode's reports, close().


def test_dropped_calls_run_in_order_with_their_argument_and_context(loop):
    loop.set_debug(False)  # (the queue keeps calls outside debug mode; make test-debug runs in it)
    order = []
    token = VAR.set("a")
    try:
        loop.call_soon(lambda: order.append(("none", VAR.get())))
        loop.call_soon(order.append, ("one", VAR.get()))
        kept = loop.call_soon(lambda x, y: order.append((x, y)), "two", VAR.get())
        loop.call_later(0, lambda: order.append(("timer", VAR.get())))
        VAR.set("b")
        loop.call_soon(lambda: (order.append(("sets c", VAR.get())), VAR.set("c")))
        loop.call_soon(lambda: order.append(("after", VAR.get())))
        ctx = contextvars.copy_context()
        ctx.run(VAR.set, "given")
        loop.call_soon(lambda: order.append(("context=", VAR.get())), context=ctx)
        loop.call_soon(order.append, ("last", VAR.get()))
    finally:
        VAR.reset(token)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert order == [("none", "a"), ("one", "a"), ("two", "a"), ("sets c", "b"), ("after", "b"),
                     ("context=", "given"), ("last", "b"), ("timer", "a")]
    assert kept._args == ("two", "a")
    assert ctx[VAR] == "given"


def test_an_exception_in_a_dropped_call_is_reported_with_its_handle(loop):
    loop.set_debug(False)  # (the queue keeps calls outside debug mode; make test-debug runs in it)
    import asyncio.format_helpers

    def boom(x):
        VAR.set("set before raising")
        raise ZeroDivisionError(x)

    token = VAR.set("outer")
    loop.call_soon(boom, 7)
    VAR.reset(token)
    loop.call_soon(lambda: None)
    run_briefly(loop)
    (context,) = loop.test_errors
    loop.test_errors.clear()
    handle = context["handle"]
    assert context["message"] == "Exception in callback " + asyncio.format_helpers._format_callback_source(boom, (7,))
    assert type(context["exception"]) is ZeroDivisionError and context["exception"].args == (7,)
    assert type(handle).__name__ == "Handle"
    assert handle._callback is boom and handle._args == (7,) and not handle.cancelled()
    assert repr(handle).startswith("<Handle ")
    assert context_of(handle)[VAR] == "set before raising"  # the context the callback ran in
    assert VAR.get() != "set before raising"


def test_system_exit_from_a_dropped_call_leaves_run_forever_and_the_rest_wait(loop):
    loop.set_debug(False)  # (the queue keeps calls outside debug mode; make test-debug runs in it)
    ran = []

    def leave(code):
        raise SystemExit(code)

    loop.call_soon(leave, 3)
    loop.call_soon(ran.append, "queued after")
    loop.call_soon(lambda: ran.append("no argument"))
    with pytest.raises(SystemExit) as info:
        loop.run_forever()
    assert info.value.code == 3
    assert ran == []
    run_briefly(loop)
    assert ran == ["queued after", "no argument"]


def test_calls_queued_before_debug_mode_began_are_reported_as_slow(loop, caplog):
    loop.set_debug(False)  # (the queue keeps calls outside debug mode; make test-debug runs in it)
    import logging
    import re
    import time
    loop.call_soon(time.sleep, 0.06)
    loop.call_soon(lambda: None)
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_briefly(loop)
    slow = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Executing")]
    assert len(slow) == 1 and re.fullmatch(r"Executing <Handle sleep\(0\.06\)> took 0\.\d\d\d seconds", slow[0]), slow


def test_a_weakly_referenced_queued_handle_lives_until_it_has_run(loop):
    loop.set_debug(False)  # (the queue keeps calls outside debug mode; make test-debug runs in it)
    handle = loop.call_soon(len, "x")
    ref = weakref.ref(handle)
    del handle
    loop.call_soon(lambda: None)
    gc.collect()
    assert ref() is not None and ref()._args == ("x",)
    run_briefly(loop)
    gc.collect()
    assert ref() is None


class Held:
    pass


def test_close_releases_what_dropped_calls_hold(loop):
    loop.set_debug(False)  # (the queue keeps calls outside debug mode; make test-debug runs in it)
    none, one = Held(), Held()
    refs = [weakref.ref(none), weakref.ref(one)]
    loop.call_soon(lambda held=none: None)
    loop.call_soon(id, one)
    loop.call_soon(lambda: None)
    del none, one
    gc.collect()
    assert all(r() is not None for r in refs)
    loop.close()
    assert [r() for r in refs] == [None, None]


def test_dropped_calls_and_their_arguments_survive_collections(loop):
    """As test_queued_callbacks_and_arguments_survive_collections, with calls of no
    argument and of one (those pyloop keeps without their handle), queued both before
    the loop runs and by a callback, with full collections in between."""
    loop.set_debug(False)  # (the queue keeps calls outside debug mode; make test-debug runs in it)
    checked = []

    def check(node):
        assert node.me is node
        checked.append(node.i)

    def closure(i):
        def cb():
            assert cb.me is cb
            checked.append(i)
        cb.me = cb
        return cb

    def queue(base):
        for i in range(base, base + 2000, 2):
            loop.call_soon(check, Node(i))
            loop.call_soon(closure(i + 1))
        gc.collect()

    queue(0)
    loop.call_soon(queue, 10_000)
    gc.collect()
    loop.run_until_complete(asyncio.sleep(0.05))
    assert not loop.test_errors
    assert sorted(checked) == list(range(2000)) + list(range(10_000, 12_000))


def test_queued_calls_whose_handle_was_dropped_keep_no_python_object():
    """pyloop only (asyncio keeps every Handle: docs/api.md, "Differences"): 20,000
    call_soon whose handle the caller dropped take no block from Python's allocator."""
    import sys
    import pyloop
    loop = pyloop.new_event_loop()
    loop.set_debug(False)
    try:
        def cb(*args):
            pass
        gc.disable()
        try:
            before = sys.getallocatedblocks()
            for _ in range(10_000):
                loop.call_soon(cb)
                loop.call_soon(cb, None)
            grew = sys.getallocatedblocks() - before
        finally:
            gc.enable()
        assert grew < 100, grew
        assert loop.metrics()["ready"] == 20_000
        run_briefly(loop)
    finally:
        loop.close()
