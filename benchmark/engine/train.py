"""One training epoch: forward, criterion, backward, optimizer and schedule steps."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from benchmark.engine.distributed import World, gather_step, sync_criterion_gradients
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
    world: World = field(default_factory=World)
    # The model as trained under torchrun: wrapped in DistributedDataParallel; None: the model.
    replica: nn.Module | None = None


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
        outputs = (state.model if state.replica is None else state.replica)(batch.images)
    # The criterion runs with autocast off, on float32 outputs: similarities inside exponents
    # and sums of pair terms lose too much in half precision, and the loss is cheap beside the
    # network.
    # Under torchrun the criterion sees the global batch, gathered from every rank.
    outputs, batch = gather_step(full_precision(outputs), batch, state.world)
    loss, logs = split_loss(state.criterion(outputs, batch))
    if not torch.isfinite(loss):
        raise BenchError(
            f"The loss became {loss.item()} at iteration {state.iteration}; lower "
            f"train.optimizer.lr with --set or check the method's hyper-parameters."
        )
    state.optimizer.zero_grad(set_to_none=True)
    # Every rank holds the same global loss; DDP averages the model gradients over ranks, and
    # each rank's gradient reaches its own rows only, so world size x loss gives their sum.
    state.scaler.scale(loss * state.world.size).backward()
    sync_criterion_gradients(state.criterion, state.world)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    state.iteration += 1
    return {"loss": float(loss.detach()), **logs}


def full_precision(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating outputs in float32 at least (half-precision ones come from autocast)."""
    return {
        name: value.to(torch.promote_types(value.dtype, torch.float32))
        if value.is_floating_point()
        else value
        for name, value in outputs.items()
    }


def split_loss(value) -> tuple[torch.Tensor, dict[str, float]]:
    """A criterion returns a loss, or (loss, {name: scalar})."""
    if isinstance(value, tuple):
        loss, logs = value
        return loss.float(), {k: float(v) for k, v in logs.items()}
    return value.float(), {}
