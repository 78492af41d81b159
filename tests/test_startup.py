"""``geotag --help`` stays quick: no command's help imports the heavy libraries (issue #12).

Heavy imports belong inside the functions that need them (STYLE.md, habit 5). Each
command's ``--help`` runs in a fresh interpreter, because a module that one command
loaded would hide the same import in the next; the probes run side by side, so the walk
costs about as much as two of them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from geotag.cli import app
from geotag.cli_docs import command_paths

ROOT = Path(__file__).parents[1]
HEAVY = (
    "numpy",
    "torch",
    "shapely",
    "pyproj",
    "pandas",
    "PIL",
    "matplotlib",
    "geopandas",
    "timm",
    "httpx",
)

#: Import the CLI, show one command's help the way a user would (``geotag ... --help``),
#: then say which heavy modules are in ``sys.modules``.
PROBE = f"""
import json, sys
from typer.testing import CliRunner
from geotag.cli import app
result = CliRunner().invoke(app, [*sys.argv[1:], "--help"], prog_name="geotag")
print(json.dumps({{
    "exit_code": result.exit_code,
    "output": result.output,
    "loaded": sorted(name for name in {HEAVY!r} if name in sys.modules),
}}))
"""

PATHS: list[tuple[str, ...]] = [(), *command_paths(typer.main.get_command(app))]


def _name(path: tuple[str, ...]) -> str:
    return " ".join(("geotag", *path, "--help"))


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "100"}


@pytest.fixture(scope="module")
def probes() -> dict[tuple[str, ...], dict]:
    """Every command's probe, started together, each in its own interpreter."""
    running = {
        path: subprocess.Popen(
            [sys.executable, "-c", PROBE, *path],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in PATHS
    }
    results = {}
    for path, process in running.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, f"{_name(path)} probe crashed:\n{err}"
        results[path] = json.loads(out.splitlines()[-1])
    return results


def test_every_command_is_walked() -> None:
    assert ("train",) in PATHS and ("sim", "render") in PATHS
    assert len(PATHS) >= 10


@pytest.mark.parametrize("path", PATHS, ids=_name)
def test_help_imports_no_heavy_library(
    path: tuple[str, ...], probes: dict[tuple[str, ...], dict]
) -> None:
    probe = probes[path]
    assert probe["exit_code"] == 0, f"{_name(path)} failed:\n{probe['output']}"
    assert "Usage: geotag" in probe["output"]
    assert probe["loaded"] == [], f"`{_name(path)}` imports {', '.join(probe['loaded'])}"


def test_importing_the_cli_imports_no_heavy_library() -> None:
    """Read ``-X importtime`` so the message shows what pulled a heavy module in."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import geotag.cli"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    # "import time:   self [us] | cumulative | <indent>module.name"
    lines = [line for line in out.stderr.splitlines() if line.startswith("import time:")]
    names = [line.rsplit("|", 1)[1].strip() for line in lines[1:]]  # [0] is the header
    assert "geotag.cli" in names
    offending = [
        line for line, name in zip(lines[1:], names, strict=True) if name.split(".")[0] in HEAVY
    ]
    assert not offending, "import geotag.cli imports:\n" + "\n".join(offending)


def test_bench_startup_smoke_run() -> None:
    """The benchmark keeps working (one run per case); it need not meet its budget here."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_startup.py"), "--runs", "1"],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    for row in ("import typer, rich (floor)", "geotag --help", "geotag train --help"):
        assert re.search(rf"^{re.escape(row)}\s+\d+\.\d{{3}}\s", out.stdout, re.M), out.stdout
    assert ("PASS" in out.stdout) != ("MISS" in out.stdout)
    assert "non-zero exit" not in out.stdout
