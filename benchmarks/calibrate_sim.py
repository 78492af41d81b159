"""Calibrate the simulated world: is location learnable from its pixels, but not trivially?

A small CNN is trained from scratch on the CPU on views of about 40 grid cells and scored
on held-out panoramas (panoramas never split between train and test). The world is
calibrated when top-1 accuracy is several times chance and well below 100%.

It also shows the shortcut: with user-contributed photospheres included, a model can read
the photographer strip, so accuracy on those images jumps; with the bottom strip blanked
it cannot.

Run it with ``make calibrate`` or::

    .venv/bin/python benchmarks/calibrate_sim.py [--country India] [--cell-km 280]
        [--per-cell 60] [--minutes 3] [--size 64] [--seed 0]

It prints a table and exits 0. This is a script, not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import io
import time
from dataclasses import dataclass

import numpy as np
import shapely

from geotag.geo.grid import make_grid
from geotag.geo.regions import country_region
from geotag.geo.sample import Quota, cell_pieces, sample_points
from geotag.sim import World

HEADINGS = (0.0, 90.0, 180.0, 270.0)
RADIUS_M = 5000.0


@dataclass
class Views:
    pixels: np.ndarray  # (n, 3, size, size) float32 in [0, 1]
    label: np.ndarray  # class index per view
    group: np.ndarray  # panorama index per view
    user: np.ndarray  # user-contributed photosphere?


def collect_views(args: argparse.Namespace) -> tuple[Views, int]:
    """Sample points per cell, snap each to the nearest panorama, render its headings."""
    from PIL import Image

    grid = make_grid(country_region(args.country), args.cell_km)
    pieces = cell_pieces(
        grid.cells_in_plane(), grid.cells["region_fraction"].to_numpy(), grid.region_projected
    )
    points = sample_points(
        grid.cells["cell_id"].to_numpy(),
        pieces,
        grid.projection,
        Quota(per_cell=args.per_cell),
        seed=args.seed,
    )
    world = World(args.seed)
    pixels, label, group, user, seen = [], [], [], [], {}
    for lat, lon in points[["lat", "lon"]].itertuples(index=False):
        pano = world.nearest(lat, lon, RADIUS_M)
        if pano is None or pano.pano_id in seen:
            continue
        seen[pano.pano_id] = len(seen)
        # Label by where the panorama really is; skip ones that snapped out of the grid.
        x, y = grid.projection.forward(np.array([pano.lon]), np.array([pano.lat]))
        hit = np.flatnonzero(shapely.contains_xy(pieces, x[0], y[0]))
        if len(hit) == 0:
            continue
        for heading in HEADINGS:
            jpeg = world.render(pano.pano_id, heading, 0, 90, args.size, args.size)
            with Image.open(io.BytesIO(jpeg)) as image:
                pixels.append(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
            label.append(int(hit[0]))
            group.append(seen[pano.pano_id])
            user.append(pano.user_contributed)
    classes = np.unique(label)
    remap = {c: k for k, c in enumerate(classes)}
    views = Views(
        pixels=np.stack(pixels).transpose(0, 3, 1, 2).copy(),
        label=np.array([remap[c] for c in label]),
        group=np.array(group),
        user=np.array(user),
    )
    return views, len(classes)


def small_cnn(classes: int):  # type: ignore[no-untyped-def]
    import torch.nn as nn

    def block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )

    return nn.Sequential(
        block(3, 24),
        block(24, 48),
        block(48, 96),
        block(96, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(128, classes),
    )


def train_and_score(
    views: Views,
    classes: int,
    train: np.ndarray,
    test: np.ndarray,
    minutes: float,
    mask_bottom: float,
    seed: int,
) -> dict[str, float]:
    import torch

    torch.manual_seed(seed)
    x = torch.from_numpy(views.pixels)
    if mask_bottom > 0:
        x = x.clone()
        x[..., int(x.shape[-2] * (1 - mask_bottom)) :, :] = 0.0
    y = torch.from_numpy(views.label)
    model = small_cnn(classes)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    deadline = time.monotonic() + minutes * 60
    epochs = 0
    while time.monotonic() < deadline:
        model.train()
        for batch in np.array_split(rng.permutation(train), max(1, len(train) // 64)):
            optimiser.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimiser.step()
            if time.monotonic() >= deadline:
                break
        epochs += 1
    model.eval()
    with torch.no_grad():
        predicted = torch.cat(
            [model(x[chunk]).argmax(1) for chunk in np.array_split(test, max(1, len(test) // 256))]
        ).numpy()
    correct = predicted == views.label[test]
    user = views.user[test]
    return {
        "top1": float(correct.mean()),
        "top1_official": float(correct[~user].mean()) if (~user).any() else float("nan"),
        "top1_user": float(correct[user].mean()) if user.any() else float("nan"),
        "epochs": float(epochs),
    }


def strip_probe(views: Views, train: np.ndarray, test: np.ndarray) -> float:
    """Accuracy of 1-nearest-neighbour on the strip colour of user-contributed views.

    High when the strip gives the location away: the shortcut exists, whatever a CNN makes
    of it in a few minutes.
    """
    from sklearn.neighbors import KNeighborsClassifier

    band = max(1, round(views.pixels.shape[-2] * 0.1))
    strip = views.pixels[..., -band:, :].mean(axis=(-2, -1))  # mean colour of the band
    train, test = train[views.user[train]], test[views.user[test]]
    if len(train) == 0 or len(test) == 0:
        return float("nan")
    probe = KNeighborsClassifier(n_neighbors=1).fit(strip[train], views.label[train])
    return float((probe.predict(strip[test]) == views.label[test]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--country", default="India")
    parser.add_argument("--cell-km", type=float, default=280.0)
    parser.add_argument("--per-cell", type=int, default=60)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    views, classes = collect_views(args)
    collected = time.perf_counter() - started
    panoramas = np.unique(views.group)
    rng = np.random.default_rng(args.seed)
    test_groups = rng.choice(panoramas, size=len(panoramas) // 5, replace=False)
    is_test = np.isin(views.group, test_groups)
    train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    print(
        f"{args.country}, {classes} cells of {args.cell_km:g} km, {len(panoramas)} panoramas, "
        f"{len(views.label)} views at {args.size}px ({views.user.mean():.0%} user-contributed)"
        f", rendered in {collected:.0f} s; chance = {1 / classes:.1%}"
    )
    probe = strip_probe(views, train, test)
    print(f"strip colour alone (1-NN, user-contributed views): {probe:.1%} top-1")
    print(f"{'run':<34} {'top-1':>7} {'official':>9} {'user':>7} {'x chance':>9} {'epochs':>7}")
    for name, mask in (("as scraped (strips visible)", 0.0), ("bottom 12% masked", 0.12)):
        score = train_and_score(views, classes, train, test, args.minutes, mask, args.seed)
        print(
            f"{name:<34} {score['top1']:>7.1%} {score['top1_official']:>9.1%} "
            f"{score['top1_user']:>7.1%} {score['top1'] * classes:>9.1f} "
            f"{score['epochs']:>7.0f}"
        )


if __name__ == "__main__":
    main()
