"""A lean HTTP/1.1 client for the open-loop load processes of the benches.

The load generator shares the machine's two cores with the services it measures, so
every millisecond it spends is taken from them. aiohttp's client costs about 0.5 ms of
CPU per request here (a quarter of a core at 500/s in ``bench/credits.py``); this one
writes prebuilt request bytes on keep-alive connections and reads just the status line
and ``Content-Length``, a few times cheaper. It is not a general client: it takes
responses with a ``Content-Length`` (every crmsync answer has one), treats anything
else as a failed request, and opens a new connection after a ``Connection: close``.

    client = RawClient("127.0.0.1", 8000, limit=200)
    outcome = await client.post("/v1/events/credits", body, {"Authorization": "Bearer x"})
    # "202", or the exception's name ("TimeoutError", "ConnectionResetError", ...)
    client.close()
"""

from __future__ import annotations

import asyncio
from collections import deque

_END = b"\r\n\r\n"


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.reusable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buffer.find(_END)
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        length = _content_length(head)
        if length is None:
            self.reusable = False
            waiter.set_exception(ValueError("response without Content-Length"))
            return
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        if b"\r\nconnection: close" in head:
            self.reusable = False
        waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("connection closed"))

    def request(self, data: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter


def _content_length(head: bytes) -> int | None:
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return None
    end = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : end if end >= 0 else len(head)])


class RawClient:
    """Keep-alive connections to one ``host:port``, at most ``limit`` open; a request
    that finds none idle and the limit reached waits for one (that wait counts in its
    latency, as it would for a real client)."""

    def __init__(self, host: str, port: int, *, limit: int = 200, timeout_s: float = 10.0) -> None:
        self.host, self.port, self.limit, self.timeout_s = host, port, limit, timeout_s
        self._host_header = f"Host: {host}:{port}\r\n".encode()
        self._idle: deque[_Connection] = deque()
        self._waiting: deque[asyncio.Future[_Connection | None]] = deque()
        self._open = 0
        self._all: set[_Connection] = set()

    async def _connection(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable:
                return conn
            self._forget(conn)
        if self._open >= self.limit:
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            handed = await waiter
            if handed is not None:
                return handed
        self._open += 1
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                _Connection, self.host, self.port
            )
        except BaseException:
            self._open -= 1
            self._wake_one(None)
            raise
        self._all.add(conn)
        return conn

    def _forget(self, conn: _Connection) -> None:
        self._all.discard(conn)
        self._open -= 1
        if conn.transport is not None:
            conn.transport.close()

    def _wake_one(self, conn: _Connection | None) -> bool:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _give_back(self, conn: _Connection) -> None:
        if not conn.reusable:
            self._forget(conn)
            self._wake_one(None)  # the waiter opens a new one
        elif not self._wake_one(conn):
            self._idle.append(conn)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> str:
        """POST ``body``; returns the status code as text, or the failure's name."""
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        data = b"".join(
            (
                f"POST {path} HTTP/1.1\r\n".encode(),
                self._host_header,
                head.encode(),
                f"Content-Length: {len(body)}\r\n\r\n".encode(),
                body,
            )
        )
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = await self._connection()
                status = await conn.request(data)
            return str(status)
        except (OSError, ValueError, TimeoutError) as exc:
            if conn is not None:
                conn.reusable = False
            return type(exc).__name__
        finally:
            if conn is not None:
                self._give_back(conn)

    def close(self) -> None:
        for conn in list(self._all):
            if conn.transport is not None:
                conn.transport.close()
        self._all.clear()
        self._idle.clear()
