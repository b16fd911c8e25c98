"""TLS benchmark: a TLS echo server on one loop in a child process, driven by blocking
ssl-module clients in processes of their own (no GIL between them); the figure is the
server's CPU time per request (from /proc, so it stays meaningful when the Python
clients are the bottleneck) and per handshake.

    python bench/tls.py LOOP SIZE SECONDS [STYLE]      prints: requests/s  server_cpu_us_per_request
    python bench/tls.py LOOP handshake SECONDS [STYLE]  prints: handshakes/s server_cpu_us_per_handshake

STYLE is the server's: `protocol` (an asyncio.Protocol, the default) or `streams`
(asyncio.start_server with StreamReader.read / StreamWriter.write + drain).

Certificates are made with trustme (a test dependency).
"""

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import multiprocessing
import time

import rivals

SERVER = r"""
import asyncio, ssl, sys
sys.path.insert(0, sys.argv[4])
from micro import make_loop
loop = make_loop(sys.argv[1])  # first: rsloop must see the certificate loaded
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)

async def echo_stream(reader, writer):
    try:
        while data := await reader.read(262144):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()

async def main():
    if sys.argv[5] == "streams":
        server = await asyncio.start_server(echo_stream, "127.0.0.1", 0, ssl=ctx, backlog=1000)
    else:
        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0, ssl=ctx, backlog=1000)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(3600)

loop.run_until_complete(main())
"""

CLIENTS = 4


def server_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def certificates(folder):
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(os.path.join(folder, "cert.pem"))
    cert.private_key_pem.write_to_path(os.path.join(folder, "key.pem"))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem"), client


def echo_client(port, ctx, size, deadline, counts, i):
    msg = os.urandom(size)
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") as s:
        while time.monotonic() < deadline:
            s.sendall(msg)
            got = 0
            while got < size:
                got += len(s.recv(1 << 20))
            counts[i] += 1


def handshake_client(port, ctx, deadline, counts, i):
    while time.monotonic() < deadline:
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") as s:
            s.sendall(b"x")
            s.recv(1)
        counts[i] += 1


def main():
    loop_name, what, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    style = sys.argv[4] if len(sys.argv) > 4 else "protocol"
    with tempfile.TemporaryDirectory() as folder:
        cert, key, ctx = certificates(folder)
        here = os.path.dirname(os.path.abspath(__file__))
        errors = open(os.path.join(folder, "server.err"), "w+")  # (a pipe left unread could fill)
        proc = subprocess.Popen([*rivals.python(), "-c", SERVER, loop_name, cert, key, here, style],
                                stdout=subprocess.PIPE, stderr=errors, text=True, env=rivals.environment())
        try:
            line = proc.stdout.readline()
            if not line.strip():
                proc.wait(timeout=30)
                errors.seek(0)
                why = (errors.read().strip().splitlines() or ["no output"])[-1]
                raise SystemExit(f"the {loop_name} TLS server did not start: {why}")
            port = int(line)
            counts = multiprocessing.get_context("fork").Array("q", CLIENTS, lock=False)
            deadline = time.monotonic() + seconds
            if what == "handshake":
                target, args = handshake_client, ()
            else:
                target, args = echo_client, (int(what),)
            clients = [multiprocessing.get_context("fork").Process(
                target=target, args=(port, ctx) + args + (deadline, counts, i)) for i in range(CLIENTS)]
            cpu0 = server_cpu(proc.pid)
            for c in clients:
                c.start()
            for c in clients:
                c.join()
            cpu = server_cpu(proc.pid) - cpu0
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
            errors.close()
    done = sum(counts)
    print(f"{done / seconds:.1f} {cpu / max(done, 1) * 1e6:.2f}")


if __name__ == "__main__":
    main()
