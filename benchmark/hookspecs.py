"""Every hook of dmlbench. Hooks are called with keyword arguments only.

Registration hooks are called once, when the plugin manager builds its registry; each returns a
list of specs (see `benchmark.specs`). The core validates each spec and names the plugin in any
error, so a malformed or duplicate spec never takes the other plugins down.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pluggy

from benchmark.specs import BackboneSpec, DatasetSpec, MethodSpec

PROJECT = "dmlbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registration ------------------------------------------------------------------------


@hookspec
def bench_datasets() -> list[DatasetSpec]:
    """Called once at start-up. Return the datasets this plugin provides."""


@hookspec
def bench_backbones() -> list[BackboneSpec]:
    """Called once at start-up. Return the backbones this plugin provides."""


@hookspec
def bench_methods() -> list[MethodSpec]:
    """Called once at start-up. Return the methods (losses with their recipes) it provides."""


@hookspec
def bench_protocols() -> list[Path]:
    """Called once at start-up. Return paths of protocol JSON files this plugin ships.

    Each file is validated against `benchmark/schemas/protocol.schema.json`; its `name` field is
    the name users pass to `--protocol`.
    """


# --- lifecycle (for loggers, trackers, profilers) --------------------------------------------


@hookspec
def bench_run_start(config: Mapping[str, Any], fingerprint: str) -> None:
    """Called after the run is configured and before the epoch-0 evaluation. Return nothing."""


@hookspec
def bench_epoch_end(
    epoch: int, iteration: int, train_loss: float | None, metrics: Mapping[str, float], split: str
) -> None:
    """Called after every evaluation (epoch 0 included) with the figures just measured on
    `split`: "validation" during training, "test" once at the end (or during training when the
    run selects on the test split). An implementation may leave out arguments it does not use."""


@hookspec
def bench_run_end(result: Mapping[str, Any], path: Path) -> None:
    """Called after the result file has been written to `path`. Return nothing."""
