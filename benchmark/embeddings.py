"""Embedding files for `bench eval`: arrays produced by anything, scored by our metrics.

An .npz file holds, by task:
  retrieval       embeddings (N, D), labels (N,)             -- leave-one-out over one set
  query-gallery   query, query_labels, gallery, gallery_labels
  hashing         query, query_labels, database, database_labels (labels multi-hot (N, C))

Labels are integers; float labels are accepted where every value is whole (1.0). Pickled
(object) arrays are refused, and so is a file whose arrays, as their headers declare them,
exceed $BENCH_EVAL_MAX_GB decimal gigabytes (default 4).
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format
import torch

from benchmark.errors import BenchError

# The arrays of one file, in decimal gigabytes as their .npy headers declare them, may not
# exceed this (a file of embeddings for a large benchmark is well below a gigabyte).
MAX_GB_VARIABLE, DEFAULT_MAX_GB = "BENCH_EVAL_MAX_GB", 4.0
KEYS = {
    "retrieval": ("embeddings", "labels"),
    "query-gallery": ("query", "query_labels", "gallery", "gallery_labels"),
    "hashing": ("query", "query_labels", "database", "database_labels"),
}


@dataclass(frozen=True)
class EmbeddingSet:
    task: str
    query: torch.Tensor
    gallery: torch.Tensor
    query_labels: torch.Tensor
    gallery_labels: torch.Tensor


def load_embedding_file(path: Path, task: str | None = None) -> EmbeddingSet:
    """Read and check an .npz file; `task` None infers it from the array names."""
    arrays = _read_npz(path)
    task = task or _infer_task(path, arrays)
    missing = [key for key in KEYS[task] if key not in arrays]
    if missing:
        raise BenchError(
            f"{path}: a '{task}' file needs the arrays {', '.join(KEYS[task])}; "
            f"missing: {', '.join(missing)} (found: {', '.join(sorted(arrays))})."
        )
    tensors = {key: _tensor(path, key, arrays[key]) for key in KEYS[task]}
    if task == "retrieval":
        embeddings, labels = tensors["embeddings"], tensors["labels"]
        return EmbeddingSet(task, embeddings, embeddings, labels, labels)
    gallery = "database" if task == "hashing" else "gallery"
    return EmbeddingSet(
        task,
        tensors["query"],
        tensors[gallery],
        tensors["query_labels"],
        tensors[f"{gallery}_labels"],
    )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if path.is_dir():
        raise BenchError(f"{path}: is a folder, not an .npz file; give the file's path.")
    if not path.exists():
        raise BenchError(f"{path}: file not found.")
    if not zipfile.is_zipfile(path):
        raise BenchError(
            f"{path}: not an .npz file (no zip archive); save the arrays with numpy.savez."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            _check_arrays(path, archive)
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise BenchError(
            f"{path}: not a readable .npz file of plain arrays ({error}). Save it with numpy.savez."
        ) from None


def _check_arrays(path: Path, archive: zipfile.ZipFile) -> None:
    """From the .npy headers, before any array is read: plain numbers only, and all of them
    within the size limit (a header's shape, not the compressed size, is what gets allocated)."""
    total = 0
    for info in archive.infolist():
        shape, dtype = _npy_header(archive, info)
        key = info.filename.removesuffix(".npy")
        if dtype.hasobject:
            raise BenchError(
                f"{path}: array '{key}' holds Python objects (dtype object); bench eval reads "
                "numeric arrays only and never unpickles (a pickle can run code)."
            )
        total += math.prod(shape) * dtype.itemsize
    limit, setting = _size_limit()
    if total > limit:
        raise BenchError(
            f"{path}: its arrays hold {total:,} bytes, more than the limit of {limit:,} bytes; "
            f"raise it with {MAX_GB_VARIABLE} ({setting})."
        )


def _npy_header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo
) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of the .npy member `info`."""
    readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    with archive.open(info) as member:
        version = npy_format.read_magic(member)
        if version not in readers:
            raise ValueError(f"{info.filename}: .npy format version {version} is not supported")
        shape, _, dtype = readers[version](member)
    return shape, dtype


def _size_limit() -> tuple[int, str]:
    """(bytes, how it was set) from $BENCH_EVAL_MAX_GB, else the default."""
    text = os.environ.get(MAX_GB_VARIABLE)
    if text is None:
        return int(DEFAULT_MAX_GB * 1e9), f"default {DEFAULT_MAX_GB:g}"
    try:
        gigabytes = float(text)
    except ValueError:
        gigabytes = math.nan
    if not gigabytes > 0 or math.isinf(gigabytes):
        raise BenchError(f"{MAX_GB_VARIABLE}={text!r}: expected a size in gigabytes, e.g. 16.")
    return int(gigabytes * 1e9), f"now {text}; default {DEFAULT_MAX_GB:g}"


def _infer_task(path: Path, arrays: dict[str, np.ndarray]) -> str:
    for task, marker in (
        ("retrieval", "embeddings"),
        ("hashing", "database"),
        ("query-gallery", "gallery"),
    ):
        if marker in arrays:
            return task
    expected = "; ".join(f"{task}: {', '.join(keys)}" for task, keys in KEYS.items())
    raise BenchError(
        f"{path}: cannot tell the task from its arrays "
        f"({', '.join(sorted(arrays)) or 'none'}); expected {expected}."
    )


def _tensor(path: Path, key: str, array: np.ndarray) -> torch.Tensor:
    if array.dtype.kind not in "fiub":
        raise BenchError(f"{path}: array '{key}' has dtype {array.dtype}; expected numbers.")
    if key.endswith("labels") or key == "labels":
        if array.dtype.kind == "f":
            _check_whole(path, key, array)
        return torch.from_numpy(array.astype(np.int64))
    return torch.from_numpy(array.astype(np.float32))


def _check_whole(path: Path, key: str, labels: np.ndarray) -> None:
    """Float labels are accepted where each is a whole number (1.0), never truncated (0.5)."""
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(labels) & (labels == np.trunc(labels)) & (np.abs(labels) < 2**63))
    if bad.any():
        where = np.unravel_index(int(np.argmax(bad)), labels.shape)
        index = where[0] if len(where) == 1 else tuple(int(i) for i in where)
        raise BenchError(
            f"{path}: array '{key}' holds {float(labels[where])!r} at index {index}; labels are "
            "integer class ids (floats are accepted only where whole, such as 1.0)."
        )
