"""`bench data check`: does a dataset load, are its images readable, what are its splits."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.data.images import ImageTooLarge, open_image
from benchmark.results import split_fingerprint
from benchmark.specs import DatasetSpec


@dataclass
class DataReport:
    name: str
    counts: dict[str, int]
    split_fingerprint: str
    bad_images: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad_images


def check_dataset(spec: DatasetSpec, data_root: Path, workers: int = 8) -> DataReport:
    """Load the splits, then open every image.

    The loader itself checks the layout, the annotation files and, for a real dataset, the
    official counts, raising a BenchError that names the problem.
    """
    splits = spec.load(data_root)
    counts = {
        "train": len(splits.train),
        "query": len(splits.query),
        "gallery": len(splits.gallery),
    }
    counts["classes"] = len(
        np.unique(
            np.concatenate(
                [
                    _class_ids(splits.train.labels),
                    _class_ids(splits.query.labels),
                    _class_ids(splits.gallery.labels),
                ]
            )
        )
    )
    paths = sorted({*splits.train.paths, *splits.query.paths, *splits.gallery.paths})
    counts["images"] = len(paths)
    with ThreadPoolExecutor(workers) as pool:
        problems = [p for p in pool.map(_image_problem, paths) if p]
    return DataReport(spec.name, counts, split_fingerprint(splits, data_root), problems)


def _class_ids(labels: np.ndarray) -> np.ndarray:
    # Multi-label (hashing) datasets count their label columns as classes.
    return np.arange(labels.shape[1]) if labels.ndim == 2 else labels


def _image_problem(path: Path) -> str | None:
    """Decoded whole, as training decodes it: Image.verify() passes a truncated JPEG."""
    try:
        open_image(path)
    except FileNotFoundError:
        return f"{path}: missing"
    except ImageTooLarge as error:
        return f"{path}: unreadable ({error})"
    except Exception as error:  # PIL raises many types for a damaged file
        return f"{path}: unreadable ({type(error).__name__}: {error})"
    return None
