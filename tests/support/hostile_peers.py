"""Generators that misbehave below HTTP: a raw TCP peer that reads a request and writes whatever bytes a test
scripts (bad status lines, undecodable headers, endless bodies), or accepts and never answers."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

# Writes the answer to one request. Closing the connection is the answer's business.
Answer = Callable[["RawPeer", asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawPeer:
    url: str = ""
    requests: int = 0  # requests read in full
    connections: int = 0
    wire_bytes_written: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)


def fixed(raw: bytes) -> Answer:
    """Write these bytes and close."""
    async def answer(_peer: RawPeer, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        writer.close()
    return answer


def never() -> Answer:
    """Accept, read the request, never answer (a hanging load balancer)."""
    async def answer(_peer: RawPeer, _writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # torn down with the server: not an error
            await asyncio.Event().wait()
    return answer


def endless(head: bytes, chunk: bytes, *, chunked: bool = True) -> Answer:
    """A status line and headers, then `chunk` forever (chunked, or as an unending body)."""
    async def answer(peer: RawPeer, writer: asyncio.StreamWriter) -> None:
        writer.write(head)
        frame = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
        while True:
            writer.write(frame)
            peer.wire_bytes_written += len(frame)
            await writer.drain()
    return answer


def gzip_bomb(status: int, inflated_mb: int) -> bytes:
    """A whole answer whose gzip body inflates to `inflated_mb` MB of zeros (about 1,000 : 1)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    body = b"".join(c.compress(block) for _ in range(inflated_mb)) + c.flush()
    return (b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\n\r\n" % (status, len(body))) + body


async def _read_request(reader: asyncio.StreamReader) -> bool:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return False
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    try:
        await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    return True


@contextlib.asynccontextmanager
async def raw_peer(answer: Answer) -> AsyncIterator[RawPeer]:
    """Serve on a free loopback port, answering every request with `answer`."""
    peer = RawPeer()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer.connections += 1
        peer._writers.add(writer)
        try:
            while await _read_request(reader):
                peer.requests += 1
                await answer(peer, writer)
                if writer.is_closing():
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            peer._writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    peer.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield peer
    finally:
        server.close()
        for w in list(peer._writers):
            w.transport.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5)
