"""``manifest.sqlite`` read back: done images as named rows, in path order."""

from __future__ import annotations

from pathlib import Path

from geotag.scrape.manifest import OUTSIDE_REGION, DoneImage, Manifest
from geotag.scrape.providers.base import Found, Point


def test_done_images_are_named_rows_of_the_finished_images_only(tmp_path: Path) -> None:
    found = Found("pano-1", 47.7, 14.5, "2020-05", "© Someone", "CC-BY", (0.0, 90.0))
    with Manifest(tmp_path / "manifest.sqlite") as manifest:
        manifest.add_points("sim", [Point(1, 3, 47.7, 14.5)])
        manifest.add_panorama(
            "sim", found, 4, 1, [(0.0, "images/4/b.jpg"), (90.0, "images/4/a.jpg")]
        )
        manifest.image_done("sim", "pano-1", 90.0, "0" * 64, 123, 1)
        rows = list(manifest.done_images())
    assert rows == [
        DoneImage(
            path="images/4/a.jpg",
            pano_id="pano-1",
            lat=47.7,
            lon=14.5,
            heading=90.0,
            cell_id=4,  # the panorama's cell, not the point's
            captured="2020-05",
            copyright="© Someone",
            provider="sim",
            license="CC-BY",
        )
    ]
    assert OUTSIDE_REGION == -1
