"""Checkpoints saved beside a run's result file, so a run can be re-scored later."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.errors import BenchError
from benchmark.files import read_tensors, write_atomically


def save_checkpoint(
    path: Path, model: nn.Module, criterion: nn.Module, config: dict[str, Any], fingerprint: str
) -> None:
    """Model and criterion weights (a criterion may own parameters) with the run's config."""
    payload = {
        "model": model.state_dict(),
        "criterion": criterion.state_dict(),
        "config": config,
        "fingerprint": fingerprint,
    }
    write_atomically(path, lambda handle: torch.save(payload, handle), "another --results-dir")


def load_checkpoint(path: Path) -> dict[str, Any]:
    payload = read_tensors(path, "Checkpoint")
    missing = {"model", "criterion", "config", "fingerprint"} - set(payload)
    if missing:
        raise BenchError(
            f"Checkpoint {path} lacks {', '.join(sorted(missing))}: it was not "
            f"written by `bench run`."
        )
    return payload
