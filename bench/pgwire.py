"""A TCP proxy in front of PostgreSQL that counts the statements its clients send, read off the wire protocol.

Why on the wire: PostgreSQL's own per-statement counter (pg_stat_statements) needs `shared_preload_libraries` and a
server restart, and the server is shared; a Django `execute_wrapper` would need project code and does not see the
BEGIN and COMMIT that psycopg sends itself. Here nothing in the project changes: a process is pointed at the proxy
(its DATABASE_URL) and every statement it sends is counted — a simple-protocol Query ('Q') or an extended-protocol
Execute ('E'), one per statement run, prepared or not; BEGIN, COMMIT and ROLLBACK included.

An SSLRequest or GSSENCRequest is answered 'N' by the proxy itself (the client then goes on in clear over
127.0.0.1), so that the messages can be read. Each listening port is a `kind` (web, worker): counts are per kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections import Counter
from concurrent.futures import Future
from typing import Any

CHUNK = 65536
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
#: Message types counted as statements: a simple Query, an extended-protocol Execute.
STATEMENT_TYPES = {ord("Q"): "query", ord("E"): "execute"}


class MessageCounter:
    """Splits a frontend byte stream into protocol messages (after the startup message) and counts them by type."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self.header = bytearray()
        self.skip = 0  # bytes left of the message being passed through

    def feed(self, data: bytes) -> None:
        position, size = 0, len(data)
        while position < size:
            if self.skip:
                step = min(self.skip, size - position)
                self.skip -= step
                position += step
                continue
            need = 5 - len(self.header)
            self.header += data[position : position + need]
            position += min(need, size - position)
            if len(self.header) == 5:
                kind = self.header[0]
                (length,) = struct.unpack("!i", self.header[1:5])
                if kind in STATEMENT_TYPES:
                    self.counts[STATEMENT_TYPES[kind]] += 1
                self.counts["messages"] += 1
                self.skip = length - 4
                self.header.clear()


class CountingProxy:
    """Listens on (host, port) pairs, each counted as a kind, and forwards to PostgreSQL, on a loop in a thread."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.counts: dict[str, Counter[str]] = {}
        self.loop = asyncio.new_event_loop()
        self._servers: list[asyncio.AbstractServer] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="pg-counting-proxy", daemon=True)
        self._thread.start()

    def _call(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=10)

    def listen(self, kind: str, host: str = "127.0.0.1", port: int = 0) -> int:
        """Accept on host:port (0: a free port) and count what arrives there as `kind`; the port."""
        counts = self.counts.setdefault(kind, Counter())

        async def start() -> int:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await self._connection(reader, writer, counts)

            server = await asyncio.start_server(handle, host, port, reuse_address=True)
            self._servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        return int(self._call(start()))

    def snapshot(self) -> dict[str, dict[str, int]]:
        async def copy() -> dict[str, dict[str, int]]:
            return {kind: dict(counts) for kind, counts in self.counts.items()}

        return dict(self._call(copy()))

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counts: Counter[str]
    ) -> None:
        try:
            startup = await self._startup(reader, writer)
            if startup is None:
                return
            target_reader, target_writer = await asyncio.open_connection(*self.target)
        except (OSError, asyncio.IncompleteReadError):
            writer.close()
            return
        counts["connections"] += 1
        target_writer.write(startup)
        counter = MessageCounter(counts)
        try:
            await asyncio.gather(self._pipe(reader, target_writer, counter), self._pipe(target_reader, writer, None))
        finally:
            for each in (writer, target_writer):
                each.close()

    @staticmethod
    async def _startup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
        """Answer encryption requests with 'N'; the startup (or cancel) message's bytes, to forward."""
        while True:
            head = await reader.readexactly(8)
            length, code = struct.unpack("!ii", head)
            rest = await reader.readexactly(length - 8)
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                writer.write(b"N")
                await writer.drain()
                continue
            return head + rest

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: MessageCounter | None) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(CHUNK):
                if counter is not None:
                    counter.feed(data)
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()

    def stop(self) -> None:
        async def close() -> None:
            for server in self._servers:
                server.close()

        with contextlib.suppress(TimeoutError, RuntimeError):
            self._call(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


class ProxyProcess:
    """A CountingProxy in a process of its own (its work stays out of the measured processes and off this
    process's GIL): `ports` per kind, `snapshot()` of the counts, `stop()`."""

    def __init__(self, target_host: str, target_port: int, kinds: list[str]) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, target_host, target_port, kinds), daemon=True)
        self.process.start()
        self.ports: dict[str, int] = self._conn.recv()

    def snapshot(self) -> dict[str, dict[str, int]]:
        self._conn.send("snapshot")
        return dict(self._conn.recv())

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


def _serve(conn: Any, target_host: str, target_port: int, kinds: list[str]) -> None:
    proxy = CountingProxy(target_host, target_port)
    conn.send({kind: proxy.listen(kind) for kind in kinds})
    while conn.recv() != "stop":
        conn.send(proxy.snapshot())
    proxy.stop()
