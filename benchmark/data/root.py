"""Where datasets live: --data-root, else $BENCH_DATA, else ~/.cache/dmlbench/data."""

from __future__ import annotations

import os
from pathlib import Path

from benchmark.errors import BenchError

DEFAULT_DATA_ROOT = Path("~/.cache/dmlbench/data")


def resolve_data_root(explicit: str | None) -> Path:
    """An explicitly chosen root must exist; the default one is created on first use."""
    chosen = explicit or os.environ.get("BENCH_DATA")
    if chosen:
        root = Path(chosen).expanduser()
        if not root.is_dir():
            source = "--data-root" if explicit else "$BENCH_DATA"
            raise BenchError(
                f"Data root {root} (from {source}) does not exist or is not a "
                f"folder: create it, or point {source} at the folder holding the "
                f"datasets."
            )
        return root.resolve()
    root = DEFAULT_DATA_ROOT.expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BenchError(
            f"Cannot create the default data root {root}: {error.strerror}. "
            f"Pass --data-root or set $BENCH_DATA."
        ) from None
    return root.resolve()
