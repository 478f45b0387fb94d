"""synth-inshop: written once per module in In-Shop's layout and read back by the In-Shop loader."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.datasets import synth_inshop
from benchmark.data.datasets.inshop import load_inshop
from benchmark.data.datasets.scenes import COLORS, PATTERNS, SHAPES
from benchmark.data.datasets.synth_inshop import (
    GENERATOR_VERSION,
    SYNTH_INSHOP_SPEC,
    choose_items,
    ensure_synth_inshop,
    generate_synth_inshop,
)
from benchmark.errors import BenchError
from benchmark.specs import Splits

PARTITION = "Eval/list_eval_partition.txt"
LISTS = (PARTITION, "Anno/list_attr_items.txt", "Anno/list_attr_cloth.txt")
IMAGE_NAME = re.compile(
    r"img/(MEN|WOMEN)/([A-Z][a-z]+)/(id_\d{8})/\d{2}_[1-7]_(front|side|back|full|additional)\.jpg"
)
STALE_TEMP = "synth-inshop.tmp-999999999"  # a pid no live process has


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / STALE_TEMP / "Eval").mkdir(parents=True)
    ensure_synth_inshop(root)
    return root


@pytest.fixture(scope="module")
def inshop_dir(data_root: Path) -> Path:
    return data_root / "synth-inshop"


@pytest.fixture(scope="module")
def splits(data_root: Path) -> Splits:
    return SYNTH_INSHOP_SPEC.load(data_root)


def read_partition(inshop_dir: Path) -> list[list[str]]:
    lines = (inshop_dir / PARTITION).read_text().splitlines()
    assert lines[0] == str(len(lines) - 2)
    assert lines[1] == "image_name item_id evaluation_status"
    return [line.split() for line in lines[2:]]


def test_layout_is_in_shops(data_root: Path, inshop_dir: Path) -> None:
    rows = read_partition(inshop_dir)
    for name, item, _ in rows:
        match = IMAGE_NAME.fullmatch(name)
        assert match and match.group(3) == item, name
        assert (inshop_dir / "Img" / name).is_file()
    items = (inshop_dir / "Anno" / "list_item_inshop.txt").read_text().splitlines()
    assert items[0] == "400" and items[1:] == [f"id_{i:08d}" for i in range(1, 401)]
    attribute_lines = (inshop_dir / "Anno" / "list_attr_items.txt").read_text().splitlines()
    assert attribute_lines[0] == "400" and len(attribute_lines) == 2 + 400 + 2  # 2 repeated rows
    names = (inshop_dir / "Anno" / "list_attr_cloth.txt").read_text().splitlines()
    assert names[0] == "21" and re.fullmatch(r"shape circle +1", names[2])
    assert (
        inshop_dir / ".complete"
    ).read_text() == f"synth-inshop generator {GENERATOR_VERSION} seed 0\n"
    assert not (data_root / STALE_TEMP).exists()


def test_counts_are_within_the_promised_ranges(inshop_dir: Path, splits: Splits) -> None:
    views = Counter(item for _, item, _ in read_partition(inshop_dir))
    assert len(views) == 400 and set(views.values()) == {3, 4, 5, 6}
    assert 1500 <= sum(views.values()) <= 2100
    assert len(np.unique(splits.train.labels)) == 200
    assert len(splits.train) + len(splits.query) + len(splits.gallery) == sum(views.values())


def test_every_test_item_has_query_and_gallery_images(splits: Splits) -> None:
    query_items, gallery_items = (set(s.labels.tolist()) for s in (splits.query, splits.gallery))
    assert query_items == gallery_items and len(query_items) == 200
    assert not query_items & set(splits.train.labels.tolist())
    assert not set(splits.query.paths) & set(splits.gallery.paths)


def test_every_image_is_64x64_rgb_jpeg(splits: Splits) -> None:
    for path in splits.train.paths + splits.query.paths + splits.gallery.paths:
        with Image.open(path) as image:
            assert (image.size, image.mode, image.format) == ((64, 64), "RGB", "JPEG")


def test_items_are_distinct_and_some_share_all_attributes() -> None:
    items = choose_items(0, 400)
    assert len(set(items)) == 400
    assert len({item.scene for item in items}) < 400  # only the mark tells these apart


def test_attributes_are_per_item_with_a_few_unknown(inshop_dir: Path, splits: Splits) -> None:
    assert len(splits.attribute_names) == len(SHAPES) + len(COLORS) + len(PATTERNS)
    assert splits.attribute_names[0] == "shape circle"  # the type column is not in the name
    folder_of = {item: name.split("/")[2] for name, item, _ in read_partition(inshop_dir)}
    for image_set in (splits.train, splits.query, splits.gallery):
        rows = defaultdict(set)
        for row, label in enumerate(image_set.labels.tolist()):
            known = image_set.attribute_mask[row]
            present = image_set.attributes[row]
            rows[label].add((present.tobytes(), known.tobytes()))
            assert not present[~known].any()
            folder = folder_of[f"id_{label:08d}"]  # Circles, Crosses, ...
            shape = next(shape for shape in SHAPES if folder.startswith(shape.title()))
            column = splits.attribute_names.index(f"shape {shape}")
            assert present[column] == known[column]
        assert all(len(variants) == 1 for variants in rows.values())  # inherited by each image
    masks = np.concatenate([splits.train.attribute_mask, splits.query.attribute_mask])
    assert 0.93 < masks.mean() < 1.0


def test_every_attribute_value_is_seen_in_train_and_in_test(splits: Splits) -> None:
    for image_set in (splits.train, splits.query):
        assert image_set.attributes.any(axis=0).all()


@pytest.fixture(scope="module")
def small_generations(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Seed 0 twice and seed 1 once, on 12 items: determinism does not need all 400."""
    root = tmp_path_factory.mktemp("small")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synth_inshop, "NUM_ITEMS", 12)
        runs = {"seed0": 0, "seed0-again": 0, "seed1": 1}
        return {name: generate_synth_inshop(root / name, seed=seed) for name, seed in runs.items()}


def test_same_seed_gives_identical_files(small_generations: dict[str, Path]) -> None:
    first, again = small_generations["seed0"], small_generations["seed0-again"]
    for name in LISTS:
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
    names = [name for name, _, _ in read_partition(first)]
    assert len(names) >= 12 * 3
    for name in names[::3]:
        assert (again / "Img" / name).read_bytes() == (first / "Img" / name).read_bytes(), name


def test_other_seed_gives_other_files(small_generations: dict[str, Path]) -> None:
    first, other = small_generations["seed0"], small_generations["seed1"]
    for name in LISTS[:2]:
        assert (first / name).read_text() != (other / name).read_text(), name
    first_images, other_images = (
        {(d / "Img" / name).read_bytes() for name, _, _ in read_partition(d)}
        for d in (first, other)
    )
    assert not first_images & other_images


def test_small_generation_reads_back(small_generations: dict[str, Path]) -> None:
    splits = load_inshop(small_generations["seed0"])
    assert len(np.unique(splits.train.labels)) == 6
    assert set(splits.query.labels.tolist()) == set(splits.gallery.labels.tolist())


def test_ensure_is_idempotent(data_root: Path, inshop_dir: Path) -> None:
    files = (inshop_dir / ".complete", inshop_dir / PARTITION)
    before = [path.stat().st_mtime_ns for path in files]
    assert ensure_synth_inshop(data_root) == inshop_dir
    assert [path.stat().st_mtime_ns for path in files] == before


def test_ensure_rejects_a_folder_without_matching_marker(tmp_path: Path, data_root: Path) -> None:
    (tmp_path / "synth-inshop" / "Eval").mkdir(parents=True)
    with pytest.raises(BenchError, match="incomplete or was written by another") as error:
        ensure_synth_inshop(tmp_path)
    assert f"Delete {tmp_path / 'synth-inshop'}" in str(error.value)
    with pytest.raises(BenchError, match="seed 1"):
        ensure_synth_inshop(data_root, seed=1)


def test_reads_through_the_inshop_loader(inshop_dir: Path, splits: Splits) -> None:
    direct = load_inshop(inshop_dir)
    assert direct.gallery.paths == splits.gallery.paths
    assert np.array_equal(direct.query.attributes, splits.query.attributes)
    assert SYNTH_INSHOP_SPEC.task == "query-gallery"
    assert SYNTH_INSHOP_SPEC.recall_at == (1, 10, 20, 30, 40, 50)


def test_a_deleted_file_says_which_synth_dataset_and_how_to_regenerate(data_root, tmp_path):
    import shutil

    folder = tmp_path / "synth-inshop"
    shutil.copytree(data_root / "synth-inshop", folder)
    (folder / "Eval" / "list_eval_partition.txt").unlink()
    with pytest.raises(BenchError) as error:
        SYNTH_INSHOP_SPEC.load(tmp_path)
    assert str(error.value).startswith(
        f"The generated dataset synth-inshop in {folder} is damaged: delete that folder and "
        "run again to regenerate it. ("
    )
    assert f"{folder / 'Eval' / 'list_eval_partition.txt'} does not exist" in str(error.value)
