"""The package's layering, read from its import graph (issue #12).

Every ``geotag/**/*.py`` is parsed with :mod:`ast`; every ``import x`` and
``from x import y`` counts, at any depth: inside functions, under ``if TYPE_CHECKING:``,
in ``try`` blocks, and ``importlib.import_module("...")`` / ``__import__("...")`` with a
literal name. Relative imports are resolved to absolute names. ``from a import b`` counts
as importing both ``a`` and ``a.b``, so ``from geotag import stages`` is caught too.

The rules are DESIGN.md's layout, made checkable:

(a) no module outside ``geotag/cli/`` imports ``geotag.stages`` (a stage importing another
    stage counts: a helper two stages need lives in the layer it belongs to);
(b) ``geotag/report/`` imports neither ``geotag.workspace`` nor ``geotag.stages``: report
    functions take data, never a Workspace;
(c) ``geotag/geo/`` is the bottom layer: it imports nothing from train, evaluate, explain,
    report, scrape, sim, stages or cli; and train, evaluate, explain and scrape import
    nothing from cli or stages;
(d) a stage module only orchestrates and exports nothing another module needs: see
    :func:`test_stage_modules_define_only_options_results_and_run` for the exact rule.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "geotag"


@dataclass(frozen=True)
class Import:
    """One import statement's target, where it is written."""

    module: str  # the importing module, e.g. "geotag.stages.explain"
    path: Path
    line: int
    target: str  # an absolute dotted name the statement imports
    statement: str  # the source text, for the message

    def __str__(self) -> str:
        where = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{where}:{self.line}: {self.statement}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(path: Path, root: Path = ROOT) -> Iterator[Import]:
    module = module_name(path, root)
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, path.name == "__init__.py")
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id == "__import__")
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            targets = [node.args[0].value]
        if targets:
            statement = " ".join((ast.get_source_segment(source, node) or "").split())
            for target in targets:
                yield Import(module, path, node.lineno, target, statement)


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


IMPORTS = [imp for path in _modules() for imp in imports_of(path)]


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(
    importers: tuple[str, ...], forbidden: tuple[str, ...], exempt: tuple[str, ...] = ()
) -> list[str]:
    """Each statement (once) in a module under ``importers`` but not under ``exempt`` that
    imports something under ``forbidden``, as ``file:line: statement``."""
    found = {
        (imp.path, imp.line): str(imp)
        for imp in IMPORTS
        if _under(imp.module, importers)
        and not _under(imp.module, exempt)
        and _under(imp.target, forbidden)
    }
    return [found[key] for key in sorted(found)]


def _report(rule: str, found: list[str]) -> str:
    return f"{rule}: {len(found)} violation(s)\n  " + "\n  ".join(found)


def test_the_import_graph_is_read() -> None:
    """Guard against a vacuous pass: the walk sees imports that are known to exist."""
    seen = {(imp.module, imp.target) for imp in IMPORTS}
    assert ("geotag.cli", "geotag.cli.common") in seen  # module level
    assert ("geotag.cli.grid", "geotag.stages.grid") in seen  # inside a function
    assert len(_modules()) > 50


def test_every_kind_of_import_is_seen(tmp_path: Path) -> None:
    module = tmp_path / "geotag" / "report" / "fake.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "import importlib\n"
        "from typing import TYPE_CHECKING\n"
        "from geotag import stages\n"
        "from . import maps\n"
        "from ..workspace import Workspace\n"
        "if TYPE_CHECKING:\n"
        "    import geotag.stages.predict as p\n"
        "def f():\n"
        "    from geotag.stages.grid import run_grid\n"
        "    return importlib.import_module('geotag.stages.train')\n"
    )
    targets = {(imp.line, imp.target) for imp in imports_of(module, root=tmp_path)}
    assert {
        (3, "geotag.stages"),
        (4, "geotag.report.maps"),
        (5, "geotag.workspace"),
        (7, "geotag.stages.predict"),
        (9, "geotag.stages.grid"),
        (10, "geotag.stages.train"),
    } <= targets


def test_only_the_cli_imports_stages() -> None:
    found = violations(("geotag",), ("geotag.stages",), exempt=("geotag.cli",))
    assert not found, _report("only geotag/cli/ may import geotag.stages", found)


def test_report_takes_data_not_a_workspace() -> None:
    found = violations(("geotag.report",), ("geotag.workspace", "geotag.stages"))
    assert not found, _report("geotag/report/ must not import workspace or stages", found)


GEO_FORBIDDEN = tuple(
    f"geotag.{name}"
    for name in ("train", "evaluate", "explain", "report", "scrape", "sim", "stages", "cli")
)


def test_geo_is_the_bottom_layer() -> None:
    found = violations(("geotag.geo",), GEO_FORBIDDEN)
    assert not found, _report("geotag/geo/ imports a higher layer", found)


def test_library_layers_do_not_import_cli_or_stages() -> None:
    importers = tuple(f"geotag.{name}" for name in ("train", "evaluate", "explain", "scrape"))
    found = violations(importers, ("geotag.cli", "geotag.stages"))
    assert not found, _report("a library layer imports geotag.cli or geotag.stages", found)


# -- (d) what a stage module may define ---------------------------------------------------


def _names_in(annotation: ast.expr) -> set[str]:
    """Every bare name in an annotation, including inside quoted ("forward") parts."""
    names: set[str] = set()
    for node in ast.walk(annotation):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            with contextlib.suppress(SyntaxError):
                names |= _names_in(ast.parse(node.value, mode="eval").body)
    return names


def _is_dataclass(node: ast.ClassDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "dataclass":
            return True
    return False


def _is_constant_name(name: str) -> bool:
    return name.startswith("_") or name.isupper()


def _is_import_block(node: ast.If) -> bool:
    """``if TYPE_CHECKING:`` holding imports only."""
    return (
        ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        and not node.orelse
        and all(isinstance(s, ast.Import | ast.ImportFrom) for s in node.body)
    )


def _users(path: Path, name: str) -> str:
    """Who imports ``name`` from this stage module: the fix differs (move it, or make it
    private)."""
    if not path.is_relative_to(ROOT):
        return ""
    wanted = f"{module_name(path)}.{name}"
    users = sorted(
        {f"{imp.path.relative_to(ROOT)}:{imp.line}" for imp in IMPORTS if imp.target == wanted}
    )
    return (
        f" -- imported by {', '.join(users)}" if users else " -- imported by no other geotag module"
    )


def stage_violations(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(root)
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring

    records = {n.name: n for n in body if isinstance(n, ast.ClassDef) and _is_dataclass(n)}
    # Records reachable from an *Options/*Result through field annotations are part of
    # that result's shape (ExplainResult.explained: tuple[Explained, ...]).
    allowed = {name for name in records if name.endswith(("Options", "Result"))}
    frontier = list(allowed)
    while frontier:
        for field in records[frontier.pop()].body:
            if isinstance(field, ast.AnnAssign):
                for name in _names_in(field.annotation) & records.keys() - allowed:
                    allowed.add(name)
                    frontier.append(name)

    found = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.If) and _is_import_block(node):
            continue
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bad = [
                ast.unparse(t)
                for t in targets
                if not (isinstance(t, ast.Name) and _is_constant_name(t.id))
            ]
            if bad:
                found.append(f"{where}:{node.lineno}: module-level name {', '.join(bad)}")
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not node.name.startswith(("run_", "_")):
                found.append(
                    f"{where}:{node.lineno}: public function {node.name}(){_users(path, node.name)}"
                )
            continue
        if isinstance(node, ast.ClassDef):
            if node.name.startswith("_"):
                continue
            if node.name not in allowed:
                kind = "dataclass" if node.name in records else "class"
                found.append(
                    f"{where}:{node.lineno}: public {kind} {node.name} "
                    "(not an *Options/*Result nor a record inside one)"
                )
            continue
        found.append(f"{where}:{node.lineno}: module-level statement {type(node).__name__}")
    return found


def test_stage_rules_catch_what_they_should(tmp_path: Path) -> None:
    stage = tmp_path / "geotag" / "stages" / "fake.py"
    stage.parent.mkdir(parents=True)
    stage.write_text(
        '"""Doc."""\n'
        "from dataclasses import dataclass\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import pandas\n"
        "LIMIT = 3\n"
        "_cache: dict = {}\n"
        "@dataclass\n"
        "class Row:\n"
        "    x: int\n"
        "@dataclass\n"
        "class FakeResult:\n"
        "    rows: 'tuple[Row, ...]'\n"
        "@dataclass\n"
        "class Loose:\n"
        "    y: int\n"
        "class Helper:\n"
        "    pass\n"
        "def run_fake(): ...\n"
        "def _private(): ...\n"
        "def shared(): ...\n"
        "table = {}\n"
        "print('hi')\n"
    )
    found = stage_violations(stage, root=tmp_path)
    assert [line.split(": ", 1)[1] for line in found] == [
        "public dataclass Loose (not an *Options/*Result nor a record inside one)",
        "public class Helper (not an *Options/*Result nor a record inside one)",
        "public function shared()",
        "module-level name table",
        "module-level statement Expr",
    ]


def test_stage_modules_define_only_options_results_and_run() -> None:
    """A stage module defines, at module level, only:

    - its docstring, imports (``if TYPE_CHECKING:`` blocks of imports too);
    - constants: names in UPPER_CASE, or private (``_name``);
    - dataclasses named ``*Options`` or ``*Result``, and the records they are made of: a
      dataclass in the same module that an Options/Result field annotation names,
      directly or through another such record (``PredictResult.predictions:
      tuple[Prediction, ...]`` -> ``Prediction.top: tuple[CellGuess, ...]``);
    - functions named ``run_*``;
    - anything private (a leading underscore).

    A public helper in a stage is either something another module needs (then it belongs
    in the layer it is about: geo, train, evaluate, report, scrape, or the CLI for
    rendering) or something only this stage uses (then it should be private).
    """
    found = [
        v
        for path in sorted((PACKAGE / "stages").glob("*.py"))
        if path.name != "__init__.py"
        for v in stage_violations(path)
    ]
    assert not found, _report("stage modules define more than they should", found)
