"""A generated "Shapes" image set: drawn offline, deterministic from a seed.

Each image holds one shape whose position, size and rotation are jittered, plus
pixel noise. Because a shape may sit anywhere in the frame, a dense network that
sees pixels at fixed places struggles, while a convolutional network — which
slides the same filters everywhere — does not: the article's point, made live.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

SHAPE_NAMES = ("circle", "square", "triangle", "cross", "star", "ring")
_SUPERSAMPLE = 4  # draw large, then shrink: smooth edges at small sizes


def _polygon(sides: int, radius: float, rotation: float, centre: tuple[float, float]):
    cx, cy = centre
    return [
        (
            cx + radius * math.cos(rotation + 2 * math.pi * k / sides),
            cy + radius * math.sin(rotation + 2 * math.pi * k / sides),
        )
        for k in range(sides)
    ]


def _star(radius: float, rotation: float, centre: tuple[float, float]):
    cx, cy = centre
    points = []
    for k in range(10):
        r = radius if k % 2 == 0 else radius * 0.45
        angle = rotation + math.pi * k / 5
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return points


def _draw_shape(draw: ImageDraw.ImageDraw, name: str, centre, radius, rotation, fill) -> None:
    cx, cy = centre
    if name == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
    elif name == "ring":
        width = max(2, int(radius * 0.35))
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=fill, width=width)
    elif name == "square":
        draw.polygon(_polygon(4, radius * 1.15, rotation + math.pi / 4, centre), fill=fill)
    elif name == "triangle":
        draw.polygon(_polygon(3, radius * 1.15, rotation - math.pi / 2, centre), fill=fill)
    elif name == "star":
        draw.polygon(_star(radius * 1.2, rotation - math.pi / 2, centre), fill=fill)
    elif name == "cross":
        arm = radius * 0.32
        for angle in (rotation, rotation + math.pi / 2):
            dx, dy = math.cos(angle), math.sin(angle)
            px, py = -dy * arm, dx * arm
            draw.polygon(
                [
                    (cx - dx * radius + px, cy - dy * radius + py),
                    (cx + dx * radius + px, cy + dy * radius + py),
                    (cx + dx * radius - px, cy + dy * radius - py),
                    (cx - dx * radius - px, cy - dy * radius - py),
                ],
                fill=fill,
            )
    else:
        raise ValueError(f"Unknown shape {name!r}; choose from {', '.join(SHAPE_NAMES)}.")


def _draw_clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, big: int, colour: bool) -> None:
    """Distractors behind the shape: a few strokes and open arcs, dimmer than shapes, never a whole shape."""

    def tone():
        return tuple(int(v) for v in rng.integers(40, 150, 3)) if colour else int(rng.integers(50, 140))

    for _ in range(int(rng.integers(2, 5))):
        start, end = rng.uniform(0, big, 2), rng.uniform(0, big, 2)
        draw.line([tuple(start), tuple(end)], fill=tone(), width=int(rng.integers(big // 40 + 1, big // 16 + 2)))
    for _ in range(int(rng.integers(1, 3))):
        cx, cy, r = *rng.uniform(0, big, 2), big * rng.uniform(0.05, 0.15)
        first = float(rng.uniform(0, 360))
        draw.arc([cx - r, cy - r, cx + r, cy + r], first, first + float(rng.uniform(60, 200)), fill=tone(), width=big // 24 + 1)


def _render_one(rng: np.random.Generator, name: str, size: int, colour: bool, clutter: bool = False) -> np.ndarray:
    big = size * _SUPERSAMPLE
    if colour:
        background = tuple(int(v) for v in rng.integers(0, 90, 3))
        fill = tuple(int(v) for v in rng.integers(120, 256, 3))
        canvas = Image.new("RGB", (big, big), background)
    else:
        fill = int(rng.integers(170, 256))
        canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    if clutter:
        _draw_clutter(draw, rng, big, colour)
    radius = big * (rng.uniform(0.10, 0.34) if clutter else rng.uniform(0.14, 0.30))  # clutter: a wider range of sizes too
    margin = radius * 1.2
    centre = (rng.uniform(margin, big - margin), rng.uniform(margin, big - margin))
    _draw_shape(draw, name, centre, radius, rng.uniform(0, 2 * math.pi), fill)
    pixels = np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    pixels += rng.normal(0.0, 12.0, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def generate_shapes(
    count_per_class: int = 500,
    image_size: int = 28,
    colour: bool = False,
    seed: int = 0,
    class_names: tuple[str, ...] = SHAPE_NAMES,
    clutter: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count_per_class`` images of each shape (with ``clutter``: behind distractor strokes, in more sizes).

    Returns:
        ``(images, labels)``: uint8 images of shape (N, size, size, 1 or 3) and
        int labels indexing ``class_names``, interleaved by class.
    """
    if count_per_class < 1:
        raise ValueError("Shapes needs at least one image per class.")
    if not 8 <= image_size <= 128:
        raise ValueError("Shapes image size must be between 8 and 128 pixels.")
    rng = np.random.default_rng(seed)
    channels = 3 if colour else 1
    images = np.empty((count_per_class * len(class_names), image_size, image_size, channels), np.uint8)
    labels = np.empty(count_per_class * len(class_names), np.int64)
    index = 0
    for _ in range(count_per_class):
        for label, name in enumerate(class_names):
            images[index] = _render_one(rng, name, image_size, colour, clutter).reshape(image_size, image_size, channels)
            labels[index] = label
            index += 1
    return images, labels
