"""A tiny real HTTP server on 127.0.0.1 for provider tests, and a way to drive providers.

Each test writes the answers it needs (``server.route(path, reply)``) in the documented
shapes of the API it fakes, runs a provider against it through a real ``httpx.AsyncClient``
and ``Http``, then reads back ``server.requests`` to see exactly what was sent.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
from PIL import Image

from geotag.scrape.http import Http
from geotag.scrape.ratelimit import TokenBucket

T = TypeVar("T")


@dataclass(frozen=True)
class Reply:
    """One canned answer; ``stream``, when given, is called for the body's chunks instead
    (sent as they come, with no Content-Length unless ``headers`` has one: for bodies too
    big to build, or ones that drip)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: Callable[[], Iterable[bytes]] | None = None

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Reply:
        return cls(status, json.dumps(data).encode(), {"Content-Type": "application/json"})

    @classmethod
    def jpeg(cls, body: bytes) -> Reply:
        return cls(200, body, {"Content-Type": "image/jpeg"})

    @classmethod
    def redirect(cls, location: str) -> Reply:
        return cls(302, b"", {"Location": location})


@dataclass(frozen=True)
class Request:
    """What the server received: path, decoded query (one value per name) and headers."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased

    @property
    def raw(self) -> str:
        return json.dumps([self.path, self.query, self.headers])


Route = Reply | Callable[[Request], Reply]


class FakeApi:
    """Serves ``routes`` (path -> Reply, or a function of the Request); 404 for the rest."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def route(self, path: str, reply: Route) -> None:
        self.routes[path] = reply

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def answer(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
        route = self.routes.get(request.path)
        if route is None:
            return Reply.json({"message": "not found"}, status=404)
        return route(request) if callable(route) else route

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@contextmanager
def serving(count: int = 1) -> Iterator[list[FakeApi]]:
    """``count`` fake servers, each on its own port (so its own origin), stopped afterwards."""
    servers = [FakeApi() for _ in range(count)]
    for server in servers:
        server.start()
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def _handler_for(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = api.answer(Request(parts.path, query, headers))
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            declared = any(name.lower() == "content-length" for name in reply.headers)
            if reply.stream is not None:
                self.close_connection = True  # the body ends when the connection does
                self.end_headers()
                try:
                    for chunk in reply.stream():
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on it, as it should
                return
            if not declared:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


def jpeg_bytes(
    color: tuple[int, int, int] = (40, 120, 200), size: tuple[int, int] = (32, 24)
) -> bytes:
    """A real, small JPEG made with Pillow."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def drive(
    operation: Callable[[Http], Awaitable[T]], secrets: Iterable[str | None] = (), name: str = "x"
) -> T:
    """Run ``operation`` with a fresh client the way the scraper builds one, in a new loop."""

    async def main() -> T:
        async with httpx.AsyncClient(timeout=5.0, follow_redirects=True) as client:
            http = Http(client, TokenBucket(10_000.0, burst=10_000.0), secrets, name)
            return await operation(http)

    return asyncio.run(main())
