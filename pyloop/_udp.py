"""Datagram endpoints for pyloop.Loop: create_datagram_endpoint and its transport.

The transport follows asyncio's datagram transport: sends are tried at once and
buffered when the kernel says EAGAIN, OSErrors go to the protocol's error_received,
anything else closes the transport. Its hot half is C++ (cpp/net/udp.cpp,
_core.DatagramBase): sendto() when nothing is queued, and the reader, which hands
up to a batch of datagrams per wake-up to the protocol. This half keeps the rest:
creation, the write buffer, flow control, pausing, closing.
"""

import collections
import contextvars
import socket
import warnings
from asyncio import constants, transports, trsock
from asyncio.log import logger

from . import _core, _dns
from ._net import remove_stale_unix_socket

_MAX_DATAGRAM = 256 * 1024
from ._compat import PY311 as _PY311, PY313 as _PY313
# asyncio counts 8 bytes of header per queued datagram from 3.13, and sends empty
# datagrams from 3.13 (before, sendto(b"") did nothing).
_HEADER = 8 if _PY313 else 0
_UNSET = object()


class DatagramTransport(_core.DatagramBase, transports.DatagramTransport):
    def __init__(self, loop, sock, protocol, address, waiter):
        super().__init__({"socket": trsock.TransportSocket(sock)})
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._family = sock.family
        self._protocol = protocol
        self._address = address
        self._buffer = collections.deque()
        self._buffer_size = 0
        self._conn_lost = 0
        self._closing = False
        self._paused = False
        self._protocol_paused = False
        self._context = contextvars.copy_context()
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            self._read_ready = self._read_ready_py  # the socket module makes its addresses
        self._high_water = 64 * 1024
        self._low_water = 16 * 1024
        self._reader = None
        self._writer = None
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        try:
            self._extra["peername"] = sock.getpeername()
        except OSError:
            self._extra["peername"] = None
        self._connected = bool(self._extra["peername"])
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start_reading)
        loop.call_soon(lambda: waiter.done() or waiter.set_result(None))

    def __repr__(self):
        state = "closed" if self._sock is None else "closing" if self._closing else "open"
        return f"<{type(self).__name__} fd={self._fd} {state}>"

    # ---- the core's readers and writers ----

    def _watch(self, writer, callback):
        # The protocol's callbacks run in the context of the transport's creation, also
        # after resume_reading() (as pyloop's stream transports; docs/api.md).
        handle = _core.make_handle(self._loop, callback, (), self._context)
        _core.add_poll(self._loop, self._fd, writer, handle, "udp")
        return handle

    def _unwatch(self, writer):
        handle = self._writer if writer else self._reader
        if handle is not None and not handle.cancelled() and not self._loop.is_closed():
            _core.remove_poll(self._loop, self._fd, writer)
        if writer:
            self._writer = None
        else:
            self._reader = None

    def _start_reading(self):
        if not self._closing and not self._paused and self._reader is None:
            self._reader = self._watch(False, self._read_ready)

    # ---- the asyncio transport API ----

    def get_protocol(self):
        return self._protocol

    def set_protocol(self, protocol):
        self._protocol = protocol

    def is_closing(self):
        return self._closing

    def is_reading(self):
        return not self._paused and not self._closing

    def pause_reading(self):
        if self._closing or self._paused:
            return
        self._paused = True
        self._unwatch(False)

    def resume_reading(self):
        if self._closing or not self._paused:
            return
        self._paused = False
        self._start_reading()

    def get_write_buffer_size(self):
        return self._buffer_size

    def get_write_buffer_limits(self):
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water, self._low_water = high, low
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self):
        if self._buffer_size <= self._high_water or self._protocol_paused:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({"message": "protocol.pause_writing() failed", "exception": exc,
                                               "transport": self, "protocol": self._protocol})

    def _maybe_resume_protocol(self):
        if self._protocol_paused and self._buffer_size <= self._low_water:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._loop.call_exception_handler({"message": "protocol.resume_writing() failed",
                                                   "exception": exc, "transport": self,
                                                   "protocol": self._protocol})

    def _read_ready_py(self):
        if self._conn_lost:
            return
        try:
            data, addr = self._sock.recvfrom(_MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on datagram transport")
        else:
            _core.count_bytes(self._loop, len(data), 0)
            self._protocol.datagram_received(data, addr)

    def _send_one(self, data, addr):
        if self._connected:
            n = self._sock.send(data)
        else:
            n = self._sock.sendto(data, addr)
        _core.count_bytes(self._loop, 0, n)

    def _sendto_slow(self, data, addr=None):
        """sendto() when the C++ half does not send at once (see udp.cpp)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if not data and not _PY313:
            return
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost and self._address:
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                self._send_one(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._writer = self._watch(True, self._sendto_ready)
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
        self._buffer.append((bytes(data), addr))
        self._buffer_size += len(data) + _HEADER
        self._maybe_pause_protocol()

    def _sendto_ready(self):
        while self._buffer:
            data, addr = self._buffer.popleft()
            self._buffer_size -= len(data) + _HEADER
            try:
                self._send_one(data, addr)
            except (BlockingIOError, InterruptedError):
                self._buffer.appendleft((data, addr))
                self._buffer_size += len(data) + _HEADER
                break
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
        self._maybe_resume_protocol()
        if not self._buffer:
            self._unwatch(True)
            if self._closing:
                self._call_connection_lost(None)

    def close(self):
        if self._closing:
            return
        self._closing = True
        self._unwatch(False)
        if not self._buffer:
            self._conn_lost += 1
            self._unwatch(True)
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self):
        self._force_close(None)

    def _fatal_error(self, exc, message):
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler({"message": message, "exception": exc, "transport": self,
                                               "protocol": self._protocol})
        self._force_close(exc)

    def _force_close(self, exc):
        if self._conn_lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
            self._unwatch(True)
        if not self._closing:
            self._closing = True
            self._unwatch(False)
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc):
        try:
            self._protocol.connection_lost(exc)
        finally:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            self._protocol = None

    def __del__(self, _warn=__import__("warnings").warn):
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()


class DatagramMethods:
    """Mixed into pyloop.Loop."""

    async def create_datagram_endpoint(self, protocol_factory, local_addr=None, remote_addr=None, *, family=0,
                                       proto=0, flags=0, reuse_address=_UNSET, reuse_port=None,
                                       allow_broadcast=None, sock=None):
        """A datagram (UDP or Unix datagram) endpoint: (transport, protocol)."""
        self._check_closed()
        if reuse_address is not _UNSET:  # 3.10's (3.11 removed the argument: see below)
            if reuse_address:
                raise ValueError("Passing `reuse_address=True` is no longer supported, as the usage of "
                                 "SO_REUSEPORT in UDP poses a significant security concern.")
            warnings.warn("The *reuse_address* parameter has been deprecated as of 3.5.10 and is scheduled "
                          "for removal in 3.11.", DeprecationWarning, stacklevel=2)
        r_addr = None
        if sock is not None:
            if sock.type != socket.SOCK_DGRAM:
                what = "A datagram socket" if _PY313 else "A UDP Socket"  # 3.13 renamed it
                raise ValueError(f"{what} was expected, got {sock!r}")
            opts = dict(local_addr=local_addr, remote_addr=remote_addr, family=family, proto=proto, flags=flags,
                        reuse_port=reuse_port, allow_broadcast=allow_broadcast)
            if any(opts.values()):
                problems = ", ".join(f"{k}={v}" for k, v in opts.items() if v)
                raise ValueError(f"socket modifier keyword arguments can not be used when sock is specified. "
                                 f"({problems})")
            sock.setblocking(False)
        else:
            pairs = await self._datagram_address_pairs(local_addr, remote_addr, family, proto, flags)
            errors = []
            for (fam, pro), (laddr, raddr) in pairs:
                sock = None
                try:
                    sock = socket.socket(family=fam, type=socket.SOCK_DGRAM, proto=pro)
                    if reuse_port:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if allow_broadcast:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                    sock.setblocking(False)
                    if local_addr:
                        sock.bind(laddr)
                    if remote_addr:
                        if not allow_broadcast:
                            await self.sock_connect(sock, raddr)
                        r_addr = raddr
                except OSError as exc:
                    if sock is not None:
                        sock.close()
                    errors.append(exc)
                    sock = None
                except BaseException:
                    if sock is not None:
                        sock.close()
                    raise
                else:
                    break
            if sock is None:
                raise errors[0]
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = DatagramTransport(self, sock, protocol, r_addr, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol

    if _PY311:
        _create_datagram_endpoint = create_datagram_endpoint

        # asyncio 3.11's signature, without reuse_address: passing it is a TypeError at
        # the call, as on asyncio.
        async def create_datagram_endpoint(self, protocol_factory, local_addr=None, remote_addr=None, *,
                                           family=0, proto=0, flags=0, reuse_port=None, allow_broadcast=None,
                                           sock=None):
            """A datagram (UDP or Unix datagram) endpoint: (transport, protocol)."""
            return await self._create_datagram_endpoint(
                protocol_factory, local_addr, remote_addr, family=family, proto=proto, flags=flags,
                reuse_port=reuse_port, allow_broadcast=allow_broadcast, sock=sock)

    async def _datagram_address_pairs(self, local_addr, remote_addr, family, proto, flags):
        if not (local_addr or remote_addr):
            if family == 0:
                raise ValueError("unexpected address family")
            return (((family, proto), (None, None)),)
        if family == socket.AF_UNIX:
            for addr in (local_addr, remote_addr):
                if addr is not None and not isinstance(addr, str):
                    raise TypeError("string is expected")
            if local_addr:
                remove_stale_unix_socket(local_addr)
            return (((family, proto), (local_addr, remote_addr)),)
        by_key = {}
        for idx, addr in ((0, local_addr), (1, remote_addr)):
            if addr is None:
                continue
            if not (isinstance(addr, tuple) and len(addr) == 2):
                raise TypeError("2-tuple is expected")
            infos = await _dns.ensure_resolved(self, addr[:2], family, socket.SOCK_DGRAM, proto, flags)
            if not infos:
                raise OSError("getaddrinfo() returned empty list")
            for fam, _, pro, _, address in infos:
                by_key.setdefault((fam, pro), [None, None])[idx] = address
        pairs = [(key, pair) for key, pair in by_key.items()
                 if not ((local_addr and pair[0] is None) or (remote_addr and pair[1] is None))]
        if not pairs:
            raise ValueError("can not get address information")
        return pairs
