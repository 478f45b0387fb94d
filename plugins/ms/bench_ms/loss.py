"""Multi-Similarity loss (Wang et al., CVPR 2019), as the official code computes it.

Official code: MalongTech/research-ms-loss, ret_benchmark/losses/multi_similarity_loss.py
(commit 8db6c9c). Its per-anchor Python loop is vectorised here; see README.md for where the
code departs from the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from benchmark.specs import Batch

# The official code keeps a same-label pair as a positive only if its similarity is below
# 1 - 1e-5: this drops the anchor itself and also its exact (and near-exact) duplicates.
DUPLICATE_SIMILARITY = 1 - 1e-5


def multi_similarity_loss(
    embeddings: Tensor, labels: Tensor, *, alpha: float, beta: float, base: float, margin: float
) -> Tensor:
    """The MS loss equation of Wang et al. (arXiv:1904.06627), on pairs mined as in the paper.

    L = 1/m sum_i [ 1/alpha log(1 + sum_{k in P_i} exp(-alpha (S_ik - base)))
                  + 1/beta  log(1 + sum_{k in N_i} exp( beta  (S_ik - base))) ]

    embeddings: (m, D), L2-normalised (S is their dot product); labels: (m,) class ids.
    base is the paper's lambda and margin its epsilon. An anchor whose mined positives or mined
    negatives are empty adds zero but is still counted in m, as in the official code.
    """
    return multi_similarity_per_anchor(
        embeddings, labels, alpha=alpha, beta=beta, base=base, margin=margin
    )[0].mean()


def multi_similarity_per_anchor(
    embeddings: Tensor, labels: Tensor, *, alpha: float, beta: float, base: float, margin: float
) -> tuple[Tensor, Tensor]:
    """Each anchor's loss (zero where it is not valid) and the (m,) mask of valid anchors."""
    _check_shapes(embeddings, labels)
    # exp(beta * S) overflows float16 and bf16 rounds S to ~3 digits: work in float32 or better.
    with torch.autocast(embeddings.device.type, enabled=False):
        embeddings = embeddings.to(torch.promote_types(embeddings.dtype, torch.float32))
        similarity = embeddings @ embeddings.T
        positives, negatives = mine_pairs(similarity, labels, margin=margin)
        valid = positives.any(dim=1) & negatives.any(dim=1)
        positive_loss = log1p_sum_exp(-alpha * (similarity - base), positives) / alpha
        negative_loss = log1p_sum_exp(beta * (similarity - base), negatives) / beta
        return torch.where(valid, positive_loss + negative_loss, 0.0), valid


def mine_pairs(similarity: Tensor, labels: Tensor, *, margin: float) -> tuple[Tensor, Tensor]:
    """(m, m) masks of the mined positive and negative pairs of each anchor (row).

    A negative is kept if S + margin > the anchor's least similar positive, a positive if
    S - margin < its most similar negative; both bounds come from the unmined sets. The
    comparisons are written as in the official code so that ties round the same way.
    """
    similarity = similarity.detach()
    same_label = labels[:, None] == labels[None, :]
    # The diagonal is excluded explicitly too: it changes nothing for normalised float32
    # inputs (S_ii rounds to 1) but keeps the anchor out if S_ii drifts below the threshold.
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positives = same_label & not_self & (similarity < DUPLICATE_SIMILARITY)
    negatives = ~same_label
    least_positive = similarity.masked_fill(~positives, torch.inf).amin(dim=1, keepdim=True)
    most_negative = similarity.masked_fill(~negatives, -torch.inf).amax(dim=1, keepdim=True)
    mined_negatives = negatives & (similarity + margin > least_positive)
    mined_positives = positives & (similarity - margin < most_negative)
    return mined_positives, mined_negatives


def log1p_sum_exp(exponents: Tensor, mask: Tensor) -> Tensor:
    """Row-wise log(1 + sum over masked entries of exp(x)), stably; 0 for an empty row."""
    masked = exponents.masked_fill(~mask, -torch.inf)
    # The extra zero column is the "1 +": it also keeps empty rows finite, with zero gradient.
    return torch.logsumexp(torch.cat([masked.new_zeros(len(masked), 1), masked], dim=1), dim=1)


def _check_shapes(embeddings: Tensor, labels: Tensor) -> None:
    if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"multi_similarity_loss expects embeddings (m, D) and labels (m,); got "
            f"{tuple(embeddings.shape)} and {tuple(labels.shape)}"
        )


class MultiSimilarityLoss(nn.Module):
    """The criterion: holds alpha, beta, base (lambda) and margin (epsilon)."""

    def __init__(self, *, alpha: float, beta: float, base: float, margin: float) -> None:
        super().__init__()
        self.alpha, self.beta, self.base, self.margin = alpha, beta, base, margin

    def forward(self, outputs: dict[str, Tensor], batch: Batch) -> tuple[Tensor, dict[str, float]]:
        per_anchor, valid = multi_similarity_per_anchor(
            outputs["embedding"],
            batch.labels,
            alpha=self.alpha,
            beta=self.beta,
            base=self.base,
            margin=self.margin,
        )
        return per_anchor.mean(), {"valid_anchors": valid.float().mean().item()}

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}, margin={self.margin}"
