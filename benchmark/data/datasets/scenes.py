"""The synth-cub scenes: one patterned, coloured shape on a cluttered background.

A class is a (shape, colour, pattern) combination, so test classes are unseen combinations of
attribute values seen in training: the zero-shot setting of CUB, small enough to learn on a CPU.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "hexagon", "ring")
COLORS = {
    "red": (205, 35, 35),
    "orange": (240, 125, 15),
    "yellow": (225, 195, 10),
    "green": (35, 150, 50),
    "teal": (15, 140, 150),
    "blue": (35, 65, 205),
    "purple": (125, 45, 175),
    "black": (30, 30, 30),
}
PATTERNS = ("solid", "striped", "dotted", "checkered", "outlined")

_VALUES = {"shape": SHAPES, "color": tuple(COLORS), "pattern": PATTERNS}  # SceneClass fields

IMAGE_SIZE = 64
SCALE = 2  # drawn at twice the size, then box-downsampled for anti-aliasing
CANVAS = IMAGE_SIZE * SCALE


@dataclass(frozen=True)
class SceneClass:
    shape: str
    color: str
    pattern: str

    @property
    def title(self) -> str:
        """CUB-style class name without the number, e.g. `Red_Striped_Circle`."""
        return f"{self.color}_{self.pattern}_{self.shape}".title()


def attribute_names() -> tuple[str, ...]:
    """One binary attribute per value, named like CUB's (`has_shape::circle`)."""
    return (
        *(f"has_shape::{shape}" for shape in SHAPES),
        *(f"has_primary_color::{color}" for color in COLORS),
        *(f"has_pattern::{pattern}" for pattern in PATTERNS),
    )


def class_attributes(scene: SceneClass) -> np.ndarray:
    """(A,) int 0/1 vector in `attribute_names()` order."""
    present = {f"has_shape::{scene.shape}", f"has_primary_color::{scene.color}"}
    present.add(f"has_pattern::{scene.pattern}")
    return np.array([name in present for name in attribute_names()], dtype=np.int64)


def choose_classes(seed: int, count: int = 100) -> list[SceneClass]:
    """`count` distinct combinations in two halves, each value used <= ceil(half / n) per half.

    The cap is what spreads the values: with 8 shapes capped at 7 uses in 50 classes, each
    shape must appear at least once, so every value is seen in training and again at test.
    """
    rng = np.random.default_rng([seed, 7919])
    combos = [SceneClass(*combo) for combo in itertools.product(*_VALUES.values())]
    for _ in range(1000):  # a greedy fill rarely gets stuck; a fresh order then almost surely works
        order = [combos[i] for i in rng.permutation(len(combos))]
        first = _fill_half(order, count // 2) or []
        taken = set(first)
        second = _fill_half([combo for combo in order if combo not in taken], count - len(first))
        if first and second:
            return first + second
    raise ValueError(f"cannot choose {count} classes from {len(combos)} combinations")


def _fill_half(candidates: list[SceneClass], size: int) -> list[SceneClass] | None:
    """Take candidates in order while no value exceeds its cap; None if `size` is not reached."""
    caps = {name: -(-size // len(values)) for name, values in _VALUES.items()}
    used: dict[tuple[str, str], int] = {}
    chosen: list[SceneClass] = []
    for combo in candidates:
        keys = [(name, getattr(combo, name)) for name in _VALUES]
        if all(used.get(key, 0) < caps[key[0]] for key in keys):
            chosen.append(combo)
            used.update({key: used.get(key, 0) + 1 for key in keys})
        if len(chosen) == size:
            return chosen
    return None


def render_scene(scene: SceneClass, rng: np.random.Generator) -> Image.Image:
    """A 64x64 RGB image of `scene` at a random place, size and angle, with clutter behind it."""
    canvas = background(rng)
    draw_distractors(canvas, rng)
    jittered = np.clip(np.array(COLORS[scene.color]) + rng.normal(0, 10, 3), 0, 255)
    color = tuple(int(v) for v in jittered)
    polygons = _place_shape(scene.shape, rng)
    if scene.pattern != "outlined":
        canvas.paste(_texture(scene.pattern, color, rng), mask=fill_mask(polygons))
    # A rim in the class colour keeps the silhouette visible whatever the fill.
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        draw.polygon(polygon, outline=color, width=6 if scene.pattern == "outlined" else 3)
    small = np.asarray(canvas.reduce(SCALE), dtype=np.int16)
    noisy = small + rng.integers(-6, 7, small.shape, dtype=np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def background(rng: np.random.Generator) -> Image.Image:
    """A light base colour with smooth blotches: clutter that never outshines the shape."""
    base = rng.integers(185, 250, 3)
    blotches = rng.integers(110, 256, (4, 4, 3)) * 0.35 + base * 0.65
    return Image.fromarray(blotches.astype(np.uint8), "RGB").resize((CANVAS,) * 2, Image.BICUBIC)


def draw_distractors(canvas: Image.Image, rng: np.random.Generator) -> None:
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(3, 7)):
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = rng.uniform(0, CANVAS, 2)
        if rng.random() < 0.5:
            radius = rng.uniform(3, 9)
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color)
        else:
            angle, length = rng.uniform(0, np.pi), rng.uniform(15, 50)
            end = (x + length * np.cos(angle), y + length * np.sin(angle))
            draw.line(((x, y), end), fill=color, width=int(rng.integers(2, 5)))


def _place_shape(shape: str, rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """The shape's outline (and, for the ring, its hole) scaled, rotated and moved on the canvas."""
    radius = rng.uniform(0.22, 0.36) * CANVAS
    center = rng.uniform(radius + 4, CANVAS - radius - 4, 2)
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    outlines = [OUTLINES[shape]] + ([regular_polygon(48) * 0.55] if shape == "ring" else [])
    return [[tuple(p) for p in (o @ rotation.T * radius + center).tolist()] for o in outlines]


def fill_mask(polygons: list[list[tuple[float, float]]]) -> Image.Image:
    mask = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(mask)
    for index, polygon in enumerate(polygons):
        draw.polygon(polygon, fill=0 if index else 255)  # later polygons are holes
    return mask


def regular_polygon(corners: int, start: float = -np.pi / 2) -> np.ndarray:
    """Corners of a regular polygon of radius 1, first corner at `start` radians."""
    angles = start + 2 * np.pi * np.arange(corners) / corners
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star() -> np.ndarray:
    radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    return regular_polygon(10) * radii[:, None]


def _cross(half_width: float = 0.36) -> np.ndarray:
    w = half_width
    quarter = [(w, -1), (w, -w), (1, -w)]  # one arm's corners; the others are rotations of it
    turn = np.array([[0, -1], [1, 0]])
    return np.concatenate([np.array(quarter) @ np.linalg.matrix_power(turn, k).T for k in range(4)])


OUTLINES = {
    "circle": regular_polygon(48),
    "square": regular_polygon(4, np.pi / 4) * 0.95,
    "triangle": regular_polygon(3) * 1.1,
    "diamond": regular_polygon(4) * np.array([0.62, 1.0]),
    "star": _star() * 1.1,
    "cross": _cross(),
    "hexagon": regular_polygon(6),
    "ring": regular_polygon(48),
}


def _pattern_masks() -> dict[str, Image.Image]:
    """Where each pattern shows the class colour, drawn once with room to shift its phase."""
    rows, cols = np.mgrid[0 : CANVAS + _PERIOD, 0 : CANVAS + _PERIOD]
    on = {
        "solid": np.ones_like(rows, dtype=bool),
        "striped": rows // 6 % 2 == 0,
        "checkered": (rows // 10 + cols // 10) % 2 == 0,
        "dotted": (rows % 14 - 7) ** 2 + (cols % 14 - 7) ** 2 <= 4.5**2,
    }
    return {name: Image.fromarray(mask.astype(np.uint8) * 255, "L") for name, mask in on.items()}


_PERIOD = 140  # a common multiple of the pattern periods (12, 20, 14), so any shift tiles
_PATTERN_MASKS = _pattern_masks()


def _texture(pattern: str, color: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
    """The fill: the class colour where the pattern is on, a pale tint of it where it is off."""
    dx, dy = (int(v) for v in rng.integers(0, _PERIOD, 2))
    on = _PATTERN_MASKS[pattern].crop((dx, dy, dx + CANVAS, dy + CANVAS))
    pale = tuple(int(c + (255 - c) * 0.7) for c in color)
    size = (CANVAS, CANVAS)
    return Image.composite(Image.new("RGB", size, color), Image.new("RGB", size, pale), on)
