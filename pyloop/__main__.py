"""python -m pyloop: what pyloop is built with, and ways to run code on it.

    python -m pyloop                     pyloop's version, the libuv it was built with and
                                         runs with, libuv's pool size, the Python build,
                                         and whether uvloop is installed
    python -m pyloop run SCRIPT [ARGS]   run a script with pyloop as asyncio's loop
                                         (asyncio.run, asyncio.Runner, get_event_loop)
    python -m pyloop repl                asyncio's REPL (top-level await) on pyloop

    python -m pyloop.threads SCRIPT      which threads a program grows, on any loop
                                         (docs/observability.md)
"""

import json
import os
import platform
import runpy
import sys
import warnings

import pyloop
from pyloop import _compat, _core
from pyloop._dns import pool_size


def _uv(n):
    return f"{n // 10000}.{n // 100 % 100}.{n % 100}"


def info():
    lines = [("pyloop", f"{pyloop.__version__} ({os.path.dirname(pyloop.__file__)})"),
             ("installed from", installed_from()),
             ("compiled by", _core.compiler),
             ("libuv built with", f"{_uv(_core.libuv_build_version)} "
                                  f"({'built in' if _core.libuv_linkage == 'bundled' else 'the system library'})"),
             ("libuv running", _core.libuv_version_string())]
    size, source = pool_size()
    lines.append(("libuv pool threads", f"{size} ({source}; started at the first lookup)"))
    loop = pyloop.new_event_loop()
    try:
        peek = loop._io_peek_mechanism()
    finally:
        loop.close()
    lines.append(("busy iterations", {"io_uring": "skip libuv's poll when an io_uring completion says it would "
                                                  "find nothing",
                                      "epoll": "skip libuv's turn when epoll_wait() finds nothing (io_uring "
                                               "refused here)",
                                      "off": "poll through libuv every time (PYLOOP_IO_PEEK=off)"}[peek]))
    lines.append(("Python", f"{platform.python_implementation()} {platform.python_version()} "
                            f"({', '.join(platform.python_build())}; {platform.python_compiler()})"))
    try:
        import uvloop
        lines.append(("uvloop", f"{uvloop.__version__} installed"))
    except ImportError:
        lines.append(("uvloop", "not installed"))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)


def installed_from():
    """The wheel pyloop was installed from, by its platform tag (make wheels: manylinux_2_17;
    a wheel built here from the sdist: linux_<arch>), or how else it got here."""
    from importlib import metadata
    try:
        dist = metadata.distribution("pyloop-uv")
        wheel = dist.read_text("WHEEL") or ""
        direct = dist.read_text("direct_url.json") or ""
    except metadata.PackageNotFoundError:
        return "not installed (sources on sys.path)"
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    if json.loads(direct or "{}").get("dir_info", {}).get("editable"):
        return "an editable build (pip install -e)"
    return f"a wheel: {', '.join(tags)}" if tags else "unknown (no WHEEL record)"


def use_loop(name="pyloop"):
    """Make `name` (asyncio, uvloop or pyloop) the loop of asyncio.run(),
    asyncio.Runner() and asyncio.get_event_loop() in this process."""
    if name == "asyncio":
        return
    if name == "uvloop":
        import uvloop
        with warnings.catch_warnings():  # uvloop deprecates its policy on 3.12+ as asyncio does
            warnings.simplefilter("ignore", DeprecationWarning)
            policy = uvloop.EventLoopPolicy()
    elif name == "pyloop":
        policy = pyloop._EventLoopPolicy()
    else:
        raise ValueError(f"unknown loop {name!r} (asyncio, uvloop, pyloop)")
    # The only hook plain asyncio.run() and asyncio.get_event_loop() have is the policy;
    # asyncio deprecates policies from 3.14 (gone in 3.16), but the policy still works there.
    _compat.set_event_loop_policy(policy)


def exec_script(argv):
    """Run argv[0] as __main__ with argv as sys.argv and its folder on sys.path."""
    sys.argv = list(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
    runpy.run_path(argv[0], run_name="__main__")


def run_script(argv):
    if not argv:
        sys.exit("usage: python -m pyloop run SCRIPT [ARGS...]")
    use_loop("pyloop")
    exec_script(argv)


def repl():
    use_loop("pyloop")
    sys.argv = [sys.argv[0]]
    runpy.run_module("asyncio", run_name="__main__", alter_sys=True)


def print_out(text):
    """Prints to stdout; a reader that went away (`python -m pyloop | head -1`) ends the
    program quietly, as a command-line tool does, not with a BrokenPipeError traceback."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would flush stdout again at exit and fail the same way: point it at
        # /dev/null first (the recipe of Python's signal module documentation).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("info", "--version"):
        print_out(info())
    elif argv[0] == "run":
        run_script(argv[1:])
    elif argv[0] == "repl":
        repl()
    elif argv[0] in ("-h", "--help", "help"):
        print_out(__doc__.strip())
    else:
        sys.exit(f"python -m pyloop: unknown command {argv[0]!r} (info, run SCRIPT, repl)\n\n{__doc__.strip()}")


if __name__ == "__main__":
    main()
