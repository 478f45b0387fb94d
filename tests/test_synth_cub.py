"""synth-cub: written once per module in CUB's layout and read back through the CUB loader."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.datasets import synth
from benchmark.data.datasets.cub import load_cub
from benchmark.data.datasets.scenes import COLORS, PATTERNS, SHAPES
from benchmark.data.datasets.synth import (
    GENERATOR_VERSION,
    SYNTH_CUB_SPEC,
    ensure_synth_cub,
    generate_synth_cub,
)
from benchmark.errors import BenchError
from benchmark.specs import Splits

LISTS = (
    "images.txt",
    "image_class_labels.txt",
    "classes.txt",
    "train_test_split.txt",
    "attributes/image_attribute_labels.txt",
)
STALE_TEMP = "synth-cub.tmp-999999999"  # a pid no live process has


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / STALE_TEMP / "CUB_200_2011").mkdir(parents=True)
    ensure_synth_cub(root)
    return root


@pytest.fixture(scope="module")
def cub_dir(data_root: Path) -> Path:
    return data_root / "synth-cub" / "CUB_200_2011"


@pytest.fixture(scope="module")
def splits(data_root: Path) -> Splits:
    return SYNTH_CUB_SPEC.load(data_root)


def read_table(path: Path) -> dict[int, str]:
    return {
        int(k): v for k, v in (line.split(maxsplit=1) for line in path.read_text().splitlines())
    }


def test_layout_100_classes_of_30_to_60_images(data_root: Path, cub_dir: Path) -> None:
    classes = read_table(cub_dir / "classes.txt")
    assert list(classes) == list(range(1, 101))
    assert all(
        re.fullmatch(r"\d{3}\.[A-Z][a-z]+_[A-Z][a-z]+_[A-Z][a-z]+", n) for n in classes.values()
    )
    assert all(name.startswith(f"{class_id:03d}.") for class_id, name in classes.items())
    per_class = Counter(int(c) for c in read_table(cub_dir / "image_class_labels.txt").values())
    assert set(per_class) == set(classes) and min(per_class.values()) >= 30
    assert max(per_class.values()) <= 60 and 4000 <= sum(per_class.values()) <= 5000
    assert (data_root / "synth-cub" / "attributes.txt").is_file()  # beside, as in the archive
    assert (cub_dir / "attributes" / "certainties.txt").read_text().startswith("1 not visible\n")
    assert not (data_root / STALE_TEMP).exists()


def test_classes_1_to_50_train_51_to_100_test(splits: Splits) -> None:
    assert splits.query is splits.gallery
    assert np.unique(splits.train.labels).tolist() == list(range(1, 51))
    assert np.unique(splits.query.labels).tolist() == list(range(51, 101))
    assert len(splits.train) + len(splits.query) == len(
        set(splits.train.paths + splits.query.paths)
    )


def test_every_value_appears_in_both_halves(cub_dir: Path) -> None:
    classes = read_table(cub_dir / "classes.txt")
    for half in (range(1, 51), range(51, 101)):
        words = [classes[c].split(".")[1].lower().split("_") for c in half]
        assert {color for color, _, _ in words} == set(COLORS)
        assert {pattern for _, pattern, _ in words} == set(PATTERNS)
        assert {shape for _, _, shape in words} == set(SHAPES)


def test_every_image_is_64x64_rgb(splits: Splits) -> None:
    for path in splits.train.paths + splits.query.paths:
        with Image.open(path) as image:
            image.load()
            assert (image.size, image.mode, image.format) == ((64, 64), "RGB", "JPEG")


def test_attributes_match_class_names(splits: Splits, cub_dir: Path) -> None:
    names = splits.attribute_names
    assert len(names) == len(SHAPES) + len(COLORS) + len(PATTERNS)
    assert names[0] == "has_shape::circle" and "has_pattern::striped" in names
    classes = read_table(cub_dir / "classes.txt")
    for image_set in (splits.train, splits.query):
        for row, class_id in enumerate(image_set.labels.tolist()):
            color, pattern, shape = classes[class_id].split(".")[1].lower().split("_")
            expected = {f"has_shape::{shape}", f"has_primary_color::{color}"}
            expected.add(f"has_pattern::{pattern}")
            present = {n for n, v in zip(names, image_set.attributes[row], strict=True) if v}
            assert present == expected
    masks = np.concatenate([splits.train.attribute_mask, splits.query.attribute_mask])
    assert 0.95 < masks.mean() < 1.0  # a few "not visible" rows, masked out


@pytest.fixture(scope="module")
def small_generations(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Seed 0 twice and seed 1 once, on 6 classes: determinism does not need all 100."""
    root = tmp_path_factory.mktemp("small")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synth, "NUM_CLASSES", 6)
        runs = {"seed0": 0, "seed0-again": 0, "seed1": 1}
        return {name: generate_synth_cub(root / name, seed=seed) for name, seed in runs.items()}


def test_same_seed_gives_identical_files(small_generations: dict[str, Path]) -> None:
    first, again = small_generations["seed0"], small_generations["seed0-again"]
    for name in LISTS:
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
    relative_paths = list(read_table(first / "images.txt").values())
    assert len(relative_paths) >= 6 * 30
    for relative in relative_paths[::7]:
        image = (again / "images" / relative).read_bytes()
        assert image == (first / "images" / relative).read_bytes(), relative
    assert (again / ".complete").read_text() == f"synth-cub generator {GENERATOR_VERSION} seed 0\n"


def test_other_seed_gives_other_files(small_generations: dict[str, Path]) -> None:
    first, other = small_generations["seed0"], small_generations["seed1"]
    for name in ("classes.txt", "images.txt", "attributes/image_attribute_labels.txt"):
        assert (first / name).read_text() != (other / name).read_text(), name
    first_images, other_images = (
        [(d / "images" / p).read_bytes() for p in read_table(d / "images.txt").values()]
        for d in (first, other)
    )
    assert not set(first_images) & set(other_images)


def test_ensure_is_idempotent(data_root: Path, cub_dir: Path) -> None:
    marker = cub_dir / ".complete"
    before = (marker.stat().st_mtime_ns, (cub_dir / "images.txt").stat().st_mtime_ns)
    assert ensure_synth_cub(data_root) == data_root / "synth-cub"
    assert (marker.stat().st_mtime_ns, (cub_dir / "images.txt").stat().st_mtime_ns) == before


def test_ensure_rejects_a_folder_without_matching_marker(tmp_path: Path, data_root: Path) -> None:
    (tmp_path / "synth-cub" / "CUB_200_2011").mkdir(parents=True)
    with pytest.raises(BenchError, match="incomplete or was written by another") as error:
        ensure_synth_cub(tmp_path)
    assert f"Delete {tmp_path / 'synth-cub'}" in str(error.value)
    with pytest.raises(BenchError, match="seed 1"):
        ensure_synth_cub(data_root, seed=1)


def test_reads_through_the_cub_loader(cub_dir: Path, splits: Splits) -> None:
    direct = load_cub(cub_dir)
    assert direct.train.paths == splits.train.paths
    assert np.array_equal(direct.query.attributes, splits.query.attributes)


def damaged_message(spec, root: Path) -> str:
    with pytest.raises(BenchError) as error:
        spec.load(root)
    return str(error.value)


def test_a_deleted_file_says_which_synth_dataset_and_how_to_regenerate(data_root, tmp_path):
    import shutil

    folder = tmp_path / "synth-cub"
    shutil.copytree(data_root / "synth-cub", folder)
    advice = (
        f"The generated dataset synth-cub in {folder} is damaged: delete that folder and run "
        "again to regenerate it."
    )
    image = sorted((folder / "CUB_200_2011" / "images").rglob("*.jpg"))[5]
    image.unlink()
    assert damaged_message(SYNTH_CUB_SPEC, tmp_path) == f"{advice} ({image} is missing.)"
    labels = folder / "CUB_200_2011" / "image_class_labels.txt"
    labels.unlink()
    message = damaged_message(SYNTH_CUB_SPEC, tmp_path)
    assert message.startswith(f"{advice} ({labels}: ")


def test_a_generated_dataset_creates_a_missing_data_root(tmp_path: Path) -> None:
    from benchmark.data.datasets.generated import ensure_generated

    root = tmp_path / "new" / "deeper"

    def generate(folder: Path) -> None:
        folder.mkdir()
        (folder / ".complete").write_text("tiny generator 1 seed 0\n")

    marker = "tiny generator 1 seed 0\n"
    assert ensure_generated(root, "tiny", Path(".complete"), marker, generate) == root / "tiny"
    assert (root / "tiny" / ".complete").read_text() == marker
    (tmp_path / "file").write_text("")
    with pytest.raises(BenchError, match="data root .*file is not a directory"):
        ensure_generated(tmp_path / "file", "tiny", Path(".complete"), marker, generate)
