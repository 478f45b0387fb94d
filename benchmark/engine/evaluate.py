"""Embed the evaluation splits and score them. The one entry point is `evaluate`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from benchmark.data.loading import ImageDataset, build_transform, eval_loader
from benchmark.engine.precision import autocast
from benchmark.metrics.tasks import score
from benchmark.specs import DatasetSpec, ImageSet, MethodSpec, Splits


def eval_datasets(
    splits: Splits, data_cfg: Mapping[str, Any], skip_bad: bool = False
) -> tuple[ImageDataset, ...]:
    """Query and gallery datasets (one object for `retrieval`), with the evaluation transform."""
    transform = build_transform(data_cfg, train=False)

    def dataset(images: ImageSet) -> ImageDataset:
        return ImageDataset(images, data_cfg["resize"], transform, data_cfg["cache"], skip_bad)

    query = dataset(splits.query)
    return query, query if splits.gallery is splits.query else dataset(splits.gallery)


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
    for batch in eval_loader(dataset, batch_size, 0, device.type == "cuda"):
        with autocast(device, amp):
            vectors.append(model(batch.images.to(device, non_blocking=True))[output].float())
        labels.append(batch.labels.to(device))
        dataset.skipped.update(batch.skipped)
    model.train(was_training)
    return torch.cat(vectors), torch.cat(labels)


def evaluate(
    model: nn.Module,
    query: ImageDataset,
    gallery: ImageDataset,
    *,
    dataset: DatasetSpec,
    method: MethodSpec,
    batch_size: int,
    block_size: int,
    device: torch.device,
    amp: bool,
    metrics: Sequence[str] | None = None,
) -> dict[str, float]:
    """Metrics of `model` on query against gallery (the same object for `retrieval`)."""
    query_vectors, query_labels = embed(model, query, method.eval_output, batch_size, device, amp)
    if gallery is query:
        gallery_vectors, gallery_labels = query_vectors, query_labels
    else:
        gallery_vectors, gallery_labels = embed(
            model, gallery, method.eval_output, batch_size, device, amp
        )
    return score(
        dataset.task, query_vectors, gallery_vectors, query_labels, gallery_labels,
        recall_at=dataset.recall_at, top_k=dataset.top_k, distance=method.distance,
        metrics=metrics, block_size=block_size,
    )  # fmt: skip
