"""Careless inputs to predict, import and sample: each test reproduces one that used to
crash (``Error: unexpected ...``), silently drop files, or silently keep a wrong value.

Real files throughout: JPEGs, GIFs and PNGs written with Pillow, real folders and links,
CSV and Parquet tables; commands run through typer's CliRunner.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational
from typer.testing import CliRunner

from geotag.cli import app
from geotag.images import usable_images
from geotag.stages.grid import run_grid
from geotag.workspace import Workspace
from tests.conftest import snapshot

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, message: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"Error: {message}"], lines
    assert "Traceback" not in result.output


def assert_no_crash(result) -> None:
    assert result.exit_code == 0, result.output
    assert "unexpected" not in result.output and "Traceback" not in result.output


# -- files ----------------------------------------------------------------------------------
def photo(
    path: Path,
    lat: float | None = None,
    lon: float | None = None,
    *,
    refs: tuple[str, str] | None = None,
    heading: float | None = None,
    taken: str | None = None,
    fmt: str = "JPEG",
) -> Path:
    """A small JPEG (pixels seeded by its name) with EXIF GPS tags when lat/lon are given;
    ``refs`` overrides the hemisphere references the signs would give."""
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    image = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((32, 24))
    exif = Image.Exif()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    if lat is not None and lon is not None:
        lat_ref, lon_ref = refs or ("NS"[lat < 0], "EW"[lon < 0])
        for tag, ref_tag, value, ref in (
            (ExifTags.GPS.GPSLatitude, ExifTags.GPS.GPSLatitudeRef, lat, lat_ref),
            (ExifTags.GPS.GPSLongitude, ExifTags.GPS.GPSLongitudeRef, lon, lon_ref),
        ):
            gps[tag] = (IFDRational(round(abs(value) * 3600), 3600), IFDRational(0), IFDRational(0))
            gps[ref_tag] = ref
    if heading is not None:
        gps[ExifTags.GPS.GPSImgDirection] = IFDRational(heading)
    if taken is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, exif=exif.tobytes())
    return path


def bomb(path: Path, side: int = 100_000) -> Path:
    """A 1x1 PNG whose header claims side x side pixels (a decompression bomb): a few bytes
    on disk, over Pillow's limit the moment the header is read."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # a valid chunk CRC
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def animated_gif(path: Path, first: Image.Image) -> Path:
    frames = [first.convert("RGB"), first.convert("RGB").rotate(180)]
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


# -- finding and checking images (predict, explain) -----------------------------------------
def test_a_decompression_bomb_in_a_folder_is_a_listed_skip(tmp_path: Path) -> None:
    # It was `Error: unexpected DecompressionBombError`, for the whole folder.
    good = photo(tmp_path / "photos" / "good.jpg")
    evil = bomb(tmp_path / "photos" / "evil.png")

    usable, bad = usable_images([tmp_path / "photos"], "predict")

    assert usable == [good]
    ((path, why),) = bad
    assert path == str(evil)
    assert why.startswith("too large to decode safely (Image size (10000000000 pixels) exceeds")


def test_a_bomb_warning_raised_as_an_error_is_a_skip_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Between Pillow's limit and twice it Pillow only warns; where warnings are errors
    # (python -W error, this test suite) that warning escaped as an exception.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("RGB", (40, 40)).save(tmp_path / "big.png")  # 1,600 pixels: over 1,000, < 2,000
    small = photo(tmp_path / "small.jpg")  # 768 pixels

    usable, bad = usable_images([tmp_path / "big.png", small], "predict")

    assert usable == [small]
    assert bad == [
        (
            str(tmp_path / "big.png"),
            "too large to decode safely (Image size (1600 pixels) exceeds limit of 1000 pixels, "
            "could be decompression bomb DOS attack.)",
        )
    ]


def test_a_folders_images_are_found_by_content_and_the_rest_counted(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    jpeg = photo(folder / "good.jpg")
    gif = animated_gif(folder / "anim.gif", Image.open(jpeg))  # was left out: not a suffix
    no_suffix = photo(folder / "IMG_0002")  # was left out
    renamed = folder / "photo.dat"  # a JPEG under another name: was left out
    shutil.copyfile(photo(tmp_path / "x.jpg"), renamed)
    heic = folder / "phone.heic"  # a JPEG named .heic: decided by content too
    shutil.copyfile(photo(tmp_path / "y.jpg"), heic)
    (folder / "notes.txt").write_text("taken on holiday")
    (folder / "good.json").write_text('{"title": "good.jpg"}')  # a Takeout sidecar
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    photo(folder / ".thumbnails" / "t.jpg")

    usable, bad = usable_images([folder], "predict")

    assert usable == sorted([jpeg, gif, no_suffix, renamed, heic])
    assert bad == [
        (
            str(folder),
            "left out 2 files that are not images (.json, .txt) and 2 hidden files or folders",
        )
    ]


def test_links_are_followed_once_and_loops_listed(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    good = photo(folder / "good.jpg")
    inner = photo(folder / "sub" / "s.jpg")
    photo(tmp_path / "other" / "o.jpg")
    os.symlink("loop", folder / "loop")  # ln -s loop loop
    os.symlink("gone.jpg", folder / "dead.jpg")
    os.symlink("..", folder / "sub" / "up")  # a folder link back to its parent
    os.symlink(tmp_path / "other", folder / "elsewhere")  # photos kept elsewhere: followed
    os.mkfifo(folder / "pipe.jpg")  # opening it would wait forever for a writer

    usable, bad = usable_images([folder], "predict")

    assert usable == [folder / "elsewhere" / "o.jpg", good, inner]
    assert bad == [
        (str(folder / "dead.jpg"), "broken or looping link"),
        (str(folder / "loop"), "broken or looping link"),
        (str(folder / "pipe.jpg"), "not a regular file (a pipe, socket or device)"),
        (str(folder / "sub" / "up"), f"the same folder as {folder}, already searched"),
    ]


def test_a_folder_with_only_junk_says_what_it_left_out(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no photo here")
    from geotag.errors import InputError

    with pytest.raises(InputError) as caught:
        usable_images([tmp_path], "explain")
    assert str(caught.value) == (
        f"no image to explain: {tmp_path}: folder has no images; "
        "left out 1 file that is not an image (.txt)"
    )


def test_cli_predict_skips_a_bomb_and_predicts_gifs_and_renamed_photos(
    trained_ws: Workspace, tmp_path: Path
) -> None:
    row = pd.read_parquet(trained_ws.images_parquet).iloc[0]
    source = trained_ws.root / row["path"]
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copyfile(source, folder / "good.jpg")
    shutil.copyfile(source, folder / "IMG_0002")
    animated_gif(folder / "anim.gif", Image.open(source))
    bomb(folder / "evil.png")

    result = invoke("predict", str(folder), "-w", str(trained_ws.root), "--json", "--device", "cpu")

    assert_no_crash(result)  # was: Error: unexpected DecompressionBombError
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    names = [Path(r["path"]).name for r in records]
    assert names == ["IMG_0002", "anim.gif", "good.jpg"]
    assert f"Skipped {folder / 'evil.png'}: too large to decode safely" in result.stderr
    # An animated GIF is predicted from its first frame, and the user is told.
    warning = f"Warning: {folder / 'anim.gif'}: animated: only its first frame is used"
    assert warning in " ".join(result.stderr.split())  # rich wraps warnings


# -- import -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gridded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with a 50 km grid over the box (-1, -1)..(1, 1), built once."""
    root = tmp_path_factory.mktemp("careless") / "ws"
    run_grid(Workspace(root), bbox="-1,-1,1,1", cell_km=50)
    return root


@pytest.fixture
def ws(gridded: Path, tmp_path: Path) -> Workspace:
    shutil.copytree(gridded, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def imported(ws: Workspace) -> pd.DataFrame:
    frame = pd.read_parquet(ws.images_parquet)
    return frame.set_index(frame["path"].str.extract(r"/([^/]+)-[0-9a-f]{10}\.jpg$")[0])


def test_import_skips_gps_references_other_than_n_s_e_w(ws: Workspace, tmp_path: Path) -> None:
    # "Q" and "Z" were read as N and E: a photo in the wrong hemisphere, silently.
    photos = tmp_path / "photos"
    photo(photos / "ok.jpg", 0.5, 0.5)
    photo(photos / "q.jpg", 0.5, 0.5, refs=("Q", "E"))
    photo(photos / "z.jpg", 0.5, 0.5, refs=("N", "Z"))

    result = invoke("import", str(photos), "-w", str(ws.root))

    assert_no_crash(result)
    assert "Imported 1 images" in result.stdout
    assert "q.jpg: bad coordinates (bad GPS reference 'Q'; latitude needs N or S)" in result.stdout
    assert "z.jpg: bad coordinates (bad GPS reference 'Z'; longitude needs E or W)" in result.stdout
    assert list(imported(ws).index) == ["ok"]


def test_import_skips_photos_whose_exif_heading_or_date_is_damaged(
    ws: Workspace, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    photo(photos / "ok.jpg", 0.5, 0.5, heading=90, taken="2021:07:14 09:30:00")
    photo(photos / "spun.jpg", 0.5, 0.6, heading=4294967295)  # was kept as 4294967295 % 360
    photo(photos / "when.jpg", 0.5, 0.7, taken="2020:13:45 10:00:00")  # was kept undated
    photo(photos / "undated.jpg", 0.5, 0.8, taken="0000:00:00 00:00:00")  # "no date": kept

    result = invoke("import", str(photos), "-w", str(ws.root))

    assert_no_crash(result)
    assert "Imported 2 images" in result.stdout
    assert (
        "spun.jpg: bad heading (EXIF: 4.29497e+09 is not between -360 and 720 degrees)"
        in result.stdout
    )
    assert (
        "when.jpg: bad date (EXIF: '2020:13:45 10:00:00' is not a date; write YYYY-MM-DD)"
        in result.stdout
    )
    rows = imported(ws)
    assert sorted(rows.index) == ["ok", "undated"]
    assert rows.loc["ok", "heading"] == 90.0 and rows.loc["ok", "captured"] == "2021-07-14"
    assert pd.isna(rows.loc["undated", "captured"])


def test_import_lists_table_rows_with_bad_headings_and_dates(ws: Workspace, tmp_path: Path) -> None:
    for name in ("ok", "huge", "word", "never"):
        photo(tmp_path / f"{name}.jpg")
    table = tmp_path / "photos.csv"
    table.write_text(
        "path,lat,lon,heading,captured\n"
        "ok.jpg,0.5,0.5,-90,2020-12-31\n"
        "huge.jpg,0.5,0.6,1e308,2020-12-31\n"  # was 296.0
        "word.jpg,0.5,0.7,abc,2020-12-31\n"  # was NaN
        "never.jpg,0.5,0.8,10,2020-13-45\n"  # was NA, silently
    )

    result = invoke("import", str(table), "-w", str(ws.root))

    assert_no_crash(result)
    assert "Imported 1 images" in result.stdout
    out = result.stdout
    assert "huge.jpg: bad heading ('1e308' is not between -360 and 720 degrees)" in out
    assert "word.jpg: bad heading ('abc' is not a number)" in out
    assert "never.jpg: bad date ('2020-13-45' is not a date; write YYYY-MM-DD)" in out
    rows = imported(ws)
    assert list(rows.index) == ["ok"] and rows.loc["ok", "heading"] == 270.0


def test_imported_copyrights_lose_their_terminal_escapes(ws: Workspace, tmp_path: Path) -> None:
    for name in ("nasty", "plain", "none"):
        photo(tmp_path / f"{name}.jpg")
    table = tmp_path / "photos.csv"
    table.write_text(
        "path,lat,lon,copyright\n"
        'nasty.jpg,0.5,0.5,"\x1b[2J\x1b]8;;http://evil\x07Eve\x1b]8;;\x07 [red]x[/red]"\n'
        "plain.jpg,0.5,0.6,© Zoë\n"
        "none.jpg,0.5,0.7,\n"
    )

    result = invoke("import", str(table), "-w", str(ws.root))

    assert_no_crash(result)
    rows = imported(ws)
    assert rows.loc["nasty", "copyright"] == "Eve [red]x[/red]"  # markup is escaped when shown
    assert rows.loc["plain", "copyright"] == "© Zoë"
    assert pd.isna(rows.loc["none", "copyright"])


def test_import_walks_a_folder_with_links_that_loop(ws: Workspace, tmp_path: Path) -> None:
    # It was `Error: unexpected RuntimeError` (Path.resolve on a symlink loop).
    photos = tmp_path / "photos"
    photo(photos / "ok.jpg", 0.5, 0.5)
    os.symlink("loop", photos / "loop")
    os.symlink("..", photos / "sub-up")
    (photos / "sub").mkdir()
    os.symlink("..", photos / "sub" / "up")

    result = invoke("import", str(photos), "-w", str(ws.root))

    assert_no_crash(result)
    assert "Imported 1 images" in result.stdout
    out = result.stdout
    assert "loop: missing file (broken or looping link)" in out
    assert f"sub/up: duplicate (the same folder as {photos}, already searched)" in out
    # Not followed: it holds the folder, and everything beside it (here, the workspace).
    assert f"sub-up: duplicate (a link up to {tmp_path}, which holds {photos}; not followed)" in out
    assert list(imported(ws).index) == ["ok"]


def test_import_refuses_the_workspaces_own_images_parquet(ws: Workspace, tmp_path: Path) -> None:
    photo(tmp_path / "photos" / "ok.jpg", 0.5, 0.5)
    assert invoke("import", str(tmp_path / "photos"), "-w", str(ws.root)).exit_code == 0
    before = snapshot(ws.root)

    result = invoke("import", str(ws.images_parquet), "-w", str(ws.root))

    # It imported every row a second time, under new file names.
    assert_one_line_error(
        result,
        f"{ws.images_parquet} is this workspace's own images.parquet; its images are "
        "imported already, nothing to import",
    )
    assert snapshot(ws.root) == before


def test_import_skips_table_rows_that_name_the_workspaces_own_images(
    ws: Workspace, tmp_path: Path
) -> None:
    photo(tmp_path / "photos" / "ok.jpg", 0.5, 0.5)
    assert invoke("import", str(tmp_path / "photos"), "-w", str(ws.root)).exit_code == 0
    frame = pd.read_parquet(ws.images_parquet)
    table = tmp_path / "again.csv"  # lists the imported copy, not the photo
    table.write_text(f"path,lat,lon\n{ws.root / frame['path'].iloc[0]},0.5,0.5\n")

    result = invoke("import", str(table), "-w", str(ws.root))

    assert_no_crash(result)
    assert "Imported 0 images" in result.stdout
    assert "duplicate (already in this workspace's images/ (and so in images.parquet))" in (
        result.stdout
    )
    assert len(pd.read_parquet(ws.images_parquet)) == 1  # not doubled
    assert len(list(ws.images_dir.rglob("*.jpg"))) == 1  # no copy beside the original


def test_import_finds_a_folders_photos_by_content(ws: Workspace, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photo(photos / "IMG_0001", 0.5, 0.5)  # no suffix: was left out without a word
    photo(photos / "shot.jpg_original", 0.3, 0.3)  # another suffix: was left out
    (photos / "notes.txt").write_text("holiday")
    (photos / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")

    result = invoke("import", str(photos), "-w", str(ws.root))

    assert_no_crash(result)
    assert "Imported 2 images" in result.stdout
    assert (
        f"Note: {photos}: left out 1 file that is not an image (.txt) and 1 hidden file or folder"
        in result.stdout
    )
    assert sorted(imported(ws).index) == ["IMG_0001", "shot"]


def test_import_takes_an_animated_gifs_first_frame_and_says_so(
    ws: Workspace, tmp_path: Path
) -> None:
    first = Image.open(photo(tmp_path / "still.jpg"))
    animated_gif(tmp_path / "anim.gif", first)
    bomb(tmp_path / "evil.png")
    table = tmp_path / "t.csv"
    table.write_text("path,lat,lon\nanim.gif,0.5,0.5\nevil.png,0.5,0.6\n")

    result = invoke("import", str(table), "-w", str(ws.root))

    assert_no_crash(result)
    assert "Imported 1 images" in result.stdout and "1 converted to JPEG" in result.stdout
    assert "Note: anim.gif: animated: only its first frame is used" in result.stdout
    assert "evil.png: unreadable (too large to decode safely (Image size" in result.stdout
    with Image.open(ws.root / imported(ws).loc["anim", "path"]) as image:
        assert image.format == "JPEG" and image.size == first.size


# -- sample -------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", "4294967296", "99999999999999999999"])
def test_sample_refuses_a_seed_out_of_range_in_one_line(ws: Workspace, seed: str) -> None:
    # -1 was `Error: unexpected ValueError: expected non-negative integer`; the huge seeds
    # were taken, and written to geotag.toml.
    before = snapshot(ws.root)
    result = invoke("sample", "-w", str(ws.root), "--seed", seed)
    assert_one_line_error(result, f"--seed must be a whole number from 0 to 4294967295; got {seed}")
    assert snapshot(ws.root) == before


def test_sample_takes_the_largest_seed(ws: Workspace) -> None:
    result = invoke("sample", "-w", str(ws.root), "--seed", "4294967295", "--per-cell", "1")
    assert_no_crash(result)
    assert "(seed 4294967295)" in result.stdout
