"""A validation split carved out of the training split, so that model selection never sees the
test split.

Retrieval and query-gallery datasets (CUB, CARS196, In-Shop): a seeded share of the training
classes (items, for In-Shop) is held out; their images are the validation set, searched against
itself with the image itself excluded, as the retrieval task is. Hashing datasets (COCO): a
seeded share of the training images is held out as validation queries, searched against the
remaining training images (the database of COCO's protocol holds the training images too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.errors import BenchError


@dataclass(frozen=True)
class ValidationPlan:
    """Indices into the training split. `gallery` None: the query set is its own gallery."""

    train: np.ndarray
    query: np.ndarray
    gallery: np.ndarray | None


def carve_validation(labels: np.ndarray, task: str, fraction: float, seed: int) -> ValidationPlan:
    """Hold out `fraction` of the training classes (hashing: of the training images)."""
    rng = np.random.default_rng([seed, 7919])  # its own stream, apart from the run's seed
    if task == "hashing":
        held = _share(len(labels), fraction, "training images")
        order = rng.permutation(len(labels))
        query, train = np.sort(order[:held]), np.sort(order[held:])
        return ValidationPlan(train=train, query=query, gallery=train)
    classes = np.unique(labels)
    held = _share(len(classes), fraction, "training classes")
    chosen = np.isin(labels, rng.permutation(classes)[:held])
    return ValidationPlan(train=np.flatnonzero(~chosen), query=np.flatnonzero(chosen), gallery=None)


def _share(total: int, fraction: float, what: str) -> int:
    held = int(round(fraction * total))
    if held < 2 or total - held < 2:
        raise BenchError(
            f"eval.validation.fraction={fraction} of {total} {what} leaves {held} for validation "
            f"and {total - held} for training; both need at least 2. Change it with --set."
        )
    return held
