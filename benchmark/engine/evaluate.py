"""Embed the evaluation splits and compute the task's metrics. The one entry point is `evaluate`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from benchmark.data.loading import ImageDataset, eval_loader
from benchmark.engine.precision import autocast
from benchmark.metrics.retrieval import retrieval_metrics


@torch.no_grad()
def embed(
    model: nn.Module,
    dataset: ImageDataset,
    output: str,
    batch_size: int,
    device: torch.device,
    amp: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs[output] for every image in order, labels), both on `device`, float32."""
    was_training = model.training
    model.eval()
    vectors, labels = [], []
    loader = eval_loader(dataset, batch_size, 0, device.type == "cuda")
    for batch in loader:
        with autocast(device, amp):
            vectors.append(model(batch.images.to(device, non_blocking=True))[output].float())
        labels.append(batch.labels.to(device))
    model.train(was_training)
    return torch.cat(vectors), torch.cat(labels)


def evaluate(
    model: nn.Module,
    query: ImageDataset,
    gallery: ImageDataset,
    *,
    exclude_self: bool,
    output: str,
    distance: str,
    recall_at: Sequence[int],
    batch_size: int,
    block_size: int,
    device: torch.device,
    amp: bool,
) -> dict[str, float]:
    """Metrics of `model` on query against gallery (the same dataset object for `retrieval`)."""
    query_vectors, query_labels = embed(model, query, output, batch_size, device, amp)
    if gallery is query:
        gallery_vectors, gallery_labels = query_vectors, query_labels
    else:
        gallery_vectors, gallery_labels = embed(model, gallery, output, batch_size, device, amp)
    return retrieval_metrics(
        query_vectors,
        gallery_vectors,
        query_labels,
        gallery_labels,
        recall_at=recall_at,
        exclude_self=exclude_self,
        distance=distance,
        block_size=block_size,
    )
