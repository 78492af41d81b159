"""One rate-limited HTTP GET, with failures sorted into retry / give up / stop everything.

Every attempt takes a token from the bucket. Transport errors, dropped connections,
truncated bodies, 429 and 5xx become :class:`Retryable`; 401/403 become
:class:`AuthError`, which stops the whole run; anything else goes back to the provider to
interpret. Messages are built here, never copied from URLs, so keys cannot leak into them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpx

from geotag.errors import AuthError
from geotag.scrape.ratelimit import TokenBucket
from geotag.scrape.retry import Retryable, parse_retry_after

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})


class NoImagery(Exception):
    """The provider has no imagery for this place or panorama (not an error)."""


class Rejected(Exception):
    """The provider refused this one request for good (400, 404, invalid parameters)."""


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
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.provider = provider
        self.counts = RequestCounts()
        self._secrets = tuple(s for s in secrets if s)

    def redact(self, text: str) -> str:
        """``text`` with every secret this client knows replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def get(
        self,
        url: str | httpx.URL,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The response, fully read; raises Retryable or AuthError as described above."""
        await self.bucket.acquire()
        try:
            response = await self.client.get(url, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            self.counts.count("timeout")
            raise Retryable(f"timeout ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            # Dropped connections and bodies shorter than their Content-Length end here.
            self.counts.count("transport")
            raise Retryable(f"connection failed ({type(exc).__name__})") from None
        self.counts.count(str(response.status_code))
        status = response.status_code
        if status in RETRY_STATUSES:
            raise Retryable(
                f"HTTP {status}", retry_after=parse_retry_after(response.headers.get("Retry-After"))
            )
        if status in AUTH_STATUSES:
            raise AuthError(
                f"{self.provider} refused the credentials (HTTP {status}); check the API key, "
                "token or signing secret"
            )
        return response
