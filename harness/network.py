"""Networks for chaos runs: a TCP forwarder and a network namespace joined to the host by a veth pair.

Services listen on 127.0.0.1 only. A process in a namespace reaches them through the forwarder, which listens on
the veth's host address (10.231.<n>.1) and connects to 127.0.0.1. Cutting the link (`NetNamespace.cut`) partitions
the namespace: packets are dropped, connections hang, nothing is reset; `restore` brings the link back.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

#: Bytes read at a time by the forwarder.
CHUNK = 65536


class TcpForwarder:
    """Forwards TCP connections from listening addresses to targets, on an asyncio loop in its own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._servers: list[asyncio.AbstractServer] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self.loop.run_forever, name="tcp-forwarder", daemon=True)
        self._thread.start()

    def _call(self, coroutine: Any, timeout: float = 10.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=timeout)

    def forward(self, listen_host: str, listen_port: int, target_host: str, target_port: int) -> None:
        """Accept on listen_host:listen_port; each connection is piped to target_host:target_port."""

        async def start() -> None:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await self._pipe_connection(reader, writer, target_host, target_port)

            server = await asyncio.start_server(handle, listen_host, listen_port, reuse_address=True)
            self._servers.append(server)

        self._call(start())

    async def _pipe_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target_host: str, target_port: int
    ) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, target_writer}
        try:
            await asyncio.gather(self._pipe(reader, target_writer), self._pipe(target_reader, writer))
        finally:
            for each in (writer, target_writer):
                self._writers.discard(each)
                each.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()

    def drop_connections(self) -> int:
        """Close every forwarded connection at once; how many ends were closed."""

        async def close() -> int:
            writers = list(self._writers)
            for writer in writers:
                writer.transport.abort()
            return len(writers)

        return int(self._call(close()))

    def stop(self) -> None:
        async def close() -> None:
            for server in self._servers:
                server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        with contextlib.suppress(Exception):
            self._call(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def netns_index_free(start: int = 40) -> int:
    """An n for 10.231.<n>.0/24 and namespace chaos<n> that nobody on this host uses."""
    addresses = _ip("-o", "addr", check=False).stdout
    namespaces = _ip("netns", "list", check=False).stdout
    for index in range(start, 250):
        if f"10.231.{index}." not in addresses and f"chaos{index}" not in namespaces:
            return index
    raise RuntimeError("no free 10.231.<n>.0/24 network for a namespace")


@dataclass
class NetNamespace:
    """Network namespace `chaos<n>` with a veth pair: host side 10.231.<n>.1, namespace side 10.231.<n>.2."""

    index: int
    created: bool = field(default=False)

    @property
    def name(self) -> str:
        return f"chaos{self.index}"

    @property
    def host_interface(self) -> str:
        return f"chs{self.index}h"

    @property
    def host_address(self) -> str:
        return f"10.231.{self.index}.1"

    @property
    def address(self) -> str:
        return f"10.231.{self.index}.2"

    @property
    def exec_prefix(self) -> list[str]:
        """Words that run a command inside the namespace (`ip netns exec` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name]

    def create(self) -> NetNamespace:
        inside = f"chs{self.index}n"
        _ip("netns", "add", self.name)
        self.created = True
        _ip("link", "add", self.host_interface, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", self.name)
        _ip("addr", "add", f"{self.host_address}/24", "dev", self.host_interface)
        _ip("link", "set", self.host_interface, "up")
        _ip("-n", self.name, "addr", "add", f"{self.address}/24", "dev", inside)
        _ip("-n", self.name, "link", "set", inside, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")
        return self

    def cut(self) -> None:
        """Partition: the host side of the link goes down; packets are dropped both ways."""
        _ip("link", "set", self.host_interface, "down")

    def restore(self) -> None:
        _ip("link", "set", self.host_interface, "up")

    def destroy(self) -> None:
        """Delete the veth pair and the namespace (idempotent)."""
        if not self.created:
            return
        _ip("link", "del", self.host_interface, check=False)
        _ip("netns", "del", self.name, check=False)
        self.created = False
