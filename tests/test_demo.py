"""`geotag demo --fast`: the whole story, end to end, as a newcomer runs it.

This is also the end-to-end test of the shortcut audit: a small CNN trained on simulator
images with the photographer strip gets SHORTCUT, the same model trained with
``--mask-bottom`` gets PASS.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from geotag import demo
from geotag.cli import app
from geotag.errors import InputError
from tests.conftest import snapshot

PROMISED = (
    "demo.json",
    "geotag.toml",
    "grid.parquet",
    "grid.geojson",
    "grid.png",
    "points.parquet",
    "points.png",
    "images.parquet",
    "manifest.sqlite",
    "predict.png",
    "sure.png",
    "unsure.png",
    *(
        f"runs/{run}/{name}"
        for run in (demo.CARELESS_RUN, demo.MASKED_RUN)
        for name in (
            "config.json",
            "folds.csv",
            "fold-0/model.safetensors",
            "fold-0/history.csv",
            "eval/metrics.json",
            "eval/confusion_matrix.png",
            "eval/accuracy_map.png",
            "explain/audit.json",
            "explain/audit.md",
            "explain/mean_cam.png",
            "explain/top_band_heat.png",
            "explain/mean_cam_per_class.png",
        )
    ),
)


@pytest.fixture(scope="module")
def fast_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("demo") / "demo-workspace"
    result = CliRunner().invoke(app, ["demo", str(folder), "--fast"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return folder, result.output


def test_the_careless_model_is_caught_and_the_masked_one_passes(
    fast_demo: tuple[Path, str],
) -> None:
    folder, output = fast_demo
    story = demo.read_story(folder)
    assert (story.careless_verdict, story.masked_verdict) == ("SHORTCUT", "PASS")
    careless = json.loads((folder / "runs/careless/explain/audit.json").read_text())
    strip = careless["ablation"]["strata"]["strip"]
    assert strip["effect"]["value"] >= 0.05 and strip["effect"]["ci"][0] > 0
    assert careless["verdict"] == "SHORTCUT" and "strip images" in careless["reasons"][0]
    # Masked, the band is blanked at input: that is the finding, not a bootstrap of
    # identical images. The model still learns the scene.
    masked = json.loads((folder / "runs/masked/explain/audit.json").read_text())
    assert masked["ablation"] is None and "blanked at input" in masked["reasons"][0]
    assert story.masked_top1 > 5 * story.chance
    # The copyright strings leak either way: a finding about the data, not the model.
    assert careless["data_warning"] and masked["data_warning"]
    assert "SHORTCUT" in output and "PASS" in output and "masked, it passes" in output


def test_every_promised_file_is_written(fast_demo: tuple[Path, str]) -> None:
    folder, _ = fast_demo
    missing = [name for name in PROMISED if not (folder / name).is_file()]
    assert not missing
    overlays = sorted((folder / "runs/careless/explain").glob("*-gradcam.png"))
    masked_overlays = sorted((folder / "runs/masked/explain").glob("*-gradcam.png"))
    assert len(overlays) == 3 and [p.name for p in overlays] == [p.name for p in masked_overlays]
    # The first photo explained is the one the audit found the most strip heat in.
    audit = json.loads((folder / "runs/careless/explain/audit.json").read_text())
    hottest = Path(audit["most_band_heat"][0]["path"]).stem
    assert f"{hottest}-gradcam.png" in [p.name for p in overlays]


def test_it_prints_the_commands_a_user_would_type(fast_demo: tuple[Path, str]) -> None:
    folder, output = fast_demo
    for command in ("grid", "sample", "scrape", "train", "eval", "explain", "predict"):
        assert f"$ geotag {command} -w {folder}" in output
    assert f"--mask-bottom {demo.MASK_BOTTOM:g} --name masked" in output
    assert "what each step wrote" in output
    assert "±" not in output  # one fold: eval shows no spread it does not have


def test_it_shows_a_sure_and_an_unsure_photo_with_their_regions(
    fast_demo: tuple[Path, str],
) -> None:
    folder, output = fast_demo
    sure, unsure = demo.sure_and_unsure_photos(folder)  # type: ignore[misc]
    predictions = pd.read_parquet(folder / "runs/masked/eval/predictions.parquet")
    confidence = dict(zip(predictions["path"], predictions["confidence"], strict=True))
    assert confidence[sure] == predictions["confidence"].max() > confidence[unsure]
    assert "the surest held-out photo" in output and "the least sure held-out photo" in output
    assert output.count("90% region") >= 2
    # The least sure photo is below the demo's --min-confidence: its answer is the region.
    assert confidence[unsure] < demo.MIN_CONFIDENCE and "not sure: confidence" in output


def test_a_rerun_keeps_what_is_done(fast_demo: tuple[Path, str]) -> None:
    folder, _ = fast_demo
    model = folder / "runs/careless/fold-0/model.safetensors"
    audit = folder / "runs/masked/explain/audit.json"
    before = (model.read_bytes(), audit.read_bytes())
    result = CliRunner().invoke(app, ["demo", str(folder), "--fast"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.output.count("(done already: skipped)") == 8
    assert (model.read_bytes(), audit.read_bytes()) == before


def test_a_folder_that_is_not_a_demo_is_never_touched(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("years of work")
    before = snapshot(tmp_path)
    result = CliRunner().invoke(app, ["demo", str(tmp_path), "--fresh"])
    assert result.exit_code == 1
    assert "not a geotag demo" in result.output and "Traceback" not in result.output
    assert snapshot(tmp_path) == before


def test_fresh_starts_again_and_other_settings_need_it(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    assert demo.prepare(folder, fresh=False, seed=0, fast=True) is False
    (folder / "grid.parquet").write_bytes(b"earlier")
    assert demo.prepare(folder, fresh=False, seed=0, fast=True) is True
    assert (folder / "grid.parquet").exists()
    with pytest.raises(InputError, match="--fresh"):
        demo.prepare(folder, fresh=False, seed=1, fast=True)
    assert demo.prepare(folder, fresh=True, seed=1, fast=True) is False
    assert sorted(p.name for p in folder.iterdir()) == [demo.MARKER]
    # demo.json records what the figures depend on besides the seed; a rerun on another
    # machine still goes on with the same demo.
    recorded = json.loads((folder / demo.MARKER).read_text())
    assert recorded["seed"] == 1 and recorded["fast"] is True
    assert {"torch", "numpy", "torch_threads", "cpu", "blas"} <= set(recorded["environment"])
    recorded["environment"]["cpu"] = "another machine"
    (folder / demo.MARKER).write_text(json.dumps(recorded))
    (folder / "grid.parquet").write_bytes(b"earlier")
    assert demo.prepare(folder, fresh=False, seed=1, fast=True) is True
    assert demo.prepare(folder, fresh=True, seed=1, fast=True) is False
    (folder / demo.MARKER).write_text("{half a")
    with pytest.raises(InputError, match="damaged; pass --fresh"):
        demo.prepare(folder, fresh=False, seed=1, fast=True)


def test_a_training_stopped_half_way_is_resumed_not_skipped(tmp_path: Path) -> None:
    steps = demo.pipeline_steps(tmp_path, fast=True, seed=0)
    train = next(s for s in steps if s.run == demo.CARELESS_RUN)
    assert demo.command_for(tmp_path, train) == train.args  # nothing yet: a new run
    fold = tmp_path / "runs" / demo.CARELESS_RUN / "fold-0"
    fold.mkdir(parents=True)
    (fold.parent / "config.json").write_text("{}")
    (fold / "model.safetensors").write_bytes(b"best so far")
    (fold / "history.csv").write_text("epoch,val_top1\n1,0.1\n2,0.2\n")
    assert not demo.is_done(tmp_path, train)
    assert demo.command_for(tmp_path, train) == (*train.args, "--resume")
    rows = "".join(f"{e},0.5\n" for e in range(1, train.epochs + 1))
    (fold / "history.csv").write_text("epoch,val_top1\n" + rows)
    assert demo.is_done(tmp_path, train)
