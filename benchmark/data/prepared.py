"""A prepared cache: every image decoded once, stored as uint8 in a memory-mapped array per split.

Each image is converted to RGB, resized so that its shorter side is `resize` (the same PIL
resize the plain pipeline uses) and centre-cropped to a `resize x resize` square, which drops
the margins of the long side as a centre crop does. Training crops are then taken inside that
square, so the cache serves any crop <= resize, and a random crop never reaches the long side's
margins as it does in the plain pipeline. The evaluation centre crop is the plain pipeline's
exactly whenever (resize - crop) is a multiple of 4; otherwise it may sit one pixel off.

Batches of uint8 images become model inputs in `augment_batch`, on the batch's device.

Layout: <data_root>/.prepared/<dataset>/resize<resize>/<split>/{images.npy, manifest.json}; the
array is (N, 3, resize, resize), channels first as the model takes them, because transposing
from (N, H, W, 3) when batching cost a fifth of the prepared pipeline's time at resize 256.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import transforms as T

from benchmark.data.images import open_image
from benchmark.data.loading import InputSpace
from benchmark.errors import BenchError
from benchmark.files import process_is_running, write_atomically
from benchmark.protocol import DataSettings
from benchmark.specs import Batch, ImageSet, Splits

FORMAT_VERSION = 1  # bump whenever the stored pixels or the manifest change
ARRAY_NAME, MANIFEST_NAME = "images.npy", "manifest.json"
RESIZED_CROP_SCALE, RESIZED_CROP_RATIO = (0.16, 1.0), (3 / 4, 4 / 3)  # as loading.build_transform


@dataclass(frozen=True)
class PreparedSplit:
    """A prepared split on disk. `unreadable`: indices of images that could not be decoded
    (their rows are zeros)."""

    folder: Path
    resize: int
    count: int
    unreadable: tuple[int, ...] = ()

    def array(self) -> np.ndarray:
        """The (count, 3, resize, resize) uint8 RGB images, memory-mapped read-only."""
        return np.load(self.folder / ARRAY_NAME, mmap_mode="r")


# --- writing and opening -----------------------------------------------------------------------


def cache_dir(data_root: Path, dataset: str, resize: int) -> Path:
    return Path(data_root) / ".prepared" / dataset / f"resize{resize}"


def split_paths(splits: Splits, data_root: Path, dataset: str, resize: int) -> dict[str, Path]:
    """The folder of each split; query and gallery share one when they are the same object."""
    root = cache_dir(data_root, dataset, resize)
    gallery = root / ("query" if splits.gallery is splits.query else "gallery")
    return {"train": root / "train", "query": root / "query", "gallery": gallery}


def prepare_dataset(
    splits: Splits, data_root: Path, dataset: str, resize: int, crop: int, force: bool = False
) -> dict[str, Path]:
    """Prepare every split whose cache is missing or stale (all of them if `force`)."""
    paths = split_paths(splits, data_root, dataset, resize)
    done: set[Path] = set()
    for name, path in paths.items():
        images = getattr(splits, name)
        if path not in done and (force or open_prepared(path, images, resize) is None):
            prepare_split(images, resize, crop, path)
        done.add(path)
    return paths


def prepared_splits(
    splits: Splits, data_root: Path, dataset: str, resize: int, crop: int
) -> dict[str, PreparedSplit] | None:
    """Every split's cache when all are present and valid for (resize, crop), else None."""
    if crop > resize:
        return None
    paths = split_paths(splits, data_root, dataset, resize)
    opened = {
        name: open_prepared(path, getattr(splits, name), resize) for name, path in paths.items()
    }
    if any(split is None for split in opened.values()):
        return None
    return opened


def prepare_split(images: ImageSet, resize: int, crop: int, path: Path) -> PreparedSplit:
    """Decode, resize and store every image of `images` under the folder `path`.

    The array is written under a temporary name and renamed; the manifest comes last, so a
    manifest that matches means a complete array.
    """
    if crop > resize:
        raise BenchError(
            f"data.crop={crop} is larger than data.resize={resize}: the prepared cache holds "
            f"{resize}x{resize} images. Lower data.crop or raise data.resize."
        )
    if not len(images):
        raise BenchError(f"Cannot prepare {path}: the split has no images.")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MANIFEST_NAME).unlink(missing_ok=True)
    _remove_stale_temps(path)
    fingerprint = files_fingerprint(images)  # before decoding: a file changed meanwhile is stale
    unreadable = _write_array(images, resize, path / ARRAY_NAME)
    manifest = {
        "format": FORMAT_VERSION,
        "resize": resize,
        "count": len(images),
        "files_sha256": fingerprint,
        "unreadable": list(unreadable),
    }
    text = json.dumps(manifest, indent=1).encode()
    write_atomically(path / MANIFEST_NAME, lambda handle: handle.write(text))
    return PreparedSplit(path, resize, len(images), unreadable)


def open_prepared(path: Path, images: ImageSet, resize: int) -> PreparedSplit | None:
    """The prepared split in `path`, or None when it is missing, incomplete or stale."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_NAME).read_text())
        array = np.load(path / ARRAY_NAME, mmap_mode="r")
    except (OSError, ValueError):
        return None
    expected = {"format": FORMAT_VERSION, "resize": resize, "count": len(images)}
    if any(manifest.get(key) != value for key, value in expected.items()):
        return None
    if array.shape != (len(images), 3, resize, resize) or array.dtype != np.uint8:
        return None
    if manifest.get("files_sha256") != files_fingerprint(images):
        return None
    return PreparedSplit(path, resize, len(images), tuple(manifest.get("unreadable", ())))


def files_fingerprint(images: ImageSet) -> str:
    """sha256 over every image's path (relative to their common folder), size and mtime, in
    order: renaming, reordering, replacing or touching an image changes it."""
    root = os.path.commonpath([os.fspath(path.parent) for path in images.paths])
    digest = hashlib.sha256()
    for path in images.paths:
        try:
            stat = path.stat()
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        relative = Path(os.path.relpath(path, root)).as_posix()
        digest.update(f"{relative}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()


def _write_array(images: ImageSet, resize: int, target: Path) -> tuple[int, ...]:
    """Fill a temporary .npy with the images, then rename it to `target`. Returns the indices
    of unreadable images."""
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shape = (len(images), 3, resize, resize)
    try:
        array = np.lib.format.open_memmap(temp, mode="w+", dtype=np.uint8, shape=shape)
        unreadable = _fill(array, images.paths, resize)
        array.flush()
        del array  # unmapped before the rename
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return unreadable


def _fill(array: np.ndarray, paths: tuple[Path, ...], resize: int) -> tuple[int, ...]:
    """Decode into `array` in threads (PIL releases the GIL); the indices that failed."""
    resize_shorter = T.Resize(resize)  # the plain pipeline's resize, for the same pixels

    def store(index: int) -> bool:
        image = _decode(paths[index], resize_shorter, resize)
        if image is not None:
            array[index] = image
        return image is not None

    with ThreadPoolExecutor() as pool:
        readable = list(pool.map(store, range(len(paths))))
    return tuple(index for index, ok in enumerate(readable) if not ok)


def _decode(path: Path, resize_shorter: T.Resize, size: int) -> np.ndarray | None:
    """(3, size, size) uint8 RGB (grayscale and CMYK are converted), or None if unreadable."""
    try:
        image = resize_shorter(open_image(path))
    except OSError:
        return None
    return np.asarray(T.functional.center_crop(image, size)).transpose(2, 0, 1)


def _remove_stale_temps(folder: Path) -> None:
    """Delete temporary arrays left by processes that died."""
    for temp in folder.glob(f".{ARRAY_NAME}.*.tmp"):
        pid = temp.name.split(".")[-2]
        if not pid.isdigit() or not process_is_running(int(pid)):
            temp.unlink(missing_ok=True)


# --- reading -----------------------------------------------------------------------------------


class PreparedDataset(torch.utils.data.Dataset):
    """Yields (uint8 image (3, resize, resize), label, index, attributes, attribute_mask), as
    loading.ImageDataset does, so loading.collate applies; `augment_batch` finishes the images.

    skip_bad: yield the index of an unreadable image (collate leaves it out) instead of raising.
    """

    def __init__(self, images: ImageSet, prepared: PreparedSplit, skip_bad: bool = False) -> None:
        if len(images) != prepared.count:
            raise BenchError(
                f"{prepared.folder} holds {prepared.count} images but the split has "
                f"{len(images)}: rebuild it with `bench data cache`."
            )
        self.images, self.prepared, self.skip_bad = images, prepared, skip_bad
        self.unreadable = frozenset(prepared.unreadable)
        self.skipped: set[int] = set()  # filled by the consumers of batches, see Batch.skipped
        self._array: np.ndarray | None = None  # opened on first use, in each worker process

    def __len__(self) -> int:
        return len(self.images)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}  # pickling a memmap would copy all of it

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = self.prepared.array()
        return self._array

    def __getitem__(self, index: int) -> tuple | int:
        if index in self.unreadable:
            if self.skip_bad:
                return index
            raise BenchError(
                f"Cannot read image {self.images.paths[index]} (it was unreadable when the cache "
                f"was built). Re-extract the dataset and run `bench data cache` again, or pass "
                f"--skip-bad-images to leave unreadable images out (they are counted)."
            )
        image = torch.from_numpy(np.array(self.array[index]))
        labels = torch.as_tensor(self.images.labels[index])
        attributes, mask = self.images.attributes, self.images.attribute_mask
        return image, labels, index, _row(attributes, index), _row(mask, index)


def _row(array: np.ndarray | None, index: int) -> torch.Tensor | None:
    return None if array is None else torch.as_tensor(array[index])


class AugmentedLoader:
    """Wraps a loader of PreparedDataset batches: moves each batch to `device`, then turns its
    uint8 images into model inputs there with `augment_batch`. Has the loader's len and dataset."""

    def __init__(
        self,
        loader: torch.utils.data.DataLoader,
        data_cfg: DataSettings,
        train: bool,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> None:
        self.loader, self.data_cfg, self.train = loader, data_cfg, train
        self.device, self.generator = device, generator
        self.dataset = loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.loader:
            batch = batch.to(self.device, non_blocking=True)
            images = augment_batch(batch.images, self.data_cfg, self.train, self.generator)
            yield replace(batch, images=images)


# --- augmenting batches ------------------------------------------------------------------------


def augment_batch(
    images_uint8: torch.Tensor,
    data_cfg: DataSettings,
    train: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> (B, 3, crop, crop) float, normalised, on the images' device.

    As loading.build_transform: train crops as data_cfg.augment says, then flips with p=0.5 if
    data_cfg.hflip; evaluation centre-crops. Random numbers are drawn on the CPU from
    `generator` (a CPU generator; None: torch's global one), so that a seed fixes the output
    whatever the device.
    """
    crop, (height, width) = data_cfg.crop, images_uint8.shape[-2:]
    if crop > min(height, width):
        raise BenchError(f"data.crop={crop} is larger than the {height}x{width} images.")
    count, augment = len(images_uint8), data_cfg.augment if train else "center-crop"
    if augment == "random-resized-crop":
        boxes = _resized_crop_boxes(count, height, width, generator)
    else:
        boxes = _crop_boxes(count, height, width, crop, augment == "random-crop", generator)
    if train and data_cfg.hflip:
        flips = (torch.rand(count, generator=generator) < 0.5).tolist()
    else:
        flips = [False] * count
    crops = _crops(images_uint8, boxes, flips, crop)
    return _normalize_(crops, data_cfg)


def _normalize_(images: torch.Tensor, data_cfg: DataSettings) -> torch.Tensor:
    """The arithmetic of ToTensor, InputSpace and Normalize, so that the values agree to the bit
    (in place when InputSpace is the identity)."""
    mean = torch.as_tensor(data_cfg.mean, dtype=images.dtype, device=images.device)
    std = torch.as_tensor(data_cfg.std, dtype=images.dtype, device=images.device)
    images = InputSpace(data_cfg)(images.div_(255))
    return images.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))


def _crop_boxes(
    count: int, height: int, width: int, crop: int, random: bool, generator
) -> torch.Tensor:
    """(count, 4) int64 (top, left, height, width): uniform offsets, or torchvision's centre."""
    if random:
        top = torch.randint(0, height - crop + 1, (count,), generator=generator)
        left = torch.randint(0, width - crop + 1, (count,), generator=generator)
    else:
        top = torch.full((count,), int(round((height - crop) / 2.0)))
        left = torch.full((count,), int(round((width - crop) / 2.0)))
    size = torch.full((count,), crop)
    return torch.stack([top, left, size, size], dim=1)


def _resized_crop_boxes(
    count: int, height: int, width: int, generator, attempts: int = 10
) -> torch.Tensor:
    """RandomResizedCrop.get_params for `count` images at once: the first of `attempts` draws
    of (scale, log-ratio) that fits, else torchvision's fallback (the whole image, the ratio
    clamped to RESIZED_CROP_RATIO)."""
    area, (low, high) = height * width, RESIZED_CROP_RATIO
    target = area * torch.empty(count, attempts).uniform_(*RESIZED_CROP_SCALE, generator=generator)
    aspect = torch.exp(
        torch.empty(count, attempts).uniform_(math.log(low), math.log(high), generator=generator)
    )
    widths = torch.sqrt(target * aspect).round().long()
    heights = torch.sqrt(target / aspect).round().long()
    fits = (widths > 0) & (widths <= width) & (heights > 0) & (heights <= height)
    first = fits.long().argmax(dim=1, keepdim=True)
    fallback_h, fallback_w = _fallback_size(height, width)
    found = fits.any(dim=1)
    heights = torch.where(found, heights.gather(1, first)[:, 0], fallback_h)
    widths = torch.where(found, widths.gather(1, first)[:, 0], fallback_w)
    top = (torch.rand(count, generator=generator) * (height - heights + 1)).long()
    left = (torch.rand(count, generator=generator) * (width - widths + 1)).long()
    top = torch.where(found, top, (height - heights) // 2)
    left = torch.where(found, left, (width - widths) // 2)
    return torch.stack([top, left, heights, widths], dim=1)


def _fallback_size(height: int, width: int) -> tuple[int, int]:
    low, high = RESIZED_CROP_RATIO
    if width / height < low:
        return int(round(width / low)), width
    if width / height > high:
        return height, int(round(height * high))
    return height, width


def _crops(images: torch.Tensor, boxes: torch.Tensor, flips: list[bool], size: int) -> torch.Tensor:
    """Each image's box, mirrored where `flips` says, resized to (size, size) bilinearly (no
    antialiasing, F.interpolate's align_corners=False sampling) unless it has that size already;
    float. All images at once: a few indexing kernels instead of several launches per image,
    which left a fast GPU waiting on the host."""
    exact = bool((boxes[:, 2:] == size).all())  # boxes are drawn on the host: no device wait
    top, left, height, width = boxes.to(images.device).unbind(1)
    flip = torch.as_tensor(flips, dtype=torch.bool, device=images.device)
    rows, row_weight = _sample_points(top, height, size, torch.zeros_like(flip))
    cols, col_weight = _sample_points(left, width, size, flip)
    batch = torch.arange(len(images), device=images.device)[:, None, None]

    def pick(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # (B, size, size, C)
        return images[batch, :, r[:, :, None], c[:, None, :]].float()

    if exact:  # crops of the output size: the pixels themselves
        return pick(rows[0], cols[0]).permute(0, 3, 1, 2).contiguous()
    ry, cx = row_weight[:, :, None, None], col_weight[:, None, :, None]
    upper = (1 - cx) * pick(rows[0], cols[0]) + cx * pick(rows[0], cols[1])
    lower = (1 - cx) * pick(rows[1], cols[0]) + cx * pick(rows[1], cols[1])
    return ((1 - ry) * upper + ry * lower).permute(0, 3, 1, 2).contiguous()


def _sample_points(start, length, size: int, mirrored):
    """((B, size) first and second source index, (B, size) weight of the second) along one
    axis: output pixel i reads the box at (i + 0.5) * length / size - 0.5, clamped at 0, as
    F.interpolate does; in a mirrored box, position p is the box's pixel length - 1 - p."""
    scale = (length.float() / size)[:, None]
    centre = torch.arange(size, device=start.device, dtype=torch.float32)[None, :] + 0.5
    source = (centre * scale - 0.5).clamp(min=0)
    first = source.floor().long()
    last = (length - 1)[:, None]
    second = torch.minimum(first + 1, last)
    first = torch.minimum(first, last)
    weight = source - source.floor()
    first, second = (torch.where(mirrored[:, None], last - i, i) for i in (first, second))
    return torch.stack([first, second]) + start[None, :, None], weight
