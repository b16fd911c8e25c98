"""call_later, call_at, TimerHandle, ordering, cancellation, accuracy."""

import asyncio
import gc
import tracemalloc

import pytest

import pyloop


def test_call_later_returns_timer_handle(loop):
    h = loop.call_later(0, lambda: None)
    assert type(h).__name__ == "TimerHandle"
    assert isinstance(h.when(), float)
    assert h.when() <= loop.time()
    h.cancel()


@pytest.mark.parametrize("delay", [0, 0.001, 0.02])
def test_timer_alone_before_run_forever(loop, delay):
    # Nothing else is scheduled: the timer alone must wake the loop.
    calls = []
    loop.call_later(delay, lambda: (calls.append(1), loop.stop()))
    loop.run_forever()
    assert calls == [1]


def test_timer_due_while_callbacks_run(loop):
    # A timer that falls due while a slow callback runs must fire on the next turn.
    import time
    calls = []
    loop.call_later(0.001, lambda: (calls.append("timer"), loop.stop()))
    loop.call_soon(time.sleep, 0.01)
    loop.run_forever()
    assert calls == ["timer"]


def test_timers_run_in_when_order(loop):
    calls = []
    for delay in (0.03, 0.01, 0.02, 0.0, 0.015):
        loop.call_later(delay, calls.append, delay)
    now = loop.time()
    loop.call_at(now + 0.005, calls.append, "at")
    loop.run_until_complete(asyncio.sleep(0.06))
    assert calls == [0.0, "at", 0.01, 0.015, 0.02, 0.03]


def test_same_when_is_fifo(loop):
    calls = []
    when = loop.time() + 0.01
    for i in range(50):
        loop.call_at(when, calls.append, i)
    loop.run_until_complete(asyncio.sleep(0.03))
    assert sorted(calls) == list(range(50))
    if isinstance(loop, pyloop.Loop):
        # pyloop keeps scheduling order among equal `when`s; asyncio's heapq does not
        # promise any order (docs/api.md).
        assert calls == list(range(50))


def test_timer_never_fires_early(loop):
    fired = []
    for delay in (0.001, 0.0105, 0.0207, 0.05):
        h = loop.call_later(delay, lambda h_when=None: fired.append(loop.time()))
        fired.append(("when", h.when()))
    loop.run_until_complete(asyncio.sleep(0.1))
    whens = [w for (tag, w) in [f for f in fired if isinstance(f, tuple)]]
    times = [f for f in fired if not isinstance(f, tuple)]
    assert len(times) == 4
    for w, t in zip(whens, times):
        assert t >= w


def test_sleep_duration(loop):
    t0 = loop.time()
    loop.run_until_complete(asyncio.sleep(0.1))
    dt = loop.time() - t0
    assert 0.1 <= dt < 5  # never early; late only by what a loaded machine adds


def test_cancel_timer(loop):
    calls = []
    h = loop.call_later(0.01, calls.append, 1)
    loop.call_later(0.02, calls.append, 2)
    h.cancel()
    assert h.cancelled()
    loop.run_until_complete(asyncio.sleep(0.04))
    assert calls == [2]


def test_timer_handle_compare(loop):
    a = loop.call_at(10, lambda: None)
    b = loop.call_at(20, lambda: None)
    assert a < b and b > a and a <= b and a != b
    assert a.when() == 10
    assert hash(a) == hash(10.0)
    a.cancel()
    b.cancel()


def test_delay_none_is_type_error(loop):
    with pytest.raises(TypeError):
        loop.call_later(None, lambda: None)
    with pytest.raises(TypeError):
        loop.call_later("1", lambda: None)


def test_negative_delay_runs_soon(loop):
    calls = []
    loop.call_later(-5, calls.append, 1)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert calls == [1]


def test_timer_scheduled_from_callback(loop):
    calls = []
    loop.call_soon(lambda: loop.call_later(0.01, calls.append, "t"))
    loop.run_until_complete(asyncio.sleep(0.03))
    assert calls == ["t"]


def test_100k_timers(loop):
    calls = 0

    def cb():
        nonlocal calls
        calls += 1

    now = loop.time()
    for i in range(100_000):
        loop.call_at(now + (i % 100) * 0.0001, cb)
    loop.run_until_complete(asyncio.sleep(0.05))
    assert calls == 100_000


def test_cancelled_timers_do_not_pile_up(loop):
    # 100k timers far in the future, each cancelled: memory must not grow without bound.
    gc.collect()
    tracemalloc.start()
    try:
        async def churn():
            for _ in range(100):
                hs = [loop.call_later(3600, lambda: None) for _ in range(1000)]
                for h in hs:
                    h.cancel()
                del hs
                await asyncio.sleep(0)
            gc.collect()
            return tracemalloc.get_traced_memory()[0]

        loop.run_until_complete(churn())  # warm up
        base = tracemalloc.get_traced_memory()[0]
        after = loop.run_until_complete(churn())
    finally:
        tracemalloc.stop()
    assert after - base < 2_000_000
    if isinstance(loop, pyloop.Loop):
        stats = pyloop._core.stats(loop)
        assert stats["timers"] < 5000


def test_cancelled_timers_compacted_counts():
    lp = pyloop.new_event_loop()
    try:
        hs = [lp.call_later(3600, lambda: None) for _ in range(1000)]
        for h in hs[:600]:
            h.cancel()
        assert pyloop._core.stats(lp)["timers_cancelled"] == 600
        lp.run_until_complete(asyncio.sleep(0))
        st = pyloop._core.stats(lp)
        assert st["timers"] == 400 and st["timers_cancelled"] == 0
        assert all(not h._scheduled for h in hs[:600])
        assert all(h._scheduled for h in hs[600:])
    finally:
        lp.close()
