"""What the loopback fake servers share (``fake_openai_server``, ``fake_hub_server``, ``fake_batch_server``): a
threaded HTTP server on 127.0.0.1 whose handler reads request bodies and answers JSON, started and stopped as a
context manager, and a free loopback port. Stdlib only: the OpenAI fake also runs as a process of its own
(benchmarks, the crash tests), where nothing but the standard library is imported.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, TypeVar

S = TypeVar("S", bound="LoopbackServer")


def free_port() -> int:
    """A loopback port where nothing listens now (bound once by the OS, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JSONHandler(BaseHTTPRequestHandler):
    """A request handler of a fake: ``self.server.fake`` is the fake it serves."""

    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections, as they would with a real server
    disable_nagle_algorithm = True  # headers and body are separate writes: Nagle + delayed ACK would add 40 ms
    server: LoopbackHTTPServer
    status = 0
    """The status of the last answer sent on this connection (0: none yet)."""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stderr access log."""

    def _body(self) -> bytes:
        """The request body (``Content-Length`` or chunked, as ``huggingface_hub`` sends some uploads)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, payload: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Answer ``status`` with ``payload`` (JSON unless ``headers`` say otherwise; no body to a HEAD). A client
        that went away meanwhile (its timeout fired) only has its connection closed."""
        headers = {"Content-Type": "application/json", **(headers or {})}
        headers.setdefault("Content-Length", str(len(payload)))
        self.status = status
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not make stop() wait
    request_queue_size = 1024  # a burst of many concurrent connects must not be refused
    fake: Any


class LoopbackServer:
    """A fake on ``127.0.0.1:<port>`` (0: a free one), served by ``handler`` in a thread of its own; use it as a
    context manager or ``start()`` / ``stop()``. A server stopped and started again keeps its port."""

    handler: ClassVar[type[JSONHandler]]
    http_server: ClassVar[type[LoopbackHTTPServer]] = LoopbackHTTPServer

    def __init__(self, port: int = 0):
        self._port = port
        self._httpd: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self: S) -> S:
        self._httpd = self.http_server(("127.0.0.1", self._port), self.handler)
        self._httpd.fake = self
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._port, "server not started"
        return self._port
