"""A method set up the way a run sets it up, small enough for checks: config, data, model,
criterion and batches from the real loaders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from benchmark.config import RunConfig, build_run_config
from benchmark.data.loading import train_loader
from benchmark.data.pipeline import Pipeline, batches, build_pipeline
from benchmark.data.samplers import SubsetBatchSampler, training_sampler
from benchmark.data.validation import ValidationPlan
from benchmark.engine.loop import validation_plan, watched_split
from benchmark.engine.run import build_network, load_splits, seed_everything, train_state
from benchmark.engine.train import TrainState, full_precision
from benchmark.plugins import Registry
from benchmark.specs import Batch, DatasetSpec, MethodSpec, Splits

# The synth dataset each task is checked on.
SYNTH_DATASETS = {
    "retrieval": "synth-cub",
    "hashing": "synth-coco",
    "query-gallery": "synth-inshop",
}
# cpu-smoke at a quarter of its pixels (32 px images, 28 px crops), with batches of 6 x 4, a
# constant learning rate and a validation split of a fifth of the training classes (hashing:
# images).
CHECK_OVERRIDES = (
    "data.resize=32",
    "data.crop=28",
    "data.classes_per_batch=6",
    "data.samples_per_class=4",
    "eval.validation.fraction=0.2",
    "train.optimizer.lr=0.001",
    "train.schedule.name=constant",
)


@dataclass
class Probe:
    """One method on its synth dataset, as `bench run` would build it, under CHECK_OVERRIDES."""

    registry: Registry
    method: MethodSpec
    dataset: DatasetSpec
    config: RunConfig
    splits: Splits
    plan: ValidationPlan | None
    pipeline: Pipeline
    device: torch.device

    def network(self, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
        """A fresh model and criterion, initialised from `seed`."""
        seed_everything(seed)
        return build_network(self.registry, self.config, self.splits, self.plan, self.device, None)

    def criterion(self) -> torch.nn.Module:
        """A fresh criterion, initialised from seed 0."""
        return self.network()[1]

    @cached_property
    def sample(self) -> tuple[dict[str, torch.Tensor], Batch]:
        """A fresh model's outputs on the first training batch, and the batch (made once)."""
        model, _ = self.network()
        batch = next(self.training_batches(1))
        return model_outputs(model.train(), batch), batch

    @cached_property
    def single_class_sample(self) -> tuple[dict[str, torch.Tensor], Batch]:
        """A fresh model's outputs on a batch of one class, and the batch (made once)."""
        model, _ = self.network()
        batch = self.batch_of(self.single_class_indices())
        return model_outputs(model.train(), batch), batch

    def train_state(self, seed: int = 0) -> TrainState:
        """Model, criterion, optimizer and schedule as a run builds them, from `seed`."""
        seed_everything(seed)
        return train_state(self.registry, self.config, self.splits, self.plan, self.device)

    def training_batches(self, steps: int, seed: int = 0):
        """The sampler's first `steps` training batches (P x K; hashing: random), on device."""
        labels, trained = self.splits.train.labels, self.trained_indices()
        data_cfg = self.config.protocol.data
        sampler = SubsetBatchSampler(
            training_sampler(labels[trained], data_cfg, steps, seed), trained
        )
        sampler.set_epoch(1)
        return self._batches(sampler, seed)

    def batch_of(self, indices: Sequence[int], seed: int = 0) -> Batch:
        """One training batch of the given training-split indices, augmented as in training."""
        return next(iter(self._batches([list(indices)], seed)))

    def _batches(self, sampler, seed: int):
        data_cfg = self.config.protocol.data
        loader = train_loader(self.pipeline.train, sampler, 0, False)
        generator = torch.Generator().manual_seed(seed)
        for batch in batches(loader, data_cfg, True, self.device, generator):
            yield batch.to(self.device)

    def single_class_indices(self) -> list[int]:
        """Training images of one class (hashing: of one label set), a batch's worth at most."""
        trained = self.trained_indices()
        rows = self.splits.train.labels[trained]
        _, inverse, counts = np.unique(
            rows, axis=0 if rows.ndim == 2 else None, return_inverse=True, return_counts=True
        )
        members = trained[inverse.reshape(-1) == np.argmax(counts)].tolist()
        return members[: self.config.protocol.data.batch_size]

    def trained_indices(self) -> np.ndarray:
        """The training split's images the run learns from (the validation ones left out)."""
        return np.arange(len(self.splits.train)) if self.plan is None else self.plan.train

    def validation_split(self) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
        """(query, gallery) of the validation split carved from the training classes."""
        _, query, gallery = watched_split(self.pipeline, self.plan, "validation")
        return query, gallery


def check_dataset_for(method: MethodSpec) -> str:
    """The synth dataset of the method's first task in the order retrieval, hashing,
    query-gallery."""
    task = next(task for task in SYNTH_DATASETS if task in method.tasks)
    return SYNTH_DATASETS[task]


def build_probe(
    registry: Registry, name: str, data_root: Path, device: str = "cpu", seed: int = 0
) -> Probe:
    """The method `name` on its synth dataset under cpu-smoke with CHECK_OVERRIDES."""
    method = registry.method(name)
    dataset = registry.dataset(check_dataset_for(method))
    config = build_run_config(
        registry, method=name, dataset=dataset.name, overrides=CHECK_OVERRIDES, seed=seed
    )
    splits = load_splits(dataset, config.protocol, data_root)
    plan = validation_plan(config.protocol, splits, dataset.task)
    pipeline = build_pipeline(splits, config.protocol.data, data_root, dataset.name)
    return Probe(registry, method, dataset, config, splits, plan, pipeline, torch.device(device))


def model_outputs(model: torch.nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
    """The model's outputs for `batch` in float32, detached into leaves that record their
    gradients: exactly what the engine hands the criterion."""
    return leaves(full_precision(model(batch.images)))


def leaves(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copies of `outputs` that are leaves of a new graph and record their gradients."""
    return {name: value.detach().clone().requires_grad_(True) for name, value in outputs.items()}
