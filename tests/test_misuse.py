"""Wrong types and values for every public loop and transport method, on both loops:
pyloop must do what asyncio does with them, and never crash.

Each case builds the call on a fresh loop of each kind, runs it (a coroutine is run to
its end, or for a moment if it waits), and compares what happened: the exception's type
name, or "ok" with what the call returned, or "waits"; how often the case's callback
ran in the moment after; and what reached the exception handler meanwhile (message and
exception type).
"""

import asyncio
import gc
import math
import os
import re
import signal
import socket
import sys
import warnings

import pytest

import pyloop
from conftest import missing

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
    "index": None,  # an int-like object (__index__), set below
}


class IntLike:
    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value

    def __repr__(self):
        return f"IntLike({self.value})"


BAD["index"] = IntLike(80)


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
        self._write_pipe = None

    def transport(self):
        if self._transport is None:
            c, d = socket.socketpair()
            self._peer = d
            self._transport, _ = self.loop.run_until_complete(
                self.loop.connect_accepted_socket(asyncio.Protocol, c))
        return self._transport

    def write_pipe(self):
        if self._write_pipe is None:
            r, w = os.pipe()
            self._pipe_reader = open(r, "rb", 0)
            self._write_pipe, _ = self.loop.run_until_complete(
                self.loop.connect_write_pipe(asyncio.Protocol, open(w, "wb", 0)))
        return self._write_pipe

    def close(self):
        if self._write_pipe is not None:
            self._write_pipe.abort()
            self.loop.run_until_complete(asyncio.sleep(0))
            self._pipe_reader.close()
        if self._transport is not None:
            self._transport.abort()
            self.loop.run_until_complete(asyncio.sleep(0))
            self._peer.close()
        for s in (self.a, self.b, self.file):
            s.close()
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


CALLS = []  # the case's callback, each time it ran


def _cb(*args):
    CALLS.append(args)


def describe(value):
    """What a call returned, comparably across the loops: plain values as they are, the
    loop's own objects by their asyncio role."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return type(value).__name__ + "(" + ", ".join(describe(v) for v in value) + ")"
    if isinstance(value, socket.socket):
        return "socket"
    # (asyncio 3.14's call_soon_threadsafe returns a _ThreadSafeHandle; pyloop's handles
    # are its own types)
    if isinstance(value, asyncio.TimerHandle) or type(value).__name__ == "TimerHandle":
        return "TimerHandle"
    if isinstance(value, asyncio.Handle) or type(value).__name__ == "Handle":
        return "Handle"
    for role in (asyncio.Task, asyncio.Future, asyncio.DatagramTransport, asyncio.Transport):
        if isinstance(value, role):
            return role.__name__
    return "object"


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
        # AI_NUMERICHOST: a name ("text", b"bytes") must fail here without asking the network's
        # DNS, whose answer can take longer than the case's time limit on one loop only
        add(f"getaddrinfo-host[{key}]",
            lambda e, bad=bad: e.loop.getaddrinfo(bad, 80, flags=socket.AI_NUMERICHOST))
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
            lambda e, bad=bad: e.loop.create_connection(asyncio.Protocol, bad, 1,
                                                          flags=socket.AI_NUMERICHOST))
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
        add(f"set_protocol[{key}]", lambda e, bad=bad: e.transport().set_protocol(bad))
        add(f"datagram-reuse_address[{key}]",
            lambda e, bad=bad: _datagram(e, local_addr=("127.0.0.1", 0), reuse_address=bad))
        add(f"datagram-reuse_port[{key}]",
            lambda e, bad=bad: _datagram(e, local_addr=("127.0.0.1", 0), reuse_port=bad))
        add(f"write_pipe-write[{key}]", lambda e, bad=bad: e.write_pipe().write(bad))
        add(f"write_pipe-set_write_buffer_limits[{key}]",
            lambda e, bad=bad: e.write_pipe().set_write_buffer_limits(high=bad))
    for name in ("sock_recv", "sock_sendall", "sock_accept", "sock_connect"):
        args = {"sock_recv": (1,), "sock_sendall": (b"x",), "sock_accept": (), "sock_connect": (("127.0.0.1", 1),)}
        add(f"{name}-closed-socket", lambda e, name=name, args=args[name]: getattr(e.loop, name)(e.closed, *args))
        add(f"{name}-not-a-socket", lambda e, name=name, args=args[name]: getattr(e.loop, name)(None, *args))
    add("add_reader-closed-socket", lambda e: e.loop.add_reader(e.closed, _cb))
    add("remove_reader-closed-socket", lambda e: e.loop.remove_reader(e.closed))
    add("remove_writer-closed-socket", lambda e: e.loop.remove_writer(e.closed))
    for method in ("pause_reading", "resume_reading", "is_reading", "write_eof", "can_write_eof",
                   "get_write_buffer_limits", "get_write_buffer_size", "is_closing", "get_protocol"):
        add(f"write_pipe-{method}", lambda e, method=method: getattr(e.write_pipe(), method)())
    add("write_pipe-set_read_buffer_limits", lambda e: e.write_pipe().set_read_buffer_limits(high=10))
    add("write_pipe-get_read_buffer_size", lambda e: e.write_pipe().get_read_buffer_size())
    add("write_pipe-write-after-close", lambda e: (e.write_pipe().close(), e.write_pipe().write(b"x")))
    add("transport-write-after-abort", lambda e: (e.transport().abort(), e.transport().write(b"x")))
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


async def _datagram(env, local_addr, **kw):
    tr, pr = await env.loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=local_addr, **kw)
    tr.close()
    await asyncio.sleep(0)


def outcome(factory, fn, limit=0.5):
    with warnings.catch_warnings():
        # asyncio leaves sockets behind when some calls fail (create_server with a bad
        # backlog): not the subject here
        warnings.simplefilter("ignore", ResourceWarning)
        result = _outcome(factory, fn, limit)
        gc.collect()
    return result


def _normal_report(message):
    # A handle's repr names the transport's class: asyncio's and pyloop's differ (docs/api.md).
    return re.sub(r"^Exception in callback \w*Transport\.", "Exception in callback <transport>.", message or "")


def _outcome(factory, fn, limit):
    loop = factory()
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(
        (_normal_report(ctx.get("message")), type(ctx.get("exception")).__name__ if ctx.get("exception") else None)))
    env = Env(loop)
    CALLS.clear()
    try:
        try:
            result = fn(env)
            if asyncio.iscoroutine(result) or asyncio.isfuture(result):
                task = asyncio.ensure_future(result, loop=loop)
                done, _ = loop.run_until_complete(asyncio.wait([task], timeout=limit))
                if not done:
                    task.cancel()
                    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
                    what = "waits"
                else:
                    what = "ok " + describe(task.result())
            else:
                what = "ok " + describe(result)
            loop.run_until_complete(asyncio.sleep(0.01))  # let a callback run (or fail)
        except Exception as exc:
            what = type(exc).__name__
        return what, len(CALLS), reports
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
    what, calls, reports = expected
    if sys.version_info < (3, 11):
        if name.startswith(("sock_sendto", "sock_recvfrom")) and what == "AttributeError":
            return None  # pyloop has them on 3.10 too
        if name.startswith(("datagram-local_addr", "call_at-when")) and what == "AssertionError":
            return "TypeError", calls, reports  # asyncio 3.10 asserts; 3.11+ and pyloop raise TypeError
    return expected


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # coroutines refused unawaited
@pytest.mark.parametrize("name,fn", CASES, ids=[c[0] for c in CASES])
def test_same_outcome_as_asyncio(name, fn):
    expected = deliberate(name, outcome(asyncio.SelectorEventLoop, fn))
    if expected is None:
        pytest.skip("asyncio lacks the method on this version")
    got = outcome(pyloop.new_event_loop, fn)
    if got[0] != expected[0] and "waits" in (got[0], expected[0]):
        # a loaded machine can stall a quick call past the half second: the side that
        # waited gets a long limit before the outcomes count as different
        if expected[0] == "waits":
            expected = deliberate(name, outcome(asyncio.SelectorEventLoop, fn, limit=10))
        else:
            got = outcome(pyloop.new_event_loop, fn, limit=10)
    assert got == expected, f"{name}: asyncio {expected}, pyloop {got}"


# ---- protocol callbacks that misbehave ----------------------------------------------------
#
# For every protocol kind, each callback in turn raises, returns a wrong value, or closes
# its transport; the run is driven the same way on both loops, and what follows must be
# the same: the callbacks called after it (in order), what reached the exception handler
# (message and exception type), and connection_lost's exception type.

import ssl  # noqa: E402
import time  # noqa: E402

try:
    import trustme
except ImportError:  # pragma: no cover
    trustme = None

# What a callback returns when it returns something wrong.
WRONG = {"get_buffer": 42, "eof_received": "yes"}

KINDS = {  # kind: the callbacks it gets, in the order a run calls them
    "stream": ("connection_made", "data_received", "eof_received", "connection_lost"),
    "buffered": ("connection_made", "get_buffer", "buffer_updated", "eof_received", "connection_lost"),
    "writer": ("connection_made", "pause_writing", "resume_writing", "connection_lost"),
    "datagram": ("connection_made", "datagram_received", "error_received", "connection_lost"),
    "read_pipe": ("connection_made", "data_received", "eof_received", "connection_lost"),
    "subprocess": ("connection_made", "pipe_data_received", "pipe_connection_lost", "process_exited",
                   "connection_lost"),
    "tls_stream": ("connection_made", "data_received", "eof_received", "connection_lost"),
    "tls_buffered": ("connection_made", "get_buffer", "buffer_updated", "eof_received", "connection_lost"),
}
BASES = {"stream": asyncio.Protocol, "buffered": asyncio.BufferedProtocol, "writer": asyncio.Protocol,
         "datagram": asyncio.DatagramProtocol, "read_pipe": asyncio.Protocol,
         "subprocess": asyncio.SubprocessProtocol, "tls_stream": asyncio.Protocol,
         "tls_buffered": asyncio.BufferedProtocol}


def make_protocol(kind, callback, behaviour, trace, lost):
    class Subject(BASES[kind]):
        transport = None
        buf = bytearray(65536)

        def act(self, name, result=None):
            # a run of the same data callback counts once (how reads are split is the kernel's)
            if not trace or trace[-1] != name or name == "connection_lost":
                trace.append(name)
            if name != callback:
                return result
            if behaviour == "raise":
                raise ZeroDivisionError(name)
            if behaviour == "close" and self.transport is not None:
                self.transport.close()
                return result
            if behaviour == "wrong":
                return WRONG.get(name, 42)
            return result

        def connection_made(self, transport):
            self.transport = transport
            if kind == "writer":
                transport.set_write_buffer_limits(high=16384)
                transport.write(b"w" * (1 << 20))
            return self.act("connection_made")

        def data_received(self, data):
            return self.act("data_received")

        def get_buffer(self, sizehint):
            return self.act("get_buffer", self.buf)

        def buffer_updated(self, nbytes):
            return self.act("buffer_updated")

        def eof_received(self):
            return self.act("eof_received")

        def pause_writing(self):
            return self.act("pause_writing")

        def resume_writing(self):
            return self.act("resume_writing")

        def datagram_received(self, data, addr):
            return self.act("datagram_received")

        def error_received(self, exc):
            return self.act("error_received")

        def pipe_data_received(self, fd, data):
            return self.act("pipe_data_received")

        def pipe_connection_lost(self, fd, exc):
            return self.act("pipe_connection_lost")

        def process_exited(self):
            return self.act("process_exited")

        def connection_lost(self, exc):
            if not lost.done():
                lost.set_result(type(exc).__name__ if exc is not None else None)
            return self.act("connection_lost")

    return Subject


_TLS = {}


def tls_contexts():
    if not _TLS:
        ca = trustme.CA()
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(server)
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(client)
        _TLS.update(server=server, client=client)
    return _TLS["server"], _TLS["client"]


class Hello(asyncio.Protocol):
    # The TLS peer: says hello, then closes (close_notify: the subject's eof_received).
    def connection_made(self, transport):
        transport.write(b"hello")
        transport.close()


async def drive(loop, kind, factory, lost):
    """Runs one kind's exchange with `factory`'s protocol; returns when connection_lost
    came (or the transport was closed from outside after a wait)."""
    cleanup = []
    transport = None
    try:
        if kind in ("stream", "buffered", "writer"):
            a, b = socket.socketpair()
            b.setblocking(False)
            cleanup.append(b.close)
            transport, _ = await loop.connect_accepted_socket(factory, a)
            if kind == "writer":
                await asyncio.sleep(0.1)  # paused: the peer reads nothing yet
                for _ in range(200):
                    try:
                        while b.recv(1 << 20):
                            pass
                    except BlockingIOError:
                        pass
                    # until the buffer drained, or (closed meanwhile) connection_lost came
                    if lost.done() or (not transport.is_closing() and transport.get_write_buffer_size() == 0):
                        break
                    await asyncio.sleep(0.005)
            else:
                b.send(b"hello")
                await asyncio.sleep(0.05)
                b.shutdown(socket.SHUT_WR)
        elif kind == "datagram":
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            peer.bind(("127.0.0.1", 0))
            cleanup.append(peer.close)
            transport, _ = await loop.create_datagram_endpoint(factory, remote_addr=peer.getsockname())
            peer.sendto(b"hello", transport.get_extra_info("sockname"))
            await asyncio.sleep(0.05)
            peer.close()
            if not transport.is_closing():
                transport.sendto(b"x")  # the closed peer's port answers ICMP: error_received
                await asyncio.sleep(0.05)
                if not transport.is_closing():
                    transport.sendto(b"x")
            await asyncio.sleep(0.1)
            if not transport.is_closing():
                transport.close()
        elif kind == "read_pipe":
            r, w = os.pipe()
            cleanup.append(lambda: _close_fd(w))
            transport, _ = await loop.connect_read_pipe(factory, os.fdopen(r, "rb", 0))
            os.write(w, b"hello")
            await asyncio.sleep(0.05)
            os.close(w)
        elif kind == "subprocess":
            # stdout ends well before the exit (os.close: sys.stdout.close() leaves fd 1 open),
            # so pipe_connection_lost and process_exited come in that order on every version
            code = "import os, sys, time; sys.stdout.write('hi'); sys.stdout.flush(); os.close(1); time.sleep(0.3)"
            transport, _ = await loop.subprocess_exec(factory, sys.executable, "-c", code, stdin=None,
                                                      stderr=None)
        else:  # tls_stream, tls_buffered
            server_ctx, client_ctx = tls_contexts()
            server = await loop.create_server(Hello, "127.0.0.1", 0, ssl=server_ctx)
            cleanup.append(server.close)
            port = server.sockets[0].getsockname()[1]
            transport, _ = await loop.create_connection(factory, "127.0.0.1", port, ssl=client_ctx,
                                                        server_hostname="localhost")
        try:
            await asyncio.wait_for(asyncio.shield(lost), 1.0)
        except asyncio.TimeoutError:
            transport.close()  # (a protocol that kept it open)
            await asyncio.wait_for(asyncio.shield(lost), 2.0)
        await asyncio.sleep(0.05)  # what the loop calls after connection_lost
    finally:
        for fn in cleanup:
            fn()
        if transport is not None and not transport.is_closing():
            (getattr(transport, "abort", None) or transport.close)()  # (a subprocess transport has no abort)


def _close_fd(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def _normal(message):
    # A handle's repr holds addresses and class names: the kind of message is compared.
    return "Exception in callback" if message.startswith("Exception in callback") else message


def callback_outcome(new_loop, kind, callback, behaviour):
    loop = new_loop()
    errors = []
    loop.set_exception_handler(
        lambda lp, ctx: errors.append((_normal(ctx["message"]), type(ctx.get("exception")).__name__)))
    trace = []
    try:
        lost = loop.create_future()
        factory = make_protocol(kind, callback, behaviour, trace, lost)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                loop.run_until_complete(asyncio.wait_for(drive(loop, kind, factory, lost), 10))
            how = "ok"
        except Exception as exc:
            how = type(exc).__name__
        return {"trace": trace, "errors": errors, "lost": lost.result() if lost.done() else "never", "run": how}
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        gc.collect()


CALLBACK_CASES = [(kind, cb, how) for kind, cbs in KINDS.items() for cb in cbs
                  for how in ("raise", "wrong", "close")
                  if not (cb == "connection_lost" and how == "close")]


@pytest.mark.parametrize("kind,callback,behaviour", CALLBACK_CASES,
                         ids=[f"{k}-{c}-{b}" for k, c, b in CALLBACK_CASES])
def test_misbehaving_protocol_callback_as_asyncio(kind, callback, behaviour):
    if kind.startswith("tls") and trustme is None:
        missing("trustme is not installed")
    if kind.startswith("tls") and callback == "eof_received" and sys.version_info < (3, 11):
        pytest.skip("3.10's sslproto (both loops run asyncio's there) never calls eof_received")
    expected = callback_outcome(asyncio.SelectorEventLoop, kind, callback, behaviour)
    assert callback in expected["trace"] or kind == "datagram", expected  # the case reaches its callback
    if (kind, callback, behaviour) == ("writer", "resume_writing", "close") and sys.version_info < (3, 14):
        # asyncio before 3.14.x (gh-156512) runs _call_connection_lost a second time when the
        # transport is closed in resume_writing(), which fails (AttributeError) after the
        # protocol's connection_lost: pyloop runs it once, as 3.14 does (docs/api.md).
        assert expected["errors"] == [("Exception in callback", "AttributeError")]
        expected["errors"] = []
    got = callback_outcome(pyloop.new_event_loop, kind, callback, behaviour)
    if (kind.startswith("tls") and expected["run"] == "AttributeError" and got["run"] == "ok"
            and (sys.flags.dev_mode or bool(os.environ.get("PYTHONASYNCIODEBUG")))):
        # In debug mode asyncio's create_connection() logs the new transport's socket; a TLS
        # transport the protocol closed already (here in its first get_buffer) has lost its
        # SSL protocol, and get_extra_info() fails with AttributeError, so asyncio's run ends
        # early and there is nothing to compare with. pyloop's answers after close
        # (docs/api.md).
        pytest.skip("asyncio's create_connection() fails in debug mode here (AttributeError)")
    assert got == expected
