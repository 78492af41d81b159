"""`geotag explain`: overlays for photos, the audit's files, verdicts and bad input."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from geotag.cli import app
from geotag.errors import InputError
from geotag.explain.report import AuditReport
from geotag.explain.verdict import Verdict
from geotag.stages.explain import AuditOptions, ExplainOptions, run_audit, run_explain
from geotag.workspace import Workspace

# At 32 px resnet10t's last stage is 1x1, a flat map; the automatic choice takes layer2.
FLAT_LAYER = "layer4"


def photos(ws: Workspace, count: int = 2) -> list[Path]:
    return [ws.root / p for p in pd.read_parquet(ws.images_parquet)["path"].head(count)]


def test_explain_saves_overlays_with_top3_and_thirds(trained_ws: Workspace, tmp_path: Path) -> None:
    options = ExplainOptions(out=tmp_path / "out", device="cpu")
    result = run_explain(trained_ws, photos(trained_ws), options)
    assert len(result.images) == 2 and not result.bad
    for item in result.images:
        assert sum(item.thirds) == pytest.approx(1.0, abs=1e-4)
        probabilities = [p for _, p in item.top3]
        assert probabilities == sorted(probabilities, reverse=True)
        assert item.overlay is not None and item.overlay.parent == tmp_path / "out"
        with Image.open(item.overlay) as image:
            assert image.format == "PNG" and image.getextrema() != ((0, 0), (0, 0), (0, 0))


def test_a_flat_map_is_reported_not_saved(trained_ws: Workspace, tmp_path: Path) -> None:
    result = run_explain(
        trained_ws,
        photos(trained_ws, 1),
        ExplainOptions(layer=FLAT_LAYER, out=tmp_path, device="cpu"),
    )
    (item,) = result.images
    assert item.all_zero and item.overlay is None
    assert not list(tmp_path.glob("*.png"))


def test_bad_explain_input(trained_ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("no")
    with pytest.raises(InputError, match="not an image"):
        run_explain(trained_ws, [tmp_path / "notes.jpg"], ExplainOptions(device="cpu"))
    with pytest.raises(InputError, match="not one of run tiny's classes"):
        run_explain(trained_ws, photos(trained_ws, 1), ExplainOptions(target="99999"))
    result = CliRunner().invoke(app, ["explain", "-w", str(trained_ws.root)])
    assert result.exit_code == 1 and result.output.startswith("Error:")


def test_audit_writes_its_report_and_exit_code_follows_fail_on(trained_ws: Workspace) -> None:
    result = run_audit(trained_ws, AuditOptions(limit=40, device="cpu"))
    report = result.report
    assert AuditReport.read(result.folder / "audit.json") == report
    saved = json.loads((result.folder / "audit.json").read_text())
    assert saved["verdict"] == report.verdict and saved["images"] == report.images >= 40
    assert saved["folds"] == [0, 1, 2]  # every image scored by the fold that held it out
    assert report.ablation is not None
    assert set(report.ablation.strata) == {"strip", "strip_free"}
    strip = report.ablation.strata["strip"]
    assert set(strip.conditions) == {"full", "band_blanked", "control_blanked", "band_only"}
    held_out = pd.read_parquet(trained_ws.images_parquet)
    named = held_out["copyright"].ne("© Google")
    assert report.available == {"strip": int(named.sum()), "strip_free": int((~named).sum())}
    assert strip.by_copyright == strip.images  # the simulator gives every image a copyright
    assert saved["heat"]["area_share"] == pytest.approx(0.1, abs=0.02)
    assert saved["metadata"]["images"] == len(held_out)
    markdown = (result.folder / "audit.md").read_text()
    assert report.verdict in markdown and "![mean_cam.png](mean_cam.png)" in markdown
    assert "| with a strip (user-contributed) |" in markdown and "How the verdict" in markdown
    for name in ("mean_cam.png", "audit.json", "audit.md"):
        assert (result.folder / name).is_file()
    args = ["explain", "-w", str(trained_ws.root), "--audit", "--limit", "40"]
    cli = CliRunner().invoke(app, [*args, "--fail-on", "suspect", "--device", "cpu"])
    failing = report.verdict >= Verdict.SUSPECT
    assert cli.exit_code == (3 if failing else 0), cli.output
    assert report.verdict in cli.output and "masking ablation" in cli.output


# -- scripted models: behaviour the test knows, through the real audit -------------------

MIDDLE = slice(13, 19)  # rows of the 32 px input far from either band
BOTTOM = slice(30, 32)  # rows inside the bottom band at 32 px


def _key(rows: torch.Tensor) -> bytes:
    return np.round(rows.detach().numpy(), 2).tobytes()


def _blank(rows: torch.Tensor) -> bool:
    return bool(rows.abs().max() < 0.05)  # blanked pixels normalise to ~0


class Scripted(torch.nn.Module):
    """Knows each held-out image by its pixels and answers by ``rule``: a model whose use
    of the band the test decides. The convolution gives Grad-CAM a layer (its maps are
    empty: the answer does not flow through it)."""

    def __init__(self, rule: str, classes: int, middle: dict[bytes, int], bottom: dict[bytes, int]):
        super().__init__()
        self.features = torch.nn.Conv2d(3, 2, 3, padding=1)
        self.rule, self.classes, self.middle, self.bottom = rule, classes, middle, bottom

    def answer(self, image: torch.Tensor) -> int:
        true = self.middle.get(_key(image[:, MIDDLE]))
        if self.rule == "strip" and _key(image[:, BOTTOM]) in self.bottom:
            return self.bottom[_key(image[:, BOTTOM])]  # reads the photographer's name
        if true is None:
            return 0
        if self.rule == "sky" and _blank(image[:, :3]):
            return true  # a distracting sky: without it the model is always right
        lucky = zlib.crc32(_key(image[:, MIDDLE])) % 2 == 0
        return true if lucky else (true + 1) % self.classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), self.classes)
        for row, image in enumerate(x):
            logits[row, self.answer(image)] = 10.0
        return logits + 0.0 * self.features(x).mean()


def scripted(ws: Workspace, rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fold of run tiny answers by ``rule``."""
    from geotag.train.data import EpochSampler, ImageDataset, build_transform, make_loader
    from geotag.train.runs import Run, open_run

    run = open_run(ws, "tiny")
    table = pd.read_parquet(ws.images_parquet)
    pre = run.preprocessing
    views = [(str(p),) for p in table["path"]]
    dataset = ImageDataset(ws.root, views, [0] * len(views), pre, build_transform(pre, False))
    loader = make_loader(dataset, EpochSampler(len(views), shuffle=False, seed=0), 64, 0,
                         training=False)  # fmt: skip
    truth = run.classes.index_of(table["cell_id"])
    named = table["copyright"].ne("© Google").to_numpy()
    middle: dict[bytes, int] = {}
    bottom: dict[bytes, int] = {}
    for batch in loader:
        for image, index in zip(batch.images, batch.indices.tolist(), strict=True):
            middle[_key(image[:, MIDDLE])] = int(truth[index])
            if named[index]:
                bottom[_key(image[:, BOTTOM])] = int(truth[index])
    model = Scripted(rule, len(run.classes), middle, bottom).eval()
    monkeypatch.setattr(Run, "build_model", lambda self, fold: model)


def test_a_model_reading_the_strip_is_caught_on_the_strip_images(
    trained_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(trained_ws, "strip", monkeypatch)
    report = run_audit(trained_ws, AuditOptions(device="cpu", layer="features")).report
    assert report.verdict is Verdict.SHORTCUT, report.reasons
    assert report.ablation is not None
    strip, official = report.ablation.strata["strip"], report.ablation.strata["strip_free"]
    assert strip.conditions["full"].accuracy == 1.0
    assert strip.effect.value > 0.3 and strip.effect.ci[0] > 0.2
    assert strip.conditions["band_only"].accuracy == 1.0
    # Where there is no strip the band is worth nothing to this model.
    assert official.drop_band.value == 0.0 and official.effect.value == 0.0


def test_a_model_distracted_by_the_sky_is_never_called_a_shortcut(
    trained_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(trained_ws, "sky", monkeypatch)
    report = run_audit(trained_ws, AuditOptions(device="cpu", layer="features")).report
    assert report.ablation is not None
    strip = report.ablation.strata["strip"]
    # Blanking the control helps a lot, blanking the band costs nothing: the old excess
    # (band cost minus control cost) would be large; the effect is not.
    assert strip.drop_band.value == 0.0 and strip.drop_control.value < -0.3
    assert strip.excess.value > 0.3 and strip.effect.value == 0.0
    assert report.verdict in (Verdict.PASS, Verdict.INCONCLUSIVE), report.reasons


def test_too_few_strip_images_draw_more_then_say_inconclusive(
    trained_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(trained_ws, "honest", monkeypatch)
    small = run_audit(trained_ws, AuditOptions(limit=10, device="cpu", layer="features")).report
    assert small.verdict is Verdict.INCONCLUSIVE, small.reasons
    assert small.rounds == 4 and small.images <= 4 * 10 + 2  # whole panoramas of two
    assert small.ablation is not None
    assert small.ablation.strata["strip"].images > small.images / 2  # the extra are strips
    big = run_audit(trained_ws, AuditOptions(limit=500, device="cpu", layer="features")).report
    assert big.ablation is not None
    assert big.ablation.strata["strip"].detectable < small.ablation.strata["strip"].detectable


def _mask_run(ws: Workspace, mask: str) -> None:
    path = ws.run_folder("tiny").config_path
    config = json.loads(path.read_text())
    config["preprocessing"]["mask"] = mask
    path.write_text(json.dumps(config))


def test_a_band_the_run_masks_passes_on_the_mask_not_on_identical_images(
    trained_ws: Workspace,
) -> None:
    _mask_run(trained_ws, "bottom:0.12")
    result = run_audit(trained_ws, AuditOptions(limit=20, device="cpu"))
    report = result.report
    assert report.verdict is Verdict.PASS and report.ablation is None
    assert report.mask == "bottom:0.12" and report.audited_band is None
    assert "blanked at input" in report.reasons[0]
    markdown = (result.folder / "audit.md").read_text()
    assert "Not run: the run's own mask `bottom:0.12`" in markdown
    assert AuditReport.read(result.folder / "audit.json") == report


def test_a_mask_over_part_of_the_band_leaves_the_rest_audited(trained_ws: Workspace) -> None:
    _mask_run(trained_ws, "bottom:0.04")
    report = run_audit(trained_ws, AuditOptions(limit=20, device="cpu")).report
    assert report.audited_band == "bottom:0.04-0.1" and report.ablation is not None
    assert report.ablation.band == "bottom:0.04-0.1"
    assert report.ablation.control == "top:0.04-0.1"
