"""synth-cub: a small synthetic twin of CUB-200-2011, written in CUB's exact on-disk layout.

It is read back by the real CUB loader, so every run of the harness exercises that loader,
and it needs no download: the first `load` writes it under the data root.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from benchmark.data.datasets.cub import ATTRIBUTE_OPTIONS, load_cub
from benchmark.data.datasets.generated import (
    ensure_generated,
    marker_text,
    read_generated,
    write_lines,
)
from benchmark.data.datasets.scenes import (
    SceneClass,
    attribute_names,
    choose_classes,
    class_attributes,
    render_scene,
)
from benchmark.errors import BenchError
from benchmark.specs import DatasetSpec, Splits

GENERATOR_VERSION = "1"  # bump whenever the output of generate_synth_cub changes
NUM_CLASSES = 100
IMAGES_PER_CLASS = (30, 60)
CERTAINTIES = ("not visible", "guessing", "probably", "definitely")
# certainty_id 4, 3 and 1 ("not visible", so masked) with these probabilities
CERTAINTY_IDS, CERTAINTY_ODDS = (4, 3, 1), (0.88, 0.10, 0.02)
_RENDER, _ANNOTATE = 0, 1  # separate random streams, so changing one leaves the other alone


def generate_synth_cub(target: Path, seed: int = 0) -> Path:
    """Write `target/CUB_200_2011/` (plus `target/attributes.txt`) and return that folder.

    Everything comes from generators seeded by (seed, class id, image index): the same seed
    gives byte-identical files on every run.
    """
    cub_dir = Path(target) / "CUB_200_2011"
    if cub_dir.exists():
        raise BenchError(f"{cub_dir} already exists: delete it or choose another target.")
    classes = choose_classes(seed, NUM_CLASSES)
    records = _write_images(cub_dir, classes, seed)
    _write_lists(cub_dir, classes, records)
    _write_attributes(cub_dir, classes, records, seed)
    (cub_dir / ".complete").write_text(_marker(seed))  # last, so its presence means complete
    return cub_dir


def ensure_synth_cub(data_root: Path, seed: int = 0) -> Path:
    """`data_root/synth-cub`, generated first if needed (atomically: into a temp dir, renamed)."""
    return ensure_generated(
        data_root,
        "synth-cub",
        Path("CUB_200_2011") / ".complete",
        _marker(seed),
        lambda folder: generate_synth_cub(folder, seed),
    )


def load_synth_cub(data_root: Path, **options) -> Splits:
    """synth-cub's splits, read by the CUB loader (generated first if needed)."""
    folder = ensure_synth_cub(data_root)
    return read_generated("synth-cub", folder, lambda: load_cub(folder, **options))


def _marker(seed: int) -> str:
    return marker_text("synth-cub", GENERATOR_VERSION, seed)


# --- writing the CUB layout ------------------------------------------------------------------


def _folder(class_id: int, scene: SceneClass) -> str:
    return f"{class_id:03d}.{scene.title}"


class _Record(NamedTuple):
    image_id: int
    class_id: int
    index: int  # within its class
    relative_path: str  # below images/


def _write_images(cub_dir: Path, classes: list[SceneClass], seed: int) -> list[_Record]:
    """Render every image, class by class; image ids count up from 1 in that order."""
    records: list[_Record] = []
    for class_id, scene in enumerate(classes, start=1):
        folder = cub_dir / "images" / _folder(class_id, scene)
        folder.mkdir(parents=True)
        count = np.random.default_rng([seed, class_id]).integers(*IMAGES_PER_CLASS, endpoint=True)
        for index in range(count):
            rng = np.random.default_rng([seed, class_id, index, _RENDER])
            name = f"{scene.title}_{index + 1:04d}.jpg"
            render_scene(scene, rng).save(folder / name, quality=90)
            records.append(_Record(len(records) + 1, class_id, index, f"{folder.name}/{name}"))
    return records


def _write_lists(cub_dir: Path, classes: list[SceneClass], records: list[_Record]) -> None:
    write_lines(cub_dir / "images.txt", (f"{r.image_id} {r.relative_path}" for r in records))
    write_lines(cub_dir / "image_class_labels.txt", (f"{r.image_id} {r.class_id}" for r in records))
    write_lines(
        cub_dir / "classes.txt",
        (f"{class_id} {_folder(class_id, scene)}" for class_id, scene in enumerate(classes, 1)),
    )
    # A classification split like CUB's (classes shared by both halves): every 2nd image trains.
    write_lines(
        cub_dir / "train_test_split.txt", (f"{r.image_id} {int(r.index % 2 == 0)}" for r in records)
    )


def _write_attributes(
    cub_dir: Path, classes: list[SceneClass], records: list[_Record], seed: int
) -> None:
    # Like the real archive, the names file sits beside CUB_200_2011/, not inside it.
    names = attribute_names()
    write_lines(cub_dir.parent / "attributes.txt", (f"{i} {n}" for i, n in enumerate(names, 1)))
    folder = cub_dir / "attributes"
    folder.mkdir()
    write_lines(folder / "certainties.txt", (f"{i} {n}" for i, n in enumerate(CERTAINTIES, 1)))
    lines = []
    for record in records:
        present = class_attributes(classes[record.class_id - 1]).tolist()
        rng = np.random.default_rng([seed, record.class_id, record.index, _ANNOTATE])
        certainty = rng.choice(CERTAINTY_IDS, size=len(names), p=CERTAINTY_ODDS).tolist()
        seconds = rng.uniform(1, 20, len(names)).tolist()
        lines += [
            f"{record.image_id} {a + 1} {present[a]} {certainty[a]} {seconds[a]:.4f}"
            for a in range(len(names))
        ]
    write_lines(folder / "image_attribute_labels.txt", lines)


SYNTH_CUB_SPEC = DatasetSpec(
    name="synth-cub",
    protocol="cpu-smoke",
    summary=(
        "Synthetic CUB twin: 100 shape/colour/pattern classes, ~4,500 64x64 images with "
        "attributes; classes 1-50 train, 51-100 test. Generated on first use."
    ),
    task="retrieval",
    load=load_synth_cub,
    # No class-level table is generated, so only the per-image certainty threshold applies.
    options_schema={
        **ATTRIBUTE_OPTIONS,
        "properties": {"min_certainty": ATTRIBUTE_OPTIONS["properties"]["min_certainty"]},
    },
    layout="<data_root>/synth-cub/ in the CUB_200_2011 layout; written on first use",
    recall_at=(1, 2, 4, 8),
)
