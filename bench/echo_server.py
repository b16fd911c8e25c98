"""An echo server for the echo benchmark: python bench/echo_server.py LOOP STYLE KIND ADDR

LOOP: asyncio | uvloop | pyloop.  STYLE: protocol | buffered | streams | sock.
KIND: tcp or udp (ADDR is a port, 0 for any) | unix (ADDR is a path). udp takes the
protocol style (a DatagramProtocol) and the sock style (sock_recvfrom/sock_sendto). Prints "ready <port>"
when listening and serves until its stdin closes.
"""

import asyncio
import os
import socket
import sys

from micro import make_loop


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class EchoBuffered(asyncio.BufferedProtocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = bytearray(256 * 1024)
        self.view = memoryview(self.buf)

    def get_buffer(self, sizehint):
        return self.view

    def buffer_updated(self, nbytes):
        self.transport.write(self.view[:nbytes])


class EchoDatagram(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def udp_sock_server(loop, sock):
    while True:
        data, addr = await loop.sock_recvfrom(sock, 65536)
        await loop.sock_sendto(sock, data, addr)


async def streams_handler(reader, writer):
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
    except ConnectionError:  # the load generator hangs up without reading the last echo
        pass
    writer.close()


def listening_socket(kind, addr):
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", int(addr)))
        s.setblocking(False)
        return s
    if kind == "tcp":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(addr)))
    else:
        s = socket.socket(socket.AF_UNIX)
        s.bind(addr)
    s.listen(128)
    s.setblocking(False)
    return s


async def sock_server(loop, lsock):
    async def serve(conn):
        with conn:
            try:
                while data := await loop.sock_recv(conn, 64 * 1024):
                    await loop.sock_sendall(conn, data)
            except ConnectionError:
                pass

    while True:
        conn, _ = await loop.sock_accept(lsock)
        if conn.family == socket.AF_INET:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop.create_task(serve(conn))


async def main(loop, style, kind, addr):
    lsock = listening_socket(kind, addr)
    port = lsock.getsockname()[1] if kind != "unix" else 0  # (rloop takes the socket's fd over)
    if kind == "udp":
        server = None
        if style == "protocol":
            transport, _ = await loop.create_datagram_endpoint(EchoDatagram, sock=lsock)
        else:
            loop.create_task(udp_sock_server(loop, lsock))
    elif style == "protocol":
        server = await loop.create_server(EchoProtocol, sock=lsock) if kind == "tcp" else \
            await loop.create_unix_server(EchoProtocol, sock=lsock)
    elif style == "buffered":
        server = await loop.create_server(EchoBuffered, sock=lsock) if kind == "tcp" else \
            await loop.create_unix_server(EchoBuffered, sock=lsock)
    elif style == "streams":
        server = await asyncio.start_server(streams_handler, sock=lsock) if kind == "tcp" else \
            await asyncio.start_unix_server(streams_handler, sock=lsock)
    else:
        server = None
        loop.create_task(sock_server(loop, lsock))
    print(f"ready {port}", flush=True)
    # serve until the harness closes our stdin
    done = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
    await done
    if server is not None:
        server.close()


if __name__ == "__main__":
    loop_name, style, kind, addr = sys.argv[1:5]
    loop = make_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main(loop, style, kind, addr))
    finally:
        os._exit(0)
