"""Synthetic datasets written under the data root on first use: atomically, once per seed.

A generator writes the whole dataset into a fresh temp folder, its marker file last, and the
folder is then renamed into place, so a folder under the final name is always complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from benchmark.errors import BenchError
from benchmark.files import process_is_running
from benchmark.specs import Splits


def marker_text(name: str, version: str, seed: int) -> str:
    """What a complete dataset's marker file reads, e.g. `synth-cub generator 1 seed 0`."""
    return f"{name} generator {version} seed {seed}\n"


def ensure_generated(
    data_root: Path,
    name: str,
    marker: Path,
    expected_marker: str,
    generate: Callable[[Path], object],
) -> Path:
    """`data_root/name`, generated first if needed (atomically: into a temp dir, renamed).

    marker: path of the marker file relative to `data_root/name`; the folder is complete when it
    reads `expected_marker`. generate(folder): writes the dataset into the new folder `folder`,
    the marker last.
    """
    data_root = Path(data_root)
    _check_data_root(data_root, name)
    target = data_root / name
    if _is_complete(target / marker, expected_marker):
        return target
    if target.exists():
        raise BenchError(
            f"{target} is incomplete or was written by another generator version or seed "
            f"(expected {target / marker} to read {expected_marker!r}). "
            f"Delete {target} and run again to regenerate it."
        )
    _remove_stale_temps(data_root, name)
    temp = data_root / f"{name}.tmp-{os.getpid()}"
    try:
        generate(temp)
        temp.rename(target)
    except OSError as error:
        if not _is_complete(target / marker, expected_marker):  # else another process won
            raise BenchError(
                f"could not write {name} under {data_root}: {error}. "
                "Free some space or pass another --data-root."
            ) from error
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def read_generated(name: str, folder: Path, load: Callable[[], Splits]) -> Splits:
    """`load()`'s splits of the generated dataset `name` in `folder`, every image checked to be
    there; a file deleted or damaged since is reported with how to regenerate the dataset
    (the real dataset's reader would ask to re-extract an archive)."""
    try:
        splits = load()
    except BenchError as error:
        raise _damaged(name, folder, str(error)) from None
    for image_set in (splits.train, splits.query, splits.gallery):
        missing = next((path for path in image_set.paths if not os.path.isfile(path)), None)
        if missing is not None:
            raise _damaged(name, folder, f"{missing} is missing.")
    return splits


def _damaged(name: str, folder: Path, detail: str) -> BenchError:
    return BenchError(
        f"The generated dataset {name} in {folder} is damaged: delete that folder and run again "
        f"to regenerate it. ({detail})"
    )


def write_lines(path: Path, lines: Iterable[str]) -> None:
    """Write one line per string, each ending in a newline."""
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _is_complete(marker: Path, expected_marker: str) -> bool:
    return marker.is_file() and marker.read_text() == expected_marker


def _check_data_root(data_root: Path, name: str) -> None:
    """The data root is created when missing (a generated dataset needs nothing else there)."""
    try:
        data_root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        pass  # a file: named below
    except OSError as error:
        raise BenchError(
            f"data root {data_root} does not exist and cannot be created ({error.strerror}), so "
            f"{name} cannot be generated there: pass another --data-root."
        ) from None
    if not data_root.is_dir():
        raise BenchError(f"data root {data_root} is not a directory: pass another --data-root.")
    if not os.access(data_root, os.W_OK | os.X_OK):
        raise BenchError(
            f"data root {data_root} is not writable, so {name} cannot be generated there: "
            "fix its permissions or pass another --data-root."
        )


def _remove_stale_temps(data_root: Path, name: str) -> None:
    """Delete temp dirs left by generators that died (ours included, from an earlier pid)."""
    for temp in data_root.glob(f"{name}.tmp-*"):
        pid = temp.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or not process_is_running(int(pid)):
            shutil.rmtree(temp, ignore_errors=True)
