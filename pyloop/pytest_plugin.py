"""pytest plugin: run a project's async tests on pyloop with one flag.

    pytest --pyloop            (or `pyloop = true` in the [pytest] ini section)

- pytest-asyncio >= 1.4: its tests run on pyloop loops (the loop-factory hook).
- aiohttp's pytest plugin (`loop`, `aiohttp_client`, `aiohttp_server` fixtures) and
  older pytest-asyncio: asyncio's policy gives pyloop loops for the run, so
  `asyncio.new_event_loop()` (what aiohttp's default `--aiohttp-loop pyloop` calls; its
  "pyloop" means stock asyncio) makes pyloop loops.

Installed with pyloop (entry point `pytest11`); without the flag it does nothing.
"""


import pytest

import pyloop
from pyloop import _compat

_saved_policy = []


def pytest_addoption(parser):
    group = parser.getgroup("pyloop")
    group.addoption("--pyloop", action="store_true", default=None,
                    help="run async tests on pyloop's event loop (pytest-asyncio, aiohttp's fixtures)")
    parser.addini("pyloop", type="bool", default=False, help="run async tests on pyloop's event loop")


def enabled(config):
    flag = config.getoption("pyloop", default=None)
    return bool(flag) if flag is not None else bool(config.getini("pyloop"))


class _LoopFactories:
    """pytest-asyncio's loop-factory hook, registered only with --pyloop (pytest-asyncio
    treats any implementation of the hook as a request to parametrize)."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_asyncio_loop_factories(self, config, item):
        return {"pyloop": pyloop.new_event_loop}


def pytest_configure(config):
    if not enabled(config):
        return
    config.pluginmanager.register(_LoopFactories(), "pyloop-loop-factories")
    # Policies are deprecated from 3.14 (gone in 3.16) and still the only hook that
    # aiohttp's fixtures and plain asyncio.run() have.
    _saved_policy.append(_compat.get_event_loop_policy())
    _compat.set_event_loop_policy(pyloop._EventLoopPolicy())


def pytest_unconfigure(config):
    if _saved_policy:
        _compat.set_event_loop_policy(_saved_policy.pop())


def pytest_report_header(config):
    if enabled(config):
        return f"pyloop {pyloop.__version__}: async tests run on pyloop's event loop"
    return None
