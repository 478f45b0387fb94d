"""synth-inshop: a small synthetic twin of DeepFashion In-Shop, written in In-Shop's exact layout.

An item is a synth-cub scene (shape, colour, pattern) plus a small mark of its own, so items
that share every attribute still differ; its 3-6 images are views of it (another place, size,
angle and background each). Half of the items train; each test item's views are split between
query and gallery. It is read back by the real In-Shop loader and needs no download.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from benchmark.data.datasets.generated import (
    ensure_generated,
    marker_text,
    read_generated,
    write_lines,
)
from benchmark.data.datasets.inshop import load_inshop
from benchmark.data.datasets.scenes import COLORS, PATTERNS, SHAPES, SceneClass, render_scene
from benchmark.errors import BenchError
from benchmark.specs import DatasetSpec, Splits

GENERATOR_VERSION = "1"  # bump whenever the output of generate_synth_inshop changes
NUM_ITEMS = 400
VIEWS_PER_ITEM = (3, 6)
UNKNOWN_ODDS = 0.03  # chance that one (item, attribute) value is written as 0, unknown
MARK_SHAPES = ("dot", "square", "triangle", "bar")
MARK_COLORS = {
    "white": (255, 255, 255),
    "magenta": (230, 0, 180),
    "cyan": (0, 200, 230),
    "lime": (140, 230, 0),
    "navy": (10, 20, 90),
    "brown": (120, 70, 20),
}
# Views as In-Shop names them: <nn>_<pose number>_<pose>.jpg
POSES = ((1, "front"), (2, "side"), (3, "back"), (4, "full"), (7, "additional"))
ATTRIBUTE_GROUPS = (("shape", SHAPES), ("color", tuple(COLORS)), ("pattern", PATTERNS))
REPEATED_ROWS = 2  # items whose attribute row is written twice, as the real file is said to do
_ITEMS, _LAYOUT, _RENDER, _ANNOTATE = 0, 1, 2, 3  # separate random streams


class Item(NamedTuple):
    scene: SceneClass
    mark_shape: str
    mark_color: str


class _Image(NamedTuple):
    item_id: int
    name: str  # below Img/, starting with img/
    status: str


def generate_synth_inshop(target: Path, seed: int = 0) -> Path:
    """Write the In-Shop layout into the new folder `target` and return it.

    Everything comes from generators seeded by (seed, item id, view): the same seed gives
    byte-identical files on every run.
    """
    target = Path(target)
    if target.exists():
        raise BenchError(f"{target} already exists: delete it or choose another target.")
    items = choose_items(seed, NUM_ITEMS)
    images = _write_images(target, items, seed)
    _write_lists(target, items, images)
    _write_attributes(target / "Anno", items, seed)
    (target / ".complete").write_text(_marker(seed))  # last, so its presence means complete
    return target


def ensure_synth_inshop(data_root: Path, seed: int = 0) -> Path:
    """`data_root/synth-inshop`, generated first if needed (atomically: temp dir, renamed)."""
    return ensure_generated(
        data_root,
        "synth-inshop",
        Path(".complete"),
        _marker(seed),
        lambda folder: generate_synth_inshop(folder, seed),
    )


def load_synth_inshop(data_root: Path) -> Splits:
    """synth-inshop's splits, read by the In-Shop loader (generated first if needed)."""
    folder = ensure_synth_inshop(data_root)
    return read_generated("synth-inshop", folder, lambda: load_inshop(folder))


def _marker(seed: int) -> str:
    return marker_text("synth-inshop", GENERATOR_VERSION, seed)


def choose_items(seed: int, count: int) -> list[Item]:
    """`count` distinct (scene, mark) items, item id = position + 1."""
    scenes = [SceneClass(*combo) for combo in itertools.product(SHAPES, COLORS, PATTERNS)]
    marks = list(itertools.product(MARK_SHAPES, MARK_COLORS))
    rng = np.random.default_rng([seed, _ITEMS])
    chosen = rng.choice(len(scenes) * len(marks), size=count, replace=False).tolist()
    return [Item(scenes[i // len(marks)], *marks[i % len(marks)]) for i in chosen]


def attribute_names() -> tuple[str, ...]:
    """`shape circle`, ..., `color red`, ..., `pattern solid`, ...: names with a space."""
    return tuple(f"{group} {value}" for group, values in ATTRIBUTE_GROUPS for value in values)


def item_codes(item: Item, rng: np.random.Generator) -> np.ndarray:
    """(A,) int codes: 1 present, -1 absent, 0 unknown (with probability UNKNOWN_ODDS)."""
    present = {f"shape {item.scene.shape}", f"color {item.scene.color}"}
    present.add(f"pattern {item.scene.pattern}")
    codes = np.array([1 if name in present else -1 for name in attribute_names()])
    return np.where(rng.random(len(codes)) < UNKNOWN_ODDS, 0, codes)


def render_view(item: Item, rng: np.random.Generator) -> Image.Image:
    """One 64x64 view: the item's scene, then its mark somewhere on top."""
    image = render_scene(item.scene, rng)
    radius = rng.uniform(3.5, 5.0)
    center = rng.uniform(radius + 2, image.width - radius - 2, 2)
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    outline = _MARK_OUTLINES[item.mark_shape] @ rotation.T * radius + center
    ImageDraw.Draw(image).polygon(
        [tuple(point) for point in outline.tolist()],
        fill=MARK_COLORS[item.mark_color],
        outline=(20, 20, 20),  # dark rim: the mark stands out whatever is behind it
    )
    return image


def _unit_polygon(corners: int) -> np.ndarray:
    angles = 2 * np.pi * np.arange(corners) / corners
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


_MARK_OUTLINES = {
    "dot": _unit_polygon(16),
    "square": _unit_polygon(4),
    "triangle": _unit_polygon(3),
    "bar": np.array([[-1.3, -0.45], [1.3, -0.45], [1.3, 0.45], [-1.3, 0.45]]),
}


# --- writing the In-Shop layout --------------------------------------------------------------


def _item_name(item_id: int) -> str:
    return f"id_{item_id:08d}"


def _view_name(view: int) -> str:
    pose_number, pose = POSES[view % len(POSES)]
    return f"{view // len(POSES) + 1:02d}_{pose_number}_{pose}.jpg"


def _write_images(target: Path, items: list[Item], seed: int) -> list[_Image]:
    """Render every view, item by item; half of the items (at random) train."""
    in_train = np.zeros(len(items), dtype=bool)
    in_train[np.random.default_rng([seed, _LAYOUT]).permutation(len(items))[: len(items) // 2]] = 1
    images: list[_Image] = []
    for item_id, item in enumerate(items, start=1):
        layout = np.random.default_rng([seed, item_id, _LAYOUT])
        gender = ("MEN", "WOMEN")[layout.integers(2)]
        folder = f"img/{gender}/{_category(item.scene.shape)}/{_item_name(item_id)}"
        (target / "Img" / folder).mkdir(parents=True)
        count = int(layout.integers(*VIEWS_PER_ITEM, endpoint=True))
        statuses = _statuses(bool(in_train[item_id - 1]), count, layout)
        for view, status in enumerate(statuses):
            name = f"{folder}/{_view_name(view)}"
            rng = np.random.default_rng([seed, item_id, view, _RENDER])
            render_view(item, rng).save(target / "Img" / name, quality=90)
            images.append(_Image(item_id, name, status))
    return images


def _category(shape: str) -> str:
    return shape.title() + ("es" if shape.endswith("s") else "s")


def _statuses(train: bool, count: int, rng: np.random.Generator) -> list[str]:
    """All `train`, or a random 1..count-1 of the views as query and the rest as gallery."""
    if train:
        return ["train"] * count
    queries = set(rng.permutation(count)[: rng.integers(1, count)].tolist())
    return ["query" if view in queries else "gallery" for view in range(count)]


def _write_lists(target: Path, items: list[Item], images: list[_Image]) -> None:
    (target / "Eval").mkdir()
    write_lines(
        target / "Eval" / "list_eval_partition.txt",
        [
            str(len(images)),
            "image_name item_id evaluation_status",
            *(f"{i.name} {_item_name(i.item_id)} {i.status}" for i in images),
        ],
    )
    (target / "Anno").mkdir()
    ids = [_item_name(item_id) for item_id in range(1, len(items) + 1)]
    write_lines(target / "Anno" / "list_item_inshop.txt", [str(len(ids)), *ids])


def _write_attributes(anno: Path, items: list[Item], seed: int) -> None:
    names = attribute_names()
    width = max(len(name) for name in names) + 4
    # Names padded, then the attribute type (its group), as in DeepFashion's list_attr_cloth.txt.
    types = [group for group, (_, values) in enumerate(ATTRIBUTE_GROUPS, 1) for _ in values]
    write_lines(
        anno / "list_attr_cloth.txt",
        [
            str(len(names)),
            "attribute_name  attribute_type",
            *(f"{name:<{width}}{kind}" for name, kind in zip(names, types, strict=True)),
        ],
    )
    rows = []
    for item_id, item in enumerate(items, start=1):
        codes = item_codes(item, np.random.default_rng([seed, item_id, _ANNOTATE]))
        rows.append(f"{_item_name(item_id)} " + " ".join(str(c) for c in codes.tolist()))
    rows += rows[:REPEATED_ROWS]  # line 1 still counts the items, not the rows
    write_lines(anno / "list_attr_items.txt", [str(len(items)), "item_id attribute_labels", *rows])


SYNTH_INSHOP_SPEC = DatasetSpec(
    name="synth-inshop",
    protocol="cpu-smoke",
    summary=(
        "Synthetic In-Shop twin: 400 items (shape/colour/pattern + a mark), 3-6 64x64 views "
        "each (~1,800 images) with attributes; half the items train, half query/gallery. "
        "Generated on first use."
    ),
    task="query-gallery",
    load=load_synth_inshop,
    recall_at=(1, 10, 20, 30, 40, 50),
    layout="<data_root>/synth-inshop/ in the In-Shop layout; written on first use",
)
