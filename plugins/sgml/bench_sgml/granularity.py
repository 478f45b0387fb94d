"""Semantic granularity similarity of image pairs, from attribute vectors, and the modulation
that turns it into a per-pair factor of the binomial deviance.

Everything here is our reconstruction: the paper's method section was not available (see the
plugin README). Each choice is a hyper-parameter.
"""

from __future__ import annotations

import torch
from torch import Tensor

SIMILARITIES = ("cosine", "jaccard")
MODULATIONS = ("exp", "linear")


def granularity_similarity(
    attributes: Tensor, known: Tensor | None = None, kind: str = "cosine"
) -> Tensor:
    """(B, B) similarity in [0, 1] of every pair of attribute vectors.

    attributes: (B, A) values in [0, 1] (probabilities or ground truth). known: (B, A) bool,
    False where a value is unknown (None: all known); a pair is compared on the attributes known
    for both images. A pair with nothing to compare (no attribute present) scores 0.

    cosine: a_i·a_j / (‖a_i‖ ‖a_j‖). jaccard: |a_i ∧ a_j| / |a_i ∨ a_j| after binarising at 0.5.
    """
    values = attributes.float()
    if kind == "jaccard":
        values = (values >= 0.5).float()
    elif kind != "cosine":
        raise ValueError(f"unknown granularity similarity '{kind}'; use one of {SIMILARITIES}")
    mask = torch.ones_like(values) if known is None else known.to(values)
    kept = values * mask
    shared = kept @ kept.T  # both present and known for both
    if kind == "cosine":
        # Each image's norm over the attributes known for the other one.
        norms = (kept.square() @ mask.T).clamp(min=0).sqrt()
        denominator = norms * norms.T
    else:
        denominator = kept @ mask.T + mask @ kept.T - shared  # |a_i ∨ a_j| on shared-known ones
    similarity = shared / denominator.clamp(min=1e-12)
    return torch.where(denominator > 0, similarity, torch.zeros_like(similarity)).clamp(0, 1)


def modulation(similarity: Tensor, gamma: float, form: str = "exp") -> Tensor:
    """The factor a negative pair's term gets from its granularity similarity s ∈ [0, 1].

    exp:    g(s) = exp(−γ s)       (never 0: negatives that share every attribute still count)
    linear: g(s) = 1 − γ s / (1 + γ)

    Both are 1 at γ = 0 (plain binomial deviance), decrease in s for γ > 0 (a negative sharing
    more attributes is pushed less hard) and stay within (0, 1].
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if form == "exp":
        return torch.exp(-gamma * similarity)
    if form == "linear":
        return 1.0 - gamma * similarity / (1.0 + gamma)
    raise ValueError(f"unknown modulation '{form}'; use one of {MODULATIONS}")
