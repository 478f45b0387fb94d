"""Checks of the criterion's contract on single batches: finite loss, finite gradients to the
model's outputs and to the criterion's own parameters, and invariance to batch order."""

from __future__ import annotations

import torch

from benchmark.engine.train import split_loss
from benchmark.specs import Batch
from benchmark.testing.probe import Probe, leaves
from benchmark.testing.result import CheckFailed

# A permuted batch may change the loss by float rounding only.
ORDER_TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}


def loss_and_gradients(
    criterion: torch.nn.Module, outputs: dict[str, torch.Tensor], batch: Batch, seed: int = 0
) -> torch.Tensor:
    """The criterion's loss, after backward; any randomness inside (miners) seeded."""
    criterion.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss, _ = split_loss(criterion(outputs, batch))
    if loss.ndim != 0:
        raise CheckFailed(f"the loss has shape {tuple(loss.shape)}; it must be a scalar")
    if not torch.isfinite(loss):
        raise CheckFailed(f"the loss is {loss.item()}")
    if loss.requires_grad:
        loss.backward()
    return loss.detach()


def check_gradients(
    criterion: torch.nn.Module, outputs: dict[str, torch.Tensor], must_flow: bool
) -> str:
    """Finite gradients everywhere; with `must_flow`, some reach the outputs."""
    for name, value in outputs.items():
        if value.grad is not None and not torch.isfinite(value.grad).all():
            raise CheckFailed(f"the gradient to outputs['{name}'] is not finite")
    for name, parameter in criterion.named_parameters():
        if parameter.grad is not None and not torch.isfinite(parameter.grad).all():
            raise CheckFailed(f"the gradient to the criterion's parameter '{name}' is not finite")
    reached = [n for n, v in outputs.items() if v.grad is not None and v.grad.abs().sum() > 0]
    if must_flow and not reached:
        raise CheckFailed(f"no gradient reaches the model's outputs ({', '.join(outputs)})")
    learned = [n for n, p in criterion.named_parameters() if p.grad is not None]
    return f"gradients to {', '.join(reached) or 'no output'}" + (
        f" and {len(learned)} criterion parameter(s)" if learned else ""
    )


def check_random_batch(probe: Probe) -> str:
    outputs, batch = probe.sample
    criterion, outputs = probe.criterion(), leaves(outputs)
    loss = loss_and_gradients(criterion, outputs, batch)
    return f"loss {loss.item():.4g}; " + check_gradients(criterion, outputs, must_flow=True)


def check_single_class(probe: Probe) -> str:
    outputs, batch = probe.single_class_sample
    criterion, outputs = probe.criterion(), leaves(outputs)
    loss = loss_and_gradients(criterion, outputs, batch)
    return f"{len(batch.labels)} images, loss {loss.item():.4g}; " + check_gradients(
        criterion, outputs, must_flow=False
    )


def check_repeated(probe: Probe) -> str:
    """Every image's outputs equal to the first image's (a collapsed model), labels as sampled."""
    outputs, batch = probe.sample
    criterion = probe.criterion()
    repeated = leaves({name: value[:1].expand_as(value) for name, value in outputs.items()})
    loss = loss_and_gradients(criterion, repeated, batch)
    return f"loss {loss.item():.4g}; " + check_gradients(criterion, repeated, must_flow=False)


def check_order(probe: Probe) -> str:
    """The loss of a permuted batch equals the loss of the batch."""
    outputs, batch = probe.sample
    outputs = leaves(outputs)
    order = torch.randperm(len(batch.labels), generator=torch.Generator().manual_seed(1))
    order = order.to(batch.labels.device)
    permuted_outputs = {name: value.detach()[order] for name, value in outputs.items()}
    # A fresh criterion for each order: one that updates state in training (a memory bank,
    # per-image weights) would otherwise see the second batch differently.
    first = loss_and_gradients(probe.criterion(), outputs, batch).item()
    second = loss_and_gradients(probe.criterion(), permuted_outputs, permuted(batch, order)).item()
    if not torch.isclose(torch.tensor(first), torch.tensor(second), **ORDER_TOLERANCE):
        raise CheckFailed(
            f"the loss is {first:.6g} on a batch and {second:.6g} on the same batch reordered; "
            f"a method whose loss depends on order declares MethodSpec(order_invariant=False)"
        )
    return f"loss {first:.6g} either way"


def permuted(batch: Batch, order: torch.Tensor) -> Batch:
    def take(value):
        return value[order] if torch.is_tensor(value) else value

    return Batch(*(take(getattr(batch, name)) for name in batch.__dataclass_fields__))
