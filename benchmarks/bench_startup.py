"""Benchmark how much CPU ``geotag --help`` costs against the floor of importing Typer and rich.

What it measures, side by side in one run, each in a fresh process:

1. **interpreter**: ``python -c pass``, the cost of starting Python at all (context).
2. **floor**: ``python -c "import typer, rich"``, what any Typer + rich CLI pays.
3. **geotag --help** and **geotag train --help**, run through the venv's ``geotag``
   console script, the command users type (``--module`` runs ``python -m geotag``
   instead). ``train`` is the command whose options come from the library's own
   dataclass, so it is the one most likely to drag a heavy import in.

CPU time is user + system of the child, from ``resource.getrusage(RUSAGE_CHILDREN)``
before and after each run; it is steadier than wall time on a busy machine. Each case
runs once untimed (page cache, bytecode), then ``--runs`` times, interleaved in a rotating
order so a noisy moment hits every case alike; the table shows medians.

Budget (issue #12): ``geotag --help`` and ``geotag train --help`` each under 0.35 s of CPU.

    .venv/bin/python benchmarks/bench_startup.py [--runs 10] [--module]

Prints machine facts, the table and a PASS/MISS line; always exits 0.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from machine import machine_line  # benchmarks/machine.py

BUDGET_CPU_S = 0.35


@dataclass
class Case:
    label: str
    argv: list[str]
    budgeted: bool
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    failures: int = 0


def geotag_command(module: bool) -> tuple[list[str], str]:
    """The argv prefix that starts geotag, and how to name it in the report."""
    script = Path(sys.executable).parent / "geotag"
    if not module and script.exists():
        return [str(script)], f"console script {script}"
    if not module:
        found = shutil.which("geotag")
        if found:
            return [found], f"console script {found}"
    return [sys.executable, "-m", "geotag"], f"{sys.executable} -m geotag"


def run_once(case: Case, env: dict[str, str], record: bool = True) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    code = subprocess.run(
        case.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    ).returncode
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        case.failures += 1
    if record:
        case.cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        case.wall.append(wall)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per case")
    parser.add_argument(
        "--module", action="store_true", help="run `python -m geotag` instead of the script"
    )
    args = parser.parse_args(argv)
    runs = max(1, args.runs)
    geotag, launcher = geotag_command(args.module)
    python = sys.executable
    cases = [
        Case("python -c pass (interpreter)", [python, "-c", "pass"], budgeted=False),
        Case("import typer, rich (floor)", [python, "-c", "import typer, rich"], budgeted=False),
        Case("geotag --help", [*geotag, "--help"], budgeted=True),
        Case("geotag train --help", [*geotag, "train", "--help"], budgeted=True),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    import typer  # only for its version, after nothing else was timed in this process

    print(machine_line())
    print(f"typer: {typer.__version__}")
    print(f"geotag: {launcher}")
    print(f"{runs} interleaved runs per case after one untimed warm-up; CPU = user + sys")

    for case in cases:
        run_once(case, env, record=False)
    for repeat in range(runs):
        shift = repeat % len(cases)
        for case in cases[shift:] + cases[:shift]:
            run_once(case, env)

    floor = statistics.median(cases[1].cpu)
    print()
    header = (
        f"{'case':<32} {'CPU s (median)':>15} {'wall s (median)':>16} {'x floor':>8} {'budget':>8}"
    )
    print(header)
    print("-" * len(header))
    verdicts: list[tuple[str, float, bool]] = []
    for case in cases:
        cpu, wall = statistics.median(case.cpu), statistics.median(case.wall)
        ratio = f"{cpu / floor:.2f}" if floor > 0 else "-"
        if case.failures:
            budget = "ERROR"
            verdicts.append((case.label, cpu, False))
        elif case.budgeted:
            budget = "pass" if cpu <= BUDGET_CPU_S else "fail"
            verdicts.append((case.label, cpu, cpu <= BUDGET_CPU_S))
        else:
            budget = "-"
        print(f"{case.label:<32} {cpu:>15.3f} {wall:>16.3f} {ratio:>8} {budget:>8}")
    failed = [case.label for case in cases if case.failures]
    if failed:
        print(f"\nnon-zero exit from: {', '.join(failed)}")
    ok = all(passed for _, _, passed in verdicts)
    figures = ", ".join(f"{label} {cpu:.3f}" for label, cpu, _ in verdicts)
    print(f"\n{'PASS' if ok else 'MISS'}  CPU per --help <= {BUDGET_CPU_S} s ({figures})")


if __name__ == "__main__":
    main()
