"""Hard-quadruplet mining on PDDM scores (Huang, Loy, Tang, NIPS 2016, Sec. 3.2)."""

from __future__ import annotations

import torch
from torch import Tensor


def hard_quadruplets(scores: Tensor, labels: Tensor, *, per_positive_pair: bool = False) -> Tensor:
    """(Q, 4) int64 rows (i, j, k, l): a positive pair (i, j), i < j, with the hardest negative k
    of head i (argmax_{y_k != y_i} S_ik) and l of head j (argmax_{y_l != y_j} S_jl).

    Faithful mode keeps only the hardest positive pair, argmin S_ij (Q = 1); per_positive_pair
    keeps every positive pair, in (i, j) order. Ties go to the lowest index. Q = 0 when the
    batch has no positive pair or a single class.
    scores: (B, B) PDDM scores, detached here (the choices are not differentiated); labels: (B,).
    """
    scores = scores.detach()
    same_label = labels[:, None] == labels[None, :]
    upper = torch.ones_like(same_label).triu(diagonal=1)
    positive_pairs = (same_label & upper).nonzero()  # row-major: sorted by (i, j)
    if len(positive_pairs) == 0 or same_label.all():
        return torch.empty(0, 4, dtype=torch.long, device=labels.device)
    # torch.argmax/argmin return the first extreme index, which gives the lowest-index tie rule.
    hardest_negative = scores.masked_fill(same_label, -torch.inf).argmax(dim=1)
    if not per_positive_pair:
        pair_scores = scores[positive_pairs[:, 0], positive_pairs[:, 1]]
        positive_pairs = positive_pairs[pair_scores.argmin()][None]
    first, second = positive_pairs.unbind(dim=1)
    return torch.stack([first, second, hardest_negative[first], hardest_negative[second]], dim=1)
