"""Resume checkpoints: what an interrupted run needs to go on exactly as if it had not stopped.

One file per run, `<results>/<dataset>/<method>/<fingerprint[:12]>-seed<S>.resume.pt`, written
at every evaluation interval (eval.every) and removed once the result file is written. It holds
only tensors, numbers, strings and plain containers, so it loads with weights_only=True: model,
criterion (its state_dict: parameters, buffers and a criterion's `get_extra_state`), optimizer,
learning-rate schedule, grad scaler, iteration and epoch (the samplers' whole position: their
batches are drawn from (seed, epoch)), the best weights so far, the evaluations so far, timings,
unreadable images met, and every random-number generator's state.

Under torchrun rank 0 alone writes it, with its own random states and unreadable images: a
resumed multi-process run goes on with every rank drawing rank 0's augmentation, so it is
close to, but not exactly, the uninterrupted run (a single process resumes exactly).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from benchmark.config import RunConfig
from benchmark.engine.rng import random_states, restore_random_states
from benchmark.errors import BenchError
from benchmark.files import read_tensors, write_atomically
from benchmark.results import result_folder

if TYPE_CHECKING:
    from benchmark.engine.loop import BestWeights
    from benchmark.engine.run import Timer
    from benchmark.engine.train import TrainState

FORMAT = "dmlbench-resume/1"
SUFFIX = ".resume.pt"


@dataclass
class RunProgress:
    """The live objects of a run that a resume checkpoint saves and restores."""

    state: TrainState
    best: BestWeights
    evaluations: list[dict[str, Any]]
    timer: Timer
    generator: torch.Generator | None  # the run's own augmentation generator, if any
    datasets: list  # those whose unreadable images (`.skipped`) the result counts
    resumed: list[dict[str, Any]] = field(default_factory=list)  # {"epoch", "checkpoint"}


def resume_path(results_dir: Path, config: RunConfig) -> Path:
    """Where the run of `config` keeps its resume checkpoint."""
    name = f"{config.fingerprint[:12]}-seed{config.seed}{SUFFIX}"
    return result_folder(results_dir, config.dataset, config.method) / name


def find_resume_point(results_dir: Path, config: RunConfig) -> Path | None:
    """The resume checkpoint of this run (fingerprint and seed) under `results_dir`, if any."""
    path = resume_path(results_dir, config)
    return path if path.exists() else None


def save_resume_point(path: Path, progress: RunProgress, epoch: int, config: RunConfig) -> None:
    """Write the run's state after `epoch` (and its evaluation) atomically to `path`."""
    state = progress.state
    payload = {
        "format": FORMAT,
        "fingerprint": config.fingerprint,
        "seed": config.seed,
        "epoch": epoch,
        "config": _plain(config.to_dict()),
        "model": state.model.state_dict(),
        "criterion": state.criterion.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict(),
        "iteration": state.iteration,
        "best": progress.best.state_dict(),
        "evaluations": _plain(progress.evaluations),
        "timings": {"seconds": dict(progress.timer.seconds), "elapsed": progress.timer.elapsed()},
        "skipped": [sorted(int(i) for i in dataset.skipped) for dataset in progress.datasets],
        "resumed": progress.resumed,
        "random": random_states(progress.generator),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda handle: torch.save(payload, handle), "another --results-dir")
    except OSError as error:
        raise BenchError(
            f"Cannot write the resume checkpoint {path}: {error.strerror}. Pass a writable "
            f"--results-dir, or --no-save-checkpoint to write no checkpoints."
        ) from None


def load_resume_point(path: Path, config: RunConfig) -> dict[str, Any]:
    """A resume checkpoint of the run of `config`; refused when it belongs to another run."""
    payload = read_tensors(path, "--resume: checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise BenchError(
            f"--resume: {path} is not a resume checkpoint (those end in {SUFFIX}; the .pt "
            f"beside a result file holds final weights, for `bench eval --checkpoint`)."
        )
    if payload["fingerprint"] != config.fingerprint:
        raise BenchError(
            f"--resume: checkpoint {path} belongs to configuration {payload['fingerprint']}, "
            f"but this run's is {config.fingerprint}. Resume with the same --protocol, "
            f"--preset and --set options, or leave out --resume to start afresh."
        )
    if payload["seed"] != config.seed:
        raise BenchError(
            f"--resume: checkpoint {path} is of seed {payload['seed']}, but this run's is "
            f"{config.seed}; pass --seed {payload['seed']}."
        )
    return {**payload, "source": Path(path).name}


def restore_progress(payload: dict[str, Any], progress: RunProgress) -> int:
    """Put a loaded checkpoint's state into the run's objects; returns the epoch it ended.

    Call it last before training goes on: the generators are set to where they were, so
    nothing may draw from them in between."""
    state = progress.state
    state.model.load_state_dict(payload["model"])
    state.criterion.load_state_dict(payload["criterion"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.scheduler.load_state_dict(payload["scheduler"])
    if payload["scaler"]:  # empty when the saving run had no scaler (CPU, bf16)
        state.scaler.load_state_dict(payload["scaler"])
    state.iteration = payload["iteration"]
    progress.best.load_state_dict(payload["best"])
    progress.evaluations[:] = payload["evaluations"]
    progress.timer.carry(payload["timings"]["seconds"], payload["timings"]["elapsed"])
    for dataset, skipped in zip(progress.datasets, payload["skipped"], strict=True):
        dataset.skipped.update(skipped)
    resumed_here = {"epoch": payload["epoch"], "checkpoint": payload["source"]}
    progress.resumed = [*payload["resumed"], resumed_here]
    restore_random_states(payload["random"], progress.generator)
    return payload["epoch"]


def _plain(value: Any) -> Any:
    """Figures as plain Python values (numpy scalars do not load with weights_only)."""
    return json.loads(json.dumps(value))
