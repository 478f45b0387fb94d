"""Ranking metrics over Hamming distance, where many database items tie.

Tie-aware figures are expectations over a uniformly random order within each group of items at
equal distance. They need only each query's histogram over distance (items, and relevant items,
at each distance 0..bits), so no sorting, and reordering the database cannot change them.
Index-order figures break ties by database index, as a stable sort would (datasets_metrics.md
§6.1 pitfall 1).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class _Cut:
    """Per query, the distance group that holds rank k: the top k is every earlier group plus
    the first `kept` slots of this one."""

    group: Tensor  # (queries, 1) its distance
    before: Tensor  # items at smaller distances, all inside the top k
    relevant_before: Tensor
    size: Tensor  # items in the group, and relevant ones
    relevant: Tensor
    kept: Tensor  # slots of the group inside the top k, 1..size


def _cut(counts: Tensor, relevant: Tensor, k: int) -> _Cut:
    ends, relevant_ends = counts.cumsum(1), relevant.cumsum(1)
    group = (ends < k).sum(1, keepdim=True)
    size, hits = counts.gather(1, group)[:, 0], relevant.gather(1, group)[:, 0]
    before = ends.gather(1, group)[:, 0] - size
    relevant_before = relevant_ends.gather(1, group)[:, 0] - hits
    return _Cut(group, before, relevant_before, size, hits, k - before)


def expected_hits(counts: Tensor, relevant: Tensor, k: int) -> Tensor:
    """Expected relevant items in the top k, per query: the cut group adds the hypergeometric
    mean kept * relevant / size.

    counts, relevant: (queries, bits + 1) float64 histograms over distance; k <= database size.
    """
    cut = _cut(counts, relevant, k)
    return cut.relevant_before + cut.kept * cut.relevant / cut.size


def expected_average_precision(counts: Tensor, relevant: Tensor, k: int) -> Tensor:
    """Expected AP@k per query, over uniformly random orders within each distance group.

    AP@k = (1/N_k) sum_{i<=k} P(i) rel(i), N_k = relevant items in the top k (0 when N_k = 0),
    as in DeepHash-pytorch and CSQ. Derivation: take a group at ranks B+1..B+n with R relevant
    items before it, and keep its first m slots, j of them relevant. By symmetry each kept slot
    p is relevant with probability j/m and, given that, holds 1 + (p-1)(j-1)/(m-1) relevant
    items among slots 1..p on average, so
        E[sum_{kept p} P rel | j] = (j/m) [(R+1) H1 + (j-1)/(m-1) H2],
        H1 = sum_{p=1..m} 1/(B+p) = digamma(B+m+1) - digamma(B+1),
        H2 = sum_{p=1..m} (p-1)/(B+p) = m - (B+1) H1.
    Groups before the cut are kept whole (m = n, j = r); their orders are independent of the
    cut group's, whose j is hypergeometric and also sets N_k = R_full + j, so
        E[AP@k] = sum_j P(j) (S_full + E[S_cut | j]) / (R_full + j).
    In float64 the result is within about 1e-13 of exact sums at 10^5 items (tested).
    counts, relevant: (queries, bits + 1) float64 histograms over distance; k <= database size.
    """
    cut = _cut(counts, relevant, k)
    ends = counts.cumsum(1)
    whole = torch.arange(counts.shape[1], device=counts.device) < cut.group
    before, relevant_before = ends - counts, relevant.cumsum(1) - relevant
    full_sum = (_kept_sum(before, relevant_before, counts, relevant) * whole).sum(1, keepdim=True)
    hits, probability = _hypergeometric(cut.size, cut.relevant, cut.kept)
    column = (cut.before[:, None], cut.relevant_before[:, None], cut.kept[:, None])
    total = full_sum + _kept_sum(*column, hits)
    found = column[1] + hits
    average_precision = torch.where(found > 0, total / found.clamp(min=1), 0.0)
    return (probability * average_precision).sum(1)


def _kept_sum(before: Tensor, relevant_before: Tensor, kept: Tensor, hits: Tensor) -> Tensor:
    """E[sum of P(i) rel(i) over the first `kept` slots of a tie group | `hits` relevant there]."""
    h1 = torch.special.digamma(before + kept + 1) - torch.special.digamma(before + 1)
    h2 = kept - (before + 1) * h1
    # Clamps only guard 0/0: an empty group has hits = 0, a single slot has h2 = 0.
    pair = (hits - 1).clamp(min=0) / (kept - 1).clamp(min=1)
    return hits / kept.clamp(min=1) * ((relevant_before + 1) * h1 + pair * h2)


def _hypergeometric(size: Tensor, relevant: Tensor, kept: Tensor) -> tuple[Tensor, Tensor]:
    """Values j and probabilities of the relevant count among `kept` of `size` items, `relevant`
    of them relevant; one row per query, padded with probability 0.

    Only j within 6 sqrt(min(kept, size - kept)) + 1 of the mean is kept: Hoeffding's bound for
    sampling without replacement puts under 1e-30 of the mass outside, so dropping it is exact
    in float64 and bounds the width by about 12 sqrt(k).
    """
    low = (kept - size + relevant).clamp(min=0)
    high = torch.minimum(relevant, kept)
    mean, half = kept * relevant / size, 6 * torch.minimum(kept, size - kept).sqrt() + 1
    low = torch.maximum(low, (mean - half).floor())
    high = torch.minimum(high, (mean + half).ceil())
    width = int((high - low).max().item()) + 1
    hits = low[:, None] + torch.arange(width, device=size.device, dtype=size.dtype)
    # log C(r, j) + log C(n - r, m - j) up to a per-query constant that the softmax removes.
    log_weight = -(
        torch.lgamma(hits + 1)
        + torch.lgamma(relevant[:, None] - hits + 1)
        + torch.lgamma(kept[:, None] - hits + 1)
        + torch.lgamma((size - relevant - kept)[:, None] + hits + 1)
    )
    log_weight = log_weight.masked_fill(hits > high[:, None], -math.inf)
    return hits, torch.softmax(log_weight, dim=1)


def ball_precision_recall(counts: Tensor, relevant: Tensor) -> tuple[Tensor, Tensor]:
    """(queries, bits + 1) precision and recall of the Hamming ball of each radius; 0 when
    the ball is empty or the query has nothing relevant."""
    retrieved, found = counts.cumsum(1), relevant.cumsum(1)
    precision = torch.where(retrieved > 0, found / retrieved.clamp(min=1), 0.0)
    return precision, found / found[:, -1:].clamp(min=1)


def average_precision_at_k(relevant: Tensor) -> Tensor:
    """AP@k per row of a (queries, k) bool matrix in rank order; 0 for a row with no hit."""
    hits = relevant.cumsum(1, dtype=torch.float64)
    found = hits[:, -1].clamp(min=1)
    ranks = torch.arange(1, relevant.shape[1] + 1, device=relevant.device)
    return hits.mul_(relevant).div_(ranks).sum(1) / found


def nearest_keys(keys: Tensor, counts: Tensor, k: int, shift: int = 0) -> Tensor:
    """(queries, k) keys of each query's k nearest items, nearest first, ties by lower index.

    keys: (queries, database) non-negative integers whose Hamming distance is keys >> shift
    (the lower bits may carry other data); counts: the (queries, bits + 1) histogram of those
    distances.
    """
    if keys.device.type != "cpu":
        return keys.gather(1, _nearest_by_topk(keys >> shift, k))
    # Only items up to the distance of rank k can make the top k.
    horizon = (counts.cumsum(1) < k).sum(1).tolist()
    return _nearest_by_radix_sort(keys, [(h + 1) << shift for h in horizon], k, shift)


def _nearest_by_radix_sort(keys: Tensor, limits: list[int], k: int, shift: int) -> Tensor:
    rows = keys.numpy()

    def nearest(span: np.ndarray) -> list[np.ndarray]:
        return [_nearest_row(rows[i], limits[i], k, shift) for i in span]

    # numpy releases the GIL in comparisons, nonzero and sorts, so threads can share the rows.
    spans = np.array_split(np.arange(len(rows)), min(torch.get_num_threads(), len(rows)))
    with ThreadPoolExecutor(len(spans)) as pool:
        parts = list(pool.map(nearest, spans))
    return torch.from_numpy(np.stack([row for part in parts for row in part]))


def _nearest_row(row: np.ndarray, limit: int, k: int, shift: int) -> np.ndarray:
    # numpy's stable argsort of 8- and 16-bit integers is a radix sort, linear in the items;
    # over the few candidates per query it is 10x faster than torch.topk over all items.
    candidates = row[np.flatnonzero(row < limit)]  # still in index order
    distance = (candidates >> shift).astype(np.uint8 if limit <= 256 << shift else np.int16)
    return candidates[np.argsort(distance, kind="stable")[:k]]


def _nearest_by_topk(distance: Tensor, k: int) -> Tensor:
    # distance * size + index is unique per item, so the k smallest keys are exact and ordered.
    index = torch.arange(distance.shape[1], device=distance.device)
    key = distance.long() * distance.shape[1] + index
    return torch.topk(key, k, dim=1, largest=False).indices
