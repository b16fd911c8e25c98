"""connect_read_pipe / connect_write_pipe on both loops: pipes, socketpairs and ptys,
EOF, pause/resume, flow control, write_eof, abort, a reader that goes away, a pty's EIO
at the end, non-pipes refused."""

import asyncio
import errno
import gc
import hashlib
import os
import pty
import socket
import sys
import tempfile
import warnings

import pytest

import pyloop
from conftest import ASYNCIO_READ_PIPE_IS_READING
from protocols import Events


class Writer(asyncio.Protocol):
    def __init__(self, loop):
        self.events = []
        self.lost = loop.create_future()
        self.resumed = None
        self.loop = loop

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def pause_writing(self):
        self.events.append("pause")
        self.resumed = self.loop.create_future()

    def resume_writing(self):
        self.events.append("resume")
        self.resumed.set_result(None)

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__ if exc else None))
        self.lost.set_result(exc)


def test_read_pipe_data_eof_and_order(loop):
    async def main():
        rfd, wfd = os.pipe()
        pipe = open(rfd, "rb", buffering=0)
        tr, proto = await loop.connect_read_pipe(lambda: Events(loop), pipe)
        assert tr.get_extra_info("pipe") is pipe
        if ASYNCIO_READ_PIPE_IS_READING or isinstance(loop, pyloop.Loop):  # 3.10's and 3.11.2's have none
            assert tr.is_reading()
        os.write(wfd, b"hello ")
        os.write(wfd, b"world")
        await asyncio.sleep(0.05)
        os.close(wfd)
        await asyncio.wait_for(proto.lost, 10)
        assert pipe.closed  # the transport closes the pipe, as asyncio's does
        return proto.events, bytes(proto.data)

    events, data = loop.run_until_complete(main())
    assert data == b"hello world"
    assert events == ["made", "data", "eof", ("lost", None)]


def test_read_pipe_pause_and_resume(loop):
    async def main():
        rfd, wfd = os.pipe()
        tr, proto = await loop.connect_read_pipe(lambda: Events(loop), open(rfd, "rb", buffering=0))
        tr.pause_reading()
        os.write(wfd, b"while paused")
        await asyncio.sleep(0.05)
        during = bytes(proto.data)
        tr.resume_reading()
        await asyncio.sleep(0.05)
        os.close(wfd)
        await asyncio.wait_for(proto.lost, 10)
        return during, bytes(proto.data)

    during, after = loop.run_until_complete(main())
    assert during == b"" and after == b"while paused"


def test_write_pipe_to_read_pipe_with_flow_control(loop):
    payload = os.urandom(8 << 20)

    async def main():
        rfd, wfd = os.pipe()
        rtr, reader = await loop.connect_read_pipe(lambda: Events(loop), open(rfd, "rb", buffering=0))
        wtr, writer = await loop.connect_write_pipe(lambda: Writer(loop), open(wfd, "wb", buffering=0))
        assert wtr.can_write_eof() and wtr.get_extra_info("pipe").fileno() == wfd
        view = memoryview(payload)
        for i in range(0, len(payload), 1 << 20):
            wtr.write(view[i:i + (1 << 20)])
            if writer.resumed is not None and not writer.resumed.done():
                await writer.resumed
        wtr.write_eof()
        assert wtr.is_closing()
        await asyncio.wait_for(reader.lost, 20)
        await asyncio.wait_for(writer.lost, 10)
        return bytes(reader.data), writer.events, reader.events

    data, wevents, revents = loop.run_until_complete(main())
    assert hashlib.sha256(data).digest() == hashlib.sha256(payload).digest()
    assert "pause" in wevents and wevents[-1] == ("lost", None)
    assert revents[-2:] == ["eof", ("lost", None)]


@pytest.mark.parametrize("pending", [False, True])
def test_write_pipe_whose_reader_went_away(loop, pending):
    async def main():
        rfd, wfd = os.pipe()
        wtr, writer = await loop.connect_write_pipe(lambda: Writer(loop), open(wfd, "wb", buffering=0))
        if pending:
            wtr.write(b"x" * (4 << 20))  # more than the pipe holds: some stays buffered
            assert wtr.get_write_buffer_size() > 0
        os.close(rfd)
        exc = await asyncio.wait_for(writer.lost, 10)
        wtr.write(b"more")  # dropped, as asyncio drops it
        return exc

    exc = loop.run_until_complete(main())
    if pending:
        assert isinstance(exc, BrokenPipeError)
    else:
        assert exc is None


def test_write_pipe_abort_and_close(loop):
    async def main():
        rfd, wfd = os.pipe()
        wtr, writer = await loop.connect_write_pipe(lambda: Writer(loop), open(wfd, "wb", buffering=0))
        wtr.write(b"x" * (4 << 20))
        wtr.abort()
        first = await asyncio.wait_for(writer.lost, 10)
        r2, w2 = os.pipe()
        wtr2, writer2 = await loop.connect_write_pipe(lambda: Writer(loop), open(w2, "wb", buffering=0))
        wtr2.write(b"last words")
        wtr2.close()
        second = await asyncio.wait_for(writer2.lost, 10)
        got = os.read(r2, 100)
        os.close(rfd)
        os.close(r2)
        return first, second, got

    first, second, got = loop.run_until_complete(main())
    assert first is None and second is None and got == b"last words"


def test_socketpair_as_pipes(loop):
    async def main():
        a, b = socket.socketpair()
        rtr, reader = await loop.connect_read_pipe(lambda: Events(loop), a)
        wtr, writer = await loop.connect_write_pipe(lambda: Writer(loop), b)
        wtr.write(b"over a socket")
        wtr.close()
        await asyncio.wait_for(reader.lost, 10)
        await asyncio.wait_for(writer.lost, 10)
        return bytes(reader.data)

    assert loop.run_until_complete(main()) == b"over a socket"


def test_pty_read_write_and_eio_at_the_end(loop):
    async def main():
        master, slave = pty.openpty()
        rtr, reader = await loop.connect_read_pipe(lambda: Events(loop), open(master, "rb", buffering=0))
        wtr, writer = await loop.connect_write_pipe(lambda: Writer(loop), open(os.dup(slave), "wb", buffering=0))
        wtr.write(b"through the pty\n")
        for _ in range(200):
            if b"through the pty" in reader.data:
                break
            await asyncio.sleep(0.01)
        wtr.close()
        await asyncio.wait_for(writer.lost, 10)
        os.close(slave)  # the last slave fd: reading the master ends with EIO
        exc = await asyncio.wait_for(reader.lost, 10)
        return bytes(reader.data), exc

    data, exc = loop.run_until_complete(main())
    assert b"through the pty" in data
    # asyncio ends on EIO with connection_lost(OSError(EIO)) and no exception handler call.
    assert isinstance(exc, OSError) and exc.errno == errno.EIO


def test_regular_files_are_refused(loop):
    async def main():
        with tempfile.TemporaryFile() as f:
            with pytest.raises(ValueError, match="Pipe transport is"):
                await loop.connect_read_pipe(asyncio.Protocol, f)
            with pytest.raises(ValueError, match="Pipe transport is"):
                await loop.connect_write_pipe(asyncio.Protocol, f)

    loop.run_until_complete(main())


# Both loops' transports are half made when call_soon refuses: their __del__ warns.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_closed_loop(loop):
    rfd, wfd = os.pipe()
    loop.close()
    with open(rfd, "rb", buffering=0) as r, open(wfd, "wb", buffering=0) as w:
        for coro in (loop.connect_read_pipe(asyncio.Protocol, r), loop.connect_write_pipe(asyncio.Protocol, w)):
            with pytest.raises(RuntimeError, match="Event loop is closed"):
                coro.send(None)
            coro.close()
        gc.collect()


@pytest.mark.parametrize("loop_name", ["asyncio", "pyloop"])
def test_pipes_left_open_when_the_loop_closes(loop_name):
    # As asyncio: loop.close() leaves the user's pipes open and their transports say
    # "open"; a transport warns when it is collected, and closes its pipe then.
    from conftest import LOOP_FACTORIES

    lp = LOOP_FACTORIES[loop_name]()
    rfd, wfd = os.pipe()
    r, w = open(rfd, "rb", buffering=0), open(wfd, "wb", buffering=0)

    async def main():
        rtr, _ = await lp.connect_read_pipe(asyncio.Protocol, r)
        wtr, _ = await lp.connect_write_pipe(asyncio.Protocol, w)
        wtr.write(b"x" * (1 << 20))  # some of it stays buffered
        return rtr, wtr

    transports = lp.run_until_complete(main())
    lp.close()
    assert not r.closed and not w.closed
    assert [("open" in repr(t), t.is_closing()) for t in transports] == [(True, False), (True, False)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del transports
        gc.collect()
    assert sorted(str(c.message).split()[:2] == ["unclosed", "transport"] for c in caught
                  if c.category is ResourceWarning) == [True, True]
    assert r.closed and w.closed


def test_a_write_pipe_on_a_terminal_survives_input(loop):
    # A terminal is readable when a key is pressed: that does not mean its reader went
    # away (asyncio watches for that on sockets and FIFOs only).
    async def main():
        master, slave = pty.openpty()
        wtr, writer = await loop.connect_write_pipe(lambda: Writer(loop), open(slave, "wb", buffering=0))
        os.write(master, b"a key\n")  # input: the slave end is readable now
        await asyncio.sleep(0.1)
        still_open = (wtr.is_closing(), writer.lost.done())
        wtr.write(b"after the key\n")
        got = b""
        os.set_blocking(master, False)
        for _ in range(200):
            try:
                got += os.read(master, 1024)
            except BlockingIOError:
                pass
            if b"after the key" in got:
                break
            await asyncio.sleep(0.01)
        wtr.close()
        await asyncio.wait_for(writer.lost, 10)
        os.close(master)
        return still_open, b"after the key" in got

    assert loop.run_until_complete(main()) == ((False, False), True)


def test_pipe_misuse_matches_asyncio(loop):
    async def main():
        rfd, wfd = os.pipe()
        rtr, reader = await loop.connect_read_pipe(lambda: Events(loop), open(rfd, "rb", buffering=0))
        wtr, writer = await loop.connect_write_pipe(lambda: Writer(loop), open(wfd, "wb", buffering=0))
        outcomes = []
        for bad in ("text", 12, None):
            try:
                wtr.write(bad)
                outcomes.append("ok")
            except Exception as exc:
                outcomes.append(type(exc).__name__)
        try:
            wtr.set_write_buffer_limits(high=1, low=2)
        except ValueError:
            outcomes.append("ValueError")
        rtr.resume_reading()  # not paused: nothing
        rtr.pause_reading()
        rtr.pause_reading()
        rtr.resume_reading()
        wtr.write(b"fine")
        wtr.close()
        wtr.close()
        wtr.write(b"after close")  # dropped
        await asyncio.wait_for(writer.lost, 10)
        await asyncio.wait_for(reader.lost, 10)
        rtr.close()
        pipe_after = wtr.get_extra_info("pipe") is not None
        return outcomes, bytes(reader.data), pipe_after, wtr.is_closing()

    outcomes, data, pipe_after, closing = loop.run_until_complete(main())
    assert outcomes == ["AssertionError"] * 3 + ["ValueError"]
    assert data == b"fine" and pipe_after and closing


def test_pipe_transport_classes_match_asyncios(loop):
    # asyncio's write pipe transport is a whole asyncio.Transport (its reading methods
    # raise NotImplementedError); its read pipe transport has max_size.
    async def main():
        rfd, wfd = os.pipe()
        rtr, _ = await loop.connect_read_pipe(asyncio.Protocol, open(rfd, "rb", buffering=0))
        wtr, _ = await loop.connect_write_pipe(asyncio.Protocol, open(wfd, "wb", buffering=0))
        seen = {
            "write is Transport": isinstance(wtr, asyncio.Transport),
            "read is Transport": isinstance(rtr, asyncio.Transport),
            "read is ReadTransport": isinstance(rtr, asyncio.ReadTransport),
            "max_size": rtr.max_size,
        }
        for name in ("pause_reading", "resume_reading", "is_reading"):
            try:
                getattr(wtr, name)()
                seen[name] = "ok"
            except Exception as exc:
                seen[name] = type(exc).__name__
        wtr.close()
        rtr.close()
        await asyncio.sleep(0.01)
        return seen

    assert loop.run_until_complete(main()) == {
        "write is Transport": True, "read is Transport": False, "read is ReadTransport": True,
        "max_size": 256 * 1024, "pause_reading": "NotImplementedError", "resume_reading": "NotImplementedError",
        "is_reading": "NotImplementedError"}
