"""One writer per workspace: a second writer is refused and told who holds it; a lock left
by a killed process is taken over; nothing is left behind.

The holder is always another real process (the lock is the kernel's, per open file).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geotag.cli import app
from geotag.errors import WorkspaceError
from geotag.lock import LOCK_FILE, workspace_lock
from geotag.workspace import Workspace

HOLD = textwrap.dedent(
    """
    import sys, time
    from geotag.lock import workspace_lock
    from geotag.workspace import Workspace
    with workspace_lock(Workspace(sys.argv[1]), "hold-test"):
        print("held", flush=True)
        time.sleep(120)
    """
)


@contextmanager
def held_by_another_process(root: Path) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            yield holder
        finally:
            holder.kill()


def test_a_second_writer_is_refused_and_told_who_holds_it(tmp_path: Path) -> None:
    with (
        held_by_another_process(tmp_path) as holder,
        pytest.raises(WorkspaceError) as refused,
        workspace_lock(Workspace(tmp_path), "scrape"),
    ):
        pytest.fail("the lock was taken twice")
    message = str(refused.value)
    assert "in use by `geotag hold-test`" in message
    assert f"pid {holder.pid}" in message


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    with held_by_another_process(tmp_path) as holder:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert (tmp_path / LOCK_FILE).exists()  # left behind, naming a dead holder
        with workspace_lock(Workspace(tmp_path), "scrape"):
            assert str(os.getpid()) in (tmp_path / LOCK_FILE).read_text()


def test_the_lock_leaves_nothing_behind_and_can_be_taken_again(tmp_path: Path) -> None:
    for _ in range(2):
        with workspace_lock(Workspace(tmp_path), "grid"):
            assert (tmp_path / LOCK_FILE).is_file()
        assert list(tmp_path.iterdir()) == []


def test_a_workspace_that_does_not_exist_is_not_created_by_the_lock(tmp_path: Path) -> None:
    with workspace_lock(Workspace(tmp_path / "new"), "grid"):
        pass
    assert not (tmp_path / "new").exists()


WRITERS = {
    "grid": ["grid", "--bbox", "14.4,47.6,14.6,47.8", "--cell-km", "5"],
    "sample": ["sample", "--total", "10"],
    "scrape": ["scrape", "--provider", "sim"],
    "import": ["import", "photos.csv"],
    "train": ["train", "--epochs", "1"],
    "eval": ["eval"],
    "explain": ["explain", "--audit"],
    "explain-photos": ["explain", "photo.jpg"],
}


@pytest.mark.parametrize("command", list(WRITERS))
def test_every_writing_command_waits_its_turn(tmp_path: Path, command: str) -> None:
    args = WRITERS[command]
    with held_by_another_process(tmp_path):
        result = CliRunner().invoke(app, [args[0], "-w", str(tmp_path), *args[1:]])
        assert [p.name for p in tmp_path.iterdir()] == [LOCK_FILE]  # nothing written
    assert result.exit_code == 1, result.output
    assert "is in use by `geotag hold-test`" in result.stderr
    assert "Traceback" not in result.output


def test_a_fresh_demo_does_not_pull_a_folder_from_under_a_running_command(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "demo.json").write_text('{"seed": 0, "fast": true}\n')
    with held_by_another_process(folder):
        result = CliRunner().invoke(app, ["demo", str(folder), "--fresh", "--fast"])
    assert result.exit_code == 1, result.output
    assert "in use by" in result.stderr
    assert (folder / "demo.json").is_file()
