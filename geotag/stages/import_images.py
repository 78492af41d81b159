"""The ``import`` stage: photos that already have coordinates -> images/ + images.parquet.

SOURCE is a table (CSV or Parquet with ``path``, ``lat``, ``lon`` ...) or a folder of
photos whose EXIF GPS tags say where they were taken. Reading, decoding, labelling and
placing the images is :mod:`geotag.ingest`'s work; this module runs those steps in order,
reports progress, and merges the new rows into images.parquet (also on Ctrl-C, for the
images already in place).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geotag.errors import InputError
from geotag.progress import NullProgress, Progress
from geotag.workspace import Workspace

if TYPE_CHECKING:
    from geotag.ingest import Skipped


@dataclass(frozen=True)
class ImportResult:
    imported: int
    skipped: tuple[Skipped, ...]
    files: tuple[Path, ...]
    seconds: float
    linked: int = 0  # of ``imported``: hard links rather than copies
    converted: int = 0  # of ``imported``: re-encoded from PNG, TIFF ... to JPEG
    # Lines for the user that are not skips: what a folder walk left out (sidecars, hidden
    # files, counted), and animated images of which only the first frame was imported.
    notes: tuple[str, ...] = ()

    def by_reason(self) -> dict[str, tuple[Skipped, ...]]:
        """The skipped images under every reason of ingest.SKIP_REASONS, in source order."""
        from geotag.ingest import SKIP_REASONS

        return {r: tuple(s for s in self.skipped if s.reason == r) for r in SKIP_REASONS}


def run_import(
    workspace: Workspace,
    source: Path,
    *,
    link: bool = False,
    provider: str = "import",
    license: str | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import the photos ``source`` names into the workspace's images/ and images.parquet.

    ``link=True`` hard-links JPEGs instead of copying them (copying where the filesystem
    cannot link); a hard-linked image *is* the source file, so editing one edits both.
    Images that cannot be used are listed in the result, never half-imported.
    """
    import pandas as pd

    from geotag import ingest
    from geotag.dataset import IMAGE_COLUMNS, merge_images, read_images, write_images
    from geotag.geo.locate import CellLocator
    from geotag.gridfile import load_grid
    from geotag.images import FIRST_FRAME

    progress = progress or NullProgress()
    started = time.perf_counter()
    source = Path(source).expanduser()
    if not provider.strip():
        raise InputError("--provider must not be empty")
    kind = ingest.source_kind(source)
    grid = load_grid(workspace)
    progress.start(f"reading {source.name}", None)
    skipped: list[Skipped] = []
    notes: list[str] = []
    candidates = ingest.read_source(source, kind, workspace, skipped, notes)
    decoded = ingest.decode_all(candidates, progress)

    progress.start("locating cells", None)
    accepted = ingest.accept(candidates, decoded, CellLocator(grid), skipped)
    existing = read_images(workspace)  # a damaged images.parquet fails before any copy

    progress.start("linking images" if link else "copying images", len(accepted))
    ingest.remove_stale_temporaries(workspace.images_dir)
    rows: list[dict[str, Any]] = []
    linked = converted = 0
    try:
        for item in accepted:
            relpath = ingest.target_relpath(item)
            try:
                how = ingest.place(item, workspace.root / relpath, link)
            except ingest.ConversionError as exc:
                skipped.append(ingest.Skipped(item.candidate.label, ingest.UNREADABLE, str(exc)))
                progress.advance()
                continue
            linked += how == "linked"
            converted += how == "converted"
            if item.decoded.animated:
                notes.append(f"{item.candidate.label}: {FIRST_FRAME}")
            rows.append(ingest.row(item, relpath, provider, license))
            progress.advance()
    finally:
        # Also on Ctrl-C: the rows of every image already in place are kept.
        if rows:
            progress.start("writing images.parquet", None)
            new = pd.DataFrame(rows, columns=list(IMAGE_COLUMNS))
            write_images(workspace, merge_images(existing, new))
    workspace.record(
        "import",
        {
            "source": source.resolve(),
            "count": len(rows),
            "link": link,
            "provider": provider,
            "license": license,
            "grid_id": workspace.stage_settings("grid").get("grid_id"),
        },
    )
    return ImportResult(
        imported=len(rows),
        skipped=tuple(skipped),
        files=(workspace.images_parquet, workspace.settings_path),
        seconds=time.perf_counter() - started,
        linked=linked,
        converted=converted,
        notes=tuple(notes),
    )
