"""``images.parquet``: the dataset every later stage reads, written by scrape and import.

One row per image file. ``path`` is relative to the workspace; ``group`` ties together the
images of one panorama or place, so cross-validation never splits them; ``cell_id`` is
the cell of the image's true location.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geotag.atomic import atomic_path
from geotag.errors import DataError
from geotag.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd

#: Column -> pandas dtype. Missing text is null, never an empty string.
IMAGE_COLUMNS: dict[str, str] = {
    "path": "string",
    "pano_id": "string",
    "group": "string",
    "lat": "float64",
    "lon": "float64",
    "heading": "float64",
    "cell_id": "int64",
    "captured": "string",
    "copyright": "string",
    "provider": "string",
    "license": "string",
}


def empty_images() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in IMAGE_COLUMNS.items()})


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with exactly the image columns, in order and with their dtypes."""
    missing = [c for c in IMAGE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"image table lacks column(s) {', '.join(missing)}")
    return frame[list(IMAGE_COLUMNS)].astype(IMAGE_COLUMNS).reset_index(drop=True)


def image_groups(frame: pd.DataFrame) -> pd.Series:
    """Each image's group as text: its ``group``, else its panorama, else its own path."""
    return frame["group"].fillna(frame["pano_id"]).fillna(frame["path"]).astype(str)


#: The column :func:`group_views` adds: each sample's group, as text.
GROUP = "_group"


def group_views(frame: pd.DataFrame, views: int) -> tuple[list[tuple[str, ...]], pd.DataFrame]:
    """Samples as a run sees them, and one row of ``frame`` per sample.

    With ``views == 1`` every image is a sample, in ``frame``'s order. With more, every
    place (:func:`image_groups`) is one, in group order: its first ``views`` images by
    heading then path, repeated when the place has fewer; its row is that first image's.
    The rows carry their group in column :data:`GROUP`.
    """
    frame = frame.assign(**{GROUP: image_groups(frame).to_numpy()})
    if views == 1:
        return [(str(p),) for p in frame["path"]], frame.reset_index(drop=True)
    ordered = frame.sort_values([GROUP, "heading", "path"])
    samples: list[tuple[str, ...]] = []
    for _, rows in ordered.groupby(GROUP, sort=True):
        paths = [str(p) for p in rows["path"]]
        samples.append(tuple(paths[i % len(paths)] for i in range(views)))
    firsts = ordered.groupby(GROUP, sort=True).head(1).reset_index(drop=True)
    return samples, firsts


def read_images(workspace: Workspace) -> pd.DataFrame:
    """The workspace's images.parquet, or an empty table when there is none yet."""
    import pandas as pd

    if not workspace.images_parquet.exists():
        return empty_images()
    try:
        return conform(pd.read_parquet(workspace.images_parquet))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {workspace.images_parquet}: {exc}") from None


def write_images(workspace: Workspace, frame: pd.DataFrame) -> None:
    """Replace images.parquet atomically, rows sorted by path for stable files."""
    table = conform(frame).sort_values("path", kind="stable").reset_index(drop=True)
    with atomic_path(workspace.images_parquet) as tmp:
        table.to_parquet(tmp, index=False, compression="zstd")


def merge_images(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Rows of both; for a path present in both, the new row wins."""
    import pandas as pd

    combined = pd.concat([conform(old), conform(new)], ignore_index=True)
    return combined.drop_duplicates("path", keep="last").reset_index(drop=True)
