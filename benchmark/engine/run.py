"""One benchmark run: data -> model -> criterion -> train/evaluate -> result file."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.config import RunConfig
from benchmark.data.loading import train_loader
from benchmark.data.pipeline import batches, build_pipeline
from benchmark.data.samplers import training_sampler
from benchmark.engine.checkpoint import save_checkpoint
from benchmark.engine.evaluate import evaluate
from benchmark.engine.optim import build_optimizer, build_scheduler
from benchmark.engine.precision import grad_scaler
from benchmark.engine.train import TrainState, train_epoch
from benchmark.errors import BenchError
from benchmark.models.model import build_model
from benchmark.plugins import Registry
from benchmark.results import (
    environment,
    result_path,
    split_fingerprint,
    utc_now,
    write_result,
)
from benchmark.specs import BuildContext, DatasetSpec, MethodSpec, Splits


@dataclass(frozen=True)
class RunOptions:
    """How to run, as opposed to what: none of this changes the numbers (beyond float noise)."""

    data_root: Path
    results_dir: Path
    device: str = "auto"
    progress: bool = True
    save_checkpoint: bool = True
    skip_bad_images: bool = False


@dataclass
class Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, since: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - since


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: no CUDA device is available; use --device cpu.")
    return torch.device(name)


def load_splits(spec: DatasetSpec, protocol: Mapping[str, Any], data_root: Path) -> Splits:
    """The dataset's splits, with the loader options the protocol sets."""
    return spec.load(data_root, **protocol["data"].get("dataset_options", {}))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def execute(registry: Registry, config: RunConfig, options: RunOptions) -> tuple[dict, Path]:
    """Train and evaluate as `config` says; write and return the result file."""
    start, timer = time.perf_counter(), Timer()
    device = pick_device(options.device)
    splits = load_splits(registry.dataset(config.dataset), config.protocol, options.data_root)
    timer.add("data_seconds", start)
    seed_everything(config.seed)
    state = _train_state(registry, config, splits, device)
    evaluations, data_use = _loop(registry, config, splits, state, options, timer)
    timer.seconds["total_seconds"] = time.perf_counter() - start
    result = _result(registry, config, splits, options, evaluations, timer, device)
    result["dataset"]["counts"]["skipped_images"] = data_use["skipped_images"]
    result["dataset"]["pipeline"] = data_use["pipeline"]
    summary = getattr(state.criterion, "summary", None)
    if callable(summary):
        result["criterion_summary"] = summary()
    path = result_path(result, options.results_dir)
    if options.save_checkpoint:
        checkpoint = path.with_suffix(".pt")
        save_checkpoint(
            checkpoint, state.model, state.criterion, result["config"], config.fingerprint
        )
        result["checkpoint"] = checkpoint.name
    write_result(result, path)
    registry.manager.hook.bench_run_end(result=result, path=path)
    return result, path


def _train_state(
    registry: Registry, config: RunConfig, splits: Splits, device: torch.device
) -> TrainState:
    model_cfg, train_cfg = config.protocol["model"], config.protocol["train"]
    method = registry.method(config.method)
    check_heads(method, config.dataset, splits)
    backbone = registry.backbone(model_cfg["backbone"]).build(model_cfg["pretrained"])
    num_attributes = len(splits.attribute_names)
    model = build_model(backbone, method.heads, model_cfg, num_attributes).to(device)
    criterion = method.build(build_context(config.hparams, model_cfg, splits, device)).to(device)
    optimizer = build_optimizer(model, criterion, train_cfg)
    total = train_cfg["epochs"] * train_cfg["iterations_per_epoch"]
    scheduler = build_scheduler(optimizer, total, train_cfg["schedule"])
    amp = train_cfg["amp"]
    return TrainState(model, criterion, optimizer, scheduler, grad_scaler(device, amp), device, amp)


def count_classes(labels: np.ndarray) -> int:
    """Distinct class ids, or the number of label columns of multi-hot (N, C) labels."""
    return labels.shape[1] if labels.ndim == 2 else len(np.unique(labels))


def build_context(
    hparams: Mapping[str, Any], model_cfg: Mapping[str, Any], splits: Splits, device: torch.device
) -> BuildContext:
    """What a method's `build` sees: its hyper-parameters and the sizes of model and data."""
    return BuildContext(
        hparams=dict(hparams),
        embedding_dim=model_cfg["embedding_dim"],
        num_classes=count_classes(splits.train.labels),
        num_train_images=len(splits.train),
        num_attributes=len(splits.attribute_names),
        device=device,
        hash_bits=model_cfg.get("hash", {}).get("bits", 0),
    )


def check_heads(method: MethodSpec, dataset: str, splits: Splits) -> None:
    """Fail before any training when the dataset cannot feed a head the method asks for."""
    if "attributes" in method.heads and not splits.attribute_names:
        raise BenchError(
            f"Method '{method.name}' trains an attribute head, but dataset '{dataset}' loaded "
            f"no attributes. Use a dataset that has them (cub, inshop and their synth-* "
            f"twins; for inshop put list_attr_items.txt and list_attr_cloth.txt under Anno/)."
        )


def _loop(
    registry: Registry,
    config: RunConfig,
    splits: Splits,
    state: TrainState,
    options: RunOptions,
    timer: Timer,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Evaluations at epoch 0 and every interval; the image pipeline used and how many
    unreadable images it skipped."""
    protocol, hook = config.protocol, registry.manager.hook
    data_cfg, train_cfg = protocol["data"], protocol["train"]
    pipeline = build_pipeline(
        splits, data_cfg, options.data_root, config.dataset, options.skip_bad_images
    )
    train_set, query, gallery = pipeline.train, pipeline.query, pipeline.gallery
    sampler = training_sampler(
        splits.train.labels, data_cfg, train_cfg["iterations_per_epoch"], config.seed
    )
    loader = batches(
        train_loader(train_set, sampler, data_cfg["num_workers"], state.device.type == "cuda"),
        data_cfg, True, state.device, torch.Generator().manual_seed(config.seed),
    )  # fmt: skip
    measure = _evaluator(registry, config, query, gallery, state, timer)
    hook.bench_run_start(config=config.to_dict(), fingerprint=config.fingerprint)
    evaluations = [measure(0, None)]
    for epoch in range(1, train_cfg["epochs"] + 1):
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        _call(state.criterion, "on_epoch_start", epoch)
        train_logs = train_epoch(state, loader, epoch, options.progress)
        _call(state.criterion, "on_epoch_end", epoch)
        timer.add("train_seconds", started)
        if epoch % protocol["eval"]["every"] == 0 or epoch == train_cfg["epochs"]:
            evaluations.append(measure(epoch, train_logs))
    evaluated = {id(query): query, id(gallery): gallery}.values()
    skipped = len(train_set.skipped) + sum(len(d.skipped) for d in evaluated)
    return evaluations, {"pipeline": pipeline.name, "skipped_images": skipped}


def _evaluator(
    registry: Registry,
    config: RunConfig,
    query: torch.utils.data.Dataset,
    gallery: torch.utils.data.Dataset,
    state: TrainState,
    timer: Timer,
):
    eval_cfg = config.protocol["eval"]
    method, dataset = registry.method(config.method), registry.dataset(config.dataset)

    def measure(epoch: int, train_logs: dict[str, float] | None) -> dict[str, Any]:
        started = time.perf_counter()
        metrics = evaluate(
            state.model, query, gallery, dataset=dataset, method=method,
            batch_size=eval_cfg["batch_size"], block_size=eval_cfg["block_size"],
            data_cfg=config.protocol["data"], device=state.device, amp=state.amp,
            criterion=state.criterion,
        )  # fmt: skip
        timer.add("eval_seconds", started)
        entry = {"epoch": epoch, "iteration": state.iteration, "split": "test", "metrics": metrics}
        if train_logs is not None:
            entry["train"] = train_logs
        registry.manager.hook.bench_epoch_end(
            epoch=epoch,
            iteration=state.iteration,
            train_loss=None if train_logs is None else train_logs.get("loss"),
            metrics=metrics,
        )
        return entry

    return measure


def _call(criterion: torch.nn.Module, name: str, epoch: int) -> None:
    method = getattr(criterion, name, None)
    if callable(method):
        method(epoch)


def _result(
    registry: Registry,
    config: RunConfig,
    splits: Splits,
    options: RunOptions,
    evaluations: list[dict[str, Any]],
    timer: Timer,
    device: torch.device,
) -> dict:
    method, dataset = registry.method(config.method), registry.dataset(config.dataset)
    owner = registry.owner("methods", config.method)
    train_cfg = config.protocol["train"]
    images = (
        train_cfg["epochs"]
        * train_cfg["iterations_per_epoch"]
        * (
            config.protocol["data"]["classes_per_batch"]
            * config.protocol["data"]["samples_per_class"]
        )
    )
    timings = {"data_seconds": 0.0, "train_seconds": 0.0, "eval_seconds": 0.0, **timer.seconds}
    timings["train_images_per_second"] = images / max(timings["train_seconds"], 1e-9)
    return {
        "schema_version": 1,
        "fingerprint": config.fingerprint,
        "config": config.to_dict(),
        "method": {
            "name": method.name,
            "plugin": owner.name,
            "plugin_version": owner.version,
            "hparams": dict(config.hparams),
            "fidelity": method.fidelity,
            "fidelity_notes": method.fidelity_notes,
            "paper": {"title": method.paper.title, "url": method.paper.url},
        },
        "dataset": {
            "name": dataset.name,
            "task": dataset.task,
            "split_fingerprint": split_fingerprint(splits, options.data_root),
            "counts": {
                "train": len(splits.train),
                "query": len(splits.query),
                "gallery": len(splits.gallery),
                "train_classes": count_classes(splits.train.labels),
            },
        },
        "seed": config.seed,
        "evaluations": evaluations,
        "final": {
            "epoch": evaluations[-1]["epoch"],
            "selection": "last",
            "metrics": evaluations[-1]["metrics"],
        },
        "environment": environment(device),
        "timings": timings,
        "created": utc_now(),
    }
