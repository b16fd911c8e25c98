"""Stream connections and servers for pyloop.Loop: create_connection, create_server,
their Unix-socket twins, connect_accepted_socket, and the Server object.

Sockets are made, bound and connected here with the socket module (asyncio's
semantics and error messages); the connected socket is then handed to the C++
StreamTransport (pyloop._core.stream_transport), which moves the bytes with libuv.
"""

import builtins
import collections.abc
import errno
import itertools
import os
import socket
import sys
import weakref
from asyncio import constants, events, exceptions, protocols, staggered, tasks, trsock
from asyncio import shield as asyncio_shield
from asyncio.log import logger

from . import _core, _dns, _tls
from ._sock import check_ssl_socket, send_file_chunks

from ._compat import PY312 as _PY312, PY313 as _PY313, PY314 as _PY314


def _exception_group():
    """ExceptionGroup: the builtin (3.11+), or on 3.10 the `exceptiongroup` backport, a
    dependency of pyloop there (the one asyncio's all_errors needs; pytest and AnyIO
    raise the same class on 3.10)."""
    group = getattr(builtins, "ExceptionGroup", None)
    if group is None:
        from exceptiongroup import ExceptionGroup as group
    return group

_HAS_IPV6 = hasattr(socket, "AF_INET6")
_ACCEPT_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def _interleave(infos, first_family_count=1):
    """Alternate address families (RFC 8305), starting with the first one seen."""
    by_family = collections.OrderedDict()
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    lists = list(by_family.values())
    out = []
    if first_family_count > 1:
        out.extend(lists[0][:first_family_count - 1])
        lists[0] = lists[0][first_family_count - 1:]
    for group in itertools.zip_longest(*lists):
        out.extend(x for x in group if x is not None)
    return out


def _transport_extra(sock, peername=None):
    extra = {"socket": trsock.TransportSocket(sock)}
    try:
        extra["sockname"] = sock.getsockname()
    except OSError:
        extra["sockname"] = None
    if peername is not None:
        extra["peername"] = peername
    else:
        try:
            extra["peername"] = sock.getpeername()
        except OSError:
            extra["peername"] = None
    return extra


async def _begin_serving(server, start_serving):
    """Start accepting (when asked); a server that cannot start closes its sockets."""
    if not start_serving:
        return
    try:
        server._start_serving()
    except BaseException:
        server.close()
        raise
    await tasks.sleep(0)


class Server(events.AbstractServer):
    """What create_server() returns (asyncio.Server's interface)."""

    def __init__(self, loop, sockets, protocol_factory, backlog, unix_paths=None, ssl=None,
                 tls_timeouts=(None, None)):
        self._loop = loop
        self._ssl = ssl  # an SSLContext: connections speak TLS (server side)
        self._tls_timeouts = tls_timeouts  # (handshake, shutdown)
        self._sockets = sockets
        self._protocol_factory = protocol_factory
        self._backlog = backlog
        self._active_count = 0
        # The connections (asyncio keeps a WeakSet): transports link themselves into
        # ClientSet (core/net/server.cpp); anything else passed to _attach goes to
        # _other_clients, a WeakSet made when first needed.
        self._clients = _core.ClientSet()
        self._other_clients = None
        self._waiters = []
        self._serving = False
        self._serving_forever_fut = None
        self._unix_paths = unix_paths or {}  # listening Unix socket -> (path, inode) to remove on close

    def __repr__(self):
        return f"<{type(self).__name__} sockets={self.sockets!r}>"

    # transport=None: asyncio 3.12's signatures (code that counts a connection by hand)
    def _attach(self, transport=None):
        self._active_count += 1
        if transport is not None and not self._clients.add(transport):
            if self._other_clients is None:
                self._other_clients = weakref.WeakSet()
            self._other_clients.add(transport)

    def _detach(self, transport=None):
        self._active_count -= 1
        if transport is not None and not self._clients.discard(transport) and self._other_clients is not None:
            self._other_clients.discard(transport)
        if self._active_count == 0 and self._sockets is None:
            self._wakeup()

    def _wakeup(self):
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def _start_serving(self):
        if self._serving:
            return
        self._serving = True
        for sock in self._sockets:
            sock.listen(self._backlog)
            self._loop._start_accepting(self, sock)

    def get_loop(self):
        return self._loop

    def is_serving(self):
        return self._serving

    @property
    def sockets(self):
        if self._sockets is None:
            return ()
        return tuple(trsock.TransportSocket(s) for s in self._sockets)

    def close(self):
        sockets = self._sockets
        if sockets is None:
            return
        self._sockets = None
        for sock in sockets:
            self._loop._stop_accepting(sock)
            unix = self._unix_paths.pop(sock, None)
            sock.close()
            if unix is not None:
                _remove_unix_socket_file(*unix)
        self._serving = False
        fut = self._serving_forever_fut
        if fut is not None and not fut.done():
            fut.cancel()
            self._serving_forever_fut = None
        if self._active_count == 0:
            self._wakeup()

    def _all_clients(self):
        return list(self._clients) + list(self._other_clients or ())

    def close_clients(self):
        for transport in self._all_clients():
            transport.close()

    def abort_clients(self):
        for transport in self._all_clients():
            transport.abort()

    async def start_serving(self):
        self._start_serving()
        await tasks.sleep(0)

    async def serve_forever(self):
        if self._serving_forever_fut is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._sockets is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._start_serving()
        self._serving_forever_fut = self._loop.create_future()
        try:
            await self._serving_forever_fut
        except exceptions.CancelledError:
            try:
                self.close()
                if _PY314:  # asyncio 3.14 closes the clients too, so that wait_closed() ends
                    self.close_clients()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever_fut = None

    async def wait_closed(self):
        """Wait until the server is closed and (3.12+) every connection is gone."""
        if self._waiters is None or (not _PY312 and self._sockets is None):
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()
        await self.wait_closed()


def remove_stale_unix_socket(path):
    """Remove a socket file left at path by an earlier server (not in the abstract
    namespace, and only if it is a socket), as asyncio does before binding. The
    system calls are made in C++ (see cpp/net/sock_ops.hpp)."""
    if not path or path[0] in (0, "\x00"):
        return
    try:
        _core.remove_stale_socket_file(os.fsdecode(path))
    except OSError as err:
        logger.error("Unable to check or remove stale UNIX socket %r: %r", path, err)


def _remove_unix_socket_file(path, inode):
    # asyncio 3.13 removes the file on close if it is still the one the server bound.
    try:
        _core.unlink_if_inode(os.fsdecode(path), inode)
    except OSError as exc:
        logger.error("Unable to clean up listening UNIX socket %r: %r", path, exc)


class NetworkMethods:
    """Mixed into pyloop.Loop."""

    # ---- connecting ------------------------------------------------------------

    async def _resolve_stream(self, address, family=0, proto=0, flags=0):
        infos = await _dns.ensure_resolved(self, address, family, socket.SOCK_STREAM, proto, flags)
        if not infos:
            raise OSError("getaddrinfo() returned empty list")
        return infos

    async def _connect_sock(self, exceptions, addr_info, local_addr_infos=None):
        mine = []
        exceptions.append(mine)
        family, type_, proto, _, address = addr_info
        sock = None
        try:
            sock = socket.socket(family=family, type=type_, proto=proto)
            sock.setblocking(False)
            if local_addr_infos is not None:
                for lfamily, _, _, _, laddr in local_addr_infos:
                    if lfamily != family:
                        continue
                    try:
                        sock.bind(laddr)
                        break
                    except OSError as exc:
                        mine.append(OSError(exc.errno, f"error while attempting to bind on address "
                                                       f"{laddr!r}: {exc.strerror.lower()}"))
                else:
                    if mine:
                        raise mine.pop()
                    raise OSError(f"no matching local address with family={family} found")
            await self.sock_connect(sock, address)
            return sock
        except OSError as exc:
            mine.append(exc)
            if sock is not None:
                sock.close()
            raise
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        finally:
            # The errors' tracebacks hold this frame: no cycle through the lists (3.12+).
            exceptions = mine = None

    def _stream_transport(self, sock, protocol, own, server=None, peername=None, ssl=None, tls=None,
                          accepted=False):
        """A C++ stream transport over sock for protocol: (transport to return, waiter).
        With ssl, asyncio's SSLProtocol sits between (tls: server_side,
        server_hostname, handshake and shutdown timeouts), the waiter resolves after the
        handshake and the TLS transport is returned. Without, the waiter resolves after
        connection_made. own: the loop made sock (libuv takes its fd); else it is the
        user's (libuv works on a duplicate; the user's object is closed with the
        transport)."""
        waiter = None if accepted else self.create_future()
        if ssl:
            sslcontext = None if isinstance(ssl, bool) else ssl  # None: SSLProtocol makes a default one
            ssl_protocol = _tls.make_ssl_protocol(self, protocol, sslcontext, waiter, *tls, accepted=accepted)
            raw = _core.stream_transport(self, sock, ssl_protocol, _transport_extra(sock, peername), server, own)
            transport = ssl_protocol._app_transport
        else:
            raw = transport = _core.stream_transport(self, sock, protocol, _transport_extra(sock, peername), server,
                                                     own)
            # Runs after connection_made (the transport scheduled it first).
            self.call_soon(lambda: waiter.done() or waiter.set_result(None))
        return transport, waiter

    async def _make_stream_transport(self, sock, protocol_factory, own, ssl=None, tls=None):
        try:
            sock.setblocking(False)
            protocol = protocol_factory()
            transport, waiter = self._stream_transport(sock, protocol, own, ssl=ssl, tls=tls)
        except BaseException:
            if _PY314 or own:  # asyncio 3.14 closes the user's socket too (gh-153133)
                sock.close()
            raise
        try:
            await waiter
        except BaseException:
            transport.close()
            waiter = None  # the future holds the exception, whose traceback holds this frame
            raise
        return transport, protocol

    async def create_connection(self, protocol_factory, host=None, port=None, *, ssl=None, family=0, proto=0,
                                flags=0, sock=None, local_addr=None, server_hostname=None,
                                ssl_handshake_timeout=None, ssl_shutdown_timeout=None,
                                happy_eyeballs_delay=None, interleave=None, all_errors=False):
        """Open a TCP connection: (transport, protocol)."""
        own = sock is None
        server_hostname = _tls.check_client_tls_args(ssl, host, server_hostname, ssl_handshake_timeout,
                                                     ssl_shutdown_timeout)
        if sock is not None:
            check_ssl_socket(sock)
        if happy_eyeballs_delay is not None and interleave is None:
            interleave = 1  # RFC 8305
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            infos = await self._resolve_stream((host, port), family, proto, flags)
            laddr_infos = None
            if local_addr is not None:
                laddr_infos = await self._resolve_stream(local_addr, family, proto, flags)
            if interleave:
                infos = _interleave(infos, interleave)
            exceptions = []
            if happy_eyeballs_delay is None:
                for info in infos:
                    try:
                        sock = await self._connect_sock(exceptions, info, laddr_infos)
                        break
                    except OSError:
                        continue
            else:
                # A lambda per address, not functools.partial, and [0] rather than unpacking:
                # neither may keep `exceptions` alive in a cycle with the errors' tracebacks.
                sock = (await staggered.staggered_race(
                    (lambda info=info: self._connect_sock(exceptions, info, laddr_infos) for info in infos),
                    happy_eyeballs_delay, loop=self))[0]
            if sock is None:
                errors = [exc for sub in exceptions for exc in sub]
                try:
                    if all_errors:  # asyncio 3.12+; pyloop on every version
                        raise _exception_group()("create_connection failed", errors)
                    if len(errors) == 1:
                        raise errors[0]
                    if not errors:  # every attempt was cancelled (asyncio: gh-135836)
                        raise TimeoutError("create_connection failed")
                    model = str(errors[0])
                    if all(str(exc) == model for exc in errors):
                        raise errors[0]
                    raise OSError("Multiple exceptions: {}".format(", ".join(str(exc) for exc in errors)))
                finally:
                    errors = exceptions = None
        else:
            if sock is None:
                raise ValueError("host and port was not specified and no sock specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        return await self._make_stream_transport(
            sock, protocol_factory, own, ssl,
            (False, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout))

    async def create_unix_connection(self, protocol_factory, path=None, *, ssl=None, sock=None,
                                     server_hostname=None, ssl_handshake_timeout=None,
                                     ssl_shutdown_timeout=None):
        """Open a Unix stream connection: (transport, protocol)."""
        own = sock is None
        if ssl:
            if server_hostname is None:
                raise ValueError("you have to pass server_hostname when using ssl")
        else:
            if server_hostname is not None:
                raise ValueError("server_hostname is only meaningful with ssl")
            if ssl_handshake_timeout is not None:
                raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
            if ssl_shutdown_timeout is not None:
                raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        return await self._make_stream_transport(
            sock, protocol_factory, own, ssl,
            (False, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout))

    async def connect_accepted_socket(self, protocol_factory, sock, *, ssl=None, ssl_handshake_timeout=None,
                                      ssl_shutdown_timeout=None):
        """Wrap a socket accepted elsewhere in a transport: (transport, protocol)."""
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        check_ssl_socket(sock)
        return await self._make_stream_transport(
            sock, protocol_factory, False, ssl, (True, None, ssl_handshake_timeout, ssl_shutdown_timeout))

    # ---- serving -------------------------------------------------------------------

    def _start_accepting(self, server, sock):
        if server._sockets is None:
            return
        self._check_closed()
        tls_args = _tls.server_tls_args(server._ssl, *server._tls_timeouts) if server._ssl is not None else None
        if sock.family in (socket.AF_INET, socket.AF_INET6) and (server._ssl is None or tls_args is not None):
            # The accept loop in C++ (cpp/net/server.cpp).
            acceptor = _core.Acceptor(self, server, sock, server._backlog, server._protocol_factory, tls_args,
                                      self._accept_out_of_resources)
            handle = _core.make_handle(self, acceptor, ())
        else:
            handle = _core.make_handle(self, self._accept_connections, (server, sock))
        _core.add_poll(self, sock.fileno(), False, handle, "unix" if sock.family == socket.AF_UNIX else "tcp")

    def _accept_out_of_resources(self, server, sock, exc):
        # Out of file descriptors (or memory): say so, pause, try again later.
        self.call_exception_handler({
            "message": "socket.accept() out of system resource",
            "exception": exc,
            "socket": trsock.TransportSocket(sock),
        })
        self._stop_accepting(sock)
        self.call_later(constants.ACCEPT_RETRY_DELAY, self._start_accepting, server, sock)

    def _stop_accepting(self, sock):
        if not self.is_closed() and sock.fileno() >= 0:
            _core.remove_poll(self, sock.fileno(), False)

    def _accept_connections(self, server, sock):
        for _ in range(server._backlog):
            try:
                conn, addr = sock.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _ACCEPT_OUT_OF_RESOURCES:
                    raise
                self._accept_out_of_resources(server, sock, exc)
                return
            try:
                protocol = server._protocol_factory()
                if server._ssl is None:
                    _core.stream_transport(self, conn, protocol, _transport_extra(conn, addr), server, True)
                    continue
                transport, waiter = self._stream_transport(conn, protocol, True, server, addr, server._ssl,
                                                           (True, None) + server._tls_timeouts,
                                                           accepted=_tls.ACCEPT_WITHOUT_TASK)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                conn.close()
                self.call_exception_handler({
                    "message": "Error on transport creation for incoming connection",
                    "exception": exc,
                })
                continue
            if waiter is not None:
                self.create_task(self._await_tls_handshake(transport, waiter))

    async def _await_tls_handshake(self, transport, waiter):
        # asyncio's _accept_connection2: a failed handshake closes the connection and is
        # reported only in debug mode (SSLProtocol reports what it must itself).
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            transport.close()
            if self.get_debug():
                self.call_exception_handler({
                    "message": "Error on transport creation for incoming connection",
                    "exception": exc,
                })

    async def create_server(self, protocol_factory, host=None, port=None, *, family=socket.AF_UNSPEC,
                            flags=socket.AI_PASSIVE, sock=None, backlog=100, ssl=None, reuse_address=None,
                            reuse_port=None, keep_alive=None, ssl_handshake_timeout=None,
                            ssl_shutdown_timeout=None, start_serving=True):
        """Listen for TCP connections on host/port (or sock): a Server."""
        _tls.check_server_tls_args(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        if sock is not None:
            check_ssl_socket(sock)
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            if reuse_address is None:
                reuse_address = os.name == "posix" and sys.platform != "cygwin"
            if host == "":
                hosts = [None]
            elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
                hosts = [host]
            else:
                hosts = host
            resolved = await tasks.gather(*[self._resolve_stream((h, port), family, 0, flags) for h in hosts])
            infos = list(dict.fromkeys(itertools.chain.from_iterable(resolved)))
            sockets = []
            done = False
            try:
                for af, socktype, proto, _, sa in infos:
                    try:
                        sock = socket.socket(af, socktype, proto)
                    except OSError:
                        if self.get_debug():
                            logger.warning("create_server() failed to create socket.socket(%r, %r, %r)",
                                           af, socktype, proto, exc_info=True)
                        continue
                    sockets.append(sock)
                    if reuse_address:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                    if reuse_port:
                        if not hasattr(socket, "SO_REUSEPORT"):
                            raise ValueError("reuse_port not supported by socket module")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if keep_alive:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
                    if _HAS_IPV6 and af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                    try:
                        sock.bind(sa)
                    except OSError as err:
                        msg = f"error while attempting to bind on address {sa!r}: {err.strerror.lower()}"
                        if err.errno == errno.EADDRNOTAVAIL and _PY312:
                            # The family is not enabled here: skip it, as asyncio does.
                            sockets.pop()
                            sock.close()
                            if self.get_debug():
                                logger.warning(msg)
                            continue
                        raise OSError(err.errno, msg) from None
                if not sockets:
                    raise OSError(f"could not bind on any address out of {[i[4] for i in infos]!r}")
                done = True
            finally:
                if not done:
                    for s in sockets:
                        s.close()
        else:
            if sock is None:
                raise ValueError("Neither host/port nor sock were specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
            sockets = [sock]
        for s in sockets:
            s.setblocking(False)
        server = Server(self, sockets, protocol_factory, backlog, ssl=ssl,
                        tls_timeouts=(ssl_handshake_timeout, ssl_shutdown_timeout))
        await _begin_serving(server, start_serving)
        if self.get_debug():
            logger.info("%r is serving", server)
        return server

    async def create_unix_server(self, protocol_factory, path=None, *, sock=None, backlog=100, ssl=None,
                                 ssl_handshake_timeout=None, ssl_shutdown_timeout=None, start_serving=True,
                                 cleanup_socket=None):
        """Listen for Unix stream connections on path (or sock): a Server.
        cleanup_socket (asyncio 3.13's, on by default there; off by default before, where
        asyncio never removes the file): close() removes the socket file it bound."""
        if cleanup_socket is None:
            cleanup_socket = _PY313
        _tls.check_server_tls_args(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            remove_stale_unix_socket(path)
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
                raise
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        unix_paths = {}
        if cleanup_socket:
            bound = sock.getsockname()
            if isinstance(bound, (str, bytes)) and bound and bound[0] not in (0, "\x00"):
                inode = _core.path_inode(os.fsdecode(bound))
                if inode is not None:
                    unix_paths[sock] = (bound, inode)
        sock.setblocking(False)
        server = Server(self, [sock], protocol_factory, backlog, unix_paths, ssl=ssl,
                        tls_timeouts=(ssl_handshake_timeout, ssl_shutdown_timeout))
        await _begin_serving(server, start_serving)
        return server


class SendfileMethods:
    """loop.sendfile(transport, file): mixed into pyloop.Loop."""

    async def sendfile(self, transport, file, offset=0, count=None, *, fallback=True):
        """Send a file over a stream transport: os.sendfile (zero-copy) when the file
        and socket allow it, else read-and-write through the transport when fallback
        is true. Returns the number of bytes sent; the file position follows.
        Arguments, modes and messages are asyncio's (a transport's
        `_sendfile_compatible` says what it supports)."""
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        mode = getattr(transport, "_sendfile_compatible", constants._SendfileMode.UNSUPPORTED)
        if mode is constants._SendfileMode.UNSUPPORTED:
            raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
        if mode is constants._SendfileMode.TRY_NATIVE:
            try:
                return await self._sendfile_over_transport(transport, file, offset, count)
            except exceptions.SendfileNotAvailableError:
                if not fallback:
                    raise
        if not fallback:
            raise RuntimeError(f"fallback is disabled and native sendfile is not supported for transport "
                               f"{transport!r}")
        return await self._sendfile_fallback_transport(transport, file, offset, count)

    async def _sendfile_over_transport(self, transport, file, offset, count):
        resume = transport.is_reading()
        transport.pause_reading()
        await transport._wait_drained()
        # libuv watches the transport's fd; a duplicate of it can be watched separately.
        tsock = transport.get_extra_info("socket")
        dup = socket.socket(tsock.family, tsock.type, tsock.proto, fileno=os.dup(tsock.fileno()))
        transport._set_sendfile_busy(True)
        try:
            dup.setblocking(False)
            return await self.sock_sendfile(dup, file, offset, count, fallback=False)
        finally:
            transport._set_sendfile_busy(False)
            dup.close()
            if resume and not transport.is_closing():
                transport.resume_reading()

    async def _sendfile_fallback_transport(self, transport, file, offset, count):
        if isinstance(transport, _core.StreamTransport):
            high_water = transport.get_write_buffer_limits()[1]

            async def send(chunk):
                transport.write(chunk)
                if transport.get_write_buffer_size() > high_water:
                    await transport._wait_drained()

            return await send_file_chunks(self, file, offset, count, 16384, send)
        # Any other transport (TLS): its protocol is borrowed meanwhile, so that its flow
        # control paces the writes and nothing is read (asyncio does the same).
        shim = _FlowShim(self, transport)
        try:
            async def send(chunk):
                transport.write(chunk)
                await shim.drain()

            return await send_file_chunks(self, file, offset, count, 16384, send)
        finally:
            await shim.restore()


class _FlowShim(protocols.Protocol):
    """Stands in for a transport's protocol during loop.sendfile's fallback: reading is
    paused, pause_writing/resume_writing pace the writes, connection_lost fails them."""

    def __init__(self, loop, transport):
        self._loop = loop
        self._transport = transport
        self._protocol = transport.get_protocol()
        self._resume_reading = transport.is_reading()
        self._paused = None  # a future while writing is paused
        self._lost = None
        transport.pause_reading()
        transport.set_protocol(self)

    async def drain(self):
        if self._lost is not None:
            raise ConnectionError("Connection closed by peer")
        if self._paused is not None:
            await self._paused

    def pause_writing(self):
        if self._paused is None:
            self._paused = self._loop.create_future()

    def resume_writing(self):
        paused, self._paused = self._paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    def data_received(self, data):
        raise RuntimeError("Invalid state: connection should have been paused")

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self._lost = exc or ConnectionError("Connection closed by peer")
        paused, self._paused = self._paused, None
        if paused is not None and not paused.done():
            paused.set_exception(self._lost)
        self._protocol.connection_lost(exc)

    async def restore(self):
        if self._lost is not None:
            return
        while self._paused is not None:
            await asyncio_shield(self._paused)
        self._transport.set_protocol(self._protocol)
        if self._resume_reading:
            self._transport.resume_reading()
