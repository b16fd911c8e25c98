"""Soak: 200 clients come and go against one server (reset, half-close, slow readers);
the server keeps serving, and fds, threads and memory return to their baseline."""

import asyncio
import gc
import os
import socket
import struct
import sys
import threading

import pytest

PAYLOAD = os.urandom(64 * 1024)


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False  # close once everything written has gone


async def reset_client(loop, port):
    s = socket.socket()
    s.setblocking(False)
    await loop.sock_connect(s, ("127.0.0.1", port))
    await loop.sock_sendall(s, PAYLOAD[:1000])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST


async def half_close_client(loop, port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(PAYLOAD)
    writer.write_eof()
    got = await asyncio.wait_for(reader.read(), 20)
    assert got == PAYLOAD
    writer.close()
    await writer.wait_closed()


async def slow_reader(loop, port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(PAYLOAD * 8)  # 512 KiB: the server's writes back pause it
    got = 0
    while got < len(PAYLOAD) * 8:
        chunk = await asyncio.wait_for(reader.read(16384), 20)
        assert chunk
        got += len(chunk)
        await asyncio.sleep(0.001)
    writer.close()
    await writer.wait_closed()


async def wave(loop, port, n):
    kinds = (reset_client, half_close_client, slow_reader)
    await asyncio.gather(*(kinds[i % 3](loop, port) for i in range(n)))


def open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts fds in /proc")
def test_soak_200_clients(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=200)
        port = server.sockets[0].getsockname()[1]
        await wave(loop, port, 12)  # warm-up: imports, caches, executor-free paths
        await asyncio.sleep(0.05)
        gc.collect()
        base_fds, base_threads, base_blocks = open_fds(), threading.active_count(), sys.getallocatedblocks()
        for _ in range(4):
            await wave(loop, port, 50)
        await asyncio.sleep(0.1)  # server-side transports see the last RSTs and EOFs
        await half_close_client(loop, port)  # still serving
        gc.collect()
        fds, threads, blocks = open_fds(), threading.active_count(), sys.getallocatedblocks()
        server.close()
        await server.wait_closed()
        return (base_fds, base_threads, base_blocks), (fds, threads, blocks)

    (base_fds, base_threads, base_blocks), (fds, threads, blocks) = loop.run_until_complete(
        asyncio.wait_for(main(), 60))
    assert fds == base_fds
    assert threads == base_threads
    assert blocks - base_blocks < 20000, f"{blocks - base_blocks} more memory blocks than at the start"
