"""The public API: new_event_loop, Loop, EventLoopPolicy, install, run, Runner."""

import asyncio
import sys
import warnings

import pytest

import pyloop


async def _which_loop():
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_new_event_loop():
    lp = pyloop.new_event_loop()
    try:
        assert isinstance(lp, pyloop.Loop)
        assert isinstance(lp, asyncio.AbstractEventLoop)
        assert "pyloop.Loop" in repr(lp)
    finally:
        lp.close()


def test_run():
    assert pyloop.run(_which_loop()) is pyloop.Loop


def test_run_debug():
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert pyloop.run(main(), debug=True) is True


def test_run_rejects_non_coroutine():
    with pytest.raises((ValueError, TypeError)):
        pyloop.run(42)


def test_run_cancels_leftover_tasks():
    state = {}

    async def forever():
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    async def main():
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)

    pyloop.run(main())
    assert state == {"cancelled": True}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is new in 3.11")
def test_runner_loop_factory():
    with asyncio.Runner(loop_factory=pyloop.new_event_loop) as runner:
        assert runner.run(_which_loop()) is pyloop.Loop
        assert runner.run(_which_loop()) is pyloop.Loop


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is new in 3.12")
def test_asyncio_run_loop_factory():
    assert asyncio.run(_which_loop(), loop_factory=pyloop.new_event_loop) is pyloop.Loop


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_policy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = asyncio.get_event_loop_policy()
        try:
            asyncio.set_event_loop_policy(pyloop.EventLoopPolicy())
            assert asyncio.run(_which_loop()) is pyloop.Loop
            lp = asyncio.new_event_loop()
            assert isinstance(lp, pyloop.Loop)
            lp.close()
        finally:
            asyncio.set_event_loop_policy(old)


def test_install():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = asyncio.get_event_loop_policy()
        try:
            pyloop.install()
            assert isinstance(asyncio.get_event_loop_policy(), pyloop.EventLoopPolicy)
            assert asyncio.run(_which_loop()) is pyloop.Loop
        finally:
            asyncio.set_event_loop_policy(old)


def _deprecations(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught if w.category is DeprecationWarning]


def test_policy_deprecations_follow_asyncio():
    # 3.14 deprecates asyncio's policy classes on access (removed in 3.16): pyloop's
    # policy class follows; install() warns from 3.12 on (as uvloop.install()).
    from asyncio import unix_events
    py314 = sys.version_info >= (3, 14)
    if py314:
        assert _deprecations(lambda: asyncio.DefaultEventLoopPolicy) != []
    messages = _deprecations(lambda: pyloop.EventLoopPolicy)
    assert messages == (["pyloop.EventLoopPolicy is deprecated and slated for removal in Python 3.16, as "
                         "asyncio's policies are; use pyloop.run(), or "
                         "asyncio.Runner(loop_factory=pyloop.new_event_loop)"] if py314 else [])
    assert ("EventLoopPolicy" in pyloop.__all__) == (not py314)
    assert _deprecations(lambda: exec("from pyloop import *", {})) == []
    old = unix_events.events._get_event_loop_policy() if py314 else asyncio.get_event_loop_policy()
    try:
        messages = _deprecations(pyloop.install)
        assert len(messages) == (1 if sys.version_info >= (3, 12) else 0)
        assert all("pyloop.run()" in m for m in messages)
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(old)


def test_every_abstract_method_is_implemented():
    # No method of asyncio.AbstractEventLoop is left to raise its NotImplementedError.
    missing = [name for name, value in vars(asyncio.AbstractEventLoop).items()
               if callable(value) and not name.startswith("_")
               and getattr(pyloop.Loop, name) is value]
    assert missing == []


def test_handles_cannot_be_made_directly():
    with pytest.raises(TypeError):
        pyloop.Handle()


@pytest.mark.asyncio
async def test_async_tests_run_on_both_loops(request):
    # pytest-asyncio parametrizes async tests through pytest_asyncio_loop_factories.
    # Each run is one of the two, on its own loop, and the session holds both runs.
    name = request.node.callspec.id if hasattr(request.node, "callspec") else ""
    loop = asyncio.get_running_loop()
    assert name in ("asyncio", "pyloop")
    assert isinstance(loop, pyloop.Loop) == (name == "pyloop")
    assert type(loop).__module__.startswith("asyncio") == (name == "asyncio")
    runs = sorted(item.callspec.id for item in request.session.items
                  if item.originalname == request.node.originalname and hasattr(item, "callspec"))
    assert runs == ["asyncio", "pyloop"]
    await asyncio.sleep(0.001)
