"""A pytorch-metric-learning loss (and miner) as a dmlbench criterion."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pytorch_metric_learning import losses, miners
from torch import Tensor, nn

# Hyper-parameters that belong to the miner, not to the loss.
MINER_PARAMETERS = frozenset({"miner", "epsilon"})


class LibraryCriterion(nn.Module):
    """forward(outputs, batch): the library loss on outputs["embedding"], with the pairs or
    triplets its miner picks. Labels are mapped to 0..C-1 through the run's training class ids
    (classifier-style losses index their proxies or weights by label). The loss is a submodule,
    so learned proxies and weights are optimised and checkpointed with the run."""

    def __init__(self, loss: nn.Module, miner: nn.Module | None, class_ids: Sequence[int]) -> None:
        super().__init__()
        self.loss, self.miner = loss, miner
        self.register_buffer("class_ids", torch.tensor(sorted(class_ids), dtype=torch.long))

    def forward(self, outputs: dict[str, Tensor], batch) -> tuple[Tensor, dict[str, float]]:
        embeddings = outputs["embedding"]
        labels = self.class_index(batch.labels)
        mined = self.miner(embeddings, labels) if self.miner is not None else None
        loss = self.loss(embeddings, labels, mined)
        # Triplets (anchor, positive, negative), or pairs (a1, positive, a2, negative).
        logs = (
            {}
            if mined is None
            else {"mined": float(len(mined[0]) + (len(mined[2]) if len(mined) == 4 else 0))}
        )
        return loss, logs

    def class_index(self, labels: Tensor) -> Tensor:
        if len(self.class_ids) == 0:
            return labels
        class_ids = self.class_ids.to(labels.device)
        index = torch.searchsorted(class_ids, labels).clamp(max=len(class_ids) - 1)
        if not bool((class_ids[index] == labels).all()):
            unknown = sorted(set(labels.tolist()) - set(class_ids.tolist()))
            raise ValueError(f"labels {unknown[:5]} are not among the run's training classes")
        return index


def build_loss(name: str, hparams: dict, num_classes: int, embedding_size: int, parametric: bool):
    """The library's loss class `name` with the hyper-parameters that are not the miner's."""
    kwargs = {k: v for k, v in hparams.items() if k not in MINER_PARAMETERS}
    if parametric:
        kwargs.update(num_classes=num_classes, embedding_size=embedding_size)
    return getattr(losses, name)(**kwargs)


def build_miner(hparams: dict) -> nn.Module | None:
    """semihard / all: TripletMarginMiner with the loss's margin; ms: MultiSimilarityMiner."""
    kind = hparams.get("miner", "none")
    if kind in ("semihard", "all"):
        return miners.TripletMarginMiner(margin=hparams["margin"], type_of_triplets=kind)
    if kind == "ms":
        return miners.MultiSimilarityMiner(epsilon=hparams["epsilon"])
    return None
