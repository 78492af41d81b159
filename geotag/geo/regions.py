"""Turn what the user names -- a country, a boundary file, a bounding box -- into one polygon.

Country boundaries come from the bundled Natural Earth admin-0 layer (``data/``), so this
works offline. Every region is returned in EPSG:4326, valid and polygonal.
"""

from __future__ import annotations

import difflib
import functools
import math
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geotag.errors import InputError, first_line

if TYPE_CHECKING:
    import geopandas as gpd

COUNTRIES_FILE = Path(__file__).parent / "data" / "countries.parquet"
DEFAULT_COUNTRY = "India"
#: Name columns of the bundled layer that a user may type, most specific first.
NAME_COLUMNS = ("name", "name_long", "admin", "formal_en")
#: Formats ``--region`` reads; GeoParquet goes through geopandas, the rest through GDAL.
PARQUET_SUFFIXES = (".parquet", ".geoparquet")
BBOX_DENSIFY_DEG = 0.1


@dataclass(frozen=True)
class Region:
    """A region to grid: a valid (multi)polygon in EPSG:4326 and where it came from."""

    name: str
    geometry: BaseGeometry
    source: str
    warnings: tuple[str, ...] = field(default=())

    def center(self) -> tuple[float, float]:
        """(lat, lon) of a point central to the region, correct across the antimeridian."""
        return polygon_center(self.geometry)


def resolve_region(
    country: str | None = None,
    region_file: Path | None = None,
    bbox: str | tuple[float, float, float, float] | None = None,
) -> Region:
    """The one region named by exactly one of the arguments (default: India)."""
    given = [x is not None for x in (country, region_file, bbox)]
    if sum(given) > 1:
        raise InputError("give only one of --country, --region and --bbox")
    if region_file is not None:
        return region_from_file(Path(region_file))
    if bbox is not None:
        return region_from_bbox(bbox)
    return country_region(country if country is not None else DEFAULT_COUNTRY)


# -- countries --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def countries() -> gpd.GeoDataFrame:
    """The bundled Natural Earth admin-0 countries (EPSG:4326)."""
    import geopandas as gpd

    return gpd.read_parquet(COUNTRIES_FILE)


def _normalise(text: str) -> str:
    """Case-, accent- and spacing-insensitive form of a name."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().replace(".", " ").split())


def country_region(query: str) -> Region:
    """The country named by ``query``: an ISO 3166 alpha-2 or alpha-3 code, or a name."""
    table = countries()
    wanted = _normalise(query)
    if not wanted:
        raise InputError("--country is empty; give a country name or ISO code, e.g. India or IN")
    row = None
    if len(wanted) in (2, 3):
        column = "iso_a2" if len(wanted) == 2 else "iso_a3"
        hits = table.index[table[column].fillna("").str.casefold() == wanted]
        row = hits[0] if len(hits) else None
    if row is None:
        names = _name_index(len(table))
        row = names.get(wanted)
    if row is None:
        raise InputError(_unknown_country_message(query))
    record = table.loc[row]
    code = next(str(record[c]) for c in ("iso_a3", "iso_a2", "name") if isinstance(record[c], str))
    return Region(name=str(record["name"]), geometry=record.geometry, source=f"country:{code}")


@functools.lru_cache(maxsize=1)
def _name_index(_rows: int) -> dict[str, int]:
    index: dict[str, int] = {}
    table = countries()
    for column in reversed(NAME_COLUMNS):  # earlier columns win on a clash
        for row, value in table[column].items():
            if isinstance(value, str) and value:
                index[_normalise(value)] = int(row)
    return index


def _unknown_country_message(query: str) -> str:
    table = countries()
    names = _name_index(len(table))
    close = difflib.get_close_matches(_normalise(query), list(names), n=3, cutoff=0.75)
    shown = list(dict.fromkeys(str(table.loc[names[c], "name"]) for c in close))
    hint = (
        f"; did you mean {' or '.join(shown)}?"
        if shown
        else ("; give a country name or an ISO 3166 code such as IN or IND")
    )
    return f"unknown country {query!r}{hint}"


# -- region files -----------------------------------------------------------------------


def region_from_file(path: Path) -> Region:
    """Union of every feature of a GeoJSON / GeoPackage / Shapefile / GeoParquet file."""
    import geopandas as gpd
    import pyogrio

    notes: list[str] = []
    if not path.exists():
        raise InputError(f"region file {path} does not exist")
    if path.is_dir() and path.suffix.lower() != ".gdb":
        raise InputError(f"region file {path} is a folder, not a file")
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            frame = gpd.read_parquet(path)
        else:
            layers = pyogrio.list_layers(path)
            layer = layers[0][0] if len(layers) else None
            if len(layers) > 1:
                notes.append(f"{path.name} has {len(layers)} layers; used the first, {layer!r}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # GDAL chatter about odd but readable files
                frame = gpd.read_file(path, layer=layer)
    except Exception as exc:  # GDAL, Arrow and JSON errors all mean "not a readable region"
        raise InputError(f"cannot read region file {path}: {first_line(exc)}") from None
    if not isinstance(frame, gpd.GeoDataFrame) or "geometry" not in frame:
        raise InputError(f"region file {path} has no geometry column")
    if len(frame) == 0:
        raise InputError(f"region file {path} has no features")
    if frame.crs is None:
        notes.append(f"{path.name} has no CRS; assumed EPSG:4326 (longitude, latitude)")
        frame = frame.set_crs(4326)
    elif not frame.crs.equals("EPSG:4326"):
        frame = frame.to_crs(4326)
    geometry = _polygonal_union(frame.geometry.values)
    if geometry.is_empty:
        raise InputError(f"region file {path} contains no polygons")
    lon_min, lat_min, lon_max, lat_max = geometry.bounds
    if lat_min < -90 or lat_max > 90 or lon_min < -360 or lon_max > 360:
        raise InputError(
            f"region file {path} has coordinates outside longitude/latitude range; "
            "is its CRS declared correctly?"
        )
    return Region(name=path.stem, geometry=geometry, source=f"file:{path}", warnings=tuple(notes))


def _polygonal_union(geometries: np.ndarray) -> BaseGeometry:
    """Valid union of the polygonal parts of ``geometries`` (lines and points are ignored)."""
    parts = shapely.get_parts(shapely.make_valid(np.asarray(geometries)))
    parts = shapely.get_parts(parts)  # make_valid may return collections
    polygons = parts[shapely.get_type_id(parts) == shapely.GeometryType.POLYGON]
    polygons = polygons[~shapely.is_empty(polygons)]
    if len(polygons) == 0:
        return shapely.MultiPolygon()
    return shapely.make_valid(shapely.union_all(polygons))


# -- bounding boxes ---------------------------------------------------------------------


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"W,S,E,N"`` in degrees -> a checked tuple."""
    pieces = [p.strip() for p in text.split(",")]
    if len(pieces) != 4:
        raise InputError(f"--bbox needs four numbers W,S,E,N; got {text!r}")
    try:
        west, south, east, north = (float(p) for p in pieces)
    except ValueError:
        raise InputError(f"--bbox needs four numbers W,S,E,N; got {text!r}") from None
    return check_bbox((west, south, east, north))


def check_bbox(bbox: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    west, south, east, north = bbox
    if not all(math.isfinite(v) for v in bbox):
        raise InputError("--bbox values must be finite numbers")
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise InputError(f"--bbox longitudes must lie in [-180, 180]; got W={west}, E={east}")
    if not (-90 <= south <= 90 and -90 <= north <= 90):
        raise InputError(f"--bbox latitudes must lie in [-90, 90]; got S={south}, N={north}")
    if west >= east:
        raise InputError(f"--bbox needs W < E; got W={west}, E={east}")
    if south >= north:
        raise InputError(f"--bbox needs S < N; got S={south}, N={north}")
    return west, south, east, north


def region_from_bbox(bbox: str | tuple[float, float, float, float]) -> Region:
    """A longitude/latitude box; its edges are densified so they follow the graticule."""
    west, south, east, north = parse_bbox(bbox) if isinstance(bbox, str) else check_bbox(bbox)
    box = shapely.segmentize(shapely.box(west, south, east, north), BBOX_DENSIFY_DEG)
    return Region(
        name=f"bbox {west:g},{south:g},{east:g},{north:g}",
        geometry=box,
        source=f"bbox:{west:g},{south:g},{east:g},{north:g}",
    )


# -- centre -----------------------------------------------------------------------------


def polygon_center(geometry: BaseGeometry) -> tuple[float, float]:
    """(lat, lon): the area-weighted mean direction of the parts' centroids.

    Averaging unit vectors rather than longitudes keeps a country split by the antimeridian
    (Fiji, Russia) centred on its land, not on the Greenwich meridian.
    """
    parts = shapely.get_parts(geometry)
    if len(parts) == 0:
        raise InputError("the region is empty")
    centroids = shapely.centroid(parts)
    lon = np.radians(shapely.get_x(centroids))
    lat = np.radians(shapely.get_y(centroids))
    weight = shapely.area(parts) * np.cos(lat) + 1e-12
    xyz = np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    mean = (xyz * weight[:, None]).sum(axis=0)
    lon_c = math.degrees(math.atan2(mean[1], mean[0]))
    lat_c = math.degrees(math.atan2(mean[2], math.hypot(mean[0], mean[1])))
    return lat_c, lon_c
