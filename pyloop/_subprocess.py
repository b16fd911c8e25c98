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
import subprocess

from asyncio import unix_events
from asyncio.log import logger

_POLL_DELAYS = (0.001, 0.005, 0.01, 0.05, 0.1)  # the fallback's waitpid polling, growing
_PIPE_SIZE = 256 << 10


def _format_pipe(fd):
    if fd == subprocess.PIPE:
        return "<pipe>"
    if fd == subprocess.STDOUT:
        return "<stdout>"
    return repr(fd)


def _reap(pid):
    """The exit status of a child that has exited, as asyncio reports it (a negative
    signal number for a signalled child); None if it is still running.

    The caller publishes it (transport._process_exited) in the same callback, before any
    other code runs: once the PID is reaped the kernel may give it to another process,
    and send_signal()/kill() (os.kill on 3.14+) must see the return code by then."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        # Somebody else reaped it (a user's own SIGCHLD handler): asyncio says the same.
        logger.warning("Unknown child process pid %d, will report returncode 255", pid)
        return 255
    if got == 0:
        return None
    return os.waitstatus_to_exitcode(status)


class SubprocessMethods:
    """Mixed into pyloop.Loop."""

    def _log_subprocess(self, msg, stdin, stdout, stderr):
        info = [msg]
        if stdin is not None:
            info.append(f"stdin={_format_pipe(stdin)}")
        if stdout is not None and stderr == subprocess.STDOUT:
            info.append(f"stdout=stderr={_format_pipe(stdout)}")
        else:
            if stdout is not None:
                info.append(f"stdout={_format_pipe(stdout)}")
            if stderr is not None:
                info.append(f"stderr={_format_pipe(stderr)}")
        logger.debug(" ".join(info))

    async def subprocess_shell(self, protocol_factory, cmd, *, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=False, shell=True, bufsize=0,
                               encoding=None, errors=None, text=None, **kwargs):
        """Run cmd through the shell; return (transport, protocol)."""
        if not isinstance(cmd, (bytes, str)):
            raise ValueError("cmd must be a string")
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if not shell:
            raise ValueError("shell must be True")
        _check_popen_args(bufsize, text, encoding, errors)
        protocol = protocol_factory()
        debug_log = None
        if self.get_debug():
            debug_log = f"run shell command {cmd!r}"  # not the arguments: they may hold secrets
            self._log_subprocess(debug_log, stdin, stdout, stderr)
        transport = await self._make_subprocess_transport(protocol, cmd, True, stdin, stdout, stderr, bufsize,
                                                          **kwargs)
        if debug_log is not None:
            logger.info("%s: %r", debug_log, transport)
        return transport, protocol

    async def subprocess_exec(self, protocol_factory, program, *args, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=False,
                              shell=False, bufsize=0, encoding=None, errors=None, text=None, **kwargs):
        """Run program with args; return (transport, protocol)."""
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if shell:
            raise ValueError("shell must be False")
        _check_popen_args(bufsize, text, encoding, errors)
        protocol = protocol_factory()
        debug_log = None
        if self.get_debug():
            debug_log = f"execute program {program!r}"
            self._log_subprocess(debug_log, stdin, stdout, stderr)
        transport = await self._make_subprocess_transport(protocol, (program,) + args, False, stdin, stdout,
                                                          stderr, bufsize, **kwargs)
        if debug_log is not None:
            logger.info("%s: %r", debug_log, transport)
        return transport, protocol

    async def _make_subprocess_transport(self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None,
                                         **kwargs):
        self._check_closed()
        waiter = self.create_future()
        transport = unix_events._UnixSubprocessTransport(self, protocol, args, shell, stdin, stdout, stderr,
                                                         bufsize, waiter=waiter, extra=extra, **kwargs)
        self._watch_child(transport.get_pid(), transport)
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
            returncode = _reap(pid)
            if returncode is None:  # not possible once the pidfd is readable; be safe
                return self._poll_child(pid, transport, 0)
            transport._process_exited(returncode)

        self._add_poll(pidfd, False, exited, (), "process")

    def _poll_child(self, pid, transport, attempt):
        returncode = _reap(pid)
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


def _check_popen_args(bufsize, text, encoding, errors):
    if bufsize != 0:
        raise ValueError("bufsize must be 0")
    if text:
        raise ValueError("text must be False")
    if encoding is not None:
        raise ValueError("encoding must be None")
    if errors is not None:
        raise ValueError("errors must be None")
