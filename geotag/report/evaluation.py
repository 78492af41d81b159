"""The plots of ``geotag eval``: confusion matrix, per-cell accuracy map, distance curve.

Every plot is written atomically and labelled with real cell ids, never class indices.
The accuracy map is drawn in the grid's equal-area plane, like ``grid.png``
(:mod:`geotag.report.maps`), so the two can be laid side by side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geotag.atomic import atomic_path
from geotag.errors import InputError
from geotag.evaluate.metrics import THRESHOLDS_KM
from geotag.report.maps import boundary_lines, frame_plane

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd
    from matplotlib.figure import Figure

    from geotag.geo.projection import EqualAreaProjection

#: Up to this many classes every tick carries its cell id; above it every k-th does.
MAX_TICK_LABELS = 80
#: Up to this many classes each square of the confusion matrix shows its percentage.
MAX_ANNOTATED_CLASSES = 20
#: The standard radii marked on the distance curve (km): the literature's.
CURVE_MARKERS_KM = THRESHOLDS_KM

ACCURACY_MAP_VALUES = {
    # value column -> (colour bar label, colour map): bright is good in both.
    "accuracy": ("top-1 accuracy of the cell's images", "viridis"),
    "median_km": ("median error of the cell's images (km)", "viridis_r"),
}
NO_DATA_FILL = "#d9d9d9"
NO_DATA_EDGE = "#8c8c8c"
OUTLINE = "#222222"


# -- confusion matrix -------------------------------------------------------------------


def plot_confusion(
    matrix: Any,
    cell_ids: Sequence[int] | np.ndarray,
    path_png: Path,
    path_csv: Path,
    title: str | None = None,
) -> tuple[Path, Path]:
    """Write the confusion matrix as a row-normalised PNG and a CSV of raw counts.

    ``matrix[i, j]`` counts images of class i predicted as class j; ``cell_ids[i]`` is
    class i's real cell id, and both files are labelled with those ids. In the CSV rows
    are the true cell and columns the predicted cell (first header:
    ``true_cell/pred_cell``). In the PNG each row is the share of that true cell's
    images; rows of cells without images are grey. Above :data:`MAX_TICK_LABELS` classes
    only every k-th tick is labelled, still with its real id.
    """
    import pandas as pd

    counts, ids = _check_confusion(matrix, cell_ids)
    frame = pd.DataFrame(counts, index=pd.Index(ids, name="true_cell/pred_cell"), columns=ids)
    with atomic_path(Path(path_csv)) as tmp:
        frame.to_csv(tmp)

    k = len(ids)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    no_images = np.broadcast_to(totals == 0, counts.shape)

    plt = _pyplot()
    side = float(np.clip(4.0 + 0.08 * k, 6.0, 30.0))
    fig, ax = plt.subplots(figsize=(side + 1.5, side), dpi=100)
    try:
        import matplotlib

        cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#ececec")
        image = ax.imshow(
            np.ma.masked_array(share, mask=no_images),
            cmap=cmap,
            vmin=0.0,
            vmax=1.0,
            interpolation="nearest",
            aspect="equal",
        )
        positions, labels = confusion_ticks(ids)
        font = _tick_font(side, len(positions))
        ax.set_xticks(positions, labels, rotation=90, fontsize=font)
        ax.set_yticks(positions, labels, fontsize=font)
        if k <= MAX_ANNOTATED_CLASSES:
            for i, j in zip(*np.nonzero(counts), strict=True):
                ax.text(
                    j,
                    i,
                    f"{share[i, j]:.0%}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if share[i, j] > 0.5 else "#1b2a3a",
                )
        text = float(np.clip(0.9 * side, 10.0, 22.0))  # titles grow with the figure
        ax.set_xlabel("predicted cell", fontsize=text)
        ax.set_ylabel("true cell", fontsize=text)
        step = 1 if len(positions) == k else positions[1] - positions[0]
        every = "" if step == 1 else f"; one cell id in {step} labelled"
        ax.set_title(
            title
            or f"Confusion matrix: {k} cells, {int(counts.sum()):,} images "
            f"(rows normalised to the true cell{every})",
            fontsize=text,
        )
        # A colour bar about half an inch wide, whatever the figure's size.
        bar = fig.colorbar(image, ax=ax, fraction=0.046 * min(1.0, 10.0 / side), pad=0.02)
        bar.set_label("share of the true cell's images", fontsize=text)
        bar.ax.tick_params(labelsize=0.8 * text)
        fig.tight_layout()
        _save(fig, Path(path_png))
    finally:
        plt.close(fig)
    return Path(path_png), Path(path_csv)


def confusion_ticks(cell_ids: Sequence[int] | np.ndarray) -> tuple[list[int], list[str]]:
    """Tick positions (class indices) and their labels (the real cell ids): every class
    up to :data:`MAX_TICK_LABELS`, else every k-th so that at most that many show."""
    k = len(cell_ids)
    step = 1 if k <= MAX_TICK_LABELS else math.ceil(k / MAX_TICK_LABELS)
    positions = list(range(0, k, step))
    return positions, [str(int(cell_ids[i])) for i in positions]


def _tick_font(side_in: float, n_labels: int) -> float:
    room_pt = 0.75 * side_in * 72 / max(n_labels, 1)
    return float(np.clip(0.8 * room_pt, 4.0, 12.0))


def _check_confusion(matrix: Any, cell_ids: Any) -> tuple[np.ndarray, list[int]]:
    counts = np.asarray(matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise InputError(f"a confusion matrix must be square and non-empty; got {counts.shape}")
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise InputError("a confusion matrix holds non-negative counts")
    ids = [int(c) for c in np.asarray(cell_ids).ravel()]
    if len(ids) != counts.shape[0]:
        raise InputError(f"{len(ids)} cell ids for a {counts.shape[0]}-class confusion matrix")
    if len(set(ids)) != len(ids):
        raise InputError("the confusion matrix's cell ids repeat")
    return counts, ids


# -- accuracy map -----------------------------------------------------------------------


def plot_accuracy_map(
    cells: gpd.GeoDataFrame,
    region: gpd.GeoDataFrame | BaseGeometry | None,
    per_cell: pd.DataFrame,
    path: Path,
    value: str = "accuracy",
    *,
    projection: EqualAreaProjection | None = None,
    title: str | None = None,
) -> Path:
    """Write a map of the cells coloured by ``per_cell[value]`` over the region outline.

    ``cells`` is grid.parquet (``cell_id``, geometry in EPSG:4326), ``region`` is
    region.parquet or its geometry (None: no outline), ``per_cell`` has ``cell_id``,
    ``n`` and ``value`` (``"accuracy"`` or ``"median_km"``; see
    ``metrics.per_cell_table``). Cells with no evaluated image are grey and hatched.
    The plane is ``projection`` (pass ``Grid.projection`` to match grid.png exactly);
    by default one centred on the region, as the grid stage centres it.
    """
    if value not in ACCURACY_MAP_VALUES:
        raise InputError(
            f"unknown map value {value!r}; choose one of {', '.join(ACCURACY_MAP_VALUES)}"
        )
    missing = {"cell_id", "n", value} - set(per_cell.columns)
    if missing:
        raise InputError(f"the per-cell table lacks column(s) {', '.join(sorted(missing))}")
    if "cell_id" not in cells.columns:
        raise InputError("the grid cells have no cell_id column")

    from geotag.geo.grid import cells_in_plane, projected_region
    from geotag.geo.projection import EqualAreaProjection
    from geotag.geo.regions import polygon_center

    if cells.crs is not None and not cells.crs.equals("EPSG:4326"):
        cells = cells.to_crs("EPSG:4326")
    cells_lonlat = np.asarray(cells.geometry.values)
    region_lonlat = None if region is None else _region_geometry(region)
    if projection is None:
        centred_on = region_lonlat
        if centred_on is None:  # the cells' own centre, without a costly union
            centred_on = shapely.GeometryCollection(list(shapely.get_parts(cells_lonlat)))
        projection = EqualAreaProjection.centred_on(*polygon_center(centred_on))
    region_xy = None if region_lonlat is None else projected_region(region_lonlat, projection)
    cells_xy = cells_in_plane(cells_lonlat, projection)

    ids = cells["cell_id"].to_numpy()
    table = per_cell.drop_duplicates("cell_id").set_index("cell_id")
    unknown = sorted(set(table.index.astype(int)) - set(ids.astype(int)))
    if unknown:
        raise InputError(
            f"the per-cell table names cell(s) {unknown[:5]} that the grid lacks; "
            "was the grid remade after training?"
        )
    values = table[value].reindex(ids).to_numpy(dtype=float)
    counts = table["n"].reindex(ids).fillna(0).to_numpy(dtype=float)
    has_data = (counts > 0) & np.isfinite(values)

    label, cmap_name = ACCURACY_MAP_VALUES[value]
    plt = _pyplot()
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    if value == "accuracy":
        norm = Normalize(0.0, 1.0)
    else:  # errors have long tails: the 95th percentile keeps the rest of the map readable
        top = float(np.percentile(values[has_data], 95)) if has_data.any() else 1.0
        norm = Normalize(0.0, max(top, 1e-6))

    km = 1000.0
    fig, ax = plt.subplots(figsize=(11, 10), dpi=120)
    try:
        rings, owner = _rings_km(cells_xy, km)
        with_data = has_data[owner]
        filled = PolyCollection(
            [r for r, keep in zip(rings, with_data, strict=True) if keep],
            array=values[owner][with_data],
            cmap=cmap_name,
            norm=norm,
            edgecolors="#ffffff",
            linewidths=0.3,
        )
        ax.add_collection(filled)
        empty = [r for r, keep in zip(rings, with_data, strict=True) if not keep]
        if empty:
            ax.add_collection(
                PolyCollection(
                    empty,
                    facecolors=NO_DATA_FILL,
                    edgecolors=NO_DATA_EDGE,
                    hatch="////",
                    linewidths=0.3,
                )
            )
        if region_xy is not None:
            outline = [np.asarray(line.coords) / km for line in boundary_lines(region_xy)]
            ax.add_collection(LineCollection(outline, colors=OUTLINE, linewidths=0.9))

        clipped = value == "median_km" and bool((values[has_data] > norm.vmax).any())
        extend = "max" if clipped else "neither"
        # A colour bar as tall as the map, whatever the region's aspect ratio.
        cax = make_axes_locatable(ax).append_axes("right", size="3%", pad=0.15)
        fig.colorbar(filled, cax=cax, label=label, extend=extend)
        if empty:
            n_empty = int((~has_data).sum())
            swatch = Patch(
                facecolor=NO_DATA_FILL,
                edgecolor=NO_DATA_EDGE,
                hatch="////",
                label=f"no evaluated image ({n_empty} cell{'s' if n_empty != 1 else ''})",
            )
            ax.legend(handles=[swatch], loc="lower left", fontsize=9)
        shown = cells_xy if region_xy is None else np.append(cells_xy, region_xy)
        frame_plane(ax, shown, km)
        n_with = int(has_data.sum())
        what = "Top-1 accuracy" if value == "accuracy" else "Median error"
        ax.set_title(
            title or f"{what} per cell: {n_with} of {len(ids)} cells have evaluated images"
        )
        fig.tight_layout()
        _save(fig, Path(path))
    finally:
        plt.close(fig)
    return Path(path)


def _region_geometry(region: Any) -> BaseGeometry:
    if isinstance(region, BaseGeometry):
        return region
    geometry = getattr(region, "geometry", None)
    if geometry is None:
        raise InputError("the region must be a GeoDataFrame or a shapely geometry")
    crs = getattr(region, "crs", None)
    if crs is not None and not crs.equals("EPSG:4326"):
        geometry = region.to_crs("EPSG:4326").geometry
    merged = shapely.union_all(np.asarray(geometry.values))
    if merged.is_empty:
        raise InputError("the region is empty")
    return merged


def _rings_km(polygons: np.ndarray, km: float) -> tuple[list[np.ndarray], np.ndarray]:
    parts, owner = shapely.get_parts(polygons, return_index=True)
    rings = [np.asarray(r.coords) / km for r in shapely.get_exterior_ring(parts)]
    return rings, owner


# -- distance curve ---------------------------------------------------------------------

#: ``(thresholds_km, shares)``, or just ``shares`` over ``metrics.CURVE_KM``.
Curve = Any


def plot_distance_curve(
    curves: Mapping[str, Curve],
    path: Path,
    markers: Sequence[float] = CURVE_MARKERS_KM,
    *,
    folds: Mapping[str, Sequence[Curve]] | None = None,
    title: str | None = None,
) -> Path:
    """Write the share of images within d km against d (log axis), one line per curve.

    ``curves`` maps a name (e.g. a predictor) to ``(thresholds_km, shares)``, or to the
    bare ``shares`` of ``metrics.distance_curve`` at its default thresholds; ``folds``
    optionally maps the same names to one such curve per fold, drawn faint in the curve's
    colour. ``markers`` are dashed lines, with a dot where each curve crosses them.
    """
    if not curves:
        raise InputError("there is no distance curve to plot")
    checked = {name: _check_curve(name, curve) for name, curve in curves.items()}
    fold_curves = {
        name: [_check_curve(f"{name} fold {i}", c) for i, c in enumerate(items)]
        for name, items in (folds or {}).items()
    }
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, NullLocator, PercentFormatter

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    try:
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        x_min = min(float(d[0]) for d, _ in checked.values())
        x_max = max(float(d[-1]) for d, _ in checked.values())
        for i, (name, (d, share)) in enumerate(checked.items()):
            colour = colours[i % len(colours)]
            for fd, fs in fold_curves.get(name, []):
                ax.plot(fd, fs, color=colour, linewidth=0.8, alpha=0.35)
            ax.plot(d, share, color=colour, linewidth=2.0, label=name)
            inside = [m for m in markers if d[0] <= m <= d[-1]]
            if inside:
                ax.plot(
                    inside,
                    np.interp(np.log(inside), np.log(d), share),
                    "o",
                    color=colour,
                    markersize=4,
                )
        shown = [m for m in markers if x_min <= m <= x_max]
        for m in shown:
            ax.axvline(m, color="#888888", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlim(x_min, x_max)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        # The marker radii are named along the top edge, clear of the curves.
        top = ax.secondary_xaxis("top")
        top.set_xticks(shown, [f"{m:,g} km" for m in shown], fontsize=8, color="#555555")
        top.xaxis.set_minor_locator(NullLocator())
        ax.set_ylim(0.0, 1.0)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel("distance from the true location, d (km)")
        ax.set_ylabel("share of images within d")
        ax.set_title(title or "Share of images located within d km")
        ax.grid(alpha=0.25, which="both")
        ax.legend(loc="lower right")
        fig.tight_layout()
        _save(fig, Path(path))
    finally:
        plt.close(fig)
    return Path(path)


def _check_curve(name: str, curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(curve, np.ndarray) and curve.ndim == 1:
        from geotag.evaluate.metrics import CURVE_KM

        thresholds, shares = CURVE_KM, curve
    else:
        try:
            thresholds, shares = curve
        except (TypeError, ValueError):
            raise InputError(
                f"curve {name!r} must be shares or a (thresholds, shares) pair"
            ) from None
    d = np.asarray(thresholds, dtype=float)
    s = np.asarray(shares, dtype=float)
    if d.ndim != 1 or d.shape != s.shape or len(d) < 2:
        raise InputError(f"curve {name!r} needs at least two thresholds, one share each")
    if not (np.isfinite(d).all() and (d > 0).all() and (np.diff(d) > 0).all()):
        raise InputError(f"curve {name!r} needs positive, increasing thresholds")
    if not (np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()):
        raise InputError(f"curve {name!r} has a share outside [0, 1]")
    return d, s


# -- shared -----------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
