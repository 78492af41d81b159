"""When and how long to retry: exponential backoff with full jitter, honouring Retry-After.

Transient failures (429, 5xx, dropped connections, truncated bodies, Google's
``UNKNOWN_ERROR`` / ``OVER_QUERY_LIMIT``) are retried; answers that will not change
(400, 401, 404, ``ZERO_RESULTS``, ``INVALID_REQUEST``) are not.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

#: A server asking us to wait longer than this is waited for only this long per attempt.
MAX_RETRY_AFTER_S = 120.0


class Retryable(Exception):
    """A failure worth another try; ``retry_after`` is the server's hint in seconds.

    ``charged``: whether it uses up one of a request's ``--max-attempts`` (a request that
    never reached a server does not).
    """

    charged = True

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; waits grow from ``base_s`` doubling up to ``cap_s``."""

    attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        jittered = rng.uniform(0, ceiling)  # "full jitter": spreads retrying clients apart
        if retry_after is not None:
            return max(jittered, min(retry_after, MAX_RETRY_AFTER_S))
        return jittered


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP-date; None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:  # pragma: no cover - parsedate_to_datetime raises instead
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[Retryable, int, float], None] | None = None,
) -> T:
    """Run ``operation`` until it succeeds, raises a non-retryable error, or runs out of tries.

    The last :class:`Retryable` is re-raised when every attempt failed.
    """
    rng = rng or random.Random()
    attempt = 1
    while True:
        try:
            return await operation()
        except Retryable as failure:
            if attempt >= policy.attempts:
                raise
            wait = policy.delay(attempt, failure.retry_after, rng)
            if on_retry is not None:
                on_retry(failure, attempt, wait)
            await sleep(wait)
            attempt += 1
