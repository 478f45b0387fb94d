"""Embedding files for `bench eval`: arrays produced by anything, scored by our metrics.

An .npz file holds, by task:
  retrieval       embeddings (N, D), labels (N,)             -- leave-one-out over one set
  query-gallery   query, query_labels, gallery, gallery_labels
  hashing         query, query_labels, database, database_labels (labels multi-hot (N, C))
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.errors import BenchError

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
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise BenchError(f"{path}: file not found.") from None
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise BenchError(
            f"{path}: not a readable .npz file of plain arrays ({error}). Save it with numpy.savez."
        ) from None


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
        return torch.from_numpy(array.astype(np.int64))
    return torch.from_numpy(array.astype(np.float32))
