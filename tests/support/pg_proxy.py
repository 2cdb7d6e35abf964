"""A PostgreSQL wire-protocol proxy on loopback that delays or drops notifications on their way to the client,
and passes everything else through: a database behind a transaction-mode pooler (notifications never arrive)
or a slow one, for the LISTEN self-test. The database behind it is the real one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit, urlunsplit

NOTIFICATION = b"A"  # NotificationResponse, server to client


@dataclass
class Proxy:
    url: str  # the database URL through the proxy (TLS off: the proxy reads the messages)
    notification_delay_s: float | None = 0.0  # None: notifications are dropped
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


async def _upstream(db_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(db_url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "127.0.0.1"])[0]
    port = parts.port or 5432
    if host.startswith("/"):  # the embedded server listens on a unix socket
        return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
    return await asyncio.open_connection(host, port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def _server_to_client(proxy: Proxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    lock = asyncio.Lock()  # a delayed notification is written whole, between two other messages

    async def later(message: bytes, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        async with lock:
            writer.write(message)
            await writer.drain()

    with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
        while True:
            header = await reader.readexactly(5)
            message = header + await reader.readexactly(int.from_bytes(header[1:], "big") - 4)
            if header[:1] == NOTIFICATION:
                if proxy.notification_delay_s is None:
                    continue
                if proxy.notification_delay_s > 0:
                    task = asyncio.create_task(later(message, proxy.notification_delay_s))
                    proxy.tasks.add(task)
                    task.add_done_callback(proxy.tasks.discard)
                    continue
            async with lock:
                writer.write(message)
                await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def notification_proxy(db_url: str, *, delay_s: float | None) -> AsyncIterator[Proxy]:
    """Serve on 127.0.0.1; yields the Proxy whose `url` is db_url through it (same role, password, database)."""
    proxy = Proxy("", delay_s)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await _upstream(db_url)
        await asyncio.gather(_pipe(client_r, server_w), _server_to_client(proxy, server_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    parts = urlsplit(db_url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    proxy.url = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}", query="sslmode=disable"))
    try:
        yield proxy
    finally:
        server.close()
        for task in list(proxy.tasks):
            task.cancel()
