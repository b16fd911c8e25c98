"""sock_* methods over real loopback sockets, on both loops."""

import asyncio
import hashlib
import os
import errno
import socket
import sys

import pytest

import pyloop

needs_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio has it from 3.11")


def nb(sock):
    sock.setblocking(False)
    return sock


@pytest.fixture
def listener():
    srv = nb(socket.socket())
    srv.bind(("127.0.0.1", 0))
    srv.listen(100)
    yield srv
    srv.close()


def test_connect_accept_send_recv(loop, listener):
    async def main():
        client = nb(socket.socket())
        try:
            connect = loop.create_task(loop.sock_connect(client, listener.getsockname()))
            conn, addr = await loop.sock_accept(listener)
            await connect
            with conn:
                assert conn.gettimeout() == 0
                assert addr == client.getsockname()
                await loop.sock_sendall(client, b"hello world")
                got = b""
                while len(got) < 11:
                    got += await loop.sock_recv(conn, 100)
                buf = bytearray(5)
                await loop.sock_sendall(conn, b"12345")
                n = 0
                while n < 5:
                    n += await loop.sock_recv_into(client, memoryview(buf)[n:])
                return got, bytes(buf)
        finally:
            client.close()

    assert loop.run_until_complete(main()) == (b"hello world", b"12345")


def test_connect_by_name(loop, listener):
    async def main():
        client = nb(socket.socket())
        with client:
            port = listener.getsockname()[1]
            connect = loop.create_task(loop.sock_connect(client, ("localhost", port)))
            conn, _ = await loop.sock_accept(listener)
            conn.close()
            await connect
            return client.getpeername()

    assert loop.run_until_complete(main()) == listener.getsockname()


def test_connect_refused(loop):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    async def main():
        client = nb(socket.socket())
        with client:
            with pytest.raises(ConnectionRefusedError):
                await loop.sock_connect(client, ("127.0.0.1", port))

    loop.run_until_complete(main())


def test_sendall_large_while_peer_reads_slowly(loop):
    a, b = socket.socketpair()
    nb(a), nb(b)
    data = os.urandom(4 * 1024 * 1024)

    async def reader():
        got = bytearray()
        while len(got) < len(data):
            chunk = await loop.sock_recv(b, 65536)
            assert chunk
            got += chunk
            if len(got) % 7 == 0:
                await asyncio.sleep(0)
        return bytes(got)

    async def main():
        r = loop.create_task(reader())
        await loop.sock_sendall(a, data)
        return await r

    try:
        assert loop.run_until_complete(main()) == data
    finally:
        a.close()
        b.close()


def test_recv_cancelled_then_reused(loop):
    a, b = socket.socketpair()
    nb(a), nb(b)

    async def main():
        t = loop.create_task(loop.sock_recv(a, 10))
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        b.send(b"x")
        return await loop.sock_recv(a, 10)

    try:
        assert loop.run_until_complete(main()) == b"x"
    finally:
        a.close()
        b.close()


def test_recv_eof(loop):
    a, b = socket.socketpair()
    nb(a)
    b.close()
    try:
        assert loop.run_until_complete(loop.sock_recv(a, 10)) == b""
    finally:
        a.close()


@needs_311
def test_udp_sendto_recvfrom(loop):
    async def main():
        s1 = nb(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        s2 = nb(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        with s1, s2:
            s1.bind(("127.0.0.1", 0))
            s2.bind(("127.0.0.1", 0))
            recv = loop.create_task(loop.sock_recvfrom(s1, 100))
            await asyncio.sleep(0)
            assert await loop.sock_sendto(s2, b"dgram", s1.getsockname()) == 5
            data, addr = await recv
            buf = bytearray(10)
            await loop.sock_sendto(s1, b"back", s2.getsockname())
            n, addr2 = await loop.sock_recvfrom_into(s2, buf)
            return data, addr, bytes(buf[:n]), addr2, s1.getsockname(), s2.getsockname()

    data, addr, back, addr2, n1, n2 = loop.run_until_complete(main())
    assert (data, addr, back, addr2) == (b"dgram", n2, b"back", n1)


def test_blocking_socket_rejected_in_debug(loop):
    loop.set_debug(True)
    s = socket.socket()
    try:
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            loop.run_until_complete(loop.sock_recv(s, 1))
    finally:
        s.close()


def test_blocking_socket_always_rejected_by_pyloop():
    lp = pyloop.new_event_loop()
    s = socket.socket()
    try:
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            lp.run_until_complete(lp.sock_sendall(s, b"x"))
    finally:
        s.close()
        lp.close()


def test_socket_fd_and_timeout_are_read_from_the_socket_struct():
    """pyloop reads a socket.socket's fd and timeout from its C struct, whose layout it
    checks at import (net/sock_wait.cpp): every supported CPython must pass the check,
    or each sock_* call and datagram goes back to calling fileno() and gettimeout()."""
    from pyloop import _core
    assert _core._socket_struct_read() is True


@pytest.mark.parametrize("timeout", [None, 0.5, 0.0])
def test_sock_calls_judge_the_socket_by_its_timeout_and_state(loop, timeout):
    """What the struct says, against asyncio: a socket with a timeout (or none) is
    refused in debug mode; a non-blocking one works; once closed, sock_recv raises
    what the socket's own call raises."""
    loop.set_debug(True)
    a, b = socket.socketpair()
    try:
        a.settimeout(timeout)
        b.setblocking(False)
        if timeout != 0.0:
            with pytest.raises(ValueError, match="the socket must be non-blocking"):
                loop.run_until_complete(loop.sock_sendall(a, b"x"))
            a.setblocking(False)
        loop.run_until_complete(loop.sock_sendall(a, b"ping"))
        assert loop.run_until_complete(loop.sock_recv(b, 10)) == b"ping"
        a.close()
        with pytest.raises(OSError) as info:
            loop.run_until_complete(loop.sock_recv(a, 10))
        assert info.value.errno == errno.EBADF
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("use_native", [True, False])
def test_sock_sendfile(loop, tmp_path, use_native):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    a, b = socket.socketpair()
    nb(a), nb(b)

    async def reader(n):
        got = bytearray()
        while len(got) < n:
            chunk = await loop.sock_recv(b, 1 << 16)
            if not chunk:
                break
            got += chunk
        return bytes(got)

    async def main():
        with open(path, "rb") as f:
            r = loop.create_task(reader(len(data) - 100 - 1000))
            if use_native:
                sent = await loop.sock_sendfile(a, f, 100, len(data) - 1100)
            else:
                # a file object without fileno(): the fallback path
                import io
                bio = io.BytesIO(f.read())
                sent = await loop.sock_sendfile(a, bio, 100, len(data) - 1100)
                f = bio
            return sent, f.tell(), await r

    try:
        sent, pos, got = loop.run_until_complete(main())
    finally:
        a.close()
        b.close()
    assert sent == len(data) - 1100
    assert pos == len(data) - 1000
    assert hashlib.sha256(got).digest() == hashlib.sha256(data[100:-1000]).digest()


def test_sock_sendfile_bad_params(loop, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    u = nb(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    s = nb(socket.socket())
    try:
        with open(path, "rb") as f:
            with pytest.raises(ValueError, match="SOCK_STREAM"):
                loop.run_until_complete(loop.sock_sendfile(u, f))
            with pytest.raises(ValueError, match="count"):
                loop.run_until_complete(loop.sock_sendfile(s, f, 0, 0))
            with pytest.raises(TypeError, match="offset"):
                loop.run_until_complete(loop.sock_sendfile(s, f, "1"))
        with open(path, "r") as f:
            with pytest.raises(ValueError, match="binary mode"):
                loop.run_until_complete(loop.sock_sendfile(s, f))
    finally:
        u.close()
        s.close()


def test_many_concurrent_connections(loop, listener):
    n = 200

    async def server():
        conns = []
        for _ in range(n):
            conn, _ = await loop.sock_accept(listener)
            conns.append(conn)
        for c in conns:
            data = await loop.sock_recv(c, 100)
            await loop.sock_sendall(c, data.upper())
            c.close()

    async def client(i):
        s = nb(socket.socket())
        with s:
            await loop.sock_connect(s, listener.getsockname())
            await loop.sock_sendall(s, b"msg%d" % i)
            return await loop.sock_recv(s, 100)

    async def main():
        srv = loop.create_task(server())
        res = await asyncio.gather(*[client(i) for i in range(n)])
        await srv
        return res

    assert loop.run_until_complete(main()) == [b"MSG%d" % i for i in range(n)]
