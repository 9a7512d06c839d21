"""The bare asyncio HTTP/1.1 server of the teach benches (``teach_throughput.py``, ``teach_scale.py``), run in its
own process: keep-alive requests with a Content-Length only (what the clients under test send), so that the server
costs next to nothing beside the client measured. A bench subclasses :class:`BareHTTP` with its ``request``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable


class BareHTTP(asyncio.Protocol):
    """One connection: each whole request is handed to :meth:`request`; :meth:`reply` answers 200 with JSON."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < head_end + 4 + length:
                return
            method, path = head.split(" ", 2)[:2]
            body = self.buffer[head_end + 4 : head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length :]
            self.request(method, path, body)

    def request(self, method: str, path: str, body: bytes) -> None:
        raise NotImplementedError

    def reply(self, payload: bytes) -> None:
        if not self.transport.is_closing():  # the client gave up on it (a timeout under test)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
            self.transport.write(head + payload)


def serve(protocol: Callable[[], asyncio.Protocol]) -> None:
    """Print ``PORT <n>``, serve until stdin closes (the parent's end: the server never outlives the bench)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(protocol, "127.0.0.1", 0, backlog=4096)
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(main())
