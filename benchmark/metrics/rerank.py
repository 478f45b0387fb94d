"""Recall@K after re-ranking each query's top candidates with a method's own pair score.

Some methods learn a similarity of their own besides the embedding (PDDM's unit). Retrieval is
always scored with the embedding and the standard distance; a method may, in addition, re-order
the first `top_k` items of each query's ranking with its score, and that is reported as a
separate figure (`rerank@<top_k>/recall@K`), never in place of the standard one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from benchmark.errors import BenchError
from benchmark.metrics.retrieval import (
    best_ranked,
    closeness,
    drop_self,
    ranking_space,
    relevant_counts,
)

# scorer(query rows (b, D), their candidates (b, k, D)) -> (b, k) scores, higher = more similar.
PairScorer = Callable[[Tensor, Tensor], Tensor]


@torch.no_grad()
def reranked_recall(
    query: Tensor,
    gallery: Tensor,
    query_labels: Tensor,
    gallery_labels: Tensor,
    scorer: PairScorer,
    *,
    top_k: int,
    recall_at: Sequence[int],
    exclude_self: bool,
    distance: str = "cosine",
    block_size: int = 256,
) -> dict[str, float]:
    """{"rerank@<top_k>/recall@K": ...} for each K <= top_k in `recall_at`.

    Candidates are the `top_k` best gallery items by `distance` (ties and self-exclusion as in
    `retrieval_metrics`); they are re-ordered by `scorer` on the raw (not normalised) vectors,
    stably, so equal scores keep the embedding order. Queries without a relevant gallery item
    are left out, as in `retrieval_metrics`.
    """
    ks = [k for k in recall_at if k <= top_k]
    if top_k < 1 or top_k > len(gallery) - exclude_self or not ks:
        raise BenchError(
            f"Re-ranking needs 1 <= top_k <= {len(gallery) - exclude_self} gallery items and "
            f"some K <= top_k in recall_at {tuple(recall_at)}; got top_k={top_k}."
        )
    device = query.device
    ranked_space = ranking_space(query, distance)
    gallery_space = (
        ranked_space if gallery is query else ranking_space(gallery.to(device), distance)
    )
    bias = None if distance == "cosine" else -gallery_space.square().sum(1)
    query_labels, gallery_labels = query_labels.to(device), gallery_labels.to(device)
    counted = relevant_counts(query_labels, gallery_labels, exclude_self) > 0
    first_hits = []
    for start in range(0, len(query), block_size):
        rows = torch.arange(start, min(start + block_size, len(query)), device=device)
        candidates = best_ranked(
            closeness(ranked_space[rows], gallery_space, bias), top_k + exclude_self
        )
        if exclude_self:
            candidates = drop_self(candidates, rows)
        scores = scorer(query[rows], gallery.to(device)[candidates]).float()
        order = torch.argsort(scores, dim=1, descending=True, stable=True)
        relevant = gallery_labels[candidates.gather(1, order)] == query_labels[rows, None]
        first_hits.append((relevant.cumsum(1) == 0).sum(1))
    first_hit = torch.cat(first_hits)[counted]
    return {
        f"rerank@{top_k}/recall@{k}": (first_hit < k).double().mean().item()
        if len(first_hit)
        else float("nan")
        for k in ks
    }
