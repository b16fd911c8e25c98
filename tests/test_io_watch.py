"""add_reader/remove_reader/add_writer/remove_writer over a socketpair."""

import asyncio
import socket

import pytest


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_reader(loop, pair):
    a, b = pair
    got = []
    done = loop.create_future()

    def on_read(tag):
        data = a.recv(100)
        got.append((tag, data))
        if b"".join(d for _, d in got) == b"hello":
            done.set_result(None)

    loop.add_reader(a, on_read, "r")
    b.send(b"hel")
    loop.call_later(0.01, b.send, b"lo")
    loop.run_until_complete(asyncio.wait_for(done, 5))
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False
    assert all(tag == "r" for tag, _ in got)


def test_reader_by_fd_and_replacement(loop, pair):
    a, b = pair
    got = []
    loop.add_reader(a.fileno(), got.append, "old")
    loop.add_reader(a.fileno(), lambda: (got.append("new"), a.recv(10), loop.stop()))
    b.send(b"x")
    loop.run_forever()
    assert got == ["new"]
    assert loop.remove_reader(a.fileno()) is True


def test_writer(loop, pair):
    a, b = pair
    fut = loop.create_future()

    def on_write():
        a.send(b"ping")
        loop.remove_writer(a)
        fut.set_result(None)

    loop.add_writer(a, on_write)
    loop.run_until_complete(asyncio.wait_for(fut, 5))
    assert b.recv(10) == b"ping"
    assert loop.remove_writer(a) is False


def test_reader_and_writer_same_fd(loop, pair):
    a, b = pair
    events = []

    def on_write():
        events.append("w")
        loop.remove_writer(a)
        b.send(b"x")

    def on_read():
        events.append("r")
        a.recv(10)
        loop.remove_reader(a)
        loop.stop()

    loop.add_reader(a, on_read)
    loop.add_writer(a, on_write)
    loop.run_forever()
    assert events == ["w", "r"]


def test_writer_flow_until_full(loop, pair):
    a, b = pair
    sent = 0
    fut = loop.create_future()

    def on_write():
        nonlocal sent
        try:
            while True:
                sent += a.send(b"x" * 65536)
        except BlockingIOError:
            loop.remove_writer(a)
            fut.set_result(sent)

    loop.add_writer(a, on_write)
    total = loop.run_until_complete(asyncio.wait_for(fut, 5))
    assert total > 0

    # Full: a writer added now is not called until the peer has read; then it is.
    calls = []
    writable = loop.create_future()

    def on_writable():
        calls.append(1)
        loop.remove_writer(a)
        writable.set_result(None)

    async def drain():
        loop.add_writer(a, on_writable)
        await asyncio.sleep(0.05)
        before = len(calls)
        got = 0
        while got < total:
            try:
                got += len(b.recv(1 << 20))
            except BlockingIOError:
                await asyncio.sleep(0.001)
        await asyncio.wait_for(writable, 5)
        return before, got

    before, got = loop.run_until_complete(drain())
    assert (before, got, calls) == (0, total, [1])


def test_bad_fds(loop):
    with pytest.raises(ValueError):
        loop.add_reader(-1, lambda: None)
    with pytest.raises(ValueError):
        loop.add_writer(object(), lambda: None)
    with pytest.raises(ValueError):
        loop.remove_reader("nope")
    assert loop.remove_reader(12345) is False


def test_reader_exception_goes_to_handler(loop, pair):
    a, b = pair

    def bad():
        a.recv(10)
        loop.remove_reader(a)
        loop.stop()
        raise RuntimeError("in reader")

    loop.add_reader(a, bad)
    b.send(b"x")
    loop.run_forever()
    [ctx] = loop.test_errors
    loop.test_errors.clear()
    assert isinstance(ctx["exception"], RuntimeError)
    assert "handle" in ctx


def test_closed_loop(loop, pair):
    a, b = pair
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.add_reader(a, lambda: None)
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False


def test_fd_closed_and_reused(loop):
    # A watched fd closed behind the loop's back and then reused: asyncio's selector
    # raises FileNotFoundError when the new fd's watch changes; pyloop re-registers it.
    # Either way the loop must survive (libuv would abort() on a bad epoll MOD).
    a, b = socket.socketpair()
    loop.add_reader(a.fileno(), lambda: None)
    fd = a.fileno()
    a.close()
    b.close()
    c, d = socket.socketpair()
    try:
        if c.fileno() == fd:
            got = loop.create_future()
            try:
                loop.add_writer(fd, lambda: got.done() or got.set_result("w"))
            except FileNotFoundError:
                got.set_result("w")
            assert loop.run_until_complete(asyncio.wait_for(got, 5)) == "w"
        loop.remove_writer(fd)
        try:
            loop.remove_reader(fd)
        except OSError:
            pass
        loop.run_until_complete(asyncio.sleep(0.01))
    finally:
        c.close()
        d.close()


def test_threads_run_while_loop_waits_after_a_watch_change(loop, pair):
    # The loop must release the GIL before every blocking poll, also right after a
    # watcher was (re)started: an executor thread needs it to finish its job.
    a, b = pair

    async def main():
        for _ in range(200):
            fut = loop.create_future()

            def on_writable():
                loop.remove_writer(a)
                if not fut.done():
                    fut.set_result(None)

            loop.add_writer(a, on_writable)
            await fut
            loop.add_reader(b, lambda: None)
            assert await asyncio.wait_for(loop.run_in_executor(None, lambda: 1), 10) == 1
            loop.remove_reader(b)

    loop.run_until_complete(main())


def test_remove_reader_after_the_socket_was_closed(loop):
    # asyncio's selector finds the registration of a closed socket (fileno() -1) by the
    # object: remove_reader() succeeds, and a new socket that gets the same fd number
    # has its own reader called.
    async def main():
        a, b = socket.socketpair()
        fd = a.fileno()
        loop.add_reader(a, lambda: None)
        a.close()
        removed = loop.remove_reader(a)
        with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
            loop.remove_reader(a)  # found by neither its fd nor the object any more
        c, d = socket.socketpair()
        same_fd = c.fileno() == fd
        fired = loop.create_future()
        loop.add_reader(c, lambda: fired.done() or fired.set_result(True))
        d.send(b"x")
        await asyncio.wait_for(fired, 5)
        loop.remove_reader(c)
        for s in (b, c, d):
            s.close()
        return removed, same_fd

    removed, same_fd = loop.run_until_complete(main())
    assert removed is True
    assert same_fd  # the kernel hands out the lowest free number
