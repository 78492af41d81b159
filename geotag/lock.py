"""One writer per workspace: every command that writes holds the workspace's lock.

Two ``geotag scrape`` on one workspace would both look up the same points and pay for the
same images twice; a ``train`` beside an ``import`` would read a half-written dataset. The
lock is an OS lock on ``.geotag.lock`` (``flock``), which the kernel releases when its
holder exits, however it exits: a lock left by a killed process is simply taken over,
with no pid to check and no reused pid to be fooled by. The file names its holder (pid,
command, host, start), so a refused command can say who has the workspace, and it is
removed on release, so a command leaves no trace.

Written with ``fcntl`` rather than ``filelock``: filelock leaves the file behind and has
no place for the holder's name. Removing a lock file is safe only if a waiter checks,
once locked, that the file it holds is still the one at the path (else it locked a file
just unlinked, and tries again); that check is the loop below. Windows has no ``flock``;
there ``filelock`` holds the lock and the file stays.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from geotag.errors import WorkspaceError
from geotag.safetext import printable
from geotag.workspace import Workspace

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".geotag.lock"


@contextlib.contextmanager
def workspace_lock(workspace: Workspace, command: str) -> Iterator[None]:
    """Hold ``workspace``'s lock for ``command``; WorkspaceError naming the holder if busy.

    A workspace folder that does not exist yet has nothing to protect: the command runs
    unlocked (it creates the folder, as ``grid`` does, or fails for want of its inputs).
    """
    root = workspace.root
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"workspace {root} is a file, not a folder")
    if not root.is_dir():
        yield
        return
    path = root / LOCK_FILE
    if fcntl is None:  # pragma: no cover - Windows
        with _filelock(path):
            yield
        return
    fd = _acquire(path)
    try:
        holder = {
            "pid": os.getpid(),
            "command": command,
            "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        os.write(fd, json.dumps(holder).encode())
        yield
    finally:
        # Unlink while still holding it: a waiter then finds its file gone and retries.
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _acquire(path: Path) -> int:
    """An fd of ``path`` holding its exclusive lock; WorkspaceError if another holds it."""
    assert fcntl is not None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WorkspaceError(
                f"cannot lock workspace {path.parent}: {exc.strerror or exc}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkspaceError(
                f"workspace {path.parent} is in use by {_holder(path)}; wait for it to "
                "finish, or stop it, then run this again"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise WorkspaceError(
                f"cannot lock workspace {path.parent}: {exc.strerror or exc}"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)  # a killed holder's name is stale
            return fd
        os.close(fd)  # we locked a file its holder had just removed: try the new one


@contextlib.contextmanager
def _filelock(path: Path) -> Iterator[None]:  # pragma: no cover - Windows
    from filelock import FileLock, Timeout

    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise WorkspaceError(
            f"workspace {path.parent} is in use by another geotag command; wait for it "
            "to finish, or stop it, then run this again"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _holder(path: Path) -> str:
    """The holder as the lock file names it, e.g. "`geotag scrape` (pid 123 on host, since
    ...)"; a plain phrase if it names none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8")[:4096])
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or "pid" not in data:
        return "another geotag command"
    command = printable(data.get("command", "?"), 40)
    host = printable(data.get("host", "?"), 64)
    since = printable(data.get("since", "?"), 40)
    return f"`geotag {command}` (pid {printable(data['pid'], 12)} on {host}, since {since})"
