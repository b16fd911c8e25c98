"""getaddrinfo/getnameinfo: the results and errors of the socket module; names on
libuv's pool, never on a Python thread."""

import asyncio
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import EMULATOR_THREADS

CASES = [
    ("localhost", 80, {}),
    ("localhost", "http", {"type": socket.SOCK_STREAM}),
    (None, 8080, {"flags": socket.AI_PASSIVE}),
    (None, 0, {}),
    ("127.0.0.1", 443, {}),
    ("::1", None, {"family": socket.AF_INET6}),
    ("fe80::1%lo", 80, {"type": socket.SOCK_STREAM}),
    (b"localhost", b"80", {"proto": socket.IPPROTO_TCP}),
    ("localhost", 53, {"family": socket.AF_INET, "type": socket.SOCK_DGRAM}),
    ("LOCALHOST", 1, {"flags": socket.AI_CANONNAME}),
]


@pytest.mark.parametrize("host,port,kw", CASES)
def test_getaddrinfo_matches_socket_module(loop, host, port, kw):
    got = loop.run_until_complete(loop.getaddrinfo(host, port, **kw))
    want = socket.getaddrinfo(host, port, **kw)
    assert got == want
    assert [type(f) for f, *_ in got] == [type(f) for f, *_ in want]


ERROR_CASES = [
    (("localhost", "no-such-service"), {}),
    (("localhost", 80), {"flags": socket.AI_NUMERICHOST}),
    (("localhost", 80), {"family": 12345}),
    (("localhost", 80), {"type": 12345}),
]


@pytest.mark.parametrize("args,kw", ERROR_CASES)
def test_getaddrinfo_errors_match(loop, args, kw):
    with pytest.raises(socket.gaierror) as want:
        socket.getaddrinfo(*args, **kw)
    with pytest.raises(socket.gaierror) as got:
        loop.run_until_complete(loop.getaddrinfo(*args, **kw))
    assert got.value.args == want.value.args


def test_getaddrinfo_bad_types(loop):
    with pytest.raises(TypeError):
        loop.run_until_complete(loop.getaddrinfo(123, 80))
    with pytest.raises(OSError):
        loop.run_until_complete(loop.getaddrinfo("localhost", 1.5))


@pytest.mark.parametrize("sockaddr,flags", [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("::1", 443, 0, 0), 0),
    (("127.0.0.1", 53), socket.NI_DGRAM),
])
def test_getnameinfo_matches(loop, sockaddr, flags):
    got = loop.run_until_complete(loop.getnameinfo(sockaddr, flags))
    assert got == socket.getnameinfo(sockaddr, flags)


@pytest.mark.parametrize("sockaddr,exc", [
    ("127.0.0.1", TypeError),
    (("127.0.0.1", 80, 0, 0), OSError),
    (("::1", 80, 1 << 21, 0), OverflowError),
    (("not an address", 80), socket.gaierror),
])
def test_getnameinfo_errors(loop, sockaddr, exc):
    with pytest.raises(exc):
        socket.getnameinfo(sockaddr, 0)
    with pytest.raises(exc):
        loop.run_until_complete(loop.getnameinfo(sockaddr, 0))


def test_concurrent_lookups(loop):
    async def main():
        return await asyncio.gather(*[loop.getaddrinfo("localhost", i) for i in range(200)])

    results = loop.run_until_complete(main())
    assert all(r == socket.getaddrinfo("localhost", i) for i, r in enumerate(results))


def test_cancel_lookup(loop):
    async def main():
        tasks = [loop.create_task(loop.getaddrinfo("localhost", 80)) for _ in range(50)]
        await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(d, (asyncio.CancelledError, list)) for d in done)
        return await loop.getaddrinfo("localhost", 80)

    assert loop.run_until_complete(main()) == socket.getaddrinfo("localhost", 80)


THREADS_CHILD = textwrap.dedent("""
    import asyncio, os, sys, threading
    import pyloop

    def os_threads():
        return len(os.listdir("/proc/self/task"))

    async def main():
        loop = asyncio.get_running_loop()
        peak = [0, 0]
        async def one(i):
            infos = await loop.getaddrinfo("localhost", 1000 + i % 1000)
            peak[0] = max(peak[0], threading.active_count())
            peak[1] = max(peak[1], os_threads())
            return infos
        results = await asyncio.gather(*[one(i) for i in range(1000)])
        assert all(results)
        names = await asyncio.gather(*[loop.getnameinfo(("127.0.0.1", 80)) for _ in range(100)])
        assert set(names) == {("localhost", "http")}
        print(peak[0], peak[1], os_threads())

    pyloop.run(main())
""")


@pytest.mark.parametrize("pool", [None, "2"])
def test_no_python_threads(pool):
    env = dict(os.environ)
    env.pop("UV_THREADPOOL_SIZE", None)
    if pool:
        env["UV_THREADPOOL_SIZE"] = pool
    out = subprocess.run([sys.executable, "-c", THREADS_CHILD], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    py_threads, peak_os, end_os = map(int, out.stdout.split())
    size = int(pool or 4)
    assert py_threads == 1
    assert peak_os <= 1 + EMULATOR_THREADS + size and end_os <= 1 + EMULATOR_THREADS + size


CANCEL_CHILD = textwrap.dedent("""
    import asyncio
    import pyloop
    from pyloop import _core

    async def main():
        loop = asyncio.get_running_loop()
        # more than one pool thread answers in the time it takes to make them, even on a
        # loaded machine: some are still queued when cancelled
        reqs = [_core.getaddrinfo(loop, b"localhost", b"80", 0, 0, 0, 0) for _ in range(3000)]
        cancelled = sum(r.cancel() for r in reqs)
        for r in reqs:
            r.future.cancel()
        await asyncio.sleep(0.2)
        print(cancelled, len(await loop.getaddrinfo("localhost", 80)) > 0)

    # not in debug mode (PYTHONASYNCIODEBUG): its futures record a stack each, and the
    # pool would answer localhost faster than the requests are made
    pyloop.run(main(), debug=False)
""")


def test_queued_lookups_are_cancelled_on_the_pool():
    env = dict(os.environ, UV_THREADPOOL_SIZE="1")
    out = subprocess.run([sys.executable, "-c", CANCEL_CHILD], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    cancelled, ok = out.stdout.split()
    assert int(cancelled) > 0 and ok == "True"


def test_debug_logs_lookups(loop, caplog):
    import logging
    loop.set_debug(True)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        loop.run_until_complete(loop.getaddrinfo("localhost", 80))
    assert any("Getting address info" in r.getMessage() for r in caplog.records)


class _IntLike:
    def __init__(self, value):
        self.value = int(value)

    def __index__(self):
        return self.value


def test_int_like_arguments_are_taken_as_the_socket_module_takes_them(loop):
    # Objects with __index__ stand for ints wherever socket.getaddrinfo/getnameinfo take
    # them (not as getaddrinfo's port, which wants an int or a string).
    async def main():
        infos = await loop.getaddrinfo("127.0.0.1", 80, family=_IntLike(socket.AF_INET),
                                       type=_IntLike(socket.SOCK_STREAM), proto=_IntLike(0), flags=_IntLike(0))
        names = await loop.getnameinfo(("127.0.0.1", _IntLike(80)), _IntLike(socket.NI_NUMERICHOST))
        names6 = await loop.getnameinfo(("::1", 80, _IntLike(0), _IntLike(0)), socket.NI_NUMERICHOST)
        try:
            assert await loop.getaddrinfo("127.0.0.1", _IntLike(80), type=socket.SOCK_STREAM) == infos
            port_error = None
        except OSError as exc:
            port_error = str(exc)
        try:
            await loop.getaddrinfo("127.0.0.1", True)
            bool_error = None
        except OSError as exc:
            bool_error = str(exc)
        return infos, names, names6, port_error, bool_error

    infos, names, names6, port_error, bool_error = loop.run_until_complete(main())
    assert infos == [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 80))]
    assert names == ("127.0.0.1", "http") and names6 == ("::1", "http")
    # the port: any __index__ object on 3.14 (before: an int or a string only)
    assert port_error == (None if sys.version_info >= (3, 14) else "Int or String expected")
    assert bool_error == (None if sys.version_info >= (3, 14) else "Int or String expected")


# A resolver that takes its time, for one name and one address only: preloaded into a
# child interpreter, so that a lookup is certainly running on a pool thread.
SLOW_RESOLVER_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

/* A slow lookup lasts until the file named by $SLOW_GATE exists (at most 30 s): how long it
   runs is the test's choice, not the scheduler's (a machine that stalls the main thread for
   seconds must not let the lookups finish before close()). */
static void slow(void) {
    const char* gate = getenv("SLOW_GATE");
    for (int i = 0; i < 3000 && !(gate && access(gate, F_OK) == 0); i++) usleep(10000);
}

int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints, struct addrinfo** res) {
    int (*real)(const char*, const char*, const struct addrinfo*, struct addrinfo**) =
        (int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**))dlsym(RTLD_NEXT, "getaddrinfo");
    if (node && strcmp(node, "slow.pyloop.test") == 0) {
        slow();
        node = "127.0.0.1";
    }
    return real(node, service, hints, res);
}

int getnameinfo(const struct sockaddr* sa, socklen_t salen, char* host, socklen_t hostlen, char* serv,
                socklen_t servlen, int flags) {
    int (*real)(const struct sockaddr*, socklen_t, char*, socklen_t, char*, socklen_t, int) =
        (int (*)(const struct sockaddr*, socklen_t, char*, socklen_t, char*, socklen_t, int))dlsym(RTLD_NEXT, "getnameinfo");
    if (sa->sa_family == AF_INET && ((const struct sockaddr_in*)sa)->sin_port == htons(4242)) slow();
    return real(sa, salen, host, hostlen, serv, servlen, flags);
}
"""

CLOSE_WITH_RUNNING_LOOKUPS = textwrap.dedent("""
    import asyncio, os, sys, time
    import pyloop

    def os_threads():
        return len(os.listdir("/proc/self/task"))

    loop = asyncio.SelectorEventLoop() if sys.argv[1] == "asyncio" else pyloop.new_event_loop()
    async def main():
        # a quick one first (not a numeric host, answered without the pool): the pool's
        # threads exist before the count
        await loop.getaddrinfo("localhost", 80)
        base = os_threads()
        tasks = [loop.create_task(loop.getaddrinfo("slow.pyloop.test", 80))]
        if sys.argv[2] == "with-getnameinfo":
            tasks.append(loop.create_task(loop.getnameinfo(("127.0.0.1", 4242))))
        await asyncio.sleep(0.3)  # both are running on pool threads now
        return tasks, base
    tasks, base = loop.run_until_complete(main())
    t0 = time.monotonic()
    loop.close()
    took = time.monotonic() - t0
    print(round(took, 3), [t.done() for t in tasks])
    # (never settled: the loop is closed, as asyncio's executor futures are)
    # now the lookups end; so does whatever finished the closed loop
    open(os.environ["SLOW_GATE"], "w").close()
    deadline = time.monotonic() + 10
    while os_threads() > base and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    print(os_threads() - base)
    # a new loop works, and closing one with nothing running is as before
    loop2 = asyncio.SelectorEventLoop() if sys.argv[1] == "asyncio" else pyloop.new_event_loop()
    print(loop2.run_until_complete(loop2.getaddrinfo("slow.pyloop.test", 80))[0][4])
    loop2.close()
""")


@pytest.fixture(scope="module")
def slow_resolver(tmp_path_factory):
    import shutil
    import sysconfig
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if not shutil.which(cc):
        cc = "cc"
    d = tmp_path_factory.mktemp("slowres")
    (d / "slow.c").write_text(SLOW_RESOLVER_C)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(d / "slow.so"), str(d / "slow.c"), "-ldl"], check=True,
                   timeout=60)
    return str(d / "slow.so")


@pytest.mark.parametrize("which", ["asyncio", "pyloop"])
def test_close_returns_at_once_with_lookups_running(which, slow_resolver, tmp_path):
    # asyncio's close() leaves its executor's lookups running (shutdown(wait=False)); pyloop
    # leaves libuv's pool ones running too, and frees the closed uv loop when they end
    # (a slow resolver must not make close() wait seconds).
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(filter(None, [env.get("LD_PRELOAD"), slow_resolver]))
    env["SLOW_GATE"] = str(tmp_path / "gate")
    # Before 3.11.4 CPython's socket.getnameinfo() holds the GIL while it runs (CPython
    # gh-104308), so asyncio's slow getnameinfo there stops the whole interpreter until it
    # ends and cannot still be running at close(); pyloop's runs on libuv's pool, GIL free.
    with_getnameinfo = which == "pyloop" or sys.version_info >= (3, 11, 4)
    out = subprocess.run([sys.executable, "-c", CLOSE_WITH_RUNNING_LOOKUPS, which,
                          "with-getnameinfo" if with_getnameinfo else "without"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    first, threads, addr = out.stdout.splitlines()
    took, done = first.split(" ", 1)
    assert float(took) < 1.0, first
    assert done == ("[False, False]" if with_getnameinfo else "[False]")
    assert int(threads) <= 0  # no thread left behind once the lookups ended
    assert addr == "('127.0.0.1', 80)"
    assert "Traceback" not in out.stderr, out.stderr
