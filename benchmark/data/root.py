"""Where datasets live: --data-root, else $BENCH_DATA, else ~/.cache/dmlbench/data."""

from __future__ import annotations

import os
from pathlib import Path

from benchmark.errors import BenchError

DEFAULT_DATA_ROOT = Path("~/.cache/dmlbench/data")


def resolve_data_root(explicit: str | None) -> Path:
    """An explicitly chosen root may be missing (a generated dataset creates it, a real one's
    loader says where it looked) but not a file; the default one is created on first use."""
    chosen = explicit or os.environ.get("BENCH_DATA")
    if chosen:
        root = Path(chosen).expanduser()
        if root.exists() and not root.is_dir():
            source = "--data-root" if explicit else "$BENCH_DATA"
            raise BenchError(
                f"Data root {root} (from {source}) is not a folder: point {source} at the "
                "folder holding the datasets."
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
