"""Which image pipeline a run uses: the prepared uint8 cache when it is present and valid for
the protocol (`bench data cache`), else decoding with PIL and torchvision transforms."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.data.loading import ImageDataset, build_transform
from benchmark.data.prepared import AugmentedLoader, PreparedDataset, prepared_splits
from benchmark.protocol import DataSettings
from benchmark.specs import ImageSet, Splits


@dataclass(frozen=True)
class Pipeline:
    """Datasets of one run; `gallery is query` for the retrieval task. `train_eval` holds the
    training images as evaluation sees them (no augmentation), for validation subsets."""

    name: str  # "prepared" or "plain"
    train: torch.utils.data.Dataset
    query: torch.utils.data.Dataset
    gallery: torch.utils.data.Dataset
    train_eval: torch.utils.data.Dataset


class SubsetView(torch.utils.data.Dataset):
    """Some items of a dataset, in the given order; items keep their index in `base`."""

    def __init__(self, base: torch.utils.data.Dataset, indices: Sequence[int]) -> None:
        self.base, self.indices = base, [int(i) for i in indices]
        self.skipped: set[int] = set()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        return self.base[self.indices[position]]


def base_dataset(dataset: torch.utils.data.Dataset) -> torch.utils.data.Dataset:
    while isinstance(dataset, SubsetView):
        dataset = dataset.base
    return dataset


def build_pipeline(
    splits: Splits,
    data_cfg: DataSettings,
    data_root: Path,
    dataset: str,
    skip_bad: bool = False,
) -> Pipeline:
    prepared = prepared_splits(splits, data_root, dataset, data_cfg.resize, data_cfg.crop)
    if prepared is None:
        train_transform, eval_transform = (
            build_transform(data_cfg, True),
            build_transform(data_cfg, False),
        )

        def make(images: ImageSet, transform) -> ImageDataset:
            return ImageDataset(images, data_cfg.resize, transform, data_cfg.cache, skip_bad)

        query = make(splits.query, eval_transform)
        gallery = query if splits.gallery is splits.query else make(splits.gallery, eval_transform)
        train, train_eval = make(splits.train, train_transform), make(splits.train, eval_transform)
        train_eval.cache = train.cache  # the same decoded images; only the transform differs
        return Pipeline("plain", train, query, gallery, train_eval)
    train = PreparedDataset(splits.train, prepared["train"], skip_bad)
    query = PreparedDataset(splits.query, prepared["query"], skip_bad)
    gallery = (
        query
        if splits.gallery is splits.query
        else PreparedDataset(splits.gallery, prepared["gallery"], skip_bad)
    )
    return Pipeline("prepared", train, query, gallery, train)  # augmentation happens later


def batches(
    loader: torch.utils.data.DataLoader,
    data_cfg: DataSettings,
    train: bool,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> Iterable:
    """The loader's batches as model inputs: prepared uint8 images are augmented on `device`."""
    if isinstance(base_dataset(loader.dataset), PreparedDataset):
        return AugmentedLoader(loader, data_cfg, train, device, generator)
    return loader
