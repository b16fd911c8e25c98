"""TCP and Unix stream transports, servers and the streams API, on both loops."""

import asyncio
import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys

import pytest

import pyloop


class Recorder(asyncio.Protocol):
    """Records what happens to it; `done` resolves at connection_lost."""

    def __init__(self, loop, keep_open_on_eof=False):
        self.loop = loop
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.done = loop.create_future()
        self.keep_open_on_eof = keep_open_on_eof
        self.paused = 0
        self.resumed = 0

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        assert isinstance(data, bytes)
        self.data += data

    def eof_received(self):
        self.events.append("eof")
        return self.keep_open_on_eof

    def pause_writing(self):
        self.paused += 1

    def resume_writing(self):
        self.resumed += 1

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__ if exc else None))
        if not self.done.done():
            self.done.set_result(exc)


async def wait_for_data(proto, n, timeout=10):
    async def poll():
        while len(proto.data) < n:
            await asyncio.sleep(0.001)
    await asyncio.wait_for(poll(), timeout)


async def make_server(loop, factory=None, **kw):
    protos = []

    def default():
        p = Recorder(loop)
        protos.append(p)
        return p

    server = await loop.create_server(factory or default, "127.0.0.1", 0, **kw)
    return server, protos, server.sockets[0].getsockname()[1]


def test_protocol_round_trip_and_transport_api(loop):
    async def main():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        assert isinstance(tr, asyncio.Transport)
        assert client.events == ["made"]
        assert isinstance(tr.get_extra_info("socket"), asyncio.trsock.TransportSocket)
        assert tr.get_extra_info("peername") == ("127.0.0.1", port)
        assert tr.get_extra_info("sockname")[0] == "127.0.0.1"
        assert tr.get_extra_info("nothing", "default") == "default"
        assert tr.get_protocol() is client
        assert tr.is_reading() and not tr.is_closing()
        assert tr.can_write_eof()
        tr.write(b"hello ")
        tr.writelines([b"wor", bytearray(b"ld"), memoryview(b"!")])
        await asyncio.sleep(0)
        while not protos or len(protos[0].data) < 12:
            await asyncio.sleep(0.001)
        assert bytes(protos[0].data) == b"hello world!"
        assert protos[0].transport.get_extra_info("peername") == tr.get_extra_info("sockname")
        protos[0].transport.write(b"back")
        await wait_for_data(client, 4)
        tr.close()
        assert tr.is_closing()
        assert await client.done is None
        assert client.events == ["made", ("lost", None)]
        await protos[0].done
        assert protos[0].events == ["made", "eof", ("lost", None)]
        server.close()
        await server.wait_closed()
        return bytes(client.data)

    assert loop.run_until_complete(main()) == b"back"


def test_a_written_bytearray_is_the_callers_again(loop, loop_name):
    # What the kernel did not take of a written bytearray waits in the transport. asyncio
    # 3.12+ keeps a view of the caller's bytearray (resizing it raises BufferError while
    # that waits; changing it in place changes what is sent); asyncio before 3.12 and
    # pyloop copy it: the caller may reuse or clear it at once, and the peer gets what
    # was written (docs/api.md).
    payload = os.urandom(8 << 20)

    async def main():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        while not protos:
            await asyncio.sleep(0.001)
        protos[0].transport.pause_reading()  # the kernel's buffers fill: the rest waits
        ba = bytearray(payload)
        tr.write(ba)
        assert tr.get_write_buffer_size() > 0
        try:
            ba.clear()
            outcome = "cleared"
        except BufferError:
            outcome = "BufferError"
        protos[0].transport.resume_reading()
        await wait_for_data(protos[0], len(payload), timeout=30)
        tr.close()
        await client.done
        server.close()
        await server.wait_closed()
        return outcome, hashlib.sha256(protos[0].data).digest()

    outcome, digest = loop.run_until_complete(main())
    if loop_name == "asyncio" and sys.version_info >= (3, 12):
        assert outcome == "BufferError"
    else:
        assert outcome == "cleared"
    assert digest == hashlib.sha256(payload).digest()


# asyncio 3.14 changed the message.
WRITE_TYPE_MESSAGE = ("data argument must be a bytes, bytearray, or memoryview object, not 'str'"
                      if sys.version_info >= (3, 14) else "data argument must be a bytes-like object, not 'str'")


def test_write_errors_and_write_after_close(loop):
    async def main():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        with pytest.raises(TypeError) as info:
            tr.write("text")
        assert str(info.value) == WRITE_TYPE_MESSAGE
        tr.write(b"")
        tr.write_eof()
        with pytest.raises(RuntimeError, match="write_eof"):
            tr.write(b"x")
        tr.close()
        await client.done
        # after the connection is lost too: write_eof() is checked before anything else
        for data in (b"x", b""):
            with pytest.raises(RuntimeError) as info:
                tr.write(data)
            assert str(info.value) == "Cannot call write() after write_eof()"
        with pytest.raises(TypeError):
            tr.write("text")
        while not protos:
            await asyncio.sleep(0.001)
        await asyncio.wait_for(protos[0].done, 10)
        server.close()
        await server.wait_closed()
        return protos[0].events, bytes(protos[0].data)

    # the server got the EOF and nothing else
    assert loop.run_until_complete(main()) == (["made", "eof", ("lost", None)], b"")


def test_write_after_connection_lost_is_ignored(loop, caplog):
    # Writes after the connection is lost are dropped and counted; from the fifth on,
    # each logs asyncio's warning. Nothing raises, nothing reaches the peer.
    import logging

    async def main():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        tr.abort()
        await client.done
        assert client.events == ["made", ("lost", None)]
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(6):
                tr.write(b"after the end")
        assert tr.get_write_buffer_size() == 0
        tr2, client2 = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        tr2.close()
        await client2.done
        server.close()
        await server.wait_closed()
        return [bytes(p.data) for p in protos]

    assert loop.run_until_complete(main()) == [b"", b""]
    warnings = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert warnings == ["socket.send() raised exception."] * 2


def test_eof_received_true_keeps_half_open(loop):
    async def main():
        srv_protos = []

        def factory():
            p = Recorder(loop, keep_open_on_eof=True)
            srv_protos.append(p)
            return p

        server, _, port = await make_server(loop, factory)
        tr, client = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        tr.write(b"request")
        tr.write_eof()
        while not srv_protos or "eof" not in srv_protos[0].events:
            await asyncio.sleep(0.001)
        # the server's side is half-open: it can still answer
        srv_protos[0].transport.write(b"response")
        srv_protos[0].transport.close()
        await client.done
        assert bytes(srv_protos[0].data) == b"request"
        server.close()
        await server.wait_closed()
        return bytes(client.data), client.events

    data, events = loop.run_until_complete(main())
    assert data == b"response"
    assert events == ["made", "eof", ("lost", None)]


def test_pause_and_resume_reading(loop):
    async def main():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        tr.pause_reading()
        assert not tr.is_reading()
        while not protos:
            await asyncio.sleep(0.001)
        protos[0].transport.write(b"data")
        await asyncio.sleep(0.05)
        assert client.data == b""
        tr.resume_reading()
        assert tr.is_reading()
        await wait_for_data(client, 4)
        tr.close()
        await client.done
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_flow_control_with_a_peer_that_never_reads(loop):
    async def main():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        while not protos:
            await asyncio.sleep(0.001)
        protos[0].transport.pause_reading()
        assert tr.get_write_buffer_limits() == (16384, 65536)
        tr.set_write_buffer_limits(high=100_000, low=10_000)
        assert tr.get_write_buffer_limits() == (10_000, 100_000)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=1, low=2)
        chunk = b"x" * 65536
        sent = 0
        while not client.paused:
            tr.write(chunk)
            sent += len(chunk)
            await asyncio.sleep(0)
            assert sent < 200 * 1024 * 1024, "pause_writing never came"
        assert tr.get_write_buffer_size() > 100_000
        buffered = tr.get_write_buffer_size()
        protos[0].transport.resume_reading()
        await wait_for_data(protos[0], sent, timeout=30)
        while not client.resumed:
            await asyncio.sleep(0.001)
        assert tr.get_write_buffer_size() <= 10_000
        tr.close()
        await client.done
        server.close()
        await server.wait_closed()
        return buffered

    assert loop.run_until_complete(main()) > 0


class Buffered(asyncio.BufferedProtocol):
    def __init__(self, loop):
        self.buf = bytearray(1000)
        self.got = bytearray()
        self.sizes = []
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.sizes.append(nbytes)
        self.got += self.buf[:nbytes]

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.done.set_result(exc)


def test_buffered_protocol(loop):
    payload = os.urandom(300_000)

    async def main():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Buffered(loop), "127.0.0.1", port)
        while not protos:
            await asyncio.sleep(0.001)
        protos[0].transport.write(payload)
        protos[0].transport.close()
        await asyncio.wait_for(client.done, 10)
        server.close()
        await server.wait_closed()
        return bytes(client.got), max(client.sizes)

    got, biggest = loop.run_until_complete(main())
    assert got == payload
    assert biggest <= 1000


def test_connection_refused(loop):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConnectionRefusedError):
        loop.run_until_complete(loop.create_connection(asyncio.Protocol, "127.0.0.1", port))


def test_multiple_addresses_all_refused(loop):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    infos = socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)
    with pytest.raises(OSError) as excinfo:
        loop.run_until_complete(loop.create_connection(asyncio.Protocol, "localhost", port))
    if len({i[0] for i in infos}) > 1:
        assert "Multiple exceptions" in str(excinfo.value)


@pytest.mark.parametrize("happy_eyeballs", [False, True])
def test_all_errors(loop, loop_name, happy_eyeballs):
    # asyncio has all_errors from 3.12; pyloop on every version (docs/api.md): on 3.10
    # the group is the `exceptiongroup` backport's. Every refused attempt is in the
    # group, each a ConnectionRefusedError, also when there is only one.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    kw = {"happy_eyeballs_delay": 0.05} if happy_eyeballs else {}
    if sys.version_info < (3, 12) and loop_name == "asyncio":
        with pytest.raises(TypeError, match="all_errors"):
            loop.create_connection(asyncio.Protocol, "127.0.0.1", port, all_errors=True, **kw)
        return
    if sys.version_info >= (3, 11):
        group = ExceptionGroup  # noqa: F821
    else:
        from exceptiongroup import ExceptionGroup as group  # pyloop's dependency on 3.10
    with pytest.raises(group) as info:
        loop.run_until_complete(loop.create_connection(asyncio.Protocol, "127.0.0.1", port, all_errors=True, **kw))
    assert str(info.value).startswith("create_connection failed")
    assert [type(e) for e in info.value.exceptions] == [ConnectionRefusedError]
    # and without it, the error itself
    with pytest.raises(ConnectionRefusedError):
        loop.run_until_complete(loop.create_connection(asyncio.Protocol, "127.0.0.1", port, **kw))


def test_happy_eyeballs_and_local_addr(loop):
    async def main():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Recorder(loop), "localhost", port,
                                                  happy_eyeballs_delay=0.05, local_addr=("127.0.0.1", 0))
        assert tr.get_extra_info("sockname")[0] == "127.0.0.1"
        tr.close()
        await client.done
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_create_connection_with_sock_and_bad_args(loop):
    async def main():
        server, protos, port = await make_server(loop)
        sock = socket.socket()
        sock.connect(("127.0.0.1", port))
        tr, client = await loop.create_connection(lambda: Recorder(loop), sock=sock)
        tr.close()
        await client.done
        extra_sock = socket.socket()
        with pytest.raises(ValueError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, sock=extra_sock)
        extra_sock.close()
        with pytest.raises(ValueError):
            await loop.create_connection(asyncio.Protocol)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(ValueError):
            await loop.create_connection(asyncio.Protocol, sock=udp)
        udp.close()
        with pytest.raises(ValueError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, server_hostname="x")
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_server_object(loop):
    async def main():
        server = await loop.create_server(lambda: Recorder(loop), "127.0.0.1", 0, start_serving=False)
        assert not server.is_serving()
        assert server.get_loop() is loop
        [sock] = server.sockets
        assert isinstance(sock, asyncio.trsock.TransportSocket)
        await server.start_serving()
        assert server.is_serving()
        port = sock.getsockname()[1]
        tr, client = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        tr.close()
        await client.done
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)

    loop.run_until_complete(main())


def test_server_async_with_and_serve_forever(loop):
    async def main():
        async with await loop.create_server(asyncio.Protocol, "127.0.0.1", 0) as server:
            task = loop.create_task(server.serve_forever())
            await asyncio.sleep(0.01)
            with pytest.raises(RuntimeError):
                await server.serve_forever()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not server.is_serving()

    loop.run_until_complete(main())


def test_server_on_all_interfaces_and_host_list(loop):
    async def main():
        s1 = await loop.create_server(asyncio.Protocol, None, 0)
        s2 = await loop.create_server(asyncio.Protocol, ["127.0.0.1", "localhost"], 0)
        for s in (s1, s2):
            assert s.sockets
            s.close()
            await s.wait_closed()

    loop.run_until_complete(main())


def test_bind_error_message(loop):
    async def main():
        s = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, reuse_address=False)
        port = s.sockets[0].getsockname()[1]
        with pytest.raises(OSError) as excinfo:
            await loop.create_server(asyncio.Protocol, "127.0.0.1", port, reuse_address=False)
        s.close()
        await s.wait_closed()
        return excinfo.value

    err = loop.run_until_complete(main())
    assert "error while attempting to bind on address" in str(err)


def test_reuse_port(loop):
    # Two servers on one port (SO_REUSEPORT, read back): the kernel spreads connections
    # over both, and what each client writes reaches the server that took it.
    async def main():
        got = {1: [], 2: []}

        def factory(n):
            class Sink(asyncio.Protocol):
                def data_received(self, data):
                    got[n].append(data)
            return Sink

        s1 = await loop.create_server(factory(1), "127.0.0.1", 0, reuse_port=True)
        port = s1.sockets[0].getsockname()[1]
        s2 = await loop.create_server(factory(2), "127.0.0.1", port, reuse_port=True)
        assert [s.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0 for s in (s1, s2)] == [True] * 2
        sent = []
        for i in range(64):  # ports differ, so the kernel's hash sends some to each
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            sent.append(b"%02d" % i)
            writer.write(sent[-1])
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        for _ in range(1000):
            if len(got[1]) + len(got[2]) == len(sent):
                break
            await asyncio.sleep(0.005)
        for s in (s1, s2):
            s.close()
            await s.wait_closed()
        return sent, got

    sent, got = loop.run_until_complete(main())
    assert sorted(got[1] + got[2]) == sent
    assert got[1] and got[2]


@pytest.mark.parametrize("how", ["close_clients", "abort_clients"])
def test_close_clients_and_abort_clients(loop, how):
    # close_clients() closes each client's transport: what the server wrote before it
    # still reaches the client, then EOF. abort_clients() aborts them: what waited in the
    # server's transport is dropped. (asyncio 3.13+; pyloop on every version.)
    if not isinstance(loop, pyloop.Loop) and sys.version_info < (3, 13):
        pytest.skip("asyncio has close_clients/abort_clients from 3.13")
    payload = os.urandom(4 << 20)

    async def main():
        server, protos, port = await make_server(loop)
        clients = []
        for _ in range(3):
            tr, proto = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
            tr.pause_reading()  # what the server writes waits in its transports
            clients.append((tr, proto))
        while len(protos) < 3:
            await asyncio.sleep(0.001)
        for p in protos:
            p.transport.write(payload)
            assert p.transport.get_write_buffer_size() > 0
        server.close()
        getattr(server, how)()
        for tr, _ in clients:
            tr.resume_reading()
        await asyncio.wait_for(server.wait_closed(), 10)
        outcomes = []
        for tr, proto in clients:
            exc = await asyncio.wait_for(proto.done, 10)
            outcomes.append((type(exc).__name__ if exc else None, len(proto.data),
                             bytes(proto.data) == payload, proto.events))
        return outcomes

    outcomes = loop.run_until_complete(main())
    if how == "close_clients":
        assert outcomes == [(None, len(payload), True, ["made", "eof", ("lost", None)])] * 3
    else:
        for exc, received, _, events in outcomes:
            assert received < len(payload)  # what waited in the server's transport is gone
            assert events[0] == "made" and events[-1] == ("lost", exc)


def needs_server_clients(loop):
    if not isinstance(loop, pyloop.Loop) and sys.version_info < (3, 13):
        pytest.skip("asyncio's Server keeps its clients from 3.13")


def test_a_server_keeps_its_open_connections_only(loop):
    """Server._clients (a WeakSet in asyncio; a list the transports link themselves
    into in pyloop): connections join it as they open and leave it as they close."""
    needs_server_clients(loop)

    async def main():
        server, protos, port = await make_server(loop)
        clients = [await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port) for _ in range(4)]
        while len(protos) < 4:
            await asyncio.sleep(0.001)
        assert len(list(server._clients)) == 4
        assert {id(t) for t in server._clients} == {id(p.transport) for p in protos}
        for tr, _ in clients[:3]:
            tr.close()
        for p in protos[:3]:
            await asyncio.wait_for(p.done, 10)
        assert list(server._clients) == [protos[3].transport]
        clients[3][0].close()
        await asyncio.wait_for(protos[3].done, 10)
        assert list(server._clients) == []
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_a_server_outlives_connections_freed_under_a_closed_loop():
    """The loop closed with connections open, their transports then freed: the server
    must forget them (pyloop's transports unlink themselves when freed), and
    close_clients() must not reach them."""
    import gc
    from conftest import LOOP_FACTORIES
    for which in ("asyncio", "pyloop"):
        loop = LOOP_FACTORIES[which]()
        if which == "asyncio" and sys.version_info < (3, 13):
            loop.close()
            continue

        async def main():
            server, protos, port = await make_server(loop)
            clients = [await loop.create_connection(asyncio.Protocol, "127.0.0.1", port) for _ in range(3)]
            while len(protos) < 3:
                await asyncio.sleep(0.001)
            return server, protos, clients

        server, protos, clients = loop.run_until_complete(main())
        loop.close()
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # (asyncio warns of each unclosed transport)
            for p in protos:
                p.transport = None
            del protos, clients, p
            gc.collect()
        assert list(server._clients) == [], which
        server.close_clients()
        server.abort_clients()
        for s in server._sockets or ():
            s.close()


def test_server_attach_takes_a_transport_of_another_kind(loop):
    """Server._attach(transport), as asyncio 3.13's own transports call it: a transport
    that is not pyloop's is kept too (pyloop keeps it in a WeakSet), and
    close_clients() closes it."""
    needs_server_clients(loop)

    class Other(asyncio.Transport):
        closed = False

        def close(self):
            self.closed = True

    async def main():
        server, _, _ = await make_server(loop)
        other = Other()
        server._attach(other)
        assert other in list(server._clients) or other in list(getattr(server, "_other_clients", None) or ())
        server.close_clients()
        assert other.closed
        server._detach(other)
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)

    loop.run_until_complete(main())


@pytest.mark.parametrize("data_first", [False, True])
@pytest.mark.parametrize("paused", [False, True])
def test_peer_reset(loop, data_first, paused):
    # A peer's RST ends the connection with connection_lost(ConnectionResetError), with
    # no eof_received: also when data came before it, and when reading was paused while
    # both arrived (libuv calls that an EOF without reading again: pyloop asks the kernel).
    async def main():
        with socket.create_server(("127.0.0.1", 0)) as listener:
            tr, client = await loop.create_connection(lambda: Recorder(loop), *listener.getsockname())
            if paused:
                tr.pause_reading()
            peer, _ = listener.accept()
            if data_first:
                peer.sendall(b"x" * 1000)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()  # RST
            await asyncio.sleep(0.05)
            if paused:
                tr.resume_reading()
            exc = await asyncio.wait_for(client.done, 5)
        return exc, client.events, len(client.data)

    exc, events, received = loop.run_until_complete(main())
    assert type(exc) is ConnectionResetError
    assert events == ["made", ("lost", "ConnectionResetError")]
    assert received == (1000 if data_first else 0)


async def until_tcp_state(sock, state, timeout=5):
    # The kernel's TCP state of a socket (tcp_info's first byte), polled until it is `state`.
    deadline = asyncio.get_running_loop().time() + timeout
    while sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != state:
        assert asyncio.get_running_loop().time() < deadline, "the TCP state never came"
        await asyncio.sleep(0.001)


TCP_CLOSE = 7  # linux/tcp_states.h


@pytest.mark.parametrize("writes", [1, 2])
def test_peer_fin_then_reset_of_our_write(loop, writes):
    # The peer sends data and FIN and closes; our write after that gets an RST back, and
    # the kernel keeps EPIPE on our socket. asyncio's recv() still says EOF (the FIN came
    # first): eof_received, then connection_lost(None), whatever error the socket holds
    # (pyloop once asked SO_ERROR and reported BrokenPipeError; TLS clients hit it when a
    # server closes right after its close_notify, as PostgreSQL does). A second write
    # fails at once with BrokenPipeError on both, before the EOF is read.
    async def main():
        with socket.create_server(("127.0.0.1", 0)) as listener:
            tr, client = await loop.create_connection(lambda: Recorder(loop), *listener.getsockname())
            tr.pause_reading()
            peer, _ = listener.accept()
            peer.sendall(b"hi")
            peer.shutdown(socket.SHUT_WR)
            peer.close()
            await asyncio.sleep(0.01)
            tr.write(b"x")  # the peer's kernel answers with RST
            await until_tcp_state(tr.get_extra_info("socket"), TCP_CLOSE)
            if writes == 2:
                tr.write(b"y")  # EPIPE
                await asyncio.sleep(0)
            tr.resume_reading()
            exc = await asyncio.wait_for(client.done, 5)
        return exc, client.events, bytes(client.data)

    exc, events, data = loop.run_until_complete(main())
    if writes == 1:
        assert exc is None
        assert events == ["made", "eof", ("lost", None)]
        assert data == b"hi"
    else:
        assert type(exc) is BrokenPipeError
        assert events == ["made", ("lost", "BrokenPipeError")]
        assert data == b""


def test_reset_found_while_a_close_waits_in_the_queue(loop):
    # asyncio runs a reader's callback after the callbacks queued before the poll that
    # found it: a close() queued there runs first, and a reset found in that poll is
    # never reported (connection_lost(None)).
    async def main():
        with socket.create_server(("127.0.0.1", 0)) as listener:
            tr, client = await loop.create_connection(lambda: Recorder(loop), *listener.getsockname())
            tr.pause_reading()
            peer, _ = listener.accept()
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()  # RST
            await until_tcp_state(tr.get_extra_info("socket"), TCP_CLOSE)
            tr.resume_reading()
            loop.call_soon(tr.close)
            exc = await asyncio.wait_for(client.done, 5)
        return exc, client.events

    exc, events = loop.run_until_complete(main())
    assert exc is None
    assert events == ["made", ("lost", None)]


def test_exception_in_data_received_goes_to_handler(loop):
    class Bad(Recorder):
        def data_received(self, data):
            raise ZeroDivisionError

    async def main():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Bad(loop), "127.0.0.1", port)
        while not protos:
            await asyncio.sleep(0.001)
        protos[0].transport.write(b"x")
        exc = await asyncio.wait_for(client.done, 5)
        server.close()
        await server.wait_closed()
        return exc

    exc = loop.run_until_complete(main())
    assert isinstance(exc, ZeroDivisionError)
    [ctx] = loop.test_errors
    loop.test_errors.clear()
    assert ctx["message"] == "Fatal error: protocol.data_received() call failed."
    assert ctx["transport"] is not None and ctx["protocol"] is not None


def test_connect_accepted_socket(loop):
    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        csock = socket.socket()
        csock.connect(lsock.getsockname())
        conn, _ = lsock.accept()
        lsock.close()
        tr, proto = await loop.connect_accepted_socket(lambda: Recorder(loop), conn)
        csock.sendall(b"ping")
        await wait_for_data(proto, 4)
        tr.close()
        await proto.done
        csock.close()
        return bytes(proto.data)

    assert loop.run_until_complete(main()) == b"ping"


def _echo_handler():
    async def handle(reader, writer):
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
    return handle


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_streams_100mib_checksum(loop, kind, tmp_path):
    total = 100 * 1024 * 1024
    block = os.urandom(1 << 20)

    async def main():
        if kind == "tcp":
            server = await asyncio.start_server(_echo_handler(), "127.0.0.1", 0)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        else:
            path = str(tmp_path / "s.sock")
            server = await asyncio.start_unix_server(_echo_handler(), path)
            reader, writer = await asyncio.open_unix_connection(path)

        async def send():
            for _ in range(total // len(block)):
                writer.write(block)
                await writer.drain()
            writer.write_eof()

        sender = loop.create_task(send())
        digest = hashlib.sha256()
        got = 0
        while data := await reader.read(1 << 20):
            digest.update(data)
            got += len(data)
        await sender
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return got, digest.hexdigest()

    want = hashlib.sha256()
    for _ in range(total // len(block)):
        want.update(block)
    got, digest = loop.run_until_complete(main())
    assert got == total and digest == want.hexdigest()


def test_unix_server_stale_file_and_cleanup(loop, tmp_path):
    path = str(tmp_path / "srv.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    assert os.path.exists(path)

    async def main():
        server = await loop.create_unix_server(lambda: Recorder(loop), path)
        tr, proto = await loop.create_unix_connection(lambda: Recorder(loop), path)
        assert tr.get_extra_info("peername") == path
        tr.close()
        await proto.done
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    # removed on close from 3.13 on (cleanup_socket); before, asyncio leaves it
    assert os.path.exists(path) == (sys.version_info < (3, 13))
    if os.path.exists(path):
        os.unlink(path)


def test_unix_server_on_a_given_socket_and_its_file(loop, tmp_path):
    # A socket the user bound: 3.13 removes its file at close() too; 3.10-3.12 leave it.
    path = str(tmp_path / "given.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)

    async def main():
        server = await loop.create_unix_server(lambda: Recorder(loop), sock=sock)
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    assert os.path.exists(path) == (sys.version_info < (3, 13))
    if os.path.exists(path):
        os.unlink(path)


def test_unix_abstract_namespace(loop):
    name = "\0pyloop-test-%d" % os.getpid()

    async def main():
        protos = []

        def factory():
            protos.append(Recorder(loop))
            return protos[-1]

        server = await loop.create_unix_server(factory, name)
        assert server.sockets[0].getsockname() == name.encode()  # no file: the abstract name
        tr, proto = await loop.create_unix_connection(lambda: Recorder(loop), name)
        tr.write(b"abc")
        tr.close()
        await proto.done
        while not protos:
            await asyncio.sleep(0.001)
        await asyncio.wait_for(protos[0].done, 10)
        server.close()
        await server.wait_closed()
        return bytes(protos[0].data), protos[0].events

    assert loop.run_until_complete(main()) == (b"abc", ["made", "eof", ("lost", None)])


def test_1000_concurrent_connections(loop):
    async def main():
        server = await asyncio.start_server(_echo_handler(), "127.0.0.1", 0, backlog=1000)
        port = server.sockets[0].getsockname()[1]

        async def one(i):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"%d\n" % i)
            line = await reader.readline()
            writer.close()
            await writer.wait_closed()
            return line

        lines = await asyncio.gather(*[one(i) for i in range(1000)])
        server.close()
        await server.wait_closed()
        return lines

    assert loop.run_until_complete(main()) == [b"%d\n" % i for i in range(1000)]


def test_graceful_close_delivers_everything_written(loop):
    payload = os.urandom(8 * 1024 * 1024)

    async def main():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        while not protos:
            await asyncio.sleep(0.001)
        protos[0].transport.pause_reading()  # the data has to wait in our buffer
        tr.write(payload)
        tr.close()  # graceful: flush, then connection_lost
        await asyncio.sleep(0.05)
        protos[0].transport.resume_reading()
        await asyncio.wait_for(protos[0].done, 30)
        await client.done
        server.close()
        await server.wait_closed()
        return bytes(protos[0].data)

    assert loop.run_until_complete(main()) == payload


def test_eof_mid_message(loop):
    async def handle(reader, writer):
        writer.write(b"only part")
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        with pytest.raises(asyncio.IncompleteReadError) as excinfo:
            await reader.readexactly(100)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return excinfo.value.partial

    assert loop.run_until_complete(main()) == b"only part"


def test_keep_alive(loop):
    if not isinstance(loop, pyloop.Loop) and sys.version_info < (3, 13):
        pytest.skip("asyncio has keep_alive from 3.13")

    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, keep_alive=True)
        value = server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        server.close()
        await server.wait_closed()
        return value

    assert loop.run_until_complete(main()) == 1


FD_EXHAUSTION_CHILD = r"""
import asyncio, resource, socket, sys
import pyloop

loop = pyloop.new_event_loop() if sys.argv[1] == "pyloop" else asyncio.SelectorEventLoop()
errors = []
loop.set_exception_handler(lambda lp, ctx: errors.append(ctx["message"]))

async def handle(reader, writer):
    data = await reader.read(100)
    writer.write(data)
    await writer.drain()
    writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    hogs = []
    try:
        while True:
            hogs.append(socket.socket())
    except OSError:
        pass
    # no fd left: the client itself needs one, so free exactly one for it
    hogs.pop().close()
    client = socket.socket()
    client.setblocking(False)
    try:
        client.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    for _ in range(100):
        await asyncio.sleep(0.01)
        if errors:
            break
    for h in hogs:
        h.close()
    client.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # the server keeps serving once descriptors are back (after asyncio's 1 s pause)
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    writer.write(b"still here")
    answer = await asyncio.wait_for(reader.read(100), 10)
    writer.close()
    server.close()
    print(errors[:1], answer)

loop.run_until_complete(main())
loop.close()
"""


@pytest.mark.parametrize("which", ["asyncio", "pyloop"])
def test_fd_exhaustion_on_accept(which):
    import subprocess
    out = subprocess.run([sys.executable, "-c", FD_EXHAUSTION_CHILD, which], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['socket.accept() out of system resource'] b'still here'"


@pytest.mark.parametrize("source", ["file", "bytesio"])
def test_loop_sendfile(loop, tmp_path, source):
    import io
    data = os.urandom(2 * 1024 * 1024 + 5)
    path = tmp_path / "blob"
    path.write_bytes(data)

    async def main():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        f = open(path, "rb") if source == "file" else io.BytesIO(data)
        with f:
            tr.write(b"head:")
            sent = await loop.sendfile(tr, f, 1000, len(data) - 2000)
            tr.write(b":tail")
            pos = f.tell()
        while not protos or len(protos[0].data) < 5 + sent + 5:
            await asyncio.sleep(0.005)
        assert tr.is_reading()
        tr.close()
        await client.done
        server.close()
        await server.wait_closed()
        return sent, pos, bytes(protos[0].data)

    sent, pos, got = loop.run_until_complete(main())
    assert sent == len(data) - 2000
    assert pos == len(data) - 1000
    assert got == b"head:" + data[1000:-1000] + b":tail"


def test_loop_sendfile_from_the_end_of_the_file(loop, tmp_path):
    # offset = the file's size: nothing to send; 3.14 moves the file to that offset
    # (its position after any native sendfile), 3.10-3.13 leave it where it was.
    path = tmp_path / "blob"
    path.write_bytes(b"0123456789")

    async def main():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        with open(path, "rb") as f:
            sent = await loop.sendfile(tr, f, offset=10)
            pos = f.tell()
        tr.close()
        await client.done
        server.close()
        await server.wait_closed()
        return sent, pos

    assert loop.run_until_complete(main()) == (0, 10 if sys.version_info >= (3, 14) else 0)


def test_loop_sendfile_errors(loop, tmp_path):
    import io

    async def main():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sendfile(tr, io.BytesIO(b"x" * 10), fallback=False)
        tr.close()
        with pytest.raises(RuntimeError, match="closing"):
            await loop.sendfile(tr, io.BytesIO(b"x"))
        await client.done
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_servers_on_given_sockets(loop, kind, tmp_path):
    async def main():
        if kind == "tcp":
            lsock = socket.socket()
            lsock.bind(("127.0.0.1", 0))
            server = await loop.create_server(lambda: Recorder(loop), sock=lsock)
            addr = lsock.getsockname()
            tr, proto = await loop.create_connection(lambda: Recorder(loop), *addr)
        else:
            path = str(tmp_path / "given.sock")
            lsock = socket.socket(socket.AF_UNIX)
            lsock.bind(path)
            server = await loop.create_unix_server(lambda: Recorder(loop), sock=lsock)
            csock = socket.socket(socket.AF_UNIX)
            csock.connect(path)
            tr, proto = await loop.create_unix_connection(lambda: Recorder(loop), sock=csock)
        assert server.is_serving()
        tr.write(b"over a given socket")
        tr.close()
        await proto.done
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_unix_bad_arguments(loop, tmp_path):
    async def main():
        tcp = socket.socket()
        with pytest.raises(ValueError):
            await loop.create_unix_server(asyncio.Protocol, sock=tcp)
        with pytest.raises(ValueError):
            await loop.create_unix_connection(asyncio.Protocol, sock=tcp)
        tcp.close()
        with pytest.raises(ValueError):
            await loop.create_unix_server(asyncio.Protocol)
        with pytest.raises(ValueError):
            await loop.create_unix_connection(asyncio.Protocol)
        with pytest.raises(FileNotFoundError):
            await loop.create_unix_connection(asyncio.Protocol, str(tmp_path / "missing.sock"))

    loop.run_until_complete(main())


def test_fd_of_a_transport_cannot_be_watched(loop):
    async def main():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        fd = tr.get_extra_info("socket").fileno()
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(fd, lambda: None)
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_writer(fd, lambda: None)
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.remove_reader(fd)
        tr.close()
        await client.done
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


LOOP_CLOSED_UNDER_TRANSPORTS = r"""
import asyncio, gc, warnings
import pyloop
warnings.simplefilter("ignore", ResourceWarning)
loop = {"pyloop": pyloop.new_event_loop, "asyncio": asyncio.SelectorEventLoop}[LOOP]()
async def main():
    srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", srv.sockets[0].getsockname()[1])
    tr.pause_reading()
    tr.write(b"x" * (8 << 20))  # leaves data buffered
    return srv, tr
srv, tr = loop.run_until_complete(main())
loop.close()  # with a live transport and a listening server: must not hang or crash
tr.write(b"after close")
assert not tr.is_closing()
tr.close()  # data is buffered: close() waits for it and schedules nothing
assert tr.is_closing()
try:
    tr.abort()  # would schedule connection_lost: the closed loop refuses, once
except RuntimeError as exc:
    assert str(exc) == "Event loop is closed"
else:
    raise AssertionError("abort() after loop.close() did not raise")
tr.close()
tr.abort()
del tr, srv
gc.collect()
print("ok")
"""


@pytest.mark.parametrize("which", ["asyncio", "pyloop"])
def test_closing_the_loop_under_live_transports(which):
    import subprocess
    out = subprocess.run([sys.executable, "-c", f"LOOP = {which!r}\n" + LOOP_CLOSED_UNDER_TRANSPORTS],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_transports_only_libuv_holds_survive_gc(loop):
    # Server-side transports and protocols that nothing in Python refers to (libuv
    # alone holds them) must survive garbage collection with their sockets open.
    import gc

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clients = [await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port) for _ in range(20)]
        await asyncio.sleep(0.05)
        for _ in range(3):
            gc.collect()
        for i, (tr, proto) in enumerate(clients):
            tr.write(b"ping %d" % i)
        for i, (tr, proto) in enumerate(clients):
            await wait_for_data(proto, len(b"ping %d" % i), timeout=5)
            assert bytes(proto.data) == b"ping %d" % i
            tr.close()
            await proto.done
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_keyboard_interrupt_in_data_received_leaves_the_loop(loop):
    class Interrupting(Recorder):
        def data_received(self, data):
            raise KeyboardInterrupt

    async def setup():
        server, protos, port = await make_server(loop)
        tr, client = await loop.create_connection(lambda: Interrupting(loop), "127.0.0.1", port)
        while not protos:
            await asyncio.sleep(0.001)
        return server, tr, protos[0]

    server, tr, peer = loop.run_until_complete(setup())
    peer.transport.write(b"x")  # delivered during the next run
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(asyncio.sleep(5))
    tr.abort()
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.run_until_complete(asyncio.sleep(0.01))


REUSE_PORT_WORKER = r"""
import asyncio, os, sys
sys.path.insert(0, sys.argv[2])
from conftest import LOOP_FACTORIES

class Pid(asyncio.Protocol):
    def connection_made(self, tr):
        tr.write(str(os.getpid()).encode())
        tr.close()

async def main():
    await loop.create_server(Pid, "127.0.0.1", int(sys.argv[3]), reuse_port=True)
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # serve until the test closes our stdin

loop = LOOP_FACTORIES[sys.argv[1]]()
loop.run_until_complete(main())
"""


def test_one_process_per_core_with_reuse_port(loop_name):
    # How users outgrow one core: N processes, each with its own loop and a server on
    # the same port (SO_REUSEPORT); the kernel spreads new connections across them.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workers = [subprocess.Popen([sys.executable, "-c", REUSE_PORT_WORKER, loop_name, os.path.dirname(__file__),
                                 str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    try:
        for w in workers:
            assert w.stdout.readline().strip() == "ready"
        seen = set()
        for _ in range(200):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                seen.add(int(c.recv(100)))
            if len(seen) == 2:
                break
        assert seen == {w.pid for w in workers}
    finally:
        for w in workers:
            w.stdin.close()
            w.wait(timeout=30)
            w.stdout.close()


def test_accepted_extra_info_survives_the_peer(loop):
    # pyloop makes an accepted connection's socket/sockname/peername when first asked
    # for; asked after the peer has gone, they are still the accept-time values.
    lost = loop.create_future()

    class P(asyncio.Protocol):
        def connection_made(self, tr):
            self.tr = tr

        def connection_lost(self, exc):
            lost.set_result(self.tr)

    async def main():
        server = await loop.create_server(P, "127.0.0.1", 0)
        client = socket.create_connection(server.sockets[0].getsockname())
        client_addr, server_addr = client.getsockname(), client.getpeername()
        client.close()
        tr = await asyncio.wait_for(lost, 5)
        got = (tr.get_extra_info("peername"), tr.get_extra_info("sockname"),
               type(tr.get_extra_info("socket")).__name__, tr.get_extra_info("nope", default=7),
               tr.get_extra_info("nope"))
        server.close()
        await server.wait_closed()
        return got, client_addr, server_addr

    (peer, local, sock_type, dflt, none), client_addr, server_addr = loop.run_until_complete(main())
    assert (peer, local, sock_type, dflt, none) == (client_addr, server_addr, "TransportSocket", 7, None)


@pytest.mark.parametrize("how", ["create_connection", "create_unix_connection", "connect_accepted_socket"])
def test_a_users_socket_when_the_transport_cannot_be_made(loop, how):
    # The protocol factory raises: asyncio 3.14 closes the socket it was given
    # (gh-153133), 3.10-3.13 leave it open; pyloop follows each version.
    if how == "create_unix_connection":
        a, b = socket.socketpair()
    else:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            a = socket.create_connection(listener.getsockname())
            b, _ = listener.accept()

    def factory():
        raise ZeroDivisionError("no protocol")

    async def main():
        with pytest.raises(ZeroDivisionError):
            await getattr(loop, how)(factory, sock=a)

    try:
        loop.run_until_complete(main())
        assert (a.fileno() == -1) == (sys.version_info >= (3, 14))
    finally:
        a.close()
        b.close()


def test_cancelled_serve_forever_with_an_idle_client(loop):
    # Ctrl+C on asyncio.run(server.serve_forever()) with a keep-alive client connected:
    # asyncio 3.14 closes the clients and serve_forever() ends; 3.12-3.13 wait in
    # wait_closed() until the client leaves (3.10-3.11 do not wait for clients).
    async def main():
        server, protos, port = await make_server(loop)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        task = loop.create_task(server.serve_forever())
        while not protos:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.5)
        ended = task in done
        client_closed = None
        if sys.version_info >= (3, 14):  # before 3.14 the server leaves the client open
            client_closed = (await asyncio.wait_for(reader.read(), 5)) == b""
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(asyncio.wait([task]), 5)
        assert task.cancelled()
        return ended, client_closed

    ended, client_closed = loop.run_until_complete(main())
    if sys.version_info >= (3, 14):
        assert (ended, client_closed) == (True, True)
    elif sys.version_info >= (3, 12):
        assert (ended, client_closed) == (False, None)
    else:
        assert (ended, client_closed) == (True, None)


def test_a_refused_connection_leaves_no_garbage_cycles(loop, loop_name):
    # The error's traceback holds the frames that tried; asyncio (3.12+) clears the
    # lists and futures that hold the error, so nothing waits for the garbage collector.
    import gc

    def refused_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    async def attempt():
        try:
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", refused_port())
        except ConnectionRefusedError:
            pass

    loop.run_until_complete(attempt())  # warm up
    gc.collect()
    gc.disable()
    try:
        loop.run_until_complete(attempt())
        garbage = gc.collect()
    finally:
        gc.enable()
    if loop_name == "pyloop" or sys.version_info >= (3, 12):
        assert garbage == 0


_GET_BUFFER_FAILS = "Fatal error: protocol.get_buffer() call failed."
_RECV_INTO_FAILS = "Fatal read error on socket transport"
_BAD_BUFFERS = {
    # what get_buffer() returns: (it, the exception asyncio gives, its text, the report)
    "raises": (None, ZeroDivisionError, "no buffer", _GET_BUFFER_FAILS),
    "empty": (bytearray, RuntimeError, "get_buffer() returned an empty buffer", _GET_BUFFER_FAILS),
    "no-len": (lambda: 5, TypeError, "object of type 'int' has no len()", _GET_BUFFER_FAILS),
    # asyncio's len() takes these; its sock.recv_into(buf) does not: a read error
    "bytes": (lambda: b"x" * 100, TypeError,
              "recv_into() argument 1 must be read-write bytes-like object, not bytes", _RECV_INTO_FAILS),
    "read-only": (lambda: memoryview(b"x" * 100), TypeError,
                  "recv_into() argument 1 must be read-write bytes-like object, not memoryview", _RECV_INTO_FAILS),
    "strided": (lambda: memoryview(bytearray(200))[::2], TypeError,
                "recv_into() argument 1 must be read-write bytes-like object, not memoryview", _RECV_INTO_FAILS),
    "str": (lambda: "x" * 100, TypeError,
            "recv_into() argument 1 must be read-write bytes-like object, not str", _RECV_INTO_FAILS),
}


@pytest.mark.parametrize("family", ["tcp", "unix"])
@pytest.mark.parametrize("failure", list(_BAD_BUFFERS))
def test_buffered_protocol_whose_get_buffer_fails(loop, family, failure, tmp_path):
    # asyncio reports the error to the exception handler, calls connection_lost(exc) and
    # goes on (this crashed pyloop: reading was stopped inside libuv's allocation callback).
    # Which report and which exception depends on where asyncio's reader fails: in
    # get_buffer(-1) or its len(), or in recv_into() (pyloop said BufferError there).
    make, expected, text, message = _BAD_BUFFERS[failure]
    hints = []

    class Broken(asyncio.BufferedProtocol):
        def __init__(self):
            self.lost = loop.create_future()

        def get_buffer(self, sizehint):
            hints.append(sizehint)
            if make is None:
                raise ZeroDivisionError("no buffer")
            return make()

        def buffer_updated(self, nbytes):
            raise AssertionError("no buffer, no data")

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    protos = []

    def factory():
        protos.append(Broken())
        return protos[-1]

    async def main():
        if family == "tcp":
            server = await loop.create_server(factory, "127.0.0.1", 0)
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        else:
            path = str(tmp_path / "s")
            server = await loop.create_unix_server(factory, path)
            reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"data")
        for _ in range(1000):
            if protos:
                break
            await asyncio.sleep(0.005)
        exc = await asyncio.wait_for(protos[0].lost, 10)
        writer.close()
        server.close()
        await server.wait_closed()
        return exc

    exc = loop.run_until_complete(main())
    assert type(exc) is expected
    assert str(exc) == text
    assert hints == [-1]  # asyncio's sizehint for a socket: "any size"
    assert [(c["message"], c["exception"]) for c in loop.test_errors] == [(message, exc)]
    loop.test_errors.clear()


@pytest.mark.parametrize("kind", ["tcp", "unix", "pipe"])
def test_set_protocol_hands_the_stream_over(loop, kind, tmp_path):
    # uvicorn's WebSocket upgrade: the first protocol reads a request, then hands the
    # transport to another with set_protocol(); what comes next reaches the new one only.
    first_got, second_got = bytearray(), bytearray()
    done = loop.create_future()

    class Second(asyncio.Protocol):
        def data_received(self, data):
            second_got.extend(data)
            if second_got.endswith(b"END") and not done.done():
                done.set_result(None)

    class First(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            first_got.extend(data)
            if b"UPGRADE\n" in first_got:
                rest = bytes(first_got[first_got.index(b"UPGRADE\n") + 8:])
                del first_got[first_got.index(b"UPGRADE\n") + 8:]
                second = Second()
                self.transport.set_protocol(second)
                assert self.transport.get_protocol() is second
                if rest:
                    second.data_received(rest)

    async def main():
        if kind == "pipe":
            rfd, wfd = os.pipe()
            tr, _ = await loop.connect_read_pipe(First, open(rfd, "rb", buffering=0))
            w = open(wfd, "wb", buffering=0)
            w.write(b"UPGRADE\n")
            await asyncio.sleep(0.05)
            w.write(b"frame 1;frame 2;END")
            await asyncio.wait_for(done, 10)
            w.close()
            tr.close()
            return
        if kind == "tcp":
            server = await loop.create_server(First, "127.0.0.1", 0)
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        else:
            path = str(tmp_path / "s")
            server = await loop.create_unix_server(First, path)
            reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"UPGRADE\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"frame 1;frame 2;END")
        await asyncio.wait_for(done, 10)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    assert bytes(first_got) == b"UPGRADE\n"
    assert bytes(second_got) == b"frame 1;frame 2;END"


def test_ipv6_loopback_server_connection_and_sock_connect(loop):
    # Over ::1: a server, create_connection by address and by name-like literal with a
    # scope-free 4-tuple, and sock_connect; extra info carries IPv6 4-tuples.
    protos = []

    def factory():
        protos.append(Recorder(loop))
        return protos[-1]

    async def main():
        server = await loop.create_server(factory, "::1", 0)
        host, port = server.sockets[0].getsockname()[:2]
        tr, client = await loop.create_connection(lambda: Recorder(loop), "::1", port)
        peer = tr.get_extra_info("peername")
        tr.write(b"over six")
        tr.close()
        await client.done
        sock = socket.socket(socket.AF_INET6)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("::1", port, 0, 0))
        await loop.sock_sendall(sock, b"and raw")
        sock_peer = sock.getpeername()
        sock.close()
        for p in protos:
            await asyncio.wait_for(p.done, 10)
        server.close()
        await server.wait_closed()
        return host, peer, sock_peer, port, [bytes(p.data) for p in protos]

    host, peer, sock_peer, port, data = loop.run_until_complete(main())
    assert host == "::1" and peer == ("::1", port, 0, 0) and sock_peer == ("::1", port, 0, 0)
    assert data == [b"over six", b"and raw"]


def _refusing(family):
    # A bound socket that does not listen: connecting to it is refused (RST) at once.
    s = socket.socket(family)
    s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    return s


def _resolving_to(loop, infos):
    # The loop's own getaddrinfo answers with `infos` for the name "multi.test"; both loops'
    # create_connection look names up through it.
    real = loop.getaddrinfo

    async def getaddrinfo(host, port, **kw):
        if host == "multi.test":
            return infos
        return await real(host, port, **kw)
    loop.getaddrinfo = getaddrinfo


@pytest.mark.parametrize("how", [{}, {"interleave": 1}, {"interleave": 2}, {"happy_eyeballs_delay": 0.02}])
def test_several_addresses_are_tried_in_asyncios_order(loop, how):
    # Two IPv6 then two IPv4 addresses, all refusing: the error names them in the order
    # tried. interleave=1 (and happy eyeballs, which implies it) alternates the families.
    socks = [_refusing(socket.AF_INET6), _refusing(socket.AF_INET6), _refusing(socket.AF_INET),
             _refusing(socket.AF_INET)]
    infos = [(s.family, socket.SOCK_STREAM, 6, "", s.getsockname()) for s in socks]
    _resolving_to(loop, infos)
    try:
        with pytest.raises(OSError) as info:
            loop.run_until_complete(asyncio.wait_for(
                loop.create_connection(asyncio.Protocol, "multi.test", 80, **how), 10))
    finally:
        for s in socks:
            s.close()
    order = [0, 2, 1, 3] if how.get("interleave", 1 if how else 0) == 1 else [0, 1, 2, 3]
    parts = [f"[Errno 111] Connect call failed {infos[i][4]!r}" for i in order]
    assert type(info.value) is OSError
    assert str(info.value) == "Multiple exceptions: " + ", ".join(parts)


def test_happy_eyeballs_moves_on_from_an_address_that_does_not_answer(loop):
    # The first address accepts no connection (a full backlog: its SYNs are dropped), the
    # second does: happy eyeballs connects to the second after its delay and cancels the
    # first attempt; the result is the second's transport.
    stalled = socket.socket()
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(0)
    fillers = []

    async def main():
        server, protos, port = await make_server(loop)
        for _ in range(2):  # fill the stalled listener's queue
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(stalled.getsockname())
            except BlockingIOError:
                pass
            fillers.append(f)
        await asyncio.sleep(0.1)
        _resolving_to(loop, [(socket.AF_INET, socket.SOCK_STREAM, 6, "", stalled.getsockname()),
                             (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))])
        t0 = loop.time()
        tr, client = await asyncio.wait_for(
            loop.create_connection(lambda: Recorder(loop), "multi.test", 80, happy_eyeballs_delay=0.2), 10)
        took = loop.time() - t0
        peer = tr.get_extra_info("peername")
        tr.close()
        await client.done
        server.close()
        await server.wait_closed()
        return peer, port, took

    try:
        peer, port, took = loop.run_until_complete(main())
    finally:
        for f in fillers:
            f.close()
        stalled.close()
    assert peer == ("127.0.0.1", port)
    assert 0.15 < took < 5


def _nodelay(sock):
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


@pytest.mark.parametrize("how", ["client", "client-sock-proto-0", "accepted", "connect_accepted_socket"])
def test_tcp_nodelay_on_every_tcp_stream(loop, loop_name, how):
    # asyncio sets TCP_NODELAY on a TCP transport's socket when its proto is IPPROTO_TCP
    # (what getaddrinfo gives: create_connection(host, port), create_server's sockets and
    # what they accept); pyloop on every TCP transport, also one over socket.socket()'s
    # proto 0 (docs/api.md). Read back from the kernel.
    async def main():
        server, protos, port = await make_server(loop)
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            if how == "client":
                tr, _ = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
                sock = tr.get_extra_info("socket")
            elif how == "client-sock-proto-0":
                raw = socket.socket()
                raw.connect(("127.0.0.1", port))
                assert raw.proto == 0
                tr, _ = await loop.create_connection(lambda: Recorder(loop), sock=raw)
                sock = tr.get_extra_info("socket")
            elif how == "accepted":
                tr, _ = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
                while not protos:
                    await asyncio.sleep(0.001)
                sock = protos[0].transport.get_extra_info("socket")
            else:
                client = socket.create_connection(listener.getsockname())
                accepted, _ = listener.accept()
                assert accepted.proto == 0
                tr, _ = await loop.connect_accepted_socket(lambda: Recorder(loop), accepted)
                sock = tr.get_extra_info("socket")
            nodelay = _nodelay(sock)
            tr.close()
            if how == "connect_accepted_socket":
                client.close()
            else:
                while not protos:
                    await asyncio.sleep(0.001)
                await asyncio.wait_for(protos[0].done, 10)  # the server's end saw the close
        server.close()
        await server.wait_closed()
        return nodelay

    nodelay = loop.run_until_complete(main())
    proto_0 = how in ("client-sock-proto-0", "connect_accepted_socket")
    assert nodelay is (loop_name == "pyloop" or not proto_0)


_SIGPIPE_CHILD = r"""
import asyncio, signal, socket, sys
import pyloop
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as a program that restores it does

async def main(method, kind):
    loop = asyncio.get_running_loop()
    if kind == "tcp":
        with socket.create_server(("127.0.0.1", 0)) as listener:
            mine = socket.create_connection(listener.getsockname())
            theirs, _ = listener.accept()
        address = theirs.getsockname()
    else:
        mine, theirs = socket.socketpair()
        address = None
    mine.setblocking(False)
    theirs.close()
    try:
        for _ in range(100):  # the first send may still be taken; then EPIPE
            if method == "sock_sendall":
                await loop.sock_sendall(mine, b"x" * 1000)
            else:
                await loop.sock_sendto(mine, b"x" * 1000, address)
            await asyncio.sleep(0.001)
        print("no error")
    except OSError as exc:
        print(type(exc).__name__)

loop = pyloop.new_event_loop() if sys.argv[1] == "pyloop" else asyncio.SelectorEventLoop()
loop.run_until_complete(main(sys.argv[2], sys.argv[3]))
"""


@pytest.mark.parametrize("method,kind", [("sock_sendall", "tcp"), ("sock_sendall", "unix"), ("sock_sendto", "tcp")])
def test_sock_send_to_a_gone_peer_is_broken_pipe_never_sigpipe(loop_name, method, kind):
    # In a child interpreter with SIGPIPE at its default action: pyloop sends with
    # MSG_NOSIGNAL, so the call raises BrokenPipeError; asyncio's sock.send() lets the
    # kernel's SIGPIPE end the process (docs/api.md).
    if loop_name == "asyncio" and method == "sock_sendto" and sys.version_info < (3, 11):
        pytest.skip("asyncio has sock_sendto from 3.11 (pyloop on every version)")
    out = subprocess.run([sys.executable, "-c", _SIGPIPE_CHILD, loop_name, method, kind],
                         capture_output=True, text=True, timeout=60)
    if loop_name == "pyloop":
        assert (out.returncode, out.stdout) == (0, "BrokenPipeError\n"), out.stderr
    else:
        assert out.returncode == -signal.SIGPIPE, (out.returncode, out.stdout, out.stderr)
