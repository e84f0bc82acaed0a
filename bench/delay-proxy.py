#!/usr/bin/env python3
"""A TCP proxy that holds each client->server chunk DELAY_MS before forwarding it,
so every request pays a round trip like a remote store's (bench/publish-vs-aptly.sh).
Each chunk is due DELAY_MS after it arrived (a link's latency): a request sent in
several chunks pays the delay once.

usage: delay-proxy.py LISTEN_PORT TARGET_PORT DELAY_MS [TRACE_FILE]   (all on 127.0.0.1)
Prints "ready" once listening. Server->client bytes pass at once.

With TRACE_FILE, appends one line per HTTP request:
"START END METHOD PATH" (seconds since the epoch; START when the client sent the
request line, END when the last byte of the answer came back before the next request
on that connection or its close). bench/critical-path.py reads it.
"""
import asyncio
import resource
import sys
import time

METHODS = (b"GET ", b"PUT ", b"HEAD ", b"POST ", b"DELETE ")


class Trace:
    """The requests of one connection, one at a time (HTTP/1.1 without pipelining)."""

    def __init__(self, out):
        self.out = out
        self.current = None  # [start, end, method, path]

    def request(self, chunk):
        if self.out is None or not chunk.startswith(METHODS):
            return
        self.flush()
        line = chunk.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        self.current = [time.time(), None, line[0], line[1] if len(line) > 1 else ""]

    def answer(self):
        if self.current is not None:
            self.current[1] = time.time()

    def flush(self):
        if self.current is not None and self.current[1] is not None:
            start, end, method, path = self.current
            self.out.write(f"{start:.6f} {end:.6f} {method} {path}\n")
            self.out.flush()
        self.current = None


async def pipe(reader, writer, delay, on_chunk):
    """Forwards each chunk `delay` after it arrived, like a link with that latency:
    the chunks of one request are delayed once, not once each in turn."""
    queue = asyncio.Queue()

    async def read():
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                on_chunk(chunk)
                await queue.put((time.monotonic() + delay, chunk))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            await queue.put((0.0, None))

    async def write():
        try:
            while True:
                due, chunk = await queue.get()
                if chunk is None:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    await asyncio.gather(read(), write())


async def main():
    listen, target, delay_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    delay = delay_ms / 1000.0
    out = open(sys.argv[4], "a") if len(sys.argv) > 4 else None
    # Two descriptors per open connection, and a first publish of 10,000 .debs opens
    # and closes connections `jobs` at a time: a low soft limit would refuse accepts.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_writer.close()
            return
        trace = Trace(out)
        await asyncio.gather(
            pipe(client_reader, server_writer, delay, trace.request),
            pipe(server_reader, client_writer, 0, lambda _chunk: trace.answer()),
        )
        trace.flush()

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
