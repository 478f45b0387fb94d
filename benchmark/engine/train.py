"""One training epoch: forward, criterion, backward, optimizer and schedule steps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from benchmark.engine.precision import autocast
from benchmark.errors import BenchError


@dataclass
class TrainState:
    """What one epoch needs besides the data; built once per run."""

    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: bool
    iteration: int = 0


def train_epoch(state: TrainState, loader, epoch: int, progress: bool) -> dict[str, float]:
    """Run the batches of `loader`; return the mean loss and the mean of every logged scalar."""
    state.model.train()
    state.criterion.train()
    totals: dict[str, float] = {}
    bar = tqdm(
        loader, desc=f"epoch {epoch}", unit="it", disable=not progress, leave=False, mininterval=0.5
    )
    for batch in bar:
        loader.dataset.skipped.update(batch.skipped)
        logs = train_step(state, batch.to(state.device, non_blocking=True))
        for key, value in logs.items():
            totals[key] = totals.get(key, 0.0) + value
        bar.set_postfix(loss=f"{logs['loss']:.4f}")
    return {key: value / max(1, len(loader)) for key, value in totals.items()}


def train_step(state: TrainState, batch) -> dict[str, float]:
    with autocast(state.device, state.amp):
        outputs = state.model(batch.images)
        loss, logs = split_loss(state.criterion(outputs, batch))
    if not torch.isfinite(loss):
        raise BenchError(
            f"The loss became {loss.item()} at iteration {state.iteration}; lower "
            f"train.optimizer.lr with --set or check the method's hyper-parameters."
        )
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    state.iteration += 1
    return {"loss": float(loss.detach()), **logs}


def split_loss(value) -> tuple[torch.Tensor, dict[str, float]]:
    """A criterion returns a loss, or (loss, {name: scalar})."""
    if isinstance(value, tuple):
        loss, logs = value
        return loss.float(), {k: float(v) for k, v in logs.items()}
    return value.float(), {}
