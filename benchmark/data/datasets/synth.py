"""synth-cub: a small synthetic twin of CUB-200-2011, written in CUB's exact on-disk layout.

It is read back by the real CUB loader, so every run of the harness exercises that loader,
and it needs no download: the first `load` writes it under the data root.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from benchmark.data.datasets.cub import load_cub
from benchmark.data.datasets.scenes import (
    SceneClass,
    attribute_names,
    choose_classes,
    class_attributes,
    render_scene,
)
from benchmark.errors import BenchError
from benchmark.specs import DatasetSpec

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
    data_root = Path(data_root)
    _check_data_root(data_root)
    target = data_root / "synth-cub"
    if _is_complete(target, seed):
        return target
    if target.exists():
        raise BenchError(
            f"{target} is incomplete or was written by another generator version or seed "
            f"(expected {target / 'CUB_200_2011' / '.complete'} to read {_marker(seed)!r}). "
            f"Delete {target} and run again to regenerate it."
        )
    _remove_stale_temps(data_root)
    temp = data_root / f"synth-cub.tmp-{os.getpid()}"
    try:
        generate_synth_cub(temp, seed)
        temp.rename(target)
    except OSError as error:
        if not _is_complete(target, seed):  # else another process just finished the same job
            raise BenchError(
                f"could not write synth-cub under {data_root}: {error}. "
                "Free some space or pass another --data-root."
            ) from error
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def _marker(seed: int) -> str:
    return f"synth-cub generator {GENERATOR_VERSION} seed {seed}\n"


def _is_complete(target: Path, seed: int) -> bool:
    marker = target / "CUB_200_2011" / ".complete"
    return marker.is_file() and marker.read_text() == _marker(seed)


def _check_data_root(data_root: Path) -> None:
    if not data_root.exists():
        raise BenchError(f"data root {data_root} does not exist: create it or pass --data-root.")
    if not data_root.is_dir():
        raise BenchError(f"data root {data_root} is not a directory: pass another --data-root.")
    if not os.access(data_root, os.W_OK | os.X_OK):
        raise BenchError(
            f"data root {data_root} is not writable, so synth-cub cannot be generated there: "
            "fix its permissions or pass another --data-root."
        )


def _remove_stale_temps(data_root: Path) -> None:
    """Delete temp dirs left by generators that died (ours included, from an earlier pid)."""
    for temp in data_root.glob("synth-cub.tmp-*"):
        pid = temp.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or not _is_running(int(pid)):
            shutil.rmtree(temp, ignore_errors=True)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


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
    _write_lines(cub_dir / "images.txt", (f"{r.image_id} {r.relative_path}" for r in records))
    _write_lines(
        cub_dir / "image_class_labels.txt", (f"{r.image_id} {r.class_id}" for r in records)
    )
    _write_lines(
        cub_dir / "classes.txt",
        (f"{class_id} {_folder(class_id, scene)}" for class_id, scene in enumerate(classes, 1)),
    )
    # A classification split like CUB's (classes shared by both halves): every 2nd image trains.
    _write_lines(
        cub_dir / "train_test_split.txt", (f"{r.image_id} {int(r.index % 2 == 0)}" for r in records)
    )


def _write_attributes(
    cub_dir: Path, classes: list[SceneClass], records: list[_Record], seed: int
) -> None:
    # Like the real archive, the names file sits beside CUB_200_2011/, not inside it.
    names = attribute_names()
    _write_lines(cub_dir.parent / "attributes.txt", (f"{i} {n}" for i, n in enumerate(names, 1)))
    folder = cub_dir / "attributes"
    folder.mkdir()
    _write_lines(folder / "certainties.txt", (f"{i} {n}" for i, n in enumerate(CERTAINTIES, 1)))
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
    _write_lines(folder / "image_attribute_labels.txt", lines)


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


SYNTH_CUB_SPEC = DatasetSpec(
    name="synth-cub",
    summary=(
        "Synthetic CUB twin: 100 shape/colour/pattern classes, ~4,500 64x64 images with "
        "attributes; classes 1-50 train, 51-100 test. Generated on first use."
    ),
    task="retrieval",
    load=lambda root: load_cub(ensure_synth_cub(root)),
    recall_at=(1, 2, 4, 8),
)
