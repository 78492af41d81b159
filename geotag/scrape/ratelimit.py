"""A token bucket for asyncio: at most ``rate`` acquisitions per second, on average.

Every HTTP attempt, retries included, takes a token, so ``--rate`` bounds what the provider
sees. The clock and the sleep are injectable so tests can drive time without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst`` (default: one second's worth)."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        # A burst of one keeps the rate smooth; a larger burst lets an idle client catch up.
        self.burst = float(burst) if burst is not None else 1.0
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until a token is free, then take it. Waiters are served in order."""
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                # The tolerance absorbs float rounding: a clock that advanced by exactly the
                # wait can leave 0.9999999 tokens, and a sleep of ~1e-17 s would never end.
                if self._tokens >= 1.0 - 1e-9:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return
                await self._sleep((1.0 - self._tokens) / self.rate)
