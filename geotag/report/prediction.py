"""A map of one prediction: the top cells shaded by probability, the point, the truth, and
the region calibrated to hold the true cell."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from geotag.atomic import atomic_path

if TYPE_CHECKING:
    import geopandas as gpd
    from shapely.geometry.base import BaseGeometry

    from geotag.evaluate.prediction import Prediction


def plot_prediction(
    cells: gpd.GeoDataFrame,
    region: gpd.GeoDataFrame | None,
    prediction: Prediction,
    path: Path,
    doubt_region: BaseGeometry | None = None,
) -> Path:
    """Draw in longitude/latitude: the region outline, every cell faintly, the top-k cells
    in blues by probability, the prediction region (orange outline, EPSG:4326), the
    predicted point (star; none when the answer is "not sure") and the EXIF location."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    figure, axes = plt.subplots(figsize=(7, 7), dpi=110)
    if region is not None:
        region.boundary.plot(ax=axes, color="black", linewidth=0.8)
    cells.boundary.plot(ax=axes, color="0.8", linewidth=0.4)
    probability = {g.cell_id: g.probability for g in prediction.top_k}
    top = cells[cells["cell_id"].isin(list(probability))]
    norm = Normalize(0.0, max(probability.values()) or 1.0)
    colours = [colormaps["Blues"](0.25 + 0.75 * norm(probability[c])) for c in top["cell_id"]]
    if len(top):
        top.plot(ax=axes, color=colours, edgecolor="navy", linewidth=0.6)
    for guess in prediction.top_k:
        axes.annotate(f"{guess.probability:.0%}", (guess.lon, guess.lat), ha="center", fontsize=7)
    doubt = prediction.doubt
    if doubt_region is not None and not doubt_region.is_empty and doubt is not None:
        import geopandas as gpd

        gpd.GeoSeries([doubt_region], crs="EPSG:4326").boundary.plot(
            ax=axes, color="darkorange", linewidth=2.0,
            label=f"{doubt.coverage:.0%} region ({doubt.region_km2:,.0f} km²)",
        )  # fmt: skip
    if prediction.answered:
        axes.plot(prediction.lon, prediction.lat, marker="*", color="crimson", markersize=16,
                  markeredgecolor="white", label="predicted", linestyle="none")  # fmt: skip
    if prediction.true_lat is not None and prediction.true_lon is not None:
        axes.plot(prediction.true_lon, prediction.true_lat, marker="X", color="black",
                  markersize=11, label=f"EXIF GPS ({prediction.error_km:,.0f} km off)",
                  linestyle="none")  # fmt: skip
    name = Path(prediction.paths[0]).name if len(prediction.paths) == 1 else "fused views"
    place = ", ".join(p for p in (prediction.place, prediction.country) if p)
    title = f"{name}: near {place}" if place and prediction.answered else name
    if doubt is not None:
        title += f"\nconfidence {doubt.confidence:.2f}" + ("" if doubt.sure else ": not sure")
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("longitude")
    axes.set_ylabel("latitude")
    axes.set_aspect("equal", adjustable="datalim")
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp)
    plt.close(figure)
    return path
