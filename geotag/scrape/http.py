"""One rate-limited HTTP GET that a lying server cannot turn into a hang, a flood or a crash.

Every attempt takes a token from the bucket, then runs under one overall deadline: httpx's
timeouts are per read, so a body dripping a byte every few seconds would otherwise never
end. The body is streamed and refused as soon as it passes its cap, counted after
``Content-Encoding`` is undone, so neither a 200 MB answer nor a gzip bomb is ever held
whole. Failures are sorted for the scraper:

- :class:`Unreachable` (connection refused, DNS, TLS, connect timeout): no request reached
  a server, so it costs nothing and uses none of a point's ``--max-attempts``;
- :class:`~geotag.scrape.retry.Retryable` (dropped connections, deadlines, 429, 5xx) and its
  :class:`BadAnswer` (an answer not in the API's shape): tried again later;
- :class:`Rejected` (400, 404, redirect loops, bodies over the cap): given up for good;
- :class:`~geotag.errors.AuthError` (401/403): stops the whole run.

Messages are built here, never copied from URLs, so keys cannot leak into them.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from geotag.errors import AuthError, first_line
from geotag.safetext import printable
from geotag.scrape.ratelimit import TokenBucket
from geotag.scrape.retry import Retryable, parse_retry_after

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})
#: Metadata answers are under 1 KB; a search listing 100 images with their URLs, ~60 KB.
METADATA_BYTES = 64 * 1024
SEARCH_BYTES = 1024 * 1024
#: A request, its redirects and its whole body must be done within this (seconds).
DEFAULT_DEADLINE_S = 60.0
MAX_REDIRECTS = 5
#: Encodings this module undoes itself (see ``_Inflater``); asking for only these keeps
#: an honest server from answering in one we would refuse.
ACCEPT_ENCODING = "gzip, deflate"
#: Query parameters whose values are credentials, or derived from them (a URL signature
#: proves the secret): a server echoing the URL back must not print them.
_CREDENTIAL_PARAMS = re.compile(
    r"((?:key|signature|client|access_token|token)=)[^&\s\"'<>]+", re.IGNORECASE
)


class NoImagery(Exception):
    """The provider has no imagery for this place or panorama (not an error)."""


class Rejected(Exception):
    """The provider refused this one request for good (400, 404, invalid parameters)."""


class BadAnswer(Retryable):
    """The server answered, but not in the API's shape (HTML, a list, NaN coordinates)."""


class Unreachable(Retryable):
    """No server was reached: retried, but charged against no point's attempts."""

    charged = False


@dataclass(frozen=True)
class Answer:
    """A complete, size-checked response: status, headers and the decoded body."""

    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body)


@dataclass
class RequestCounts:
    """What the HTTP layer did, for progress displays."""

    requests: int = 0
    retried: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.requests += 1
        self.by_status[outcome] = self.by_status.get(outcome, 0) + 1


class Http:
    """GETs through one shared ``httpx.AsyncClient`` and one token bucket."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        bucket: TokenBucket,
        secrets: Iterable[str | None] = (),
        provider: str = "provider",
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.provider = provider
        self.deadline_s = deadline_s
        self.counts = RequestCounts()
        self._secrets = tuple(s for s in secrets if s)

    def redact(self, text: str) -> str:
        """``text`` with every secret this client knows, and any credential a server echoed
        in a URL (``key=``, ``signature=`` ...), replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _CREDENTIAL_PARAMS.sub(r"\1***", text)

    def server_text(self, value: object, limit: int = 200) -> str:
        """Text a server sent, fit to show: secrets masked, controls dropped, shortened."""
        return printable(self.redact(str(value)), limit)

    async def get(
        self,
        url: str | httpx.URL,
        *,
        max_bytes: int,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """The whole answer, at most ``max_bytes`` decoded; raises as the module describes."""
        await self.bucket.acquire()
        request_headers = {"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})}
        try:
            with anyio.fail_after(self.deadline_s):
                async with self.client.stream(
                    "GET", url, params=params, headers=request_headers
                ) as response:
                    status = response.status_code
                    self._check_status(response)
                    try:
                        body = await _read_capped(response, max_bytes)
                    except (Rejected, BadAnswer):
                        self.counts.count(f"{status}-refused")  # over the cap, bad gzip
                        raise
        except TimeoutError:
            self.counts.count("deadline")
            raise Retryable(f"no complete answer within {self.deadline_s:g} s") from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self.counts.count("unreachable")
            raise Unreachable(f"cannot connect ({self._why(exc)})") from None
        except httpx.TimeoutException as exc:
            self.counts.count("timeout")
            raise Retryable(f"timeout ({type(exc).__name__})") from None
        except httpx.TooManyRedirects:
            self.counts.count("redirects")
            raise Rejected(f"more than {MAX_REDIRECTS} redirects (a redirect loop?)") from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            self.counts.count("bad-url")
            raise Rejected(f"unusable URL ({self._why(exc)})") from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            # Dropped connections and bodies shorter than their Content-Length end here.
            self.counts.count("transport")
            raise Retryable(f"connection failed ({type(exc).__name__})") from None
        self.counts.count(str(status))
        return Answer(status, response.headers, body)

    def _check_status(self, response: httpx.Response) -> None:
        """Refuse retry and auth statuses before reading a body nobody needs."""
        status = response.status_code
        if status in RETRY_STATUSES:
            self.counts.count(str(status))
            raise Retryable(
                f"HTTP {status}", retry_after=parse_retry_after(response.headers.get("Retry-After"))
            )
        if status in AUTH_STATUSES:
            self.counts.count(str(status))
            raise AuthError(
                f"{self.provider} refused the credentials (HTTP {status}); check the API key, "
                "token or signing secret"
            )

    def _why(self, exc: BaseException) -> str:
        return self.server_text(first_line(exc, with_type=True), 120)


class TooLarge(Rejected):
    """A body past its cap: refused for good (the same server will send it again)."""


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """The decoded body, refused as soon as it (or its still-encoded form) passes the cap."""
    declared = response.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"body of {int(declared):,} bytes is over the {max_bytes:,}-byte cap")
    inflater = _Inflater.for_encoding(response.headers.get("Content-Encoding", ""), max_bytes)
    body = bytearray()
    received = 0
    async for chunk in response.aiter_raw():
        received += len(chunk)
        if received > max_bytes:
            raise TooLarge(f"body is over the {max_bytes:,}-byte cap")
        body += inflater.feed(chunk, max_bytes - len(body)) if inflater else chunk
        if len(body) > max_bytes:
            raise TooLarge(f"body is over the {max_bytes:,}-byte cap once decompressed")
    if inflater:
        inflater.finish()
    return bytes(body)


class _Inflater:
    """gzip/deflate undone with a bound on the output of every step.

    httpx's own decoders inflate each network chunk whole, so 64 KB of a gzip bomb become
    64 MB in one call before any cap can look; zlib's ``max_length`` stops at the cap.
    """

    def __init__(self) -> None:
        # 32 + MAX_WBITS: accept a zlib or a gzip header, as servers mix up the two names.
        self._zlib = zlib.decompressobj(32 + zlib.MAX_WBITS)

    @classmethod
    def for_encoding(cls, header: str, max_bytes: int) -> _Inflater | None:
        encoding = header.strip().lower()
        if encoding in ("", "identity"):
            return None
        if encoding in ("gzip", "x-gzip", "deflate"):
            return cls()
        raise Rejected(f"unsupported Content-Encoding {printable(encoding, 40)!r}")

    def feed(self, chunk: bytes, room: int) -> bytes:
        """Inflate ``chunk``: at most ``room + 1`` bytes, enough to see the cap passed."""
        try:
            out = self._zlib.decompress(chunk, room + 1)
        except zlib.error:
            raise BadAnswer("body is not valid gzip/deflate") from None
        if self._zlib.unconsumed_tail and len(out) <= room:  # pragma: no cover - zlib contract
            raise BadAnswer("body is not valid gzip/deflate")
        return out

    def finish(self) -> None:
        if not self._zlib.eof:
            raise BadAnswer("compressed body ends early")
