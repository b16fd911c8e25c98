"""call_soon, Handle, contexts, ordering, call_soon_threadsafe."""

import asyncio
import contextvars
import socket
import sys
import threading
import time
import weakref

import pytest

VAR = contextvars.ContextVar("VAR", default="unset")


def run_briefly(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_call_soon_fifo_with_args(loop):
    calls = []
    for i in range(10):
        loop.call_soon(calls.append, i)
    loop.call_soon(lambda a, b, c: calls.append((a, b, c)), 1, 2, 3)
    run_briefly(loop)
    assert calls == list(range(10)) + [(1, 2, 3)]


def test_handle_api(loop):
    h = loop.call_soon(lambda: None)
    assert not h.cancelled()
    if hasattr(h, "get_context"):  # asyncio has it from 3.12, pyloop always
        assert isinstance(h.get_context(), contextvars.Context)
    assert "Handle" in repr(h) and "lambda" in repr(h)
    h.cancel()
    assert h.cancelled()
    assert "cancelled" in repr(h)
    h.cancel()  # idempotent
    run_briefly(loop)


def test_cancelled_callback_does_not_run(loop):
    calls = []
    h = loop.call_soon(calls.append, 1)
    loop.call_soon(calls.append, 2)
    h.cancel()
    run_briefly(loop)
    assert calls == [2]


def test_cancel_from_earlier_callback(loop):
    calls = []
    h2 = None

    def first():
        calls.append(1)
        h2.cancel()

    loop.call_soon(first)
    h2 = loop.call_soon(calls.append, 2)
    run_briefly(loop)
    assert calls == [1]


class Tracked:
    pass


def schedule_holding(loop, how, run=None):
    """Schedules a callback that alone holds a new object (in its closure or its
    arguments); returns a weak reference to the object."""
    obj = Tracked()
    ref = weakref.ref(obj)
    if how == "closure":
        loop.call_soon(lambda: run and run(obj))
    elif how == "one argument":
        loop.call_soon(lambda o: run and run(o), obj)
    else:
        loop.call_soon(lambda o, n: run and run(o), obj, 2)
    return ref


@pytest.mark.parametrize("how", ["closure", "one argument", "two arguments"])
def test_what_a_callback_ran_is_freed_as_asyncio_frees_it(loop, how):
    # asyncio lets a handle go when it takes the next one, and at the end of a pass;
    # pyloop's metrics keep what the last callback ran (to name it if it was the
    # slowest) no longer than that.
    seen = []
    ref = schedule_holding(loop, how, run=lambda o: time.sleep(0.002))  # (a long one)
    loop.call_soon(lambda: seen.append(("next callback", ref())))

    async def main():
        refs = [schedule_holding(loop, how)]  # the last callback of a pass, then a poll
        loop.call_later(0.01, lambda: seen.append(("timer after a poll", refs[0]())))
        await asyncio.sleep(0.05)

    loop.run_until_complete(main())
    assert seen == [("next callback", None), ("timer after a poll", None)]
    loop.call_soon(loop.stop)
    last = schedule_holding(loop, how)  # the last callback before run_forever returns
    loop.run_forever()
    assert last() is None


def test_context_is_copied_at_schedule_time(loop):
    seen = []
    VAR.set("before")
    loop.call_soon(lambda: seen.append(VAR.get()))
    VAR.set("after")
    run_briefly(loop)
    assert seen == ["before"]


def test_explicit_context(loop):
    ctx = contextvars.Context()
    ctx.run(VAR.set, "inside")
    seen = []

    def cb():
        seen.append(VAR.get())
        VAR.set("changed")

    loop.call_soon(cb, context=ctx)
    loop.call_later(0, lambda: seen.append(VAR.get()), context=ctx)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == ["inside", "changed"]
    assert VAR.get() != "changed"


def test_bad_keyword(loop):
    with pytest.raises(TypeError):
        loop.call_soon(lambda: None, bogus=1)
    with pytest.raises(TypeError):
        loop.call_soon()


def test_scheduled_during_iteration_runs_after_io(loop):
    # A callback scheduled while the loop runs callbacks waits for the next iteration,
    # which polls I/O first: the reader's callback is appended after it, as in asyncio.
    a, b = socket.socketpair()
    order = []
    try:
        def first():
            order.append("first")
            b.send(b"x")
            loop.call_soon(order.append, "next")

        def on_read():
            order.append("reader")
            a.recv(10)
            loop.remove_reader(a)
            loop.stop()

        loop.add_reader(a, on_read)
        loop.call_soon(first)
        loop.run_forever()
        assert order == ["first", "next", "reader"]
    finally:
        a.close()
        b.close()


def test_call_soon_threadsafe_from_8_threads(loop):
    n_threads, per_thread = 8, 2000
    got = []
    done = loop.create_future()
    barrier = threading.Barrier(n_threads)

    def on_item(item):
        got.append(item)
        if len(got) == n_threads * per_thread and not done.done():
            done.set_result(None)

    def worker(t):
        barrier.wait()
        for i in range(per_thread):
            loop.call_soon_threadsafe(on_item, (t, i))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    loop.run_until_complete(asyncio.wait_for(done, 30))
    for t in threads:
        t.join()
    assert sorted(got) == [(t, i) for t in range(n_threads) for i in range(per_thread)]
    # each thread's calls arrive in that thread's order
    for t in range(n_threads):
        assert [i for (tt, i) in got if tt == t] == list(range(per_thread))


def test_call_soon_threadsafe_wakes_sleeping_loop(loop):
    fut = loop.create_future()

    def later():
        loop.call_soon_threadsafe(fut.set_result, "woken")

    timer = threading.Timer(0.05, later)
    timer.start()
    assert loop.run_until_complete(asyncio.wait_for(fut, 10)) == "woken"
    timer.join()


def test_call_soon_threadsafe_context(loop):
    ctx = contextvars.Context()
    ctx.run(VAR.set, "ctx")
    fut = loop.create_future()
    t = threading.Thread(target=lambda: loop.call_soon_threadsafe(lambda: fut.set_result(VAR.get()), context=ctx))
    t.start()
    assert loop.run_until_complete(fut) == "ctx"
    t.join()


def test_gil_released_while_loop_waits(loop):
    count = 0
    stop = threading.Event()

    def spin():
        nonlocal count
        while not stop.is_set():
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        loop.run_until_complete(asyncio.sleep(0.3))
        before = count
        loop.run_until_complete(asyncio.sleep(0.3))
        progressed = count - before
    finally:
        stop.set()
        t.join()
    # The other thread made real progress while the loop slept.
    assert progressed > 10000


def test_busy_chain_still_sees_threads_and_timers(loop):
    # A loop kept busy by call_soon chains must still run call_soon_threadsafe
    # callbacks and due timers while the chain goes on.
    events = []
    deadline = loop.time() + 5

    def chain():
        if ("thread" in events and "timer" in events) or loop.time() > deadline:
            loop.stop()
        else:
            loop.call_soon(chain)

    loop.call_later(0.02, events.append, "timer")
    t = threading.Timer(0.02, lambda: loop.call_soon_threadsafe(events.append, "thread"))
    t.start()
    loop.call_soon(chain)
    loop.run_forever()
    t.join()
    assert sorted(events) == ["thread", "timer"]
    assert loop.time() < deadline


def test_cancel_from_another_thread_while_a_threadsafe_callback_runs(loop):
    # 3.14: a call_soon_threadsafe() handle's cancel() and cancelled() from another
    # thread wait until its running callback has returned; before 3.14 they return at once.
    waits = sys.version_info >= (3, 14)
    started, finished, checked = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def callback():
        started.set()
        # Before 3.14 the callback runs until the other thread has looked (however late the
        # scheduler lets it); on 3.14 that thread's cancelled() waits for this one to end.
        checked.wait(0.2 if waits else 10)
        finished.set()

    def canceller(handle):
        started.wait(10)
        seen["cancelled"] = handle.cancelled()
        seen["finished at cancelled()"] = finished.is_set()
        handle.cancel()
        seen["finished at cancel()"] = finished.is_set()
        seen["cancelled after"] = handle.cancelled()
        checked.set()

    handle = loop.call_soon_threadsafe(callback)
    t = threading.Thread(target=canceller, args=(handle,))
    t.start()
    loop.run_until_complete(asyncio.sleep(0.3))
    t.join(10)
    assert seen == {"cancelled": False, "finished at cancelled()": waits, "finished at cancel()": waits,
                    "cancelled after": True}
    # A callback may cancel its own handle (3.14's lock is reentrant).
    inner = []
    h2 = loop.call_soon_threadsafe(lambda: (h2.cancel(), inner.append(h2.cancelled())))
    loop.run_until_complete(asyncio.sleep(0.01))
    assert inner == [True]
