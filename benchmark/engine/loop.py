"""The epochs of a run and the choice of its checkpoint.

selection (the protocol's eval.selection):
  validation  evaluate on the validation split carved out of the training split, keep the
              weights of the best evaluation by the dataset's main metric, evaluate the test
              split once, at the end, with them (the default of every protocol shipped);
  last        the same validation curve, but the last weights go to the test split;
  test        the practice of most papers: evaluate the test split during training and keep
              the best; results say so, and leaderboards keep them apart.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmark.config import RunConfig
from benchmark.data.loading import train_loader
from benchmark.data.pipeline import (
    Pipeline,
    SubsetView,
    base_dataset,
    batches,
    build_pipeline,
)
from benchmark.data.samplers import ShardedBatchSampler, SubsetBatchSampler, training_sampler
from benchmark.data.validation import ValidationPlan, carve_validation
from benchmark.engine.distributed import World, check_divides, union
from benchmark.engine.evaluate import evaluate
from benchmark.engine.resume import (
    RunProgress,
    restore_progress,
    resume_path,
    save_resume_point,
)
from benchmark.engine.train import TrainState, train_epoch
from benchmark.metrics.intervals import near_ties, split_intervals
from benchmark.plugins import Registry
from benchmark.protocol import Protocol
from benchmark.results import result_folder
from benchmark.specs import Splits


@dataclass
class Outcome:
    """What the loop hands to the result file."""

    evaluations: list[dict[str, Any]]
    final: dict[str, Any]
    pipeline: str
    skipped_images: int
    counts: dict[str, int] = field(default_factory=dict)
    resumed: list[dict[str, Any]] = field(default_factory=list)  # {"epoch", "checkpoint"} each


@dataclass
class BestWeights:
    """The model and criterion weights of the best evaluation so far (higher is better)."""

    metric: str
    epoch: int | None = None
    value: float = -float("inf")
    weights: dict[str, dict[str, torch.Tensor]] | None = None

    def offer(self, epoch: int, metrics: dict[str, float], state: TrainState) -> None:
        value = metrics[self.metric]
        # Ties keep the earlier epoch; a NaN (no query with a relevant item) never improves,
        # but the first offer is always kept, so there is something to restore.
        if self.weights is None or value > self.value:
            self.epoch, self.value = epoch, value
            self.weights = {
                "model": _copy(state.model.state_dict()),
                "criterion": _copy(state.criterion.state_dict()),
            }

    def restore(self, state: TrainState) -> None:
        state.model.load_state_dict(self.weights["model"])
        state.criterion.load_state_dict(self.weights["criterion"])

    def state_dict(self) -> dict[str, Any]:
        """Plain values, for a resume checkpoint."""
        value = float(self.value)
        return {"metric": self.metric, "epoch": self.epoch, "value": value, "weights": self.weights}

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        self.metric, self.epoch = saved["metric"], saved["epoch"]
        self.value, self.weights = saved["value"], saved["weights"]


def _copy(weights: dict[str, Any]) -> dict[str, Any]:
    """Tensors copied to the CPU; a module's extra state (`get_extra_state`) deep-copied."""
    return {
        name: value.detach().to("cpu", copy=True)
        if isinstance(value, torch.Tensor)
        else copy.deepcopy(value)
        for name, value in weights.items()
    }


def _skipped_images(datasets, world: World) -> int:
    """Unreadable images met, each counted once: views of a split report indices of the split;
    under torchrun, those every rank met."""
    seen: dict[int, set[int]] = {}
    for dataset in datasets:
        seen.setdefault(id(base_dataset(dataset)), set()).update(dataset.skipped)
    return sum(len(union(indices, world)) for indices in seen.values())


def validation_plan(protocol: Protocol, splits: Splits, task: str) -> ValidationPlan | None:
    """The validation split the protocol asks for; None when it has none or selects on test."""
    validation = protocol.eval.validation
    if protocol.eval.selection == "test" or validation is None:
        return None
    return carve_validation(
        splits.train.labels, task, validation.fraction, validation.seed, validation.folds,
        validation.fold,
    )  # fmt: skip


def train_and_select(
    registry: Registry,
    config: RunConfig,
    splits: Splits,
    plan: ValidationPlan | None,
    state: TrainState,
    options,
    timer,
    resume: Mapping[str, Any] | None = None,
) -> Outcome:
    """Train for the protocol's budget, evaluating as `selection` says; the chosen weights are
    left in `state` and evaluated on the test split. A resume checkpoint is written at every
    evaluation interval; `resume`, a loaded one, goes on from its epoch."""
    protocol = config.protocol
    dataset = registry.dataset(config.dataset)
    selection = protocol.eval.selection
    pipeline = build_pipeline(
        splits, protocol.data, options.data_root, config.dataset, options.skip_bad_images
    )
    sampler, loader = training_batches(config, splits, pipeline, plan, state)
    watched = watched_split(pipeline, plan, selection)
    measure = _evaluator(registry, config, state, timer)
    best = BestWeights(dataset.main_metric)
    if state.world.is_main:  # lifecycle hooks fire on rank 0 only
        registry.notify(
            "bench_run_start",
            config=config.to_dict(),
            fingerprint=config.fingerprint,
            output_dir=result_folder(options.results_dir, config.dataset, config.method),
        )
    evaluations = []
    counted = [pipeline.train, pipeline.query, pipeline.gallery, *(watched or ())[1:]]
    generator = getattr(loader, "generator", None)  # the prepared pipeline's augmentation
    progress = RunProgress(state, best, evaluations, timer, generator, counted)
    first = 1
    if resume is not None:
        first = restore_progress(resume, progress) + 1
    else:
        if not watched or watched[0] != "test":  # the test selection evaluates it anyway
            evaluations.append(measure_untrained(measure, pipeline))
        if watched:
            evaluations.append(measure(watched, 0, None))
            if selection != "last":
                best.offer(0, evaluations[-1]["metrics"], state)
    epochs, every = protocol.train.epochs, protocol.eval.every
    for epoch in range(first, epochs + 1):
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        call_epoch_hook(state.criterion, "on_epoch_start", epoch)
        train_logs = train_epoch(state, loader, epoch, options.progress)
        call_epoch_hook(state.criterion, "on_epoch_end", epoch)
        timer.add("train_seconds", started)
        due = epoch % every == 0 or epoch == epochs  # an evaluation and a checkpoint
        if watched and due:
            evaluations.append(measure(watched, epoch, train_logs))
            if selection != "last":
                best.offer(epoch, evaluations[-1]["metrics"], state)
        if options.save_checkpoint and due and state.world.is_main:  # rank 0 writes files
            save_resume_point(resume_path(options.results_dir, config), progress, epoch, config)
    final = _final(selection, best, epochs, evaluations, measure, pipeline, state)
    skipped = _skipped_images(counted, state.world)
    return Outcome(evaluations, final, pipeline.name, skipped, _counts(plan), progress.resumed)


def measure_untrained(measure, pipeline: Pipeline) -> dict[str, Any]:
    """The test split's figures before any training: the baseline every result shows beside
    its final figures. It chooses nothing; the random states are put back afterwards, so the
    run trains exactly as it would without it (a DataLoader draws a seed from torch's)."""
    with torch.random.fork_rng(devices=[]):
        return measure(("test", pipeline.query, pipeline.gallery), 0, None)


def training_batches(config, splits, pipeline: Pipeline, plan, state: TrainState):
    """(sampler, batches on the device) of a run's training, as the protocol and world say."""
    data_cfg = config.protocol.data
    device, world = state.device, state.world
    labels = splits.train.labels
    iterations = config.protocol.train.iterations_per_epoch
    if plan is None:
        sampler = training_sampler(labels, data_cfg, iterations, config.seed)
    else:
        inner = training_sampler(labels[plan.train], data_cfg, iterations, config.seed)
        sampler = SubsetBatchSampler(inner, plan.train)
    if world.distributed:
        check_divides(data_cfg.batch_size, world)
        sampler = ShardedBatchSampler(sampler, world.rank, world.size)
    # Ranks augment their different images with different random draws.
    augment_seed = config.seed + 7919 * world.rank
    loader = batches(
        train_loader(pipeline.train, sampler, data_cfg.num_workers, device.type == "cuda"),
        data_cfg, True, device, torch.Generator().manual_seed(augment_seed),
    )  # fmt: skip
    return sampler, loader


def watched_split(pipeline: Pipeline, plan: ValidationPlan | None, selection: str):
    """(split name, query, gallery) evaluated during training, or None."""
    if plan is not None:
        query = SubsetView(pipeline.train_eval, plan.query)
        gallery = query if plan.gallery is None else SubsetView(pipeline.train_eval, plan.gallery)
        return "validation", query, gallery
    if selection == "test":
        return "test", pipeline.query, pipeline.gallery
    return None


def _final(selection, best: BestWeights, epochs, evaluations, measure, pipeline, state):
    """The chosen epoch's test figures; restores the chosen weights into `state`."""
    if selection == "test":
        best.restore(state)
        chosen = _at(evaluations, best.epoch, "test")
        return _chosen(selection, best, evaluations, chosen)
    epoch = epochs
    if selection == "validation":
        best.restore(state)
        epoch = best.epoch
    # The chosen weights may be those of an earlier evaluation: report its iteration.
    iteration = next((e["iteration"] for e in evaluations if e["epoch"] == epoch), None)
    test = measure(("test", pipeline.query, pipeline.gallery), epoch, None, iteration)
    evaluations.append(test)
    if selection == "last":
        return {"epoch": epoch, "selection": selection, "metrics": test["metrics"],
                "intervals": test.get("intervals", {})}  # fmt: skip
    return _chosen(selection, best, evaluations, test)


def _chosen(selection: str, best: BestWeights, evaluations, test) -> dict[str, Any]:
    """The final entry of a chosen checkpoint: the test figures, and the epochs whose figure
    on the choosing split was within noise of the chosen one's (near_ties)."""
    split = "test" if selection == "test" else "validation"
    ties = near_ties(evaluations, best.epoch, split, best.metric)
    return {"epoch": best.epoch, "selection": selection, "metrics": test["metrics"],
            "intervals": test.get("intervals", {}), "near_ties": ties}  # fmt: skip


def _at(evaluations: list[dict[str, Any]], epoch: int, split: str) -> dict[str, Any]:
    return next(e for e in evaluations if e["epoch"] == epoch and e["split"] == split)


def _counts(plan: ValidationPlan | None) -> dict[str, int]:
    if plan is None:
        return {}
    gallery = len(plan.query) if plan.gallery is None else len(plan.gallery)
    return {
        "train_used": len(plan.train),
        "validation_query": len(plan.query),
        "validation_gallery": gallery,
    }


def _evaluator(registry: Registry, config: RunConfig, state: TrainState, timer):
    eval_cfg = config.protocol.eval
    method, dataset = registry.method(config.method), registry.dataset(config.dataset)

    def measure(watched, epoch: int, train_logs, iteration: int | None = None) -> dict[str, Any]:
        split, query, gallery = watched
        iteration = state.iteration if iteration is None else iteration
        started = time.perf_counter()
        metrics = evaluate(
            state.model, query, gallery, dataset=dataset, method=method,
            batch_size=eval_cfg.batch_size, block_size=eval_cfg.block_size,
            data_cfg=config.protocol.data, device=state.device, amp=state.amp,
            criterion=state.criterion, world=state.world, spread=True,
        )  # fmt: skip
        metrics, intervals = split_intervals(metrics)
        timer.add("eval_seconds", started)
        entry = {"epoch": epoch, "iteration": iteration, "split": split, "metrics": metrics,
                 "intervals": intervals}  # fmt: skip
        if train_logs is not None:
            entry["train"] = train_logs
        if state.world.is_main:
            registry.notify(
                "bench_epoch_end",
                epoch=epoch,
                iteration=iteration,
                train_loss=None if train_logs is None else train_logs.get("loss"),
                metrics=metrics,
                split=split,
                train_logs=train_logs,
            )
        return entry

    return measure


def call_epoch_hook(criterion: torch.nn.Module, name: str, epoch: int) -> None:
    """The criterion's optional on_epoch_start / on_epoch_end."""
    method = getattr(criterion, name, None)
    if callable(method):
        method(epoch)
