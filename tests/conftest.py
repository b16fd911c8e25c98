"""Every behaviour test runs on pyloop and on stock asyncio.

- Sync tests take the `loop` fixture: it is parametrized over LOOP_FACTORIES, so a
  test runs once per loop (ids `[asyncio]` and `[pyloop]`).
- Async tests (`@pytest.mark.asyncio`) are parametrized over the same factories by
  pytest-asyncio (>= 1.4) through the `pytest_asyncio_loop_factories` hook below.

asyncio is the reference: a test that passes on asyncio and fails on pyloop is a
pyloop bug. The `loop` fixture installs an exception handler that records every call
in `loop.test_errors`; a test that expects errors takes them out of that list, and
teardown fails if any are left.
"""

import asyncio
import asyncio.selector_events
import asyncio.unix_events
import gc
import importlib
import os

import pytest

import pyloop

# CI (.ci/run) installs every tool and package the tests use and sets this: there, a
# test that cannot run for want of one fails instead of skipping.
REQUIRE_TOOLS = os.environ.get("PYLOOP_REQUIRE_TOOLS") == "1"

# What the running asyncio's own transports can do. Some came in 3.11 point releases
# (Debian 12's 3.11.2 has neither of these; pyenv's 3.11.7 has both), so tests ask the
# classes, not the version.
ASYNCIO_DATAGRAM_PAUSES = (asyncio.selector_events._SelectorDatagramTransport.pause_reading
                           is not asyncio.ReadTransport.pause_reading)
ASYNCIO_READ_PIPE_IS_READING = (asyncio.unix_events._UnixReadPipeTransport.is_reading
                                is not asyncio.ReadTransport.is_reading)

# make wheels-test runs the aarch64 wheels in an arm64 root through qemu-user (tools/wheels.py
# sets this there). qemu gives every process one OS thread of its own (its RCU thread,
# named as the main thread), which the tests that count a process's threads leave out.
EMULATED = os.environ.get("PYLOOP_EMULATED") == "1"
EMULATOR_THREADS = 1 if EMULATED else 0

# make wheels-test (tools/wheels.py test) runs the suite against a wheel installed in a
# venv of its own: pyloop must come from there, never from the checkout's sources.
INSTALLED = os.environ.get("PYLOOP_TEST_INSTALLED")
if INSTALLED and not os.path.realpath(pyloop.__file__).startswith(os.path.realpath(INSTALLED) + os.sep):
    raise pytest.UsageError(f"PYLOOP_TEST_INSTALLED={INSTALLED}, but pyloop comes from {pyloop.__file__}")


def missing(reason):
    """This machine lacks what the test needs (a program, a kernel feature): a skip on
    a developer's machine, a failure in CI."""
    if REQUIRE_TOOLS:
        pytest.fail(f"PYLOOP_REQUIRE_TOOLS=1 and this test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def needs_module(name):
    """pytest.importorskip for the test dependencies (pyproject.toml's test extra), which
    CI must have."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"{name} is not installed ({exc})")

LOOP_FACTORIES = {
    "asyncio": asyncio.SelectorEventLoop,
    "pyloop": pyloop.new_event_loop,
}


def pytest_asyncio_loop_factories(config, item):
    return LOOP_FACTORIES


@pytest.fixture(params=list(LOOP_FACTORIES))
def loop(request):
    loop = LOOP_FACTORIES[request.param]()
    loop.test_errors = []
    loop.set_exception_handler(lambda lp, context: lp.test_errors.append(context))
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        asyncio.set_event_loop(None)
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
        errors = loop.test_errors
        gc.collect()
    assert not errors, f"unexpected calls to the exception handler: {errors}"


@pytest.fixture
def ploop():
    """A pyloop loop alone, for pyloop's extensions (loop.metrics(), the stall watch),
    which asyncio has no counterpart of; with the `loop` fixture's exception check."""
    loop = pyloop.new_event_loop()
    loop.test_errors = []
    loop.set_exception_handler(lambda lp, context: lp.test_errors.append(context))
    try:
        yield loop
    finally:
        if not loop.is_closed():
            loop.close()
        errors = loop.test_errors
        gc.collect()
    assert not errors, f"unexpected calls to the exception handler: {errors}"


@pytest.fixture
def loop_name(loop):
    return "pyloop" if isinstance(loop, pyloop.Loop) else "asyncio"


def drop_debug_accept_errors(loop):
    """In debug mode both loops report an incoming connection whose transport could not
    be made (a failed TLS handshake): asyncio's _accept_connection2. Takes those out of
    loop.test_errors; outside debug mode there must be none."""
    accept = [c for c in loop.test_errors if c["message"] == "Error on transport creation for incoming connection"]
    assert not accept or loop.get_debug(), accept
    loop.test_errors[:] = [c for c in loop.test_errors if c not in accept]
    return accept
