"""An iteration with callbacks ready still sees the I/O that came since the last one, as
asyncio's poll of every iteration does, however pyloop learns that its poll would find
nothing (core/io_peek.hpp: an io_uring completion, an epoll_wait(), or libuv's own turn).
Each case runs in a child process per mechanism, on both loops, and compares the
iteration at which each reader ran."""

import json
import os
import subprocess
import sys

import pytest

import pyloop

TESTS = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import json, socket, sys, threading, time
sys.path.insert(0, {tests!r})
from conftest import LOOP_FACTORIES
loop = LOOP_FACTORIES[{which!r}]()
a, b = socket.socketpair()
c, d = socket.socketpair()
step = 0
fired = []
flagged = []
sent = threading.Event()

def reader():
    fired.append(step)
    a.recv(4096)

def other_reader():
    fired.append(("other", step))
    c.recv(4096)

loop.add_reader(a.fileno(), reader)

def from_thread():
    time.sleep(0.02)
    b.send(b"t")
    sent.set()

def burst():
    for _ in range(150):  # more wakeups than the completion ring holds (64), in one callback
        b.send(b"x")
    time.sleep(0.01)

def chain():
    global step
    step += 1
    if step == 10:
        b.send(b"x")                   # data between two iterations
    elif step == 200:
        burst()
    elif step == 400:
        loop.add_reader(c.fileno(), other_reader)  # a watch added while callbacks run
        d.send(b"y")
    elif step == 3500:  # (after step 3000's byte is read: the two must not come together)
        threading.Thread(target=from_thread).start()
    if sent.is_set() and not flagged:
        flagged.append(step)           # the thread's byte is in the socket by now
    if step == 3000:
        b.send(b"z")
    if step < 6000 or not flagged or step < flagged[0] + 3:
        loop.call_soon(chain)
    else:
        loop.stop()

loop.call_soon(chain)
loop.run_forever()
mechanism = loop._io_peek_mechanism() if hasattr(loop, "_io_peek_mechanism") else "asyncio"
loop.remove_reader(a.fileno())
loop.remove_reader(c.fileno())
loop.close()
print(json.dumps({{"fired": fired, "flagged": flagged[0], "mechanism": mechanism}}))
"""


def run_child(which, mechanism):
    env = {**os.environ, "PYLOOP_IO_PEEK": mechanism}
    out = subprocess.run([sys.executable, "-c", CHILD.format(tests=TESTS, which=which)], capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mechanism", ["auto", "epoll", "off"])
def test_each_iteration_sees_the_io_that_came_before_it(mechanism):
    ref = run_child("asyncio", mechanism)
    got = run_child("pyloop", mechanism)
    if mechanism == "auto":
        assert got["mechanism"] in ("io_uring", "epoll")  # (epoll where io_uring is refused)
    else:
        assert got["mechanism"] == mechanism
    # the reader runs in the iteration after the one that sent: 11, 201, 3001 on both
    fixed = lambda r: [x for x in r["fired"] if x in (11, 201, 3001) or x == ["other", 401]]
    assert fixed(got) == fixed(ref) == [11, 201, ["other", 401], 3001]
    # the thread's byte: seen by the iteration after the one that found it sent
    thread_step = [x for x in got["fired"] if isinstance(x, int) and x not in (11, 201, 3001)]
    assert len(thread_step) == 1 and thread_step[0] <= got["flagged"] + 1, got


def io_uring_setup_works():
    """Does io_uring_setup() give this process a ring (kernel, seccomp, qemu-user)?"""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
    nr = {"x86_64": 425, "aarch64": 425}.get(os.uname().machine)
    if nr is None:
        return False
    fd = libc.syscall(nr, 2, params)
    if fd < 0:
        return False
    os.close(fd)
    return True


def test_io_uring_is_used_where_the_kernel_allows_it():
    loop = pyloop.new_event_loop()
    try:
        mechanism = loop._io_peek_mechanism()
    finally:
        loop.close()
    assert mechanism == ("io_uring" if io_uring_setup_works() else "epoll")  # (polls: every io_uring, 5.1+)
