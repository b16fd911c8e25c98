"""Subprocesses for pyloop.Loop: subprocess_exec() and subprocess_shell().

The transport is, for now, asyncio's own (unix_events' _UnixSubprocessTransport over
base_subprocess: subprocess.Popen, whose fork and exec run in C, and the child's pipes
through connect_read_pipe/connect_write_pipe), so every argument Popen takes behaves
as on asyncio, preexec_fn included. What differs is how the child's exit is seen:
asyncio's child watcher starts a thread per child where it has no pidfd (3.8-3.11 by
default), while pyloop waits on a pidfd (os.pidfd_open) in its own epoll: no thread,
and SIGCHLD is left alone (a user's handler keeps working). Where pidfd_open is
unavailable, waitpid(WNOHANG) is polled from a timer, still without a thread.
"""

import fcntl
import os
import signal

from asyncio import base_events, unix_events
from asyncio.log import logger

from . import _compat, _core, _trace

_POLL_DELAYS = (0.001, 0.005, 0.01, 0.05, 0.1)  # the fallback's waitpid polling, growing
_PIPE_SIZE = 256 << 10


class _UnixSubprocessTransport(unix_events._UnixSubprocessTransport):
    """asyncio's subprocess transport, which never signals a child it knows has exited:
    once reaped, its PID may belong to another process. asyncio 3.13 calls os.kill()
    without that check (3.14 has it; before 3.13 Popen.send_signal polls first)."""

    _traced_start = None  # tracing (pyloop._trace): when it was spawned

    def _process_exited(self, returncode):
        first = self._returncode is None
        super()._process_exited(returncode)  # (first: nothing of the trace's may stand in its way)
        if first and self._traced_start is not None:
            _trace.process_exited(self._loop, self._traced_start, self._pid,
                                  self._proc.args if self._proc else None, returncode)

    def send_signal(self, signal):
        self._check_proc()
        if self._returncode is not None:
            return
        super().send_signal(signal)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)


def _reap(pid, transport, by_pidfd):
    """The exit status of a child that has exited, as asyncio reports it (a negative
    signal number for a signalled child); None if it is still running.

    The caller publishes it (transport._process_exited) in the same callback, before any
    other code runs: once the PID is reaped the kernel may give it to another process,
    and send_signal()/kill() (os.kill on 3.14+) must see the return code by then."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return _reaped_elsewhere(pid, transport, by_pidfd)
    if got == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def _reaped_elsewhere(pid, transport, by_pidfd):
    """Somebody reaped the child first (a user's own SIGCHLD handler; the transport's own
    close(), whose Popen.poll() reaps a child that was killed): what asyncio's default
    child watcher says then. From 3.12, where pidfds work, its watcher waits on a pidfd
    as pyloop does: return code 255, with that watcher's warning. Before 3.12 (and
    wherever pidfds do not work) it is a thread blocked in waitpid() for the child, which
    reaps it the moment it exits: a Popen.poll() after that finds nothing, so when the
    transport's own Popen has the status, that is the return code asyncio gets."""
    if by_pidfd and _compat.PY312:
        logger.warning("child process pid %d exit status already read:  will report returncode 255", pid)
        return 255
    popen = getattr(transport, "_proc", None)
    if popen is not None and popen.returncode is not None:
        return popen.returncode
    logger.warning("Unknown child process pid %d, will report returncode 255", pid)
    return 255


def _users_child_watcher():
    """3.10-3.13: the child watcher the current policy holds, when asyncio would use it and
    pyloop's pidfd cannot stand in for it; else None.

    asyncio (before 3.14) hands every child to the policy's watcher. The ones asyncio makes
    on its own (ThreadedChildWatcher; PidfdChildWatcher on 3.12+, which needs no loop) each
    wait for one PID, as pyloop's pidfd does, without a thread: pyloop keeps its own then.
    Any other watcher was chosen by the user, and may be one that reaps every child
    (FastChildWatcher's waitpid(-1), which a pidfd would race) or one not yet attached to a
    loop (asyncio refuses to start the child): pyloop does with it what asyncio does."""
    if _compat.PY314:
        return None
    watcher = getattr(_compat.get_event_loop_policy(), "_watcher", None)  # asyncio's Unix policy
    if watcher is None or type(watcher) is unix_events.ThreadedChildWatcher:
        return None
    if _compat.PY312 and type(watcher) is unix_events.PidfdChildWatcher:
        return None
    return watcher


class SubprocessMethods:
    """Mixed into pyloop.Loop."""

    # asyncio's own subprocess_exec/subprocess_shell (argument checks, debug logging,
    # for each Python version), over pyloop's _make_subprocess_transport. Being asyncio's
    # code, blocking-call detectors (blockbuster) that allow Popen's pipe read inside
    # them allow it on pyloop too.
    subprocess_exec = base_events.BaseEventLoop.subprocess_exec
    subprocess_shell = base_events.BaseEventLoop.subprocess_shell
    _log_subprocess = base_events.BaseEventLoop._log_subprocess

    @property
    def _debug(self):  # what asyncio's methods read
        return self.get_debug()

    async def _make_subprocess_transport(self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None,
                                         **kwargs):
        self._check_closed()
        watcher = _users_child_watcher()
        if watcher is None:
            return await self._start_subprocess(self._watch_child, protocol, args, shell, stdin, stdout, stderr,
                                                bufsize, extra, kwargs)
        # asyncio 3.10-3.13's unix_events, step by step (before 3.12 it uses what the
        # watcher's __enter__ returns)
        with watcher as entered:
            if not _compat.PY312:
                watcher = entered
            if not watcher.is_active():
                raise RuntimeError("asyncio.get_child_watcher() is not activated, "
                                   "subprocess support is not installed.")

            def watch(pid, transport):
                watcher.add_child_handler(pid, self._child_watcher_callback, transport)

            return await self._start_subprocess(watch, protocol, args, shell, stdin, stdout, stderr, bufsize, extra,
                                                kwargs)

    async def _start_subprocess(self, watch, protocol, args, shell, stdin, stdout, stderr, bufsize, extra, kwargs):
        waiter = self.create_future()
        started = _trace.process_started() if _core.trace_on(self) else None
        transport = _UnixSubprocessTransport(self, protocol, args, shell, stdin, stdout, stderr, bufsize,
                                             waiter=waiter, extra=extra, **kwargs)
        transport._traced_start = started
        watch(transport.get_pid(), transport)
        _widen_pipes(transport._proc)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transport.close()
            await transport._wait()
            raise
        return transport

    def _child_watcher_callback(self, pid, returncode, transport):
        # asyncio's: a watcher may call it from another thread (or a signal handler);
        # skip one iteration for the callbacks already queued.
        self.call_soon_threadsafe(self.call_soon, transport._process_exited, returncode)

    def _watch_child(self, pid, transport):
        """Tell transport when the child exits (asyncio's child watcher's job)."""
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            return self._poll_child(pid, transport, 0)
        self._child_pidfds[pidfd] = pid

        def exited():
            self._remove_poll(pidfd, False)
            del self._child_pidfds[pidfd]
            os.close(pidfd)
            returncode = _reap(pid, transport, True)
            if returncode is None:  # not possible once the pidfd is readable; be safe
                return self._poll_child(pid, transport, 0)
            transport._process_exited(returncode)

        self._add_poll(pidfd, False, exited, (), "process")

    def _poll_child(self, pid, transport, attempt):
        returncode = _reap(pid, transport, False)
        if returncode is not None:
            transport._process_exited(returncode)
            return
        delay = _POLL_DELAYS[min(attempt, len(_POLL_DELAYS) - 1)]
        self.call_later(delay, self._poll_child, pid, transport, attempt + 1)

    def _close_child_watches(self):
        for pidfd in list(self._child_pidfds):
            os.close(pidfd)
        self._child_pidfds.clear()


def _widen_pipes(proc):
    """Gives the child's pipes a 256 KiB kernel buffer instead of Linux's 64 KiB: the
    size of the loop's read buffer, so one read takes what the pipe holds. Measured
    (bench/procs.py pipe 1000): 64 KiB pipes make a child writing a lot wait on the loop
    after every 64 KiB (2.4x the time), 1 MiB ones let the data fall out of the CPU's
    cache before it is read (1.4x). The child still sees ordinary pipes."""
    size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if size is None:
        return
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is None:
            continue
        try:
            fcntl.fcntl(f.fileno(), size, _PIPE_SIZE)
        except OSError:  # over the per-user pipe allowance, or not a pipe: keep what it is
            pass
