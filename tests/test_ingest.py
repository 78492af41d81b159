"""The importer's steps one at a time; tests/stages/test_import_images.py runs them whole."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import Mock, call

import pytest
from PIL import Image

from geotag.exif import ExifInfo
from geotag.ingest import (
    Accepted,
    Candidate,
    ConversionError,
    Decoded,
    decode_all,
    default_group,
    place,
    target_relpath,
)


def accepted(path: Path, fmt: str, cell_id: int = 3) -> Accepted:
    return Accepted(
        Candidate(path.name, path), Decoded(fmt, "digest", ExifInfo()), 0.1, 0.2, cell_id
    )


def test_default_group_is_one_name_per_place() -> None:
    assert default_group(0.5, 0.5) == default_group(0.5 + 1e-8, 0.5 - 1e-8) == "0.500000,0.500000"
    assert default_group(-0.0, -1e-9) == "0.000000,0.000000"  # no "-0.000000"
    assert default_group(-12.3456781, 77.0000004) == "-12.345678,77.000000"


def test_decode_all_reads_a_file_named_twice_once(tmp_path: Path) -> None:
    photo = tmp_path / "a.png"
    Image.new("RGB", (8, 6), "red").save(photo)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    candidates = [
        Candidate("a.png", photo),
        Candidate("again", photo),
        Candidate("bad.jpg", tmp_path / "bad.jpg"),
    ]
    progress = Mock()

    decoded = decode_all(candidates, progress)

    assert progress.mock_calls == [call.start("decoding images", 2), call.advance(), call.advance()]
    assert list(decoded) == [photo, tmp_path / "bad.jpg"]
    first = decoded[photo]
    assert isinstance(first, Decoded) and first.format == "PNG" and first.exif == ExifInfo()
    assert decoded[tmp_path / "bad.jpg"] == "not an image file Pillow can read"


def test_place_refuses_an_image_it_cannot_convert_and_writes_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "shot.png"
    broken.write_bytes(b"no longer a PNG")
    target = tmp_path / "ws" / target_relpath(accepted(broken, "PNG"))

    with pytest.raises(ConversionError, match=r"^cannot convert to JPEG: "):
        place(accepted(broken, "PNG"), target, link=False)

    assert not target.parent.exists() or list(target.parent.iterdir()) == []


def test_target_relpath_is_stable_and_keeps_same_names_apart(tmp_path: Path) -> None:
    one, two = tmp_path / "day1" / "IMG_1.jpg", tmp_path / "day2" / "IMG_1.jpg"
    first = target_relpath(accepted(one, "JPEG"))
    assert first == target_relpath(accepted(one, "JPEG"))
    assert first != target_relpath(accepted(two, "JPEG"))
    assert first.startswith("images/3/IMG_1-") and first.endswith(".jpg")
