"""Build the bundled first-level administrative regions, ``geotag/geo/data/admin1.parquet``.

No package on PyPI ships the Natural Earth 1:10m admin-1 polygons, but Debian's
``qgis-common`` does: QGIS's ``resources/data/world_map.gpkg`` holds a ``states_provinces``
layer processed from Natural Earth *Admin 1 - States, Provinces* v4.1.0 (generalised with
GRASS ``v.generalize`` and dissolved per region; see the README_world_map.md beside it). QGIS
dropped Natural Earth's ``iso_3166_2`` field, so this script restores it by matching names
against Debian's ``iso-codes`` table; a region without a unique match gets no code.

The script makes every geometry a valid MultiPolygon, simplifies the layer as one coverage
(``shapely.coverage_simplify``, so neighbours keep a shared border), derives ``iso_3166_2``
and a ``key`` that is never empty, and writes zstd-compressed GeoParquet in EPSG:4326 sorted
by ``admin`` then ``key``.

Getting the inputs on a machine without QGIS (from the repository root)::

    cd /tmp && apt-get download qgis-common && dpkg -x qgis-common_*_all.deb qgis-common
    .venv/bin/python scripts/build_admin1.py \\
        --source /tmp/qgis-common/usr/share/qgis/resources/data/world_map.gpkg

``iso-codes`` is installed on most Debian systems (``apt-get install iso-codes`` otherwise).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = Path("/usr/share/qgis/resources/data/world_map.gpkg")
DEFAULT_ISO_CODES = Path("/usr/share/iso-codes/json/iso_3166-2.json")
DEFAULT_OUT = REPO_ROOT / "geotag" / "geo" / "data" / "admin1.parquet"
LAYER = "states_provinces"
#: coverage_simplify's tolerance in degrees (Visvalingam-Whyatt: vertices whose triangle is
#: smaller than about tolerance^2 go); 0.025 keeps the file near 4 MB.
DEFAULT_TOLERANCE = 0.025
COLUMNS = ["key", "iso_3166_2", "name", "admin", "adm0_a3", "iso_a2", "geometry"]
MISSING = {"", "-1", "-99"}  # Natural Earth's "no value"

#: Words that name the kind of region, not the region: "State of Odisha", "Murmanskaya
#: Oblast'", "Region de Magallanes" all match once these are gone.
GENERIC_WORDS = frozenset(
    # A word list reads best as text.
    """
    state states province provincia provinz region regione regiao county district governorate
    prefecture department departement departamento oblast oblasti kray krai respublika republic
    autonomous okrug municipality territory union national capital division parish emirate
    canton voivodeship atholhu atoll fylke laen lan islands island is of the
    """.split()  # noqa: SIM905
)


def normalise(text: str) -> str:
    """Case-, accent-, punctuation- and spacing-insensitive form of a name."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]+", " ", plain.casefold()).split())


def core(text: str) -> str:
    """A name without the words that only say what kind of region it is."""
    words = [w for w in normalise(text).split() if w not in GENERIC_WORDS]
    return " ".join(words)


def clean(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() not in MISSING else None


def iso_index(path: Path) -> dict[str, list[dict[str, str]]]:
    """ISO 3166-2 subdivisions by country code (alpha-2)."""
    entries = json.loads(path.read_text(encoding="utf-8"))["3166-2"]
    by_country: dict[str, list[dict[str, str]]] = defaultdict(list)
    for entry in entries:
        by_country[entry["code"].split("-", 1)[0]].append(entry)
    return by_country


def match_codes(table: gpd.GeoDataFrame, iso: dict[str, list[dict[str, str]]]) -> list[str | None]:
    """The ISO 3166-2 code of each row, or None when no code matches it alone.

    A row's names (``name``, ``woe_name``, ``gn_name``) are compared with the subdivisions
    of its country, first exactly (normalised), then without generic words. A code that
    would go to two rows goes to the one that matched exactly, else to neither: a wrong
    code is worse than none.
    """
    proposals: list[tuple[str, int] | None] = []
    for row in table.itertuples():
        entries = iso.get(clean(row.iso_a2) or "", [])
        names = [n for n in (clean(row.name), clean(row.woe_name), clean(row.gn_name)) if n]
        proposal = None
        for stage, form in enumerate((normalise, core)):
            table_forms: dict[str, set[str]] = defaultdict(set)
            for entry in entries:
                table_forms[form(entry["name"])].add(entry["code"])
            found = {c for n in names for c in table_forms.get(form(n), set()) if form(n)}
            if len(found) > 1:
                # A top-level subdivision beats a lower one of the same name.
                top = {c for c in found if not _has_parent(entries, c)}
                found = top if len(top) == 1 else found
            if len(found) == 1:
                proposal = (found.pop(), stage)
                break
        proposals.append(proposal)
    # Per code, the rows that matched it at its best stage; the code is theirs if only one.
    best: dict[str, list[int]] = defaultdict(list)
    for row_index, proposal in enumerate(proposals):
        if proposal is not None:
            best[proposal[0]].append(row_index)
    codes: list[str | None] = [None] * len(proposals)
    for code, rows in best.items():
        stage = min(proposals[r][1] for r in rows)  # type: ignore[index]
        winners = [r for r in rows if proposals[r][1] == stage]  # type: ignore[index]
        if len(winners) == 1:
            codes[winners[0]] = code
    return codes


def _has_parent(entries: list[dict[str, str]], code: str) -> bool:
    return any(e["code"] == code and "parent" in e for e in entries)


def slug(text: object) -> str:
    name = clean(text)
    return "-".join(normalise(name).split()) if name else "unnamed"


def keys(table: gpd.GeoDataFrame) -> list[str]:
    """``iso_3166_2`` where there is one, else ``<country>~<slug of name>``, made unique."""
    out: list[str] = []
    seen: set[str] = set()
    for row in table.itertuples():
        if isinstance(row.iso_3166_2, str):
            key = row.iso_3166_2
        else:
            key = f"{clean(row.iso_a2) or row.adm0_a3}~{slug(row.name)}"
        candidate, n = key, 1
        while candidate in seen:
            n += 1
            candidate = f"{key}-{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def polygonal(geometry: BaseGeometry) -> shapely.MultiPolygon:
    """The non-empty polygons of ``geometry`` once made valid, as one MultiPolygon."""
    parts = shapely.get_parts(shapely.get_parts(shapely.make_valid(geometry)))
    keep = (shapely.get_type_id(parts) == shapely.GeometryType.POLYGON) & ~shapely.is_empty(parts)
    return shapely.MultiPolygon(list(parts[keep]))


def simplify(geometries: np.ndarray, tolerance: float) -> np.ndarray:
    """Simplify the regions together, so shared borders stay shared; a region that would
    come out empty or invalid keeps its unsimplified shape."""
    if not shapely.coverage_is_valid(geometries):
        raise SystemExit("the source regions overlap; cannot simplify them as a coverage")
    simple = np.asarray(shapely.coverage_simplify(geometries, tolerance))
    bad = shapely.is_empty(simple) | ~shapely.is_valid(simple)
    simple[bad] = geometries[bad]
    return np.array([polygonal(g) for g in simple], dtype=object)


def build(source: Path, iso_codes: Path, tolerance: float) -> gpd.GeoDataFrame:
    raw = gpd.read_file(source, layer=LAYER, engine="pyogrio")
    if raw.crs is None or raw.crs.to_epsg() != 4326:
        raise SystemExit(f"{source}: expected EPSG:4326, got {raw.crs}")
    table = gpd.GeoDataFrame(
        {
            "name": [clean(v) for v in raw["name"]],
            "woe_name": [clean(v) for v in raw["woe_name"]],
            "gn_name": [clean(v) for v in raw["gn_name"]],
            "admin": raw["admin"],
            "adm0_a3": raw["adm0_a3"],
            "iso_a2": [clean(v) for v in raw["iso_a2"]],
        },
        geometry=[polygonal(g) for g in raw.geometry],
        crs="EPSG:4326",
    )
    table = table[~table.geometry.is_empty].reset_index(drop=True)
    table["geometry"] = simplify(np.asarray(table.geometry.values), tolerance)
    table["iso_3166_2"] = match_codes(table, iso_index(iso_codes))
    table = table.sort_values(["admin", "iso_3166_2", "name"], kind="stable", na_position="last")
    table = table.reset_index(drop=True)
    table["key"] = keys(table)
    out = table[COLUMNS].sort_values(["admin", "key"], kind="stable").reset_index(drop=True)
    return gpd.GeoDataFrame(out, geometry="geometry", crs="EPSG:4326")


def check(table: gpd.GeoDataFrame) -> None:
    geoms = table.geometry.values
    if not (shapely.is_valid(geoms).all() and not shapely.is_empty(geoms).any()):
        raise SystemExit("invalid or empty geometry in output")
    for column in ("key", "iso_3166_2"):
        values = table[column].dropna()
        duplicated = sorted(set(values[values.duplicated()]))
        if duplicated:
            raise SystemExit(f"duplicate {column} values: {duplicated[:10]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--source",
        type=Path,
        default=DEFAULT_SOURCE,
        metavar="PATH",
        help="QGIS world_map.gpkg (default: %(default)s, from Debian's qgis-common)",
    )
    parser.add_argument(
        "--iso-codes",
        type=Path,
        default=DEFAULT_ISO_CODES,
        metavar="PATH",
        help="iso_3166-2.json of Debian's iso-codes (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, metavar="PATH", help="default: %(default)s"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        metavar="DEG",
        help="coverage simplification tolerance in degrees (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.tolerance < 0:
        parser.error("--tolerance must be >= 0")
    for path in (args.source, args.iso_codes):
        if not path.is_file():
            parser.error(f"{path} does not exist (see this script's docstring)")

    table = build(args.source, args.iso_codes, args.tolerance)
    check(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, compression="zstd", index=False)

    vertices = int(np.sum(shapely.get_num_coordinates(table.geometry.values)))
    parts = len(shapely.get_parts(table.geometry.values))
    coded = int(table["iso_3166_2"].notna().sum())
    print(
        f"{args.out}: {len(table)} rows ({coded} with iso_3166_2), {parts} parts, "
        f"{vertices} vertices, {args.out.stat().st_size} bytes (tolerance {args.tolerance} deg)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
