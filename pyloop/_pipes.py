"""Pipes for pyloop.Loop: connect_read_pipe() and connect_write_pipe().

The transports are C++ (`pyloop.ReadPipeTransport`, `pyloop.WritePipeTransport`, the
stream transport's machinery over a uv_pipe on a duplicate of the pipe's fd) with the
semantics of asyncio's Unix pipe transports: EOF (eof_received, then connection_lost),
pause/resume, water marks, write_eof closing the pipe, abort, a write pipe whose reader
goes away (connection_lost(None), or BrokenPipeError with data still buffered), a pty's
EIO at the end (connection_lost(OSError(EIO)) with no exception handler call).
"""

import os
import stat

from asyncio.log import logger

from . import _core


class PipeMethods:
    """Mixed into pyloop.Loop."""

    async def connect_read_pipe(self, protocol_factory, pipe):
        """Read from pipe (a pipe, FIFO, socket or character device file object)."""
        protocol = protocol_factory()
        mode = os.fstat(pipe.fileno()).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            raise ValueError("Pipe transport is for pipes/sockets only.")
        return await self._connect_pipe(pipe, protocol, False)

    async def connect_write_pipe(self, protocol_factory, pipe):
        """Write to pipe (a pipe, FIFO, socket or character device file object)."""
        protocol = protocol_factory()
        mode = os.fstat(pipe.fileno()).st_mode
        if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            raise ValueError("Pipe transport is only for pipes, sockets and character devices")
        return await self._connect_pipe(pipe, protocol, True)

    async def _connect_pipe(self, pipe, protocol, write):
        self._check_closed()
        os.set_blocking(pipe.fileno(), False)
        waiter = self.create_future()
        transport = _core.pipe_transport(self, pipe, protocol, {"pipe": pipe}, write)
        # Runs after connection_made (the transport scheduled it first).
        self.call_soon(lambda: waiter.done() or waiter.set_result(None))
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        if self.get_debug():
            logger.debug("%s pipe %r connected: (%r, %r)", "Write" if write else "Read", pipe.fileno(), transport,
                         protocol)
        return transport, protocol
