"""`bench run --log tensorboard`: event files in a <result file>.tensorboard/ folder.

Scalars: <split>/<metric> (validation/recall@1, test/map@r, ...) and train/<scalar>, at the
iteration of the weights evaluated; the run's config as text. `tensorboard --logdir results`
shows every run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmark.errors import BenchError
from benchmark.hookspecs import hookimpl
from benchmark.trackers import running_path


def summary_writer_class() -> type:
    """torch's SummaryWriter; a BenchError saying what to install when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise BenchError(
            "--log tensorboard needs the tensorboard package, which is not installed: "
            "pip install tensorboard (or pip install 'dmlbench[tensorboard]'), or leave "
            "tensorboard out of --log."
        ) from None
    return SummaryWriter


class TensorBoardLog:
    """While the run goes on, its events are in a *.running.tensorboard folder beside the
    result file's place; the run's end renames it to <result file>.tensorboard."""

    def __init__(self) -> None:
        self.writer_class = summary_writer_class()  # fail before any training
        self.writer = None
        self.running: Path | None = None

    @hookimpl
    def bench_run_start(self, config: Mapping[str, Any], fingerprint: str, output_dir: Path):
        self.running = running_path(output_dir, config, fingerprint, ".tensorboard")
        self.writer = self.writer_class(log_dir=str(self.running))
        text = json.dumps(dict(config), indent=2, sort_keys=True)
        # Indented lines are a code block in TensorBoard's markdown.
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()))

    @hookimpl
    def bench_epoch_end(self, iteration, split, metrics, train_logs) -> None:
        for key, value in (train_logs or {}).items():
            self.writer.add_scalar(f"train/{key}", value, iteration)
        for key, value in metrics.items():
            self.writer.add_scalar(f"{split}/{key}", value, iteration)
        self.writer.flush()

    @hookimpl
    def bench_run_end(self, result: Mapping[str, Any], path: Path) -> None:
        self.writer.close()
        self.running.rename(path.with_suffix(".tensorboard"))
