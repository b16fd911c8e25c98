"""TLS for pyloop.Loop: ssl= on connections and servers, and start_tls().

The TLS state machine is the running Python's own asyncio.sslproto.SSLProtocol (an
ssl.SSLObject over two MemoryBIOs, driven as each Python version's asyncio drives it:
3.11 rewrote it), stacked on pyloop's C++ stream transport, exactly as asyncio stacks
it on its selector transport. So the user's SSLContext stays the authority
(certificates, verification, ALPN, SNI callbacks, sessions, keylog), and the
handshake/shutdown timeouts, messages and callback order are asyncio's.
"""

import sys
from asyncio import sslproto

try:
    import ssl
except ImportError:  # pragma: no cover
    ssl = None

_PY311 = sys.version_info >= (3, 11)


def make_ssl_protocol(loop, app_protocol, sslcontext, waiter, server_side, server_hostname,
                      ssl_handshake_timeout, ssl_shutdown_timeout, call_connection_made=True):
    """asyncio's SSLProtocol for this Python version (3.10's has no shutdown timeout)."""
    kwargs = {"ssl_handshake_timeout": ssl_handshake_timeout, "call_connection_made": call_connection_made}
    if _PY311:
        kwargs["ssl_shutdown_timeout"] = ssl_shutdown_timeout
    return sslproto.SSLProtocol(loop, app_protocol, sslcontext, waiter, server_side, server_hostname, **kwargs)


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
        transport.set_protocol(ssl_protocol)
        made = self.call_soon(ssl_protocol.connection_made, transport)
        resume = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            made.cancel()
            resume.cancel()
            raise
        return ssl_protocol._app_transport
