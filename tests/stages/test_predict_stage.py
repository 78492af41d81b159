"""`geotag predict` on real JPEGs: with and without EXIF GPS, odd modes, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational
from typer.testing import CliRunner

from geotag.cli import app
from geotag.errors import InputError
from geotag.geo.distance import haversine_km
from geotag.stages.predict import PredictOptions, run_predict
from geotag.train.data import Preprocessing, load_image, to_rgb
from geotag.workspace import Workspace

OPTIONS = PredictOptions(device="cpu")


def scraped_image(ws: Workspace, index: int = 0) -> tuple[Path, float, float]:
    row = pd.read_parquet(ws.images_parquet).iloc[index]
    return ws.root / row["path"], float(row["lat"]), float(row["lon"])


def with_gps(source: Path, target: Path, lat: float, lon: float) -> Path:
    """``source`` re-saved with EXIF GPS tags for (lat, lon), both hemispheres N/E."""
    exif = Image.Exif()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    for tag, ref_tag, value, refs in (
        (ExifTags.GPS.GPSLatitude, ExifTags.GPS.GPSLatitudeRef, lat, "NS"),
        (ExifTags.GPS.GPSLongitude, ExifTags.GPS.GPSLongitudeRef, lon, "EW"),
    ):
        seconds = round(abs(value) * 3600 * 100)
        gps[tag] = (
            IFDRational(seconds // 360000),
            IFDRational(seconds // 6000 % 60),
            IFDRational(seconds % 6000, 100),
        )
        gps[ref_tag] = refs[value < 0]
    with Image.open(source) as image:
        image.save(target, "JPEG", exif=exif.tobytes(), quality=95)
    return target


def test_predicts_top_cells_a_point_and_a_place(trained_ws: Workspace) -> None:
    path, _, _ = scraped_image(trained_ws)
    result = run_predict(trained_ws, [path], OPTIONS)
    (prediction,) = result.predictions
    probabilities = [g.probability for g in prediction.top_k]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 1 + 1e-6
    assert prediction.country is not None and prediction.place
    assert 5 < prediction.lat < 38 and 67 < prediction.lon < 98  # India's cells
    assert prediction.error_km is None


def test_exif_gps_gives_the_error(trained_ws: Workspace, tmp_path: Path) -> None:
    source, lat, lon = scraped_image(trained_ws, 3)
    photo = with_gps(source, tmp_path / "tagged.jpg", lat, lon)
    (prediction,) = run_predict(trained_ws, [photo], OPTIONS).predictions
    assert prediction.true_lat == pytest.approx(lat, abs=1e-4)
    assert prediction.true_lon == pytest.approx(lon, abs=1e-4)
    # From the EXIF location as read (rounded to its rationals): retrieval may answer the
    # photo's own training location, where the error is that rounding alone.
    expected = haversine_km(
        prediction.true_lat, prediction.true_lon, prediction.lat, prediction.lon
    )
    assert prediction.error_km == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_folder_with_bad_files_still_predicts_the_good_ones(
    trained_ws: Workspace, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    source, _, _ = scraped_image(trained_ws)
    (folder / "good.jpg").write_bytes(source.read_bytes())
    (folder / "notes.jpg").write_text("not an image")
    (folder / "cut.jpg").write_bytes(source.read_bytes()[:300])
    result = run_predict(trained_ws, [folder], OPTIONS)
    assert [Path(p.paths[0]).name for p in result.predictions] == ["good.jpg"]
    reasons = {Path(p).name: why for p, why in result.bad}
    assert reasons["notes.jpg"] == "not an image" and reasons["cut.jpg"].startswith("cannot decode")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="folder has no images"):
        run_predict(trained_ws, [tmp_path / "empty"], OPTIONS)


def test_fuse_makes_one_prediction_for_all_views(trained_ws: Workspace) -> None:
    paths = [scraped_image(trained_ws, i)[0] for i in (0, 1)]
    single = run_predict(trained_ws, paths, OPTIONS).predictions
    (fused,) = run_predict(trained_ws, paths, PredictOptions(device="cpu", fuse=True)).predictions
    assert len(fused.paths) == 2
    cells = {g.cell_id: g.probability for g in fused.top_k}
    by_view = [{g.cell_id: g.probability for g in p.top_k} for p in single]
    best = fused.top_k[0].cell_id
    if all(best in view for view in by_view):
        assert cells[best] == pytest.approx(np.mean([view[best] for view in by_view]), rel=1e-5)


def test_any_image_mode_and_orientation(trained_ws: Workspace, tmp_path: Path) -> None:
    source, _, _ = scraped_image(trained_ws)
    tmp_path = tmp_path / "photos"
    tmp_path.mkdir()
    with Image.open(source) as image:
        rgb = image.convert("RGB")
    rgb.convert("RGBA").save(tmp_path / "rgba.png")
    rgb.convert("L").save(tmp_path / "grey.jpg")
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    deep = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    # Orientation 6: the viewer turns the stored pixels 90 degrees clockwise to show them.
    rgb.rotate(90, expand=True).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    result = run_predict(trained_ws, [tmp_path], OPTIONS)
    assert len(result.predictions) == 5 and not result.bad
    pre = Preprocessing(64, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    upright = np.asarray(load_image(tmp_path / "rotated.jpg", pre), dtype=float)
    assert np.abs(upright - np.asarray(rgb, dtype=float)).mean() < 8
    with Image.open(tmp_path / "deep.png") as image:
        converted = np.asarray(to_rgb(image))
    assert abs(converted.mean() - np.asarray(rgb.convert("L")).mean()) < 2  # not clipped white


def test_cli_json_lines_and_map(trained_ws: Workspace, tmp_path: Path) -> None:
    source, lat, lon = scraped_image(trained_ws)
    photo = with_gps(source, tmp_path / "tagged.jpg", lat, lon)
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["predict", str(photo), str(tmp_path / "missing.jpg"), "-w", str(trained_ws.root),
         "--json", "--map", str(tmp_path / "map.png"), "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 1
    assert set(records[0]) >= {"path", "top_k", "lat", "lon", "place", "country", "error_km"}
    assert "missing.jpg: no such file" in result.output
    with Image.open(tmp_path / "map.png") as image:
        assert image.format == "PNG"
    table = runner.invoke(app, ["predict", str(photo), "-w", str(trained_ws.root)])
    assert table.exit_code == 0 and "EXIF GPS" in table.output and "error" in table.output
    none = runner.invoke(
        app, ["predict", str(tmp_path / "missing.jpg"), "-w", str(trained_ws.root)]
    )
    assert (
        none.exit_code == 1 and none.output.startswith("Error:") and "Traceback" not in none.output
    )
