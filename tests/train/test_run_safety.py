"""A run on disk is whole or absent: a failed train leaves none behind, and a config.json
with a value no run can have is refused with one line naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from geotag.cli import app
from geotag.errors import GeotagError, InputError
from geotag.stages.train import TrainOptions, run_train
from geotag.train.runs import INCOMPLETE, open_run
from geotag.workspace import Workspace
from tests.conftest import snapshot

TINY = TrainOptions(
    model="resnet10t", pretrained=False, image_size=32, epochs=1, batch_size=32, lr=2e-3,
    folds=5, workers=0, device="cpu",
)  # fmt: skip


# -- a failed train leaves the workspace as it was ---------------------------------------
def test_a_train_failing_late_leaves_no_run_and_no_latest(
    train_ws: Workspace, tmp_path: Path
) -> None:
    # The weights file is read only when the fold's model is built: after the run's
    # folder, config.json and folds.csv were written.
    weights = tmp_path / "not-safetensors.safetensors"
    weights.write_bytes(b"\x00" * 64)
    before = snapshot(train_ws.root)
    with pytest.raises(GeotagError, match=r"not-safetensors\.safetensors"):
        run_train(train_ws, replace(TINY, name="w", weights=weights))
    assert snapshot(train_ws.root) == before  # geotag.toml included
    assert not train_ws.runs_dir.exists()
    with pytest.raises(InputError, match="no trained run"):
        open_run(train_ws)


def test_a_failed_train_keeps_the_earlier_run_as_the_latest(
    trained_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geotag.train import model

    def hub_unreachable(name: str, kwargs: dict[str, Any]) -> None:
        raise InputError(
            f"cannot download pretrained weights for {name!r} (hub unreachable); "
            "pass --no-pretrained or --weights"
        )

    monkeypatch.setattr(model, "_create_pretrained", hub_unreachable)
    before = snapshot(trained_ws.root)
    with pytest.raises(InputError, match="hub unreachable"):
        run_train(trained_ws, replace(TINY, name="later", pretrained=True))
    assert snapshot(trained_ws.root) == before
    assert sorted(p.name for p in trained_ws.runs_dir.iterdir()) == ["tiny"]
    assert open_run(trained_ws).name == "tiny"


KILL_IN_FIRST_EPOCH = """
import os, sys
from geotag.stages.train import TrainOptions, run_train
from geotag.workspace import Workspace

class KillInFirstEpoch:
    def start(self, task, total):
        self.task = task
    def advance(self, steps=1):
        if self.task.startswith("fold 0 epoch 1/"):
            os._exit(137)  # as kill -9: no handler, no cleanup

options = TrainOptions(model="resnet10t", pretrained=False, image_size=32, epochs=1,
                       folds=5, workers=0, device="cpu", name="dead")
run_train(Workspace(sys.argv[1]), options, progress=KillInFirstEpoch())
"""


def test_a_run_killed_before_its_first_epoch_is_nobodys_latest_and_is_replaced(
    trained_ws: Workspace,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_IN_FIRST_EPOCH, str(trained_ws.root)], env=env, check=False
    )
    assert killed.returncode == 137
    dead = trained_ws.run_folder("dead")
    assert dead.config_path.is_file() and (dead.folder / INCOMPLETE).is_file()
    assert (
        dead.config_path.stat().st_mtime > trained_ws.run_folder("tiny").config_path.stat().st_mtime
    )
    assert open_run(trained_ws).name == "tiny"  # though its config.json is the newest
    with pytest.raises(InputError, match="stopped before its first epoch"):
        open_run(trained_ws, "dead")
    # A new train of that name replaces it (no --resume needed: there is nothing to keep).
    run_train(trained_ws, replace(TINY, name="dead"))
    assert not (dead.folder / INCOMPLETE).exists()
    assert open_run(trained_ws).name == "dead"
    assert open_run(trained_ws, "dead").trained_folds() == [0]


def test_an_interrupted_run_keeps_its_first_epoch_for_resume(train_ws: Workspace) -> None:
    def stop(result: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_train(train_ws, replace(TINY, name="halted", epochs=2), on_epoch=stop)
    run = train_ws.run_folder("halted")
    assert run.last_checkpoint(0).is_file() and not (run.folder / INCOMPLETE).exists()
    assert train_ws.stage_settings("train")["run"] == "halted"
    assert open_run(train_ws).name == "halted"


def test_a_folder_that_is_no_run_is_not_trained_into(train_ws: Workspace) -> None:
    keep = train_ws.run_dir("mine") / "notes.txt"
    keep.parent.mkdir(parents=True)
    keep.write_text("mine")
    with pytest.raises(InputError, match="holds no run"):
        run_train(train_ws, replace(TINY, name="mine"))
    assert keep.read_text() == "mine"


# -- config.json: values no run can have -------------------------------------------------
def _set(config: dict[str, Any], path: str, value: object) -> None:
    *parents, last = path.split(".")
    target: Any = config
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


CORRUPTIONS: list[tuple[str, object, str]] = [
    ("views", "four", "field 'views': Input should be a valid integer"),
    ("views", 0, "field 'views': must be at least 1"),
    ("views", -3, "field 'views': must be at least 1"),
    ("preprocessing.mask", 5.0, "field 'preprocessing.mask': must be a band"),
    ("preprocessing.mask", "bottom:5", "field 'preprocessing.mask': band fraction"),
    ("folds_trained", ["../../../tmp"], "field 'folds_trained.0': Input should be a valid integer"),
    ("folds_trained", [99], "field 'folds_trained.0': must lie in 0..2"),
    ("preprocessing.input_size", -1, "field 'preprocessing.input_size'"),
    ("preprocessing.input_size", 10**9, "field 'preprocessing.input_size'"),
    ("preprocessing.std", [0, 0, 0], "field 'preprocessing.std'"),
    ("preprocessing.mean", [0.5], "field 'preprocessing.mean'"),
    ("preprocessing.interpolation", "magic", "field 'preprocessing.interpolation'"),
    ("preprocessing.crop_pct", -2, "field 'preprocessing.crop_pct'"),
    ("classes", [0, 1], "field 'centre_lat': holds 24 value(s) but 'classes' holds 2"),
    ("centre_lon", [77.0, 78.0], "field 'centre_lon': holds 2 value(s) but 'classes' holds 24"),
    ("centre_lat.3", 200.0, "field 'centre_lat.3': must lie in [-90, 90]"),
    ("centre_lon.0", "Infinity", "field 'centre_lon.0': must lie in [-180, 180]"),
    ("centre_lat.0", "NaN", "field 'centre_lat.0': must lie in [-90, 90]"),
    ("fold_points.1.lon.2", 999.0, "field 'fold_points.1.lon.2': must lie in [-180, 180]"),
    ("fusion", "max", "field 'fusion': must be one of mean, concat"),
    ("model", 5, "field 'model': Input should be a valid string"),
    ("model", "resnet1O", "field 'model': unknown model 'resnet1O'"),
    ("predictor", "magic", "field 'predictor': must be one of top_cell, weighted, knn, refined"),
    ("cell_km", -1.0, "field 'cell_km': must be a positive number"),
    ("folds", 1, "field 'folds': must be at least 2"),
    ("cells", "hexes", "field 'cells': must be one of grid, adaptive, admin"),
    ("fold_classes", {"0": [0, 1, 2]}, "field 'fold_classes': a run over grid cells has one"),
    ("fold_tau_km", {"0": -5.0}, "field 'fold_tau_km.0': must be a positive number"),
    ("fold_tau_km", {"7": 5.0}, "field 'fold_tau_km.7': is no fold of 0..2"),
    ("confidence_score", "luck", "field 'confidence_score': must be one of top_probability"),
]


@pytest.fixture
def corrupt(trained_ws: Workspace) -> Any:
    """Rewrite one field of the trained run's (good) config.json."""
    path = trained_ws.run_folder("tiny").config_path

    def corrupt(field: str, value: object) -> None:
        config = json.loads(path.read_text())
        _set(config, field, value)
        text = json.dumps(config)
        # JSON's non-finite numbers, as Python's json writes them, not as strings.
        path.write_text(text.replace('"NaN"', "NaN").replace('"Infinity"', "Infinity"))

    return corrupt


def _one_line_error(result: Any, message: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ") and message in lines[0], lines
    assert "config.json" in lines[0]
    assert "unexpected" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("field", "value", "message"), CORRUPTIONS, ids=[f"{f}={v!r}" for f, v, _ in CORRUPTIONS]
)
def test_a_config_value_no_run_can_have_is_one_line_naming_the_field(
    trained_ws: Workspace, corrupt: Any, field: str, value: object, message: str
) -> None:
    corrupt(field, value)
    photo = next((trained_ws.root / "images").rglob("*.jpg"))
    before = snapshot(trained_ws.root)
    cpu = ["--device", "cpu", "--workers", "0"]
    runner = CliRunner()
    _one_line_error(runner.invoke(app, ["eval", "-w", str(trained_ws.root), *cpu]), message)
    predict = ["predict", "-w", str(trained_ws.root), "--run", "tiny", str(photo), *cpu]
    _one_line_error(runner.invoke(app, predict), message)
    assert snapshot(trained_ws.root) == before


def test_recorded_options_are_checked_before_a_resume(trained_ws: Workspace, corrupt: Any) -> None:
    corrupt("arguments.mask_bottom", 5.0)
    before = snapshot(trained_ws.root)
    args = ["train", "-w", str(trained_ws.root), "--name", "tiny", "--resume", "--device", "cpu"]
    _one_line_error(
        CliRunner().invoke(app, args), "field 'arguments.mask_bottom': --mask-bottom must lie in"
    )
    assert snapshot(trained_ws.root) == before
