"""Errors that geotag reports to its users.

    GeotagError                 base: the CLI prints "Error: <message>" and exits 1
     +-- InputError             an option, a file or a value the user gave is unusable
     +-- WorkspaceError         the workspace lacks what a stage needs, or is not a folder
     +-- DataError              a file geotag reads is corrupt or not what it claims
     +-- AuthError              a provider refused the key, token or signature

Messages are one line, say what is wrong and, where there is one, what to do about it.
They never contain secrets.
"""

from __future__ import annotations


class GeotagError(Exception):
    """Base of every error geotag raises on purpose."""


class InputError(GeotagError):
    """A user-supplied option, value or file cannot be used."""


class WorkspaceError(GeotagError):
    """The workspace is missing an earlier stage's output, or is not a usable folder."""


class DataError(GeotagError):
    """A file that geotag reads is corrupt, empty or of the wrong kind."""


class AuthError(GeotagError):
    """A provider refused the credentials (bad key, token or signature): the run stops."""


def first_line(exc: BaseException, *, with_type: bool = False, limit: int | None = None) -> str:
    """The first line of ``exc``'s message (its type's name when the message is empty).

    Library errors from GDAL, Arrow or Pillow can span many lines; a user gets one.
    ``with_type`` prefixes the type (``OSError: ...``); ``limit`` shortens long lines.
    """
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    if limit is not None and len(first) > limit:
        first = first[: limit - 3] + "..."
    if not first:
        return type(exc).__name__
    return f"{type(exc).__name__}: {first}" if with_type else first
