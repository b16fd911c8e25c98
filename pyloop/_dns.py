"""getaddrinfo/getnameinfo for pyloop.Loop: the argument handling of Python's socket
module, numeric addresses resolved at once, names on libuv's thread pool."""

import operator
import os
import socket

from . import _core
from ._compat import PY314 as _PY314

_NUMERIC = int(socket.AI_NUMERICHOST)  # a plain int: IntFlag's | would drop unknown bits


def pool_size():
    """libuv's thread pool size as libuv reads it at the first lookup
    (UV_THREADPOOL_SIZE, 1..1024, default 4), and where it comes from."""
    raw = os.environ.get("UV_THREADPOOL_SIZE")
    if raw is None:
        return 4, "default"
    try:
        n = int(raw)
    except ValueError:
        n = 0  # libuv's atoi
    return min(max(n, 1), 1024), f"UV_THREADPOOL_SIZE={raw}"


def _host_bytes(host):
    if host is None:
        return None
    if isinstance(host, str):
        return host.encode("idna")
    if isinstance(host, (bytes, bytearray)):
        return bytes(host)
    raise TypeError("getaddrinfo() argument 1 must be string or None")


def _port_bytes(port):
    """The port as socket.getaddrinfo takes it: an exact int (3.14: any object with
    __index__), a str, bytes or None."""
    if port is None:
        return None
    if type(port) is int:
        return str(port).encode()
    if _PY314 and hasattr(type(port), "__index__"):
        return str(operator.index(port)).encode()
    if isinstance(port, str):
        return port.encode("utf-8")
    if isinstance(port, (bytes, bytearray)):
        return bytes(port)
    raise OSError("Int or String expected")


_INT_MIN, _INT_MAX = -2**31, 2**31 - 1


def c_int(value):
    """value as the C int the socket module would take (an int, or any object with
    __index__), with its errors."""
    value = operator.index(value)
    if not _INT_MIN <= value <= _INT_MAX:
        raise OverflowError("Python int too large to convert to C int"
                            if value > 0 else "Python int too small to convert to C int")
    return int(value)


async def getaddrinfo(loop, host, port, family, type_, proto, flags):
    loop._check_closed()
    hostb = _host_bytes(host)
    portb = _port_bytes(port)
    if not (isinstance(family, int) and isinstance(type_, int) and isinstance(proto, int)
            and isinstance(flags, int) and _INT_MIN <= family <= _INT_MAX and _INT_MIN <= type_ <= _INT_MAX
            and _INT_MIN <= proto <= _INT_MAX and _INT_MIN <= flags <= _INT_MAX):
        family, type_, proto, flags = c_int(family), c_int(type_), c_int(proto), c_int(flags)
    if hostb is None or _looks_numeric(hostb):
        # No name to look up: the C library answers at once, without the pool.
        try:
            return socket.getaddrinfo(host, port, family, type_, proto, flags | _NUMERIC)
        except socket.gaierror as exc:
            if exc.errno != socket.EAI_NONAME or hostb is None:
                raise
    req = _core.getaddrinfo(loop, hostb, portb, family, type_, proto, flags)
    try:
        return await req.future
    except BaseException:
        req.cancel()
        raise


def _looks_numeric(host):
    # Only what an IPv4/IPv6 literal (with a scope) can hold; anything else is a name.
    return not host.translate(None, b"0123456789abcdefABCDEF.:%") or b"%" in host


def nameinfo_args(sockaddr):
    """Check sockaddr as socket.getnameinfo does; (family, host, port, flowinfo, scope_id)."""
    if not isinstance(sockaddr, tuple):
        raise TypeError("getnameinfo() argument 1 must be a tuple")
    if not 2 <= len(sockaddr) <= 4:
        raise TypeError("getnameinfo(): illegal sockaddr argument")
    host, port = sockaddr[0], sockaddr[1]
    flowinfo = sockaddr[2] if len(sockaddr) > 2 else 0
    scope_id = sockaddr[3] if len(sockaddr) > 3 else 0
    if not isinstance(host, str):
        raise TypeError("getnameinfo(): illegal sockaddr argument")
    try:  # the socket module takes any object with __index__ for these
        port, flowinfo, scope_id = operator.index(port), operator.index(flowinfo), operator.index(scope_id)
    except TypeError:
        raise TypeError("getnameinfo(): illegal sockaddr argument") from None
    if not _INT_MIN <= port <= _INT_MAX:  # the socket module parses it as a C int
        if not -2**63 <= port < 2**63:
            raise OverflowError("Python int too large to convert to C long")
        raise OverflowError("signed integer is greater than maximum" if port > 0
                            else "signed integer is less than minimum")
    if not 0 <= flowinfo <= 0xFFFFF:
        raise OverflowError("getnameinfo(): flowinfo must be 0-1048575.")
    infos = socket.getaddrinfo(host, str(port), socket.AF_UNSPEC, socket.SOCK_DGRAM, 0, _NUMERIC)
    if len(infos) != 1:
        raise OSError("sockaddr resolved to multiple addresses")
    fam, _, _, _, sa = infos[0]
    if fam == socket.AF_INET:
        if len(sockaddr) != 2:
            raise OSError("IPv4 sockaddr must be 2 tuple")
        return socket.AF_INET, sa[0], sa[1], 0, 0
    return socket.AF_INET6, sa[0], sa[1], flowinfo, scope_id


async def getnameinfo(loop, sockaddr, flags):
    loop._check_closed()
    flags = c_int(flags)
    family, host, port, flowinfo, scope_id = nameinfo_args(sockaddr)
    req = _core.getnameinfo(loop, family, host, port, flowinfo, scope_id, flags)
    try:
        return await req.future
    except BaseException:
        req.cancel()
        raise


_LITERAL_PROTOS = {socket.SOCK_STREAM: socket.IPPROTO_TCP, socket.SOCK_DGRAM: socket.IPPROTO_UDP}


def literal_addrinfo(host, port, family, type, proto, flowinfo=0, scope_id=0):
    """The one getaddrinfo() entry for an address that is already an IP literal, or
    None when it has to be resolved. asyncio skips getaddrinfo for such addresses too,
    so the port reaches bind()/connect() as given (and 70000 raises OverflowError there)."""
    if host is None or proto not in (0, socket.IPPROTO_TCP, socket.IPPROTO_UDP):
        return None
    proto = _LITERAL_PROTOS.get(type)
    if proto is None:
        return None
    if port is None or port in (b"", ""):
        port = 0
    else:
        try:
            port = int(port)
        except (TypeError, ValueError):
            return None  # a service name
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("idna")
    if not isinstance(host, str) or "%" in host:
        return None  # scoped addresses go through getaddrinfo
    families = (socket.AF_INET, socket.AF_INET6) if family == socket.AF_UNSPEC else (family,)
    for af in families:
        try:
            socket.inet_pton(af, host)
        except (OSError, ValueError):
            continue
        if af == socket.AF_INET6:
            return af, type, proto, "", (host, port, flowinfo, scope_id)
        return af, type, proto, "", (host, port)
    return None


async def ensure_resolved(loop, address, family=0, type=socket.SOCK_STREAM, proto=0, flags=0):
    """getaddrinfo() entries for (host, port[, flowinfo, scope_id]): IP literals at
    once, names through the loop's getaddrinfo (libuv's pool)."""
    host, port = address[:2]
    info = literal_addrinfo(host, port, family, type, proto, *address[2:])
    if info is not None:
        return [info]
    return await loop.getaddrinfo(host, port, family=family, type=type, proto=proto, flags=flags)
