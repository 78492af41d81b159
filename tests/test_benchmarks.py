"""Smoke run of the benchmark scripts: they must keep working, not meet their targets here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.mark.slow
def test_bench_grid_quick_prints_its_table() -> None:
    pytest.importorskip("geohexgrid")
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_grid.py"), "--quick"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    assert "India hex 10 km" in out.stdout
    assert "sample 1,000,000 pts" in out.stdout


@pytest.mark.slow
def test_bench_scrape_quick_prints_its_table() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_scrape.py"), "--quick"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    for heading in ("case", "latency ms", "images", "wall s", "verdict", "notes"):
        assert heading in out.stdout
    assert "rate 100/s" in out.stdout
    assert "sequential httpx.Client loop" in out.stdout
    assert "geotag / sequential" in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "rows"),
    [
        ("bench_train.py", ("geotag: JPEGs on disk", "in memory: compute-only limit", "ratio")),
        ("bench_predict.py", ("geotag predict, folder of JPEGs", "inference-only", "ratio")),
        ("bench_explain.py", ("forward + backward", "Grad-CAM", "audit over 100 images")),
    ],
)
def test_bench_train_and_predict_quick_print_their_tables(
    script: str, rows: tuple[str, ...]
) -> None:
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    for row in rows:
        assert row in out.stdout
    assert ("PASS" in out.stdout) != ("MISS" in out.stdout)


@pytest.mark.slow
def test_audit_power_quick_prints_both_rules() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "audit_power.py"), "--quick"],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    for heading in ("pooled rule (old)", "stratified verdict (new)", "detectable"):
        assert heading in out.stdout
    assert "photospheres 0.5" in out.stdout
