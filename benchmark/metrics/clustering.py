"""Clustering quality: NMI between class labels and k-means clusters.

PML and Revisiting-DML run faiss k-means (20 iterations, k = number of classes), then sklearn's
normalized_mutual_info_score (reference/datasets_metrics.md §5.2). Here k-means runs in torch
on the embeddings' device (k-means++ seeding from a torch.Generator seeded with `seed`, then
Lloyd iterations, distances in blocks) and NMI comes from our own contingency table in numpy.
The normaliser is always passed explicitly: sklearn's default `average_method` changed from
"geometric" to "arithmetic" in version 0.22, so NMI values from before and after it differ.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from benchmark.errors import BenchError
from benchmark.metrics.retrieval import check_embeddings

AVERAGE_METHODS: tuple[str, ...] = ("arithmetic", "geometric", "min", "max")


def nmi(
    embeddings: Tensor,
    labels: Tensor,
    *,
    seed: int = 0,
    iterations: int = 20,
    average_method: str = "arithmetic",
) -> float:
    """NMI of `labels` against k-means clusters of `embeddings`, k = number of distinct labels.

    Reproducible for a given seed on the CPU; on CUDA the centre updates use atomic additions,
    so the last bits of a centre (and, rarely, an assignment) may vary between runs.
    """
    check_embeddings("embeddings", embeddings)
    if labels.ndim != 1 or len(labels) != len(embeddings):
        raise BenchError(
            f"labels have shape {tuple(labels.shape)} but embeddings {tuple(embeddings.shape)}: "
            "expected one label per row of the embeddings"
        )
    _check_average_method(average_method)
    clusters = kmeans(embeddings, len(torch.unique(labels)), seed=seed, iterations=iterations)
    return normalized_mutual_info(
        labels.cpu().numpy(), clusters.cpu().numpy(), average_method=average_method
    )


def kmeans(
    embeddings: Tensor, k: int, *, seed: int = 0, iterations: int = 20, block_size: int = 4096
) -> Tensor:
    """Cluster index in [0, k) of each row: k-means++ seeding, then up to `iterations` Lloyd
    steps (stopping early once no assignment changes)."""
    if not 1 <= k <= len(embeddings) or iterations < 0:
        raise BenchError(
            f"k-means with k={k} and iterations={iterations} on {len(embeddings)} points: "
            "expected 1 <= k <= the number of points and iterations >= 0"
        )
    points = embeddings.to(torch.float32)
    generator = torch.Generator(device=points.device).manual_seed(seed)
    centres = _kmeans_plus_plus(points, k, generator)
    assignment = _assign(points, centres, block_size)
    for _ in range(iterations):
        centres = _centroids(points, assignment, centres)
        previous, assignment = assignment, _assign(points, centres, block_size)
        if torch.equal(previous, assignment):
            break
    return assignment


def _kmeans_plus_plus(points: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Arthur & Vassilvitskii 2007: each next centre drawn with probability ~ D(x)^2."""
    chosen = torch.randint(len(points), (1,), generator=generator, device=points.device)
    closest = (points - points[chosen]).square().sum(1)
    for _ in range(1, k):
        # All points already on a centre (duplicates): draw uniformly instead.
        weights = closest if bool(closest.sum() > 0) else torch.ones_like(closest)
        index = torch.multinomial(weights, 1, generator=generator)
        chosen = torch.cat([chosen, index])
        closest = torch.minimum(closest, (points - points[index]).square().sum(1))
    return points[chosen].clone()


def _assign(points: Tensor, centres: Tensor, block_size: int) -> Tensor:
    """Index of the nearest centre of each point, `block_size` points at a time."""
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 does not change which centre is nearest.
    centre_norms = centres.square().sum(1)
    blocks = [
        torch.addmm(centre_norms, block, centres.T, alpha=-2).argmin(1)
        for block in points.split(block_size)
    ]
    return torch.cat(blocks)


def _centroids(points: Tensor, assignment: Tensor, centres: Tensor) -> Tensor:
    """Mean of each cluster's points; an empty cluster keeps its centre."""
    sums = torch.zeros_like(centres).index_add_(0, assignment, points)
    counts = torch.bincount(assignment, minlength=len(centres))[:, None]
    return torch.where(counts > 0, sums / counts.clamp(min=1), centres)


def normalized_mutual_info(
    labels_true: np.ndarray, labels_pred: np.ndarray, *, average_method: str = "arithmetic"
) -> float:
    """I(U; V) / mean(H(U), H(V)), `average_method` choosing the mean; natural logarithms.

    Same value and special cases as sklearn.metrics.normalized_mutual_info_score: 1.0 when
    both labellings are a single cluster, 0.0 when the mutual information is 0.
    """
    _check_average_method(average_method)
    classes, true_index = np.unique(np.asarray(labels_true), return_inverse=True)
    clusters, pred_index = np.unique(np.asarray(labels_pred), return_inverse=True)
    if len(classes) == len(clusters) <= 1:
        return 1.0
    if min(len(classes), len(clusters)) == 1:  # one side has zero entropy, so I(U; V) = 0
        return 0.0
    mutual_information = _mutual_information(true_index.ravel(), pred_index.ravel(), len(clusters))
    if mutual_information == 0.0:
        return 0.0
    h_true, h_pred = _entropy(true_index), _entropy(pred_index)
    normaliser = {
        "arithmetic": (h_true + h_pred) / 2,
        "geometric": np.sqrt(h_true * h_pred),
        "min": min(h_true, h_pred),
        "max": max(h_true, h_pred),
    }[average_method]
    return float(mutual_information / normaliser)


def _mutual_information(true_index: np.ndarray, pred_index: np.ndarray, num_pred: int) -> float:
    """sum_ij n_ij/N log(N n_ij / (a_i b_j)) over the non-zero cells of the contingency table."""
    # The table is kept sparse: with thousands of classes a dense one would not fit.
    cells, n_ij = np.unique(true_index.astype(np.int64) * num_pred + pred_index, return_counts=True)
    a, b = np.bincount(true_index), np.bincount(pred_index)
    total = len(true_index)
    outer = a[cells // num_pred].astype(np.float64) * b[cells % num_pred]
    terms = n_ij / total * (np.log(n_ij) + np.log(total) - np.log(outer))
    return max(0.0, float(terms.sum()))


def _entropy(index: np.ndarray) -> float:
    p = np.bincount(index) / len(index)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _check_average_method(average_method: str) -> None:
    if average_method not in AVERAGE_METHODS:
        raise BenchError(
            f"average_method={average_method!r}: expected one of {', '.join(AVERAGE_METHODS)} "
            "(sklearn's default was 'geometric' before 0.22, 'arithmetic' since)"
        )
