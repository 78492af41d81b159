"""`--run` (and train's `--name`) name a run inside the workspace, never a path to elsewhere.

eval and explain write into the run they open: a path would let them read and write
another workspace's run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geotag.cli import app
from geotag.errors import InputError
from geotag.train.runs import open_run
from geotag.workspace import Workspace
from tests.conftest import snapshot


@pytest.fixture(scope="module")
def shared(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained workspace ("ws") beside another workspace with a real run
    ("elsewhere/runs/r1"), shared by this module's tests: none may write to either (each
    test checks), so none needs a fresh copy."""
    root = tmp_path_factory.mktemp("containment")
    shutil.copytree(trained, root / "ws")
    shutil.copytree(trained / "runs" / "tiny", root / "elsewhere" / "runs" / "r1")
    shutil.copy(next((trained / "images").rglob("*.jpg")), root / "photo.jpg")
    return root


@pytest.fixture
def trained_ws(shared: Path) -> Workspace:
    return Workspace(shared / "ws")


@pytest.fixture
def elsewhere(shared: Path) -> Path:
    return shared / "elsewhere"


def bad_names(elsewhere: Path) -> dict[str, str]:
    return {
        "absolute": str(elsewhere / "runs" / "r1"),
        "relative": "../../elsewhere/runs/r1",  # from <ws>/runs, the same folder
        "parent": "..",
        "here": ".",
        "inside": "tiny/.",
        "backslash": "tiny\\x",
        "empty": "",
        "blank": "  ",
    }


KINDS = ("absolute", "relative", "parent", "here", "inside", "backslash", "empty", "blank")


@pytest.mark.parametrize("kind", KINDS)
def test_open_run_refuses_a_path_or_an_empty_name(
    trained_ws: Workspace, elsewhere: Path, kind: str
) -> None:
    name = bad_names(elsewhere)[kind]
    with pytest.raises(InputError) as caught:
        open_run(trained_ws, name)
    message = str(caught.value)
    assert message.startswith(f"--run must be the name of a run in {trained_ws.runs_dir}")
    assert repr(name) in message and "\n" not in message


def _commands(ws: Path, name: str, photo: str) -> dict[str, list[str]]:
    w = ["-w", str(ws)]
    cpu = ["--device", "cpu", "--workers", "0"]
    return {
        "eval": ["eval", *w, "--run", name, *cpu],
        "predict": ["predict", *w, "--run", name, photo, *cpu],
        "explain": ["explain", *w, "--run", name, photo, "--device", "cpu"],
        "audit": ["explain", *w, "--run", name, "--audit", "--limit", "10", "--device", "cpu"],
    }


@pytest.mark.parametrize("command", ["eval", "predict", "explain", "audit"])
@pytest.mark.parametrize("kind", ["absolute", "relative", "parent", "empty"])
def test_eval_predict_explain_never_touch_a_run_outside_the_workspace(
    trained_ws: Workspace, elsewhere: Path, shared: Path, command: str, kind: str
) -> None:
    photo = shared / "photo.jpg"
    name = bad_names(elsewhere)[kind]
    before = {"ws": snapshot(trained_ws.root), "elsewhere": snapshot(elsewhere)}
    result = CliRunner().invoke(app, _commands(trained_ws.root, name, str(photo))[command])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: --run must be the name of a run in"), lines
    assert "unexpected" not in result.output and "Traceback" not in result.output
    assert {"ws": snapshot(trained_ws.root), "elsewhere": snapshot(elsewhere)} == before
    assert sorted(p.name for p in shared.iterdir()) == ["elsewhere", "photo.jpg", "ws"]


@pytest.mark.parametrize("resume", [False, True])
@pytest.mark.parametrize("kind", ["absolute", "relative", "parent"])
def test_train_name_and_resume_stay_inside_the_workspace(
    trained_ws: Workspace, elsewhere: Path, kind: str, resume: bool
) -> None:
    name = bad_names(elsewhere)[kind]
    args = ["train", "-w", str(trained_ws.root), "--model", "resnet10t", "--no-pretrained"]
    args += ["--name", name, "--device", "cpu", "--workers", "0"]
    before = {"ws": snapshot(trained_ws.root), "elsewhere": snapshot(elsewhere)}
    result = CliRunner().invoke(app, [*args, "--resume"] if resume else args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"Error: --name must be the name of a run in {trained_ws.runs_dir}, not a path: {name!r}"
    ]
    assert {"ws": snapshot(trained_ws.root), "elsewhere": snapshot(elsewhere)} == before


def test_a_plain_name_still_opens_its_run(trained_ws: Workspace) -> None:
    assert open_run(trained_ws, "tiny").name == "tiny"
    assert open_run(trained_ws).name == "tiny"
    with pytest.raises(InputError, match=r"no run named 'nope'.*runs here: tiny"):
        open_run(trained_ws, "nope")


def test_a_run_that_links_out_of_the_workspace_is_refused(
    trained_ws: Workspace, elsewhere: Path
) -> None:
    link = trained_ws.runs_dir / "linked"
    link.symlink_to(elsewhere / "runs" / "r1", target_is_directory=True)
    try:
        (elsewhere / "runs" / "r1" / "config.json").touch()  # the newest run, were it one
        before = snapshot(elsewhere)
        with pytest.raises(InputError, match=r"run 'linked' is a link out of"):
            open_run(trained_ws, "linked")
        assert open_run(trained_ws).name == "tiny"  # never the latest either
        result = CliRunner().invoke(app, _commands(trained_ws.root, "linked", "x.jpg")["eval"])
        assert result.exit_code == 1 and "is a link out of" in result.stderr
        assert snapshot(elsewhere) == before
    finally:
        link.unlink()
