"""From images.parquet rows to batches: checking files, decoding, masking, augmenting.

Randomness is keyed to (epoch, sample), not to worker processes: the sampler hands each
index its own seed, so a resumed run sees exactly the crops an uninterrupted one would,
whatever the number of workers.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Sampler

from geotag.errors import DataError
from geotag.train.bands import Band, blank_band

#: More bad images than this share stops a run: the dataset, not the model, needs work.
MAX_BAD_SHARE = 0.05
#: Errors a damaged or vanished image raises while decoding.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Preprocessing:
    """Everything needed to turn a file into the model's input; saved in config.json."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    crop_pct: float = 1.0  # geolocation needs the whole frame, bottom strip included
    mask: Band | None = None

    @property
    def fill(self) -> tuple[int, int, int]:
        r, g, b = (round(255 * m) for m in self.mean)
        return r, g, b

    def to_json(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "mask": str(self.mask) if self.mask else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "config.json") -> Preprocessing:
        """config.json's ``preprocessing``; a damaged one is one line naming the field
        (``source`` names the file)."""
        from geotag.errors import GeotagError
        from geotag.train.bands import parse_band

        def bad(name: str, why: str) -> DataError:
            return DataError(f"{source}: field 'preprocessing.{name}': {why}")

        unknown = sorted(set(data) - set(PREPROCESSING_FIELDS))
        if unknown:
            raise DataError(f"{source}: unknown field 'preprocessing.{unknown[0]}'")
        for name in ("input_size", "mean", "std"):
            if name not in data:
                raise DataError(f"{source}: missing field 'preprocessing.{name}'")
        size = data["input_size"]
        low, high = INPUT_SIZES
        if not _is_int(size) or not low <= size <= high:
            raise bad(
                "input_size", f"must be a whole number of pixels in {low}..{high}; got {size!r}"
            )
        mean = _channels(data["mean"], lambda v: 0.0 <= v <= 1.0)
        if mean is None:
            raise bad("mean", f"must be 3 numbers in [0, 1]; got {data['mean']!r}")
        std = _channels(data["std"], lambda v: v > 0.0)
        if std is None:
            raise bad("std", f"must be 3 positive numbers; got {data['std']!r}")
        interpolation = data.get("interpolation", "bicubic")
        if interpolation not in INTERPOLATIONS:
            raise bad(
                "interpolation",
                f"must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}",
            )
        crop_pct = data.get("crop_pct", 1.0)
        if not (_is_number(crop_pct) and 0.0 < crop_pct <= 1.0):
            raise bad("crop_pct", f"must lie in (0, 1]; got {crop_pct!r}")
        mask = data.get("mask")
        if mask is not None and not isinstance(mask, str):
            raise bad("mask", f"must be a band such as 'bottom:0.1', or null; got {mask!r}")
        try:
            band = parse_band(mask) if mask else None
        except GeotagError as exc:
            raise bad("mask", str(exc)) from None
        return cls(size, mean, std, str(interpolation), float(crop_pct), band)


#: ``config.json``'s ``preprocessing`` holds these (Preprocessing.to_json).
PREPROCESSING_FIELDS = ("input_size", "mean", "std", "interpolation", "crop_pct", "mask")
#: Input sides a run may record, in pixels: --image-size allows 16..1024, and timm's
#: own default sizes stay far below the upper end.
INPUT_SIZES = (16, 4096)
#: What timm's transforms can resize with.
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "box", "hamming", "lanczos")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _channels(value: object, ok: Callable[[float], bool]) -> tuple[float, float, float] | None:
    """Three finite numbers that each pass ``ok`` (one per RGB channel), or None."""
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        return None
    if not all(_is_number(v) and ok(float(v)) for v in value):
        return None
    return float(value[0]), float(value[1]), float(value[2])


def preprocessing_for(
    model: torch.nn.Module, image_size: int | None, mask: Band | None
) -> Preprocessing:
    """The model's own normalisation from timm, at ``image_size`` (default: the model's)."""
    from geotag.train.model import model_data_config

    config = model_data_config(model)
    size = image_size or int(config["input_size"][-1])
    m, s = (tuple(float(v) for v in config[k]) for k in ("mean", "std"))
    interpolation = str(config.get("interpolation", "bicubic"))
    return Preprocessing(size, (m[0], m[1], m[2]), (s[0], s[1], s[2]), interpolation, 1.0, mask)


def build_transform(
    pre: Preprocessing, training: bool, hflip: bool = False
) -> Callable[[Image.Image], torch.Tensor]:
    """timm's transforms: mild random-resized crop and colour jitter for training, no flip
    unless asked (a flip swaps the side of the road people drive on)."""
    from timm.data import create_transform

    common: dict[str, Any] = {
        "input_size": (3, pre.input_size, pre.input_size),
        "interpolation": pre.interpolation,
        "mean": pre.mean,
        "std": pre.std,
    }
    if training:
        return create_transform(  # type: ignore[no-any-return]
            is_training=True,
            scale=(0.7, 1.0),
            ratio=(0.85, 1.0 / 0.85),
            hflip=0.5 if hflip else 0.0,
            vflip=0.0,
            color_jitter=0.2,
            auto_augment=None,
            re_prob=0.0,
            **common,
        )
    return create_transform(is_training=False, crop_pct=pre.crop_pct, **common)  # type: ignore[no-any-return]


def load_image(path: Path, pre: Preprocessing) -> Image.Image:
    """Decode ``path`` (at a reduced JPEG scale when that still covers the input size) and
    blank the run's mask band."""
    with Image.open(path) as file:
        file.draft("RGB", (pre.input_size, pre.input_size))
        image = to_rgb(ImageOps.exif_transpose(file))
    if pre.mask is not None:
        image = blank_band(image, pre.mask, pre.fill)
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode as 8-bit RGB: transparency over white, 16-bit and float scaled (Pillow's
    own conversion clips them, turning most 16-bit photos white)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        if image.mode == "F" and pixels.max() <= 1.0:
            top = 1.0
        grey = np.clip(pixels / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


# -- checking files before a run ----------------------------------------------------------
@dataclass(frozen=True)
class BadImage:
    path: str
    reason: str


def find_bad_images(root: Path, paths: Sequence[str], workers: int = 8) -> list[BadImage]:
    """Images that are missing or not an image at all (header check; full decoding happens
    in the loader, which skips and counts what fails there)."""

    def check(relpath: str) -> BadImage | None:
        try:
            with Image.open(root / relpath) as image:
                image.verify()
        except FileNotFoundError:
            return BadImage(relpath, "missing")
        except DECODE_ERRORS as exc:
            return BadImage(relpath, f"unreadable ({type(exc).__name__})")
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [bad for bad in pool.map(check, paths) if bad is not None]


def check_bad_share(bad: int, total: int, what: str = "images") -> None:
    if total and bad / total > MAX_BAD_SHARE:
        raise DataError(
            f"{bad:,} of {total:,} {what} are missing or unreadable "
            f"(more than {MAX_BAD_SHARE:.0%}); rescrape or re-import, then train again"
        )


# -- samples ------------------------------------------------------------------------------
class ImageDataset(Dataset[Any]):
    """Sample i: the image(s) ``views[i]`` (one path, or the V headings of one place) and
    the class ``labels[i]``. Indexed by ``(i, seed)`` pairs from ``EpochSampler``."""

    def __init__(
        self,
        root: Path,
        views: Sequence[Sequence[str]],
        labels: Sequence[int],
        pre: Preprocessing,
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        blank: Band | None = None,
        keep_only: bool = False,
    ) -> None:
        self.blank = blank  # an extra band blanked (or, with keep_only, kept) at eval time
        self.keep_only = keep_only
        self.root = Path(root)
        self.views = [tuple(v) for v in views]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.pre = pre
        self.transform = transform
        self.multi_view = any(len(v) > 1 for v in self.views)

    def __len__(self) -> int:
        return len(self.views)

    def _image(self, relpath: str) -> Image.Image:
        image = load_image(self.root / relpath, self.pre)
        if self.blank is not None:
            image = blank_band(image, self.blank, self.pre.fill, keep_only=self.keep_only)
        return image

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[torch.Tensor | None, int, int]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        if seed is not None and torch.utils.data.get_worker_info() is not None:
            # In a worker, augmentation draws from per-sample seeds (see module docstring).
            random.seed(seed)
            torch.manual_seed(seed)
        try:
            tensors = [self.transform(self._image(path)) for path in self.views[index]]
        except DECODE_ERRORS:
            return None, int(self.labels[index]), index
        image = torch.stack(tensors) if self.multi_view else tensors[0]
        return image, int(self.labels[index]), index


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    bad: int

    def pin_memory(self) -> Batch:
        return Batch(self.images.pin_memory(), self.labels.pin_memory(), self.indices, self.bad)


def collate(samples: list[tuple[torch.Tensor | None, int, int]]) -> Batch:
    """Stack the samples that decoded; count the ones that did not."""
    good = [s for s in samples if s[0] is not None]
    bad = len(samples) - len(good)
    if not good:
        return Batch(
            torch.empty(0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), bad
        )
    return Batch(
        torch.stack([s[0] for s in good]),  # type: ignore[misc]
        torch.tensor([s[1] for s in good], dtype=torch.long),
        torch.tensor([s[2] for s in good], dtype=torch.long),
        bad,
    )


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, seed)``: a seeded permutation per epoch (or the plain order), this
    rank's share of it under DDP, and a seed per sample derived from (seed, epoch, index)."""

    def __init__(
        self,
        size: int,
        *,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pad = pad  # training pads so every rank runs the same number of steps
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if self.shuffle:
            generator = np.random.default_rng([self.seed, self.epoch])
            order = generator.permutation(self.size).tolist()
        else:
            order = list(range(self.size))
        if self.world_size > 1:
            if self.pad and order:
                total = math.ceil(self.size / self.world_size) * self.world_size
                order = (order * math.ceil(total / len(order)))[:total]
            order = order[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]
        for index in self._order():
            yield index, int((int(base) * 1_000_003 + index) % (2**31 - 1))

    def __len__(self) -> int:
        if self.world_size > 1 and self.pad:
            return math.ceil(self.size / self.world_size)
        return len(self._order())


def default_workers(device: torch.device) -> int:
    """Loader processes: one per core beyond the first when a GPU computes; none on a CPU.

    On a CPU the model's compute already uses every core, and a worker process there
    stalls all of torch's threads at each synchronisation: measured with resnet18 at
    128 px on 2 cores, one worker reached 86% of the compute-only speed and decoding in
    the main process 94% (benchmarks/bench_train.py).
    """
    if device.type == "cpu":
        return 0
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    return max(1, min(8, cores - 1))


def inference_workers(requested: int | None, images: int, device: torch.device) -> int:
    """Loader processes for eval and predict: ``requested``, else none for a few images
    (starting a worker costs about a second), else at least one. Unlike training,
    inference on a CPU gains from one decoding process beside it (bench_predict.py:
    0.93 of the in-memory speed with one worker, 0.85 with none)."""
    if requested is not None:
        return requested
    if images < 64:
        return 0
    return max(1, default_workers(device))


def make_loader(
    dataset: ImageDataset,
    sampler: EpochSampler,
    batch_size: int,
    workers: int,
    *,
    training: bool,
    pin_memory: bool = False,
) -> DataLoader[Any]:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,  # type: ignore[arg-type]
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        # A last batch of one breaks BatchNorm in training; a dropped remainder is reshuffled.
        drop_last=training and len(sampler) > batch_size,
    )
