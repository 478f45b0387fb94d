"""The double-header hinge loss of PDDM (Huang, Loy, Tang, NIPS 2016, Sec. 3.2), and the
criterion that owns the PDDM unit."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench_pddm.mining import Quadruplets, hard_quadruplets
from bench_pddm.unit import PDDMUnit
from benchmark.specs import Batch


def double_header_hinge(
    embeddings: Tensor,
    quadruplets: Quadruplets,
    *,
    alpha: float,
    beta: float,
    lam: float,
) -> Tensor:
    """Mean over quadruplets (i, j, k, l) of E_m + lam * E_e, where

    E_m = [alpha + S_ik - S_ij]+ + [alpha + S_jl - S_ij]+   (metric loss, on PDDM scores)
    E_e = [beta + D_ij - D_ik]+ + [beta + D_ij - D_jl]+     (embedding loss)

    embeddings: (B, D), L2-normalised; D is the squared Euclidean distance; the scores are the
    mined ones. With no quadruplet the loss is a zero attached to the embeddings' graph.
    """
    if len(quadruplets) == 0:
        return embeddings.sum() * 0
    i, j, k, l = quadruplets.indices.unbind(dim=1)  # noqa: E741 - the paper's names

    def distance(a: Tensor, b: Tensor) -> Tensor:
        return (embeddings[a] - embeddings[b]).pow(2).sum(dim=1)

    s_ij = quadruplets.positive_scores[:, None]
    metric = F.relu(alpha + quadruplets.negative_scores - s_ij).sum(dim=1)
    d_ij = distance(i, j)
    embedding = F.relu(beta + d_ij - distance(i, k)) + F.relu(beta + d_ij - distance(j, l))
    return (metric + lam * embedding).mean()


class PDDMLoss(nn.Module):
    """The criterion: owns the PDDM unit (so the core optimises and checkpoints it) and the
    hinge hyper-parameters."""

    def __init__(
        self,
        *,
        embedding_dim: int,
        alpha: float,
        beta: float,
        lam: float,
        hidden: int = 0,
        mode: str = "per-positive-pair",
        neighbours: int = 0,
        rerank_top_k: int = 0,
        normalize_inputs: bool = False,
    ) -> None:
        super().__init__()
        self.unit = PDDMUnit(embedding_dim, hidden or embedding_dim, normalize_inputs)
        self.alpha, self.beta, self.lam = alpha, beta, lam
        self.mode, self.neighbours = mode, neighbours
        # Read by the core's evaluation: > 0 also reports Recall@K after re-ranking each
        # query's first rerank_top_k items by rerank_scores.
        self.rerank_top_k = rerank_top_k

    def forward(self, outputs: dict[str, Tensor], batch: Batch) -> tuple[Tensor, dict[str, float]]:
        # The harness calls it with autocast off and float32 outputs (hinges and argmax ties are
        # brittle in half precision). The unit and E_e are defined on L2-normalised f; a no-op
        # if the head normalises.
        embeddings = F.normalize(outputs["embedding"], dim=1)
        unit_input = embeddings.to(self.unit.score.weight.dtype)

        def score(first: Tensor, second: Tensor) -> Tensor:
            return self.unit(unit_input[first], unit_input[second])

        quadruplets = hard_quadruplets(
            score, embeddings, batch.labels, mode=self.mode, neighbours=self.neighbours
        )
        loss = double_header_hinge(
            embeddings, quadruplets, alpha=self.alpha, beta=self.beta, lam=self.lam
        )
        logs = {
            "quadruplets": float(len(quadruplets)),
            "scored_pairs": float(quadruplets.scored_pairs),
        }
        return loss, logs

    @torch.no_grad()
    def rerank_scores(self, query: Tensor, candidates: Tensor) -> Tensor:
        """(b, k) PDDM scores of each query (b, D) with its candidates (b, k, D)."""
        query = F.normalize(query.float(), dim=-1)[:, None, :].expand_as(candidates)
        candidates = F.normalize(candidates.float(), dim=-1)
        return self.unit(query, candidates)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, lam={self.lam}, "
            f"mode={self.mode}, neighbours={self.neighbours}"
        )
