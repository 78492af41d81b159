"""One answer of ``geotag predict``: the top cells, a point, the nearest place, the error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
