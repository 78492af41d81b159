"""The typed files between stages: written and read through one dataclass, checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geotag import contracts
from geotag.errors import DataError
from geotag.explain.verdict import FAIL_ON, Verdict
from geotag.train.runs import RunConfig, read_config, write_config
from geotag.workspace import Workspace

MINIMAL = {
    "model": "resnet10t",
    "classes": [3, 17],
    "centre_lat": [10.0, 20.0],
    "centre_lon": [70.0, 80.0],
    "preprocessing": {"input_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3},
}


def write(tmp_path: Path, data: object) -> Workspace:
    ws = Workspace(tmp_path)
    run = ws.run_folder("r")
    run.folder.mkdir(parents=True)
    run.config_path.write_text(json.dumps(data))
    return ws


def test_run_config_round_trips_and_holds_every_default(tmp_path: Path) -> None:
    ws = write(tmp_path, MINIMAL)
    config = read_config(ws.run_folder("r"))
    assert config.classes == (3, 17) and config.views == 1 and config.cell_km == 100.0
    assert config.fusion == "mean" and config.folds_trained == () and config.arguments == {}
    write_config(ws.run_folder("again"), config)
    assert read_config(ws.run_folder("again")) == config
    saved = json.loads(ws.run_folder("again").config_path.read_text())
    assert saved["classes"] == [3, 17] and saved["geotag_version"] == "0"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cell_km": "100"}, "field 'cell_km': Input should be a valid number"),
        ({"views": 1.5}, "field 'views': Input should be a valid integer"),
        ({"classes": [3, "x"]}, "field 'classes.1': Input should be a valid integer"),
        ({"bogus": 1}, "unknown field 'bogus'"),
        ({"model": None}, "field 'model': Input should be a valid string"),
    ],
)
def test_a_bad_field_is_one_line_naming_it(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    ws = write(tmp_path, {**MINIMAL, **change})
    with pytest.raises(DataError) as caught:
        read_config(ws.run_folder("r"))
    text = str(caught.value)
    assert text == f"{ws.run_folder('r').config_path}: {message}"
    assert "\n" not in text


def test_missing_fields_and_broken_json_are_named(tmp_path: Path) -> None:
    ws = write(tmp_path, {k: v for k, v in MINIMAL.items() if k != "model"})
    with pytest.raises(DataError, match="missing field 'model'"):
        read_config(ws.run_folder("r"))
    ws.run_folder("r").config_path.write_text('{"model": ')
    with pytest.raises(DataError, match="not valid JSON"):
        read_config(ws.run_folder("r"))
    ws.run_folder("r").config_path.write_text("[1, 2]")
    with pytest.raises(DataError, match="not the expected object"):
        read_config(ws.run_folder("r"))
    with pytest.raises(DataError, match="is missing"):
        read_config(ws.run_folder("never"))


def test_contracts_refuse_loose_types_that_plain_json_would_pass() -> None:
    # "5" is not an int, even though int("5") would work: a hand-edited file is caught.
    with pytest.raises(DataError, match="field 'folds'"):
        contracts.parse(RunConfig, {**MINIMAL, "folds": "5"}, "config.json")
    assert contracts.parse(RunConfig, {**MINIMAL, "tau_km": 50}, "c").tau_km == 50.0


def test_verdicts_are_ordered_and_fail_on_is_one_comparison() -> None:
    assert Verdict.PASS < Verdict.INCONCLUSIVE < Verdict.SUSPECT < Verdict.SHORTCUT
    assert Verdict.SHORTCUT >= Verdict.SUSPECT and not Verdict.PASS >= Verdict.SUSPECT
    assert str(Verdict.SHORTCUT) == "SHORTCUT" and json.dumps(Verdict.PASS) == '"PASS"'
    assert list(FAIL_ON) == ["never", "inconclusive", "suspect", "shortcut"]
    fails = {
        name: [v.value for v in Verdict if threshold is not None and v >= threshold]
        for name, threshold in FAIL_ON.items()
    }
    assert fails == {
        "never": [],
        "inconclusive": ["INCONCLUSIVE", "SUSPECT", "SHORTCUT"],
        "suspect": ["SUSPECT", "SHORTCUT"],
        "shortcut": ["SHORTCUT"],
    }
