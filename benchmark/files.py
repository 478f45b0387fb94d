"""Writing files so that no half-written file is ever left under the final name, and reading
our torch files safely."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from benchmark.errors import BenchError


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(handle)` on a temporary file beside `path`, then rename it to `path`."""
    with tempfile.NamedTemporaryFile(
        "wb", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        try:
            write(handle)
        except BaseException:
            handle.close()
            os.unlink(handle.name)
            raise
    os.replace(handle.name, path)


def process_is_running(pid: int) -> bool:
    """Whether a process with this id exists: a live writer's temp file is not stale."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def read_tensors(path: Path, what: str) -> Any:
    """torch.load of a file of ours, weights_only, on the CPU; `what` starts the error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BenchError(f"{what} {path} not found.") from None
    except Exception as error:
        raise BenchError(f"{what}: cannot read {path}: {error}") from None
