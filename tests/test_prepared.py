"""The prepared cache: writing, staleness, reading through collate, and batch augmentation."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from benchmark.data.loading import ImageDataset, build_transform, collate
from benchmark.data.prepared import (
    AugmentedLoader,
    PreparedDataset,
    _resized_crop_boxes,
    augment_batch,
    cache_dir,
    open_prepared,
    prepare_dataset,
    prepare_split,
    prepared_splits,
)
from benchmark.errors import BenchError
from benchmark.protocol import DataSettings
from benchmark.specs import ImageSet, Splits

RESIZE, CROP = 16, 12
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SOLID = (10, 200, 30)


def data_cfg(**changes) -> DataSettings:
    cfg = {"resize": RESIZE, "crop": CROP, "augment": "random-crop", "hflip": True}
    batches = {"classes_per_batch": 2, "samples_per_class": 2, "num_workers": 0, "cache": False}
    return DataSettings(**{**cfg, "mean": MEAN, "std": STD, **batches, **changes})


def noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def images(tmp_path: Path) -> ImageSet:
    """Five small files: solid PNG, landscape and portrait JPEGs, grayscale and CMYK JPEGs."""
    folder = tmp_path / "images"
    folder.mkdir()
    files = {
        "solid.png": Image.new("RGB", (40, 30), SOLID),
        "wide.jpg": Image.fromarray(noise(20, 37, 1)),
        "tall.jpg": Image.fromarray(noise(41, 18, 2)),
        "gray.jpg": Image.fromarray(noise(33, 33, 3)[..., 0], mode="L"),
        "cmyk.jpg": Image.fromarray(noise(24, 36, 4)).convert("CMYK"),
    }
    for name, image in files.items():
        image.save(folder / name)
    labels = np.array([0, 0, 1, 1, 2])
    attributes = np.eye(5, 3, dtype=np.float32)
    return ImageSet(tuple(folder / name for name in files), labels, attributes)


def expected_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as file:
        resized = T.Resize(RESIZE)(file.convert("RGB"))
    return np.asarray(T.CenterCrop(RESIZE)(resized)).transpose(2, 0, 1)


def as_batch(image: np.ndarray, copies: int = 1) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].repeat(copies, 1, 1, 1)


def denormalized(images: torch.Tensor) -> torch.Tensor:
    return images * torch.tensor(STD).view(-1, 1, 1) + torch.tensor(MEAN).view(-1, 1, 1)


# --- writing and opening -----------------------------------------------------------------------


def test_round_trip_stores_resized_rgb_squares(images: ImageSet, tmp_path: Path) -> None:
    prepared = prepare_split(images, RESIZE, CROP, tmp_path / "split")
    array = prepared.array()
    assert (array.shape, array.dtype) == ((5, 3, RESIZE, RESIZE), np.uint8)
    assert isinstance(array, np.memmap)
    assert (array[0] == np.array(SOLID, dtype=np.uint8)[:, None, None]).all()
    gray = array[3]
    assert (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all() and gray.std() > 10
    for index, path in enumerate(images.paths):
        np.testing.assert_array_equal(array[index], expected_pixels(path))
    assert prepared.unreadable == ()
    assert open_prepared(tmp_path / "split", images, RESIZE) == prepared


def test_write_leaves_no_temporary_files(images: ImageSet, tmp_path: Path) -> None:
    folder = tmp_path / "split"
    prepare_split(images, RESIZE, CROP, folder)
    prepare_split(images, RESIZE, CROP, folder)  # rebuilding replaces both files
    assert sorted(path.name for path in folder.iterdir()) == ["images.npy", "manifest.json"]


def test_failed_write_leaves_no_cache(images: ImageSet, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "split"
    prepare_split(images, RESIZE, CROP, folder)

    def broken(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("benchmark.data.prepared._decode", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        prepare_split(images, RESIZE, CROP, folder)
    assert sorted(path.name for path in folder.iterdir()) == ["images.npy"]  # the old array
    assert open_prepared(folder, images, RESIZE) is None  # no manifest: not valid


def test_stale_temporary_files_are_removed(images: ImageSet, tmp_path: Path) -> None:
    folder = tmp_path / "split"
    folder.mkdir()
    (folder / ".images.npy.999999999.tmp").write_bytes(b"left by a dead process")
    prepare_split(images, RESIZE, CROP, folder)
    assert not list(folder.glob("*.tmp"))


def test_missing_cache_is_none(images: ImageSet, tmp_path: Path) -> None:
    assert open_prepared(tmp_path / "nothing", images, RESIZE) is None


@pytest.mark.parametrize("change", ["touch", "rewrite", "reorder", "resize", "manifest", "array"])
def test_changes_make_the_cache_stale(images: ImageSet, tmp_path: Path, change: str) -> None:
    folder, resize = tmp_path / "split", RESIZE
    prepare_split(images, RESIZE, CROP, folder)
    assert open_prepared(folder, images, RESIZE) is not None
    stat = images.paths[1].stat()
    if change == "touch":
        os.utime(images.paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    elif change == "rewrite":  # same mtime, other contents
        Image.fromarray(noise(20, 37, 99)).save(images.paths[1], quality=50)
        os.utime(images.paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    elif change == "reorder":
        paths = images.paths
        images = ImageSet((paths[1], paths[0], *paths[2:]), images.labels, images.attributes)
    elif change == "resize":
        resize = RESIZE + 1
    elif change == "manifest":
        (folder / "manifest.json").write_text("{not json")
    else:
        (folder / "images.npy").write_bytes((folder / "images.npy").read_bytes()[:-10])
    assert open_prepared(folder, images, resize) is None


def test_unreadable_images_are_recorded(images: ImageSet, tmp_path: Path) -> None:
    images.paths[2].write_bytes(b"not a jpeg")
    prepared = prepare_split(images, RESIZE, CROP, tmp_path / "split")
    assert prepared.unreadable == (2,)
    assert not prepared.array()[2].any()
    assert open_prepared(tmp_path / "split", images, RESIZE).unreadable == (2,)
    with pytest.raises(BenchError, match="tall.jpg"):
        PreparedDataset(images, prepared)[2]
    assert PreparedDataset(images, prepared, skip_bad=True)[2] == 2


def test_crop_larger_than_resize_is_refused(images: ImageSet, tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="data.crop=17 is larger than data.resize=16"):
        prepare_split(images, RESIZE, RESIZE + 1, tmp_path / "split")


def test_prepare_dataset_writes_a_shared_query_gallery_once(images: ImageSet, tmp_path) -> None:
    train = ImageSet(images.paths[:2], images.labels[:2])
    test = ImageSet(images.paths[2:], images.labels[2:])
    splits = Splits(train, test, test)
    paths = prepare_dataset(splits, tmp_path, "toy", RESIZE, CROP)
    root = tmp_path / ".prepared" / "toy" / "resize16"
    assert cache_dir(tmp_path, "toy", RESIZE) == root
    assert paths == {"train": root / "train", "query": root / "query", "gallery": root / "query"}
    assert sorted(path.name for path in root.iterdir()) == ["query", "train"]
    written = (root / "train" / "images.npy").stat().st_mtime_ns
    prepare_dataset(splits, tmp_path, "toy", RESIZE, CROP)  # up to date: left alone
    assert (root / "train" / "images.npy").stat().st_mtime_ns == written
    opened = prepared_splits(splits, tmp_path, "toy", RESIZE, CROP)
    assert [opened[name].count for name in ("train", "query", "gallery")] == [2, 3, 3]
    assert prepared_splits(splits, tmp_path, "toy", RESIZE, RESIZE + 1) is None
    assert prepared_splits(splits, tmp_path, "toy", RESIZE + 4, CROP) is None


# --- reading -----------------------------------------------------------------------------------


def test_dataset_and_collate_give_uint8_batches(images: ImageSet, tmp_path: Path) -> None:
    prepared = prepare_split(images, RESIZE, CROP, tmp_path / "split")
    dataset = PreparedDataset(images, prepared)
    batch = collate([dataset[index] for index in (4, 0, 3)])
    assert (batch.images.dtype, batch.images.shape) == (torch.uint8, (3, 3, RESIZE, RESIZE))
    assert batch.labels.tolist() == [2, 0, 1]
    assert batch.indices.tolist() == [4, 0, 3]
    assert batch.attributes.tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert batch.attribute_mask is None
    assert (batch.images[1] == torch.tensor(SOLID, dtype=torch.uint8).view(3, 1, 1)).all()
    np.testing.assert_array_equal(batch.images[0], prepared.array()[4])


def test_dataset_pickles_without_its_array(images: ImageSet, tmp_path: Path) -> None:
    dataset = PreparedDataset(images, prepare_split(images, RESIZE, CROP, tmp_path / "split"))
    dataset[0]  # opens the memmap
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._array is None
    assert torch.equal(copy[1][0], dataset[1][0])


def test_evaluation_through_the_cache_equals_the_plain_pipeline(images, tmp_path) -> None:
    # (resize - crop) is a multiple of 4, so the two centre crops compose exactly
    prepared = prepare_split(images, RESIZE, CROP, tmp_path / "split")
    batch = collate([PreparedDataset(images, prepared)[index] for index in range(5)])
    cached = augment_batch(batch.images, data_cfg(), train=False, generator=None)
    plain = ImageDataset(images, RESIZE, build_transform(data_cfg(), train=False), cache=False)
    expected = torch.stack([plain[index][0] for index in range(5)])
    torch.testing.assert_close(cached, expected, rtol=0, atol=1e-6)


def test_augmented_loader_yields_model_inputs(images: ImageSet, tmp_path: Path) -> None:
    dataset = PreparedDataset(images, prepare_split(images, RESIZE, CROP, tmp_path / "split"))
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate)
    augmented = AugmentedLoader(loader, data_cfg(), True, torch.device("cpu"))
    batches = list(augmented)
    assert len(augmented) == 3 and augmented.dataset is dataset
    assert [tuple(batch.images.shape) for batch in batches] == [(2, 3, CROP, CROP)] * 2 + [
        (1, 3, CROP, CROP)
    ]
    assert batches[0].images.dtype == torch.float32
    assert batches[2].labels.tolist() == [2]


# --- augmenting --------------------------------------------------------------------------------


@pytest.mark.parametrize("size, crop", [(20, 12), (20, 13), (17, 16), (12, 12)])
def test_evaluation_crop_equals_torchvision(size: int, crop: int) -> None:
    image = noise(size, size, 5)
    reference = T.Compose([T.CenterCrop(crop), T.ToTensor(), T.Normalize(MEAN, STD)])
    expected = reference(Image.fromarray(image))
    got = augment_batch(as_batch(image, 2), data_cfg(crop=crop), train=False, generator=None)
    assert got.shape == (2, 3, crop, crop) and got.dtype == torch.float32
    torch.testing.assert_close(got[0], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(got[1], expected, rtol=0, atol=1e-6)


def position_image() -> np.ndarray:
    """16 x 16 whose every pixel value is 16 * row + column: a crop names its offset."""
    grid = np.arange(RESIZE * RESIZE, dtype=np.uint8).reshape(RESIZE, RESIZE)
    return np.repeat(grid[..., None], 3, axis=2)


def test_random_crops_are_crops_of_the_image_flipped_half_the_time() -> None:
    image = position_image()
    generator = torch.Generator().manual_seed(0)
    out = augment_batch(as_batch(image, 400), data_cfg(), train=True, generator=generator)
    assert out.shape == (400, 3, CROP, CROP)
    values = (denormalized(out) * 255).round().long()[:, 0]
    assert (values >= 0).all() and (values <= 255).all()
    flipped = values[:, 0, 0] > values[:, 0, -1]
    assert 160 <= int(flipped.sum()) <= 240  # Binomial(400, 0.5): mean 200, sd 10
    offsets = set()
    for crop, was_flipped in zip(values, flipped.tolist(), strict=True):
        crop = crop.flip(-1) if was_flipped else crop
        top, left = divmod(int(crop[0, 0]), RESIZE)
        expected = image[top : top + CROP, left : left + CROP, 0]
        np.testing.assert_array_equal(crop.numpy(), expected)
        offsets.add((top, left))
    assert offsets == {(top, left) for top in range(5) for left in range(5)}  # all 25 offsets


def test_no_flips_without_hflip() -> None:
    out = augment_batch(
        as_batch(position_image(), 50),
        data_cfg(augment="center-crop", hflip=False),
        train=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert (out == out[0]).all()
    values = (denormalized(out[0]) * 255).round()
    assert values[0, 0, 0] == 2 * RESIZE + 2  # the centre crop starts at (2, 2)


@pytest.mark.parametrize("augment", ["random-crop", "random-resized-crop", "center-crop"])
def test_same_seed_gives_the_same_batch(augment: str) -> None:
    batch = as_batch(noise(RESIZE, RESIZE, 6), 16)

    def run(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return augment_batch(batch, data_cfg(augment=augment), train=True, generator=generator)

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_random_resized_crop_shape_and_range() -> None:
    batch = as_batch(noise(RESIZE, RESIZE, 7), 64)
    cfg = data_cfg(augment="random-resized-crop", crop=10)
    out = augment_batch(batch, cfg, train=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == (64, 3, 10, 10) and out.dtype == torch.float32
    pixels = denormalized(out)
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6


def test_random_resized_crop_of_a_constant_image_is_constant() -> None:
    batch = torch.full((8, 3, RESIZE, RESIZE), 51, dtype=torch.uint8)
    cfg = data_cfg(augment="random-resized-crop", mean=[0, 0, 0], std=[1, 1, 1])
    out = augment_batch(batch, cfg, train=True, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, torch.full_like(out, 0.2), rtol=0, atol=1e-6)


def test_resized_crop_boxes_follow_torchvision_ranges() -> None:
    boxes = _resized_crop_boxes(2000, 100, 100, torch.Generator().manual_seed(0))
    top, left, height, width = boxes.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + height <= 100).all() and (left + width <= 100).all()
    area = (height * width).float() / 100**2
    assert area.min() > 0.14 and area.max() <= 1.0 and area.mean() > 0.5
    ratio = width.float() / height.float()
    assert ratio.min() > 0.7 and ratio.max() < 1.4
    assert len(set(map(tuple, boxes.tolist()))) > 1900


def test_resized_crop_falls_back_to_the_clamped_whole_image() -> None:
    boxes = _resized_crop_boxes(5, 10, 100, torch.Generator().manual_seed(0))  # 10:1, never fits
    assert boxes.tolist() == [[0, 43, 10, 13]] * 5  # height 10, width round(10 * 4 / 3)


def test_crop_larger_than_the_images_is_refused() -> None:
    with pytest.raises(BenchError, match="data.crop=17 is larger than the 16x16 images"):
        augment_batch(as_batch(position_image()), data_cfg(crop=17), train=False, generator=None)


def per_image_crops(images, boxes, flips, size):
    """The reference: F.interpolate on each mirrored box, one image at a time."""
    out = []
    for image, (top, left, height, width), flip in zip(images, boxes.tolist(), flips, strict=True):
        patch = image[:, top : top + height, left : left + width]
        patch = (patch.flip(-1) if flip else patch)[None].float()
        resized = torch.nn.functional.interpolate(
            patch, (size, size), mode="bilinear", align_corners=False, antialias=False
        )
        out.append(resized[0])
    return torch.stack(out)


@pytest.mark.parametrize("size", [7, 10, 23])
def test_batched_resized_crops_equal_interpolate_on_each_box(size: int) -> None:
    from benchmark.data.prepared import _crops

    generator = torch.Generator().manual_seed(size)
    images = torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=generator)
    heights = torch.randint(1, 17, (24,), generator=generator)
    widths = torch.randint(1, 17, (24,), generator=generator)
    tops = (torch.rand(24, generator=generator) * (17 - heights)).long()
    lefts = (torch.rand(24, generator=generator) * (17 - widths)).long()
    boxes = torch.stack([tops, lefts, heights, widths], dim=1)
    flips = (torch.rand(24, generator=generator) < 0.5).tolist()
    batched = _crops(images, boxes, flips, size)
    expected = per_image_crops(images, boxes, flips, size)
    assert batched.shape == (24, 3, size, size) and batched.dtype == torch.float32
    # float32 rounding alone (an ulp at 255 is 3e-5); a wrong pixel would be off by tens.
    torch.testing.assert_close(batched, expected, atol=1e-3, rtol=0)
