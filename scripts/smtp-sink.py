#!/usr/bin/env python3
"""A minimal SMTP receiver for tests: accepts every message and writes it to
DIR/<n>.eml, prefixed with `X-Test-Rcpt-To:` lines naming the envelope
recipients. Usage: smtp-sink.py HOST:PORT DIR. Standard library only."""

import asyncio
import itertools
import os
import sys

COUNTER = itertools.count(1)


async def session(reader, writer, out_dir):
    def reply(line):
        writer.write(line.encode() + b"\r\n")

    reply("220 parsec-test-sink ESMTP")
    rcpts = []
    while True:
        line = await reader.readline()
        if not line:
            break
        verb = line.decode(errors="replace").strip().split(" ", 1)[0].split(":", 1)[0].upper()
        if verb in ("HELO", "EHLO"):
            reply("250 parsec-test-sink")
        elif verb == "MAIL":
            rcpts = []
            reply("250 OK")
        elif verb == "RCPT":
            rcpts.append(line.decode(errors="replace").split(":", 1)[1].strip().strip("<>"))
            reply("250 OK")
        elif verb == "DATA":
            reply("354 End data with <CR><LF>.<CR><LF>")
            await writer.drain()
            body = []
            while True:
                data = await reader.readline()
                if not data or data in (b".\r\n", b".\n"):
                    break
                body.append(data[1:] if data.startswith(b"..") else data)
            path = os.path.join(out_dir, "%d.eml" % next(COUNTER))
            with open(path + ".tmp", "wb") as f:
                for r in rcpts:
                    f.write(b"X-Test-Rcpt-To: " + r.encode() + b"\r\n")
                f.write(b"".join(body))
            os.rename(path + ".tmp", path)
            reply("250 OK: queued")
        elif verb == "QUIT":
            reply("221 Bye")
            await writer.drain()
            break
        elif verb in ("RSET", "NOOP"):
            reply("250 OK")
        else:
            reply("502 Command not implemented")
        await writer.drain()
    writer.close()


async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    out_dir = sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    server = await asyncio.start_server(lambda r, w: session(r, w, out_dir), host, int(port))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
