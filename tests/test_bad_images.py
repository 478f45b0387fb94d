from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from benchmark.config import build_run_config
from benchmark.data.loading import ImageDataset, build_transform, collate
from benchmark.engine.run import RunOptions, execute
from benchmark.errors import BenchError
from benchmark.protocol import DataSettings
from benchmark.specs import ImageSet

DATA_CFG = DataSettings(
    resize=8, crop=8, augment="center-crop", hflip=False, mean=(0.5,) * 3, std=(0.5,) * 3,
    classes_per_batch=2, samples_per_class=2, num_workers=0, cache=False,
)  # fmt: skip


@pytest.fixture
def images(tmp_path) -> ImageSet:
    paths = []
    for i, mode in enumerate(["RGB", "L", "CMYK"]):
        path = tmp_path / f"{i}.jpg"
        Image.new(mode, (10, 12)).save(path)
        paths.append(path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    return ImageSet((*paths, broken), np.arange(4))


def test_grayscale_and_cmyk_become_rgb(images):
    dataset = ImageDataset(images, 8, build_transform(DATA_CFG, train=False), cache=False)
    assert [tuple(dataset[i][0].shape) for i in range(3)] == [(3, 8, 8)] * 3


def test_an_unreadable_image_stops_with_its_path(images):
    dataset = ImageDataset(images, 8, build_transform(DATA_CFG, train=False), cache=False)
    with pytest.raises(
        BenchError, match=f"Cannot read image {images.paths[3]}: .* pass --skip-bad-images"
    ):
        dataset[3]


def test_skipped_images_are_left_out_of_the_batch_and_reported(images):
    dataset = ImageDataset(images, 8, build_transform(DATA_CFG, train=False), False, True)
    batch = collate([dataset[i] for i in range(4)])
    assert batch.images.shape == (3, 3, 8, 8)
    assert batch.labels.tolist() == [0, 1, 2] and batch.skipped == (3,)
    with pytest.raises(BenchError, match="Every image of a batch was unreadable"):
        collate([dataset[3]])


def test_a_run_with_skip_bad_images_counts_them(registry, data_root, tmp_path):
    shutil.copytree(data_root / "synth-cub", tmp_path / "synth-cub")
    splits = registry.dataset("synth-cub").load(tmp_path)
    for path in splits.query.paths[:2]:
        path.write_bytes(b"not an image")
    fast = ("train.epochs=1", "train.iterations_per_epoch=1", "data.classes_per_batch=4")
    config = build_run_config(registry, method="ms", dataset="synth-cub", overrides=fast)
    options = RunOptions(tmp_path, tmp_path / "results", "cpu", False, False, True)
    result, _ = execute(registry, config, options)
    assert result["dataset"]["counts"]["skipped_images"] == 2
    assert result["final"]["metrics"]["queries"] == len(splits.query) - 2
    with pytest.raises(BenchError, match=f"Cannot read image {splits.query.paths[0]}"):
        execute(registry, config, RunOptions(tmp_path, tmp_path / "r2", "cpu", False, False))


@pytest.mark.parametrize(
    ("side", "why"),
    [  # PIL warns (and decodes) above 100 pixels here, raises above 200
        (12, "it has 144 pixels, more than PIL's limit of 100"),
        (20, "it has more than twice PIL's limit of 100 pixels"),
    ],
)
def test_an_image_above_pils_pixel_limit_is_refused_naming_it(tmp_path, monkeypatch, side, why):
    from benchmark.data.prepared import prepare_split

    path = tmp_path / "huge.png"
    Image.new("RGB", (side, side)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    images = ImageSet((path,), np.arange(1))
    dataset = ImageDataset(images, 8, build_transform(DATA_CFG, train=False), cache=False)
    with pytest.raises(BenchError) as error:
        dataset[0]
    assert str(error.value) == (
        f"Cannot read image {path}: {why} "
        "(PIL.Image.MAX_IMAGE_PIXELS): a possible decompression bomb, refused. Re-extract the "
        "dataset, or pass --skip-bad-images to leave unreadable images out (they are counted)."
    )
    skipping = ImageDataset(images, 8, build_transform(DATA_CFG, train=False), False, True)
    assert skipping[0] == 0
    assert prepare_split(images, 8, 8, tmp_path / "prepared").unreadable == (0,)
