"""Fixtures for the explain tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on one thread: with two, a busy second core makes torch's threads wait
    on each other (forward + backward of test_resnet at 64 px: 6 ms alone, 1.3 s so)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
