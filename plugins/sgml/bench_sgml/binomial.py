"""Binomial deviance (Yi, Lei, Liao, Li, "Deep Metric Learning for Person Re-Identification",
ICPR 2014), on the cosine similarities of a batch, with optional per-pair modulation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def pair_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(positive, negative) boolean (B, B) masks over ordered pairs i != j."""
    same = labels[:, None] == labels[None, :]
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & not_self, ~same


def binomial_deviance(
    embeddings: Tensor,
    labels: Tensor,
    *,
    alpha: float = 2.0,
    beta: float = 0.5,
    cost: float = 25.0,
    pair_weight: Tensor | None = None,
    pair_scale: Tensor | None = None,
) -> Tensor:
    """mean_pos w·log(1 + exp(−α(S − β)·m)) + mean_neg of the same, S the cosine similarity.

    Computed in float32 at least; run it with autocast off (the harness does): a half-precision
    matmul would round S inside an exponent scaled by α·C.

    m = +1 for a positive pair and −cost for a negative one, over ordered pairs i != j; each
    mean divides by the number of such pairs (a batch without positives or without negatives
    contributes 0 for that part). Two optional (B, B) modulations, both 1 by default:
    `pair_weight` multiplies each pair's term, `pair_scale` multiplies its m.
    """
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    unit = F.normalize(embeddings.to(dtype), dim=1)
    similarity = unit @ unit.T
    positive, negative = pair_masks(labels)
    m = torch.where(positive, 1.0, -cost).to(dtype)
    if pair_scale is not None:
        m = m * pair_scale.to(dtype)
    terms = F.softplus(-alpha * (similarity - beta) * m)
    if pair_weight is not None:
        terms = terms * pair_weight.to(dtype)
    return _masked_mean(terms, positive) + _masked_mean(terms, negative)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    # Sum over an empty mask is a zero attached to the graph, so gradients stay defined.
    return (values * mask).sum() / mask.sum().clamp(min=1)


class BinomialDevianceLoss(nn.Module):
    """The criterion of method `binomial`: plain binomial deviance on the embedding."""

    def __init__(self, alpha: float, beta: float, cost: float) -> None:
        super().__init__()
        self.alpha, self.beta, self.cost = alpha, beta, cost

    def forward(self, outputs: dict[str, Tensor], batch) -> Tensor:
        return binomial_deviance(
            outputs["embedding"], batch.labels, alpha=self.alpha, beta=self.beta, cost=self.cost
        )
