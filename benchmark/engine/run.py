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
from benchmark.data.validation import ValidationPlan
from benchmark.engine.checkpoint import save_checkpoint
from benchmark.engine.distributed import World, broadcast_state, device_for, replicate
from benchmark.engine.loop import Outcome, train_and_select, validation_plan
from benchmark.engine.optim import build_optimizer, build_scheduler
from benchmark.engine.precision import grad_scaler
from benchmark.engine.resume import load_resume_point, resume_path
from benchmark.engine.speed import apply_speed_options
from benchmark.engine.train import TrainState
from benchmark.errors import BenchError
from benchmark.models.model import build_model
from benchmark.models.weights import build_backbone
from benchmark.plugins import Registry
from benchmark.protocol import ModelSettings, Protocol
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
    world: World = World()  # this process's rank and the number of processes (torchrun)


@dataclass
class Timer:
    seconds: dict[str, float] = field(default_factory=dict)
    begun: float = field(default_factory=time.perf_counter)
    earlier: float = 0.0  # seconds of the sessions before a resume, up to their checkpoint

    def add(self, key: str, since: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - since

    def elapsed(self) -> float:
        return self.earlier + time.perf_counter() - self.begun

    def carry(self, seconds: dict[str, float], elapsed: float) -> None:
        """Add the timings of an earlier session of the run (a resumed run's)."""
        for key, value in seconds.items():
            self.seconds[key] = self.seconds.get(key, 0.0) + value
        self.earlier += elapsed


def pick_device(name: str) -> torch.device:
    """The device `--device` names: auto (CUDA when there is one, else the CPU), cpu, cuda,
    cuda:N or mps; a BenchError for any other name or a device this machine lacks."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = name.partition(":")
    numbered = kind == "cuda" and index.isascii() and index.isdigit()
    if name not in ("cpu", "cuda", "mps") and not numbered:
        raise BenchError(
            f"--device {name}: not a device this benchmark runs on; use auto, cpu, cuda, cuda:N "
            "(N counting the CUDA devices from 0) or mps."
        )
    if kind == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: no CUDA device is available; use --device cpu.")
    count = torch.cuda.device_count() if index else 0
    if index and int(index) >= count:
        raise BenchError(
            f"--device {name}: there is no CUDA device {index}; this machine has {count} "
            f"(cuda:0 to cuda:{count - 1})."
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise BenchError("--device mps: no MPS (Apple GPU) device is available; use --device cpu.")
    return torch.device(name)


def load_splits(spec: DatasetSpec, protocol: Protocol, data_root: Path) -> Splits:
    """The dataset's splits, with the loader options the protocol sets."""
    return spec.load(data_root, **protocol.data.dataset_options)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def execute(
    registry: Registry, config: RunConfig, options: RunOptions, resume_from: Path | None = None
) -> tuple[dict, Path | None]:
    """Train and evaluate as `config` says; write and return the result file. Under torchrun
    rank 0 alone writes files; the other ranks return the result and no path."""
    timer = Timer()
    # resume_from: a resume checkpoint of this very run; another run's is refused before any work.
    resume = None if resume_from is None else load_resume_point(resume_from, config)
    device = device_for(pick_device(options.device), options.world)
    splits = load_splits(registry.dataset(config.dataset), config.protocol, options.data_root)
    timer.add("data_seconds", timer.begun)
    seed_everything(config.seed)
    plan = validation_plan(config.protocol, splits, registry.dataset(config.dataset).task)
    state = train_state(registry, config, splits, plan, device, options.world)
    state.even_batches = not options.skip_bad_images
    outcome = train_and_select(registry, config, splits, plan, state, options, timer, resume)
    timer.seconds["total_seconds"] = timer.elapsed()
    result = _result(registry, config, splits, options, outcome, timer, device)
    if outcome.resumed:
        result["resumed"] = outcome.resumed
    summary = getattr(state.criterion, "summary", None)
    if callable(summary):
        result["criterion_summary"] = summary()
    if not options.world.is_main:
        return result, None
    path = result_path(result, options.results_dir)
    if options.save_checkpoint:
        checkpoint = path.with_suffix(".pt")
        save_checkpoint(
            checkpoint, state.model, state.criterion, result["config"], config.fingerprint
        )
        result["checkpoint"] = checkpoint.name
    result = write_result(result, path)
    resume_path(options.results_dir, config).unlink(missing_ok=True)  # the run is complete
    registry.notify("bench_run_end", result=result, path=path)
    return result, path


def train_state(
    registry: Registry,
    config: RunConfig,
    splits: Splits,
    plan: ValidationPlan | None,
    device: torch.device,
    world: World = World(),
) -> TrainState:
    train_cfg = config.protocol.train
    model, criterion = build_network(
        registry, config, splits, plan, device, config.protocol.model.pretrained
    )
    apply_speed_options(model, train_cfg)
    replica = replicate(model, world, device)  # DDP broadcasts rank 0's model weights
    broadcast_state(criterion, world)
    optimizer = build_optimizer(model, criterion, train_cfg)
    scheduler = build_scheduler(optimizer, train_cfg.total_iterations, train_cfg.schedule)
    amp = train_cfg.amp
    scaler = grad_scaler(device, amp)
    return TrainState(
        model, criterion, optimizer, scheduler, scaler, device, amp, world=world, replica=replica,
        owner=method_owner(registry, config.method),
    )  # fmt: skip


def method_owner(registry: Registry, method: str) -> str:
    """ "method 'x' of plugin 'y'": who to name when a method's code misbehaves."""
    return f"method '{method}' of plugin '{registry.owner('methods', method).name}'"


def build_network(
    registry: Registry,
    config: RunConfig,
    splits: Splits,
    plan: ValidationPlan | None,
    device: torch.device,
    pretrained: str | None,
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The model (backbone + the method's heads) and the criterion a run config describes, on
    `device`; the criterion is sized by the classes trained on (the validation ones left out)."""
    method, model_cfg = registry.method(config.method), config.protocol.model
    check_heads(method, config.dataset, splits)
    backbone = build_backbone(
        registry.backbone(model_cfg.backbone), pretrained, model_cfg.pretrained_sha256
    )
    model = build_model(backbone, method.heads, model_cfg, len(splits.attribute_names))
    trained = None if plan is None else splits.train.labels[plan.train]
    context = build_context(config.hparams, model_cfg, splits, device, trained)
    return model.to(device), build_criterion(registry, method, context).to(device)


def build_criterion(registry: Registry, method: MethodSpec, context: BuildContext):
    """The method's criterion; a BenchError naming method and plugin when `build` raises."""
    try:
        return method.build(context)
    except BenchError:
        raise
    except Exception as error:  # a plugin's bug, or hyper-parameters it cannot use
        raise BenchError(
            f"{method_owner(registry, method.name)} failed to build its criterion: "
            f"{type(error).__name__}: {error}. Check its hyper-parameters (bench list methods) "
            f"or report it to the plugin's authors."
        ) from error


def count_classes(labels: np.ndarray) -> int:
    """Distinct class ids, or the number of label columns of multi-hot (N, C) labels."""
    return labels.shape[1] if labels.ndim == 2 else len(np.unique(labels))


def build_context(
    hparams: Mapping[str, Any],
    model_cfg: ModelSettings,
    splits: Splits,
    device: torch.device,
    trained_labels: np.ndarray | None = None,
) -> BuildContext:
    """What a method's `build` sees: its hyper-parameters and the sizes of model and data.

    trained_labels: the labels of the training images the run learns from (less a validation
    split); None: the whole training split.
    """
    labels = splits.train.labels if trained_labels is None else trained_labels
    return BuildContext(
        hparams=dict(hparams),
        embedding_dim=model_cfg.embedding_dim,
        num_classes=count_classes(labels),
        num_train_images=len(splits.train),
        num_attributes=len(splits.attribute_names),
        device=device,
        hash_bits=model_cfg.hash_bits,
        class_ids=() if labels.ndim == 2 else tuple(int(c) for c in np.unique(labels)),
    )


def check_heads(method: MethodSpec, dataset: str, splits: Splits) -> None:
    """Fail before any training when the dataset cannot feed a head the method asks for."""
    if "attributes" in method.heads and not splits.attribute_names:
        raise BenchError(
            f"Method '{method.name}' trains an attribute head, but dataset '{dataset}' loaded "
            f"no attributes. Use a dataset that has them (cub, inshop and their synth-* "
            f"twins; for inshop put list_attr_items.txt and list_attr_cloth.txt under Anno/)."
        )


def _result(
    registry: Registry,
    config: RunConfig,
    splits: Splits,
    options: RunOptions,
    outcome: Outcome,
    timer: Timer,
    device: torch.device,
) -> dict:
    method, dataset = registry.method(config.method), registry.dataset(config.dataset)
    owner = registry.owner("methods", config.method)
    images = config.protocol.train.total_iterations * config.protocol.data.batch_size
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
                "skipped_images": outcome.skipped_images,
                **outcome.counts,
            },
            "pipeline": outcome.pipeline,
        },
        "seed": config.seed,
        "evaluations": outcome.evaluations,
        "final": outcome.final,
        "environment": environment(device, options.world.size),
        "timings": timings,
        "created": utc_now(),
    }
