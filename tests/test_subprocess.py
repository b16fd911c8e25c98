"""subprocess_exec / subprocess_shell on both loops, with real processes: pipes both
ways, return codes of exits and signals, timeouts, early-closing and early-exiting
children, many children at once with no thread on pyloop, spawn after spawn leaving
nothing behind, argument errors, preexec_fn, a user's SIGCHLD handler, a forked child."""

import asyncio
import gc
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tracemalloc

import pytest

from conftest import EMULATED, missing

PIPE = asyncio.subprocess.PIPE


def run(loop, coro):
    return loop.run_until_complete(coro)


def test_echo_through_stdin_and_stdout(loop):
    async def main():
        p = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        out, err = await p.communicate(b"hello pipes")
        return out, err, p.returncode

    assert run(loop, main()) == (b"hello pipes", None, 0)


def test_100_mib_through_cat_with_a_checksum(loop):
    payload = os.urandom(100 << 20)

    async def main():
        p = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        h = hashlib.sha256()
        n = 0

        async def feed():
            view = memoryview(payload)
            for i in range(0, len(payload), 1 << 20):
                p.stdin.write(view[i:i + (1 << 20)])
                await p.stdin.drain()
            p.stdin.close()

        feeder = asyncio.ensure_future(feed())
        while chunk := await p.stdout.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
        await feeder
        return n, h.digest(), await p.wait()

    n, digest, code = run(loop, main())
    assert (n, digest, code) == (len(payload), hashlib.sha256(payload).digest(), 0)


def test_stderr_to_stdout_and_shell(loop):
    async def main():
        p = await asyncio.create_subprocess_shell("echo out; echo err 1>&2; exit 7", stdout=PIPE,
                                                  stderr=asyncio.subprocess.STDOUT)
        out, err = await p.communicate()
        return sorted(out.split()), err, p.returncode

    assert run(loop, main()) == ([b"err", b"out"], None, 7)


def test_communicate_timeout_then_kill(loop):
    async def main():
        p = await asyncio.create_subprocess_exec("sleep", "30", stdout=PIPE)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(p.communicate(), 0.2)
        p.kill()
        return await p.wait()

    assert run(loop, main()) == -signal.SIGKILL


@pytest.mark.parametrize("how, code", [("terminate", -signal.SIGTERM), ("kill", -signal.SIGKILL),
                                       ("send_signal", -signal.SIGUSR1)])
def test_signals_and_return_codes(loop, how, code):
    async def main():
        p = await asyncio.create_subprocess_exec("sleep", "30")
        if how == "send_signal":
            p.send_signal(signal.SIGUSR1)
        else:
            getattr(p, how)()
        return await p.wait()

    assert run(loop, main()) == code


def test_child_closes_stdout_early_and_exits_later(loop):
    async def main():
        # the child exits only when told (its stdin ends): no race with a stalled machine
        p = await asyncio.create_subprocess_shell("echo early; exec 1>&-; read x; exit 3", stdin=PIPE,
                                                  stdout=PIPE)
        out = await p.stdout.read()
        await asyncio.sleep(0.05)
        running = p.returncode
        p.stdin.close()
        return out, running, await p.wait()

    assert run(loop, main()) == (b"early\n", None, 3)


def test_child_exits_before_its_output_is_read(loop):
    async def main():
        p = await asyncio.create_subprocess_exec("sh", "-c", "echo done", stdout=PIPE)
        code = await p.wait()
        await asyncio.sleep(0.05)
        return code, await p.stdout.read()

    assert run(loop, main()) == (0, b"done\n")


def test_transport_and_protocol_callbacks(loop):
    class Proto(asyncio.SubprocessProtocol):
        def __init__(self):
            self.events = []
            self.done = loop.create_future()

        def connection_made(self, transport):
            self.events.append("made")

        def pipe_data_received(self, fd, data):
            self.events.append(("data", fd, data))

        def pipe_connection_lost(self, fd, exc):
            self.events.append(("pipe_lost", fd))

        def process_exited(self):
            self.events.append("exited")

        def connection_lost(self, exc):
            self.events.append("lost")
            self.done.set_result(None)

    async def main():
        tr, proto = await loop.subprocess_exec(Proto, "sh", "-c", "printf x; exit 5", stdin=None, stderr=None)
        pid = tr.get_pid()
        assert tr.get_pipe_transport(1) is not None and tr.get_pipe_transport(0) is None
        await asyncio.wait_for(proto.done, 10)
        code = tr.get_returncode()
        tr.close()
        assert tr.is_closing()
        return pid, code, proto.events

    pid, code, events = run(loop, main())
    assert pid > 0 and code == 5
    assert events[0] == "made" and events[-1] == "lost"
    assert ("data", 1, b"x") in events and ("pipe_lost", 1) in events and "exited" in events


def test_close_kills_a_running_child(loop):
    async def main():
        tr, proto = await loop.subprocess_exec(asyncio.SubprocessProtocol, "sleep", "30", stdin=None,
                                               stdout=None, stderr=None)
        tr.close()
        for _ in range(500):
            if tr.get_returncode() is not None:
                break
            await asyncio.sleep(0.01)
        return tr.get_returncode()

    assert run(loop, main()) == -signal.SIGKILL


def exec_errors_reach_the_parent():
    """Whether subprocess.Popen itself raises for a program that does not exist. Always
    natively; not under qemu-user with Python 3.14 (make wheels-test's aarch64 runs), whose
    emulated vfork loses the child's exec error (the child exits 127): a loop can only pass
    on what Popen raises."""
    try:
        p = subprocess.Popen(["/nonexistent/program"])
    except FileNotFoundError:
        return True
    assert p.wait() == 127 and EMULATED, "Popen started a program that does not exist"
    return False


def test_argument_errors_and_missing_things(loop):
    async def main():
        errors = []
        for kwargs in ({"bufsize": 1}, {"text": True}, {"universal_newlines": True}, {"encoding": "utf-8"},
                       {"errors": "strict"}, {"shell": True}):
            with pytest.raises(ValueError) as info:
                await loop.subprocess_exec(asyncio.SubprocessProtocol, "true", **kwargs)
            errors.append(str(info.value))
        with pytest.raises(ValueError, match="shell must be True"):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, "true", shell=False)
        with pytest.raises(ValueError, match="cmd must be a string"):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, ["true"])
        if exec_errors_reach_the_parent():
            with pytest.raises(FileNotFoundError):
                await asyncio.create_subprocess_exec("/nonexistent/program")
            with pytest.raises(FileNotFoundError):
                await asyncio.create_subprocess_exec("true", cwd="/nonexistent/dir")
        return errors

    assert run(loop, main()) == ["bufsize must be 0", "text must be False", "universal_newlines must be False",
                                 "encoding must be None", "errors must be None", "shell must be False"]


def test_preexec_fn_cwd_env(loop, tmp_path):
    async def main():
        p = await asyncio.create_subprocess_shell("umask; pwd; echo $PYLOOP_X", stdout=PIPE,
                                                  preexec_fn=lambda: os.umask(0o077), cwd=str(tmp_path),
                                                  env={"PYLOOP_X": "yes", "PATH": os.environ["PATH"]})
        out, _ = await p.communicate()
        return out.decode().split()

    umask, cwd, x = run(loop, main())
    assert umask == "0077" and os.path.realpath(cwd) == os.path.realpath(str(tmp_path)) and x == "yes"


PASS_THROUGH = r"""
import os, sys
print(os.getpid() == os.getpgid(0), os.getsid(0) == os.getpid(), oct(os.umask(0)))
print(os.getuid(), os.getgid(), sorted(os.getgroups()))
print(open("/proc/self/cmdline").read().split("\0")[0])
print(os.read(int(sys.argv[1]), 100).decode())
for fd in (int(sys.argv[2]),):
    try:
        os.fstat(fd)
        print("open")
    except OSError:
        print("closed")
print(sys.stdin.read())
"""


@pytest.mark.parametrize("group_arg", ["start_new_session", "process_group"])
def test_popen_arguments_pass_through(loop, tmp_path, group_arg):
    # The arguments asyncio hands to subprocess.Popen unchanged, on both loops.
    if group_arg == "process_group" and sys.version_info < (3, 11):
        pytest.skip("process_group is new in Python 3.11")
    r_pass, w_pass = os.pipe()
    os.write(w_pass, b"passed")
    r_kept, w_kept = os.pipe()  # not in pass_fds: the child must not see it
    stdin_file = tmp_path / "in.txt"
    stdin_file.write_bytes(b"from a file")
    out_path = tmp_path / "out.txt"
    uid, gid = os.getuid(), os.getgid()
    extra = {"start_new_session": True} if group_arg == "start_new_session" else {"process_group": 0}
    if uid == 0:
        extra["extra_groups"] = [gid]

    async def main():
        with open(stdin_file, "rb") as fin, open(out_path, "wb") as fout:
            p = await asyncio.create_subprocess_exec(
                "python-by-another-name", "-c", PASS_THROUGH, str(r_pass), str(r_kept), executable=sys.executable,
                stdin=fin, stdout=fout.fileno(), stderr=asyncio.subprocess.DEVNULL, pass_fds=(r_pass,),
                close_fds=True, umask=0o027, restore_signals=True, user=uid, group=gid, **extra)
            return await p.wait()

    try:
        code = run(loop, main())
    finally:
        for fd in (r_pass, w_pass, r_kept, w_kept):
            os.close(fd)
    lines = out_path.read_text().splitlines()
    assert code == 0, lines
    own_group, own_session, umask = lines[0].split()
    assert own_group == "True" and umask == "0o27"
    assert own_session == ("True" if group_arg == "start_new_session" else "False")
    child_uid, child_gid = lines[1].split()[:2]
    assert (int(child_uid), int(child_gid)) == (uid, gid)
    if uid == 0:
        assert lines[1].endswith(f"[{gid}]")
    assert lines[2:] == ["python-by-another-name", "passed", "closed", "from a file"]


def test_restore_signals(loop):
    # Python ignores SIGPIPE; restore_signals gives the child the default back (and only then).
    # The child asks sigaction() (perl's %SIG starts as the dispositions it inherited): not
    # /proc/self/status, whose SigIgn under qemu-user (make wheels-test's aarch64 runs) is
    # the emulator's own, which handles every signal itself.
    if not shutil.which("perl"):
        missing("perl is not installed (Debian's perl-base)")

    async def ignored(restore):
        p = await asyncio.create_subprocess_exec("perl", "-e", "print $SIG{PIPE} // 'DEFAULT'", stdout=PIPE,
                                                 restore_signals=restore)
        out, _ = await p.communicate()
        assert out in (b"IGNORE", b"DEFAULT"), out
        return out == b"IGNORE"

    async def main():
        return await ignored(True), await ignored(False)

    assert run(loop, main()) == (False, True)


def os_threads():
    return len(os.listdir("/proc/self/task"))


def test_many_children_at_once_without_threads(loop, loop_name):
    async def main():
        # threads earlier tests left (executors, libuv's pool): Python's, and the OS's
        baseline = peak = (threading.active_count(), os_threads())

        def sample():
            nonlocal peak
            peak = (max(peak[0], threading.active_count()), max(peak[1], os_threads()))

        async def one(i):
            p = await asyncio.create_subprocess_exec("sh", "-c", f"sleep 0.2; echo {i}", stdout=PIPE)
            sample()
            out, _ = await p.communicate()
            sample()
            return int(out)

        got = await asyncio.gather(*(one(i) for i in range(100)))
        return got, peak, baseline

    got, peak, baseline = run(loop, main())
    assert got == list(range(100))
    print(f"{loop_name}: peak threads (Python, OS) {peak}, before {baseline}")
    if loop_name == "pyloop":
        assert peak == baseline  # no thread started, ever: neither Python's nor the OS's


def test_spawn_after_spawn_leaves_nothing_behind(loop):
    async def main():
        for _ in range(20):  # warm up: the loop's own lazily made fds
            await (await asyncio.create_subprocess_exec("true")).wait()
        gc.collect()
        before = len(os.listdir("/proc/self/fd"))
        tracemalloc.start()
        try:
            traced = tracemalloc.get_traced_memory()[0]
            for _ in range(1000):
                p = await asyncio.create_subprocess_exec("true")
                assert await p.wait() == 0
            del p
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - traced
        finally:
            tracemalloc.stop()
        return before, len(os.listdir("/proc/self/fd")), grown

    before, after, grown = run(loop, main())
    assert after <= before
    assert grown < 64 << 10  # bytes the Python allocator still holds: under 64 per spawn
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no zombie left to reap


def test_a_users_sigchld_handler_keeps_working(loop):
    async def main():
        seen = []
        loop.add_signal_handler(signal.SIGCHLD, seen.append, "chld")
        try:
            p = await asyncio.create_subprocess_exec("true")
            code = await p.wait()
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
        finally:
            loop.remove_signal_handler(signal.SIGCHLD)
        return code, seen

    code, seen = run(loop, main())
    assert code == 0 and seen


def test_a_transport_dropped_unclosed_warns(loop):
    # The exit watch holds the transport while the child runs (on both loops); once the
    # child is gone, the unclosed transport is collected with asyncio's ResourceWarning.
    async def main():
        tr, _ = await loop.subprocess_exec(asyncio.SubprocessProtocol, "sleep", "30", stdin=None, stdout=None,
                                           stderr=None)
        os.kill(tr.get_pid(), signal.SIGKILL)
        for _ in range(500):
            if tr.get_returncode() is not None:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        with pytest.warns(ResourceWarning, match="unclosed transport"):
            del tr
            gc.collect()

    run(loop, main())


FORKED = r"""
import asyncio, os, sys
sys.path.insert(0, sys.argv[2])
from conftest import LOOP_FACTORIES
parent = LOOP_FACTORIES[sys.argv[1]]()
parent.run_until_complete(asyncio.sleep(0))  # the parent has a loop running before the fork
pid = os.fork()
if pid == 0:
    code = 1
    try:
        lp = LOOP_FACTORIES[sys.argv[1]]()

        async def main():
            p = await asyncio.create_subprocess_exec("sh", "-c", "exit 4")
            return await p.wait()

        code = 0 if lp.run_until_complete(main()) == 4 else 2
        lp.close()
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
parent.close()
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_can_spawn_and_wait(loop_name):
    # In a fresh interpreter: forking this multi-threaded test process could deadlock.
    out = subprocess.run([sys.executable, "-c", FORKED, loop_name, os.path.dirname(__file__)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("steps", range(11))
def test_cancel_at_every_await_of_a_spawn(loop, steps):
    # create_subprocess_exec cancelled after 0..9 loop iterations (the last: spawned): asyncio kills the
    # child and waits for it before the CancelledError; a spawn that finished first
    # hands back a Process. Either way no child, zombie or fd is left.
    async def main():
        # the loop's lazily made fds (libuv opens one at its first pipe)
        await (await asyncio.create_subprocess_exec("true", stdout=PIPE)).communicate()
        before = len(os.listdir("/proc/self/fd"))
        task = asyncio.ensure_future(asyncio.create_subprocess_exec(
            "sleep", "30", stdin=PIPE, stdout=PIPE, stderr=PIPE))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        try:
            p = await task
        except asyncio.CancelledError:
            outcome = "cancelled"
        else:
            outcome = "spawned"
            p.kill()
            assert await p.wait() == -signal.SIGKILL
            p._transport.close()
        del task
        for _ in range(100):  # the pipes' closes land in later iterations
            if len(os.listdir("/proc/self/fd")) <= before:
                break
            await asyncio.sleep(0.01)
        return outcome, before, len(os.listdir("/proc/self/fd"))

    outcome, before, after = run(loop, main())
    # A spawn takes asyncio 9 loop iterations (its pipes' connections, then the waiter);
    # pyloop runs asyncio's subprocess code over its own pipes in as many.
    assert outcome == ("spawned" if steps >= 9 else "cancelled")
    assert after <= before
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # the sleep was killed and reaped


def test_cancel_wait_and_communicate(loop):
    async def main():
        p = await asyncio.create_subprocess_exec("sleep", "30", stdin=PIPE, stdout=PIPE)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(p.wait(), 0.05)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(p.communicate(b"x"), 0.05)
        assert p.returncode is None  # cancelled waits leave the child alone
        p.terminate()
        return await p.wait()

    assert run(loop, main()) == -signal.SIGTERM


def test_no_signal_reaches_a_reaped_pid(loop, loop_name, monkeypatch):
    # Between the reap of a child and the publication of its return code, kill() must not
    # call os.kill(): the PID may belong to another process by then. A callback queued at
    # the moment of the reap (the earliest any other code can run) kills the child; the
    # real os.waitpid/os.kill run, recorded. (Safety: every Python version.)
    real_waitpid, real_kill = os.waitpid, os.kill
    reaped, signalled, results = set(), [], []
    box = {}

    def waitpid(pid, options):
        got, status = real_waitpid(pid, options)
        proc = box.get("proc")
        if proc is not None and got == proc.pid and pid not in reaped:
            reaped.add(pid)
            results.append(proc.returncode)
            loop.call_soon_threadsafe(proc.kill)  # asyncio <= 3.13 reaps in a thread
        return got, status

    def kill(pid, sig):
        if pid in reaped:
            signalled.append((pid, sig))
        return real_kill(pid, sig)

    monkeypatch.setattr(os, "waitpid", waitpid)
    monkeypatch.setattr(os, "kill", kill)

    async def main():
        for _ in range(20):
            # The child exits when its stdin closes, after box holds it: a child that
            # exited before create_subprocess_exec returned was reaped unseen (CI, on
            # asyncio 3.11's watcher thread: 19 of 20).
            proc = box["proc"] = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import sys; sys.stdin.read()", stdin=asyncio.subprocess.PIPE,
                stdout=None, stderr=None)
            proc.stdin.close()
            assert await asyncio.wait_for(proc.wait(), 30) == 0
            await asyncio.sleep(0)  # the queued kill() runs
        return len(reaped)

    assert run(loop, main()) == 20
    if loop_name == "asyncio" and sys.version_info[:2] == (3, 13):
        return  # asyncio 3.13 calls os.kill() on it (3.14 checks the return code first)
    assert signalled == []


def test_a_slow_reader_bounds_the_pipe_buffer(loop):
    # A child writes 16 MiB; the reader takes it slowly. The StreamReader pauses the pipe
    # past twice its limit: what it buffers stays near that (asyncio: 128-196 KiB here),
    # as asyncio reads one chunk per event (pyloop: one per loop iteration).
    async def main():
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys\nfor _ in range(256): sys.stdout.buffer.write(b'x' * 65536)",
            stdout=PIPE, limit=64 * 1024)
        peak = total = 0
        while chunk := await p.stdout.read(16 * 1024):
            total += len(chunk)
            peak = max(peak, len(p.stdout._buffer))
            await asyncio.sleep(0)
            if total % (1 << 20) < 16 * 1024:
                await asyncio.sleep(0.001)
        await p.wait()
        return total, peak

    total, peak = run(loop, main())
    assert total == 16 << 20
    assert peak < 1 << 20, peak


def test_nothing_arrives_between_pause_reading_and_resume_reading(loop):
    # asyncio's pipe reads once per selector event, and pause_reading() cancels a read
    # already queued: from pause_reading() to resume_reading() the protocol gets nothing,
    # however many pause/resume cycles (a StreamReader's, here by hand) and however busy
    # the loop. pyloop once delivered a read it held at the pause and a new one at the
    # resume, before pipe_data_received could pause again: 256 KiB past the pause.
    size = 16 << 20

    class Slow(asyncio.SubprocessProtocol):
        def __init__(self):
            self.total = self.buffered = self.after_pause = self.pauses = 0
            self.paused = False
            self.exited = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport

        def pipe_data_received(self, fd, data):
            self.total += len(data)
            if self.paused:
                self.after_pause += len(data)
            self.buffered += len(data)
            if self.buffered > 128 * 1024 and not self.paused:
                self.paused = True
                self.pauses += 1
                self.transport.get_pipe_transport(1).pause_reading()

        def process_exited(self):
            self.exited.set_result(None)

    async def main():
        writer = f"import sys\nfor _ in range({size >> 16}): sys.stdout.buffer.write(b'x' * 65536)"
        tr, proto = await loop.subprocess_exec(Slow, sys.executable, "-c", writer, stdin=None, stderr=None)
        while proto.total < size:
            # The reader's task, slower than the child: the pipe fills up while it spins
            # (never an empty ready queue: every read is queued behind callbacks).
            for _ in range(100):
                await asyncio.sleep(0)
            if proto.paused:
                proto.buffered = 0
                proto.paused = False
                tr.get_pipe_transport(1).resume_reading()
        await asyncio.wait_for(proto.exited, 30)
        tr.close()
        return proto.total, proto.after_pause, proto.pauses

    total, after_pause, pauses = run(loop, main())
    assert total == size
    assert pauses > 10
    assert after_pause == 0


needs_child_watchers = pytest.mark.skipif(sys.version_info >= (3, 14), reason="asyncio 3.14 removed child watchers")


class _PolicysWatcher:
    """Sets a child watcher in asyncio's policy for the test (3.10-3.13; deprecated from
    3.12, hence the silenced warnings), and takes it out again."""

    def __init__(self, kind, loop=None):
        import warnings
        self._warnings = warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.watcher = getattr(asyncio, kind)()
            if loop is not None:
                self.watcher.attach_loop(loop)
            asyncio.get_event_loop_policy().set_child_watcher(self.watcher)

    def __enter__(self):
        return self.watcher

    def __exit__(self, *exc):
        with self._warnings.catch_warnings():
            self._warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.get_event_loop_policy().set_child_watcher(None)  # closes it


@needs_child_watchers
def test_a_users_fast_child_watcher_reaps_every_child(loop):
    # FastChildWatcher reaps every child with waitpid(-1) from its SIGCHLD handler; asyncio
    # hands it each child, and so does pyloop (its own pidfd would race the watcher's
    # waitpid, and the return code came out 255).
    async def main():
        one_by_one = []
        for i in range(10):
            p = await asyncio.create_subprocess_exec(sys.executable, "-c", f"import sys; sys.exit({i})")
            one_by_one.append(await asyncio.wait_for(p.wait(), 30))
        procs = [await asyncio.create_subprocess_exec("sh", "-c", f"exit {20 + i}") for i in range(10)]
        together = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), 30)
        return one_by_one, together

    with _PolicysWatcher("FastChildWatcher", loop):
        assert run(loop, main()) == (list(range(10)), list(range(20, 30)))


@needs_child_watchers
def test_a_users_watcher_not_attached_refuses_to_start_the_child(loop, tmp_path):
    # A SafeChildWatcher never attached to a loop is not active: asyncio raises before it
    # starts the child, and so does pyloop.
    marker = tmp_path / "started"

    async def main():
        with pytest.raises(RuntimeError) as info:
            await asyncio.create_subprocess_exec("touch", str(marker))
        return str(info.value)

    with _PolicysWatcher("SafeChildWatcher"):
        message = run(loop, main())
    assert message == "asyncio.get_child_watcher() is not activated, subprocess support is not installed."
    assert not marker.exists()


@needs_child_watchers
def test_asyncios_own_default_watchers_leave_pyloop_its_pidfds(loop, loop_name):
    # The watchers asyncio makes itself (ThreadedChildWatcher; PidfdChildWatcher from 3.12)
    # wait for one PID each, as pyloop's pidfd does: pyloop starts no thread for them.
    kind = "PidfdChildWatcher" if sys.version_info >= (3, 12) else "ThreadedChildWatcher"

    async def main():
        before = threading.active_count()
        p = await asyncio.create_subprocess_exec("sh", "-c", "read line; exit 3", stdin=PIPE)
        during = threading.active_count()  # the child waits for its stdin: still running
        p.stdin.close()
        return await asyncio.wait_for(p.wait(), 30), during - before

    with _PolicysWatcher(kind, loop if kind == "PidfdChildWatcher" else None):
        code, threads = run(loop, main())
    assert code == 3
    assert threads == (1 if loop_name == "asyncio" and kind == "ThreadedChildWatcher" else 0)


def test_kill_then_close_reaps_in_close_as_asyncio(loop, loop_name, caplog):
    # kill(), then close() once the child is a zombie: close()'s Popen.poll() reaps it
    # before the loop hears of the exit. asyncio 3.12+ (a pidfd watcher) then reports
    # return code 255 with its watcher's warning; before 3.12 asyncio's watcher thread,
    # blocked in waitpid(), reaped the child first, and the code is -9 with no warning.
    # pyloop once gave 3.11's warning on every version.
    async def main():
        p = await asyncio.create_subprocess_exec("sleep", "30")
        transport = p._transport
        p.kill()
        # Until it is a zombie (asyncio before 3.12: until its watcher thread, blocked in
        # waitpid(), has reaped it, which it does at once: else close() and the thread
        # race), without letting the loop run: the loop may not see the exit before
        # close().
        reaped_by_a_thread = loop_name == "asyncio" and sys.version_info < (3, 12)
        for _ in range(5000):
            try:
                with open(f"/proc/{p.pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z" and not reaped_by_a_thread:
                        break
            except (FileNotFoundError, ProcessLookupError):  # reaped
                break
            time.sleep(0.001)
        transport.close()
        return await asyncio.wait_for(p.wait(), 30), p.pid

    with caplog.at_level("WARNING", logger="asyncio"):
        code, pid = run(loop, main())
    warnings = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    if sys.version_info >= (3, 12):
        assert code == 255
        assert warnings == [f"child process pid {pid} exit status already read:  will report returncode 255"]
    else:
        assert code == -signal.SIGKILL
        assert warnings == []
