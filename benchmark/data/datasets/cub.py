"""CUB-200-2011 read from its original archive layout, split by class for zero-shot retrieval."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from benchmark.errors import BenchError
from benchmark.specs import DatasetSpec, ImageSet, Splits
from benchmark.textfile import read_text

CUB_URL = "https://www.vision.caltech.edu/datasets/cub_200_2011/"
CUB_COUNTS = (11788, 5864, 5924)
FIX = "Fix or re-extract the file."
ATTRIBUTE_LINE = "<image_id> <attribute_id> <is_present> <certainty_id> [<time> ...]"
CERTAINTY_IDS = (1, 2, 3, 4)


def find_cub_dir(root: Path) -> Path:
    """The folder holding images.txt: `root` itself or `root/CUB_200_2011`."""
    root = Path(root)
    for candidate in (root, root / "CUB_200_2011"):
        if (candidate / "images.txt").is_file():
            return candidate
    raise BenchError(
        f"CUB-200-2011 not found: neither {root / 'images.txt'} nor "
        f"{root / 'CUB_200_2011' / 'images.txt'} exists. Download CUB_200_2011.tgz from "
        f"{CUB_URL} and unpack it in {root} (tar -xzf CUB_200_2011.tgz -C {root})."
    )


# Declared once: the loader's keyword defaults and the options schema's, which runs fill in.
DEFAULT_ATTRIBUTES, DEFAULT_MIN_CERTAINTY = "image", 2
ATTRIBUTE_OPTIONS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "attributes": {
            "enum": ["image", "class"],
            "default": DEFAULT_ATTRIBUTES,
            "description": "per-image or class-level",
        },
        "min_certainty": {
            "type": "integer",
            "minimum": 1,
            "maximum": 4,
            "default": DEFAULT_MIN_CERTAINTY,
        },
    },
}


def load_cub(
    root: Path,
    expected_counts: tuple[int, int, int] | None = None,
    *,
    attributes: Literal["image", "class"] = DEFAULT_ATTRIBUTES,
    min_certainty: int = DEFAULT_MIN_CERTAINTY,
) -> Splits:
    """Read CUB and split it by class: the first half of the sorted class ids train, the rest test.

    expected_counts: (total, train, test) image counts to assert, e.g. CUB_COUNTS.
    attributes: "image" = each image's own is_present, known where its certainty_id is at least
    `min_certainty` (1 not visible, 2 guessing, 3 probably, 4 definitely; the default 2 masks
    only "not visible"); "class" = the class-level binarisation common in the literature,
    present where class_attribute_labels_continuous.txt gives more than 50 (% of annotators),
    every value known.
    """
    cub_dir = find_cub_dir(root)
    image_ids, relative_paths, labels = _read_image_table(cub_dir)
    attribute_names, values, mask = _read_attributes(cub_dir, image_ids, min_certainty)
    if attributes == "class" and attribute_names:
        values, mask = _class_attributes(cub_dir, labels, len(attribute_names))
    # train_test_split.txt is the classification split (classes shared between its halves),
    # so it is deliberately not read: the DML protocol splits by class.
    class_ids = np.unique(labels)
    in_train = np.isin(labels, class_ids[: len(class_ids) // 2])
    paths = np.array([cub_dir / "images" / relative for relative in relative_paths], dtype=object)
    train, test = (
        _subset(np.flatnonzero(rows), paths, labels, values, mask) for rows in (in_train, ~in_train)
    )
    if expected_counts is not None:
        _check_counts(cub_dir, (len(labels), len(train), len(test)), expected_counts)
    return Splits(train=train, query=test, gallery=test, attribute_names=attribute_names)


def _subset(
    rows: np.ndarray,
    paths: np.ndarray,
    labels: np.ndarray,
    attributes: np.ndarray | None,
    mask: np.ndarray | None,
) -> ImageSet:
    return ImageSet(
        paths=tuple(paths[rows]),
        labels=labels[rows],
        attributes=None if attributes is None else attributes[rows],
        attribute_mask=None if mask is None else mask[rows],
    )


def _check_counts(
    cub_dir: Path, found: tuple[int, int, int], expected: tuple[int, int, int]
) -> None:
    if tuple(found) == tuple(expected):
        return
    raise BenchError(
        f"{cub_dir}: found {found[0]:,} images ({found[1]:,} train / {found[2]:,} test), expected "
        f"{expected[0]:,} ({expected[1]:,} / {expected[2]:,}). CUB-200 (2010) has 6,033 images; "
        f"download CUB_200_2011.tgz from {CUB_URL} and unpack it again."
    )


# --- images, labels and classes -------------------------------------------------------------


def _read_image_table(cub_dir: Path) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(image ids ascending, relative paths, class ids) joined on image_id."""
    images_path = cub_dir / "images.txt"
    labels_path = cub_dir / "image_class_labels.txt"
    classes_path = cub_dir / "classes.txt"
    images = _read_id_table(images_path, "<image_id> <relative path>", int_value=False)
    labels = _read_id_table(labels_path, "<image_id> <class_id>", int_value=True)
    classes = _read_id_table(classes_path, "<class_id> <class_name>", int_value=False)
    if not images:
        raise BenchError(f"{images_path}: lists no images. {FIX}")
    _check_join(images_path, images, labels_path, labels, classes_path, classes)
    image_ids = np.array(sorted(images), dtype=np.int64)
    relative_paths = [images[image_id][1] for image_id in image_ids.tolist()]
    class_ids = np.array([labels[image_id][1] for image_id in image_ids.tolist()], dtype=np.int64)
    return image_ids, relative_paths, class_ids


def _check_join(
    images_path: Path,
    images: dict,
    labels_path: Path,
    labels: dict,
    classes_path: Path,
    classes: dict,
) -> None:
    """Every image has exactly one label and every label names a listed image and class."""
    for image_id, (line_no, class_id) in labels.items():
        if image_id not in images:
            raise BenchError(
                f"{labels_path}:{line_no}: image id {image_id} is not in {images_path}. {FIX}"
            )
        if class_id not in classes:
            raise BenchError(
                f"{labels_path}:{line_no}: class id {class_id} is not in {classes_path}. {FIX}"
            )
    for image_id, (line_no, _) in images.items():
        if image_id not in labels:
            raise BenchError(
                f"{images_path}:{line_no}: image id {image_id} has no line in {labels_path}. {FIX}"
            )


def _read_id_table(path: Path, expected: str, int_value: bool) -> dict[int, tuple[int, str | int]]:
    """Read `<id> <value>` lines into {id: (line_no, value)}; blank lines are skipped."""
    table: dict[int, tuple[int, str | int]] = {}
    for line_no, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        # Only the first field splits off a name, so a name may hold spaces.
        fields = line.split() if int_value else line.split(maxsplit=1)
        int_fields = fields if int_value else fields[:1]
        if len(fields) != 2 or not all(_is_int(field) for field in int_fields):
            raise _bad_line(path, line_no, expected, line)
        key = int(fields[0])
        if key in table:
            raise BenchError(
                f"{path}:{line_no}: id {key} is listed twice (also on line {table[key][0]}). {FIX}"
            )
        table[key] = (line_no, int(fields[1]) if int_value else fields[1])
    return table


def _read_text(path: Path) -> str:
    if not path.exists():
        raise BenchError(f"{path}: required CUB file is missing. Re-extract CUB_200_2011.tgz.")
    return read_text(path, FIX)


def _is_int(field: str) -> bool:
    return field.isascii() and field.isdigit()


def _bad_line(path: Path, line_no: int, expected: str, got: str, why: str = "") -> BenchError:
    return BenchError(f"{path}:{line_no}: expected '{expected}'{why}, got '{got.strip()}'. {FIX}")


# --- attributes ------------------------------------------------------------------------------


def _class_attributes(
    cub_dir: Path, labels: np.ndarray, num_attributes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class attributes (> 50 % of annotators), rows in class-id order, given to each image."""
    path = cub_dir / "attributes" / "class_attribute_labels_continuous.txt"
    if not path.is_file():
        raise BenchError(
            f"{path} not found: class-level attributes need it. Re-extract "
            f"CUB_200_2011.tgz, or use the per-image attributes."
        )
    try:
        table = np.loadtxt(io.StringIO(_read_text(path)), dtype=np.float64, ndmin=2)
    except ValueError as error:
        raise BenchError(f"{path}: expected rows of {num_attributes} numbers: {error}") from None
    class_ids = np.unique(labels)
    if table.shape[1] != num_attributes or len(table) < class_ids.max():
        raise BenchError(
            f"{path}: expected one row per class ({class_ids.max()}) of "
            f"{num_attributes} values, found {table.shape[0]} x {table.shape[1]}."
        )
    values = (table[labels - 1] > 50).astype(np.float32)
    return values, np.ones(values.shape, dtype=bool)


def _read_attributes(
    cub_dir: Path, image_ids: np.ndarray, min_certainty: int = 2
) -> tuple[tuple[str, ...], np.ndarray | None, np.ndarray | None]:
    """(names, (N, A) is_present, (N, A) known mask), rows aligned with `image_ids`."""
    values_path = cub_dir / "attributes" / "image_attribute_labels.txt"
    if not values_path.is_file():
        return (), None, None
    names_path = _find_attribute_names(cub_dir, values_path)
    names = _read_id_table(names_path, "<attribute_id> <attribute_name>", int_value=False)
    attribute_ids = np.array(sorted(names), dtype=np.int64)
    rows = _load_int_columns(values_path, 4, ATTRIBUTE_LINE)
    image_rows = _lookup(image_ids, rows[:, 0])
    columns = _lookup(attribute_ids, rows[:, 1])
    _check_attribute_rows(values_path, rows, image_rows, columns, len(attribute_ids))
    attributes = np.zeros((len(image_ids), len(attribute_ids)), dtype=np.float32)
    # An (image, attribute) pair with no row stays unknown, like a "not visible" one.
    mask = np.zeros(attributes.shape, dtype=bool)
    attributes[image_rows, columns] = rows[:, 2]
    mask[image_rows, columns] = rows[:, 3] >= min_certainty
    return tuple(str(names[key][1]).strip() for key in attribute_ids.tolist()), attributes, mask


def _find_attribute_names(cub_dir: Path, values_path: Path) -> Path:
    # The README says attributes/attributes.txt; the real archive puts it beside CUB_200_2011/.
    candidates = (
        cub_dir / "attributes" / "attributes.txt",
        cub_dir / "attributes.txt",
        cub_dir.parent / "attributes.txt",
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise BenchError(
        f"{values_path} exists but attributes.txt (the attribute names) was not found; looked at "
        f"{looked}. Copy attributes.txt from CUB_200_2011.tgz next to the CUB_200_2011 folder."
    )


def _lookup(sorted_ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Position of each wanted id in sorted_ids, -1 where it is absent."""
    positions = np.searchsorted(sorted_ids, wanted).clip(max=len(sorted_ids) - 1)
    return np.where(sorted_ids[positions] == wanted, positions, -1)


def _check_attribute_rows(
    path: Path, rows: np.ndarray, image_rows: np.ndarray, columns: np.ndarray, num_attributes: int
) -> None:
    checks = (
        (image_rows < 0, " with an image id from images.txt"),
        (columns < 0, f" with an attribute id from attributes.txt (1..{num_attributes})"),
        (~np.isin(rows[:, 2], (0, 1)), " with is_present 0 or 1"),
        (~np.isin(rows[:, 3], CERTAINTY_IDS), " with certainty_id 1..4"),
        (_repeated(image_rows * num_attributes + columns), " once per (image, attribute) pair"),
    )
    for bad, why in checks:
        if bad.any():
            line_no, line = _nth_data_line(path, int(np.argmax(bad)))
            raise _bad_line(path, line_no, ATTRIBUTE_LINE, line, why)


def _repeated(keys: np.ndarray) -> np.ndarray:
    """True for every occurrence of a key after its first."""
    _, first = np.unique(keys, return_index=True)
    repeated = np.ones(len(keys), dtype=bool)
    repeated[first] = False
    return repeated


def _load_int_columns(path: Path, num_columns: int, expected: str) -> np.ndarray:
    """The first `num_columns` integer fields of every non-blank line, as an (M, num_columns) array.

    np.loadtxt parses the 3.7M-line CUB file in C; only when it fails do we walk the lines in
    Python to name the offending one.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty file just yields no rows
            return np.loadtxt(
                path,
                dtype=np.int64,
                usecols=range(num_columns),
                comments=None,
                ndmin=2,
                encoding="utf-8",
            )
    except (ValueError, OSError) as error:  # bad bytes (UnicodeDecodeError) or unreadable
        _raise_first_bad_line(path, num_columns, expected)
        raise BenchError(f"{path}: could not be read ({error}). {FIX}") from error


def _raise_first_bad_line(path: Path, num_columns: int, expected: str) -> None:
    for line_no, line in enumerate(_read_text(path).splitlines(), start=1):
        fields = line.split()[:num_columns]
        if fields and (len(fields) < num_columns or not all(_is_int(field) for field in fields)):
            raise _bad_line(path, line_no, expected, line)


def _nth_data_line(path: Path, row: int) -> tuple[int, str]:
    """(1-based line number, text) of the row-th non-blank line, as np.loadtxt counts rows."""
    data_lines = (
        (line_no, line)
        for line_no, line in enumerate(_read_text(path).splitlines(), start=1)
        if line.strip()
    )
    for index, (line_no, line) in enumerate(data_lines):
        if index == row:
            return line_no, line
    raise IndexError(row)


CUB_SPEC = DatasetSpec(
    name="cub",
    protocol="std-dml-512",
    summary="CUB-200-2011 birds, 200 species / 11,788 images; classes 1-100 train, 101-200 test.",
    layout=(
        "<data_root>/cub/CUB_200_2011/{images/, images.txt, image_class_labels.txt, "
        "classes.txt, attributes/image_attribute_labels.txt} and <data_root>/cub/attributes.txt "
        "(unpack CUB_200_2011.tgz inside <data_root>/cub)"
    ),
    counts={"images": 11788, "train": 5864, "query": 5924, "gallery": 5924, "classes": 200},
    task="retrieval",
    load=lambda root, **options: load_cub(root / "cub", expected_counts=CUB_COUNTS, **options),
    options_schema=ATTRIBUTE_OPTIONS,
    recall_at=(1, 2, 4, 8),
    url=CUB_URL,
    citation=(
        "Wah, Branson, Welinder, Perona, Belongie. The Caltech-UCSD Birds-200-2011 Dataset. "
        "Caltech CNS-TR-2011-001, 2011."
    ),
)
