"""Built-in experiment trackers: ordinary lifecycle-hook plugins that `bench run --log NAMES`
registers. The core knows them only through the hooks; a third-party tracker is a plugin with
the same hooks, installed through an entry point (see README, "Experiment trackers")."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmark.errors import BenchError, suggest

TRACKERS = {
    "csv": "benchmark.trackers.csv_log:CsvLog",
    "tensorboard": "benchmark.trackers.tensorboard:TensorBoardLog",
}


def build_trackers(names: str) -> tuple[tuple[str, object], ...]:
    """(plugin name, plugin) for each tracker of a comma list such as "csv,tensorboard"."""
    wanted = list(dict.fromkeys(name.strip() for name in names.split(",") if name.strip()))
    for name in wanted:
        if name not in TRACKERS:
            raise BenchError(f"--log: unknown tracker '{name}'.{suggest(name, TRACKERS)}")
    return tuple((f"{name}-log", _tracker_class(name)()) for name in wanted)


def _tracker_class(name: str) -> type:
    module_name, class_name = TRACKERS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def running_path(
    output_dir: Path, config: Mapping[str, Any], fingerprint: str, suffix: str
) -> Path:
    """Where a tracker writes while its run goes on; at the run's end the tracker renames it
    beside the result file. One name per run (as its resume checkpoint), so a resumed run goes
    on in the same place."""
    name = f"{fingerprint[:12]}-seed{config['seed']}.running{suffix}"
    return Path(output_dir) / name
