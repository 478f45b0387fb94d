"""Exact retrieval metrics by brute force: Recall@K, Precision@1, R-Precision, MAP@R and mAP.

Definitions follow Musgrave et al. 2020, "A Metric Learning Reality Check", §3.2, and
pytorch-metric-learning's AccuracyCalculator (reference/datasets_metrics.md §5.1, §5.3). For a
query with R relevant gallery items (same label; the query itself is not one when
exclude_self) and rel(i) = 1 if the i-th ranked item is relevant, P(i) the precision at rank i:

    recall@K     1 if any of the first K is relevant (a hit rate, §5.1)
    precision@1  rel(1): equal to recall@1 by definition, reported under both names
    r_precision  (1/R) sum_{i<=R} rel(i)
    map@r        (1/R) sum_{i<=R} P(i) rel(i)
    map          (1/R) sum_{i<=G} P(i) rel(i) over the whole ranking (PML's
                 "mean_average_precision" with k=None); it needs a full sort, so it is only
                 computed when asked for.

Ranking and ties: the gallery is ranked by score (cosine similarity, or minus the squared
Euclidean distance), computed in float32, best first; equal scores go to the lower gallery
index first, exactly as a stable sort of the whole row would order them (-0.0 ties with +0.0).
Results are therefore deterministic and independent of block size, but on exactly tied scores
they depend on gallery order, and can differ from PML's, whose torch.topk or faiss orders ties
arbitrarily. With exclude_self the query's own index is removed wherever it ranks, never by
dropping the first column: a duplicate of the query may rank before it.

How: per block of queries, one matmul and one torch.topk of the scores with
k = max(max K, max R in the block), +1 with exclude_self; R comes from label counts. The order
(score, index) is made exact by sorting the k candidates by an int64 key, and, for the rows where
the k-th score ties with the (k+1)-th (so torch.topk's choice among them is arbitrary), by a
torch.topk of that key over the whole row. Queries are processed in order of R, so a few large
classes do not widen every block.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.errors import BenchError
from benchmark.metrics.intervals import SPREAD_PREFIX, sample_sd

Distance = Literal["cosine", "euclidean"]
DISTANCES: tuple[str, ...] = ("cosine", "euclidean")
# "recall" stands for recall@K for every K in recall_at; "recall@K" names one K.
METRICS: tuple[str, ...] = ("recall", "precision@1", "r_precision", "map@r", "map")
DEFAULT_METRICS: tuple[str, ...] = ("recall", "precision@1", "r_precision", "map@r")
_AVAILABLE = "recall, recall@K (any K >= 1), precision@1, r_precision, map@r, map"
_RECALL_AT_K = re.compile(r"recall@([1-9][0-9]*)")
_LOW_BITS = 2**32 - 1


def retrieval_metrics(
    query: Tensor,
    gallery: Tensor,
    query_labels: Tensor,
    gallery_labels: Tensor,
    *,
    recall_at: Sequence[int] = (1, 2, 4, 8),
    exclude_self: bool,
    distance: Distance = "cosine",
    block_size: int = 256,
    metrics: Sequence[str] | None = None,
    spread: bool = False,
) -> dict[str, float]:
    """The requested metrics (None: all but "map") as fractions in [0, 1], plus query counts.

    exclude_self: query and gallery are the same set (row i of each is the same item).
    distance: "cosine" ranks by the dot product of L2-normalised rows (higher is closer),
    "euclidean" by squared Euclidean distance (lower is closer).
    metrics: names from METRICS; "recall" gives one "recall@K" entry per K in `recall_at`,
    and "recall@K" (any K) that one entry.
    spread: also "sd:<name>", the per-query sample standard deviation of each mean of
    per-query values (r_precision, map@r, map), for `benchmark.metrics.intervals`.
    A query with no relevant gallery item (R = 0) is left out of every metric and counted in
    "queries_without_relevant"; "queries" is how many were counted (metrics are NaN if none).
    Runs on the device of `query` in blocks of `block_size` queries: memory O(block x gallery),
    a few (block x gallery) arrays of 8-byte words when "map" (a full sort) is asked for.
    """
    others, ks = _resolve(metrics, recall_at)
    _check_inputs(query, gallery, query_labels, gallery_labels, exclude_self)
    _check_options(ks, others, len(gallery) - exclude_self, distance, block_size)
    device = query.device
    same = gallery is query
    query = ranking_space(query, distance)
    gallery = query if same else ranking_space(gallery.to(device), distance)
    query_labels, gallery_labels = query_labels.to(device), gallery_labels.to(device)
    num_relevant = relevant_counts(query_labels, gallery_labels, exclude_self)
    max_k = max(ks, default=1)
    full = "map" in others
    order = torch.argsort(num_relevant, stable=True)
    gallery_bias = distance_bias(gallery, distance)
    blocks = []
    for start in range(0, len(query), block_size):
        rows = order[start : start + block_size]
        scores = closeness(query[rows], gallery, gallery_bias)
        width = len(gallery) if full else max(max_k, int(num_relevant[rows].max())) + exclude_self
        ranked = best_ranked(scores, width)
        if exclude_self:
            ranked = drop_self(ranked, rows)
        relevant = gallery_labels[ranked] == query_labels[rows, None]
        blocks.append(_per_query(relevant, num_relevant[rows], full))
    per_query = {name: torch.cat([block[name] for block in blocks]) for name in blocks[0]}
    return _summary(per_query, num_relevant[order] > 0, others, ks, spread)


def _summary(
    per_query: dict[str, Tensor], counted: Tensor, others, ks, spread: bool = False
) -> dict[str, float]:
    first_hit = per_query["first_hit"][counted]
    results = {f"recall@{k}": _mean(first_hit < k) for k in ks}
    if "precision@1" in others:
        results["precision@1"] = _mean(first_hit == 0)
    for name in ("r_precision", "map@r", "map"):
        if name in others:
            results[name] = _mean(per_query[name][counted])
            if spread:
                results[f"{SPREAD_PREFIX}{name}"] = sample_sd(per_query[name][counted])
    results["queries"] = int(counted.sum())
    results["queries_without_relevant"] = int((~counted).sum())
    return results


def _per_query(relevant: Tensor, num_relevant: Tensor, full: bool) -> dict[str, Tensor]:
    """0-based rank of the first relevant item (or the width), R-Precision, AP@R and AP.

    relevant: (queries, ranks) bool over the first max(K, R) ranks, or all of them when `full`.
    """
    hits = relevant.cumsum(1)
    rank = torch.arange(1, relevant.shape[1] + 1, device=relevant.device)
    precision = hits.double() / rank
    within_r = relevant & (rank <= num_relevant[:, None])
    r = num_relevant.clamp(min=1).double()
    per_query = {
        "first_hit": (hits == 0).sum(1),
        "r_precision": within_r.sum(1) / r,
        "map@r": (precision * within_r).sum(1) / r,
    }
    if full:
        per_query["map"] = (precision * relevant).sum(1) / r
    return per_query


def best_ranked(scores: Tensor, k: int) -> Tensor:
    """Column indices of the k best scores of each row, ordered by (score desc, index asc)."""
    columns = torch.arange(scores.shape[1], device=scores.device)
    if k >= scores.shape[1]:
        return _ordering_key(scores, columns).argsort(dim=1, descending=True)
    values, candidates = scores.topk(k + 1, dim=1)
    # The set of the k best is unambiguous unless the k-th score ties with the (k+1)-th.
    ambiguous = (values[:, k - 1] == values[:, k]).nonzero().squeeze(1)
    values, candidates = values[:, :k], candidates[:, :k]
    order = _ordering_key(values, candidates).argsort(dim=1, descending=True)
    best = candidates.gather(1, order)
    if len(ambiguous):
        best[ambiguous] = _ordering_key(scores[ambiguous], columns).topk(k, dim=1).indices
    return best


def _ordering_key(scores: Tensor, columns: Tensor) -> Tensor:
    """int64 keys whose descending order is (score descending, column ascending); all distinct.

    The float32 bit pattern, read as int32, orders non-negative floats; flipping the non-sign
    bits of negative ones orders those too. Adding 0.0 first turns -0.0 into +0.0.
    """
    bits = (scores + 0.0).view(torch.int32)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return ordered.long() * 2**32 + (_LOW_BITS - columns)


def drop_self(ranked: Tensor, self_index: Tensor) -> Tensor:
    """Remove each row's own index wherever it is, or the last column where it is absent."""
    keep = ranked != self_index[:, None]
    keep[keep.all(1), -1] = False
    return ranked[keep].view(len(ranked), -1)


def relevant_counts(query_labels: Tensor, gallery_labels: Tensor, exclude_self: bool) -> Tensor:
    """R per query: how many gallery items share its label, less itself when exclude_self."""
    labels, counts = torch.unique(gallery_labels, return_counts=True)
    query_labels = query_labels.to(labels.dtype).contiguous()
    at = torch.searchsorted(labels, query_labels).clamp(max=len(labels) - 1)
    found = labels[at] == query_labels
    return torch.where(found, counts[at], 0) - int(exclude_self)


def distance_bias(gallery: Tensor, distance: Distance) -> Tensor | None:
    """closeness()'s gallery term: None for cosine, -|g|^2 for euclidean (rows as ranked)."""
    return None if distance == "cosine" else -gallery.square().sum(1)


def closeness(query: Tensor, gallery: Tensor, gallery_bias: Tensor | None) -> Tensor:
    """Higher is closer: the dot product, or minus the squared distance (up to a row constant)."""
    if gallery_bias is None:
        return query @ gallery.T
    # -|q - g|^2 = 2 q.g - |g|^2 - |q|^2; the last term is constant per query, so it is dropped.
    return torch.addmm(gallery_bias, query, gallery.T, alpha=2)


def ranking_space(embeddings: Tensor, distance: Distance) -> Tensor:
    """float32 rows as ranked: L2-normalised for cosine, as they are for euclidean."""
    embeddings = embeddings.to(torch.float32)
    return F.normalize(embeddings, dim=1) if distance == "cosine" else embeddings


def _mean(values: Tensor) -> float:
    return values.double().mean().item() if len(values) else float("nan")


def _resolve(metrics, recall_at) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(the metrics other than recall, every K of the recall@K) that `metrics` asks for."""
    names = DEFAULT_METRICS if metrics is None else metrics
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise BenchError(f"metrics=[]: name at least one of {_AVAILABLE}")
    ks = []
    for name in names:
        if name == "recall":
            ks += _checked_recall_at(recall_at)
        elif match := _RECALL_AT_K.fullmatch(str(name)):
            ks.append(int(match[1]))
        elif name not in METRICS:
            close = difflib.get_close_matches(str(name), METRICS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise BenchError(f"unknown retrieval metric {name!r}: {hint}available: {_AVAILABLE}")
    others = tuple(dict.fromkeys(name for name in names if name in METRICS[1:]))
    return others, tuple(dict.fromkeys(ks))


def _checked_recall_at(recall_at: Sequence[int]) -> list[int]:
    ks = list(recall_at)
    if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
        raise BenchError(f"recall_at={ks}: expected positive integers, e.g. [1, 2, 4]")
    return ks


def _check_options(ks, others, neighbours: int, distance, block_size) -> None:
    if distance not in DISTANCES or block_size < 1:
        raise BenchError(
            f"distance={distance!r}, block_size={block_size}: "
            f"expected one of {DISTANCES} and a block_size of at least 1"
        )
    largest = max([*ks, *([1] if "precision@1" in others else [])], default=0)
    if largest > neighbours:
        raise BenchError(
            f"K={largest} is larger than the gallery: {neighbours} items to rank per query "
            "(the query itself excluded); lower K in recall_at or use a larger gallery"
        )


def _check_inputs(query, gallery, query_labels, gallery_labels, exclude_self) -> None:
    pairs = (("query", query, query_labels), ("gallery", gallery, gallery_labels))
    for name, embeddings, labels in pairs:
        check_embeddings(f"{name} embeddings", embeddings)
        if labels.ndim != 1:
            raise BenchError(
                f"{name} labels have shape {tuple(labels.shape)}: expected a 1-D tensor, "
                f"one label per row of the {name} embeddings"
            )
        if len(labels) != len(embeddings):
            raise BenchError(
                f"{name} labels have {len(labels)} entries but the {name} embeddings have "
                f"{len(embeddings)} rows: expected one label per embedding"
            )
    if query.shape[1] != gallery.shape[1]:
        raise BenchError(
            f"query embeddings have {query.shape[1]} dimensions but gallery embeddings have "
            f"{gallery.shape[1]}: both must come from the same model output"
        )
    if exclude_self and not (
        len(query) == len(gallery) and torch.equal(query_labels.cpu(), gallery_labels.cpu())
    ):
        raise BenchError(
            f"exclude_self=True but query ({len(query)} items) and gallery ({len(gallery)} "
            "items) differ in length or labels: they must be the same set, row i of each the "
            "same item; else pass exclude_self=False"
        )


def check_embeddings(name: str, embeddings: Tensor) -> None:
    """Raise BenchError unless `embeddings` is a non-empty (N, D) tensor of finite values."""
    if embeddings.ndim != 2 or embeddings.numel() == 0:
        problem = "are empty" if embeddings.numel() == 0 else "are not 2-D"
        raise BenchError(
            f"{name} {problem} (shape {tuple(embeddings.shape)}): "
            "expected a non-empty (N, D) tensor, one row per item"
        )
    for count, kind in (
        (int(torch.isnan(embeddings).sum()), "NaN"),
        (int(torch.isinf(embeddings).sum()), "infinite"),
    ):
        if count:
            raise BenchError(
                f"{name} contain {count} {kind} values: the model produced non-finite outputs "
                "(a diverged loss or a float16 overflow?); metrics would be meaningless"
            )
