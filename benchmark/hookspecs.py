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
#
# Each plugin's implementation is called on its own. One that raises an exception is warned
# about once, marked broken, and the run goes on without its help: a tracker's bug never costs a
# run. To stop the run on purpose, raise benchmark.errors.StopRun (or KeyboardInterrupt): those
# propagate, and the run ends without a result file. An implementation may leave out arguments
# it does not use, and arguments may be added later.


@hookspec
def bench_run_start(config: Mapping[str, Any], fingerprint: str, output_dir: Path) -> None:
    """Called after the run is configured and before the epoch-0 evaluation. Return nothing.

    output_dir: the folder the result file will be written to (it may not exist yet); its name
    is known only at `bench_run_end`. Runs of `--seeds` and `--folds` each start again here.
    """


@hookspec
def bench_epoch_end(
    epoch: int,
    iteration: int,
    train_loss: float | None,
    metrics: Mapping[str, float],
    split: str,
    train_logs: Mapping[str, float] | None,
) -> None:
    """Called after every evaluation (epoch 0 included) with the figures just measured on
    `split`: "validation" during training, "test" once at the end (or during training when the
    run selects on the test split). train_logs: the epoch's mean training scalars ("loss" and
    whatever the criterion logs), as the result file's evaluation entry has them; None at
    epoch 0 and for the final test evaluation."""


@hookspec
def bench_run_end(result: Mapping[str, Any], path: Path) -> None:
    """Called after the result file has been written to `path`. Return nothing."""
