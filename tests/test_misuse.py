"""Wrong types and values for every public loop and transport method, on both loops:
pyloop must raise what asyncio raises (the exception's type), and never crash.

Each case builds the call on a fresh loop of each kind, runs it (a coroutine is run to
its end, or for a moment if it waits), and compares the outcomes: the exception's type
name, "ok", or "waits".
"""

import asyncio
import gc
import math
import signal
import socket
import sys
import warnings

import pytest

import pyloop

BAD = {
    "None": None,
    "str": "text",
    "bytes": b"bytes",
    "float": 1.5,
    "neg": -1,
    "big": 2**40,
    "huge": 2**70,
    "vast": 10**400,
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "fd1e9": 10**9,
    "list": [1],
}


class Env:
    """What a case may use: the loop, a connected non-blocking socket pair, a closed
    socket, and a connected stream transport (made lazily)."""

    def __init__(self, loop):
        self.loop = loop
        self.a, self.b = socket.socketpair()
        self.a.setblocking(False)
        self.b.setblocking(False)
        self.closed = socket.socket()
        self.closed.close()
        self.file = open(__file__, "rb")
        self._transport = None

    def transport(self):
        if self._transport is None:
            c, d = socket.socketpair()
            self._peer = d
            self._transport, _ = self.loop.run_until_complete(
                self.loop.connect_accepted_socket(asyncio.Protocol, c))
        return self._transport

    def close(self):
        if self._transport is not None:
            self._transport.abort()
            self.loop.run_until_complete(asyncio.sleep(0))
            self._peer.close()
        for s in (self.a, self.b, self.file):
            s.close()
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


def _cb(*args):
    pass


def loop_cases():
    """(case id, function of Env returning the call's result)."""
    cases = []

    def add(name, fn):
        cases.append((name, fn))

    for key, bad in BAD.items():
        add(f"call_soon[{key}]", lambda e, bad=bad: e.loop.call_soon(bad))
        add(f"call_later-delay[{key}]", lambda e, bad=bad: e.loop.call_later(bad, _cb))
        add(f"call_at-when[{key}]", lambda e, bad=bad: e.loop.call_at(bad, _cb))
        add(f"call_soon_threadsafe[{key}]", lambda e, bad=bad: e.loop.call_soon_threadsafe(bad))
        add(f"add_reader[{key}]", lambda e, bad=bad: e.loop.add_reader(bad, _cb))
        add(f"remove_reader[{key}]", lambda e, bad=bad: e.loop.remove_reader(bad))
        add(f"add_writer[{key}]", lambda e, bad=bad: e.loop.add_writer(bad, _cb))
        add(f"remove_writer[{key}]", lambda e, bad=bad: e.loop.remove_writer(bad))
        add(f"add_signal_handler[{key}]", lambda e, bad=bad: e.loop.add_signal_handler(bad, _cb))
        add(f"remove_signal_handler[{key}]", lambda e, bad=bad: e.loop.remove_signal_handler(bad))
        add(f"getaddrinfo-host[{key}]", lambda e, bad=bad: e.loop.getaddrinfo(bad, 80))
        add(f"getaddrinfo-port[{key}]", lambda e, bad=bad: e.loop.getaddrinfo("127.0.0.1", bad))
        add(f"getaddrinfo-family[{key}]", lambda e, bad=bad: e.loop.getaddrinfo("127.0.0.1", 80, family=bad))
        add(f"getaddrinfo-flags[{key}]", lambda e, bad=bad: e.loop.getaddrinfo("127.0.0.1", 80, flags=bad))
        add(f"getnameinfo-addr[{key}]", lambda e, bad=bad: e.loop.getnameinfo(bad))
        add(f"getnameinfo-port[{key}]", lambda e, bad=bad: e.loop.getnameinfo(("127.0.0.1", bad)))
        add(f"getnameinfo-flags[{key}]", lambda e, bad=bad: e.loop.getnameinfo(("127.0.0.1", 80), bad))
        add(f"sock_recv-n[{key}]", lambda e, bad=bad: e.loop.sock_recv(e.a, bad))
        add(f"sock_recv_into-buf[{key}]", lambda e, bad=bad: e.loop.sock_recv_into(e.a, bad))
        add(f"sock_sendall-data[{key}]", lambda e, bad=bad: e.loop.sock_sendall(e.a, bad))
        add(f"sock_sendto-addr[{key}]", lambda e, bad=bad: e.loop.sock_sendto(e.a, b"x", bad))
        add(f"sock_connect-addr[{key}]", lambda e, bad=bad: e.loop.sock_connect(e.a, bad))
        add(f"sock_connect-port[{key}]", lambda e, bad=bad: _fresh_connect(e, ("127.0.0.1", bad)))
        add(f"create_connection-port[{key}]",
            lambda e, bad=bad: e.loop.create_connection(asyncio.Protocol, "127.0.0.1", bad))
        add(f"create_connection-host[{key}]",
            lambda e, bad=bad: e.loop.create_connection(asyncio.Protocol, bad, 1))
        add(f"create_server-port[{key}]", lambda e, bad=bad: _server(e, port=bad))
        add(f"create_server-backlog[{key}]", lambda e, bad=bad: _server(e, backlog=bad))
        add(f"datagram-local_addr[{key}]", lambda e, bad=bad: _datagram(e, local_addr=bad))
        add(f"datagram-port[{key}]", lambda e, bad=bad: _datagram(e, local_addr=("127.0.0.1", bad)))
        add(f"set_exception_handler[{key}]", lambda e, bad=bad: e.loop.set_exception_handler(bad))
        add(f"set_task_factory[{key}]", lambda e, bad=bad: e.loop.set_task_factory(bad))
        add(f"run_in_executor-func[{key}]", lambda e, bad=bad: e.loop.run_in_executor(None, bad))
        add(f"create_task[{key}]", lambda e, bad=bad: e.loop.create_task(bad))
        add(f"run_until_complete[{key}]", lambda e, bad=bad: e.loop.run_until_complete(bad))
        add(f"write[{key}]", lambda e, bad=bad: e.transport().write(bad))
        add(f"writelines[{key}]", lambda e, bad=bad: e.transport().writelines(bad))
        add(f"set_write_buffer_limits-high[{key}]",
            lambda e, bad=bad: e.transport().set_write_buffer_limits(high=bad))
        add(f"set_write_buffer_limits-low[{key}]",
            lambda e, bad=bad: e.transport().set_write_buffer_limits(low=bad))
        add(f"get_extra_info[{key}]", lambda e, bad=bad: e.transport().get_extra_info(bad))
        add(f"sendfile-file[{key}]", lambda e, bad=bad: e.loop.sendfile(e.transport(), bad))
        add(f"sock_sendfile-offset[{key}]", lambda e, bad=bad: e.loop.sock_sendfile(e.a, e.file, bad))
        add(f"sock_sendfile-count[{key}]", lambda e, bad=bad: e.loop.sock_sendfile(e.a, e.file, 0, bad))
        add(f"sendfile-offset[{key}]", lambda e, bad=bad: e.loop.sendfile(e.transport(), e.file, bad))
    for name in ("sock_recv", "sock_sendall", "sock_accept", "sock_connect"):
        args = {"sock_recv": (1,), "sock_sendall": (b"x",), "sock_accept": (), "sock_connect": (("127.0.0.1", 1),)}
        add(f"{name}-closed-socket", lambda e, name=name, args=args[name]: getattr(e.loop, name)(e.closed, *args))
        add(f"{name}-not-a-socket", lambda e, name=name, args=args[name]: getattr(e.loop, name)(None, *args))
    add("add_reader-closed-socket", lambda e: e.loop.add_reader(e.closed, _cb))
    add("add_signal_handler-SIGKILL", lambda e: e.loop.add_signal_handler(signal.SIGKILL, _cb))
    add("add_signal_handler-coroutine", lambda e: e.loop.add_signal_handler(signal.SIGUSR1, _coro))
    add("call_soon-coroutine", lambda e: e.loop.call_soon(_coro()))
    add("write-after-write_eof", lambda e: (e.transport().write_eof(), e.transport().write(b"x")))
    add("set_write_buffer_limits-high<low", lambda e: e.transport().set_write_buffer_limits(high=1, low=2))
    return cases


async def _coro():
    pass


async def _fresh_connect(env, address):
    s = socket.socket()
    s.setblocking(False)
    with s:
        return await env.loop.sock_connect(s, address)


async def _server(env, port=0, backlog=100):
    server = await env.loop.create_server(asyncio.Protocol, "127.0.0.1", port, backlog=backlog)
    server.close()
    await server.wait_closed()


async def _datagram(env, local_addr):
    tr, pr = await env.loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=local_addr)
    tr.close()
    await asyncio.sleep(0)


def outcome(factory, fn):
    with warnings.catch_warnings():
        # asyncio leaves sockets behind when some calls fail (create_server with a bad
        # backlog): not the subject here
        warnings.simplefilter("ignore", ResourceWarning)
        result = _outcome(factory, fn)
        gc.collect()
    return result


def _outcome(factory, fn):
    loop = factory()
    loop.set_exception_handler(lambda lp, ctx: None)
    env = Env(loop)
    try:
        try:
            result = fn(env)
            if asyncio.iscoroutine(result) or asyncio.isfuture(result):
                task = asyncio.ensure_future(result, loop=loop)
                done, _ = loop.run_until_complete(asyncio.wait([task], timeout=0.5))
                if not done:
                    task.cancel()
                    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
                    return "waits"
                task.result()
            else:
                loop.run_until_complete(asyncio.sleep(0.01))  # let a callback run (or fail)
            return "ok"
        except Exception as exc:
            return type(exc).__name__
    finally:
        try:
            loop.remove_signal_handler(signal.SIGUSR1)
        except Exception:
            pass
        try:
            env.close()
        except Exception:  # asyncio's loop can be left broken (call_at("str") fails in every turn)
            env.loop.close()


CASES = loop_cases()


def deliberate(name, expected):
    """asyncio's outcome, where docs/api.md lists a deliberate difference."""
    if sys.version_info < (3, 11):
        if name.startswith(("sock_sendto", "sock_recvfrom")) and expected == "AttributeError":
            return None  # pyloop has them on 3.10 too
        if name.startswith(("datagram-local_addr", "call_at-when")) and expected == "AssertionError":
            return "TypeError"  # asyncio 3.10 asserts; 3.11+ and pyloop raise TypeError
    return expected


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # coroutines refused unawaited
@pytest.mark.parametrize("name,fn", CASES, ids=[c[0] for c in CASES])
def test_same_exception_as_asyncio(name, fn):
    expected = deliberate(name, outcome(asyncio.SelectorEventLoop, fn))
    if expected is None:
        pytest.skip("asyncio lacks the method on this version")
    got = outcome(pyloop.new_event_loop, fn)
    assert got == expected, f"{name}: asyncio {expected}, pyloop {got}"
