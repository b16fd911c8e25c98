"""TLS on both loops: ssl= on connections and servers, start_tls, the streams API, and
a peer on a plain thread; certificates are made by the tests (trustme)."""

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
import sys
import threading

import pytest
from conftest import needs_module, drop_debug_accept_errors

trustme = needs_module("trustme")

if sys.version_info < (3, 11):
    # asyncio 3.10's SSLProtocol never closes the TLS transport of a server-side
    # handshake that failed (on either loop), and its __del__ warns about it.
    pytestmark = pytest.mark.filterwarnings(
        "ignore:unclosed transport <asyncio.sslproto._SSLProtocolTransport:ResourceWarning")


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    return ctx


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Collect(asyncio.Protocol):
    def __init__(self, loop, want=None):
        self.data = bytearray()
        self.want = want
        self.done = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data
        if self.want is not None and len(self.data) >= self.want and not self.done.done():
            self.done.set_result(bytes(self.data))

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


class TlsServer:
    """A TLS server whose connections are closed with it (asyncio 3.10 warns about
    TLS transports collected unclosed)."""

    def __init__(self, server, transports):
        self.server = server
        self.transports = transports
        self.port = server.sockets[0].getsockname()[1]

    def __iter__(self):
        return iter((self, self.port))

    def close(self):
        self.server.close()
        for tr in self.transports:
            tr.abort()

    async def wait_closed(self):
        await asyncio.sleep(0.01)
        await self.server.wait_closed()


async def tls_server(loop, server_ctx, factory=Echo, **kw):
    transports = []

    def make():
        proto = factory()
        made = proto.connection_made

        def connection_made(transport):
            transports.append(transport)
            made(transport)

        proto.connection_made = connection_made
        return proto

    server = await loop.create_server(make, "127.0.0.1", 0, ssl=server_ctx, **kw)
    return TlsServer(server, transports)


def test_round_trip_and_extra_info(loop, server_ctx, client_ctx):
    async def main():
        server, port = await tls_server(loop, server_ctx)
        tr, proto = await loop.create_connection(lambda: Collect(loop, 5), "127.0.0.1", port, ssl=client_ctx,
                                                 server_hostname="localhost")
        tr.write(b"hello")
        assert await asyncio.wait_for(proto.done, 10) == b"hello"
        sslobj = tr.get_extra_info("ssl_object")
        assert sslobj is not None and sslobj.version().startswith("TLS")
        assert tr.get_extra_info("peercert")["subjectAltName"]
        assert tr.get_extra_info("cipher")
        assert tr.get_extra_info("sslcontext") is client_ctx
        assert tr.get_extra_info("peername")[1] == port
        assert tr.get_extra_info("sockname") is not None
        assert tr.get_extra_info("socket") is not None
        assert isinstance(tr, asyncio.Transport)
        tr.close()
        assert await asyncio.wait_for(proto.lost, 10) is None
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_streams_api(loop, server_ctx, client_ctx):
    async def handle(reader, writer):
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("localhost", port, ssl=client_ctx)
        writer.write(b"tls streams\n")
        assert await asyncio.wait_for(reader.readline(), 10) == b"TLS STREAMS\n"
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


class Hashing(asyncio.Protocol):
    """Hashes what it receives; `done` resolves with the digest after `want` bytes."""

    def __init__(self, loop, want):
        self.sha = hashlib.sha256()
        self.got = 0
        self.want = want
        self.done = loop.create_future()
        self.lost = loop.create_future()

    def data_received(self, data):
        self.sha.update(data)
        self.got += len(data)
        if self.got >= self.want and not self.done.done():
            self.done.set_result(self.sha.digest())

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


@pytest.mark.parametrize("kind,mib", [("tcp", 100), ("unix", 16)])
def test_megabytes_each_way_with_checksum(loop, server_ctx, client_ctx, kind, mib, tmp_path):
    payload = os.urandom(mib * 1024 * 1024)

    async def main():
        if kind == "unix":
            path = str(tmp_path / "tls.sock")
            peers = []
            server = await loop.create_unix_server(lambda: peers.append(Echo()) or peers[-1], path, ssl=server_ctx)
            tr, proto = await loop.create_unix_connection(lambda: Hashing(loop, len(payload)), path,
                                                          ssl=client_ctx, server_hostname="localhost")
        else:
            server, port = await tls_server(loop, server_ctx)
            tr, proto = await loop.create_connection(lambda: Hashing(loop, len(payload)), "127.0.0.1", port,
                                                     ssl=client_ctx, server_hostname="localhost")
        tr.write(payload)
        assert await asyncio.wait_for(proto.done, 120) == hashlib.sha256(payload).digest()
        assert proto.got == len(payload)
        tr.close()
        await asyncio.wait_for(proto.lost, 10)
        server.close()
        if kind == "unix":
            for peer in peers:
                peer.transport.abort()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_start_tls_after_plain_data(loop, server_ctx, client_ctx):
    async def handle(reader, writer):
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"OK\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        line = await reader.readline()
        writer.write(b"secure " + line)
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await loop.create_connection(lambda: Collect(loop), "127.0.0.1", port)
        tr.write(b"STARTTLS\n")
        while b"OK\n" not in proto.data:
            await asyncio.sleep(0.005)
        proto.data.clear()
        proto.want = len(b"secure hi\n")
        tls_tr = await loop.start_tls(tr, proto, client_ctx, server_hostname="localhost")
        tls_tr.write(b"hi\n")
        assert await asyncio.wait_for(proto.done, 10) == b"secure hi\n"
        tls_tr.close()
        server.close()
        await server.wait_closed()

    if sys.version_info < (3, 11):
        pytest.skip("StreamWriter.start_tls is 3.11+")
    loop.run_until_complete(main())


@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is 3.11+")
def test_start_tls_with_the_client_hello_already_buffered(loop, server_ctx, client_ctx):
    # A STARTTLS client that does not wait for the server's answer: its ClientHello is in
    # the server's StreamReader buffer when the server calls start_tls(). 3.14 hands those
    # bytes to the TLS layer and the handshake succeeds; 3.11-3.13 time the handshake out.
    outcome = {}

    async def handle(reader, writer):
        await asyncio.sleep(0.2)  # the ClientHello arrives behind the STARTTLS line
        assert await reader.readline() == b"STARTTLS\n"
        assert len(reader._buffer) > 0
        try:
            await writer.start_tls(server_ctx, ssl_handshake_timeout=1.0)
        except ConnectionAbortedError as exc:
            outcome["server"] = str(exc)
            writer.close()
            return
        writer.write(b"secure " + await reader.readline())
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await loop.create_connection(lambda: Collect(loop), "127.0.0.1", port)
        tr.write(b"STARTTLS\n")
        proto.want = len(b"secure hi\n")
        try:
            tls_tr = await asyncio.wait_for(loop.start_tls(tr, proto, client_ctx, server_hostname="localhost"), 10)
        except (ConnectionError, ssl.SSLError):
            outcome["client"] = "failed"
        else:
            tls_tr.write(b"hi\n")
            outcome["client"] = await asyncio.wait_for(proto.done, 10)
            tls_tr.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    if sys.version_info >= (3, 14):
        assert outcome == {"client": b"secure hi\n"}
    else:
        assert outcome == {"server": "SSL handshake is taking longer than 1.0 seconds: aborting the connection",
                           "client": "failed"}


def test_a_failed_start_tls_leaves_no_reference_cycle(loop, loop_name, server_ctx):
    # The client does not trust the server's certificate: start_tls() raises, and the
    # transport it was given is freed as soon as the caller lets go (no cycle through the
    # waiter and the exception's traceback: asyncio 3.14 breaks it; pyloop on every version).
    import gc
    import weakref
    untrusting = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # trusts no test CA
    lost = []

    class Plain(asyncio.Protocol):  # keeps no exception (its traceback would hold the frames)
        def connection_made(self, transport):
            self.transport = transport

        def connection_lost(self, exc):
            lost.append(type(exc).__name__)

    async def handle(reader, writer):
        try:
            await writer.start_tls(server_ctx)
        except (ssl.SSLError, ConnectionError):
            pass
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await loop.create_connection(Plain, "127.0.0.1", port)
        ref = weakref.ref(tr)
        try:
            await loop.start_tls(tr, proto, untrusting, server_hostname="localhost")
        except ssl.SSLCertVerificationError:
            pass
        del tr, proto
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
        return ref

    if sys.version_info < (3, 11):
        pytest.skip("StreamWriter.start_tls is 3.11+")
    gc.disable()
    try:
        ref = loop.run_until_complete(main())
        alive = ref() is not None
    finally:
        gc.enable()
        gc.collect()
    assert lost == ["SSLCertVerificationError"]
    assert alive == (loop_name == "asyncio" and sys.version_info < (3, 14))


def test_a_failed_tls_connection_leaves_no_reference_cycle(loop, loop_name, server_ctx):
    # As above for create_connection(ssl=): the protocol (held by the TLS layer, held by
    # the transport) is freed as soon as the error is handled (asyncio 3.14, gh-159049).
    import gc
    import weakref
    untrusting = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    refs = []

    class Proto(asyncio.Protocol):
        pass

    def factory():
        proto = Proto()
        refs.append(weakref.ref(proto))
        return proto

    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = listener.accept()
        with conn:
            try:
                server_ctx.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                pass

    th = threading.Thread(target=serve)
    th.start()

    async def main():
        try:
            await loop.create_connection(factory, *listener.getsockname(), ssl=untrusting,
                                         server_hostname="localhost")
        except ssl.SSLCertVerificationError:
            pass

    gc.disable()
    try:
        loop.run_until_complete(main())
        alive = [r() is not None for r in refs]
    finally:
        gc.enable()
        gc.collect()
        th.join(10)
        listener.close()
    assert alive == [loop_name == "asyncio" and sys.version_info < (3, 14)]


def test_start_tls_argument_errors(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        tr, proto = await loop.create_connection(asyncio.Protocol, "127.0.0.1", server.sockets[0].getsockname()[1])
        with pytest.raises(TypeError, match="sslcontext is expected to be an instance of ssl.SSLContext"):
            await loop.start_tls(tr, proto, None)
        with pytest.raises(TypeError, match="is not supported by start_tls"):
            await loop.start_tls(object(), proto, ssl.create_default_context())
        tr.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_argument_checks(loop, client_ctx):
    async def main():
        with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, server_hostname="x")
        with pytest.raises(ValueError, match="You must set server_hostname when using ssl without a host"):
            a, b = socket.socketpair()
            with a, b:
                await loop.create_connection(asyncio.Protocol, sock=a, ssl=client_ctx)
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful with ssl"):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, ssl_handshake_timeout=1)
        with pytest.raises(TypeError, match="ssl argument must be an SSLContext or None"):
            await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=True)
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful with ssl"):
            await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl_handshake_timeout=1)
        with pytest.raises(ValueError, match="you have to pass server_hostname when using ssl"):
            await loop.create_unix_connection(asyncio.Protocol, "/nonexistent", ssl=client_ctx)

    loop.run_until_complete(main())


@pytest.mark.parametrize("host,trusted", [("wrong.example", True), ("localhost", False)])
def test_verification_failures(loop, server_ctx, client_ctx, host, trusted):
    ctx = client_ctx if trusted else ssl.create_default_context()

    async def main():
        server, port = await tls_server(loop, server_ctx)
        with pytest.raises(ssl.SSLCertVerificationError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, ssl=ctx, server_hostname=host)
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    drop_debug_accept_errors(loop)


def test_handshake_timeout_with_a_stalled_peer(loop, client_ctx):
    async def main():
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        try:
            with pytest.raises((ConnectionAbortedError, asyncio.TimeoutError)):
                await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, ssl=client_ctx,
                                             server_hostname="localhost", ssl_handshake_timeout=0.2)
        finally:
            silent.close()

    loop.run_until_complete(main())


def test_peer_closes_mid_handshake(loop, client_ctx):
    async def main():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]

        async def close_after_hello():
            conn, _ = await loop.sock_accept(listener)
            await loop.sock_recv(conn, 1024)  # the ClientHello
            conn.close()

        closer = asyncio.ensure_future(close_after_hello())
        with pytest.raises(ConnectionResetError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, ssl=client_ctx,
                                         server_hostname="localhost")
        await closer
        listener.close()

    loop.run_until_complete(main())


def test_client_certificates(loop, ca, client_ctx):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    with_cert = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(with_cert)
    ca.issue_cert("client@example").configure_cert(with_cert)

    async def main():
        server, port = await tls_server(loop, server_ctx)
        tr, proto = await loop.create_connection(lambda: Collect(loop, 2), "127.0.0.1", port, ssl=with_cert,
                                                 server_hostname="localhost")
        tr.write(b"ok")
        assert await asyncio.wait_for(proto.done, 10) == b"ok"
        tr.close()
        # without a certificate: TLS 1.3 reports the refusal after the handshake
        tr, proto = await loop.create_connection(lambda: Collect(loop, 2), "127.0.0.1", port, ssl=client_ctx,
                                                 server_hostname="localhost")
        tr.write(b"no")
        exc = await asyncio.wait_for(proto.lost, 10)
        # None when the server's FIN is read before the RST its kernel sends for "no"
        # (the kernel reports a pending reset before an EOF), on either loop
        assert isinstance(exc, (ssl.SSLError, ConnectionResetError)) or exc is None
        assert not proto.data
        tr.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    drop_debug_accept_errors(loop)


def test_alpn_and_sni(loop, ca, client_ctx):
    seen = []
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "other.example").configure_cert(server_ctx)
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    server_ctx.sni_callback = lambda sslobj, name, ctx: seen.append(name)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    ctx.set_alpn_protocols(["http/1.1"])

    async def main():
        server, port = await tls_server(loop, server_ctx)
        tr, proto = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, ssl=ctx,
                                                 server_hostname="other.example")
        assert tr.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
        tr.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    assert seen == ["other.example"]


@contextlib.contextmanager
def thread_peer(server_ctx, serve):
    """A TLS server on a plain thread using the ssl module: serve(tls_socket) runs for
    the one connection it accepts. Yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run():
        conn, _ = listener.accept()
        serve(server_ctx.wrap_socket(conn, server_side=True))

    th = threading.Thread(target=run)
    th.start()
    try:
        yield listener.getsockname()[1]
    finally:
        th.join(10)
        listener.close()


def test_plain_thread_peer(loop, server_ctx, client_ctx):
    # pyloop's TLS client against a server thread using the ssl module directly.
    def serve(tls):
        with tls:
            data = b""
            while not data.endswith(b"\n"):
                data += tls.recv(1024)
            tls.sendall(data[::-1])
            try:
                tls.unwrap()
            except ssl.SSLEOFError:  # 3.10's asyncio closes without waiting for our close_notify
                assert sys.version_info < (3, 11)

    async def main(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                       server_hostname="localhost")
        writer.write(b"abc\n")
        assert await asyncio.wait_for(reader.readexactly(4), 10) == b"\ncba"
        writer.close()
        try:
            await writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass

    with thread_peer(server_ctx, serve) as port:
        loop.run_until_complete(main(port))


def test_cancelled_handshake_leaks_nothing(loop, client_ctx):
    async def main():
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        before = None
        for i in range(6):
            if i == 1:  # after a first round: the loop's own lazily made fds exist
                await asyncio.sleep(0.05)
                before = len(os.listdir("/proc/self/fd"))
            task = asyncio.ensure_future(loop.create_connection(asyncio.Protocol, "127.0.0.1", port,
                                                                ssl=client_ctx, server_hostname="localhost"))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await asyncio.sleep(0.05)
        silent.close()
        return before

    before = loop.run_until_complete(main())
    assert len(os.listdir("/proc/self/fd")) <= before


def test_sendfile_over_tls_takes_the_fallback(loop, server_ctx, client_ctx, tmp_path):
    path = tmp_path / "f"
    payload = os.urandom(300_000)
    path.write_bytes(payload)

    async def main():
        received = loop.create_future()

        class Sink(asyncio.Protocol):
            def __init__(self):
                self.data = bytearray()

            def data_received(self, data):
                self.data += data
                if len(self.data) >= len(payload) and not received.done():
                    received.set_result(bytes(self.data))

        server, port = await tls_server(loop, server_ctx, Sink)
        tr, proto = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, ssl=client_ctx,
                                                 server_hostname="localhost")
        with open(path, "rb") as f:
            assert await loop.sendfile(tr, f) == len(payload)
        assert await asyncio.wait_for(received, 20) == payload
        tr.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_peer_without_close_notify(loop, server_ctx, client_ctx):
    # The server thread drops the TCP connection without a TLS close_notify: the client
    # protocol hears EOF / connection_lost as asyncio reports it (never hangs).
    def serve(tls):
        tls.sendall(b"bye")
        tls.close()  # closes the TCP connection without a TLS close_notify (no unwrap())

    class Seen(Collect):
        eof = 0

        def eof_received(self):
            self.eof += 1

    async def main(port):
        tr, proto = await loop.create_connection(lambda: Seen(loop, 3), "127.0.0.1", port, ssl=client_ctx,
                                                 server_hostname="localhost")
        assert await asyncio.wait_for(proto.done, 10) == b"bye"
        exc = await asyncio.wait_for(proto.lost, 10)
        tr.close()
        return proto.eof, exc

    with thread_peer(server_ctx, serve) as port:
        eof, exc = loop.run_until_complete(main(port))
    # asyncio: the raw EOF with no close_notify is still an EOF to the application, once
    # (the SSL layer does not treat the missing close_notify as an error), then
    # connection_lost(None)
    assert (eof, exc) == (1, None)


def test_buffered_protocol_and_flow_control_over_tls(loop, server_ctx, client_ctx):
    payload = os.urandom(2 * 1024 * 1024)

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            # a memoryview: asyncio's SSLProtocol reads into slices of the buffer
            self.buf = memoryview(bytearray(65536))
            self.data = bytearray()
            self.done = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            self.data += self.buf[:nbytes]
            if len(self.data) >= len(payload) and not self.done.done():
                self.done.set_result(bytes(self.data))

    async def main():
        server, port = await tls_server(loop, server_ctx)
        tr, proto = await loop.create_connection(Buffered, "127.0.0.1", port, ssl=client_ctx,
                                                 server_hostname="localhost")
        tr.pause_reading()
        assert not tr.is_reading()
        tr.write(payload)
        await asyncio.sleep(0.1)
        assert len(proto.data) < len(payload)  # paused: the echo waits
        tr.resume_reading()
        assert await asyncio.wait_for(proto.done, 30) == payload
        tr.set_write_buffer_limits(high=1024)
        assert tr.get_write_buffer_limits()[1] == 1024
        tr.abort()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_aiohttp_https_client_and_server(loop, server_ctx, client_ctx):
    aiohttp = needs_module("aiohttp")
    from aiohttp import web

    async def hello(request):
        body = await request.read()
        return web.Response(body=b"hello " + body, headers={"X-Scheme": request.scheme})

    async def main():
        app = web.Application()
        app.router.add_post("/", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            connector = aiohttp.TCPConnector(ssl=client_ctx)
            async with aiohttp.ClientSession(connector=connector) as session:
                for i in range(3):  # a kept-alive connection, reused
                    async with session.post(f"https://localhost:{port}/", data=b"tls %d" % i) as resp:
                        assert resp.status == 200
                        assert resp.headers["X-Scheme"] == "https"
                        assert await resp.read() == b"hello tls %d" % i
        finally:
            await runner.cleanup()

    loop.run_until_complete(main())


def test_set_protocol_over_tls(loop, server_ctx, client_ctx):
    # The TLS transport hands its stream to another protocol (a WebSocket upgrade): what
    # comes next reaches the new protocol only.
    got = {"first": bytearray(), "second": bytearray()}
    done = loop.create_future()

    class Second(asyncio.Protocol):
        def data_received(self, data):
            got["second"].extend(data)
            if got["second"].endswith(b"END") and not done.done():
                done.set_result(None)

    class First(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            got["first"].extend(data)
            if got["first"].endswith(b"UPGRADE\n"):
                self.transport.set_protocol(Second())

    async def main():
        server = await loop.create_server(First, "127.0.0.1", 0, ssl=server_ctx)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname(), ssl=client_ctx,
                                                       server_hostname="localhost")
        writer.write(b"UPGRADE\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"frame;END")
        await asyncio.wait_for(done, 10)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    assert (bytes(got["first"]), bytes(got["second"])) == (b"UPGRADE\n", b"frame;END")
