"""Re-score a saved run: rebuild its model from the checkpoint's config and evaluate it again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.config import RunConfig
from benchmark.data.pipeline import Pipeline, build_pipeline
from benchmark.engine.checkpoint import load_checkpoint
from benchmark.engine.evaluate import evaluate
from benchmark.engine.loop import validation_plan
from benchmark.engine.run import build_network, load_splits, pick_device
from benchmark.errors import BenchError
from benchmark.plugins import Registry
from benchmark.results import read_result
from benchmark.specs import DatasetSpec, MethodSpec, Splits


def checkpoint_of(path: Path) -> Path:
    """A checkpoint path, given either it or the result file that names it."""
    if path.suffix != ".json":
        return path
    result = read_result(path)
    if "checkpoint" not in result:
        raise BenchError(
            f"{path} names no checkpoint: the run was made with --no-save-checkpoint, so it "
            f"cannot be re-scored, nor its retrieval grid drawn (`bench report --no-grid` draws "
            f"its curves alone)."
        )
    return path.parent / result["checkpoint"]


@dataclass
class RestoredRun:
    """A saved run rebuilt: its config, the model and criterion with the saved weights, and the
    dataset's evaluation splits."""

    config: RunConfig
    model: torch.nn.Module
    criterion: torch.nn.Module
    method: MethodSpec
    dataset: DatasetSpec
    pipeline: Pipeline
    device: torch.device
    splits: Splits


def restore_run(
    registry: Registry, path: Path, data_root: Path, device: str, skip_bad: bool = False
) -> RestoredRun:
    """Rebuild the run saved in `path` (a result file or its checkpoint) on `device`."""
    payload = load_checkpoint(checkpoint_of(path))
    config = RunConfig.from_dict(payload["config"])
    protocol = config.protocol
    method, dataset = registry.method(config.method), registry.dataset(config.dataset)
    splits = load_splits(dataset, protocol, data_root)
    plan = validation_plan(protocol, splits, dataset.task)
    # The weights come from the checkpoint, so no pretrained weights are fetched.
    model, criterion = build_network(registry, config, splits, plan, torch.device("cpu"), None)
    for part, module in (("model", model), ("criterion", criterion)):
        try:
            module.load_state_dict(payload[part])
        except RuntimeError as error:
            raise BenchError(
                f"{path}: the checkpoint's {part} does not fit the one its config describes "
                f"(was a plugin changed since?): {error}"
            ) from None
    torch_device = pick_device(device)
    pipeline = build_pipeline(splits, protocol.data, data_root, dataset.name, skip_bad)
    return RestoredRun(
        config, model.to(torch_device), criterion.to(torch_device), method, dataset, pipeline,
        torch_device, splits,
    )  # fmt: skip


def rescore(
    registry: Registry,
    path: Path,
    data_root: Path,
    device: str,
    metrics: Sequence[str] | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """(the run's config, its test metrics measured now) for a result file or checkpoint."""
    run = restore_run(registry, path, data_root, device)
    protocol = run.config.protocol
    figures = evaluate(
        run.model, run.pipeline.query, run.pipeline.gallery, dataset=run.dataset,
        method=run.method, data_cfg=protocol.data, batch_size=protocol.eval.batch_size,
        block_size=protocol.eval.block_size, device=run.device, amp=protocol.train.amp,
        metrics=metrics, criterion=run.criterion,
    )  # fmt: skip
    return run.config.to_dict(), figures
