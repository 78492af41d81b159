"""Answers a lying or broken server gives, for ``FakeApi``: floods, bombs, drips, garbage.

Each builder returns a :class:`~tests.scrape.fake_api.Reply` (or a route function) that a
test hands to a real server on 127.0.0.1; nothing here is mocked below the socket.
"""

from __future__ import annotations

import functools
import io
import json
import struct
import time
import zlib
from collections.abc import Iterator

from PIL import Image

from tests.scrape.fake_api import Reply, Request

MB = 1024 * 1024


#: The flood's chunk: small, so the server (in the test's own process) adds little to
#: the memory a test measures.
FLOOD_CHUNK = 64 * 1024


def flood(total_bytes: int = 200 * MB, declare_length: bool = False) -> Reply:
    """A JPEG-looking body of ``total_bytes``, streamed 64 KB at a time (never built whole)."""
    first = b"\xff\xd8\xff\xe0" + bytes(FLOOD_CHUNK - 4)
    zeros = bytes(FLOOD_CHUNK)

    def chunks() -> Iterator[bytes]:
        sent = 0
        while sent < total_bytes:
            piece = (first if sent == 0 else zeros)[: total_bytes - sent]
            sent += len(piece)
            yield piece

    headers = {"Content-Type": "image/jpeg"}
    if declare_length:
        headers["Content-Length"] = str(total_bytes)
    return Reply(200, headers=headers, stream=chunks)


@functools.lru_cache(maxsize=2)
def gzip_bomb_body(inflated_bytes: int = 300 * MB) -> bytes:
    """gzip of ``inflated_bytes`` zeros: about 300 KB that inflate a thousandfold."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\x00" * MB
    parts = [packer.compress(zeros) for _ in range(inflated_bytes // MB)]
    parts.append(packer.flush())
    return b"".join(parts)


def gzip_bomb(inflated_bytes: int = 300 * MB, content_type: str = "image/jpeg") -> Reply:
    return Reply(
        200,
        gzip_bomb_body(inflated_bytes),
        {"Content-Type": content_type, "Content-Encoding": "gzip"},
    )


def drip(every_s: float = 0.2, for_s: float = 30.0) -> Reply:
    """A 200 whose body comes one byte every ``every_s`` for ``for_s`` seconds: each read
    is quick (httpx's per-read timeout never fires), the whole never ends in time."""

    def chunks() -> Iterator[bytes]:
        end = time.monotonic() + for_s
        yield b"\xff\xd8"
        while time.monotonic() < end:
            time.sleep(every_s)
            yield b"\x00"
        yield b"\xff\xd9"

    return Reply(200, headers={"Content-Type": "image/jpeg"}, stream=chunks)


def jpeg(width: int, height: int, color: tuple[int, int, int] = (90, 140, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def forged_size_jpeg(width: int, height: int) -> bytes:
    """A small real JPEG whose header claims ``width`` x ``height`` (a 20000 px image in
    a few hundred bytes: what a server lying about its size sends)."""
    body = bytearray(jpeg(16, 16))
    sof = body.index(b"\xff\xc0")  # baseline start-of-frame: length, precision, height, width
    body[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(body)


def framed_garbage(size: int = 4000) -> bytes:
    """Starts like a JPEG and ends like one; noise in between."""
    noise = bytes((i * 7919 + 13) % 251 for i in range(size))
    return b"\xff\xd8\xff\xe0" + noise + b"\xff\xd9"


def metadata_ok(pano_id: str, lat: float, lng: float, **extra: object) -> dict[str, object]:
    return {"status": "OK", "pano_id": pano_id, "location": {"lat": lat, "lng": lng}, **extra}


def nan_json(data: dict[str, object]) -> Reply:
    """JSON with NaN in it, as Python's json writes it (and some servers do)."""
    return Reply(200, json.dumps(data).encode(), {"Content-Type": "application/json"})


def location_of(request: Request) -> str:
    """The ``location`` a metadata request asked about, as sent ("lat,lng", 7 decimals)."""
    return request.query["location"]
