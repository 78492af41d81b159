"""Smoke run of the benchmark scripts: they must keep working, not meet their targets here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def quick_run(script: str, timeout: int = 600) -> str:
    """What ``benchmarks/<script> --quick`` prints; a non-zero exit fails the test."""
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return out.stdout


@pytest.mark.slow
def test_bench_grid_quick_prints_its_table() -> None:
    pytest.importorskip("geohexgrid")
    stdout = quick_run("bench_grid.py")
    assert "India hex 10 km" in stdout
    assert "sample 1,000,000 pts" in stdout


@pytest.mark.slow
def test_bench_scrape_quick_prints_its_table() -> None:
    stdout = quick_run("bench_scrape.py")
    for heading in ("case", "latency ms", "images", "wall s", "verdict", "notes"):
        assert heading in stdout
    assert "rate 100/s" in stdout
    assert "sequential httpx.Client loop" in stdout
    assert "geotag / sequential" in stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "rows"),
    [
        ("bench_train.py", ("geotag: JPEGs on disk", "in memory: compute-only limit", "ratio")),
        (
            "bench_predict.py",
            ("geotag predict, folder of JPEGs", "inference-only", "ratio", "1 photo, one call"),
        ),
        ("bench_explain.py", ("forward + backward", "Grad-CAM", "audit over 100 images")),
    ],
)
def test_bench_train_and_predict_quick_print_their_tables(
    script: str, rows: tuple[str, ...]
) -> None:
    stdout = quick_run(script)
    for row in rows:
        assert row in stdout
    # Every target gets one verdict line, and PASS or MISS appears nowhere else.
    verdicts = [line for line in stdout.splitlines() if line.startswith(("PASS  ", "MISS  "))]
    assert verdicts and stdout.count("PASS") + stdout.count("MISS") == len(verdicts)


@pytest.mark.slow
def test_audit_power_quick_prints_both_rules() -> None:
    stdout = quick_run("audit_power.py", timeout=900)
    for heading in ("pooled rule (old)", "stratified verdict (new)", "detectable"):
        assert heading in stdout
    assert "reader (0.8) on test set 0.2" in stdout


def test_hostile_server_quick_refuses_the_flood_and_the_bomb() -> None:
    stdout = quick_run("hostile_server.py", timeout=300)
    rows = {line[:18].strip(): line.split() for line in stdout.splitlines()[2:]}
    for case in ("200 MB bodies", "gzip bomb"):
        fields = rows[case]
        exit_code, rss_mb, disk = fields[-5], float(fields[-3]), fields[-2]
        assert (exit_code, disk) == ("1", "0"), fields
        assert rss_mb < 1000  # geotag's own ~240 MB; the old scraper held 3 GB and more


def test_bench_refine_cost_quick_prints_its_table() -> None:
    stdout = quick_run("bench_refine_cost.py", timeout=300)
    for row in ("locate refined, batch 1", "locate knn (whole index), batch 64", "products only"):
        assert row in stdout
    assert ("PASS" in stdout) or ("MISS" in stdout)


@pytest.mark.slow
def test_bench_refine_quick_compares_every_kind_of_cells() -> None:
    stdout = quick_run("bench_refine.py", timeout=1800)
    for cells in ("grid", "adaptive", "admin"):
        assert any(line.startswith(cells) and "refined" in line for line in stdout.splitlines())
    assert "in grid cell" in stdout
    assert "refined median / top-cell median" in stdout


@pytest.mark.slow
def test_bench_doubt_quick_prints_coverage_and_calibration() -> None:
    stdout = quick_run("bench_doubt.py", timeout=1_200)
    for line in ("per image: target 0.9", "per location: target 0.9", "ECE floor"):
        assert line in stdout
    assert "a valid calibration gives" in stdout and "every fold's" in stdout
    assert "chance that every fold lands in" in stdout
    assert "oracle T by NLL" in stdout and "lowest ECE of any T" in stdout
