"""Futures, tasks, task factories, executors, async generators."""

import asyncio
import concurrent.futures
import contextvars
import sys
import threading

import pytest

import pyloop

VAR = contextvars.ContextVar("VAR", default="unset")


def test_create_future(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop


def test_create_task_name_and_result(loop):
    async def coro():
        await asyncio.sleep(0)
        return "r"

    task = loop.create_task(coro(), name="my-task")
    assert isinstance(task, asyncio.Task)
    assert task.get_name() == "my-task"
    assert loop.run_until_complete(task) == "r"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task(context=) is new in 3.11")
def test_create_task_context(loop):
    ctx = contextvars.Context()
    ctx.run(VAR.set, "task-ctx")

    async def coro():
        return VAR.get()

    assert loop.run_until_complete(loop.create_task(coro(), context=ctx)) == "task-ctx"


def test_create_task_with_name_and_context_given_as_none(loop):
    """TaskGroup passes both: None is Task's default for each."""
    async def coro():
        return VAR.get()

    token = VAR.set("outer")
    try:
        kwargs = {"name": None, **({"context": None} if sys.version_info >= (3, 11) else {})}
        task = loop.create_task(coro(), **kwargs)
        named = loop.create_task(coro(), name="given")
    finally:
        VAR.reset(token)
    assert task.get_name().startswith("Task-") and named.get_name() == "given"
    assert loop.run_until_complete(asyncio.gather(task, named)) == ["outer", "outer"]
    if sys.version_info < (3, 11):
        c = coro()
        with pytest.raises(TypeError, match="context"):
            loop.create_task(c, context=None)
        c.close()


def test_create_task_without_a_task_factory_attribute(loop):
    async def coro():
        pass

    del loop._task_factory
    c = coro()
    with pytest.raises(AttributeError, match="has no attribute '_task_factory'"):
        loop.create_task(c)
    c.close()
    loop._task_factory = None
    assert loop.get_task_factory() is None
    loop.run_until_complete(loop.create_task(coro()))


@pytest.mark.parametrize("which", ["asyncio", "pyloop"])
def test_a_task_that_cannot_be_made_leaves_no_reference_to_the_loop(which):
    import gc
    import weakref
    from conftest import LOOP_FACTORIES
    loop = LOOP_FACTORIES[which]()
    gc.disable()
    try:
        with pytest.raises(TypeError, match="a coroutine was expected, got 42"):
            loop.create_task(42)
        fut = loop.create_future()
        assert fut.get_loop() is loop
        del fut
        ref = weakref.ref(loop)
        loop.close()
        del loop
        assert ref() is None  # (freed by its reference count: nothing kept one)
    finally:
        gc.enable()


def test_task_factory(loop):
    made = []

    def factory(lp, coro, **kwargs):
        made.append(coro)
        return asyncio.Task(coro, loop=lp, **kwargs)

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def coro():
        return 1

    assert loop.run_until_complete(loop.create_task(coro(), name="n")) == 1
    assert len(made) == 1
    with pytest.raises(TypeError):
        loop.set_task_factory(1)
    loop.set_task_factory(None)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in 3.12")
def test_eager_task_factory(loop):
    loop.set_task_factory(asyncio.eager_task_factory)
    order = []

    async def coro():
        order.append("ran eagerly")
        return 5

    async def main():
        t = loop.create_task(coro())
        order.append("after create_task")
        return await t

    assert loop.run_until_complete(main()) == 5
    assert order[:2] == ["ran eagerly", "after create_task"]


def test_cancellation(loop):
    async def sleeper():
        await asyncio.sleep(10)

    async def main():
        t = loop.create_task(sleeper())
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return t.cancelled()

    assert loop.run_until_complete(main()) is True


def test_gather_many(loop):
    async def one(i):
        await asyncio.sleep(0)
        return i

    async def main():
        return await asyncio.gather(*[one(i) for i in range(10_000)])

    assert loop.run_until_complete(main()) == list(range(10_000))


def test_wait_for_timeout(loop):
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.02)

    loop.run_until_complete(main())


def test_run_in_executor(loop):
    main_thread = threading.get_ident()
    res = loop.run_until_complete(loop.run_in_executor(None, threading.get_ident))
    assert res != main_thread
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        assert loop.run_until_complete(loop.run_in_executor(ex, sum, [1, 2])) == 3


def test_set_default_executor(loop):
    if sys.version_info >= (3, 11):  # 3.10 only warns
        with pytest.raises(TypeError):
            loop.set_default_executor(object())
    ex = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="mine")
    loop.set_default_executor(ex)
    name = loop.run_until_complete(loop.run_in_executor(None, lambda: threading.current_thread().name))
    assert name.startswith("mine")
    loop.run_until_complete(loop.shutdown_default_executor())
    assert ex._shutdown


def test_shutdown_default_executor_then_run_raises(loop):
    loop.run_until_complete(loop.run_in_executor(None, lambda: None))
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, lambda: None)


def test_shutdown_default_executor_timeout_positional(loop):
    # asyncio.Runner passes the timeout positionally on 3.12+; pyloop accepts it on every
    # version and, as asyncio 3.13+, gives up on a thread still running after it: a
    # RuntimeWarning, and the thread left to finish (asyncio 3.12.1 waits for it anyway).
    if not isinstance(loop, pyloop.Loop) and sys.version_info < (3, 13):
        pytest.skip("asyncio < 3.12 takes no timeout; 3.12.1 does not honour it")
    release = threading.Event()
    busy = loop.run_in_executor(None, release.wait, 30)
    with pytest.warns(RuntimeWarning) as warned:
        loop.run_until_complete(loop.shutdown_default_executor(0.2))
    still_running = not busy.done()
    release.set()
    assert still_running
    assert [str(w.message) for w in warned] == ["The executor did not finishing joining its threads within 0.2 seconds."]
    assert loop.run_until_complete(busy) is True


def _closing_agen(closed):
    """An async generator function whose generators record their closing in `closed`."""
    async def agen():
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)
    return agen


def test_shutdown_asyncgens(loop):
    closed = []
    agen = _closing_agen(closed)

    async def main():
        g = agen()
        assert await g.__anext__() == 1
        return g

    g = loop.run_until_complete(main())
    assert closed == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert closed == [True]
    del g


def test_asyncgen_finalized_by_loop(loop):
    closed = []
    agen = _closing_agen(closed)

    async def main():
        g = agen()
        await g.__anext__()
        del g
        import gc
        gc.collect()
        await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    assert closed == [True]


def test_swapped_task_and_future_classes_are_used(loop, monkeypatch):
    # asyncio looks asyncio.tasks.Task and asyncio.futures.Future up on every
    # create_task()/create_future(): code that swaps them (here for the pure-Python
    # classes) gets its own, with and without keywords.
    monkeypatch.setattr(asyncio.tasks, "Task", asyncio.tasks._PyTask)
    monkeypatch.setattr(asyncio.futures, "Future", asyncio.futures._PyFuture)

    async def answer():
        return 42

    async def main():
        fut = loop.create_future()
        plain = loop.create_task(answer())
        named = loop.create_task(answer(), name="named")
        return type(fut), type(plain), type(named), named.get_name(), await plain, await named

    assert loop.run_until_complete(main()) == (
        asyncio.futures._PyFuture, asyncio.tasks._PyTask, asyncio.tasks._PyTask, "named", 42, 42)
