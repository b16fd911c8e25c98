"""Write flow control at its exact thresholds, on both loops: pause_writing() when the
buffer goes past the high-water mark (not when it reaches it; TLS: when it reaches it),
resume_writing() once it drains to the low-water mark (not only when it is empty; a
pipe: only then), set_write_buffer_limits()
pausing at once, and get_write_buffer_size() at each call what asyncio says. For TCP,
Unix sockets, TLS, write pipes and datagrams. Every drain() and aiohttp's and uvicorn's
backpressure rest on these.

Each case makes the kernel refuse more (a peer that does not read), so that what the
transport buffers afterwards is exactly what the test writes: X is what it holds then,
and the thresholds are set relative to X.
"""

import asyncio
import os
import socket
import ssl
import sys

import pytest

from test_tls import ca, client_ctx, server_ctx  # noqa: F401 (fixtures)

from conftest import needs_module

trustme = needs_module("trustme")


class Flow(asyncio.BaseProtocol):
    """Records pause_writing/resume_writing with the transport's write buffer size at the
    call."""

    def __init__(self, loop):
        self.events = []
        self.transport = None
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        pass

    def datagram_received(self, data, addr):
        pass

    def error_received(self, exc):
        self.events.append(("error", exc))

    def pause_writing(self):
        self.events.append(("pause", self.transport.get_write_buffer_size()))

    def resume_writing(self):
        self.events.append(("resume", self.transport.get_write_buffer_size()))

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


KERNEL_BUFFER = 65536  # fixed socket buffers: no autotuning that takes more as the peer reads


class StreamPeer:
    """The far end of a stream: reads nothing until asked. read(limit) takes up to limit
    bytes of what waits; `received` counts what the application was sent."""

    def __init__(self, sock):
        self.sock = sock
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, KERNEL_BUFFER)
        self.received = 0

    def recv(self, n):
        return self.sock.recv(n)

    def take(self, data):
        self.received += len(data)

    def read(self, limit):
        got = 0
        while got < limit:
            try:
                data = self.recv(min(65536, limit - got))
            except BlockingIOError:
                break
            if not data:
                break
            got += len(data)
            self.take(data)
        return got

    def close(self):
        self.sock.close()


class PipePeer(StreamPeer):
    def __init__(self, fd):
        os.set_blocking(fd, False)
        self.fd = fd
        self.received = 0

    def recv(self, n):
        return os.read(self.fd, n)

    def close(self):
        os.close(self.fd)


class TlsPeer(StreamPeer):
    """A TLS server end over memory BIOs: reads (and decrypts) only when asked."""

    def __init__(self, sock, server_ctx):
        super().__init__(sock)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = server_ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)

    async def handshake(self):
        loop = asyncio.get_running_loop()
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if self.outgoing.pending:
                    await loop.sock_sendall(self.sock, self.outgoing.read())
                data = await loop.sock_recv(self.sock, 65536)
                assert data, "the client went away during the handshake"
                self.incoming.write(data)
        if self.outgoing.pending:
            await loop.sock_sendall(self.sock, self.outgoing.read())

    def take(self, data):
        self.incoming.write(data)
        while True:
            try:
                self.received += len(self.tls.read(1 << 20))
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break


async def tcp_pair(loop, family, tmp_path, server_ctx, client_ctx):
    if family == "unix":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(tmp_path / "s"))
    else:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    with listener:
        accepted = loop.create_task(loop.sock_accept(listener))
        if family == "unix":
            tr, proto = await loop.create_unix_connection(lambda: Flow(loop), str(tmp_path / "s"))
        elif family == "tls":
            connecting = loop.create_task(loop.create_connection(
                lambda: Flow(loop), *listener.getsockname(), ssl=client_ctx, server_hostname="localhost"))
            peer = TlsPeer((await accepted)[0], server_ctx)
            await peer.handshake()
            tr, proto = await connecting
            tr.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_BUFFER)
            return tr, proto, peer
        else:
            tr, proto = await loop.create_connection(lambda: Flow(loop), *listener.getsockname())
        sock, _ = await accepted
    tr.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_BUFFER)
    return tr, proto, StreamPeer(sock)


async def pipe_pair(loop):
    rfd, wfd = os.pipe()
    tr, proto = await loop.connect_write_pipe(lambda: Flow(loop), os.fdopen(wfd, "wb", buffering=0))
    return tr, proto, PipePeer(rfd)


async def settle(tr):
    # Until the kernel takes nothing more: the buffer size stays the same a while.
    last = -1
    for _ in range(50):
        await asyncio.sleep(0.01)
        size = tr.get_write_buffer_size()
        if size == last:
            return size
        last = size
    raise AssertionError("the write buffer never settled")


@pytest.mark.parametrize("kind", ["tcp", "unix", "tls", "pipe"])
def test_stream_write_flow_control_at_its_thresholds(loop, kind, tmp_path, server_ctx, client_ctx):
    if kind == "tls" and sys.version_info < (3, 11):
        pytest.skip("3.10's TLS is asyncio's older SSLProtocol on both loops, with other thresholds")

    async def main():
        if kind == "pipe":
            tr, proto, peer = await pipe_pair(loop)
        else:
            tr, proto, peer = await tcp_pair(loop, kind, tmp_path, server_ctx, client_ctx)
        written = 0

        def write(data):
            nonlocal written
            tr.write(data)
            written += len(data)

        # TLS counts what waits as records: 22 bytes more per write (TLS 1.3: header,
        # content type, tag), as asyncio's SSLProtocol counts its outgoing BIO.
        overhead = 22 if kind == "tls" else 0
        # Fill the kernel's buffers: from now on everything written stays in the transport.
        tr.set_write_buffer_limits(high=1 << 30)
        if kind == "tls":
            # What TLS writes goes down to the socket transport, which sends while the
            # kernel takes it and, whenever it drains, lets TLS hand down all it holds.
            # Write until the kernel is full and what TLS holds stays there (on a slow or
            # emulated machine the kernel takes a while to fill).
            for _ in range(200):
                write(b"f" * 65536)
                if await settle(tr) > 0:
                    await asyncio.sleep(0.1)
                    if tr.get_write_buffer_size() > 0:
                        break
            write(b"f" * (2 << 20))
        else:
            write(b"f" * (3 << 20))  # one write, more than the kernel takes: the rest waits
        x = await settle(tr)
        assert x >= 2 << 20 and proto.events == []

        steps = []
        tr.set_write_buffer_limits(high=x + 1000 + overhead, low=x + 500)
        assert tr.get_write_buffer_limits() == (x + 500, x + 1000 + overhead)
        steps.append(list(proto.events))  # x <= high: nothing
        write(b"a" * 1000)
        steps.append((tr.get_write_buffer_size() - x, list(proto.events)))  # at high: nothing
        write(b"b")
        steps.append((tr.get_write_buffer_size() - x, list(proto.events)))  # past it: paused
        write(b"c" * 99)
        tr.set_write_buffer_limits(high=x + 2000, low=x + 500)  # already paused: nothing more
        steps.append((tr.get_write_buffer_size() - x, list(proto.events)))

        # The peer reads a little at a time: resume_writing() comes once the buffer is at
        # or below low, with some still buffered (not when it is empty).
        for _ in range(2000):
            if len(proto.events) > 1:
                break
            peer.read(16384)
            await asyncio.sleep(0.002)
        resumed = proto.events[1] if len(proto.events) > 1 else None

        # Lowering high under what is buffered pauses at once; draining resumes at low.
        still = tr.get_write_buffer_size()
        if still:
            tr.set_write_buffer_limits(high=still - 1, low=0)
            lowered = list(proto.events[2:])
        else:
            lowered = None
        for _ in range(3000):
            if peer.read(1 << 20) == 0 and tr.get_write_buffer_size() == 0 and len(proto.events) != 3:
                break
            await asyncio.sleep(0.001)
        final = list(proto.events[2:])
        for _ in range(2000):
            if peer.read(1 << 20) == 0 and peer.received == written:
                break
            await asyncio.sleep(0.001)
        if kind == "tls":
            tr.abort()  # everything arrived; the peer here would not answer a close_notify
        else:
            tr.close()
        await asyncio.wait_for(proto.lost, 10)
        peer.close()
        return x, steps, resumed, still, lowered, final, written, peer.received, overhead

    x, steps, resumed, still, lowered, final, written, received, o = loop.run_until_complete(
        asyncio.wait_for(main(), 60))
    if kind == "tls":
        # asyncio's SSLProtocol pauses the application once its buffer *reaches* high
        # (size >= high), unlike the socket and pipe transports (size > high)
        paused = [("pause", x + 1000 + o)]
        assert steps == [[], (1000 + o, paused), (1001 + 2 * o, paused), (1100 + 3 * o, paused)]
    else:
        paused = [("pause", x + 1001)]
        assert steps == [[], (1000, []), (1001, paused), (1100, paused)]
    assert resumed is not None and resumed[0] == "resume"
    if kind in ("tcp", "unix"):
        # At the low-water mark, with the rest still buffered: the first drain that got
        # there (the peer reads 16 KiB at a time from a 64 KiB socket buffer).
        assert x + 500 - 8 * KERNEL_BUFFER < resumed[1] <= x + 500
    else:
        # A pipe resumes only once it has written everything (asyncio's pipe transport);
        # TLS hands its whole backlog down as soon as the socket below resumes.
        assert resumed[1] == 0
    if lowered is not None:
        assert lowered == [("pause", still)]
        assert final == [("pause", still), ("resume", 0)]
    assert received == written


def test_datagram_write_flow_control_at_its_thresholds(loop, tmp_path):
    # A Unix datagram receiver that does not read: its queue fills, the sender's sendto()
    # says EAGAIN, and what follows waits in the transport. asyncio counts each waiting
    # datagram's length, plus 8 header bytes from 3.13 (3.13 takes only the length back
    # when it is sent; 3.14 both: docs/api.md).
    header = 8 if sys.version_info >= (3, 13) else 0

    async def main():
        path = str(tmp_path / "rx")
        rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        rx.bind(path)
        rx.setblocking(False)
        tr, proto = await loop.create_datagram_endpoint(lambda: Flow(loop), remote_addr=path,
                                                        family=socket.AF_UNIX)
        defaults = tr.get_write_buffer_limits()
        tr.set_write_buffer_limits(high=1 << 30)
        sent = 0
        while tr.get_write_buffer_size() == 0:
            tr.sendto(b"f" * 100)
            sent += 1
        for _ in range(20):
            tr.sendto(b"f" * 100)
            sent += 1
        x = tr.get_write_buffer_size()
        steps = [(x, list(proto.events))]
        tr.set_write_buffer_limits(high=x + 1000 + header, low=x + 500)
        tr.sendto(b"a" * 1000)  # at high: nothing
        steps.append((tr.get_write_buffer_size() - x, list(proto.events)))
        tr.sendto(b"b")  # past it
        steps.append((tr.get_write_buffer_size() - x, list(proto.events)))
        sent += 2
        got = 0
        for _ in range(3000):
            try:
                while True:
                    rx.recv(70000)
                    got += 1
            except BlockingIOError:
                pass
            if got == sent and len(proto.events) > 1:
                break
            await asyncio.sleep(0.001)
        tr.close()
        await proto.lost
        rx.close()
        return defaults, x, steps, proto.events, got, sent

    defaults, x, steps, events, got, sent = loop.run_until_complete(asyncio.wait_for(main(), 60))
    assert defaults == (16384, 65536)
    assert steps == [
        (x, []),
        (1000 + header, []),
        (1001 + 2 * header, [("pause", x + 1001 + 2 * header)]),
    ]
    assert x == 21 * (100 + header) or x > 21 * 100  # what the receiver's queue did not take
    assert events[0] == ("pause", x + 1001 + 2 * header)
    assert events[1][0] == "resume" and events[1][1] <= x + 500
    assert got == sent
