"""The importer's steps one at a time; tests/stages/test_import_images.py runs them whole."""

from __future__ import annotations

import os
from pathlib import Path
from unittest.mock import Mock, call

import pytest
from PIL import Image

from geotag.errors import InputError
from geotag.exif import ExifInfo
from geotag.ingest import (
    BAD_DATE,
    BAD_HEADING,
    DUPLICATE,
    MISSING_FILE,
    Accepted,
    Candidate,
    ConversionError,
    Decoded,
    Skipped,
    decode_all,
    default_group,
    place,
    read_source,
    target_relpath,
)
from geotag.workspace import Workspace


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


def test_table_headings_must_be_sane_numbers(tmp_path: Path) -> None:
    for name in ("big", "text", "inf", "neg", "far", "west", "full", "blank"):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{name}.png")
    table = tmp_path / "t.csv"
    table.write_text(
        "path,lat,lon,heading\n"
        "big.png,0.1,0.1,1e308\n"  # was 296.0: float noise
        "text.png,0.1,0.1,abc\n"  # was NaN, silently
        "inf.png,0.1,0.1,inf\n"
        "neg.png,0.1,0.1,-400\n"
        "far.png,0.1,0.1,1000000\n"
        "west.png,0.1,0.1,-90\n"
        "full.png,0.1,0.1,720\n"
        "blank.png,0.1,0.1,\n"
    )
    skipped: list[Skipped] = []

    found = read_source(table, "table", Workspace(tmp_path / "ws"), skipped)

    assert skipped == [
        Skipped("big.png", BAD_HEADING, "'1e308' is not between -360 and 720 degrees"),
        Skipped("text.png", BAD_HEADING, "'abc' is not a number"),
        Skipped("inf.png", BAD_HEADING, "'inf' is not between -360 and 720 degrees"),
        Skipped("neg.png", BAD_HEADING, "'-400' is not between -360 and 720 degrees"),
        Skipped("far.png", BAD_HEADING, "'1000000' is not between -360 and 720 degrees"),
    ]
    assert {c.label: c.heading for c in found} == {
        "west.png": 270.0,
        "full.png": 0.0,
        "blank.png": None,
    }


def test_parquet_headings_are_checked_too(tmp_path: Path) -> None:
    import pandas as pd

    for name in ("a", "b", "c"):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{name}.png")
    table = tmp_path / "t.parquet"
    pd.DataFrame(
        {
            "path": ["a.png", "b.png", "c.png"],
            "lat": [0.1, 0.1, 0.1],
            "lon": [0.1, 0.1, 0.1],
            "heading": [1e308, float("nan"), 45.0],
        }
    ).to_parquet(table)
    skipped: list[Skipped] = []

    found = read_source(table, "table", Workspace(tmp_path / "ws"), skipped)

    assert skipped == [Skipped("a.png", BAD_HEADING, "1e+308 is not between -360 and 720 degrees")]
    assert {c.label: c.heading for c in found} == {"b.png": None, "c.png": 45.0}


def test_table_dates_that_are_no_dates_are_listed(tmp_path: Path) -> None:
    for name in ("bad", "good", "none"):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{name}.png")
    table = tmp_path / "t.csv"
    table.write_text(
        "path,lat,lon,captured\nbad.png,0.1,0.1,2020-13-45\ngood.png,0.1,0.1,2020-12-31\n"
        "none.png,0.1,0.1,\n"
    )
    skipped: list[Skipped] = []

    found = read_source(table, "table", Workspace(tmp_path / "ws"), skipped)

    # The row is skipped, not imported without its date: nothing is half-imported, and
    # once the date is fixed a rerun writes the same file and row.
    assert skipped == [Skipped("bad.png", BAD_DATE, "'2020-13-45' is not a date; write YYYY-MM-DD")]
    assert {c.label: c.captured for c in found} == {"good.png": "2020-12-31", "none.png": None}


def test_a_table_row_naming_a_link_that_loops_is_a_missing_file(tmp_path: Path) -> None:
    os.symlink("loop.jpg", tmp_path / "loop.jpg")  # ln -s loop.jpg loop.jpg
    table = tmp_path / "t.csv"
    table.write_text("path,lat,lon\nloop.jpg,0.1,0.1\n")
    skipped: list[Skipped] = []

    assert read_source(table, "table", Workspace(tmp_path / "ws"), skipped) == []
    assert skipped == [
        Skipped("loop.jpg", MISSING_FILE, f"broken or looping link: {tmp_path / 'loop.jpg'}")
    ]


def test_the_workspaces_own_images_are_not_read_again(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    (ws.images_dir / "3").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(ws.images_dir / "3" / "a.jpg")
    Image.new("RGB", (4, 4)).save(tmp_path / "b.jpg")
    table = tmp_path / "t.csv"
    table.write_text("path,lat,lon\nws/images/3/a.jpg,0.1,0.1\nb.jpg,0.1,0.1\n")
    skipped: list[Skipped] = []

    found = read_source(table, "table", ws, skipped)

    assert [c.label for c in found] == ["b.jpg"]
    assert skipped == [
        Skipped(
            "ws/images/3/a.jpg",
            DUPLICATE,
            "already in this workspace's images/ (and so in images.parquet)",
        )
    ]
    ws.images_parquet.write_bytes(b"")  # what it holds does not matter: it is refused unread
    with pytest.raises(InputError, match=r"is this workspace's own images.parquet; .*nothing"):
        read_source(ws.images_parquet, "table", ws, [])
    with pytest.raises(InputError, match=r"inside this workspace's images/ folder"):
        read_source(ws.images_dir / "3", "folder", ws, [])
