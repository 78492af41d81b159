"""Data-parallel training: two CPU processes under torchrun with the gloo backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from geotag.train.runs import open_run
from geotag.workspace import Workspace


def test_torchrun_two_processes_train_one_run(train_ws: Workspace) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "geotag", "train",
        "-w", str(train_ws.root), "--model", "resnet10t", "--no-pretrained",
        "--image-size", "32", "--epochs", "2", "--folds", "5", "--workers", "0",
        "--device", "cpu", "--name", "ddp",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    # Only rank 0 reports and writes: one summary table, one run folder.
    assert done.stdout.count("run ddp") == 1
    assert [p.name for p in train_ws.runs_dir.iterdir()] == ["ddp"]
    rows = pd.read_csv(train_ws.run_dir("ddp") / "fold-0" / "history.csv")
    assert rows["epoch"].tolist() == [1, 2]
    # Validation metrics are reduced over both ranks: every inner-split image counted once.
    held_out = len(pd.read_csv(train_ws.run_folder("ddp").inner_val(0)))
    assert all(0 <= v <= 1 for v in rows["val_top1"])
    correct = rows["val_top1"] * held_out  # history keeps 6 significant digits
    assert ((correct - correct.round()).abs() < 0.01).all()
    model = open_run(train_ws, "ddp").build_model(0)
    assert all(torch.isfinite(p).all() for p in model.parameters())
