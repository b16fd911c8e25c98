"""Small writes of one callback leave together (pyloop holds them back until the
callback returns: one system call for an HTTP server's headers and body). Whatever
follows a write in the same callback must see the data as asyncio's immediate send()
leaves it: sent before abort(), close(), write_eof(), sendfile, start_tls, and before a
closed loop's transports go; in order with larger writes; counted as written."""

import asyncio
import os
import socket
import threading

import pytest


def run(loop, coro):
    return loop.run_until_complete(coro)


def reader_thread(sock, out):
    """Reads sock to EOF (or a reset) on a plain thread into out[0]."""
    def read():
        data = bytearray()
        try:
            while chunk := sock.recv(1 << 16):
                data += chunk
        except ConnectionResetError:
            out.append("reset")
        out.insert(0, bytes(data))

    th = threading.Thread(target=read)
    th.start()
    return th


async def connected(loop, protocol=asyncio.Protocol):
    """A pyloop/asyncio transport over one end of a socketpair; the other end is plain."""
    ours, theirs = socket.socketpair()
    tr, pr = await loop.connect_accepted_socket(protocol, ours)
    return tr, pr, theirs


@pytest.mark.parametrize("then", ["abort", "close", "write_eof"])
def test_a_write_then_at_once(loop, then):
    async def main():
        tr, _, theirs = await connected(loop)
        out = []
        th = reader_thread(theirs, out)
        tr.write(b"head ")
        tr.write(b"body")
        assert tr.get_write_buffer_size() == 0  # counted as written, as asyncio's send() left it
        getattr(tr, then)()
        if then == "write_eof":
            await asyncio.sleep(0.05)
            tr.close()
        await asyncio.sleep(0.05)
        await loop.run_in_executor(None, th.join, 5)
        theirs.close()
        return out[0]

    assert run(loop, main()) == b"head body"


def test_many_small_writes_and_a_large_one_stay_in_order(loop):
    async def main():
        tr, _, theirs = await connected(loop)
        out = []
        th = reader_thread(theirs, out)
        expected = bytearray()
        for i in range(2000):  # 2000 small writes in one callback: far over what is held back
            piece = b"%d," % i
            tr.write(piece)
            expected += piece
            if i == 1000:
                big = os.urandom(300_000)
                tr.write(big)
                expected += big
        tr.writelines([b"x" * 10, bytearray(b"y" * 10), memoryview(b"z" * 10)])
        expected += b"x" * 10 + b"y" * 10 + b"z" * 10
        pieces = [os.urandom(20_000), b"mid", bytearray(os.urandom(30_000)), memoryview(b"end")]
        tr.writelines(pieces)  # over what is held back: one writev with what was held
        expected += b"".join(pieces)
        tr.close()
        await loop.run_in_executor(None, th.join, 10)
        theirs.close()
        return out[0], bytes(expected)

    got, expected = run(loop, main())
    assert got == expected


def test_written_before_the_loop_stops_and_closes(loop):
    # The coroutine writes and returns: run_until_complete stops the loop right after;
    # then the loop closes with the transport left open. The bytes were sent.
    async def main():
        tr, _, theirs = await connected(loop)
        tr.write(b"last words")
        return tr, theirs

    tr, theirs = run(loop, main())
    theirs.settimeout(5)
    assert theirs.recv(100) == b"last words"
    tr.close()
    loop.run_until_complete(asyncio.sleep(0))
    theirs.close()


def test_sendfile_after_a_small_write(loop, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"FILE" * 1000)

    async def main():
        tr, _, theirs = await connected(loop)
        out = []
        th = reader_thread(theirs, out)
        tr.write(b"header:")
        with open(path, "rb") as f:
            await loop.sendfile(tr, f)
        tr.write(b":trailer")
        tr.close()
        await loop.run_in_executor(None, th.join, 5)
        theirs.close()
        return out[0]

    assert run(loop, main()) == b"header:" + b"FILE" * 1000 + b":trailer"


def test_a_write_then_a_peer_reset(loop):
    # The peer is gone before the loop sends what was written: connection_lost comes
    # with the error (or None when the send beat the reset), never a hang or a crash.
    lost = []

    class P(asyncio.Protocol):
        def connection_lost(self, exc):
            lost.append(exc)

    async def main():
        tr, _, theirs = await connected(loop, P)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        theirs.close()  # RST on close
        await asyncio.sleep(0.05)
        for _ in range(20):
            tr.write(b"x" * 100)
            await asyncio.sleep(0.01)
            if lost:
                break
        tr.close()
        await asyncio.sleep(0.05)
        return lost

    got = run(loop, main())
    assert len(got) == 1 and (got[0] is None or isinstance(got[0], ConnectionError))
    loop.test_errors.clear()  # asyncio and pyloop may report the failed send


def test_reads_queued_behind_callbacks_respect_pause_reading(loop):
    # 1 MiB is waiting in the kernel when reading starts, and the ready queue is never
    # empty: pyloop reads it in several chunks in one poll, each queued behind the
    # waiting callbacks. The protocol pauses in the first delivery: nothing more may
    # arrive until it resumes, then everything, in order, exactly once.
    payload = os.urandom(1 << 20)

    class P(asyncio.Protocol):
        def __init__(self):
            self.data = bytearray()
            self.paused = False
            self.during_pause = 0
            self.done = loop.create_future()

        def connection_made(self, tr):
            self.tr = tr

        def data_received(self, data):
            if self.paused:
                self.during_pause += 1
            self.data += data
            if len(self.data) == len(payload):
                self.done.set_result(None)
            elif not self.paused and len(self.data) < len(payload) // 2:
                self.paused = True
                self.tr.pause_reading()
                loop.call_later(0.02, self.resume)

        def resume(self):
            self.paused = False
            self.tr.resume_reading()

    async def main():
        ours, theirs = socket.socketpair()
        for s in (ours, theirs):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        theirs.setblocking(False)
        sent = theirs.send(payload)  # what the kernel holds now waits for the first poll
        spinning = True

        def spin():  # keeps a callback waiting in every iteration
            if spinning:
                loop.call_soon(spin)

        spin()
        tr, pr = await loop.connect_accepted_socket(P, ours)
        if sent < len(payload):
            await loop.sock_sendall(theirs, payload[sent:])
        await asyncio.wait_for(pr.done, 10)
        spinning = False
        tr.close()
        theirs.close()
        return bytes(pr.data) == payload, pr.during_pause

    assert run(loop, main()) == (True, 0)
