from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from geotag.errors import InputError
from geotag.geo.regions import (
    country_region,
    parse_bbox,
    polygon_center,
    region_from_bbox,
    region_from_file,
    resolve_region,
)


@pytest.mark.parametrize("query", ["India", "india", "IN", "in", "IND", "Republic of India"])
def test_country_by_name_or_code(query: str) -> None:
    region = country_region(query)
    assert region.name == "India"
    assert region.source == "country:IND"
    assert region.geometry.is_valid
    assert region.geometry.contains(shapely.Point(77.2, 28.6))  # New Delhi


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("FR", "France"),
        ("fra", "France"),
        ("NO", "Norway"),
        ("cote d'ivoire", "Côte d'Ivoire"),
        ("XK", "Kosovo"),
        ("united states of america", "United States"),
        ("USA", "United States"),
    ],
)
def test_countries_with_unusual_codes_or_accents(query: str, name: str) -> None:
    assert country_region(query).name == name


def test_country_without_iso3_still_gets_a_source() -> None:
    assert country_region("Kosovo").source == "country:XK"


def test_misspelt_country_suggests() -> None:
    with pytest.raises(InputError, match=r"unknown country 'Indai'; did you mean India"):
        country_region("Indai")
    with pytest.raises(InputError, match=r"did you mean Philippines\?"):
        country_region("Phillipines")
    with pytest.raises(InputError, match=r"unknown country 'Atlantis'; give a country name"):
        country_region("Atlantis")


def test_default_region_is_india() -> None:
    assert resolve_region().name == "India"


def test_only_one_region_source() -> None:
    with pytest.raises(InputError, match="only one of --country, --region and --bbox"):
        resolve_region(country="India", bbox="1,2,3,4")


def test_bbox_parsing_and_validation() -> None:
    assert parse_bbox(" 68, 6,98 ,36 ") == (68.0, 6.0, 98.0, 36.0)
    bad = {
        "1,2,3": "four numbers",
        "a,b,c,d": "four numbers",
        "10,0,5,1": "W < E",
        "5,0,5,1": "W < E",
        "0,10,1,5": "S < N",
        "-190,0,1,1": r"longitudes must lie in \[-180, 180\]",
        "0,-95,1,1": r"latitudes must lie in \[-90, 90\]",
        "nan,0,1,1": "finite",
    }
    for text, message in bad.items():
        with pytest.raises(InputError, match=message):
            parse_bbox(text)


def test_bbox_region_follows_parallels() -> None:
    region = region_from_bbox("10,40,30,50")
    # Densified edges: a 20-degree edge gets a vertex every 0.1 degree.
    assert len(region.geometry.exterior.coords) > 400
    assert region.geometry.bounds == (10.0, 40.0, 30.0, 50.0)


def test_region_file_unions_features_and_reprojects(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame(
        {"name": ["a", "b"]},
        geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)],
        crs=4326,
    ).to_crs(3857)
    for suffix, writer in {
        ".gpkg": lambda f, p: f.to_file(p, driver="GPKG"),
        ".shp": lambda f, p: f.to_file(p),
        ".parquet": lambda f, p: f.to_parquet(p),
        ".geojson": lambda f, p: f.to_file(p, driver="GeoJSON"),
    }.items():
        path = tmp_path / f"two{suffix}"
        writer(frame, path)
        region = region_from_file(path)
        assert region.geometry.area == pytest.approx(2.0, rel=1e-6), suffix
        assert isinstance(region.geometry, shapely.Polygon), "touching boxes are unioned"
        assert region.warnings == ()


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_region_file_without_crs_is_assumed_lonlat(tmp_path: Path) -> None:
    path = tmp_path / "nocrs.shp"
    gpd.GeoDataFrame(geometry=[shapely.box(10, 10, 11, 11)]).to_file(path)
    region = region_from_file(path)
    assert region.geometry.bounds == (10.0, 10.0, 11.0, 11.0)
    assert any("no CRS; assumed EPSG:4326" in w for w in region.warnings)


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_bad_region_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.geojson"
    empty.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    text = tmp_path / "notes.geojson"
    text.write_text("these are not the features you are looking for")
    points = tmp_path / "points.geojson"
    gpd.GeoDataFrame(geometry=[shapely.Point(1, 1)], crs=4326).to_file(points)
    projected_as_lonlat = tmp_path / "metres.shp"
    gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 500_000, 500_000)]).to_file(projected_as_lonlat)
    cases = {
        tmp_path / "missing.geojson": "does not exist",
        tmp_path: "is a folder",
        empty: "has no features",
        text: "cannot read region file",
        points: "contains no polygons",
        projected_as_lonlat: "outside longitude/latitude range",
    }
    for path, message in cases.items():
        with pytest.raises(InputError, match=message):
            region_from_file(path)


def test_center_of_antimeridian_countries() -> None:
    lat, lon = country_region("Fiji").center()
    assert -20 < lat < -15 and abs(lon) > 175
    lat, lon = country_region("Russia").center()
    assert 50 < lat < 75 and 60 < lon < 130
    assert polygon_center(shapely.box(10, 0, 20, 10)) == pytest.approx((5.0, 15.0), abs=0.05)
