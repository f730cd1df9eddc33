"""Scenes to pixels: antialiased shapes on a varied background, encoded as reproducible JPEG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from xlr.data.synthetic.scenes import SHAPES, Scene, Thing

JPEG_QUALITY = 90
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (240, 220, 40), "orange": (245, 140, 20), "purple": (140, 50, 180),
    "white": (242, 242, 242), "black": (18, 18, 18),
}  # fmt: skip
_RADIUS = {"small": 0.075, "large": 0.13}  # fraction of the image side
_ANCHORS = {  # centre of an object or group and whether a group spreads vertically there
    "left": (0.25, 0.5, True), "right": (0.75, 0.5, True),
    "top": (0.5, 0.25, False), "bottom": (0.5, 0.75, False),
}  # fmt: skip
_SUPERSAMPLE = 4  # draw masks at 4x and box-filter down: antialiased edges at 16-128 px


def _object_centres(
    position: str, count: int, radius: float, rng: np.random.Generator
) -> np.ndarray:
    """Centres (fractions of the side) of ``count`` objects: a column at the left or right, a
    row at the top or bottom, so the group stays on its side of the reference."""
    ax, ay, vertical = _ANCHORS[position]
    offsets = (np.arange(count) - (count - 1) / 2) * 2.3 * radius
    centres = np.zeros((count, 2)) + (ax, ay)
    centres[:, 1 if vertical else 0] += offsets
    centres += rng.uniform(-0.03, 0.03, size=centres.shape)
    return np.clip(centres, radius, 1 - radius)


def _star(x: float, y: float, r: float) -> list[tuple[float, float]]:
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, r, 0.42 * r)
    return list(zip(x + radii * np.cos(angles), y + radii * np.sin(angles), strict=True))


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float) -> None:
    """Fill one shape of radius ``r`` px centred at (x, y) into a mask."""
    if shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    elif shape == "square":
        s = 0.85 * r
        draw.rectangle((x - s, y - s, x + s, y + s), fill=255)
    elif shape == "triangle":
        draw.polygon([(x, y - r), (x + 0.95 * r, y + 0.8 * r), (x - 0.95 * r, y + 0.8 * r)], 255)
    elif shape == "star":
        draw.polygon(_star(x, y, r), fill=255)
    elif shape == "cross":
        t = 0.33 * r
        draw.rectangle((x - r, y - t, x + r, y + t), fill=255)
        draw.rectangle((x - t, y - r, x + t, y + r), fill=255)
    elif shape == "heart":
        lobe = 0.5 * r
        for cx in (x - lobe, x + lobe):
            draw.ellipse((cx - lobe, y - 0.3 * r - lobe, cx + lobe, y - 0.3 * r + lobe), fill=255)
        draw.polygon([(x - 0.97 * r, y - 0.15 * r), (x + 0.97 * r, y - 0.15 * r), (x, y + r)], 255)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A grey, slightly tinted linear gradient: varied, and in contrast with every colour."""
    base = rng.uniform(75.0, 175.0) + rng.uniform(-14.0, 14.0, size=3)
    angle, amplitude = rng.uniform(0.0, 2 * np.pi), rng.uniform(0.0, 35.0)
    ramp = np.linspace(-0.5, 0.5, size)
    gradient = amplitude * (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])
    return base[None, None, :] + gradient[:, :, None]


def _draw_thing(
    pixels: np.ndarray, thing: Thing, position: str, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Paint ``count`` copies of ``thing`` at ``position`` over ``pixels``, size and colour
    jittered once for the group (its objects are identical)."""
    size = pixels.shape[0]
    big = size * _SUPERSAMPLE
    radius = _RADIUS[thing.size] * rng.uniform(0.9, 1.1)
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    for cx, cy in _object_centres(position, count, radius, rng):
        _draw_shape(draw, thing.shape, cx * big, cy * big, radius * big)
    alpha = np.asarray(mask.reduce(_SUPERSAMPLE), dtype=np.float32)[:, :, None] / 255.0
    colour = np.asarray(PALETTE[thing.colour], dtype=np.float32) + rng.uniform(-12, 12, size=3)
    return pixels * (1.0 - alpha) + colour * alpha


def render_scene(scene: Scene, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``scene`` as ``uint8 [image_size, image_size, 3]``: the group on its side, the
    reference on the other, antialiased on a varied background, colour and size jittered, plus
    pixel noise, so no two images are identical."""
    group_at, reference_at = scene.positions
    pixels = _background(image_size, rng)
    pixels = _draw_thing(pixels, scene.group, group_at, scene.count, rng)
    pixels = _draw_thing(pixels, scene.reference, reference_at, 1, rng)
    pixels += rng.normal(0.0, 4.0, size=pixels.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """JPEG at a fixed quality: Pillow's encoder is deterministic, so bytes are reproducible."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
