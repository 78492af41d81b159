"""Draw one street-level view of a simulated panorama as a JPEG.

The picture carries the place's signal the way real street view does: sky haze, soil and
vegetation colour, hills on the horizon, how built-up it is (smooth fields); the zone's
road paint, driving side, roofs, palette and signs (discrete); and the district's wall
colours, building heights, roof colour, tree crowns and landmarks (town-scale). The
distant skyline and the landmarks stand at fixed bearings on the ground, so panoramas
near each other see them at about the same azimuth. Per-image nuisance (light, colour
cast, clouds, clutter, sensor noise) keeps it from being trivially separable. Objects sit
at fixed azimuths around the panorama, so the view turns with the heading.
User-contributed photospheres get the photographer's name in a bottom strip.

Same arguments, same bytes: every random choice comes from a seeded generator.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from geotag.sim.geography import Place, hsv_to_rgb
from geotag.sim.shapes import LANDMARKS, TREE_REACH, TREES

JPEG_QUALITY = 88
SKY_BLUE = np.array([70.0, 130.0, 205.0])
HAZE_GREY = np.array([205.0, 205.0, 210.0])
SOILS = np.array([[170.0, 95.0, 60.0], [205.0, 180.0, 125.0], [95.0, 78.0, 58.0]])
VEGETATION = np.array([72.0, 128.0, 52.0])
#: How much of the ground vegetation covers at full greenness (the rest shows the soil).
GREEN_COVER = 0.75
#: Bare verges of the local soil either side of the road, as a share of its width.
VERGE = 0.3
#: A landmark's width in degrees of azimuth: 8.5 pixels across a 64 px, 90 degree view.
LANDMARK_WIDTH_DEG = 12.0
#: The horizon. Its profile is the place's distant skyline (this share of its variance)
#: plus hills of the panorama's own; hills rise to ``(LEVEL + SWING * profile) * (BASE +
#: RELIEF * relief)`` degrees, and fade toward the sky's haze by ``HILL_HAZE``.
DISTANT_HILLS = 0.85
HILL_LEVEL, HILL_SWING = 0.9, 0.45
HILL_BASE_DEG, HILL_RELIEF_DEG = 2.5, 20.0
HILL_HAZE = (0.1, 0.5)


@dataclass(frozen=True)
class Scene:
    """Everything a view depends on besides the camera."""

    place: Place
    layout_seed: tuple[int, ...]
    road_bearing: float
    strip_text: str | None = None


@dataclass(frozen=True)
class _Camera:
    heading: float
    fov: float
    width: int
    height: int
    horizon: float
    vfov: float

    def x(self, azimuth: np.ndarray | float) -> np.ndarray:
        """Column of an azimuth (degrees), possibly off-screen."""
        diff = (np.asarray(azimuth) - self.heading + 180.0) % 360.0 - 180.0
        return self.width / 2 + diff / self.fov * self.width

    def y(self, elevation: np.ndarray | float) -> np.ndarray:
        """Row of an elevation angle (degrees above the horizon)."""
        return self.horizon - np.asarray(elevation) / self.vfov * self.height

    def visible(self, azimuth: float, half_width: float) -> bool:
        diff = (azimuth - self.heading + 180.0) % 360.0 - 180.0
        return abs(diff) < self.fov / 2 + half_width


def render_view(
    scene: Scene, heading: float, pitch: float, fov: float, width: int, height: int
) -> bytes:
    vfov = fov * height / width
    camera = _Camera(
        heading=heading % 360.0,
        fov=fov,
        width=width,
        height=height,
        horizon=height / 2 + pitch / vfov * height,
        vfov=vfov,
    )
    place = scene.place
    layout = np.random.default_rng([*scene.layout_seed, 0x5CE])
    nuisance = np.random.default_rng(
        [
            *scene.layout_seed,
            0x0DD,
            round(heading * 10) % 3600,
            round(pitch * 10) + 900,
            round(fov * 10),
            width,
            height,
        ]
    )

    ground = _ground_colour(place)
    image = Image.fromarray(_sky_and_ground(camera, place, ground, nuisance))
    draw = ImageDraw.Draw(image)
    _mountains(draw, camera, place, ground, layout)
    _clouds(draw, camera, nuisance)
    _buildings(draw, camera, place, layout)
    _landmarks(draw, camera, place)
    _trees(draw, camera, place, layout)
    _road(draw, camera, place, scene.road_bearing)
    _sign(draw, camera, place, layout)
    _clutter(draw, camera, nuisance)
    pixels = _light_and_noise(np.asarray(image, dtype=np.float32), nuisance)
    image = Image.fromarray(pixels)
    if scene.strip_text:
        _photographer_strip(image, scene.strip_text)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


# -- background ----------------------------------------------------------------------------


def _soil_colour(place: Place) -> np.ndarray:
    """Bare soil's colour, from the soil field."""
    position = place.soil * (len(SOILS) - 1)
    low = min(int(position), len(SOILS) - 2)
    return SOILS[low] + (SOILS[low + 1] - SOILS[low]) * (position - low)


def _ground_colour(place: Place) -> np.ndarray:
    """Soil colour from the soil field, greened by vegetation."""
    soil = _soil_colour(place)
    return soil + (VEGETATION - soil) * (GREEN_COVER * place.greenness)


def _sky_and_ground(
    camera: _Camera, place: Place, ground: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    rows = np.arange(camera.height, dtype=np.float32)[:, None]
    horizon = camera.horizon
    haze = 0.15 + 0.75 * place.haze
    zenith = SKY_BLUE + (HAZE_GREY - SKY_BLUE) * haze * 0.6
    near_horizon = SKY_BLUE + (HAZE_GREY - SKY_BLUE) * min(1.0, haze + 0.35)
    t_sky = np.clip(rows / max(horizon, 1.0), 0, 1)
    sky = zenith + (near_horizon - zenith) * t_sky
    far_ground = ground + (HAZE_GREY - ground) * haze * 0.5
    t_ground = np.clip((rows - horizon) / max(camera.height - horizon, 1.0), 0, 1)
    earth = far_ground + (ground * 0.85 - far_ground) * t_ground
    # float32 throughout: render threads otherwise pay for fresh float64 pages each call.
    column = np.where(rows < horizon, sky, earth).astype(np.float32)
    picture = np.repeat(column[:, None, :], camera.width, axis=1)
    # Low-resolution mottling of the ground: fields, grass, dirt.
    texture = rng.normal(0, 9 + 10 * place.greenness, size=(8, 8, 1)).astype(np.float32)
    texture = (
        np.asarray(
            Image.fromarray(np.clip(texture[..., 0] + 128, 0, 255).astype(np.uint8)).resize(
                (camera.width, camera.height), Image.Resampling.BILINEAR
            ),
            dtype=np.float32,
        )[..., None]
        - 128
    )
    first_ground_row = min(max(math.ceil(horizon), 0), camera.height)
    picture[first_ground_row:] += texture[first_ground_row:]
    np.clip(picture, 0, 255, out=picture)
    return picture.astype(np.uint8)


def _mountains(
    draw: ImageDraw.ImageDraw,
    camera: _Camera,
    place: Place,
    ground: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """The horizon: the place's distant skyline plus hills of the panorama's own; peaks
    scale with the relief field."""
    orders = np.arange(1, 8)
    amplitude = rng.uniform(0.3, 1.0, len(orders)) / orders**0.7
    phase = rng.uniform(0, 2 * np.pi, len(orders))
    columns = np.arange(-1, camera.width + 2, 2, dtype=np.float64)
    azimuth = np.radians(camera.heading + (columns / camera.width - 0.5) * camera.fov)
    own = (amplitude[:, None] * np.sin(orders[:, None] * azimuth + phase[:, None])).sum(0)
    skyline = np.array(place.skyline)
    far_orders = np.arange(1, len(skyline) + 1)[:, None] * azimuth
    distant = (skyline[:, :1] * np.cos(far_orders) + skyline[:, 1:] * np.sin(far_orders)).sum(0)
    profile = math.sqrt(DISTANT_HILLS) * distant + math.sqrt(1.0 - DISTANT_HILLS) * own
    elevation = np.maximum(0.0, HILL_LEVEL + HILL_SWING * profile) * (
        HILL_BASE_DEG + HILL_RELIEF_DEG * place.relief
    )
    tops = camera.y(elevation)
    haze = HILL_HAZE[0] + HILL_HAZE[1] * place.haze
    colour = ground * 0.55 + (HAZE_GREY - ground * 0.55) * haze
    outline = [(float(x), float(y)) for x, y in zip(columns, tops, strict=True)]
    outline += [(camera.width + 2, camera.horizon + 1), (-1, camera.horizon + 1)]
    draw.polygon(outline, fill=_rgb(colour))


def _clouds(draw: ImageDraw.ImageDraw, camera: _Camera, rng: np.random.Generator) -> None:
    for _ in range(int(rng.integers(0, 5))):
        x = rng.uniform(0, camera.width)
        y = rng.uniform(0, max(camera.horizon * 0.7, 1))
        w, h = rng.uniform(0.1, 0.35) * camera.width, rng.uniform(0.03, 0.08) * camera.height
        shade = int(rng.integers(225, 252))
        draw.ellipse([x - w, y - h, x + w, y + h], fill=(shade, shade, shade))


# -- objects at fixed azimuths -------------------------------------------------------------


def _buildings(
    draw: ImageDraw.ImageDraw, camera: _Camera, place: Place, rng: np.random.Generator
) -> None:
    style, district = place.style, place.district
    palette = _district_palette(style.palette, district.hue_shift, district.wall_value)
    count = int(rng.poisson(0.5 + 16 * place.urban**1.3))
    azimuths = rng.uniform(0, 360, count)
    widths = rng.uniform(5, 22, count)
    heights = rng.uniform(2.5, 6 + 22 * place.urban, count) * district.height
    colours = rng.integers(0, len(palette), count)
    setbacks = rng.uniform(0.01, 0.07, count)
    order = np.argsort(-setbacks)  # far ones first, so near ones cover them
    for k in order:
        if not camera.visible(azimuths[k], widths[k] / 2):
            continue
        centre = float(camera.x(azimuths[k]))
        half = widths[k] / camera.fov * camera.width / 2
        base = camera.horizon + setbacks[k] * camera.height
        top = float(camera.y(heights[k])) + setbacks[k] * camera.height
        colour = np.array(palette[colours[k]], dtype=float)
        draw.rectangle([centre - half, top, centre + half, base], fill=_rgb(colour))
        _roof(draw, style.roof, district.roof_colour, centre, half, top, colour)
        _windows(draw, centre, half, top, base, colour)


@functools.lru_cache(maxsize=1024)
def _district_palette(
    palette: tuple[tuple[int, int, int], ...], hue_shift: float, value: float
) -> tuple[tuple[int, int, int], ...]:
    """The zone's wall colours as one district paints them: hue turned, lighter or darker."""
    out = []
    for r, g, b in palette:
        h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        out.append(hsv_to_rgb((h + hue_shift) % 1.0, s, min(1.0, v * value)))
    return tuple(out)


def _roof(
    draw: ImageDraw.ImageDraw,
    roof: str,
    roof_colour: tuple[int, int, int],
    centre: float,
    half: float,
    top: float,
    colour: np.ndarray,
) -> None:
    dark = _rgb(colour * 0.55)
    if roof == "pitched":
        draw.polygon(
            [(centre - half * 1.1, top), (centre + half * 1.1, top), (centre, top - half * 0.6)],
            fill=roof_colour,
        )
    elif roof == "dome":
        draw.pieslice(
            [centre - half * 0.7, top - half * 0.7, centre + half * 0.7, top + half * 0.7],
            180,
            360,
            fill=(230, 225, 210),
        )
    elif roof == "stepped":
        draw.rectangle(
            [centre - half * 0.6, top - half * 0.5, centre + half * 0.6, top],
            fill=_rgb(colour * 0.85),
        )
    else:
        draw.rectangle([centre - half, top - 2, centre + half, top], fill=dark)


def _windows(
    draw: ImageDraw.ImageDraw,
    centre: float,
    half: float,
    top: float,
    base: float,
    colour: np.ndarray,
) -> None:
    if half < 5 or base - top < 10:
        return
    glass = _rgb(colour * 0.35 + np.array([20.0, 30.0, 45.0]))
    step_x = max(half / 2.5, 4.0)
    step_y = max((base - top) / 4, 5.0)
    y = top + step_y * 0.5
    while y + step_y * 0.4 < base:
        x = centre - half + step_x * 0.5
        while x + step_x * 0.3 < centre + half:
            draw.rectangle([x, y, x + step_x * 0.45, y + step_y * 0.45], fill=glass)
            x += step_x
        y += step_y


def _trees(
    draw: ImageDraw.ImageDraw, camera: _Camera, place: Place, rng: np.random.Generator
) -> None:
    count = int(rng.poisson(0.5 + 14 * place.greenness**1.2))
    azimuths = rng.uniform(0, 360, count)
    sizes = rng.uniform(2, 7, count) * (0.6 + place.greenness)
    shades = rng.uniform(0.6, 1.1, count)
    dry = np.array([120.0, 115.0, 60.0])
    crown = (VEGETATION + (dry - VEGETATION) * (1 - place.greenness)) * place.district.crown_tint
    draw_tree = TREES[place.district.crown]
    for k in range(count):
        if not camera.visible(azimuths[k], sizes[k] * TREE_REACH):
            continue
        x = float(camera.x(azimuths[k]))
        r = sizes[k] / camera.fov * camera.width
        base = camera.horizon + 0.03 * camera.height
        draw_tree(draw, x, base, r, _rgb(crown * shades[k]))


def _landmarks(draw: ImageDraw.ImageDraw, camera: _Camera, place: Place) -> None:
    """The district's landmarks, each at its bearing from the panorama, drawn by shape."""
    district = place.district
    draw_landmark = LANDMARKS[district.landmark]
    width = LANDMARK_WIDTH_DEG / camera.fov * camera.width
    base = camera.horizon + 0.01 * camera.height
    for azimuth in place.landmarks:
        if camera.visible(azimuth, LANDMARK_WIDTH_DEG):
            draw_landmark(draw, float(camera.x(azimuth)), base, width, district.landmark_colour)


def _road(draw: ImageDraw.ImageDraw, camera: _Camera, place: Place, bearing: float) -> None:
    """The road we stand on, toward both of its directions, with the zone's paint."""
    style = place.style
    bottom = camera.height
    if camera.horizon >= bottom:
        return
    for direction in (bearing, bearing + 180.0):
        if not camera.visible(direction, 45.0):
            continue
        vanish = float(camera.x(direction))
        spread = camera.width * 0.95
        wide = spread * (1 + VERGE)
        draw.polygon(
            [
                (vanish - 1.5, camera.horizon),
                (vanish + 1.5, camera.horizon),
                (vanish + wide, bottom),
                (vanish - wide, bottom),
            ],
            fill=_rgb(_soil_colour(place) * 0.9),
        )
        draw.polygon(
            [
                (vanish - 1, camera.horizon),
                (vanish + 1, camera.horizon),
                (vanish + spread, bottom),
                (vanish - spread, bottom),
            ],
            fill=style.asphalt,
        )
        # The camera drives on one side; which one is a property of the zone.
        side = 1 if style.zone % 2 else -1
        centre_bottom = vanish + side * camera.width * 0.3
        _marking(draw, camera, vanish, centre_bottom, style.marking_pattern, style.marking_colour)


def _marking(
    draw: ImageDraw.ImageDraw,
    camera: _Camera,
    vanish: float,
    bottom_x: float,
    pattern: str,
    colour: tuple[int, int, int],
) -> None:
    if pattern == "none":
        return
    lines = [bottom_x]
    if pattern == "double":
        lines = [bottom_x - camera.width * 0.02, bottom_x + camera.width * 0.02]
    if pattern == "edges":
        lines = [vanish - camera.width * 0.8, vanish + camera.width * 0.8]
    depth = camera.height - camera.horizon
    segments = 12
    for line_x in lines:
        for s in range(segments):
            if pattern == "dashed" and s % 2:
                continue
            t0, t1 = (s / segments) ** 2, ((s + 1) / segments) ** 2
            quad = []
            for t, sign in ((t0, -1), (t1, -1), (t1, 1), (t0, 1)):
                x = vanish + (line_x - vanish) * t
                quad.append((x + sign * (0.3 + 4 * t), camera.horizon + depth * t))
            draw.polygon(quad, fill=colour)


def _sign(
    draw: ImageDraw.ImageDraw, camera: _Camera, place: Place, rng: np.random.Generator
) -> None:
    style = place.style
    azimuth = rng.uniform(0, 360)
    if not camera.visible(azimuth, 5):
        return
    x = float(camera.x(azimuth))
    size = camera.width * 0.045
    base = camera.horizon + 0.12 * camera.height
    top = camera.horizon - 0.08 * camera.height
    draw.rectangle([x - 1.5, top, x + 1.5, base], fill=style.pole_colour)
    shape = style.sign_shape
    box = [x - size, top - 2 * size, x + size, top]
    cx, cy = x, top - size
    if shape == "circle":
        draw.ellipse(box, fill=style.sign_colour, outline=(250, 250, 250))
    elif shape == "triangle":
        draw.polygon(
            [(cx, cy - size), (cx + size, cy + size), (cx - size, cy + size)],
            fill=style.sign_colour,
            outline=(250, 250, 250),
        )
    elif shape == "octagon":
        draw.regular_polygon((cx, cy, size), 8, fill=style.sign_colour)
    elif shape == "diamond":
        draw.regular_polygon((cx, cy, size), 4, fill=style.sign_colour)
    else:
        draw.rectangle(box, fill=style.sign_colour, outline=(20, 20, 20))


# -- nuisance ------------------------------------------------------------------------------


def _clutter(draw: ImageDraw.ImageDraw, camera: _Camera, rng: np.random.Generator) -> None:
    """Cars, people, bins: random objects that say nothing about the place."""
    for _ in range(int(rng.integers(0, 8))):
        x = rng.uniform(0, camera.width)
        y = rng.uniform(camera.horizon, camera.height)
        scale = (y - camera.horizon) / max(camera.height - camera.horizon, 1) + 0.1
        w = rng.uniform(0.03, 0.12) * camera.width * scale
        h = rng.uniform(0.03, 0.1) * camera.height * scale
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.rectangle([x - w, y - h, x + w, y], fill=colour)
        else:
            draw.ellipse([x - w / 2, y - h * 1.5, x + w / 2, y], fill=colour)


def _light_and_noise(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure, white balance and sensor noise differ from shot to shot."""
    gain = rng.uniform(0.6, 1.3)
    cast = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    noise = rng.normal(0, rng.uniform(3, 10), size=(*pixels.shape[:2], 1)).astype(np.float32)
    return np.clip(pixels * (gain * cast) + noise, 0, 255).astype(np.uint8)


def _photographer_strip(image: Image.Image, text: str) -> None:
    """The bottom band of a user-contributed photosphere: avatar and photographer's name.

    Like the contributor badge of real photospheres, the band carries the photographer's
    own colours (a dark tint behind their name and an avatar disc of another hue with
    their initial), the same on every image they took: a location cue that is easy for a
    network to read and says nothing about the scene. Two hues make a photographer's badge
    tell them apart even where the name is too small to read.
    """
    width, height = image.size
    band = max(6, round(height * 0.1))
    digest = hashlib.blake2b(text.encode(), digest_size=3).digest()
    # Vivid hues, dark enough for white lettering to stay legible.
    saturation = 0.65 + 0.3 * digest[2] / 255
    tint = np.array(hsv_to_rgb(digest[0] / 255, saturation, 0.45), dtype=float)
    avatar = np.array(hsv_to_rgb(digest[1] / 255, saturation, 0.85), dtype=float)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, height - band, width, height], fill=_rgb(tint))
    pad = max(1, band // 8)
    left = max(2, round(width * 0.02))
    draw.ellipse(
        [left, height - band + pad, left + band - 2 * pad, height - pad], fill=_rgb(avatar)
    )
    font = _font(max(4, round(band * 0.7)))
    middle = height - band / 2
    initial = text.removeprefix("© ")[:1]
    draw.text(
        (left + band / 2 - pad, middle), initial, font=font, fill=(255, 255, 255), anchor="mm"
    )
    draw.text((left + band + pad, middle), text, font=font, fill=(250, 250, 250), anchor="lm")


@functools.lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _rgb(colour: np.ndarray) -> tuple[int, int, int]:
    r, g, b = np.clip(colour, 0, 255)
    return (int(r), int(g), int(b))
