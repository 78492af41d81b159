"""A token bucket for asyncio: at most ``rate`` acquisitions per second, on average.

Every HTTP attempt, retries included, takes a token, so ``--rate`` bounds what the provider
sees. The clock and the sleep are injectable so tests can drive time without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst`` (default: one).

    Implemented as a virtual schedule (the generic cell rate algorithm): each grant moves
    the time the next token is due by exactly ``1 / rate``. A waiter the event loop wakes
    late (asyncio rounds sleeps up to whole milliseconds) does not push the schedule back,
    so a busy client gets the full rate, and in any window of W seconds at most
    ``burst + W * rate`` tokens are granted.
    """

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
        if self.burst < 1:
            raise ValueError("burst must be at least one token")
        self._clock = clock
        self._sleep = sleep
        self._due = clock()  # when the next token is due, with no burst in hand
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until a token is free, then take it. Waiters are served in order."""
        async with self._lock:
            now = self._clock()
            start = self._due - (self.burst - 1.0) / self.rate
            if start > now:
                await self._sleep(start - now)
            self._due = max(self._due, now) + 1.0 / self.rate
