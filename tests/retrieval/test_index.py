from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from geotag.errors import DataError, InputError
from geotag.retrieval.index import EMBEDDINGS_FILE, ENTRIES_FILE, LocationIndex


def _inputs(n: int = 40, d: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "features": (rng.standard_normal((n, d)) * rng.uniform(0.1, 50, (n, 1))).astype(np.float32),
        "lat": rng.uniform(-60, 60, n),
        "lon": rng.uniform(-180, 180, n),
        "cell": rng.integers(0, 5, n),
        "group": [f"pano-{i // 4}" for i in range(n)],
        "path": [f"images/{i % 5}/pano-{i // 4}_{90 * (i % 4)}.jpg" for i in range(n)],
    }


def _built(**kw: object) -> LocationIndex:
    inputs = _inputs()
    fuse = bool(kw.pop("fuse", False))
    inputs.update(kw)
    return LocationIndex.build(**inputs, fuse=fuse)


def test_build_normalises_every_row() -> None:
    inputs = _inputs()
    index = LocationIndex.build(**inputs, fuse=False)
    assert index.embeddings.dtype == np.float16 and index.embeddings.shape == (40, 8)
    norms = np.linalg.norm(index.embeddings.astype(np.float32), axis=1)
    assert np.abs(norms - 1).max() < 2e-3
    expected = inputs["features"] / np.linalg.norm(inputs["features"], axis=1, keepdims=True)
    assert np.allclose(index.embeddings, expected, atol=1e-3)
    assert len(index) == 40
    assert index.cell.dtype == np.int64 and index.lat.dtype == np.float64
    assert index.path[5] == inputs["path"][5]


def test_save_and_load_round_trip_bit_exactly(tmp_path: Path) -> None:
    index = _built()
    index.save(tmp_path / "fold-0")
    back = LocationIndex.load(tmp_path / "fold-0")
    assert back is not None
    assert back.embeddings.dtype == np.float16
    assert back.embeddings.tobytes() == index.embeddings.tobytes()
    for name in ("lat", "lon", "cell"):
        assert getattr(back, name).tobytes() == getattr(index, name).tobytes()
    assert back.group == index.group and back.path == index.path
    # Only the two files, no temporaries left behind.
    assert sorted(p.name for p in (tmp_path / "fold-0").iterdir()) == [
        ENTRIES_FILE,
        EMBEDDINGS_FILE,
    ]


def test_saving_again_replaces_the_index(tmp_path: Path) -> None:
    _built().save(tmp_path)
    smaller = LocationIndex.build(**_inputs(n=12, seed=3), fuse=False)
    smaller.save(tmp_path)
    back = LocationIndex.load(tmp_path)
    assert back is not None and len(back) == 12 and back.path == smaller.path


def test_load_returns_none_for_a_folder_without_an_index(tmp_path: Path) -> None:
    assert LocationIndex.load(tmp_path) is None
    assert LocationIndex.load(tmp_path / "not-there") is None


def _rewrite(folder: Path, **changes: np.ndarray) -> None:
    """Rewrite index.safetensors with some tensors changed, keeping its metadata."""
    from safetensors import safe_open

    source = folder / EMBEDDINGS_FILE
    with safe_open(str(source), framework="numpy") as f:
        metadata = f.metadata()
    tensors = {**load_file(str(source)), **changes}
    save_file(tensors, str(source), metadata=metadata)


def _damage_truncate(folder: Path) -> None:
    data = (folder / EMBEDDINGS_FILE).read_bytes()
    (folder / EMBEDDINGS_FILE).write_bytes(data[: len(data) // 2])


def _damage_garbage(folder: Path) -> None:
    (folder / EMBEDDINGS_FILE).write_bytes(b"not a safetensors file at all")


def _damage_norms(folder: Path) -> None:
    emb = load_file(str(folder / EMBEDDINGS_FILE))["embeddings"]
    emb[3] *= 2
    _rewrite(folder, embeddings=emb)


def _damage_coords(folder: Path) -> None:
    lat = load_file(str(folder / EMBEDDINGS_FILE))["lat"]
    lat[7] = np.nan
    _rewrite(folder, lat=lat)


def _damage_shapes(folder: Path) -> None:
    cell = load_file(str(folder / EMBEDDINGS_FILE))["cell"]
    _rewrite(folder, cell=cell[:-1])


def _damage_dtype(folder: Path) -> None:
    emb = load_file(str(folder / EMBEDDINGS_FILE))["embeddings"]
    _rewrite(folder, embeddings=emb.astype(np.float32))


def _damage_parquet_missing(folder: Path) -> None:
    (folder / ENTRIES_FILE).unlink()


def _damage_parquet_from_another_save(folder: Path) -> None:
    # A save interrupted between its two files: the new parquet beside the old safetensors.
    other = folder / "other"
    inputs = _inputs(seed=9)
    inputs["path"] = [f"elsewhere/{p}" for p in inputs["path"]]
    LocationIndex.build(**inputs, fuse=False).save(other)
    (other / ENTRIES_FILE).replace(folder / ENTRIES_FILE)


def _damage_parquet_rows(folder: Path) -> None:
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors import safe_open

    pq.write_table(pa.table({"group": ["a"], "path": ["b"]}), folder / ENTRIES_FILE)
    with safe_open(str(folder / EMBEDDINGS_FILE), framework="numpy") as f:
        metadata = dict(f.metadata())
    # A consistent checksum, so the row count is what is caught.
    metadata["entries_sha256"] = hashlib.sha256((folder / ENTRIES_FILE).read_bytes()).hexdigest()
    save_file(load_file(str(folder / EMBEDDINGS_FILE)), str(folder / EMBEDDINGS_FILE), metadata)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (_damage_truncate, "cannot read retrieval index"),
        (_damage_garbage, "cannot read retrieval index"),
        (_damage_norms, "embedding 3 has norm 2, not 1"),
        (_damage_coords, "entry 7 has no valid location"),
        (_damage_shapes, "shapes disagree"),
        (_damage_dtype, "embeddings must be a 2-d float16 array; got float32"),
        (_damage_parquet_missing, "index.parquet is missing"),
        (_damage_parquet_from_another_save, "index.parquet was not written with it"),
        (_damage_parquet_rows, "index.parquet has 1 rows for 40 embeddings"),
    ],
)
def test_load_refuses_a_damaged_index_in_one_line(tmp_path, damage, says) -> None:  # type: ignore[no-untyped-def]
    _built().save(tmp_path)
    damage(tmp_path)
    with pytest.raises(DataError) as caught:
        LocationIndex.load(tmp_path)
    message = str(caught.value)
    assert says in message
    assert str(tmp_path / EMBEDDINGS_FILE) in message
    assert "\n" not in message


def test_fuse_gives_one_entry_per_group() -> None:
    rng = np.random.default_rng(1)
    features = rng.standard_normal((7, 6)).astype(np.float32)
    group = ["b", "a", "b", "c", "a", "b", "a"]
    lat = np.array([10.0, 0.0, 10.0, 5.0, 0.0, 12.0, 0.0])
    lon = np.array([179.5, 0.0, -179.5, 5.0, 2.0, 180.0, 1.0])
    cell = np.array([7, 3, 9, 4, 3, 9, 1])
    path = [f"p{i}.jpg" for i in range(7)]
    index = LocationIndex.build(features, lat, lon, cell, group, path, fuse=True)

    assert index.group == ("b", "a", "c")  # order of each group's first image
    assert index.path == ("p0.jpg", "p1.jpg", "p3.jpg")
    assert index.cell.tolist() == [9, 3, 4]  # b: 9 twice, a: 3 twice
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    for row, members in enumerate(([0, 2, 5], [1, 4, 6], [3])):
        mean = unit[members].sum(axis=0)
        assert np.allclose(index.embeddings[row], mean / np.linalg.norm(mean), atol=1e-3)
    assert abs(index.lon[0]) == pytest.approx(180.0, abs=0.01)  # across the antimeridian
    assert index.lat[0] == pytest.approx(10.67, abs=0.01)
    assert (index.lat[2], index.lon[2]) == (5.0, 5.0)


def test_fuse_breaks_a_cell_tie_to_the_smallest_id() -> None:
    index = _built(
        features=np.eye(2, 4, dtype=np.float32) + 0.1,
        lat=[0.0, 0.0],
        lon=[0.0, 0.0],
        cell=[8, 2],
        group=["g", "g"],
        path=["x", "y"],
        fuse=True,
    )
    assert index.cell.tolist() == [2] and index.path == ("x",)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"lat": np.zeros(39)}, "lat must have one value per feature row (40); got (39,)"),
        ({"group": ["g"] * 41}, "group must have one value per feature row (40); got 41"),
        ({"cell": np.zeros(40)}, "cell must be integer ids; got float64"),
        ({"lon": np.full(40, 181.0)}, "entry 0 has no valid location"),
        ({"features": np.zeros((0, 8), np.float32)}, "at least one row"),
        ({"path": [None] * 40}, "path of entry 0 is not a string"),
    ],
)
def test_build_refuses_bad_input(change: dict, says: str) -> None:
    with pytest.raises(InputError) as caught:
        _built(**change)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_build_refuses_vectors_without_a_direction() -> None:
    features = _inputs()["features"]
    features[5] = 0
    with pytest.raises(InputError, match=r"entry 5 \(.*pano-1_90.jpg\) is all zeros"):
        _built(features=features)
    features[5] = 1
    features[6, 2] = np.nan
    with pytest.raises(InputError, match=r"entry 6 .* is not finite"):
        _built(features=features)


def test_fuse_refuses_a_group_that_cancels_out() -> None:
    features = np.array([[1, 0], [-1, 0]], dtype=np.float32)
    with pytest.raises(InputError, match="group g cancel out"):
        _built(
            features=features, lat=[0, 0], lon=[0, 0], cell=[1, 1], group=["g", "g"],
            path=["a", "b"], fuse=True,
        )  # fmt: skip


def test_a_hand_made_index_is_checked() -> None:
    with pytest.raises(InputError, match="embeddings must be a 2-d float16 array"):
        LocationIndex(
            np.zeros((2, 3)),
            np.zeros(2),
            np.zeros(2),
            np.zeros(2, np.int64),
            ("a", "a"),
            ("b", "b"),
        )


def test_metadata_says_what_the_file_is(tmp_path: Path) -> None:
    from safetensors import safe_open

    _built().save(tmp_path)
    with safe_open(str(tmp_path / EMBEDDINGS_FILE), framework="numpy") as f:
        metadata = f.metadata()
    assert metadata["format"] == "geotag-location-index/1" and metadata["rows"] == "40"
    json.dumps(metadata)
