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
    # Under torchrun: every rank's batches have the same size (no image can be skipped).
    even_batches: bool = False
    # Who computes the loss, for error messages: "method 'x' of plugin 'y'".
    owner: str = "the criterion"


# Steps between host reads of the loss. Reading a device value waits for the device, and a
# host that waits every step cannot queue the next step's work (data, augmentation, launches)
# while the device computes: so losses and logs stay on the device until then.
SYNC_EVERY = 25


def train_epoch(state: TrainState, loader, epoch: int, progress: bool) -> dict[str, float]:
    """Run the batches of `loader`; return the mean loss and the mean of every logged scalar.

    A non-finite loss stops the run within SYNC_EVERY steps, naming the first bad iteration."""
    state.model.train()
    state.criterion.train()
    totals: dict[str, torch.Tensor] = {}
    unchecked: list[tuple[int, torch.Tensor]] = []
    bar = tqdm(
        loader, desc=f"epoch {epoch}", unit="it", disable=not progress, leave=False, mininterval=0.5
    )
    for step, batch in enumerate(bar, 1):
        loader.dataset.skipped.update(batch.skipped)
        logs = device_step(state, batch.to(state.device, non_blocking=True))
        unchecked.append((state.iteration - 1, logs["loss"]))
        for key, value in logs.items():
            totals[key] = totals[key] + value if key in totals else value
        if step % SYNC_EVERY == 0:
            check_finite(unchecked, state.owner)
            bar.set_postfix(loss=f"{float(logs['loss']):.4f}")
    check_finite(unchecked, state.owner)
    return {key: float(value) / max(1, len(loader)) for key, value in totals.items()}


def check_finite(losses: list[tuple[int, torch.Tensor]], owner: str = "the criterion") -> None:
    """Raise at the first (iteration, loss) whose loss is not finite; empties `losses`."""
    if not losses:
        return
    values = torch.stack([loss for _, loss in losses])
    bad = (~torch.isfinite(values)).nonzero()
    if len(bad):
        iteration, loss = losses[int(bad[0])]
        if iteration == 0:  # no update yet: not the learning rate's doing
            raise BenchError(
                f"{owner} returned a loss of {loss.item()} at iteration 0, before any update: "
                f"the criterion itself fails on this batch. Check the method's hyper-parameters "
                f"or report it to the plugin's authors."
            )
        raise BenchError(
            f"The loss became {loss.item()} at iteration {iteration}; lower "
            f"train.optimizer.lr with --set or check the method's hyper-parameters."
        )
    losses.clear()


def train_step(state: TrainState, batch) -> dict[str, float]:
    """One step, its loss checked and its logs read back: for callers outside an epoch."""
    logs = device_step(state, batch)
    check_finite([(state.iteration - 1, logs["loss"])], state.owner)
    return {key: float(value) for key, value in logs.items()}


def device_step(state: TrainState, batch) -> dict[str, torch.Tensor]:
    """One optimisation step; the loss and logged scalars stay on the device (no host wait)."""
    with autocast(state.device, state.amp):
        outputs = (state.model if state.replica is None else state.replica)(batch.images)
    # The criterion runs with autocast off, on float32 outputs: similarities inside exponents
    # and sums of pair terms lose too much in half precision, and the loss is cheap beside the
    # network.
    # Under torchrun the criterion sees the global batch, gathered from every rank.
    outputs, batch = gather_step(full_precision(outputs), batch, state.world, state.even_batches)
    loss, logs = loss_and_logs(state.criterion(outputs, batch), state.owner)
    if not loss.requires_grad:
        raise BenchError(
            f"{state.owner} returned a loss that does not depend on the model's outputs (it has "
            f"no gradient): compute it from the outputs, without detach() or .item()."
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
    return {"loss": loss.detach(), **logs}


CONTRACT = "a criterion returns a scalar (0-d) floating tensor, or (loss, {name: scalar})"


def check_loss(loss, logs, owner: str) -> None:
    """A BenchError naming `owner` unless loss is a 0-d floating tensor and logs a dict."""
    if not isinstance(loss, torch.Tensor):
        raise BenchError(f"{owner} returned {_kind(loss)} as its loss; {CONTRACT}.")
    if loss.numel() != 1 or not loss.is_floating_point():
        shape = tuple(loss.shape)
        raise BenchError(
            f"{owner} returned a {loss.dtype} tensor of shape {shape} as its loss; {CONTRACT}."
        )
    if not isinstance(logs, dict):
        raise BenchError(f"{owner} returned {_kind(logs)} as its logs; {CONTRACT}.")


def _kind(value) -> str:
    return "None" if value is None else f"a {type(value).__name__} ({str(value)[:40]})"


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
    loss, logs = loss_and_logs(value)
    return loss, {key: float(scalar) for key, scalar in logs.items()}


def loss_and_logs(
    value, owner: str = "the criterion"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """split_loss with the logged scalars as detached float tensors, left where they are."""
    loss, logs = value if isinstance(value, tuple) and len(value) == 2 else (value, {})
    check_loss(loss, logs, owner)
    return loss.reshape(()).float(), {
        key: torch.as_tensor(scalar).detach().float() for key, scalar in logs.items()
    }
