"""From an ImageSet to batches of tensors: decoding, an optional in-memory cache, transforms."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from benchmark.data.images import open_image
from benchmark.errors import BenchError
from benchmark.protocol import DataSettings
from benchmark.specs import Batch, ImageSet


def build_transform(data_cfg: DataSettings, train: bool) -> T.Compose:
    """Train: augment as the protocol says; evaluation: a centre crop."""
    crop = data_cfg.crop
    steps: list[Any] = []
    if not train or data_cfg.augment == "center-crop":
        steps.append(T.CenterCrop(crop))
    elif data_cfg.augment == "random-resized-crop":
        steps.append(T.RandomResizedCrop(crop, scale=(0.16, 1.0)))
    else:
        steps.append(T.RandomCrop(crop, pad_if_needed=True))
    if train and data_cfg.hflip:
        steps.append(T.RandomHorizontalFlip())
    steps.append(T.ToTensor())
    space = InputSpace(data_cfg)
    if not space.is_identity:
        steps.append(space)
    steps.append(T.Normalize(data_cfg.mean, data_cfg.std))
    return T.Compose(steps)


class InputSpace:
    """RGB pixels in [0, 1] (..., 3, H, W) to the channel order and range the backbone expects
    (data.channels, data.pixel_range; set from its input convention, e.g. BGR in [0, 255])."""

    def __init__(self, data_cfg: DataSettings) -> None:
        self.pixel_range = data_cfg.pixel_range
        self.bgr = data_cfg.channels == "bgr"

    @property
    def is_identity(self) -> bool:
        return self.pixel_range == 1 and not self.bgr

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.pixel_range != 1:
            images = images * self.pixel_range
        return images.flip(-3) if self.bgr else images


class ImageDataset(torch.utils.data.Dataset):
    """Yields (image, label, index, attributes, attribute_mask) for one split."""

    def __init__(
        self,
        images: ImageSet,
        resize: int,
        transform: T.Compose,
        cache: bool,
        skip_bad: bool = False,
    ) -> None:
        self.images = images
        self.resize = T.Resize(resize)
        self.transform = transform
        self.cache: dict[int, Image.Image] | None = {} if cache else None
        self.skip_bad = skip_bad
        self.skipped: set[int] = set()  # filled by the consumers of batches, see Batch.skipped

    def __len__(self) -> int:
        return len(self.images)

    def decoded(self, index: int) -> Image.Image | None:
        """The resized RGB image (grayscale and CMYK are converted); None if unreadable and
        skip_bad is set."""
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        path = self.images.paths[index]
        try:
            image = self.resize(open_image(path))
        except OSError as error:
            if self.skip_bad:
                return None
            raise BenchError(
                f"Cannot read image {path}: {error}. Re-extract the dataset, or pass "
                f"--skip-bad-images to leave unreadable images out (they are counted)."
            ) from None
        if self.cache is not None:
            self.cache[index] = image
        return image

    def __getitem__(self, index: int) -> tuple | int:
        image = self.decoded(index)
        if image is None:
            return index  # collate leaves it out and reports it in Batch.skipped
        labels = torch.as_tensor(self.images.labels[index])
        item = (self.transform(image), labels, index)
        return item + (_row(self.images.attributes, index), _row(self.images.attribute_mask, index))


def _row(array: np.ndarray | None, index: int) -> torch.Tensor | None:
    return None if array is None else torch.as_tensor(array[index])


def collate(items: list[tuple | int]) -> Batch:
    skipped = tuple(item for item in items if isinstance(item, int))
    kept = [item for item in items if not isinstance(item, int)]
    if not kept:
        raise BenchError(
            f"Every image of a batch was unreadable (indices {list(skipped)}): "
            f"the dataset looks damaged; run `bench data check`."
        )
    images, labels, indices, attributes, masks = zip(*kept, strict=True)
    return Batch(
        torch.stack(images),
        torch.stack(labels),
        torch.tensor(indices),
        _stack(attributes),
        _stack(masks),
        skipped,
    )


def _stack(rows: tuple) -> torch.Tensor | None:
    return None if rows[0] is None else torch.stack(rows)


def train_loader(
    dataset: ImageDataset, sampler: torch.utils.data.Sampler, num_workers: int, pin_memory: bool
) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


def eval_loader(
    dataset: ImageDataset, batch_size: int, num_workers: int, pin_memory: bool
) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
    )
