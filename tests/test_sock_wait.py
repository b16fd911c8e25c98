"""sock_recv, sock_recv_into and sock_sendall waiting for their socket (pyloop's are
C++ with a one-shot epoll registration kept between waits), on both loops."""

import asyncio
import gc
import os
import socket
import sys

import pytest

import pyloop
from conftest import LOOP_FACTORIES, missing


def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def run(loop, coro, *socks, timeout=10):
    """Runs coro on loop (with a timeout), then closes the sockets."""
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        for s in socks:
            s.close()


async def drain(sock, n):
    """Reads n bytes from a non-blocking socket without the loop's help."""
    got = bytearray()
    while len(got) < n:
        try:
            got += sock.recv(1 << 20)
        except BlockingIOError:
            await asyncio.sleep(0.001)
    return got


def fill(sock):
    """Fill the socket's send buffer; return how much it took."""
    total = 0
    chunk = b"f" * 65536
    while True:
        try:
            total += sock.send(chunk)
        except BlockingIOError:
            return total


def test_each_operation_waits_then_completes(loop):
    a, b = pair()

    async def main():
        # recv
        t = loop.create_task(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        assert not t.done()
        b.send(b"hello")
        assert await t == b"hello"
        # recv_into
        buf = bytearray(10)
        t = loop.create_task(loop.sock_recv_into(a, buf))
        await asyncio.sleep(0.01)
        assert not t.done()
        b.send(b"abc")
        assert await t == 3 and buf[:3] == b"abc"
        buf.extend(b"resizable")  # the buffer is no longer held
        # sendall past a full buffer
        sent = fill(a)
        data = os.urandom(300_000)
        t = loop.create_task(loop.sock_sendall(a, bytearray(data)))
        await asyncio.sleep(0.01)
        assert not t.done()
        got = await drain(b, sent + len(data))
        assert await t is None
        assert bytes(got[sent:]) == data

    run(loop, main(), a, b)


def test_many_waits_in_a_row_on_one_socket(loop):
    """Each wait re-arms the same registration; nothing is lost or repeated."""
    a, b = pair()

    async def peer():
        for i in range(300):
            await asyncio.sleep(0)
            b.send(i.to_bytes(2, "big"))
            while True:
                try:
                    assert b.recv(2) == i.to_bytes(2, "big")
                    break
                except BlockingIOError:
                    await asyncio.sleep(0)

    async def main():
        p = loop.create_task(peer())
        for i in range(300):
            got = await loop.sock_recv(a, 2)
            assert got == i.to_bytes(2, "big")
            await loop.sock_sendall(a, got)
        await p

    run(loop, main(), a, b, timeout=20)


def test_reader_and_writer_wait_on_one_socket_at_once(loop):
    a, b = pair()

    async def main():
        sent = fill(a)
        data = os.urandom(200_000)
        w = loop.create_task(loop.sock_sendall(a, data))
        r = loop.create_task(loop.sock_recv(a, 10))
        await asyncio.sleep(0.01)
        assert not w.done() and not r.done()
        got = await drain(b, sent + len(data))
        await w
        assert not r.done()  # the writer's wake-ups did not complete the reader
        b.send(b"ping")
        assert await r == b"ping"
        assert bytes(got[sent:]) == data

    run(loop, main(), a, b)


@pytest.mark.parametrize("op", ["recv", "recv_into", "sendall"])
def test_cancelled_wait_leaves_the_data_and_the_buffer(loop, op):
    a, b = pair()
    buf = bytearray(16)

    async def main():
        if op == "sendall":
            sent = fill(a)
            t = loop.create_task(loop.sock_sendall(a, buf))
        else:
            t = loop.create_task(loop.sock_recv(a, 16) if op == "recv" else loop.sock_recv_into(a, buf))
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        buf.extend(b"x")  # not exported any more
        if op == "sendall":
            got = 0
            while got < sent:
                try:
                    got += len(b.recv(1 << 20))
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            await asyncio.sleep(0.02)  # the cancelled send sends nothing more
            with pytest.raises(BlockingIOError):
                b.recv(1)
        else:
            b.send(b"kept")
            await asyncio.sleep(0.02)  # the cancelled wait takes nothing
            assert await loop.sock_recv(a, 16) == b"kept"

    run(loop, main(), a, b)


def test_fd_numbers_reused_after_waits(loop):
    """A socket that waited is closed and its number reused: by another sock_* wait,
    and by add_reader; each sees its own socket's readiness."""

    async def main():
        for i in range(50):
            a, b = pair()
            t = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            b.send(b"%d" % i)
            assert await t == b"%d" % i
            a.close()
            b.close()
        a, b = pair()
        got = loop.create_future()
        loop.add_reader(a.fileno(), lambda: got.done() or got.set_result(a.recv(10)))
        b.send(b"reader")
        assert await asyncio.wait_for(got, 5) == b"reader"
        loop.remove_reader(a.fileno())
        # and a sock_* wait again on the same fd after the reader
        t = loop.create_task(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        b.send(b"again")
        assert await t == b"again"
        a.close()
        b.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_add_reader_replaces_a_waiting_sock_recv(loop):
    """As in asyncio: the reader takes the fd over; the sock_recv waits on (cancel it)."""
    a, b = pair()

    async def main():
        t = loop.create_task(loop.sock_recv(a, 10))
        await asyncio.sleep(0.01)
        got = loop.create_future()
        loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(10)))
        b.send(b"x")
        assert await asyncio.wait_for(got, 5) == b"x"
        assert not t.done()
        loop.remove_reader(a)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    run(loop, main(), a, b)


@pytest.mark.parametrize("name", list(LOOP_FACTORIES))
def test_loop_closed_while_operations_wait(name):
    """Waits still pending when the loop closes are dropped without a crash, and the
    buffers they held are let go."""
    loop = LOOP_FACTORIES[name]()
    loop.set_exception_handler(lambda lp, ctx: None)  # "Task was destroyed but it is pending!"
    a, b = pair()
    c, d = pair()
    buf = bytearray(8)
    data = bytearray(b"z" * 100)

    async def start():
        fill(a)
        return [loop.create_task(loop.sock_recv(a, 1)), loop.create_task(loop.sock_recv_into(c, buf)),
                loop.create_task(loop.sock_sendall(a, data))]

    tasks = loop.run_until_complete(start())
    loop.run_until_complete(asyncio.sleep(0.01))
    assert not any(t.done() for t in tasks)
    loop.close()
    del tasks
    gc.collect()
    buf.extend(b"x")
    data.extend(b"x")
    for s in (a, b, c, d):
        s.close()


def test_peer_reset_while_sendall_waits(loop):
    a, b = pair()

    async def main():
        fill(a)
        t = loop.create_task(loop.sock_sendall(a, b"y" * 1_000_000))
        await asyncio.sleep(0.01)
        b.close()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            await asyncio.wait_for(t, 5)

    try:
        loop.run_until_complete(main())
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("size", [0, 1, 65536, 300_000])
def test_recv_sizes(loop, size):
    a, b = pair()
    data = os.urandom(min(size, 100_000))

    async def main():
        if size == 0:
            return await loop.sock_recv(a, 0)
        b.sendall(data)
        got = bytearray()
        while len(got) < len(data):
            got += await loop.sock_recv(a, size)
        return bytes(got)

    try:
        got = loop.run_until_complete(asyncio.wait_for(main(), 10))
        assert got == (b"" if size == 0 else data)
    finally:
        a.close()
        b.close()


def needs_recvfrom(loop):
    if sys.version_info < (3, 11) and not isinstance(loop, pyloop.Loop):
        pytest.skip("asyncio has sock_recvfrom/sock_sendto from 3.11 (pyloop on every version)")


def udp(family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.setblocking(False)
    return s


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_datagram_operations_wait_then_complete(loop, family, host):
    needs_recvfrom(loop)
    try:
        a, b = udp(family, host), udp(family, host)
    except OSError:
        missing("no IPv6 here")

    async def main():
        t = loop.create_task(loop.sock_recvfrom(a, 100))
        await asyncio.sleep(0.01)
        assert not t.done()
        assert await loop.sock_sendto(b, b"one", a.getsockname()) == 3
        assert await t == (b"one", b.getsockname())
        buf = bytearray(10)
        t = loop.create_task(loop.sock_recvfrom_into(a, buf, 4))
        await asyncio.sleep(0.01)
        assert not t.done()
        b.sendto(b"truncated", a.getsockname())
        assert await t == (4, b.getsockname()) and buf[:4] == b"trun"
        buf.extend(b"resizable")
        # an address given by name goes through the socket module's resolution
        name = "localhost" if family == socket.AF_INET else "::1"
        await loop.sock_sendto(b, b"named", (name, a.getsockname()[1]))
        assert (await loop.sock_recvfrom(a, 100))[0] == b"named"
        # a cancelled wait takes nothing
        t = loop.create_task(loop.sock_recvfrom(a, 100))
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        b.sendto(b"kept", a.getsockname())
        await asyncio.sleep(0.01)
        assert await loop.sock_recvfrom(a, 100) == (b"kept", b.getsockname())

    run(loop, main(), a, b)


def test_datagram_operation_errors_match(loop):
    needs_recvfrom(loop)
    a, b = udp(), udp()

    async def main():
        out = []
        for coro in (lambda: loop.sock_recvfrom(a, -1), lambda: loop.sock_recvfrom(a, "x"),
                     lambda: loop.sock_recvfrom_into(a, bytearray(2), 5), lambda: loop.sock_recvfrom_into(a, b"ro"),
                     lambda: loop.sock_sendto(b, "text", a.getsockname()),
                     lambda: loop.sock_sendto(b, b"x", ("127.0.0.1", 70000)),
                     lambda: loop.sock_sendto(b, b"x", "not an address"),
                     lambda: loop.sock_sendto(b, b"x", ("no.such.host.invalid", 9))):
            try:
                await asyncio.wait_for(coro(), 10)
                out.append(None)
            except Exception as exc:
                out.append(type(exc).__name__ if not isinstance(exc, socket.gaierror) else "gaierror")
        return out

    try:
        assert loop.run_until_complete(main()) == [
            "ValueError", "TypeError", "ValueError", "TypeError", "TypeError", "OverflowError", "TypeError",
            "gaierror"]
    finally:
        a.close()
        b.close()


def test_unix_datagram_sock_operations(loop, tmp_path):
    needs_recvfrom(loop)
    """Not AF_INET: the socket module makes the addresses (a path; '' for an unbound peer)."""
    a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.bind(str(tmp_path / "a"))
    a.setblocking(False)
    named = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    named.bind(str(tmp_path / "b"))
    unnamed = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unnamed.setblocking(False)

    async def main():
        t = loop.create_task(loop.sock_recvfrom(a, 100))
        await asyncio.sleep(0.01)
        named.sendto(b"n", str(tmp_path / "a"))
        got = [await t]
        await loop.sock_sendto(unnamed, b"u", str(tmp_path / "a"))
        got.append(await loop.sock_recvfrom(a, 100))
        return got

    try:
        got = loop.run_until_complete(asyncio.wait_for(main(), 10))
        assert got[0] == (b"n", str(tmp_path / "b"))
        assert got[1][0] == b"u" and got[1][1] in ("", None)
    finally:
        for s in (a, named, unnamed):
            s.close()


def test_socket_closed_while_waiting_then_number_reused(loop):
    """A sock_recv waiting on a socket the user closes must never read from the socket
    that reuses its number, even when that one is then watched in the other direction."""
    async def main():
        a, b = pair()
        t = loop.create_task(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        a.close()
        c, d = pair()  # c likely takes a's number
        fill(c)
        w = loop.create_task(loop.sock_sendall(c, b"w" * 200_000))  # watches c for writing
        d.send(b"for c only")
        await asyncio.sleep(0.05)
        stolen = t.done() and not t.cancelled() and t.exception() is None and t.result() == b"for c only"
        t.cancel()
        try:
            await t
        except (asyncio.CancelledError, OSError):
            pass
        w.cancel()
        try:
            await w
        except (asyncio.CancelledError, OSError):
            pass
        got = c.recv(100)
        for s in (b, c, d):
            s.close()
        return stolen, got

    stolen, got = loop.run_until_complete(asyncio.wait_for(main(), 10))
    assert not stolen
    assert got == b"for c only"
