"""The machine a benchmark ran on, in one line: a timing means little without it.

Shared by the benchmark scripts (run as ``python benchmarks/<script>.py``, so this folder
is on ``sys.path``); each adds the versions of the libraries it times.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, or what ``platform`` knows elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> str:
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return "? GiB"
    return f"{kb / 2**20:.0f} GiB"


def machine_line() -> str:
    """``machine: <cpu>, <n> cores, <memory> (<arch>, <os>); Python <version>``."""
    return (
        f"machine: {cpu_name()}, {os.cpu_count()} cores, {memory_gib()} "
        f"({platform.machine()}, {platform.system()}); Python {platform.python_version()}"
    )
