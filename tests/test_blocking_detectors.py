"""Blocking-call detectors (blockbuster) pass pyloop as they pass asyncio: the system
calls pyloop makes for Unix servers and sendfile are made in C++, not through the os
functions such detectors wrap (asyncio's own modules are on their allow lists)."""

import asyncio
import os
import socket
import sys

import pytest

import pyloop

from conftest import needs_module

blockbuster = needs_module("blockbuster")


def test_unix_server_and_sendfile_under_blockbuster(loop, tmp_path):
    path = str(tmp_path / "srv.sock")
    payload = os.urandom(256 * 1024)
    data_file = tmp_path / "data"
    data_file.write_bytes(payload)

    async def main():
        got = bytearray()
        done = loop.create_future()

        class Sink(asyncio.Protocol):
            def data_received(self, data):
                got.extend(data)
                if len(got) >= 2 * len(payload) and not done.done():
                    done.set_result(None)

        server = await loop.create_unix_server(Sink, path)
        tr, _ = await loop.create_unix_connection(asyncio.Protocol, path)
        with open(data_file, "rb") as f:
            assert await loop.sendfile(tr, f) == len(payload)
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with a, b, open(data_file, "rb") as f:
            sender = asyncio.ensure_future(loop.sock_sendfile(a, f))
            received = 0
            while received < len(payload):
                received += len(await loop.sock_recv(b, 65536))
            assert await sender == len(payload)
        with open(data_file, "rb") as f:
            assert await loop.sendfile(tr, f) == len(payload)
        await asyncio.wait_for(done, 10)
        tr.close()
        server.close()
        await server.wait_closed()

    with blockbuster.blockbuster_ctx():
        loop.run_until_complete(main())


def test_stale_unix_socket_file_removed_under_blockbuster(tmp_path):
    # asyncio (before 3.13) calls os.remove for this, which blockbuster flags; pyloop
    # makes the call in C++.
    path = str(tmp_path / "srv.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    loop = pyloop.new_event_loop()
    try:
        async def main():
            server = await loop.create_unix_server(asyncio.Protocol, path)
            server.close()
            await server.wait_closed()

        with blockbuster.blockbuster_ctx():
            loop.run_until_complete(main())
        assert os.path.exists(path) == (sys.version_info < (3, 13))  # removed at close() from 3.13
    finally:
        loop.close()
        if os.path.exists(path):
            os.unlink(path)


def test_subprocesses_under_blockbuster(loop):
    # Popen reads its error pipe (os.read) while it starts a child; blockbuster allows
    # that inside asyncio's subprocess_exec/subprocess_shell, which pyloop uses too.
    async def main():
        with blockbuster.blockbuster_ctx():
            p = await asyncio.create_subprocess_exec("true")
            q = await asyncio.create_subprocess_shell("exit 3")
            return await p.wait(), await q.wait()

    assert loop.run_until_complete(main()) == (0, 3)
