"""TLS for pyloop.Loop: ssl= on connections and servers, and start_tls().

The TLS state machine is an ssl.SSLObject over two MemoryBIOs, so the user's
SSLContext stays the authority (certificates, verification, ALPN, SNI callbacks,
sessions, keylog). On Python 3.11+ it is driven by pyloop's C++ TlsProtocol
(cpp/net/tls.cpp), which follows asyncio 3.11+'s sslproto step by step and moves the
bytes in C++; on 3.10, whose asyncio had an older SSLProtocol with other semantics,
by that SSLProtocol itself. Either sits on pyloop's C++ stream transport as asyncio's
sits on its selector transport, so handshake/shutdown timeouts, messages and callback
order are those of the running Python's asyncio.
"""

from asyncio import constants, sslproto, streams

from . import _core

try:
    import ssl
except ImportError:  # pragma: no cover
    ssl = None

from ._compat import PY311 as _PY311, PY314 as _PY314
# A server's connections need no accept task: the C++ protocol handles a failed handshake.
ACCEPT_WITHOUT_TASK = _PY311


def make_ssl_protocol(loop, app_protocol, sslcontext, waiter, server_side, server_hostname,
                      ssl_handshake_timeout, ssl_shutdown_timeout, call_connection_made=True, accepted=False):
    """The TLS protocol for this Python version: pyloop's C++ one on 3.11+ (with the
    checks and defaults of asyncio's SSLProtocol.__init__), asyncio's own on 3.10.
    accepted (3.11+): a server's connection, with no waiter; the protocol does what
    asyncio's accept task does when the handshake fails."""
    if not _PY311:
        return sslproto.SSLProtocol(loop, app_protocol, sslcontext, waiter, server_side, server_hostname,
                                    ssl_handshake_timeout=ssl_handshake_timeout,
                                    call_connection_made=call_connection_made)
    if ssl is None:
        raise RuntimeError("stdlib ssl module not available")
    if ssl_handshake_timeout is None:
        ssl_handshake_timeout = constants.SSL_HANDSHAKE_TIMEOUT
    elif ssl_handshake_timeout <= 0:
        raise ValueError(f"ssl_handshake_timeout should be a positive number, got {ssl_handshake_timeout}")
    if ssl_shutdown_timeout is None:
        ssl_shutdown_timeout = constants.SSL_SHUTDOWN_TIMEOUT
    elif ssl_shutdown_timeout <= 0:
        raise ValueError(f"ssl_shutdown_timeout should be a positive number, got {ssl_shutdown_timeout}")
    if not sslcontext:
        sslcontext = sslproto._create_transport_context(server_side, server_hostname)
    return _core.TlsProtocol(loop, app_protocol, sslcontext, waiter, server_side, server_hostname,
                             call_connection_made, ssl_handshake_timeout, ssl_shutdown_timeout, accepted)


def server_tls_args(sslcontext, ssl_handshake_timeout, ssl_shutdown_timeout):
    """(sslcontext, handshake timeout, shutdown timeout) for the C++ accept path's TLS
    protocols (3.11+), or None when the Python accept path must make each connection's
    protocol (3.10; or timeouts asyncio rejects per connection)."""
    if not ACCEPT_WITHOUT_TASK or ssl is None:
        return None
    if ssl_handshake_timeout is None:
        ssl_handshake_timeout = constants.SSL_HANDSHAKE_TIMEOUT
    elif not ssl_handshake_timeout > 0:
        return None
    if ssl_shutdown_timeout is None:
        ssl_shutdown_timeout = constants.SSL_SHUTDOWN_TIMEOUT
    elif not ssl_shutdown_timeout > 0:
        return None
    return sslcontext, ssl_handshake_timeout, ssl_shutdown_timeout


def check_client_tls_args(ssl_arg, host, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout):
    """asyncio's checks for create_connection()/create_unix_connection(); returns the
    server_hostname to use."""
    if server_hostname is not None and not ssl_arg:
        raise ValueError("server_hostname is only meaningful with ssl")
    if server_hostname is None and ssl_arg:
        if not host:
            raise ValueError("You must set server_hostname when using ssl without a host")
        server_hostname = host
    if ssl_handshake_timeout is not None and not ssl_arg:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if ssl_shutdown_timeout is not None and not ssl_arg:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
    return server_hostname


def check_server_tls_args(ssl_arg, ssl_handshake_timeout, ssl_shutdown_timeout):
    """asyncio's checks for create_server()/create_unix_server()."""
    if isinstance(ssl_arg, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    if ssl_handshake_timeout is not None and ssl_arg is None:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if ssl_shutdown_timeout is not None and ssl_arg is None:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")


class TlsMethods:
    """Mixed into pyloop.Loop."""

    async def start_tls(self, transport, protocol, sslcontext, *, server_side=False, server_hostname=None,
                        ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        """Upgrade transport to TLS; return the new transport protocol must use."""
        if ssl is None:
            raise RuntimeError("Python ssl module is not available")
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}")
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        waiter = self.create_future()
        ssl_protocol = make_ssl_protocol(self, protocol, sslcontext, waiter, server_side, server_hostname,
                                         ssl_handshake_timeout, ssl_shutdown_timeout, call_connection_made=False)
        # Nothing may reach the TLS protocol before its connection_made.
        transport.pause_reading()
        if _PY314 and server_side and isinstance(protocol, streams.StreamReaderProtocol):
            # 3.14 (gh-142352): what the StreamReader already holds (a STARTTLS client's
            # ClientHello) is the start of the TLS stream
            reader = getattr(protocol, "_stream_reader", None)
            if reader is not None and reader._buffer:
                ssl_protocol._incoming.write(reader._buffer)
                reader._buffer.clear()
        transport.set_protocol(ssl_protocol)
        made = self.call_soon(ssl_protocol.connection_made, transport)
        resume = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            made.cancel()
            resume.cancel()
            waiter = None  # the future holds the exception, whose traceback holds this frame
            raise
        return ssl_protocol._app_transport
