"""synth-coco: written once per module in the COCO list layout and read back by the COCO loader."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.datasets import synth_coco
from benchmark.data.datasets.coco import load_coco
from benchmark.data.datasets.synth_coco import (
    CATEGORIES,
    GENERATOR_VERSION,
    SYNTH_COCO_SPEC,
    ensure_synth_coco,
    generate_synth_coco,
)
from benchmark.errors import BenchError
from benchmark.specs import Splits

LISTS = ("train.txt", "test.txt", "database.txt")
IMAGE_NAME = re.compile(r"images/scene_\d{5}\.jpg")
STALE_TEMP = "synth-coco.tmp-999999999"  # a pid no live process has


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / STALE_TEMP / "images").mkdir(parents=True)
    ensure_synth_coco(root)
    return root


@pytest.fixture(scope="module")
def coco_dir(data_root: Path) -> Path:
    return data_root / "synth-coco"


@pytest.fixture(scope="module")
def splits(data_root: Path) -> Splits:
    return SYNTH_COCO_SPEC.load(data_root)


def read_list(path: Path) -> tuple[dict, list[list[str]]]:
    header, *lines = path.read_text().splitlines()
    assert header.startswith("# dmlbench ")
    return json.loads(header[len("# dmlbench ") :]), [line.split() for line in lines]


def test_layout_is_the_coco_lists(data_root: Path, coco_dir: Path) -> None:
    names = [category.name for category in CATEGORIES]
    assert len(names) == 20 and names == sorted(names)  # columns by name, as for COCO
    for name in LISTS:
        header, rows = read_list(coco_dir / name)
        assert header == {
            "builder": f"synth-coco generator {GENERATOR_VERSION} seed 0",
            "seed": 0,
            "categories": names,
        }
        for row in rows:
            assert IMAGE_NAME.fullmatch(row[0]) and (coco_dir / row[0]).is_file()
            assert len(row) == 21 and set(row[1:]) <= {"0", "1"}
    assert len(list((coco_dir / "images").iterdir())) == 2300
    marker = f"synth-coco generator {GENERATOR_VERSION} seed 0\n"
    assert (coco_dir / ".complete").read_text() == marker
    assert not (data_root / STALE_TEMP).exists()


def test_split_follows_the_coco_protocol(splits: Splits) -> None:
    assert (len(splits.train), len(splits.query), len(splits.gallery)) == (1000, 300, 2000)
    assert not set(splits.query.paths) & set(splits.gallery.paths)
    assert set(splits.train.paths) <= set(splits.gallery.paths)
    assert splits.attribute_names == tuple(category.name for category in CATEGORIES)


def test_every_image_has_one_to_four_labels(splits: Splits) -> None:
    for image_set in (splits.train, splits.query, splits.gallery):
        assert image_set.labels.dtype == np.int64 and image_set.labels.shape[1] == 20
        assert set(image_set.labels.sum(1).tolist()) == {1, 2, 3, 4}
        assert image_set.labels.any(axis=0).all()  # every category is seen in every split


def test_every_query_has_relevant_images(splits: Splits) -> None:
    relevant = (splits.query.labels @ splits.gallery.labels.T > 0).sum(1)
    assert relevant.min() > SYNTH_COCO_SPEC.top_k / 2
    assert relevant.max() < len(splits.gallery) / 2


def test_images_are_64x64_rgb_jpegs(splits: Splits) -> None:
    for path in splits.query.paths + splits.gallery.paths[::10]:
        with Image.open(path) as image:
            assert (image.size, image.mode, image.format) == ((64, 64), "RGB", "JPEG")


@pytest.fixture(scope="module")
def small_generations(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Seed 0 twice and seed 1 once, on 30 images: determinism does not need all 2,300."""
    root = tmp_path_factory.mktemp("small")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"QUERIES": 10, "DATABASE": 20, "TRAIN": 8}.items():
            patch.setattr(synth_coco, name, value)
        runs = {"seed0": 0, "seed0-again": 0, "seed1": 1}
        return {name: generate_synth_coco(root / name, seed=seed) for name, seed in runs.items()}


def test_same_seed_gives_identical_files(small_generations: dict[str, Path]) -> None:
    first, again = small_generations["seed0"], small_generations["seed0-again"]
    for name in LISTS:
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
    images = sorted(path.name for path in (first / "images").iterdir())
    assert len(images) == 30
    for name in images:
        assert (again / "images" / name).read_bytes() == (first / "images" / name).read_bytes()


def test_other_seed_gives_other_files(small_generations: dict[str, Path]) -> None:
    first, other = small_generations["seed0"], small_generations["seed1"]
    for name in LISTS:
        assert (first / name).read_text() != (other / name).read_text(), name
    first_images, other_images = (
        {path.read_bytes() for path in (folder / "images").iterdir()} for folder in (first, other)
    )
    assert not first_images & other_images


def test_small_generation_reads_back(small_generations: dict[str, Path]) -> None:
    splits = load_coco(small_generations["seed0"])
    assert (len(splits.train), len(splits.query), len(splits.gallery)) == (8, 10, 20)


def test_ensure_is_idempotent(data_root: Path, coco_dir: Path) -> None:
    files = (coco_dir / ".complete", coco_dir / "database.txt")
    before = [path.stat().st_mtime_ns for path in files]
    assert ensure_synth_coco(data_root) == coco_dir
    assert [path.stat().st_mtime_ns for path in files] == before


def test_ensure_rejects_a_folder_without_matching_marker(tmp_path: Path, data_root: Path) -> None:
    (tmp_path / "synth-coco" / "images").mkdir(parents=True)
    with pytest.raises(BenchError, match="incomplete or was written by another") as error:
        ensure_synth_coco(tmp_path)
    assert f"Delete {tmp_path / 'synth-coco'}" in str(error.value)
    with pytest.raises(BenchError, match="seed 1"):
        ensure_synth_coco(data_root, seed=1)


def test_reads_through_the_coco_loader(coco_dir: Path, splits: Splits) -> None:
    direct = load_coco(coco_dir)
    assert direct.gallery.paths == splits.gallery.paths
    assert np.array_equal(direct.query.labels, splits.query.labels)
    assert (SYNTH_COCO_SPEC.task, SYNTH_COCO_SPEC.top_k) == ("hashing", 250)
    assert SYNTH_COCO_SPEC.main_metric == "map@k"


def test_a_deleted_file_says_which_synth_dataset_and_how_to_regenerate(data_root, tmp_path):
    import shutil

    folder = tmp_path / "synth-coco"
    shutil.copytree(data_root / "synth-coco", folder)
    image = sorted((folder / "images").glob("*.jpg"))[0]
    image.unlink()
    with pytest.raises(BenchError) as error:
        SYNTH_COCO_SPEC.load(tmp_path)
    assert str(error.value).startswith(
        f"The generated dataset synth-coco in {folder} is damaged: delete that folder and "
        f"run again to regenerate it. ("
    )
    assert str(image) in str(error.value)
