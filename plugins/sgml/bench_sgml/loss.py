"""SGML's criterion: soft-binomial deviance on the embedding + weight × attribute loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench_sgml.binomial import binomial_deviance, pair_masks
from bench_sgml.granularity import granularity_similarity, modulation


def attribute_loss(logits: Tensor, targets: Tensor, known: Tensor | None = None) -> Tensor:
    """Multi-label binary cross-entropy of (B, A) logits, averaged over the known values."""
    losses = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    if known is None:
        return losses.mean()
    mask = known.to(losses)
    return (losses * mask).sum() / mask.sum().clamp(min=1)


def pair_factors(labels: Tensor, similarity: Tensor, gamma: float, form: str, pairs: str) -> Tensor:
    """(B, B) factors: g(s) on negatives; on positives g(1 − s) when `pairs` is "all", else 1."""
    positive, negative = pair_masks(labels)
    factors = torch.ones_like(similarity)
    factors = torch.where(negative, modulation(similarity, gamma, form), factors)
    if pairs == "all":
        factors = torch.where(positive, modulation(1.0 - similarity, gamma, form), factors)
    return factors


def soft_binomial_deviance(
    embeddings: Tensor,
    labels: Tensor,
    similarity: Tensor,
    *,
    alpha: float,
    beta: float,
    cost: float,
    gamma: float,
    form: str = "exp",
    soften: str = "weight",
    pairs: str = "negatives",
) -> Tensor:
    """Binomial deviance whose pairs are modulated by their granularity similarity (B, B).

    soften="weight" multiplies each pair's term by its factor; "label" multiplies its label m
    (so a negative's cost C becomes C·g(s)). gamma = 0 is plain binomial deviance.
    """
    factors = pair_factors(labels, similarity.detach(), gamma, form, pairs)
    key = {"weight": "pair_weight", "label": "pair_scale"}[soften]
    return binomial_deviance(
        embeddings, labels, alpha=alpha, beta=beta, cost=cost, **{key: factors}
    )


class SGMLLoss(nn.Module):
    """forward(outputs, batch) with outputs["embedding"] and outputs["attributes"] (logits)."""

    def __init__(
        self,
        *,
        alpha: float,
        beta: float,
        cost: float,
        gamma: float,
        attribute_weight: float,
        granularity: str,
        similarity: str,
        modulation: str,
        soften: str,
        pairs: str,
    ) -> None:
        super().__init__()
        self.deviance = {"alpha": alpha, "beta": beta, "cost": cost, "gamma": gamma}
        self.deviance.update(form=modulation, soften=soften, pairs=pairs)
        self.attribute_weight = attribute_weight
        self.granularity, self.similarity = granularity, similarity

    def forward(self, outputs: dict[str, Tensor], batch) -> tuple[Tensor, dict[str, float]]:
        if batch.attributes is None:
            raise ValueError("SGML needs attributes in the batch; the dataset provided none")
        logits = outputs["attributes"]
        attributes = attribute_loss(logits, batch.attributes, batch.attribute_mask)
        similarity = self.pair_similarity(logits, batch)
        deviance = soft_binomial_deviance(
            outputs["embedding"], batch.labels, similarity, **self.deviance
        )
        _, negative = pair_masks(batch.labels)
        logs = {
            "deviance": deviance.detach(),
            "attributes": attributes.detach(),
            "negative_similarity": similarity[negative].mean() if negative.any() else 0.0,
        }
        return deviance + self.attribute_weight * attributes, logs

    def pair_similarity(self, logits: Tensor, batch) -> Tensor:
        """Granularity similarity of the batch's pairs, from predicted (detached) or true
        attributes."""
        if self.granularity == "predicted":
            return granularity_similarity(
                torch.sigmoid(logits.detach().float()), None, self.similarity
            )
        return granularity_similarity(batch.attributes, batch.attribute_mask, self.similarity)
