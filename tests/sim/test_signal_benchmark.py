"""Smoke run of benchmarks/bench_sim_signal.py: its tables come out, and they make sense."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_sim_signal.py"
ROWS = 12  # same spot, next on the road, 9 distances, far


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_sim_signal", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up in sys.modules while the class is made, and the
    # script imports its neighbours (benchmarks/machine.py) as it does when run.
    sys.modules[spec.name] = module
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
        sys.path.remove(str(SCRIPT.parent))
    return module


def table(stdout: str, title: str) -> dict[str, list[float]]:
    """The rows of the table headed ``title``: label -> its numbers ("%" dropped, "-" NaN)."""
    lines = stdout.split(f"\n{title}", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    rows = {}
    for line in lines:
        label, numbers = line[:30].strip(), line[30:].replace("%", "").replace(",", "")
        rows[label] = [math.nan if x == "-" else float(x) for x in numbers.split()]
    return rows


def test_quick_run_prints_tables_where_near_views_are_more_alike_than_far_ones(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    bench.main(["--quick"])
    stdout = capsys.readouterr().out
    assert stdout.startswith("machine: ")

    views = table(stdout, "views")
    inputs = table(stdout, "renderer inputs")
    assert len(views) == len(inputs) == ROWS
    same, far = "same spot, heading 0 vs 180", "far (random places)"
    assert {same, "next on the road", "25 km", far} <= views.keys()
    # Columns: pairs, km, then (median, x far, AUC) for pixels, shapes, read-out.
    assert views[same][0] >= 10 and views[far][1] > 500
    for median in (2, 5, 8):
        assert views[same][median] < views[far][median]
        assert views[same][median + 2] < 0.5  # the same spot's views are the more alike
    # Columns: (median, x far) for fields, zone, district, road. One spot has one place's
    # inputs; districts are ~25 km across.
    assert inputs[same][0] == 0.0 < inputs[far][0]
    assert inputs["500 km"][0] > inputs["25 km"][0] > inputs["1 km"][0]
    assert inputs[same][4] == 0.0 and inputs["1 km"][4] < 50.0 and inputs["500 km"][4] == 100.0

    assert re.search(r"^3 folds +[\d.]+ +[\d.]+% +[\d.]+% +[\d.]+%$", stdout, re.MULTILINE)
    assert "\nconclusion: " in stdout


def test_resolution_interpolates_on_log_km_and_needs_every_later_row(
    bench: ModuleType,
) -> None:
    km = [0.2, 1.0, 10.0, 100.0]
    # Excess 0, 0.2, 0.8, 1.0 of the far level's: half is crossed between 1 and 10 km.
    assert bench.resolution(km, [1.0, 1.2, 1.8, 2.0, 2.0], 0.5) == pytest.approx(10**0.5)
    # A row that dips below again does not count.
    assert bench.resolution(km, [1.0, 1.6, 1.2, 1.9, 2.0], 0.5) == pytest.approx(
        10 ** (1 + 0.3 / 0.7 * 1)
    )
    assert bench.resolution(km, [1.0, 1.1, 1.1, 1.2, 2.0], 0.5) is None
    assert bench.resolution(km, [1.0, 1.0, 1.0, 1.0, 1.0], 0.5) is None
