"""One fold's training: AdamW, warm-up then cosine, AMP on CUDA, early stopping, and a
checkpoint after every epoch from which a resumed run ends exactly where an uninterrupted
one would."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from geotag.progress import NullProgress, Progress
from geotag.train import checkpoint, distributed
from geotag.train.classes import ClassMap
from geotag.train.data import Batch, EpochSampler
from geotag.train.distributed import Ranks
from geotag.train.model import unwrap

HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_top1",
    "val_top5",
    "val_median_km",
    "lr",
    "images_per_s",
)


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    lr: float
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    patience: int | None = None  # epochs without a better val_top1 before stopping
    label_smoothing: str = "none"  # or "haversine"
    tau_km: float = 75.0
    #: Where the validation columns of history.csv come from, written beside them.
    val_split: str = "inner"


@dataclass(frozen=True)
class EpochResult:
    fold: int
    epoch: int  # 1-based
    epochs: int
    train_loss: float
    val_loss: float
    val_top1: float
    val_top5: float
    val_median_km: float
    lr: float
    images_per_s: float
    bad_images: int = 0
    best: bool = False

    def history_row(self) -> dict[str, float]:
        row = asdict(self)
        return {k: row[k] for k in HISTORY_COLUMNS}


@dataclass
class FoldData:
    """The loaders of one fold and what the loss and metrics need per sample."""

    train: torch.utils.data.DataLoader[Any]
    val: torch.utils.data.DataLoader[Any]
    train_sampler: EpochSampler
    train_latlon: np.ndarray  # (n_train, 2) true locations, for haversine targets
    val_latlon: np.ndarray


@dataclass
class FoldOutcome:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_top1: float = -1.0
    stopped_early: bool = False


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16; none on CPU, where autocast would be slower."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def schedule(
    optimizer: torch.optim.Optimizer, settings: LoopSettings, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to zero, stepped every batch."""
    total = max(1, settings.epochs * steps_per_epoch)
    warmup = min(total - 1, round(settings.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class FoldTrainer:
    def __init__(
        self,
        model: torch.nn.Module,
        data: FoldData,
        classes: ClassMap,
        settings: LoopSettings,
        device: torch.device,
        ranks: Ranks,
        folder: Path,
        fold: int,
        metadata: dict[str, str],
    ) -> None:
        self.model = model
        self.data = data
        self.classes = classes
        self.settings = settings
        self.device = device
        self.ranks = ranks
        self.folder = folder
        self.fold = fold
        self.metadata = metadata
        self.amp = amp_dtype(device)
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        self.scheduler = schedule(self.optimizer, settings, max(1, len(data.train)))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp is torch.float16)
        lat, lon = classes.centres()
        self.centre_lat = torch.tensor(lat, dtype=torch.float64)
        self.centre_lon = torch.tensor(lon, dtype=torch.float64)
        self.outcome = FoldOutcome()
        self.start_epoch = 0
        self.patience_used = 0

    # -- resume ---------------------------------------------------------------------------
    def resume(self) -> None:
        state = checkpoint.load_last(self.folder)
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        checkpoint.restore_rng(state["rng"])
        self.start_epoch = int(state["epoch"])
        self.patience_used = int(state["patience_used"])
        self.outcome = FoldOutcome(
            history=[dict(row) for row in state["history"]],
            best_epoch=int(state["best_epoch"]),
            best_top1=float(state["best_top1"]),
            stopped_early=bool(state.get("stopped_early", False)),
        )

    def _save_last(self, epoch: int) -> None:
        checkpoint.save_last(
            self.folder,
            {
                "model": unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": checkpoint.rng_state(),
                "epoch": epoch,
                "patience_used": self.patience_used,
                "history": self.outcome.history,
                "best_epoch": self.outcome.best_epoch,
                "best_top1": self.outcome.best_top1,
                "stopped_early": self.outcome.stopped_early,
            },
        )

    # -- the loop -------------------------------------------------------------------------
    def run(
        self,
        progress: Progress | None = None,
        on_epoch: Callable[[EpochResult], None] | None = None,
    ) -> FoldOutcome:
        progress = progress or NullProgress()
        for epoch in range(self.start_epoch, self.settings.epochs):
            if self.outcome.stopped_early:
                break
            train_loss, speed, bad_train = self._train_epoch(epoch, progress)
            val_loss, top1, top5, median_km, bad_val = self._validate(epoch, progress)
            better = top1 > self.outcome.best_top1
            if better:
                self.outcome.best_top1, self.outcome.best_epoch = top1, epoch + 1
                self.patience_used = 0
                if self.ranks.is_main:
                    checkpoint.save_best(self.model, self.folder, self.metadata)
            else:
                self.patience_used += 1
            patience = self.settings.patience
            self.outcome.stopped_early = patience is not None and self.patience_used >= patience
            result = EpochResult(
                self.fold,
                epoch + 1,
                self.settings.epochs,
                train_loss,
                val_loss,
                top1,
                top5,
                median_km,
                self.optimizer.param_groups[0]["lr"],
                speed,
                bad_train + bad_val,
                better,
            )
            self.outcome.history.append(result.history_row())
            if self.ranks.is_main:
                self._save_last(epoch + 1)
                write_history(
                    self.folder / "history.csv", self.outcome.history, self.settings.val_split
                )
            distributed.barrier(self.ranks)
            if on_epoch is not None:
                on_epoch(result)
        return self.outcome

    def _loss(
        self, logits: torch.Tensor, labels: torch.Tensor, latlon: torch.Tensor
    ) -> torch.Tensor:
        if self.settings.label_smoothing == "haversine":
            from geotag.train.targets import haversine_targets, soft_cross_entropy

            targets = haversine_targets(
                latlon[:, 0], latlon[:, 1], self.centre_lat, self.centre_lon, self.settings.tau_km
            ).to(logits.device)
            return soft_cross_entropy(logits.float(), targets)
        return F.cross_entropy(logits.float(), labels)

    def _train_epoch(self, epoch: int, progress: Progress) -> tuple[float, float, int]:
        self.model.train()
        self.data.train_sampler.set_epoch(epoch)
        progress.start(
            f"fold {self.fold} epoch {epoch + 1}/{self.settings.epochs} train", len(self.data.train)
        )
        total_loss = 0.0
        seen = bad = 0
        started = time.perf_counter()
        batch: Batch
        for batch in self.data.train:
            bad += batch.bad
            if len(batch.labels) == 0:
                progress.advance()
                continue
            images = self._to_device(batch.images)
            labels = batch.labels.to(self.device, non_blocking=True)
            latlon = torch.from_numpy(self.data.train_latlon[batch.indices.numpy()])
            with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                logits = self.model(images)
            loss = self._loss(logits, labels, latlon)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            total_loss += float(loss.detach()) * len(labels)
            seen += len(labels)
            progress.advance()
        seconds = time.perf_counter() - started
        loss_sum, count, failed, seconds = distributed.sum_all(
            [total_loss, float(seen), float(bad), seconds], self.ranks
        )
        speed = count / (seconds / self.ranks.world_size) if seconds > 0 else 0.0
        return loss_sum / max(count, 1.0), speed, int(failed)

    @torch.no_grad()
    def _validate(self, epoch: int, progress: Progress) -> tuple[float, float, float, float, int]:
        from geotag.geo.distance import haversine_km

        model = unwrap(self.model)
        model.eval()
        progress.start(
            f"fold {self.fold} epoch {epoch + 1}/{self.settings.epochs} validate",
            len(self.data.val),
        )
        total_loss = 0.0
        top1 = top5 = seen = bad = 0
        errors: list[float] = []
        lat, lon = self.classes.centres()
        for batch in self.data.val:
            bad += batch.bad
            if len(batch.labels) == 0:
                progress.advance()
                continue
            images = self._to_device(batch.images)
            labels = batch.labels.to(self.device)
            latlon = torch.from_numpy(self.data.val_latlon[batch.indices.numpy()])
            with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                logits = model(images)
            total_loss += float(self._loss(logits, labels, latlon)) * len(labels)
            k = min(5, logits.shape[1])
            ranked = logits.float().topk(k, dim=1).indices
            top1 += int((ranked[:, 0] == labels).sum())
            top5 += int((ranked == labels[:, None]).any(dim=1).sum())
            seen += len(labels)
            predicted = ranked[:, 0].cpu().numpy()
            true = latlon.numpy()
            errors.extend(
                haversine_km(true[:, 0], true[:, 1], lat[predicted], lon[predicted]).tolist()
            )
            progress.advance()
        loss_sum, hits1, hits5, count, failed = distributed.sum_all(
            [total_loss, float(top1), float(top5), float(seen), float(bad)], self.ranks
        )
        errors = distributed.gather_all(errors, self.ranks)
        n = max(count, 1.0)
        median = float(np.median(errors)) if errors else float("nan")
        return loss_sum / n, hits1 / n, hits5 / n, median, int(failed)

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.device.type == "cuda" and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images


def write_history(path: Path, rows: list[dict[str, float]], val_split: str = "inner") -> None:
    """history.csv: one row per epoch; ``val_split`` says which images the ``val_*``
    columns were measured on (``inner``: the fold's inner validation split)."""
    from geotag.atomic import atomic_path

    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*HISTORY_COLUMNS, "val_split"])
        writer.writeheader()
        for row in rows:
            values = {k: (int(v) if k == "epoch" else f"{v:.6g}") for k, v in row.items()}
            writer.writerow({**values, "val_split": val_split})
