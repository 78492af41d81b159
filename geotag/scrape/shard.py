"""``--shard I/N``: split the points between N machines that scrape at once."""

from __future__ import annotations

from geotag.errors import InputError


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        index, count = (int(p) for p in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like I/N, e.g. 0/4; got {text!r}") from None
    if not (count >= 1 and 0 <= index < count):
        raise InputError(f"--shard I/N needs 0 <= I < N; got {text!r}")
    return index, count
