"""The PDDM unit (Huang, Loy, Tang, NIPS 2016, Sec. 3.1): a learned similarity score S_ij of a
pair of embeddings, from their absolute difference and their mean."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# u = |f_i - f_j| is zero for a self pair, and a ReLU output can be all zero: normalise with an eps.
NORMALIZE_EPS = 1e-12


class PDDMUnit(nn.Module):
    """S_ij = w_s . relu(W_c [n(relu(W_u u)); n(relu(W_v v))]) + b_s, with u = |f_i - f_j|,
    v = (f_i + f_j) / 2 and n the L2 normalisation. f are L2-normalised embeddings."""

    def __init__(self, dim: int, hidden: int, normalize_inputs: bool = False) -> None:
        super().__init__()
        # The research notes recall that the paper L2-normalises u and v before their layers;
        # neither reimplementation does. Off by default, as both.
        self.normalize_inputs = normalize_inputs
        self.difference = nn.Linear(dim, hidden)
        self.mean = nn.Linear(dim, hidden)
        self.combine = nn.Linear(2 * hidden, hidden)
        self.score = nn.Linear(hidden, 1)

    def forward(self, first: Tensor, second: Tensor) -> Tensor:
        """Scores of the pairs (first[..., :], second[..., :]), of shape first.shape[:-1]."""
        u, v = (first - second).abs(), (first + second) / 2
        if self.normalize_inputs:
            u, v = (F.normalize(x, dim=-1, eps=NORMALIZE_EPS) for x in (u, v))
        difference = F.relu(self.difference(u))
        mean = F.relu(self.mean(v))
        features = torch.cat(
            [
                F.normalize(difference, dim=-1, eps=NORMALIZE_EPS),
                F.normalize(mean, dim=-1, eps=NORMALIZE_EPS),
            ],
            dim=-1,
        )
        return self.score(F.relu(self.combine(features))).squeeze(-1)

    def pairwise(self, embeddings: Tensor) -> Tensor:
        """(B, B) scores of every ordered pair of the (B, D) embeddings; symmetric by design."""
        size = len(embeddings)
        first = embeddings[:, None, :].expand(size, size, -1)
        second = embeddings[None, :, :].expand(size, size, -1)
        return self(first, second)
