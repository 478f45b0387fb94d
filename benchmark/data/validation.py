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


def carve_validation(
    labels: np.ndarray,
    task: str,
    fraction: float | None,
    seed: int,
    folds: int | None = None,
    fold: int = 0,
) -> ValidationPlan:
    """Hold out `fraction` of the training classes (hashing: of the training images), or, with
    `folds`, the `fold`-th of `folds` near-equal parts of their seeded permutation (the folds
    partition the training classes: k-fold cross-validation)."""
    rng = np.random.default_rng([seed, 7919])  # its own stream, apart from the run's seed
    units = len(labels) if task == "hashing" else len(np.unique(labels))
    order = rng.permutation(units)
    held = _held_positions(units, fraction, folds, fold, "training images" if task == "hashing"
                           else "training classes")  # fmt: skip
    if task == "hashing":
        query = np.sort(order[held])
        train = np.setdiff1d(np.arange(len(labels)), query)
        return ValidationPlan(train=train, query=query, gallery=train)
    classes = np.unique(labels)
    chosen = np.isin(labels, classes[order[held]])
    return ValidationPlan(train=np.flatnonzero(~chosen), query=np.flatnonzero(chosen), gallery=None)


def _held_positions(units: int, fraction, folds, fold, what: str) -> np.ndarray:
    """Positions, in the permutation, of the held-out units."""
    if folds is None:
        return np.arange(_share(units, fraction, what))
    if not 0 <= fold < folds or units // folds < 2 or units - units // folds < 2:
        raise BenchError(
            f"eval.validation: fold {fold} of {folds} folds over {units} {what} is not "
            f"possible; folds must leave at least 2 on each side and 0 <= fold < folds."
        )
    return np.array_split(np.arange(units), folds)[fold]


def _share(total: int, fraction: float, what: str) -> int:
    held = int(round(fraction * total))
    if held < 2 or total - held < 2:
        raise BenchError(
            f"eval.validation.fraction={fraction} of {total} {what} leaves {held} for validation "
            f"and {total - held} for training; both need at least 2. Change it with --set."
        )
    return held
