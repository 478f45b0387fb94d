"""Checks that need training steps: learning on synth data, the checkpoint round trip of the
criterion's state, and determinism on the CPU."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.engine.checkpoint import load_checkpoint, save_checkpoint
from benchmark.engine.evaluate import evaluate
from benchmark.engine.loop import call_epoch_hook
from benchmark.engine.run import seed_everything
from benchmark.engine.train import TrainState, split_loss, train_step
from benchmark.testing.probe import Probe, model_outputs
from benchmark.testing.result import CheckFailed


@dataclass
class Training:
    """A short training's state, its per-step losses and its validation figure before/after."""

    state: TrainState
    losses: list[float]
    before: float
    after: float


def train(probe: Probe, steps: int, measure: bool = True) -> Training:
    """`steps` training steps as the engine takes them (one epoch), from seed 0."""
    state = probe.train_state()
    before = validation_figure(probe, state) if measure else float("nan")
    # Evaluating draws from the global generator (the loader's base seed): start the steps from
    # the same state whether or not the run measured first.
    seed_everything(0)
    call_epoch_hook(state.criterion, "on_epoch_start", 1)
    state.model.train()
    state.criterion.train()
    losses = [train_step(state, batch)["loss"] for batch in probe.training_batches(steps)]
    call_epoch_hook(state.criterion, "on_epoch_end", 1)
    after = validation_figure(probe, state) if measure else float("nan")
    return Training(state, losses, before, after)


def validation_figure(probe: Probe, state: TrainState) -> float:
    """The dataset's main metric (Recall@1; hashing: mAP) on the validation split."""
    query, gallery = probe.validation_split()
    eval_cfg, metric = probe.config.protocol.eval, probe.dataset.main_metric
    figures = evaluate(
        state.model, query, gallery, dataset=probe.dataset, method=probe.method,
        data_cfg=probe.config.protocol.data, batch_size=eval_cfg.batch_size,
        block_size=eval_cfg.block_size, device=probe.device, amp=False, metrics=[metric],
        criterion=state.criterion,
    )  # fmt: skip
    return figures[metric]


def check_learning(probe: Probe, training: Training) -> str:
    """The last quarter's mean loss is below the first quarter's; validation figure rises."""
    quarter = max(1, len(training.losses) // 4)
    first = sum(training.losses[:quarter]) / quarter
    last = sum(training.losses[-quarter:]) / quarter
    metric = probe.dataset.main_metric
    summary = (
        f"{len(training.losses)} steps on {probe.dataset.name}: loss {first:.4g} -> {last:.4g}, "
        f"validation {metric} {training.before:.3f} -> {training.after:.3f}"
    )
    if not last < first:
        raise CheckFailed(f"the loss did not fall: {summary}")
    if not training.after > training.before:
        raise CheckFailed(f"validation {metric} did not rise: {summary}")
    return summary


def check_checkpoint(probe: Probe, training: Training) -> str:
    """A fresh criterion (another seed) given the trained one's checkpointed state computes the
    same loss: no learned state lives outside state_dict()."""
    state = training.state
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "check.pt"
        config = probe.config
        save_checkpoint(path, state.model, state.criterion, config.to_dict(), config.fingerprint)
        saved = load_checkpoint(path)["criterion"]
    _, restored = probe.network(seed=1)
    try:
        restored.load_state_dict(saved)
    except RuntimeError as error:
        raise CheckFailed(f"load_state_dict refused the saved state: {error}") from None
    batch = next(probe.training_batches(1, seed=1))
    state.model.eval()
    outputs = model_outputs(state.model, batch)
    trained, fresh = (_loss(c, outputs, batch) for c in (state.criterion, restored))
    if trained != fresh:
        raise CheckFailed(
            f"the trained criterion's loss is {trained:.6g}, the restored one's {fresh:.6g}: "
            f"register learned state as parameters or buffers so state_dict() holds it"
        )
    return f"{len(saved)} tensor(s) in state_dict; loss {trained:.6g} after restoring"


def _loss(criterion: torch.nn.Module, outputs, batch) -> float:
    criterion.train()
    torch.manual_seed(0)
    with torch.no_grad():
        return split_loss(criterion(outputs, batch))[0].item()


def check_determinism(probe: Probe, training: Training, steps: int) -> str:
    """A second run of the first `steps` steps gives bit-identical losses."""
    if probe.device.type != "cpu":
        return f"skipped: determinism is checked on the CPU only, not on {probe.device}"
    again = train(probe, steps, measure=False).losses
    if again != training.losses[:steps]:
        raise CheckFailed(
            f"two identical runs differ: losses {training.losses[:steps]} and {again}; seed "
            f"every random draw from torch's or numpy's global generator"
        )
    return f"{steps} steps, identical losses twice"
