"""Batch samplers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from benchmark.errors import BenchError
from benchmark.protocol import DataSettings


class EpochBatchSampler(torch.utils.data.Sampler[list[int]]):
    """`iterations` batches per pass, drawn from a generator seeded by (seed, epoch)."""

    def __init__(self, iterations: int, seed: int) -> None:
        self.iterations, self.seed, self.epoch = iterations, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.iterations

    def rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])


class PKSampler(EpochBatchSampler):
    """Batches of P distinct classes x K images per class, `iterations` batches per pass.

    Classes with fewer than K images are filled by sampling with replacement (as the official
    MS code's RandomIdentitySampler does). Seeded: the same (seed, epoch) gives the same batches.
    """

    def __init__(
        self,
        labels: np.ndarray,
        classes_per_batch: int,
        samples_per_class: int,
        iterations: int,
        seed: int,
    ) -> None:
        classes, inverse = np.unique(np.asarray(labels), return_inverse=True)
        if classes_per_batch > len(classes):
            raise BenchError(
                f"data.classes_per_batch={classes_per_batch} but the training split "
                f"has only {len(classes)} classes; lower it with --set."
            )
        check_batch_fits(classes_per_batch * samples_per_class, len(inverse))
        super().__init__(iterations, seed)
        self.members = [np.flatnonzero(inverse == c) for c in range(len(classes))]
        self.p, self.k = classes_per_batch, samples_per_class

    def __iter__(self) -> Iterator[list[int]]:
        rng = self.rng()
        for _ in range(self.iterations):
            chosen = rng.choice(len(self.members), size=self.p, replace=False)
            yield [int(i) for c in chosen for i in self._pick(rng, self.members[c])]

    def _pick(self, rng: np.random.Generator, members: np.ndarray) -> np.ndarray:
        return rng.choice(members, size=self.k, replace=len(members) < self.k)


class RandomBatchSampler(EpochBatchSampler):
    """Batches of `batch_size` distinct images drawn at random, `iterations` batches per pass:
    for multi-label (hashing) training sets, where P x K classes are not defined.

    Seeded: the same (seed, epoch) gives the same batches.
    """

    def __init__(self, size: int, batch_size: int, iterations: int, seed: int) -> None:
        check_batch_fits(batch_size, size)
        super().__init__(iterations, seed)
        self.size, self.batch_size = size, batch_size

    def __iter__(self) -> Iterator[list[int]]:
        rng = self.rng()
        for _ in range(self.iterations):
            yield rng.choice(self.size, size=self.batch_size, replace=False).tolist()


def training_sampler(
    labels: np.ndarray, data_cfg: DataSettings, iterations: int, seed: int
) -> PKSampler | RandomBatchSampler:
    """P x K batches for single-label training sets; for multi-hot (N, C) labels, random
    batches of the same size P x K."""
    p, k = data_cfg.classes_per_batch, data_cfg.samples_per_class
    if np.asarray(labels).ndim == 2:
        return RandomBatchSampler(len(labels), p * k, iterations, seed)
    return PKSampler(labels, p, k, iterations, seed)


def check_batch_fits(batch_size: int, size: int) -> None:
    """A batch larger than the training split is a mistake (and P x K sampling with replacement
    would allocate it): refuse it."""
    if batch_size > size:
        raise BenchError(
            f"A batch of {batch_size:,} images (data.classes_per_batch x "
            f"data.samples_per_class) is larger than the training split ({size:,} images); "
            f"lower it with --set."
        )


class WrappedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Another sampler's batches, changed by a subclass's __iter__; epochs and length are the
    wrapped sampler's."""

    def __init__(self, sampler: torch.utils.data.Sampler[list[int]]) -> None:
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)


class SubsetBatchSampler(WrappedBatchSampler):
    """Another sampler's batches, drawn over a subset of a split and returned as indices of the
    whole split (so that Batch.indices keep indexing the training split)."""

    def __init__(self, sampler: EpochBatchSampler, indices: np.ndarray) -> None:
        super().__init__(sampler)
        self.indices = np.asarray(indices)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.sampler:
            yield self.indices[batch].tolist()


class ShardedBatchSampler(WrappedBatchSampler):
    """This process's slice of another sampler's global batches, under torchrun.

    Every rank draws the same global batches (same seed, same epoch) and keeps the `rank`-th
    of `world_size` equal contiguous slices. P x K batches are class-major, so with P divisible
    by the world size each rank sees P / world_size whole classes, distinct from the others';
    gathered in rank order, the slices are exactly the single-process batch.
    """

    def __init__(
        self, sampler: torch.utils.data.Sampler[list[int]], rank: int, world_size: int
    ) -> None:
        super().__init__(sampler)
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.sampler:
            share = len(batch) // self.world_size
            yield batch[self.rank * share : (self.rank + 1) * share]
