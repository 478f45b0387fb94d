"""`bench run --log csv`: one row per evaluation, in <result file>.csv."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmark.files import write_atomically
from benchmark.hookspecs import hookimpl
from benchmark.trackers import running_path

FIRST_COLUMNS = ("split", "epoch", "iteration")


class CsvLog:
    """Columns: split, epoch, iteration, train/<scalar> (the epoch's mean training loss and
    logged scalars; empty at epoch 0 and for the test row), then the metrics. While the run goes
    on, the rows so far are in a *.running.csv file in the result file's folder."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.running: Path | None = None

    @hookimpl
    def bench_run_start(self, config: Mapping[str, Any], fingerprint: str, output_dir: Path):
        self.rows = []
        self.running = running_path(output_dir, config, fingerprint, ".csv")
        self.running.parent.mkdir(parents=True, exist_ok=True)

    @hookimpl
    def bench_epoch_end(self, epoch, iteration, split, metrics, train_logs) -> None:
        self.rows.append(_row(split, epoch, iteration, metrics, train_logs))
        _write(self.running, self.rows)

    @hookimpl
    def bench_run_end(self, result: Mapping[str, Any], path: Path) -> None:
        # From the result, not from the rows seen: a resumed run saw only its last session's.
        rows = [_row(e["split"], e["epoch"], e["iteration"], e["metrics"], e.get("train"))
                for e in result["evaluations"]]  # fmt: skip
        _write(path.with_suffix(".csv"), rows)
        self.running.unlink(missing_ok=True)


def _row(split, epoch, iteration, metrics, train_logs) -> dict[str, Any]:
    train = {f"train/{key}": value for key, value in (train_logs or {}).items()}
    return {"split": split, "epoch": epoch, "iteration": iteration, **train, **metrics}


def csv_text(rows: list[dict[str, Any]]) -> str:
    """The rows under the union of their keys: the first columns, train/*, then the rest."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    train = [key for key in keys if key.startswith("train/")]
    rest = [key for key in keys if key not in FIRST_COLUMNS and key not in train]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, [*FIRST_COLUMNS, *train, *rest], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)  # floats as repr: they read back exactly
    return buffer.getvalue()


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    text = csv_text(rows).encode()
    write_atomically(path, lambda handle: handle.write(text))
