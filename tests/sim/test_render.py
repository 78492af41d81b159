from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score

from geotag.sim import Panorama, World
from geotag.sim.districts import LANDMARKS
from geotag.sim.render import Scene, render_view


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=0)


def pixels(jpeg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG"
        return np.asarray(image.convert("RGB"), dtype=float)


def panoramas(
    world: World, lat: float, lon: float, n: int, spread: float, seed: int, source: str = "default"
) -> list[Panorama]:
    rng = np.random.default_rng(seed)
    found: dict[str, Panorama] = {}
    for _ in range(n * 6):
        pano = world.nearest(
            lat + rng.uniform(-spread, spread), lon + rng.uniform(-spread, spread), 10_000, source
        )
        if pano is not None:
            found[pano.pano_id] = pano
        if len(found) >= n:
            break
    return list(found.values())


def test_render_is_a_jpeg_of_the_asked_size_and_deterministic(world: World) -> None:
    pano = panoramas(world, 12.97, 77.59, 1, 0.1, 0)[0]
    first = world.render(pano.pano_id, 45, -10, 100, 320, 180)
    assert first == world.render(pano.pano_id, 45, -10, 100, 320, 180)
    assert pixels(first).shape == (180, 320, 3)
    assert world.render(pano.pano_id, 0) == world.render(pano.pano_id, 360)


def test_the_view_turns_with_the_heading(world: World) -> None:
    pano = panoramas(world, 22.5, 80.0, 1, 0.5, 1)[0]
    views = [pixels(world.render(pano.pano_id, h)) for h in (0, 90, 180, 270)]
    for a in range(4):
        for b in range(a + 1, 4):
            assert np.abs(views[a] - views[b]).mean() > 5
    # A small turn shifts the picture sideways: the view at 10 degrees matches the view at 0
    # moved left by 10/90 of its width better than it matches the unshifted view.
    base, turned = (pixels(world.render(pano.pano_id, h)) for h in (0, 10))
    shift = round(256 * 10 / 90)
    sky = slice(0, 100)
    shifted_error = np.abs(base[sky, shift:] - turned[sky, :-shift]).mean()
    unshifted_error = np.abs(base[sky, shift:] - turned[sky, shift:]).mean()
    assert shifted_error < unshifted_error


def has_strip(image: np.ndarray) -> bool:
    """A flat, darkish band across the bottom tenth with white lettering on it, of another
    colour than the scene just above it (a grey road running on down is no strip)."""
    tenth = image.shape[0] // 10
    band = image[-tenth + 2 : -2].reshape(-1, 3)
    background = np.median(band, axis=0)
    above = np.median(image[-2 * tenth : -tenth - 2].reshape(-1, 3), axis=0)
    flat = (np.abs(band - background).max(axis=1) < 25).mean()
    lettering = (band.min(axis=1) > 200).sum()
    distinct = np.abs(background - above).max() > 25
    return bool(background.max() < 130 and flat > 0.5 and lettering > 20 and distinct)


def test_photographer_strip_only_on_user_contributed(world: World) -> None:
    panos = panoramas(world, 20.0, 78.0, 60, 3.0, 2)
    user = [p for p in panos if p.user_contributed]
    official = [p for p in panos if not p.user_contributed]
    assert user and official
    for pano in user[:8]:
        assert has_strip(pixels(world.render(pano.pano_id, 0))), pano
    for pano in official[:15]:
        assert not has_strip(pixels(world.render(pano.pano_id, 0))), pano
    for pano in panoramas(world, 20.0, 78.0, 30, 3.0, 3, source="outdoor"):
        assert not has_strip(pixels(world.render(pano.pano_id, 180))), pano


def test_a_photographers_strip_is_the_same_on_all_their_images(world: World) -> None:
    by_name: dict[str, list[Panorama]] = {}
    for pano in panoramas(world, 21.0, 79.0, 120, 1.5, 4):
        if pano.photographer:
            by_name.setdefault(pano.photographer, []).append(pano)
    name, own = max(by_name.items(), key=lambda item: len(item[1]))
    assert len(own) >= 2, name
    strips = [pixels(world.render(p.pano_id, h))[-20:] for p in own[:2] for h in (0, 180)]
    backgrounds = [np.median(s.reshape(-1, 3), axis=0) for s in strips]
    assert np.ptp(backgrounds, axis=0).max() < 40, "one colour per photographer"


def test_location_is_learnable_from_pixels(world: World) -> None:
    """A linear probe on tiny thumbnails tells six places apart far above chance."""
    places = [(30.5, 76.0), (26.5, 73.0), (22.0, 86.0), (19.0, 75.0), (13.0, 78.0), (25.5, 92.0)]
    features, labels, groups = [], [], []
    for label, (lat, lon) in enumerate(places):
        for pano in panoramas(world, lat, lon, 25, 0.6, label, source="outdoor"):
            for heading in (0, 120, 240):
                image = Image.open(io.BytesIO(world.render(pano.pano_id, heading, 0, 90, 64, 64)))
                small = np.asarray(image.resize((8, 8), Image.BILINEAR), dtype=float) / 255
                features.append(small.ravel())
                labels.append(label)
                groups.append(pano.pano_id)
    probe = LogisticRegression(max_iter=2000, C=0.5)
    scores = cross_val_score(
        probe, np.array(features), np.array(labels), groups=groups, cv=GroupKFold(n_splits=4)
    )
    chance = 1 / len(places)
    assert scores.mean() > 2.5 * chance
    assert scores.mean() < 0.999, "not trivially separable"


def scene_at(world: World, lat: float, lon: float, seed: int = 0) -> Scene:
    return Scene(world.geography.place(lat, lon), (world.seed, seed), road_bearing=30.0)


def test_the_district_shapes_the_view(world: World) -> None:
    """Same fields, zone, layout and nuisance; only the district differs: the buildings,
    trees and landmarks must change, so a renderer that ignored the district would fail."""
    scene = scene_at(world, 12.97, 77.59)
    place = scene.place
    others = [
        world.geography.district_style(12.97 + dy, 77.59 + dx)
        for dy, dx in ((0.5, 0.0), (0.0, 0.7), (-0.6, -0.4), (1.0, 1.0))
    ]
    others = [o for o in others if o.crown != place.district.crown][:2]
    assert others, "nearby districts with other trees"
    base = pixels(render_view(scene, 0, 0, 90, 128, 128))
    assert render_view(scene, 0, 0, 90, 128, 128) == render_view(scene, 0, 0, 90, 128, 128)
    for other in others:
        moved = Scene(replace(place, district=other), scene.layout_seed, scene.road_bearing)
        changed = np.abs(pixels(render_view(moved, 0, 0, 90, 128, 128)) - base).max(axis=2) > 30
        # Above the road, where buildings, trees and landmarks stand, not in the sky's top.
        assert changed[30:75].mean() > 0.03
        assert changed[:15].mean() < 0.01


def landmark_mask(world: World, kind: str, size: int = 64) -> np.ndarray:
    """Pixels a landmark of ``kind`` straight ahead changes in an otherwise bare view."""
    place = world.geography.place(23.0, 79.0)
    bare = replace(place, urban=0.0, greenness=0.0, landmarks=())
    district = replace(place.district, landmark=kind, landmark_colour=(150, 150, 155))
    ahead = replace(bare, district=district, landmarks=(0.0,))
    images = [
        pixels(render_view(Scene(p, (world.seed, 5), road_bearing=90.0), 0, 0, 90, size, size))
        for p in (bare, ahead)
    ]
    return np.abs(images[1] - images[0]).max(axis=2) > 25


def test_a_landmark_stands_at_its_bearing_at_least_6_px_wide(world: World) -> None:
    for kind in LANDMARKS:
        mask = landmark_mask(world, kind)
        rows, columns = np.nonzero(mask)
        assert len(rows) > 0, kind
        assert columns.max() - columns.min() + 1 >= 6, kind
        assert abs(np.median(columns) - 32) <= 3, kind  # straight ahead: the middle column
        assert rows.max() <= 34, f"{kind} stands on the horizon, above the road"


def test_landmarks_are_told_apart_by_shape(world: World) -> None:
    masks = {kind: landmark_mask(world, kind, size=128) for kind in LANDMARKS}
    for a in LANDMARKS:
        for b in LANDMARKS:
            if a < b:
                overlap = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
                assert overlap < 0.6, (a, b, overlap)
