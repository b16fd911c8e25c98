"""The loop's sock_* methods: non-blocking socket operations awaited on the loop.

Each operation is tried at once; if the kernel is not ready it waits for the fd
through the core's uv_poll (a reader or writer Handle) and tries again.
"""

import errno
import os
import socket

from asyncio import exceptions

from . import _core, _dns

try:
    import ssl
except ImportError:  # pragma: no cover
    ssl = None

_SENDFILE_CHUNK = 256 * 1024
_OFF_MAX = 2**63 - 1
from ._compat import PY313 as _PY313, PY314 as _PY314


def check_ssl_socket(sock):
    if ssl is not None and isinstance(sock, ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def _check_socket(sock, debug=False):
    check_ssl_socket(sock)
    if debug and sock.gettimeout() != 0:  # asyncio's debug check, before any use
        raise ValueError("the socket must be non-blocking")
    if sock.fileno() == -1:  # what the socket call would raise on it (asyncio makes the call)
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    # asyncio checks this in debug mode only; a blocking socket would block the
    # whole loop, so pyloop always refuses it (docs/api.md).
    if sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")


# sock_recv, sock_recv_into and sock_sendall are C++ (cpp/net/sock_wait.cpp): the
# call is tried at once, and only a wait goes through a SockOp.
_core.sock_setup(socket.socket, _check_socket)
_sock_recv = _core.sock_recv
_sock_recv_into = _core.sock_recv_into
_sock_sendall = _core.sock_sendall
_sock_recvfrom = _core.sock_recvfrom
_sock_recvfrom_into = _core.sock_recvfrom_into
_sock_sendto = _core.sock_sendto
_SockOp = _core.SockOp


class SocketMethods:
    """Mixed into pyloop.Loop."""

    async def _sock_wait(self, sock, writer, attempt, try_first=True):
        """Call attempt() until it stops raising BlockingIOError; return its result.
        With try_first false, the first call waits for the fd to be ready."""
        if try_first:
            try:
                return attempt()
            except (BlockingIOError, InterruptedError):
                pass
        fut = self.create_future()

        def ready():
            if fut.done():
                return
            try:
                result = attempt()
            except (BlockingIOError, InterruptedError):
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        self._check_closed()
        fd = self._ensure_fd_no_transport(sock.fileno())
        handle = _core.make_handle(self, ready, ())
        _core.add_poll(self, fd, writer, handle, "sock")
        try:
            return await fut
        finally:
            # Unless someone else's callback replaced ours on this fd meanwhile.
            if not handle.cancelled() and not self.is_closed():
                _core.remove_poll(self, fd, writer)
            # The future holds an error whose traceback holds this frame and ready()'s,
            # whose cell holds the future: no cycle for the collector to find.
            fut = None

    async def sock_recv(self, sock, n):
        """Receive up to n bytes from the non-blocking socket."""
        op = _sock_recv(self, sock, n)  # what is there already comes without a wait
        if op.__class__ is not _SockOp:
            return op
        return await op  # (a cancelled or closed await stops the op's wait)

    async def sock_recv_into(self, sock, buf):
        """Receive into buf; return the number of bytes received."""
        op = _sock_recv_into(self, sock, buf)
        if op.__class__ is not _SockOp:
            return op
        return await op

    async def sock_recvfrom(self, sock, bufsize):
        """Receive a datagram: (data, address)."""
        op = _sock_recvfrom(self, sock, bufsize)
        if op.__class__ is not _SockOp:
            if op is NotImplemented:  # not AF_INET/AF_INET6, or arguments for the socket module to judge
                return await self._sock_wait(sock, False, lambda: sock.recvfrom(bufsize))
            return op
        return await op

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        """Receive a datagram into buf: (nbytes, address)."""
        nbytes = nbytes or len(buf)
        op = _sock_recvfrom_into(self, sock, buf, nbytes)
        if op.__class__ is not _SockOp:
            if op is NotImplemented:  # not AF_INET/AF_INET6, or arguments for the socket module to judge
                return await self._sock_wait(sock, False, lambda: sock.recvfrom_into(buf, nbytes))
            return op
        return await op

    async def sock_sendall(self, sock, data):
        """Send all of data; returns None once the kernel has taken every byte."""
        op = _sock_sendall(self, sock, data)  # most sends go whole at once
        if op is None:
            return None
        return await op

    async def sock_sendto(self, sock, data, address):
        """Send a datagram to address; return the number of bytes sent."""
        op = _sock_sendto(self, sock, data, address)
        if op.__class__ is not _SockOp:
            if op is NotImplemented:  # an address to resolve, a Unix path, odd arguments
                return await self._sock_wait(sock, True, lambda: sock.sendto(data, socket.MSG_NOSIGNAL, address))
            return op
        return await op

    async def sock_connect(self, sock, address):
        """Connect the socket, resolving host names through the loop's getaddrinfo."""
        _check_socket(sock, self.get_debug())
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            infos = await _dns.ensure_resolved(self, address, sock.family, sock.type, sock.proto)
            if not infos:
                raise OSError(f"getaddrinfo({address[0]!r}) returned empty list")
            address = infos[0][4]
        try:
            sock.connect(address)
            return None
        except (BlockingIOError, InterruptedError):
            pass

        def check():
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == errno.EINPROGRESS:
                raise BlockingIOError
            if err:
                raise OSError(err, f"Connect call failed {address}")
            return None

        return await self._sock_wait(sock, True, check, try_first=False)

    async def sock_accept(self, sock):
        """Accept a connection: (conn, address), conn non-blocking."""
        _check_socket(sock, self.get_debug())

        def attempt():
            conn, addr = sock.accept()
            conn.setblocking(False)
            return conn, addr

        return await self._sock_wait(sock, False, attempt)

    async def sock_sendfile(self, sock, file, offset=0, count=None, *, fallback=True):
        """Send a file over a stream socket: os.sendfile (zero-copy) when the file
        allows it, else read-and-send when fallback is true."""
        self._check_closed()
        _check_socket(sock, self.get_debug())
        _check_sendfile_params(sock, file, offset, count)
        try:
            return await self._sendfile_native(sock, file, offset, count)
        except exceptions.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sendfile_fallback(sock, file, offset, count)

    async def _sendfile_native(self, sock, file, offset, count):
        try:
            fileno = file.fileno()
            size = _core.file_size(fileno)
        except (AttributeError, OSError, ValueError) as exc:
            raise exceptions.SendfileNotAvailableError("not a regular file") from exc
        if not (count or size):
            return 0
        # What asyncio's os.sendfile call raises (3.13+ clamps the block it asks for).
        if offset > _OFF_MAX or (count and count > _OFF_MAX and not _PY313):
            raise OverflowError("Python int too large to convert to C long")
        sent_total = 0

        def attempt():
            nonlocal sent_total
            while True:
                left = (count - sent_total) if count else _SENDFILE_CHUNK
                if left <= 0:
                    return sent_total
                try:
                    sent = _core.sendfile(sock.fileno(), fileno, offset + sent_total, min(left, _SENDFILE_CHUNK))
                except (BlockingIOError, InterruptedError):
                    raise
                except OSError as exc:
                    if sent_total == 0:
                        raise exceptions.SendfileNotAvailableError("os.sendfile call failed") from exc
                    if exc.errno == errno.ENOTCONN:
                        raise ConnectionError("socket is not connected", errno.ENOTCONN) from exc
                    raise
                if sent == 0:
                    return sent_total
                sent_total += sent

        try:
            return await self._sock_wait(sock, True, attempt)
        finally:
            if sent_total or _PY314:  # 3.14 moves the file to where sending ended, always
                file.seek(offset + sent_total)

    async def _sendfile_fallback(self, sock, file, offset, count):
        return await send_file_chunks(self, file, offset, count, _SENDFILE_CHUNK,
                                      lambda chunk: self.sock_sendall(sock, chunk))


async def send_file_chunks(loop, file, offset, count, blocksize, send):
    """Read the file from offset (count bytes, or to its end) in an executor and await
    send(chunk) for each chunk. Returns the bytes sent; the file position ends after them."""
    if offset:
        file.seek(offset)
    blocksize = min(count, blocksize) if count else blocksize
    buf = bytearray(blocksize)
    total = 0
    try:
        while True:
            want = min(blocksize, count - total) if count else blocksize
            if want <= 0:
                return total
            view = memoryview(buf)[:want]
            read = await loop.run_in_executor(None, file.readinto, view)
            if not read:
                return total
            await send(view[:read])
            total += read
    finally:
        if total > 0 and hasattr(file, "seek"):
            file.seek(offset + total)


def _check_sendfile_params(sock, file, offset, count):
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if sock.type != socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")
    if not isinstance(offset, int):
        raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
    if offset < 0:
        raise ValueError(f"offset must be a non-negative integer (got {offset!r})")
