"""Embed the evaluation splits and score them. The one entry point is `evaluate`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from benchmark.data.loading import eval_loader
from benchmark.data.pipeline import SubsetView, batches
from benchmark.engine.distributed import World, all_gather, broadcast_object, shard, union
from benchmark.engine.precision import autocast
from benchmark.metrics.rerank import reranked_recall
from benchmark.metrics.tasks import score
from benchmark.protocol import DataSettings
from benchmark.specs import DatasetSpec, MethodSpec


@torch.no_grad()
def embed(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    output: str,
    batch_size: int,
    device: torch.device,
    amp: bool,
    data_cfg: DataSettings,
    world: World = World(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs[output] for every image in order, labels), both on `device`, float32. Under
    torchrun each rank embeds its share and every rank gets them all."""
    was_training = model.training
    model.eval()
    vectors, labels = [], []
    part = SubsetView(dataset, shard(len(dataset), world)) if world.distributed else dataset
    loader = eval_loader(part, batch_size, data_cfg.num_workers, device.type == "cuda")
    for batch in batches(loader, data_cfg, False, device):
        with autocast(device, amp):
            vectors.append(model(batch.images.to(device, non_blocking=True))[output].float())
        labels.append(batch.labels.to(device))
        dataset.skipped.update(batch.skipped)
    model.train(was_training)
    dataset.skipped.update(union(dataset.skipped, world))
    return all_gather(torch.cat(vectors), world), all_gather(torch.cat(labels), world)


def embed_both(
    model: nn.Module,
    query: torch.utils.data.Dataset,
    gallery: torch.utils.data.Dataset,
    *args,
    world: World = World(),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(query vectors, labels, gallery vectors, labels) by `embed(model, split, *args)`; the
    query's own when gallery is query (embedded once)."""
    query_vectors, query_labels = embed(model, query, *args, world=world)
    if gallery is query:
        return query_vectors, query_labels, query_vectors, query_labels
    return query_vectors, query_labels, *embed(model, gallery, *args, world=world)


def evaluate(
    model: nn.Module,
    query: torch.utils.data.Dataset,
    gallery: torch.utils.data.Dataset,
    *,
    dataset: DatasetSpec,
    method: MethodSpec,
    data_cfg: DataSettings,
    batch_size: int,
    block_size: int,
    device: torch.device,
    amp: bool,
    metrics: Sequence[str] | None = None,
    criterion: nn.Module | None = None,
    world: World = World(),
    spread: bool = False,
) -> dict[str, float]:
    """Metrics of `model` on query against gallery (the same object for `retrieval`).

    A criterion with a positive `rerank_top_k` and a `rerank_scores(query, candidates)` method
    also gets its re-ranked Recall@K (`benchmark.metrics.rerank`), as separate figures.
    Under torchrun every rank embeds a share and scores the whole; all return rank 0's figures.
    spread: also the per-query deviations, "sd:<name>" (`benchmark.metrics.intervals`).
    """
    query_vectors, query_labels, gallery_vectors, gallery_labels = embed_both(
        model, query, gallery, method.eval_output, batch_size, device, amp, data_cfg, world=world
    )
    # A query set searched against itself (the retrieval task, and every validation split but
    # hashing's) leaves each query out of its own results.
    task = "retrieval" if gallery is query and dataset.task != "hashing" else dataset.task
    figures = score(
        task, query_vectors, gallery_vectors, query_labels, gallery_labels,
        recall_at=dataset.recall_at, top_k=dataset.top_k, distance=method.distance,
        metrics=metrics, block_size=block_size, spread=spread,
    )  # fmt: skip
    top_k = getattr(criterion, "rerank_top_k", 0)
    if top_k and dataset.task != "hashing" and metrics is None:
        figures |= reranked_recall(
            query_vectors, gallery_vectors, query_labels, gallery_labels,
            _scorer(criterion), top_k=top_k, recall_at=dataset.recall_at,
            exclude_self=gallery is query, distance=method.distance, block_size=block_size,
        )  # fmt: skip
    return broadcast_object(figures, world)


def _scorer(criterion: nn.Module):
    def scores(query: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        was_training = criterion.training
        criterion.eval()
        try:
            return criterion.rerank_scores(query, candidates)
        finally:
            criterion.train(was_training)

    return scores
