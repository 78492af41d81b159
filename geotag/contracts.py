"""Typed JSON files between stages: a dataclass in, the same dataclass out, checked.

``config.json``, ``metrics.json`` and ``audit.json`` are each written from one dataclass
and read back into it. Reading checks every field against the dataclass: an unknown field,
a missing one or a value of the wrong type is a :class:`~geotag.errors.DataError` of one
line naming the file and the field, never a ``KeyError`` three stages later.

pydantic does the checking (strictly: ``"5"`` is not an int); it validates plain
dataclasses, so the contracts stay ordinary, importable-anywhere classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from geotag.errors import DataError

T = TypeVar("T")
C = TypeVar("C", bound=type)


def contract(cls: C) -> C:
    """Mark a dataclass as a file contract: unknown fields and loose types are refused.

    Nested dataclasses of a contract need the mark too. (pydantic reads this attribute; no
    pydantic import is needed to declare a contract.)
    """
    cls.__pydantic_config__ = {"extra": "forbid", "strict": True}  # type: ignore[attr-defined]
    return cls


_ADAPTERS: dict[type, Any] = {}


def _adapter(cls: type) -> Any:
    """pydantic's validator for ``cls``, built once (building one costs milliseconds)."""
    if cls not in _ADAPTERS:
        from pydantic import TypeAdapter

        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def to_json(value: object) -> dict[str, Any]:
    """The dataclass as JSON-ready data (tuples as lists, enums and paths as text)."""
    data: dict[str, Any] = _adapter(type(value)).dump_python(value, mode="json")
    return data


def dumps(value: object) -> str:
    return json.dumps(to_json(value), indent=2) + "\n"


def loads(cls: type[T], text: str | bytes, source: str) -> T:
    """``text`` (JSON) as a ``cls``; ``source`` names the file in errors."""
    from pydantic import ValidationError

    try:
        return _adapter(cls).validate_json(text)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise DataError(f"{source}: {_problem(exc)}") from None


def parse(cls: type[T], data: Any, source: str) -> T:
    """Plain data (as ``json.loads`` gives it) as a ``cls``, checked as :func:`loads` does."""
    return loads(cls, json.dumps(data, default=str), source)


def read(cls: type[T], path: Path) -> T:
    """The file at ``path`` as a ``cls``."""
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} is missing") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return loads(cls, text, str(path))


def _problem(exc: Any) -> str:
    """The first problem pydantic found, in one line that names the field."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    kind = error.get("type", "")
    if kind == "json_invalid":
        return f"not valid JSON ({error.get('msg', '')})"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"unknown field {where!r}"
    if kind == "missing" or kind == "missing_argument":
        return f"missing field {where!r}"
    if not where:
        return f"not the expected object ({error.get('msg', '')})"
    return f"field {where!r}: {str(error.get('msg', '')).rstrip('.')}"
