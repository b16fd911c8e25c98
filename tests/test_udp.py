"""create_datagram_endpoint and datagram transports, on both loops."""

import asyncio
import socket
import sys

import pytest

import pyloop


class Dgram(asyncio.DatagramProtocol):
    def __init__(self, loop):
        self.got = asyncio.Queue()
        self.errors = []
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.got.put_nowait((data, addr))

    def error_received(self, exc):
        self.errors.append(exc)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_udp_echo(loop):
    async def main():
        srv_tr, srv = await loop.create_datagram_endpoint(lambda: Dgram(loop), local_addr=("127.0.0.1", 0))
        addr = srv_tr.get_extra_info("sockname")
        cli_tr, cli = await loop.create_datagram_endpoint(lambda: Dgram(loop), remote_addr=addr)
        if isinstance(loop, pyloop.Loop) or sys.version_info >= (3, 12):  # asyncio 3.11's is not one
            assert isinstance(cli_tr, asyncio.DatagramTransport)
        assert cli_tr.get_extra_info("peername") == addr
        cli_tr.sendto(b"ping")
        data, caddr = await asyncio.wait_for(srv.got.get(), 5)
        srv_tr.sendto(data.upper(), caddr)
        back, _ = await asyncio.wait_for(cli.got.get(), 5)
        with pytest.raises(ValueError, match="Invalid address"):
            cli_tr.sendto(b"x", ("127.0.0.1", 1))
        with pytest.raises(TypeError):
            cli_tr.sendto("text")
        cli_tr.close()
        srv_tr.close()
        await cli.lost
        await srv.lost
        return data, back

    assert loop.run_until_complete(main()) == (b"ping", b"PING")


def test_udp_error_received(loop):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    async def main():
        tr, proto = await loop.create_datagram_endpoint(lambda: Dgram(loop), remote_addr=("127.0.0.1", port))
        for _ in range(20):
            tr.sendto(b"nobody listens")
            await asyncio.sleep(0.005)
            if proto.errors:
                break
        tr.abort()
        await proto.lost
        return proto.errors

    errors = loop.run_until_complete(main())
    assert errors and isinstance(errors[0], ConnectionRefusedError)


def test_udp_sock_and_bad_args(loop):
    async def main():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        tr, proto = await loop.create_datagram_endpoint(lambda: Dgram(loop), sock=s)
        assert tr.get_extra_info("sockname") == s.getsockname()
        tr.close()
        await proto.lost
        t = socket.socket()
        with pytest.raises(ValueError):
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=t)
        t.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(ValueError, match="socket modifier"):
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=u, family=socket.AF_INET)
        u.close()
        with pytest.raises(ValueError):
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol)
        # asyncio 3.10 asserts (AssertionError); 3.11+ and pyloop raise TypeError
        legacy = not isinstance(loop, pyloop.Loop) and sys.version_info < (3, 11)
        with pytest.raises(AssertionError if legacy else TypeError):
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr="not a tuple")

    loop.run_until_complete(main())


def test_udp_reuse_port_and_broadcast(loop):
    async def main():
        tr1, p1 = await loop.create_datagram_endpoint(lambda: Dgram(loop), local_addr=("127.0.0.1", 0),
                                                      reuse_port=True)
        port = tr1.get_extra_info("sockname")[1]
        tr2, p2 = await loop.create_datagram_endpoint(lambda: Dgram(loop), local_addr=("127.0.0.1", port),
                                                      reuse_port=True)
        tr3, p3 = await loop.create_datagram_endpoint(lambda: Dgram(loop), local_addr=("127.0.0.1", 0),
                                                      allow_broadcast=True)
        for tr, p in ((tr1, p1), (tr2, p2), (tr3, p3)):
            tr.close()
            await p.lost

    loop.run_until_complete(main())


def test_unix_datagram(loop, tmp_path):
    path = str(tmp_path / "d.sock")
    cpath = str(tmp_path / "c.sock")

    async def main():
        srv_tr, srv = await loop.create_datagram_endpoint(lambda: Dgram(loop), local_addr=path,
                                                          family=socket.AF_UNIX)
        cli_tr, cli = await loop.create_datagram_endpoint(lambda: Dgram(loop), local_addr=cpath,
                                                          remote_addr=path, family=socket.AF_UNIX)
        cli_tr.sendto(b"unix")
        data, addr = await asyncio.wait_for(srv.got.get(), 5)
        srv_tr.sendto(b"back", addr)
        back, _ = await asyncio.wait_for(cli.got.get(), 5)
        cli_tr.close()
        srv_tr.close()
        await cli.lost
        await srv.lost
        return data, back

    assert loop.run_until_complete(main()) == (b"unix", b"back")


def test_many_datagrams(loop):
    async def main():
        srv_tr, srv = await loop.create_datagram_endpoint(lambda: Dgram(loop), local_addr=("127.0.0.1", 0))
        addr = srv_tr.get_extra_info("sockname")
        cli_tr, cli = await loop.create_datagram_endpoint(lambda: Dgram(loop), remote_addr=addr)
        for i in range(500):
            cli_tr.sendto(b"%d" % i)
            await asyncio.sleep(0)  # asyncio reads one datagram per turn: keep the kernel queue short
        got = set()
        while len(got) < 500:
            data, _ = await asyncio.wait_for(srv.got.get(), 5)
            got.add(int(data))
        cli_tr.close()
        srv_tr.close()
        await cli.lost
        await srv.lost
        return got

    assert loop.run_until_complete(main()) == set(range(500))
