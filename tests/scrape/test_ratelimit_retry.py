from __future__ import annotations

import asyncio
import email.utils
import itertools
import random

import pytest

from geotag.scrape.paths import image_relpath, safe_stem
from geotag.scrape.ratelimit import TokenBucket
from geotag.scrape.retry import Retryable, RetryPolicy, parse_retry_after, with_retries


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_token_bucket_spaces_acquisitions_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4.0, clock=clock, sleep=clock.sleep)
    times = []

    async def take(n: int) -> None:
        for _ in range(n):
            await bucket.acquire()
            times.append(clock.now)

    asyncio.run(take(9))
    assert times[0] == 0.0  # a full bucket serves the first at once
    assert times[-1] == pytest.approx(2.0)  # then one every 1/4 s
    assert all(b - a == pytest.approx(0.25) for a, b in itertools.pairwise(times))


def test_token_bucket_serves_concurrent_waiters_without_exceeding_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, clock=clock, sleep=clock.sleep)
    times: list[float] = []

    async def worker() -> None:
        for _ in range(5):
            await bucket.acquire()
            times.append(clock.now)

    async def main() -> None:
        await asyncio.gather(*(worker() for _ in range(8)))

    asyncio.run(main())
    assert len(times) == 40
    assert max(times) == pytest.approx(3.9)
    for start in times:
        assert sum(start <= t < start + 1.0 for t in times) <= 10 + 1


def test_late_wake_ups_do_not_lower_the_rate() -> None:
    """asyncio wakes sleepers up to a millisecond late; the bucket must not lose that time
    (a bucket that did reached only 89% of --rate 100), nor exceed the rate to make up."""
    clock = FakeClock()

    async def late_sleep(seconds: float) -> None:
        await clock.sleep(seconds + 0.001)

    bucket = TokenBucket(100.0, clock=clock, sleep=late_sleep)
    times: list[float] = []

    async def take(n: int) -> None:
        for _ in range(n):
            await bucket.acquire()
            times.append(clock.now)

    asyncio.run(take(1001))
    assert 1000 / (times[-1] - times[0]) > 0.99 * 100
    for start in times[::50]:
        assert sum(start <= t < start + 1.0 for t in times) <= 100 + 1


def test_bad_rate() -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(0)


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-3") == 0.0
    when = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert parse_retry_after(when, now=1_000_000.0) == pytest.approx(30.0)
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(attempts=10, base_s=1.0, cap_s=8.0)
    rng = random.Random(0)
    for attempt in range(1, 10):
        ceiling = min(8.0, 2 ** (attempt - 1))
        delays = [policy.delay(attempt, None, rng) for _ in range(200)]
        assert min(delays) >= 0 and max(delays) <= ceiling
        assert max(delays) > 0.8 * ceiling  # spread over the whole range, not fixed
    assert policy.delay(1, 30.0, rng) == 30.0
    assert policy.delay(1, 10_000.0, rng) == 120.0  # a silly Retry-After is capped


def test_with_retries_retries_only_retryable_failures() -> None:
    clock = FakeClock()
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Retryable("HTTP 503", retry_after=2.0)
        return "ok"

    result = asyncio.run(with_retries(flaky, RetryPolicy(5, 0.1, 1.0), sleep=clock.sleep))
    assert result == "ok" and len(calls) == 3
    assert clock.sleeps == [2.0, 2.0]

    async def broken() -> str:
        raise ValueError("not retryable")

    with pytest.raises(ValueError):
        asyncio.run(with_retries(broken, RetryPolicy(5), sleep=clock.sleep))

    async def always() -> str:
        raise Retryable("timeout")

    with pytest.raises(Retryable, match="timeout"):
        asyncio.run(with_retries(always, RetryPolicy(3, 0.0, 0.0), sleep=clock.sleep))


def test_image_paths_cannot_escape_the_images_folder() -> None:
    assert (
        image_relpath(3, "CAsUHwAMYit9o7ZuuE9dPA", 90) == "images/3/CAsUHwAMYit9o7ZuuE9dPA_90.jpg"
    )
    for hostile in ("../../x", "/etc/passwd", "..", "a/b\\c", "C:\\evil", "\x00", "é" * 200):
        path = image_relpath(1, hostile, 22.5)
        parts = path.split("/")
        assert parts[:2] == ["images", "1"] and len(parts) == 3
        assert ".." not in parts and parts[2].endswith("_22p5.jpg")
    assert safe_stem("a b") != safe_stem("a_b"), "ids that sanitise alike stay apart"
