"""One answer of ``geotag predict``: the top cells, a point, the nearest place, the error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry


@dataclass(frozen=True)
class CellGuess:
    cell_id: int
    probability: float
    lat: float
    lon: float


@dataclass(frozen=True)
class SimilarImage:
    """A training image retrieval leaned on, for ``predict --neighbours``."""

    path: str
    lat: float
    lon: float
    similarity: float  # cosine similarity of the embeddings (by its fold's model)
    km_from_answer: float
    fold: int


@dataclass(frozen=True)
class Doubt:
    """How sure a prediction is (geotag.doubt.answer): a region calibrated to hold the true
    cell with probability ``coverage``, and a confidence in [0, 1]."""

    region: BaseGeometry  # (Multi)Polygon in EPSG:4326, split at the antimeridian
    region_km2: float
    coverage: float
    confidence: float
    #: False when the confidence is below ``--min-confidence``: the answer is the region.
    sure: bool = True
    cells: tuple[int, ...] | None = None  # the region's cell ids (a grid run)
    truth_in_region: bool | None = None  # with EXIF GPS


@dataclass(frozen=True)
class Prediction:
    paths: tuple[str, ...]  # one photo, or every photo of a fused place
    top_k: tuple[CellGuess, ...]
    lat: float
    lon: float
    place: str | None
    country: str | None
    true_lat: float | None = None
    true_lon: float | None = None
    error_km: float | None = None
    neighbours: tuple[SimilarImage, ...] = ()
    doubt: Doubt | None = None

    @property
    def answered(self) -> bool:
        """Whether a point is answered (not "not sure")."""
        return self.doubt is None or self.doubt.sure

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "path": self.paths[0] if len(self.paths) == 1 else list(self.paths),
            "top_k": [
                {
                    "cell_id": g.cell_id,
                    "probability": round(g.probability, 6),
                    "lat": g.lat,
                    "lon": g.lon,
                }
                for g in self.top_k
            ],
            "lat": self.lat,
            "lon": self.lon,
            "place": self.place,
            "country": self.country,
        }
        if self.true_lat is not None:
            record.update(true_lat=self.true_lat, true_lon=self.true_lon, error_km=self.error_km)
        if self.doubt is not None:
            from geotag.doubt.regions import geojson

            d = self.doubt
            record.update(
                answer="point" if d.sure else "not sure",
                confidence=round(d.confidence, 6),
                coverage=d.coverage,
                region_km2=round(d.region_km2, 3),
                region=geojson(d.region),
            )
            if d.cells is not None:
                record["region_cells"] = list(d.cells)
            if d.truth_in_region is not None:
                record["truth_in_region"] = d.truth_in_region
            if not d.sure:  # the answer is the region: no point, so no place or error
                record.update(lat=None, lon=None, place=None, country=None)
                if "error_km" in record:
                    record["error_km"] = None
        if self.neighbours:
            record["neighbours"] = [
                {
                    "path": n.path,
                    "lat": n.lat,
                    "lon": n.lon,
                    "similarity": round(n.similarity, 6),
                    "km_from_answer": round(n.km_from_answer, 3),
                    "fold": n.fold,
                }
                for n in self.neighbours
            ]
        return record
