"""`geotag explain`: overlays for photos, the audit's files, verdicts and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from geotag.cli import app
from geotag.errors import InputError
from geotag.explain.report import Ablation, AuditReport, Condition
from geotag.explain.verdict import data_warning, decide
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
    assert result.report.verdict in ("PASS", "SUSPECT", "SHORTCUT")
    assert AuditReport.read(result.folder / "audit.json") == result.report
    saved = json.loads((result.folder / "audit.json").read_text())
    assert saved["verdict"] == result.report.verdict and saved["images"] == 40
    assert set(saved["ablation"]["conditions"]) == {
        "full", "band_blanked", "control_blanked", "band_only",
    }  # fmt: skip
    assert saved["heat"]["area_share"] == pytest.approx(0.1, abs=0.02)
    assert saved["metadata"]["images"] == len(pd.read_parquet(trained_ws.images_parquet))
    report = (result.folder / "audit.md").read_text()
    assert result.report.verdict in report and "![mean_cam.png](mean_cam.png)" in report
    for name in ("mean_cam.png", "audit.json", "audit.md"):
        assert (result.folder / name).is_file()
    args = ["explain", "-w", str(trained_ws.root), "--audit", "--limit", "40"]
    cli = CliRunner().invoke(app, [*args, "--fail-on", "suspect", "--device", "cpu"])
    assert cli.exit_code == (0 if result.report.verdict == "PASS" else 3), cli.output
    assert result.report.verdict in cli.output and "masking ablation" in cli.output


def ablation(excess: float, excess_low: float, band_only_low: float) -> Ablation:
    unused = (0.0, 0.0)
    return Ablation(
        images=100, chance=0.05,
        conditions={"band_only": Condition(band_only_low + 0.02, (band_only_low, 0.5), 0.0)},
        drop_band=0.0, drop_band_ci=unused, drop_control=0.0, drop_control_ci=unused,
        excess_drop=excess, excess_drop_ci=(excess_low, excess + 0.05), bootstrap=0, level=0.95,
    )  # fmt: skip


QUIET_HEAT = {
    "area_share": 0.1,
    "band_mass": {"mean": 0.11},
    "share_above": 0.05,
    "classes": {"share_above": 0.0},
}


def test_verdicts_follow_the_documented_thresholds() -> None:
    shortcut, reasons = decide(ablation(0.2, 0.1, 0.2), QUIET_HEAT)
    assert shortcut == "SHORTCUT" and len(reasons) == 2
    # The band costs more than the control, but alone it tells nothing: suspect.
    assert decide(ablation(0.2, 0.1, 0.01), QUIET_HEAT)[0] == "SUSPECT"
    assert decide(ablation(0.0, -0.05, 0.01), QUIET_HEAT) == ("PASS", [])
    hot = {**QUIET_HEAT, "band_mass": {"mean": 0.3}}
    assert decide(ablation(0.0, -0.05, 0.01), hot)[0] == "SUSPECT"


def test_a_leak_in_the_data_is_reported_beside_the_models_verdict() -> None:
    # Masking fixes the model, not the strings: the warning stays, the verdict passes.
    leak = {"leaks": True, "accuracy": 0.4, "baseline": 0.1}
    assert "copyright strings predict the cell (40.0% vs baseline 10.0%)" in str(data_warning(leak))
    assert data_warning({**leak, "leaks": False}) is None
    assert data_warning(None) is None
