"""Exact retrieval metrics by brute force: Recall@K, MAP@R and R-Precision.

Definitions follow Musgrave et al. 2020, "A Metric Learning Reality Check", §3.2, and
pytorch-metric-learning's AccuracyCalculator (reference/datasets_metrics.md §5.1, §5.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.errors import BenchError

Distance = Literal["cosine", "euclidean"]
DISTANCES: tuple[str, ...] = ("cosine", "euclidean")


def retrieval_metrics(
    query: Tensor,
    gallery: Tensor,
    query_labels: Tensor,
    gallery_labels: Tensor,
    *,
    recall_at: Sequence[int],
    exclude_self: bool,
    distance: Distance = "cosine",
    block_size: int = 256,
) -> dict[str, float]:
    """Recall@K for each K in `recall_at`, MAP@R and R-Precision, as fractions in [0, 1].

    exclude_self: query and gallery are the same set (row i of each is the same item); each
    query's own index is removed from its ranking wherever it lands, so duplicates are safe.
    distance: "cosine" ranks by the dot product of L2-normalised rows (higher is closer),
    "euclidean" by squared Euclidean distance (lower is closer); both in float32.
    Ties are broken by gallery index, ascending (a stable sort), so results are deterministic.
    A query with no relevant gallery item (R = 0) is left out of every metric and counted in
    "queries_without_relevant"; "queries" is how many were counted (metrics are NaN if none).
    Runs on the device of `query` in blocks of `block_size` queries: memory O(block x gallery).
    """
    _check_inputs(query, gallery, query_labels, gallery_labels, recall_at, exclude_self)
    if distance not in DISTANCES or block_size < 1:
        raise BenchError(
            f"distance={distance!r}, block_size={block_size}: "
            f"expected one of {DISTANCES} and a block_size of at least 1"
        )
    device = query.device
    query, gallery = _prepare(query, distance), _prepare(gallery.to(device), distance)
    query_labels, gallery_labels = query_labels.to(device), gallery_labels.to(device)
    positions, blocks = torch.arange(len(query), device=device), []
    for start in range(0, len(query), block_size):
        rows = slice(start, start + block_size)
        self_index = positions[rows] if exclude_self else None
        ranked = _ranking(_similarity(query[rows], gallery, distance), self_index)
        relevant = gallery_labels[ranked] == query_labels[rows, None]
        blocks.append(_block_metrics(relevant, max(recall_at)))
    columns = [torch.cat(column) for column in zip(*blocks, strict=True)]
    first_hit, average_precision, r_precision, num_relevant = columns
    counted = num_relevant > 0
    results = {f"recall@{k}": _mean(first_hit[counted] < k) for k in recall_at}
    results["map@r"] = _mean(average_precision[counted])
    results["r_precision"] = _mean(r_precision[counted])
    results["queries"] = int(counted.sum())
    results["queries_without_relevant"] = int((~counted).sum())
    return results


def _block_metrics(relevant: Tensor, max_k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per query: 0-based rank of its first relevant item, AP@R, R-Precision and R.

    relevant: (queries, ranks) bool, whether each ranked gallery item shares the query's label.
    """
    num_relevant = relevant.sum(1)
    # Only the first max(K, R) ranks can change any metric.
    width = min(relevant.shape[1], max(max_k, int(num_relevant.max())))
    relevant = relevant[:, :width]
    hits = relevant.cumsum(1)
    rank = torch.arange(1, width + 1, device=relevant.device)
    within_r = relevant & (rank <= num_relevant[:, None])
    r = num_relevant.clamp(min=1).double()
    average_precision = (hits.double() / rank * within_r).sum(1) / r
    return (hits == 0).sum(1), average_precision, within_r.sum(1) / r, num_relevant


def _ranking(similarity: Tensor, self_index: Tensor | None) -> Tensor:
    """Gallery indices from closest to farthest, ties by index; each row's self index removed."""
    order = torch.sort(-similarity, dim=1, stable=True).indices
    if self_index is None:
        return order
    # By index, not by dropping column 0: a duplicate of the query may rank before it.
    keep = order != self_index[:, None]
    return order[keep].view(len(order), -1)


def _similarity(query: Tensor, gallery: Tensor, distance: Distance) -> Tensor:
    """Higher is closer: the dot product, or minus the squared distance (up to a row constant)."""
    if distance == "cosine":
        return query @ gallery.T
    # -|q - g|^2 = 2 q.g - |g|^2 - |q|^2; the last term is constant per query, so it is dropped.
    return 2 * query @ gallery.T - gallery.square().sum(1)


def _prepare(embeddings: Tensor, distance: Distance) -> Tensor:
    embeddings = embeddings.to(torch.float32)
    return F.normalize(embeddings, dim=1) if distance == "cosine" else embeddings


def _mean(values: Tensor) -> float:
    return values.double().mean().item() if len(values) else float("nan")


def _check_inputs(query, gallery, query_labels, gallery_labels, recall_at, exclude_self) -> None:
    shapes = (
        f"query {tuple(query.shape)}, gallery {tuple(gallery.shape)}, query_labels "
        f"{tuple(query_labels.shape)}, gallery_labels {tuple(gallery_labels.shape)}"
    )
    if not (
        query.ndim == gallery.ndim == 2
        and query.shape[1] == gallery.shape[1]
        and query_labels.shape == query.shape[:1]
        and gallery_labels.shape == gallery.shape[:1]
        and len(query) * len(gallery) > 0
    ):
        raise BenchError(
            f"retrieval_metrics got {shapes}: "
            "expected non-empty (N, D) and (M, D) embeddings with (N,) and (M,) labels"
        )
    if not recall_at or any(not isinstance(k, int) or k < 1 for k in recall_at):
        raise BenchError(f"recall_at={list(recall_at)}: expected positive integers, e.g. [1, 2, 4]")
    if exclude_self and not (
        len(query) == len(gallery) and torch.equal(query_labels.cpu(), gallery_labels.cpu())
    ):
        raise BenchError(
            f"exclude_self=True but query and gallery differ in length or labels ({shapes}): "
            "they must be the same set, row i of each the same item; else pass exclude_self=False"
        )
