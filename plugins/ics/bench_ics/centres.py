"""Hash centres: one ±1 vector of K bits per class, far apart in Hamming distance (CSQ, Yuan et
al., CVPR 2020, Algorithm 1), generated or loaded from a file."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

RANDOM_ATTEMPTS = 200
CONSTRUCTIONS = ("hadamard", "shipped", "random")


def sylvester_hadamard(bits: int) -> Tensor:
    """The bits x bits Hadamard matrix of Sylvester's construction (bits a power of 2), the
    same matrix as scipy.linalg.hadamard: row 0 is all ones."""
    if bits < 1 or bits & (bits - 1):
        raise ValueError(f"a Hadamard matrix needs a power of 2 bits, got {bits}")
    matrix = torch.ones(1, 1)
    while len(matrix) < bits:
        matrix = torch.cat([torch.cat([matrix, matrix], 1), torch.cat([matrix, -matrix], 1)])
    return matrix


def hamming_distances(centres: Tensor) -> Tensor:
    """(m, m) Hamming distances of ±1 rows: (K - c_i . c_j) / 2."""
    return (centres.shape[1] - centres @ centres.T) / 2


def distance_stats(centres: Tensor) -> dict[str, float | None]:
    """Minimum, mean and maximum Hamming distance over pairs of distinct centres (None for
    fewer than two centres)."""
    if len(centres) < 2:
        return {"min_distance": None, "mean_distance": None, "max_distance": None}
    distances = hamming_distances(centres.double())
    pairs = distances[torch.triu(torch.ones_like(distances, dtype=torch.bool), diagonal=1)]
    return {
        "min_distance": pairs.min().item(),
        "mean_distance": pairs.mean().item(),
        "max_distance": pairs.max().item(),
    }


def balanced_random_centres(classes: int, bits: int, generator: torch.Generator) -> Tensor:
    """Rows with exactly bits // 2 entries -1 (the official tutorial's "Bernoulli" centres).

    Draws up to RANDOM_ATTEMPTS sets and keeps the first whose minimum distance is at least
    bits / 4 and mean at least bits / 2; failing that, the set with the largest minimum (then
    mean) distance.
    """
    best, best_key = None, None
    for _ in range(RANDOM_ATTEMPTS):
        order = torch.rand(classes, bits, generator=generator).argsort(dim=1)
        centres = torch.where(order < bits // 2, -1.0, 1.0)
        stats = distance_stats(centres)
        key = (stats["min_distance"] or 0.0, stats["mean_distance"] or 0.0)
        if best_key is None or key > best_key:
            best, best_key = centres, key
        if key[0] >= bits / 4 and key[1] >= bits / 2:
            break
    return best


def generate_centres(classes: int, bits: int, how: str, seed: int) -> tuple[Tensor, str]:
    """(classes, bits) ±1 centres and how they were made.

    how="hadamard" (CSQ's Algorithm 1): the first `classes` rows of [H; -H] when bits is a power
    of 2 and classes <= 2 bits, else balanced random rows. how="shipped" (the convention of the
    official repository's NUS-WIDE and COCO centre files): rows 1..classes of H, the all-ones
    row 0 skipped, when classes < bits, else balanced random rows. how="random": balanced random
    rows for every class, as the official repository's COCO centre files are.
    """
    if how not in CONSTRUCTIONS:
        raise ValueError(f"unknown centre construction '{how}'; use one of {CONSTRUCTIONS}")
    generator = torch.Generator().manual_seed(seed)
    power_of_two = bits >= 1 and not bits & (bits - 1)
    if how == "hadamard" and power_of_two and classes <= 2 * bits:
        hadamard = sylvester_hadamard(bits)
        rows = torch.cat([hadamard, -hadamard])[:classes]
        return rows, "hadamard rows" if classes <= bits else "hadamard rows and negations"
    if how == "shipped" and power_of_two and classes < bits:
        return sylvester_hadamard(bits)[1 : classes + 1], f"hadamard rows 1..{classes}"
    return balanced_random_centres(classes, bits, generator), "balanced random"


def load_centres(path: Path, classes: int, bits: int) -> tuple[Tensor, str]:
    """Centres from a .npy, .txt (one row per class) or torch file (.pt, .pkl: a tensor, as the
    official repository ships); (centres, "file <name> sha256 <digest>")."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read the centres file {path}: {error.strerror}") from None
    if path.suffix == ".npy":
        values = torch.from_numpy(np.load(path, allow_pickle=False))
    elif path.suffix == ".txt":
        values = torch.from_numpy(np.loadtxt(path, ndmin=2))
    else:
        values = torch.as_tensor(torch.load(path, map_location="cpu", weights_only=True))
    values = values.float()
    if values.shape != (classes, bits) or not bool(((values == 1) | (values == -1)).all()):
        raise ValueError(
            f"{path}: centres must be a ({classes}, {bits}) array of +1/-1 (one row per class, "
            f"one column per bit); got shape {tuple(values.shape)}"
        )
    return values, f"file {path.name} sha256 {hashlib.sha256(data).hexdigest()}"


def centre_summary(centres: Tensor, construction: str) -> dict[str, Any]:
    return {"construction": construction, "classes": len(centres), "bits": centres.shape[1]} | (
        distance_stats(centres)
    )
