"""The TLS state machine's edges on both loops: abort and close at each stage, flow
control and water marks on the TLS transport, pause/resume of reading, TLS inside TLS,
errors raised by the application's callbacks, a shutdown the peer never answers, a
failed handshake on a server in debug mode. asyncio is the reference."""

import asyncio
import hashlib
import os
import socket
import ssl
import sys
import threading

import pytest

from protocols import Events

from conftest import needs_module, drop_debug_accept_errors

trustme = needs_module("trustme")
from test_tls import Collect, Echo, client_ctx, ca, server_ctx, tls_server  # noqa: F401 (fixtures)

PY311 = sys.version_info >= (3, 11)
needs_311 = pytest.mark.skipif(not PY311, reason="asyncio's sslproto of 3.11+ (3.10 runs asyncio's own on both loops)")

if not PY311:
    pytestmark = pytest.mark.filterwarnings(
        "ignore:unclosed transport <asyncio.sslproto._SSLProtocolTransport:ResourceWarning")


async def connect(loop, port, client_ctx, factory):
    return await loop.create_connection(factory, "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")


def test_abort_after_handshake_and_during_shutdown(loop, server_ctx, client_ctx):
    async def main():
        server, port = await tls_server(loop, server_ctx)
        # Right after the handshake, with a megabyte still to send.
        tr, proto = await connect(loop, port, client_ctx, lambda: Events(loop))
        tr.write(b"x" * (1 << 20))
        tr.abort()
        assert tr.is_closing()
        assert await asyncio.wait_for(proto.lost, 10) is None
        # After close() began the shutdown.
        tr2, proto2 = await connect(loop, port, client_ctx, lambda: Events(loop))
        tr2.close()
        tr2.abort()
        await asyncio.wait_for(proto2.lost, 10)
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
        return proto.events, proto2.events

    events, events2 = loop.run_until_complete(main())
    assert events == ["made", ("lost", None)]
    assert events2[0] == "made" and events2.count(("lost", None)) == 1


@needs_311
def test_close_flushes_everything_then_close_notify(loop, server_ctx, client_ctx):
    payload = os.urandom(3 << 20)

    class Sink(asyncio.Protocol):
        def __init__(self):
            self.h = hashlib.sha256()
            self.n = 0
            self.eof = loop.create_future()

        def data_received(self, data):
            self.h.update(data)
            self.n += len(data)

        def eof_received(self):
            self.eof.set_result((self.n, self.h.hexdigest()))

    async def main():
        sinks = []

        def make():
            sinks.append(Sink())
            return sinks[-1]

        server = await loop.create_server(make, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await connect(loop, port, client_ctx, lambda: Events(loop))
        tr.write(payload[:1000])
        tr.writelines([payload[1000:2000], bytearray(payload[2000:3000]), memoryview(payload)[3000:]])
        tr.close()
        got = await asyncio.wait_for(sinks[0].eof, 20)
        assert await asyncio.wait_for(proto.lost, 10) is None
        server.close()
        await server.wait_closed()
        return got

    n, digest = loop.run_until_complete(main())
    assert n == len(payload) and digest == hashlib.sha256(payload).hexdigest()


def test_write_type_errors(loop, server_ctx, client_ctx):
    async def main():
        server, port = await tls_server(loop, server_ctx)
        tr, proto = await connect(loop, port, client_ctx, lambda: Events(loop))
        errors = []
        for bad in ("text", 12, None):
            try:
                tr.write(bad)
            except TypeError as exc:
                errors.append(str(exc))
        tr.write(b"")  # nothing
        tr.close()
        await asyncio.wait_for(proto.lost, 10)
        server.close()
        await server.wait_closed()
        return errors

    errors = loop.run_until_complete(main())
    assert len(errors) == 3
    if PY311:
        assert errors[0] == "data: expecting a bytes-like instance, got str"


@needs_311
def test_water_marks_and_flow_control(loop, server_ctx, client_ctx):
    async def main():
        held = []

        class Slow(asyncio.Protocol):
            def connection_made(self, transport):
                held.append(transport)
                transport.pause_reading()

        server = await loop.create_server(Slow, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await connect(loop, port, client_ctx, lambda: Events(loop))
        limits = [tr.get_write_buffer_limits(), tr.get_read_buffer_limits()]
        with pytest.raises(ValueError, match=r"high \(10\) must be >= low \(20\) must be >= 0"):
            tr.set_write_buffer_limits(high=10, low=20)
        with pytest.raises(ValueError):
            tr.set_read_buffer_limits(high=-1)
        tr.set_write_buffer_limits(high=4000)
        limits.append(tr.get_write_buffer_limits())
        tr.set_read_buffer_limits(low=1000)
        limits.append(tr.get_read_buffer_limits())
        tr.set_write_buffer_limits(high=65536)
        chunk = os.urandom(65536)
        sent = 0
        for _ in range(400):  # until the peer's socket buffers fill and we are paused
            tr.write(chunk)
            sent += len(chunk)
            if "pause" in proto.events:
                break
            await asyncio.sleep(0)
        paused_size = tr.get_write_buffer_size()
        assert "pause" in proto.events and paused_size >= 65536
        # The peer reads: everything drains, resume_writing comes.
        while not held:
            await asyncio.sleep(0.01)
        got = bytearray()
        held[0].get_protocol().data_received = got.extend
        held[0].resume_reading()
        for _ in range(1000):
            if len(got) >= sent:
                break
            await asyncio.sleep(0.01)
        assert len(got) == sent
        assert proto.events[-1] == "resume" and tr.get_write_buffer_size() == 0
        tr.close()
        await asyncio.wait_for(proto.lost, 10)
        server.close()
        for t in held:
            t.abort()
        await server.wait_closed()
        return limits

    limits = loop.run_until_complete(main())
    assert limits == [(131072, 524288), (65536, 262144), (1000, 4000), (1000, 4000)]


def test_pause_and_resume_reading(loop, server_ctx, client_ctx):
    async def main():
        class Talker(asyncio.Protocol):
            def connection_made(self, transport):
                transport.write(b"one ")
                loop.call_later(0.05, transport.write, b"two ")
                loop.call_later(0.1, transport.write, b"three")

        server = await loop.create_server(Talker, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await connect(loop, port, client_ctx, lambda: Events(loop))
        tr.pause_reading()
        reading = [tr.is_reading()]
        await asyncio.sleep(0.3)
        during = bytes(proto.data)
        tr.resume_reading()
        reading.append(tr.is_reading())
        for _ in range(200):
            if len(proto.data) >= len(b"one two three"):
                break
            await asyncio.sleep(0.01)
        tr.close()
        await asyncio.wait_for(proto.lost, 10)
        server.close()
        await server.wait_closed()
        return reading, during, bytes(proto.data)

    reading, during, after = loop.run_until_complete(main())
    assert reading == [False, True]
    assert after == b"one two three"
    assert not during.startswith(b"one two")  # at most what came before pause_reading()


@needs_311
def test_tls_inside_tls(loop, server_ctx, client_ctx):
    async def handle(reader, writer):
        assert await reader.readline() == b"UPGRADE\n"
        writer.write(b"OK\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        line = await reader.readline()
        writer.write(b"inner " + line)
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await connect(loop, port, client_ctx, lambda: Collect(loop))
        tr.write(b"UPGRADE\n")
        while b"OK\n" not in proto.data:
            await asyncio.sleep(0.005)
        proto.data.clear()
        proto.want = len(b"inner hello\n")
        inner = await loop.start_tls(tr, proto, client_ctx, server_hostname="localhost")
        assert inner is not tr and inner.get_extra_info("ssl_object") is not tr.get_extra_info("ssl_object")
        inner.write(b"hello\n")
        got = await asyncio.wait_for(proto.done, 10)
        inner.close()
        await asyncio.wait_for(proto.lost, 10)
        server.close()
        await server.wait_closed()
        return got

    assert loop.run_until_complete(main()) == b"inner hello\n"


@needs_311
def test_error_in_data_received_closes_the_connection(loop, server_ctx, client_ctx):
    class Boom(Events):
        def data_received(self, data):
            raise ValueError("boom")

    async def main():
        server, port = await tls_server(loop, server_ctx)
        tr, proto = await connect(loop, port, client_ctx, lambda: Boom(loop))
        tr.write(b"ping")
        exc = await asyncio.wait_for(proto.lost, 10)
        server.close()
        await server.wait_closed()
        return exc

    exc = loop.run_until_complete(main())
    assert isinstance(exc, ValueError)
    errors, loop.test_errors[:] = list(loop.test_errors), []
    assert [e["message"] for e in errors] == ["Fatal error on SSL protocol"]
    assert isinstance(errors[0]["exception"], ValueError)


@needs_311
def test_shutdown_the_peer_never_answers_times_out(loop, server_ctx, client_ctx):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    done = threading.Event()

    def serve():
        conn, _ = listener.accept()
        tls = server_ctx.wrap_socket(conn, server_side=True)
        done.wait(10)  # handshake done; then never reads again
        tls.close()

    th = threading.Thread(target=serve)
    th.start()

    async def main():
        tr, proto = await loop.create_connection(lambda: Events(loop), "127.0.0.1", listener.getsockname()[1],
                                                 ssl=client_ctx, server_hostname="localhost",
                                                 ssl_shutdown_timeout=0.3)
        t0 = loop.time()
        tr.close()
        exc = await asyncio.wait_for(proto.lost, 10)
        return exc, loop.time() - t0

    try:
        exc, took = loop.run_until_complete(main())
    finally:
        done.set()
        th.join(10)
        listener.close()
    assert isinstance(exc, TimeoutError) and str(exc) == "SSL shutdown timed out"
    assert 0.25 < took < 5


@needs_311
def test_peer_eof_while_our_data_waits_times_out(loop, server_ctx, client_ctx):
    # The peer ends its side (a FIN, no close_notify) and never reads while 16 MiB wait to
    # be sent: 3.14 keeps ssl_shutdown_timeout running after the shutdown it completes, and
    # ends with connection_lost(TimeoutError); 3.11-3.13 wait for the peer.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    handshaken, release, ended = threading.Event(), threading.Event(), threading.Event()

    def serve():
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            handshaken.set()
            release.wait(5)  # the client's data piles up unread
            tls.shutdown(socket.SHUT_WR)  # drops the TLS session: a FIN, no close_notify
            ended.wait(20)

    th = threading.Thread(target=serve)
    th.start()

    async def main():
        tr, proto = await loop.create_connection(lambda: Events(loop), "127.0.0.1", listener.getsockname()[1],
                                                 ssl=client_ctx, server_hostname="localhost",
                                                 ssl_shutdown_timeout=0.3)
        tr.write(os.urandom(16 << 20))
        await asyncio.sleep(0.1)
        release.set()
        done, _ = await asyncio.wait([proto.lost], timeout=3)
        if not done:
            tr.abort()
            await proto.lost
        return proto.events, proto.lost.result() if done else "still open"

    try:
        events, outcome = loop.run_until_complete(main())
    finally:
        release.set()
        ended.set()
        th.join(10)
        listener.close()
    assert "eof" in events
    if sys.version_info >= (3, 14):
        assert isinstance(outcome, TimeoutError) and str(outcome) == "SSL shutdown timed out"
    else:
        assert outcome == "still open"


def test_failed_server_handshake_in_debug_mode(loop, server_ctx):
    untrusting = ssl.create_default_context()  # does not trust the test CA

    async def main():
        loop.set_debug(True)
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ssl.SSLCertVerificationError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, ssl=untrusting,
                                         server_hostname="localhost")
        for _ in range(100):
            if loop.test_errors:
                break
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    errors, loop.test_errors[:] = list(loop.test_errors), []
    messages = [e["message"] for e in errors]
    assert "Error on transport creation for incoming connection" in messages, messages
    loop.set_debug(False)


def test_extra_info_after_the_connection_is_lost(loop, server_ctx, client_ctx):
    async def main():
        server, port = await tls_server(loop, server_ctx)
        tr, proto = await connect(loop, port, client_ctx, lambda: Events(loop))
        before = (tr.get_extra_info("peercert") is not None, tr.get_extra_info("cipher") is not None,
                  tr.get_extra_info("peername") is not None)
        tr.close()
        await asyncio.wait_for(proto.lost, 10)
        after = (tr.get_extra_info("peercert") is not None, tr.get_extra_info("peername", "gone"),
                 tr.get_extra_info("sslcontext") is client_ctx)
        server.close()
        await server.wait_closed()
        return before, after

    before, after = loop.run_until_complete(main())
    assert before == (True, True, True)
    if PY311:
        assert after == (True, "gone", True)


@pytest.mark.parametrize("kind", ["memoryview", "bytearray"])
def test_buffered_protocol_with_a_small_buffer(loop, loop_name, server_ctx, client_ctx, kind):
    payload = os.urandom(200_000)

    class Small(asyncio.BufferedProtocol):
        def __init__(self):
            self.got = bytearray()
            self.buf = bytearray(7)
            self.lost = loop.create_future()

        def get_buffer(self, sizehint):
            return memoryview(self.buf) if kind == "memoryview" else self.buf

        def buffer_updated(self, nbytes):
            self.got += self.buf[:nbytes]

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    class Sender(asyncio.Protocol):
        def connection_made(self, transport):
            transport.write(payload)
            transport.close()

    async def main():
        server = await loop.create_server(Sender, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await connect(loop, port, client_ctx, Small)
        await asyncio.wait_for(proto.lost, 20)
        tr.close()
        server.close()
        await server.wait_closed()
        return bytes(proto.got)

    got = loop.run_until_complete(main())
    if kind == "bytearray" and loop_name == "asyncio" and PY311:
        # asyncio's SSLProtocol reads into slices of the buffer: a bytearray's slice is a
        # copy, so all but the first read of each round are lost (docs/api.md).
        assert got != payload
    else:
        assert got == payload


@pytest.mark.parametrize("loop_name", ["asyncio", "pyloop"])
def test_tls_connections_dropped_open_when_the_loop_closes(server_ctx, client_ctx, loop_name):
    # Both loops warn about the TLS transports left open, and nothing else happens.
    import gc
    import warnings

    from conftest import LOOP_FACTORIES

    lp = LOOP_FACTORIES[loop_name]()

    async def main():
        server = await lp.create_server(Echo, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        for _ in range(3):
            tr, proto = await connect(lp, port, client_ctx, lambda: Events(lp))
            tr.write(b"x" * 1000)
        await asyncio.sleep(0.05)
        server.close()

    lp.run_until_complete(main())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lp.close()
        del lp
        for _ in range(3):
            gc.collect()
    assert any(issubclass(w.category, ResourceWarning) and "unclosed transport" in str(w.message) for w in caught)


_TLS_BAD_BUFFERS = {
    # what get_buffer() returns: the TypeError's text from asyncio's len(buf) or
    # self._sslobj.read(len(buf), buf)
    "no-len": (lambda: 5, "object of type 'int' has no len()"),
    "bytes": (lambda: b"x" * 100, "read() argument 2 must be read-write bytes-like object, not bytes"),
    "read-only": (lambda: memoryview(b"x" * 100), "read() argument 2 must be read-write bytes-like object, not memoryview"),
    "strided": (lambda: memoryview(bytearray(200))[::2],
                "read() argument 2 must be read-write bytes-like object, not memoryview"),
    "str": (lambda: "x" * 100, "read() argument 2 must be read-write bytes-like object, not str"),
}


@needs_311
@pytest.mark.parametrize("failure", ["raises", "empty", *_TLS_BAD_BUFFERS])
def test_buffered_protocol_whose_get_buffer_fails(loop, server_ctx, client_ctx, failure):
    # asyncio's SSLProtocol: a get_buffer() that raises is a fatal error (reported, then
    # connection_lost(exc)); an empty buffer reads 0 bytes, which it takes for the peer's
    # close_notify: eof_received(), then its own shutdown, which the peer's next data
    # breaks (connection_lost(SSLError), not reported: an OSError). Either way the
    # connection ends, and its fds are closed.
    servers = []

    class Broken(asyncio.BufferedProtocol):
        def __init__(self):
            self.events = []
            self.lost = loop.create_future()
            servers.append(self)

        def connection_made(self, transport):
            self.events.append("made")

        def get_buffer(self, sizehint):
            self.events.append("get_buffer")
            if failure == "raises":
                raise ZeroDivisionError("no buffer")
            if failure in _TLS_BAD_BUFFERS:
                return _TLS_BAD_BUFFERS[failure][0]()
            return bytearray()

        def buffer_updated(self, nbytes):
            self.events.append("updated")

        def eof_received(self):
            self.events.append("eof")

        def connection_lost(self, exc):
            self.events.append(("lost", type(exc)))
            self.lost.set_result(exc)

    async def main():
        server = await loop.create_server(Broken, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await connect(loop, port, client_ctx, lambda: Events(loop))
        before = len(os.listdir("/proc/self/fd"))  # the listener's, the client's and the server's
        tr.write(b"data")
        await asyncio.sleep(0.2)
        tr.write(b"more")
        await asyncio.wait_for(servers[0].lost, 10)
        await asyncio.wait_for(proto.lost, 10)
        tr.close()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.05)
        return before, len(os.listdir("/proc/self/fd"))

    before, after = loop.run_until_complete(main())
    (p,) = servers
    if failure == "raises":
        assert p.events == ["made", "get_buffer", ("lost", ZeroDivisionError)]
        assert [(c["message"], type(c["exception"])) for c in loop.test_errors] == [
            ("Fatal error on SSL protocol", ZeroDivisionError)]
        loop.test_errors.clear()
    elif failure in _TLS_BAD_BUFFERS:
        assert p.events == ["made", "get_buffer", ("lost", TypeError)]
        assert str(p.lost.result()) == _TLS_BAD_BUFFERS[failure][1]
        assert [(c["message"], c["exception"]) for c in loop.test_errors] == [
            ("Fatal error on SSL protocol", p.lost.result())]
        loop.test_errors.clear()
    else:
        assert p.events == ["made", "get_buffer", "eof", "get_buffer", ("lost", ssl.SSLError)]
        assert "APPLICATION_DATA_AFTER_CLOSE_NOTIFY" in str(p.lost.result())
        assert loop.test_errors == []
    assert after <= before - 3


@needs_311
def test_read_buffer_size_and_limits_while_reading_is_paused(loop, server_ctx, client_ctx):
    # The TLS transport's read buffer: ciphertext waiting in the TLS layer while the
    # application paused reading; the limits as set.
    class Sender(asyncio.Protocol):
        def connection_made(self, transport):
            transport.write(b"z" * 300_000)

    async def main():
        server = await loop.create_server(Sender, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await connect(loop, port, client_ctx, lambda: Events(loop))
        sizes = [tr.get_read_buffer_size()]
        tr.pause_reading()
        await asyncio.sleep(0.3)
        sizes.append(tr.get_read_buffer_size())
        got_while_paused = len(proto.data)
        tr.set_read_buffer_limits(high=64 * 1024)
        limits = tr.get_read_buffer_limits()
        tr.resume_reading()
        for _ in range(400):
            if len(proto.data) == 300_000:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        sizes.append(tr.get_read_buffer_size())
        tr.close()
        await asyncio.wait_for(proto.lost, 10)
        server.close()
        await server.wait_closed()
        return sizes, got_while_paused, limits, len(proto.data)

    sizes, got_while_paused, limits, total = loop.run_until_complete(main())
    # Up to all 300,000 bytes of plaintext and the records' overhead: the raw transport
    # pauses past the TLS layer's high water mark (256 KiB) if the rest comes after it
    # (as on 3.14, on both loops).
    assert sizes[0] == 0 and 256 * 1024 <= sizes[1] < 310_000 and sizes[2] == 0
    assert got_while_paused == 0 and total == 300_000
    assert limits == (16384, 65536)


@needs_311
def test_tls_transport_has_no_half_close(loop, server_ctx, client_ctx):
    async def main():
        server, port = await tls_server(loop, server_ctx)
        tr, proto = await connect(loop, port, client_ctx, lambda: Events(loop))
        can = tr.can_write_eof()
        try:
            tr.write_eof()
            err = None
        except Exception as e:
            err = e
        tr.write(b"still open")
        await asyncio.sleep(0.1)
        tr.close()
        await asyncio.wait_for(proto.lost, 10)
        server.close()
        await server.wait_closed()
        return can, err, bytes(proto.data), proto.events

    can, err, data, events = loop.run_until_complete(main())
    assert can is False
    assert type(err) is NotImplementedError
    # the connection stays open and usable; close() ends it (the echo server answers the
    # close_notify with its own: eof, then a clean connection_lost)
    assert data == b"still open"
    assert events == ["made", "data", "eof", ("lost", None)]


def test_server_handshake_timeout(loop, server_ctx):
    # A client that connects and never starts TLS: the server gives up after
    # ssl_handshake_timeout and closes the connection; no protocol is ever made.
    made = []

    async def main():
        server = await loop.create_server(lambda: made.append(1) or Events(loop), "127.0.0.1", 0, ssl=server_ctx,
                                          ssl_handshake_timeout=0.3)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = loop.time()
        data = await asyncio.wait_for(reader.read(), 10)
        took = loop.time() - t0
        writer.close()
        server.close()
        await server.wait_closed()
        return data, took

    data, took = loop.run_until_complete(main())
    assert data == b""
    assert 0.25 < took < 5
    assert made == [1]  # the protocol is made at accept, before the handshake
    # reported in debug mode only, as a failed handshake is (both loops)
    accept = drop_debug_accept_errors(loop)
    assert [type(c["exception"]) for c in accept] == ([ConnectionAbortedError] if loop.get_debug() else [])
    assert loop.test_errors == []


@needs_311
def test_server_shutdown_timeout(loop, server_ctx, client_ctx):
    # The server closes; the client completed its handshake but never reads, so it never
    # answers close_notify: after ssl_shutdown_timeout the server's transport is dropped.
    lost = loop.create_future()

    class CloseAtOnce(asyncio.Protocol):
        def connection_made(self, transport):
            transport.close()

        def connection_lost(self, exc):
            lost.set_result(exc)

    def client(port, done):
        raw = socket.create_connection(("127.0.0.1", port))
        s = client_ctx.wrap_socket(raw, server_hostname="localhost")
        done.wait(10)
        s.close()

    async def main():
        server = await loop.create_server(CloseAtOnce, "127.0.0.1", 0, ssl=server_ctx, ssl_shutdown_timeout=0.3)
        port = server.sockets[0].getsockname()[1]
        done = threading.Event()
        th = threading.Thread(target=client, args=(port, done))
        th.start()
        try:
            t0 = loop.time()
            exc = await asyncio.wait_for(lost, 10)
            took = loop.time() - t0
        finally:
            done.set()
            await loop.run_in_executor(None, th.join)
        server.close()
        await server.wait_closed()
        return exc, took

    exc, took = loop.run_until_complete(main())
    assert type(exc) is TimeoutError and str(exc) == "SSL shutdown timed out"
    assert 0.25 < took < 5
    assert loop.test_errors == []


def test_connect_accepted_socket_with_tls(loop, server_ctx, client_ctx):
    async def main():
        lsock = socket.create_server(("127.0.0.1", 0))
        lsock.setblocking(False)
        port = lsock.getsockname()[1]
        conn_task = loop.create_task(connect(loop, port, client_ctx, lambda: Events(loop)))
        sock, _ = await loop.sock_accept(lsock)
        str_, sproto = await loop.connect_accepted_socket(Echo, sock, ssl=server_ctx, ssl_handshake_timeout=5)
        tr, proto = await conn_task
        tr.write(b"hello over tls")
        for _ in range(200):
            if len(proto.data) == 14:
                break
            await asyncio.sleep(0.01)
        info = (str_.get_extra_info("sslcontext") is server_ctx, str_.get_extra_info("peercert"),
                tr.get_extra_info("ssl_object").version() is not None)
        tr.close()
        await asyncio.wait_for(proto.lost, 10)
        lsock.close()
        return bytes(proto.data), info

    data, (same_ctx, peercert, has_ssl_object) = loop.run_until_complete(main())
    assert data == b"hello over tls"
    assert same_ctx and peercert is None and has_ssl_object


def _serve_then_close_notify_and_close(listener, server_ctx, count):
    # What PostgreSQL does at the end of each TLS connection: close_notify, and the
    # socket closed at once, never reading the client's answer (which the kernel then
    # answers with a reset). The TLS is an SSLObject over memory BIOs, so that nothing
    # but this script decides when the bytes go.
    for _ in range(count):
        sock, _ = listener.accept()
        with sock:
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = server_ctx.wrap_bio(incoming, outgoing, server_side=True)
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(outgoing.read())
                    data = sock.recv(65536)
                    assert data, "the client went away during the handshake"
                    incoming.write(data)
            tls.write(b"bye")
            try:
                tls.unwrap()  # close_notify; the client's answer is never read
            except ssl.SSLWantReadError:
                pass
            sock.sendall(outgoing.read())


def test_server_closes_right_after_its_close_notify(loop, server_ctx, client_ctx):
    # The client answers the close_notify to a socket already closed: its kernel holds
    # EPIPE (or, when the answer came first, the server's close sends a reset). Neither
    # is the application's: a clean close on both loops, every time (asyncpg's
    # Connection.close() and Pool.close() over TLS raised BrokenPipeError on pyloop).
    count = 40

    async def main():
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(30)  # a client that never comes ends the thread
            server = threading.Thread(target=_serve_then_close_notify_and_close, args=(listener, server_ctx, count))
            server.start()
            try:
                outcomes = []
                for _ in range(count):
                    reader, writer = await asyncio.open_connection(
                        "127.0.0.1", listener.getsockname()[1], ssl=client_ctx, server_hostname="localhost")
                    try:
                        outcomes.append(await asyncio.wait_for(reader.read(), 10))
                    except Exception as exc:  # the difference this test looks for
                        outcomes.append(exc)
                    writer.close()
                    try:
                        await asyncio.wait_for(writer.wait_closed(), 10)
                    except Exception as exc:
                        outcomes.append(exc)
                return outcomes
            finally:
                await loop.run_in_executor(None, server.join, 10)

    assert loop.run_until_complete(main()) == [b"bye"] * count
