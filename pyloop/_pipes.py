"""Pipes for pyloop.Loop: connect_read_pipe() and connect_write_pipe().

The transports are, for now, asyncio's own Unix pipe transports (unix_events'
_UnixReadPipeTransport and _UnixWritePipeTransport), running on pyloop's C++ readers and
writers exactly as they run on asyncio's selector, so their semantics are each Python
version's asyncio's: EOF, pause/resume, water marks, write_eof, abort, the read end of a
write pipe going away, a pty's EIO. Issue 8's uv_pipe transports in C++ replace them.
"""

from asyncio import unix_events
from asyncio.log import logger


class PipeMethods:
    """Mixed into pyloop.Loop."""

    # The selector loop's internal reader/writer API that asyncio's pipe transports use.
    def _add_reader(self, fd, callback, *args):
        self._add_poll(fd, False, callback, args)

    def _remove_reader(self, fd):
        return self._remove_poll(fd, False)

    def _add_writer(self, fd, callback, *args):
        self._add_poll(fd, True, callback, args)

    def _remove_writer(self, fd):
        return self._remove_poll(fd, True)

    async def connect_read_pipe(self, protocol_factory, pipe):
        """Read from pipe (a pipe, FIFO, socket or character device file object)."""
        return await self._connect_pipe(unix_events._UnixReadPipeTransport, "Read", protocol_factory, pipe)

    async def connect_write_pipe(self, protocol_factory, pipe):
        """Write to pipe (a pipe, FIFO, socket or character device file object)."""
        return await self._connect_pipe(unix_events._UnixWritePipeTransport, "Write", protocol_factory, pipe)

    async def _connect_pipe(self, transport_class, kind, protocol_factory, pipe):
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = transport_class(self, pipe, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        if self.get_debug():
            logger.debug("%s pipe %r connected: (%r, %r)", kind, pipe.fileno(), transport, protocol)
        return transport, protocol
