"""A Redis-style client over a Unix socket: PING, SET and GET in RESP, three rounds.

    python -m pyloop.threads --compare -o threads.png docs/examples/redis_unix.py

The server (a few lines of socketserver in a separate process, so Redis itself is not
needed) is not part of the picture. A Unix socket needs no name lookup: no loop
grows a thread for this program.
"""

import asyncio
import os
import subprocess
import sys
import tempfile
import time

SERVER = r'''
import socketserver, sys
store = {}
class H(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            args = []
            for _ in range(int(line[1:])):
                n = int(self.rfile.readline()[1:])
                args.append(self.rfile.read(n + 2)[:-2])
            cmd = args[0].upper()
            if cmd == b"PING":
                self.wfile.write(b"+PONG\r\n")
            elif cmd == b"SET":
                store[args[1]] = args[2]
                self.wfile.write(b"+OK\r\n")
            else:
                v = store.get(args[1])
                self.wfile.write(b"$-1\r\n" if v is None else b"$%d\r\n%s\r\n" % (len(v), v))
socketserver.UnixStreamServer(sys.argv[1], H).serve_forever()
'''


def command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


async def reply(reader):
    line = await reader.readline()
    if line[:1] == b"$":
        n = int(line[1:])
        return None if n < 0 else (await reader.readexactly(n + 2))[:-2]
    return line[1:-2]


async def main(path):
    reader, writer = await asyncio.open_unix_connection(path)
    for i in range(3):
        for cmd in (command("PING"), command("SET", "key", i), command("GET", "key")):
            writer.write(cmd)
            print(await reply(reader))
        await asyncio.sleep(0.01)
    writer.close()
    await writer.wait_closed()


if __name__ == "__main__":
    path = os.path.join(tempfile.mkdtemp(), "redis.sock")
    server = subprocess.Popen([sys.executable, "-c", SERVER, path])
    try:
        while not os.path.exists(path):
            time.sleep(0.01)
        asyncio.run(main(path))
    finally:
        server.kill()
        server.wait()
        os.unlink(path)
