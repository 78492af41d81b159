"""The machine a benchmark ran on, in one line: a timing means little without it.

Shared by the benchmark scripts (run as ``python benchmarks/<script>.py``, so this folder
is on ``sys.path``); each adds the versions of the libraries it times.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from geotag.demo import cpu_name


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
