"""A real HTTP server that speaks the Street View Static API over a simulated :class:`World`.

The scraper talks to it exactly as it talks to Google: same paths, parameters, statuses,
API key and URL signature. On top of Google's behaviour it can misbehave on purpose, so
retries and resumes get tested against a real socket:

- ``qps``: a token bucket; above it, HTTP 429 with ``Retry-After: 1`` (metadata also
  says ``OVER_QUERY_LIMIT``).
- ``fail_rate`` / ``faults``: each request, with that probability (seeded), gets one fault:
  ``500``, ``503``, ``drop`` (close without answering), ``truncate`` (full Content-Length,
  half the body, close) or ``unknown_error`` (metadata ``UNKNOWN_ERROR``; images 500).
- ``latency_ms``: every answer waits that long.

Every request is logged as ``(monotonic time, path, HTTP status or "drop")``; the query,
and with it the key and the signature, is never logged, printed or echoed back.

Example::

    with SimServer(key="test-key", qps=50) as sim:
        httpx.get(f"{sim.base_url}/maps/api/streetview/metadata",
                  params={"location": "12.97,77.59", "radius": 5000, "key": "test-key"})
"""

from __future__ import annotations

import contextlib
import difflib
import hmac
import math
import random
import socket
import socketserver
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

from geotag import urlsign
from geotag.errors import InputError
from geotag.sim.api import (
    ENDPOINTS,
    Params,
    Reply,
    image_reply,
    metadata_reply,
    status_reply,
    text_reply,
)
from geotag.sim.world import World

FAULTS = ("500", "503", "drop", "truncate", "unknown_error")
RETRY_AFTER = (("Retry-After", "1"),)
#: How long an idle keep-alive connection may hold its thread.
IDLE_TIMEOUT_S = 60.0


class LoggedRequest(NamedTuple):
    """One request as the server saw it; no query string, so no secrets."""

    time: float
    path: str
    status: int | str


class SimServer:
    """The Street View Static API on 127.0.0.1, served from a background thread."""

    def __init__(
        self,
        world: World | None = None,
        *,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        key: str | None = None,
        signing_secret: str | None = None,
        qps: float | None = None,
        fail_rate: float = 0.0,
        faults: Iterable[str] | str | None = None,
        latency_ms: float = 0.0,
    ) -> None:
        if key is not None and not key:
            raise InputError("key must not be empty; leave it out to accept any key")
        if signing_secret is not None:
            urlsign.signature_for("/", signing_secret)  # InputError if malformed
        if not 0 <= port <= 65535:
            raise InputError(f"port must lie in 0..65535; got {port}")
        if qps is not None and not (math.isfinite(qps) and qps > 0):
            raise InputError(f"qps must be a positive number, or None for no limit; got {qps}")
        if not (math.isfinite(fail_rate) and 0.0 <= fail_rate <= 1.0):
            raise InputError(f"fail_rate must lie in [0, 1]; got {fail_rate}")
        if not (math.isfinite(latency_ms) and latency_ms >= 0.0):
            raise InputError(f"latency_ms must be zero or more; got {latency_ms}")
        self.world = world if world is not None else World(seed=seed)
        self.host = host
        self.port = port
        self.qps = qps
        self.fail_rate = float(fail_rate)
        self.faults = _check_faults(faults)
        self.latency_ms = float(latency_ms)
        self._key = key
        self._secret = signing_secret
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._bucket = _TokenBucket(qps) if qps is not None else None
        self._log: list[LoggedRequest] = []
        self._log_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()

    def __repr__(self) -> str:
        # Never show the key or the secret, only whether they are set.
        state = self.base_url if self._httpd is not None else "stopped"
        return (
            f"SimServer({state}, key={'set' if self._key else None}, "
            f"signing_secret={'set' if self._secret else None}, qps={self.qps}, "
            f"fail_rate={self.fail_rate})"
        )

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> SimServer:
        """Bind (a free port when ``port=0``) and serve from a daemon thread."""
        with self._lifecycle:
            if self._httpd is not None:
                raise RuntimeError("the SimServer is already running")
            try:
                httpd = _HTTPServer((self.host, self.port), self)
            except OSError as exc:
                raise InputError(
                    f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
                ) from None
            thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._httpd, self._thread = httpd, thread
        return self

    def stop(self) -> None:
        """Stop accepting, close open keep-alive connections, release the port."""
        with self._lifecycle:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join()

    def serve_forever(self) -> None:
        """Serve until KeyboardInterrupt or :meth:`stop`, then stop; starts if not started."""
        if self._httpd is None:
            self.start()
        thread = self._thread
        try:
            while thread is not None and thread.is_alive():
                thread.join(timeout=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        if self._httpd is None:
            raise RuntimeError("the SimServer is not running; call start() or use `with`")
        host, port = self._httpd.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def requests(self) -> list[LoggedRequest]:
        """A copy of the request log, oldest first."""
        with self._log_lock:
            return list(self._log)

    # -- answering -------------------------------------------------------------------------
    def _handle(self, handler: _Handler) -> None:
        """Answer one GET on ``handler``'s connection."""
        arrived = time.monotonic()
        target = handler.path
        parts = urlsplit(target)
        endpoint = ENDPOINTS.get(parts.path)
        if endpoint is None:
            self._send(handler, arrived, parts.path, text_reply(404, "Not Found"))
            return
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000.0)
        fault = self._draw_fault()
        if fault == "drop":
            self._record(arrived, parts.path, "drop")
            handler.close_connection = True
            return
        if fault == "503":
            reply = text_reply(503, "Service Unavailable")
        elif fault == "unknown_error" and endpoint == "metadata":
            reply = status_reply("UNKNOWN_ERROR")
        elif fault in ("500", "unknown_error"):
            reply = text_reply(500, "Internal Server Error")
        else:
            reply = self._reply(endpoint, target, parse_qs(parts.query, keep_blank_values=True))
        self._send(handler, arrived, parts.path, reply, truncate=fault == "truncate")

    def _reply(self, endpoint: str, target: str, params: Params) -> Reply:
        denial = self._denial(target, params)
        if denial is not None:
            if endpoint == "metadata":
                return status_reply("REQUEST_DENIED", denial)
            return text_reply(
                403, f"The Google Maps Platform server rejected your request. {denial}"
            )
        if self._bucket is not None and not self._bucket.take():
            message = "You have exceeded your rate-limit for this API."
            if endpoint == "metadata":
                return status_reply("OVER_QUERY_LIMIT", message, 429, RETRY_AFTER)
            return text_reply(429, message, RETRY_AFTER)
        try:
            if endpoint == "metadata":
                return metadata_reply(self.world, params)
            return image_reply(self.world, params)
        except Exception:  # a server must answer; the 500 shows up in the log and the client
            return text_reply(500, "Internal Server Error")

    def _denial(self, target: str, params: Params) -> str | None:
        """Why the key or the signature is refused, or None; never quotes either."""
        if self._key is not None:
            given = params.get("key", [""])[0]
            if not given:
                return "You must use an API key to authenticate each request."
            if not hmac.compare_digest(given.encode(), self._key.encode()):
                return "The provided API key is invalid."
        if self._secret is not None:
            if not params.get("signature"):
                return "Unable to authenticate the request. Missing the 'signature' parameter."
            if target.startswith(("http://", "https://")):  # absolute-form request target
                parts = urlsplit(target)
                target = f"{parts.path}?{parts.query}"
            if not urlsign.verify(target, self._secret):
                return "Unable to authenticate the request. The 'signature' is not valid."
        return None

    def _draw_fault(self) -> str | None:
        if not self.fail_rate:
            return None
        with self._rng_lock:
            if self._rng.random() >= self.fail_rate:
                return None
            return self._rng.choice(self.faults)

    def _send(
        self,
        handler: _Handler,
        arrived: float,
        path: str,
        reply: Reply,
        truncate: bool = False,
    ) -> None:
        # Logged before the answer leaves, so a client that has its answer finds it logged;
        # a cut-short answer is logged as such, so tests can count complete deliveries.
        self._record(arrived, path, "truncate" if truncate else reply.status)
        handler.send_response(reply.status)
        handler.send_header("Content-Type", reply.content_type)
        handler.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            handler.send_header(name, value)
        handler.end_headers()
        if truncate:
            handler.wfile.write(reply.body[: len(reply.body) // 2])
            handler.close_connection = True
        else:
            handler.wfile.write(reply.body)

    def _record(self, arrived: float, path: str, status: int | str) -> None:
        with self._log_lock:
            self._log.append(LoggedRequest(arrived, path, status))


class _TokenBucket:
    """``rate`` tokens a second, holding at most one second's worth (at least one)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


class _HTTPServer(ThreadingHTTPServer):
    """One daemon thread per connection, a deep accept backlog, no DNS, no stderr."""

    daemon_threads = True
    # socketserver's default backlog of 5 makes bursts of new connections wait for SYN
    # retries (a second each); dozens of clients connect at once here.
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], sim: SimServer) -> None:
        self.sim = sim
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn, a reverse DNS lookup that can hang.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):  # type: ignore[no-untyped-def]
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every thread still waiting on a keep-alive connection, so it ends."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        # Clients that hang up mid-answer are normal here; the library never prints.
        pass


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; every GET goes to :meth:`SimServer._handle`."""

    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "geotag-sim"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    # Headers and body go out in two writes; Nagle would hold the second for an ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.server.sim._handle(self)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the library never prints, and request lines carry the key


def _check_faults(faults: Iterable[str] | str | None) -> tuple[str, ...]:
    if faults is None:
        return FAULTS
    chosen = (faults,) if isinstance(faults, str) else tuple(faults)
    if not chosen:
        raise InputError(f"faults must name at least one of {', '.join(FAULTS)}")
    for fault in chosen:
        if fault not in FAULTS:
            close = difflib.get_close_matches(str(fault), FAULTS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(f"unknown fault {fault!r}: choose from {', '.join(FAULTS)}{hint}")
    return chosen
