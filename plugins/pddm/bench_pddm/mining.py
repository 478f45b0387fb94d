"""Hard-quadruplet mining on PDDM scores (Huang, Loy, Tang, NIPS 2016, Sec. 3.2).

The unit is evaluated only on the pairs the mining needs: the positive pairs, and each head's
candidate negatives (its local neighbourhood). With P x K batches (K fixed) and a fixed
neighbourhood, that is linear in the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

# score(first, second): the PDDM scores of the pairs (first[n], second[n]) of batch indices,
# of the indices' shape, attached to the graph.
PairScore = Callable[[Tensor, Tensor], Tensor]

MODES = ("per-positive-pair", "one-per-batch")


@dataclass(frozen=True)
class Quadruplets:
    """Mined quadruplets (i, j, k, l) and the scores the loss needs, attached to the graph."""

    indices: Tensor  # (Q, 4) int64: positive pair (i, j), i < j; k, l hardest negatives of i, j
    positive_scores: Tensor  # (Q,) S_ij
    negative_scores: Tensor  # (Q, 2) S_ik, S_jl
    scored_pairs: int  # how many pairs the unit scored for this batch

    def __len__(self) -> int:
        return len(self.indices)


def positive_pairs(labels: Tensor) -> Tensor:
    """(P, 2) int64 pairs (i, j), i < j, of equal labels, in row-major order."""
    same_label = labels[:, None] == labels[None, :]
    return (same_label & torch.ones_like(same_label).triu(diagonal=1)).nonzero()


def negative_candidates(
    embeddings: Tensor, labels: Tensor, heads: Tensor, neighbours: int
) -> tuple[Tensor, Tensor]:
    """(H, c) candidate negatives of each head and a mask of the real ones.

    neighbours > 0: the head's `neighbours` nearest negatives by Euclidean distance on the
    L2-normalised embeddings (its local neighbourhood), nearest first; neighbours == 0: every
    image of the batch, in index order, the negatives masked in.
    """
    different = labels[heads][:, None] != labels[None, :]
    if neighbours == 0:
        every = torch.arange(len(labels), device=labels.device)
        return every.expand(len(heads), -1), different
    # For unit vectors the nearest by Euclidean distance are the most similar by dot product.
    similarity = (embeddings[heads] @ embeddings.T).masked_fill(~different, -torch.inf)
    nearest = similarity.topk(min(neighbours, len(labels)), dim=1)
    return nearest.indices, nearest.values > -torch.inf


def no_quadruplets(embeddings: Tensor) -> Quadruplets:
    indices = torch.empty(0, 4, dtype=torch.long, device=embeddings.device)
    scores = embeddings.new_empty(0, 2)
    return Quadruplets(indices, scores[:, 0], scores, scored_pairs=0)


def hard_quadruplets(
    score: PairScore,
    embeddings: Tensor,
    labels: Tensor,
    *,
    mode: str = "per-positive-pair",
    neighbours: int = 0,
) -> Quadruplets:
    """Quadruplets (i, j, k, l): a positive pair (i, j), and the hardest negatives of its heads,
    k = argmax S_ik and l = argmax S_jl over each head's candidate negatives.

    mode "per-positive-pair": every positive pair of the batch; "one-per-batch": only the
    hardest, argmin S_ij. Ties go to the first candidate (lowest index; with neighbours > 0,
    the nearest). Nothing is mined when the batch has no positive pair or a single class.
    embeddings: (B, D) L2-normalised, used (detached) only to find the neighbourhoods.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mining mode '{mode}'; use one of {', '.join(MODES)}")
    pairs = positive_pairs(labels)
    if len(pairs) == 0 or bool((labels == labels[0]).all()):
        return no_quadruplets(embeddings)
    pair_scores = score(pairs[:, 0], pairs[:, 1])
    scored_pairs = len(pairs)
    if mode == "one-per-batch":
        hardest = pair_scores.detach().argmin()  # first minimum: lowest (i, j) on ties
        pairs, pair_scores = pairs[hardest][None], pair_scores[hardest][None]
    heads, slot = pairs.unique(return_inverse=True)
    candidates, real = negative_candidates(embeddings.detach(), labels, heads, neighbours)
    candidate_scores = score(heads[:, None].expand_as(candidates), candidates)
    best = candidate_scores.detach().masked_fill(~real, -torch.inf).argmax(dim=1, keepdim=True)
    negatives = candidates.gather(1, best).squeeze(1)[slot]
    negative_scores = candidate_scores.gather(1, best).squeeze(1)[slot]
    return Quadruplets(
        indices=torch.cat([pairs, negatives], dim=1),
        positive_scores=pair_scores,
        negative_scores=negative_scores,
        scored_pairs=scored_pairs + candidates.numel(),
    )
