"""Euclidean projection onto the probability simplex, row by row, over a subset of entries."""

from __future__ import annotations

import torch
from torch import Tensor


def project_to_simplex(values: Tensor, support: Tensor | None = None) -> Tensor:
    """argmin_w ||w - v||² subject to w >= 0, sum(w) = 1, w = 0 outside `support`, per row.

    The sort-based algorithm (Duchi et al. 2008; Wang and Carreira-Perpiñán 2013): sort the
    supported entries in descending order u, find the largest j with u_j + (1 - sum_{i<=j}
    u_i) / j > 0, shift every entry by tau = (1 - sum_{i<=rho} u_i) / rho and clip at 0.
    Entries at 0 may become positive again. values: (N, C); support: (N, C) bool (None: all).
    A row with an empty support is all zeros.
    """
    values = values.double() if values.dtype == torch.float64 else values.float()
    support = torch.ones_like(values, dtype=torch.bool) if support is None else support.bool()
    ordered = values.masked_fill(~support, -torch.inf).sort(dim=1, descending=True).values
    valid = torch.isfinite(ordered)
    ordered = torch.where(valid, ordered, torch.zeros_like(ordered))
    sums = ordered.cumsum(dim=1)
    ranks = torch.arange(1, values.shape[1] + 1, device=values.device, dtype=values.dtype)
    active = valid & (ordered + (1 - sums) / ranks > 0)
    # rho: the last active rank (active ranks form a prefix); 1 for rows with no support.
    rho = (active * ranks).amax(dim=1).clamp(min=1)
    tau = (1 - sums.gather(1, rho.long()[:, None] - 1)) / rho[:, None]
    projected = (values + tau).clamp(min=0)
    return torch.where(support, projected, torch.zeros_like(projected))
