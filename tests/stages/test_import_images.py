from __future__ import annotations

import errno
import os
import shutil
import zlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from geotag import ingest
from geotag.dataset import IMAGE_COLUMNS, conform, read_images, write_images
from geotag.errors import InputError, WorkspaceError
from geotag.ingest import (
    BAD_COORDINATES,
    DUPLICATE,
    MISSING_FILE,
    NO_GPS,
    OUTSIDE_REGION,
    UNREADABLE,
    Skipped,
)
from geotag.stages.grid import run_grid
from geotag.stages.import_images import run_import
from geotag.workspace import Workspace
from tests.conftest import modules_loaded_by, snapshot

DMS = tuple[float, float, float]


@pytest.fixture(scope="module")
def gridded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with a 50 km grid over the 2 x 2 degree box around (0, 0), built once:
    both hemispheres, so S and W signs decide the cell."""
    root = tmp_path_factory.mktemp("template") / "ws"
    run_grid(Workspace(root), bbox="-1,-1,1,1", cell_km=50)
    return root


@pytest.fixture
def ws(gridded: Path, tmp_path: Path) -> Workspace:
    shutil.copytree(gridded, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def write_jpeg(
    path: Path,
    lat: tuple[DMS, str] | None = None,
    lon: tuple[DMS, str] | None = None,
    *,
    heading: float | None = None,
    taken: str | None = None,
    artist: str | None = None,
    copyright: str | None = None,
    fmt: str = "JPEG",
) -> Path:
    """A small photo with real EXIF; pixels are seeded by the path, so no two files match."""
    rng = np.random.default_rng(zlib.crc32(str(path).encode()))
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    image = coarse.resize((64, 48), Image.Resampling.BILINEAR)  # smooth: JPEG keeps it close
    exif = Image.Exif()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    if lat is not None and lon is not None:
        gps[ExifTags.GPS.GPSLatitude] = tuple(IFDRational(v) for v in lat[0])
        gps[ExifTags.GPS.GPSLatitudeRef] = lat[1]
        gps[ExifTags.GPS.GPSLongitude] = tuple(IFDRational(v) for v in lon[0])
        gps[ExifTags.GPS.GPSLongitudeRef] = lon[1]
    if heading is not None:
        gps[ExifTags.GPS.GPSImgDirectionRef] = "T"
        gps[ExifTags.GPS.GPSImgDirection] = IFDRational(heading)
    if taken is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken
    if artist is not None:
        exif[ExifTags.Base.Artist] = artist
    if copyright is not None:
        exif[ExifTags.Base.Copyright] = copyright
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, exif=exif.tobytes())  # bytes: PNG drops an Exif with only GPS
    return path


def here(lat: float, lon: float) -> tuple[tuple[DMS, str], tuple[DMS, str]]:
    """Decimal degrees as EXIF would hold them (whole seconds*100 keep it exact)."""

    def dms(value: float, refs: str) -> tuple[DMS, str]:
        seconds = round(abs(value) * 3600 * 100) / 100
        return (seconds // 3600, seconds % 3600 // 60, round(seconds % 60, 2)), refs[value < 0]

    return dms(lat, "NS"), dms(lon, "EW")


def cell_of(ws: Workspace, lat: float, lon: float) -> int:
    """The cell whose polygon holds the point, read straight from grid.parquet."""
    cells = gpd.read_parquet(ws.grid_parquet)
    inside = cells[cells.contains(shapely.Point(lon, lat))]
    assert len(inside) == 1
    return int(inside["cell_id"].iloc[0])


def dataset(ws: Workspace) -> pd.DataFrame:
    """images.parquet as written, checked against IMAGE_COLUMNS, indexed by source stem."""
    frame = pd.read_parquet(ws.images_parquet)
    assert list(frame.columns) == list(IMAGE_COLUMNS)
    pd.testing.assert_frame_equal(frame, conform(frame))  # already the declared dtypes
    return frame.set_index(frame["path"].str.extract(r"/([^/]+)-[0-9a-f]{10}\.jpg$")[0])


def image_files(ws: Workspace) -> list[str]:
    """Every file under images/, temporaries included."""
    if not ws.images_dir.exists():
        return []
    return sorted(p.relative_to(ws.root).as_posix() for p in ws.images_dir.rglob("*"))


def only_images(ws: Workspace) -> list[str]:
    files = [p for p in image_files(ws) if (ws.root / p).is_file()]
    assert all(Path(p).suffix == ".jpg" and not Path(p).name.startswith(".") for p in files)
    return files


# -- folders: EXIF ------------------------------------------------------------------------
def test_folder_import_reads_position_signs_heading_date_and_author(ws: Workspace, tmp_path: Path):
    photos = tmp_path / "photos"
    north_east = write_jpeg(
        photos / "ne.jpg",
        ((0, 30, 36), "N"),
        ((0, 15, 0), "E"),
        heading=271.5,
        taken="2021:07:14 09:30:00",
        artist="Jane Doe",
        copyright="(c) Jane Doe",
    )
    write_jpeg(photos / "trip" / "sw.jpg", ((0, 20, 6), "S"), ((0, 45, 18), "W"), artist="Raj\x00")

    result = run_import(ws, photos)

    assert result.imported == 2 and result.skipped == ()
    rows = dataset(ws)
    ne, sw = rows.loc["ne"], rows.loc["sw"]
    assert (ne["lat"], ne["lon"]) == pytest.approx((0.51, 0.25), abs=1e-12)
    assert (sw["lat"], sw["lon"]) == pytest.approx((-(20 / 60 + 6 / 3600), -0.755), abs=1e-12)
    assert ne["cell_id"] == cell_of(ws, 0.51, 0.25)
    assert sw["cell_id"] == cell_of(ws, sw["lat"], sw["lon"]) != ne["cell_id"]
    assert ne["heading"] == 271.5 and pd.isna(sw["heading"])
    assert ne["captured"] == "2021-07-14" and pd.isna(sw["captured"])
    assert ne["copyright"] == "(c) Jane Doe"  # Copyright wins over Artist
    assert sw["copyright"] == "Raj"  # else Artist, NUL padding dropped
    assert ne["group"] == ne["pano_id"] == "0.510000,0.250000"
    assert ne["provider"] == "import" and pd.isna(ne["license"])
    assert ne["path"].startswith(f"images/{ne['cell_id']}/ne-")
    assert (ws.root / ne["path"]).read_bytes() == north_east.read_bytes()  # byte for byte
    assert only_images(ws) == sorted(rows["path"])


def test_images_without_gps_are_listed_and_other_files_ignored(ws: Workspace, tmp_path: Path):
    photos = tmp_path / "photos"
    write_jpeg(photos / "good.jpg", *here(0.1, 0.1))
    write_jpeg(photos / "sub" / "nogps.jpg", taken="2020:01:01 00:00:00")
    write_jpeg(photos / "half.jpg", heading=90)  # a GPS IFD with a heading but no position
    (photos / "notes.txt").write_text("not a photo")
    write_jpeg(photos / "._good.jpg")  # a macOS fork: hidden, never looked at
    write_jpeg(photos / ".thumbnails" / "t.jpg")

    result = run_import(ws, photos)

    assert result.imported == 1
    assert result.by_reason()[NO_GPS] == (
        Skipped("half.jpg", NO_GPS, "no GPS position in its EXIF"),
        Skipped("sub/nogps.jpg", NO_GPS, "no GPS position in its EXIF"),
    )
    assert len(result.skipped) == 2
    assert list(dataset(ws).index) == ["good"]


def test_points_outside_the_region_are_dropped_and_counted(ws: Workspace, tmp_path: Path):
    photos = tmp_path / "photos"
    write_jpeg(photos / "in.jpg", *here(-0.2, 0.3))
    write_jpeg(photos / "out.jpg", *here(5.0, -5.0))

    result = run_import(ws, photos)

    assert result.imported == 1
    assert result.skipped == (
        Skipped("out.jpg", OUTSIDE_REGION, "5.000000, -5.000000 is in no cell of the grid"),
    )
    assert len(result.by_reason()[OUTSIDE_REGION]) == 1
    assert list(dataset(ws).index) == ["in"]
    assert len(only_images(ws)) == 1


def test_corrupt_and_unreadable_files_are_skipped_and_not_copied(ws: Workspace, tmp_path: Path):
    photos = tmp_path / "photos"
    write_jpeg(photos / "good.jpg", *here(0.1, 0.1))
    whole = write_jpeg(photos / "truncated.jpg", *here(0.2, 0.2)).read_bytes()
    (photos / "truncated.jpg").write_bytes(whole[: len(whole) * 2 // 3])  # EXIF intact
    (photos / "noise.jpg").write_bytes(np.random.default_rng(1).bytes(4000))
    (photos / "empty.png").write_bytes(b"")

    result = run_import(ws, photos)

    assert result.imported == 1
    skipped = {s.source: s for s in result.skipped}
    assert set(skipped) == {"truncated.jpg", "noise.jpg", "empty.png"}
    assert all(s.reason == UNREADABLE for s in skipped.values())
    assert skipped["truncated.jpg"].detail.startswith("cannot decode the image: ")
    assert "truncated" in skipped["truncated.jpg"].detail.lower()
    assert skipped["noise.jpg"].detail == "not an image file Pillow can read"
    assert skipped["empty.png"].detail == "not an image file Pillow can read"
    assert list(dataset(ws).index) == ["good"]
    assert len(only_images(ws)) == 1


def test_png_is_converted_to_jpeg(ws: Workspace, tmp_path: Path):
    png = write_jpeg(tmp_path / "photos" / "shot.png", *here(0.3, -0.3), fmt="PNG")

    result = run_import(ws, png.parent)

    assert (result.imported, result.converted) == (1, 1)
    target = ws.root / dataset(ws).loc["shot", "path"]
    with Image.open(target) as image, Image.open(png) as original:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", original.size)
        difference = np.abs(np.asarray(image, float) - np.asarray(original.convert("RGB"), float))
    assert difference.mean() < 3  # the same picture, give or take JPEG noise


def test_an_image_that_cannot_be_converted_any_more_is_skipped(ws: Workspace, tmp_path: Path):
    png = write_jpeg(tmp_path / "photos" / "shot.png", *here(0.3, -0.3), fmt="PNG")
    write_jpeg(tmp_path / "photos" / "ok.jpg", *here(0.1, 0.1))

    class DamageAfterDecoding:
        """Overwrites the PNG once it has decoded, just before the images are placed."""

        def start(self, task: str, total: int | None) -> None:
            if task == "copying images":
                png.write_bytes(b"no longer a PNG")

        def advance(self, steps: int = 1) -> None:
            pass

    result = run_import(ws, png.parent, progress=DamageAfterDecoding())

    assert (result.imported, result.converted) == (1, 0)
    [skipped] = result.skipped
    assert (skipped.source, skipped.reason) == ("shot.png", UNREADABLE)
    assert skipped.detail.startswith("cannot convert to JPEG: cannot identify image file")
    assert list(dataset(ws).index) == ["ok"]
    assert len(only_images(ws)) == 1


# -- tables -------------------------------------------------------------------------------
def test_csv_table_with_relative_paths_and_optional_columns(ws: Workspace, tmp_path: Path):
    data = tmp_path / "data"
    write_jpeg(data / "photos" / "a.jpg", copyright="exif owner")
    write_jpeg(data / "photos" / "b.jpg", heading=10.0, taken="2018:03:04 05:06:07")
    elsewhere = write_jpeg(tmp_path / "elsewhere" / "c.jpg")
    table = data / "table.csv"
    table.write_text(
        "path,lat,lon,group,heading,captured,copyright,license\n"
        "photos/a.jpg,0.1,0.2,007,-90,2019-05,,CC-BY-4.0\n"
        "photos/b.jpg,-0.1,-0.2,,,,,\n"
        f"{elsewhere},0.4,0.4,007,45,2020:01:02 10:00:00,Studio X,\n"
    )

    result = run_import(ws, table, license="CC0-1.0", provider="mycamera")

    assert result.imported == 3 and result.skipped == ()
    rows = dataset(ws)
    a, b, c = rows.loc["a"], rows.loc["b"], rows.loc["c"]
    assert (a["lat"], a["lon"], a["cell_id"]) == (0.1, 0.2, cell_of(ws, 0.1, 0.2))
    assert a["group"] == c["group"] == "007"  # as written: text, not the number 7
    assert b["group"] == b["pano_id"] == "-0.100000,-0.200000"
    assert (a["heading"], b["heading"], c["heading"]) == (270.0, 10.0, 45.0)  # column, else EXIF
    assert (a["captured"], b["captured"], c["captured"]) == ("2019-05", "2018-03-04", "2020-01-02")
    assert (a["copyright"], c["copyright"]) == ("exif owner", "Studio X")
    assert pd.isna(b["copyright"])
    assert (a["license"], b["license"], c["license"]) == ("CC-BY-4.0", "CC0-1.0", "CC0-1.0")
    assert set(rows["provider"]) == {"mycamera"}


def test_parquet_table_groups_by_place_when_no_group_is_given(ws: Workspace, tmp_path: Path):
    names = ["n", "e", "s", "far"]
    for name in names:
        write_jpeg(tmp_path / f"{name}.jpg")
    table = tmp_path / "places.parquet"
    pd.DataFrame(
        {
            "path": [f"{n}.jpg" for n in names],
            "lat": [0.5, 0.5 + 1e-8, 0.5, -0.5],  # 1e-8 degrees is the same place
            "lon": [0.5, 0.5, 0.5, -0.5],
            "heading": [0.0, 90.0, 180.0, None],
        }
    ).to_parquet(table)

    result = run_import(ws, table)

    assert result.imported == 4
    rows = dataset(ws)
    assert rows.loc[["n", "e", "s"], "group"].tolist() == ["0.500000,0.500000"] * 3
    assert rows.loc["far", "group"] == "-0.500000,-0.500000"
    assert (rows["pano_id"] == rows["group"]).all()
    assert rows.loc[["n", "e", "s"], "heading"].tolist() == [0.0, 90.0, 180.0]


def test_bad_rows_are_skipped_with_their_reasons(ws: Workspace, tmp_path: Path):
    for name in ("north", "east", "blank", "ok"):
        write_jpeg(tmp_path / f"{name}.jpg")
    table = tmp_path / "t.csv"
    table.write_text(
        "path,lat,lon\n"
        "north.jpg,95,0.1\n"
        "east.jpg,0.1,-181\n"
        "blank.jpg,,0.1\n"
        "ok.jpg,0.1,0.1\n"
        ",0.1,0.1\n"
        "gone.jpg,0.1,0.1\n"
        "ok.jpg,0.3,0.3\n"
    )

    result = run_import(ws, table)

    assert result.imported == 1
    assert result.skipped == (
        Skipped("north.jpg", BAD_COORDINATES, "latitude 95 is not in [-90, 90]"),
        Skipped("east.jpg", BAD_COORDINATES, "longitude -181 is not in [-180, 180]"),
        Skipped("blank.jpg", BAD_COORDINATES, "lat/lon missing or not a number"),
        Skipped("t.csv row 5", MISSING_FILE, "no path given"),
        Skipped("gone.jpg", MISSING_FILE, f"no such file: {(tmp_path / 'gone.jpg').resolve()}"),
        Skipped("ok.jpg", DUPLICATE, "same image as ok.jpg"),
    )
    assert dataset(ws).loc["ok", "lat"] == 0.1  # the first listing wins


def test_a_table_without_required_columns_is_refused_in_one_line(ws: Workspace, tmp_path: Path):
    table = tmp_path / "t.csv"
    table.write_text("file,latitude,lon\na.jpg,1,2\n")
    before = snapshot(ws.root)
    with pytest.raises(InputError) as caught:
        run_import(ws, table)
    assert str(caught.value) == "t.csv lacks column(s) path, lat; a table needs path, lat, lon"
    assert snapshot(ws.root) == before


def test_a_source_that_is_neither_table_nor_folder_is_refused(ws: Workspace, tmp_path: Path):
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(InputError) as missing:
        run_import(ws, tmp_path / "nowhere.csv")
    assert str(missing.value) == (
        f"{tmp_path / 'nowhere.csv'} does not exist; give a CSV or Parquet table or a folder"
    )
    with pytest.raises(InputError) as other:
        run_import(ws, notes)
    assert str(other.value) == f"{notes} is neither a table (.csv, .parquet) nor a folder of images"


def test_without_a_grid_it_says_what_to_run(tmp_path: Path):
    write_jpeg(tmp_path / "photos" / "a.jpg", *here(0.1, 0.1))
    empty = Workspace(tmp_path / "ws")
    with pytest.raises(WorkspaceError, match=r"grid.parquet not found .*run `geotag grid` first"):
        run_import(empty, tmp_path / "photos")
    assert not empty.root.exists()


# -- files --------------------------------------------------------------------------------
def test_rerunning_an_import_changes_nothing(ws: Workspace, tmp_path: Path):
    write_jpeg(tmp_path / "p" / "a.jpg", *here(0.1, 0.1))
    write_jpeg(tmp_path / "p" / "b.jpg", *here(-0.6, 0.6))
    first = run_import(ws, tmp_path / "p")
    files, table = snapshot(ws.images_dir), read_images(ws)

    second = run_import(ws, tmp_path / "p")

    assert first.imported == second.imported == 2
    assert snapshot(ws.images_dir) == files
    pd.testing.assert_frame_equal(read_images(ws), table)
    assert len(table) == 2


def test_same_file_names_from_two_folders_do_not_collide(ws: Workspace, tmp_path: Path):
    one = write_jpeg(tmp_path / "day1" / "IMG_0001.jpg", *here(0.1, 0.1))
    two = write_jpeg(tmp_path / "day2" / "IMG_0001.jpg", *here(0.1, 0.1))

    result = run_import(ws, tmp_path)

    assert result.imported == 2
    paths = sorted(read_images(ws)["path"])
    assert paths[0] != paths[1] and all("/IMG_0001-" in p for p in paths)
    assert {(ws.root / p).read_bytes() for p in paths} == {one.read_bytes(), two.read_bytes()}


def test_two_copies_of_one_photo_are_imported_once(ws: Workspace, tmp_path: Path):
    original = write_jpeg(tmp_path / "a" / "x.jpg", *here(0.1, 0.1))
    (tmp_path / "b").mkdir()
    shutil.copyfile(original, tmp_path / "b" / "copy.jpg")

    result = run_import(ws, tmp_path)

    assert result.imported == 1
    assert result.skipped == (Skipped("b/copy.jpg", DUPLICATE, "same image as a/x.jpg"),)


def test_link_shares_the_inode(ws: Workspace, tmp_path: Path):
    source = write_jpeg(tmp_path / "p" / "a.jpg", *here(0.1, 0.1))

    result = run_import(ws, tmp_path / "p", link=True)

    target = ws.root / read_images(ws)["path"].iloc[0]
    assert (result.imported, result.linked) == (1, 1)
    assert os.stat(target).st_ino == os.stat(source).st_ino
    assert ws.stage_settings("import")["link"] is True
    run_import(ws, tmp_path / "p", link=True)  # re-linking the same file is fine
    assert os.stat(target).st_ino == os.stat(source).st_ino


def test_link_falls_back_to_copy_across_filesystems(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    source = write_jpeg(tmp_path / "p" / "a.jpg", *here(0.1, 0.1))

    def cross_device(src: Path, dst: Path) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(ingest.os, "link", cross_device)
    result = run_import(ws, tmp_path / "p", link=True)

    target = ws.root / read_images(ws)["path"].iloc[0]
    assert (result.imported, result.linked) == (1, 0)
    assert target.read_bytes() == source.read_bytes()
    assert os.stat(target).st_ino != os.stat(source).st_ino


def test_an_interrupted_import_leaves_no_partial_image(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    for name in ("a", "b", "c"):
        write_jpeg(tmp_path / "p" / f"{name}.jpg", *here(0.1, 0.1))
    real_copy = shutil.copyfile
    calls = []

    def copy_then_interrupt(src: Path, dst: Path) -> None:
        calls.append(src)
        if len(calls) == 2:  # Ctrl-C halfway through the second image
            Path(dst).write_bytes(Path(src).read_bytes()[:100])
            raise KeyboardInterrupt
        real_copy(src, dst)

    monkeypatch.setattr(ingest.shutil, "copyfile", copy_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_import(ws, tmp_path / "p")

    assert list(dataset(ws).index) == ["a"]  # the image already in place is recorded
    assert only_images(ws) == list(read_images(ws)["path"])
    assert "import" not in ws.settings()


def test_stale_temporaries_of_a_killed_import_are_removed(ws: Workspace, tmp_path: Path):
    stale = ws.images_dir / "3" / ".a-0123456789.jpg.k2j3.tmp.jpg"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    write_jpeg(tmp_path / "p" / "a.jpg", *here(0.1, 0.1))

    run_import(ws, tmp_path / "p")

    assert not stale.exists()
    assert len(only_images(ws)) == 1


def test_earlier_rows_are_kept_and_settings_recorded(ws: Workspace, tmp_path: Path):
    scraped = pd.DataFrame(
        {
            "path": ["images/5/pano_0.jpg"],
            "pano_id": ["pano"],
            "group": ["pano"],
            "lat": [0.7],
            "lon": [-0.5],
            "heading": [0.0],
            "cell_id": [5],
            "captured": ["2020-01"],
            "copyright": ["© Google"],
            "provider": ["google"],
            "license": [None],
        }
    )
    write_images(ws, scraped)
    write_jpeg(tmp_path / "p" / "a.jpg", *here(0.1, 0.1))

    result = run_import(ws, tmp_path / "p", license="CC0-1.0")

    assert sorted(read_images(ws)["provider"]) == ["google", "import"]
    assert result.files == (ws.images_parquet, ws.settings_path)
    assert ws.stage_settings("import") == {
        "source": str((tmp_path / "p").resolve()),
        "count": 1,
        "link": False,
        "provider": "import",
        "license": "CC0-1.0",
        "grid_id": ws.stage_settings("grid")["grid_id"],
    }


def test_progress_names_each_step(ws: Workspace, tmp_path: Path):
    write_jpeg(tmp_path / "p" / "a.jpg", *here(0.1, 0.1))
    write_jpeg(tmp_path / "p" / "b.jpg")

    class Recorder:
        def __init__(self) -> None:
            self.events: list[tuple[str, int | None]] = []

        def start(self, task: str, total: int | None) -> None:
            self.events.append((task, total))

        def advance(self, steps: int = 1) -> None:
            self.events.append(("+", steps))

    recorder = Recorder()
    run_import(ws, tmp_path / "p", progress=recorder)

    assert recorder.events == [
        ("reading p", None),
        ("decoding images", 2),
        ("+", 1),
        ("+", 1),
        ("locating cells", None),
        ("copying images", 1),
        ("+", 1),
        ("writing images.parquet", None),
    ]


def test_the_workspace_inside_the_source_is_not_imported_again(ws: Workspace, tmp_path: Path):
    # `geotag import .` run in the workspace: grid.png and images/ are no new photos.
    write_jpeg(ws.root / "photos" / "a.jpg", *here(0.1, 0.1))
    first = run_import(ws, ws.root)
    second = run_import(ws, ws.root)

    assert first.imported == second.imported == 1
    assert first.skipped == second.skipped == ()
    assert len(read_images(ws)) == 1


# -- the command line ---------------------------------------------------------------------
def test_cli_import_reports_imported_and_skipped(ws: Workspace, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from geotag.cli import app

    photos = tmp_path / "photos"
    write_jpeg(photos / "inside.jpg", *here(0.25, 0.25))
    write_jpeg(photos / "nogps.jpg")
    result = CliRunner().invoke(app, ["import", str(photos), "-w", str(ws.root)])
    assert result.exit_code == 0, result.output
    assert "Imported 1 images" in result.output
    assert "nogps.jpg: no GPS" in result.output
    assert len(pd.read_parquet(ws.images_parquet)) == 1


def test_cli_import_bad_source_is_one_line(ws: Workspace, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from geotag.cli import app

    before = snapshot(ws.root)
    result = CliRunner().invoke(app, ["import", str(tmp_path / "nowhere"), "-w", str(ws.root)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert "Traceback" not in result.output
    assert snapshot(ws.root) == before


# -- the module ---------------------------------------------------------------------------
def test_importing_the_stage_loads_no_heavy_library() -> None:
    # The CLI imports stages lazily, but a stage module stays light anyway.
    heavy = ("numpy", "pandas", "PIL", "shapely")
    assert modules_loaded_by("import geotag.stages.import_images", heavy) == []
