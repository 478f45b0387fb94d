"""DeepFashion In-Shop Clothes Retrieval read from its original layout.

Item-disjoint train, query and gallery splits come from Eval/list_eval_partition.txt; a query's
relevant images are the gallery images of its item. The real data lives at `<data_root>/inshop/`:

    inshop/Eval/list_eval_partition.txt
    inshop/Img/img/<MEN|WOMEN>/<Category>/id_XXXXXXXX/<nn>_<k>_<view>.jpg   (from Img/img.zip)
    inshop/Anno/list_attr_items.txt, list_attr_cloth.txt   (optional; or in Anno/attributes/)

Every list file starts with a row count (line 1) and a header (line 2). Attributes are per item
(1 / -1 / 0 = unknown) and every image of an item inherits its item's row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from benchmark.errors import BenchError
from benchmark.specs import DatasetSpec, ImageSet, Splits
from benchmark.textfile import read_text

INSHOP_URL = "http://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html"
INSHOP_COUNTS = {
    "images": 52712,
    "train": 25882,
    "query": 14218,
    "gallery": 12612,
    "train_items": 3997,
    "test_items": 3985,
}
STATUSES = ("train", "query", "gallery")
PARTITION = Path("Eval") / "list_eval_partition.txt"
PARTITION_LINE = "<image_name> <item_id> <evaluation_status>"
PARTITION_HEADER = "image_name item_id evaluation_status"
ATTRIBUTE_DIRS = (Path("Anno"), Path("Anno") / "attributes")
ATTRIBUTE_CODES = {"1": 1, "-1": -1, "0": 0}  # positive, negative, unknown
FIX = "Fix or re-extract the file."
LAYOUT = (
    "<root>/Eval/list_eval_partition.txt, images at <root>/Img/img/... (or <root>/img/...), "
    "attributes optionally in <root>/Anno/ or <root>/Anno/attributes/"
)
_ITEM_ID = re.compile(r"id_(\d+)")


class _Row(NamedTuple):
    line_no: int
    image_name: str
    item: int
    status: str


def load_inshop(root: Path, expected_counts: Mapping[str, int] | None = None) -> Splits:
    """Read In-Shop from `root`: train, query and gallery exactly as the partition file says.

    Labels are the item numbers (`id_00000080` -> 80). expected_counts: counts to assert, keys
    from INSHOP_COUNTS (e.g. INSHOP_COUNTS itself for the real release).
    """
    root = Path(root)
    partition = root / PARTITION
    rows = _read_partition(root, partition)
    _check_items_disjoint(partition, rows)
    by_status = {status: [row for row in rows if row.status == status] for status in STATUSES}
    _check_splits(partition, by_status)
    if expected_counts is not None:
        _check_counts(root, by_status, expected_counts)
    image_dir = _find_image_dir(root, partition, rows)
    names, item_codes = _read_attributes(root, {row.item for row in rows})
    train, query, gallery = (
        _image_set(by_status[status], image_dir, item_codes, len(names)) for status in STATUSES
    )
    return Splits(train=train, query=query, gallery=gallery, attribute_names=names)


def _image_set(
    rows: list[_Row], image_dir: Path, item_codes: dict[int, np.ndarray], num_attributes: int
) -> ImageSet:
    labels = np.array([row.item for row in rows], dtype=np.int64)
    attributes = mask = None
    if num_attributes:
        # An item without an attribute row is all unknown (code 0).
        unknown = np.zeros(num_attributes, dtype=np.int8)
        codes = np.stack([item_codes.get(row.item, unknown) for row in rows])
        attributes, mask = (codes == 1).astype(np.float32), codes != 0
    return ImageSet(
        paths=tuple(image_dir / row.image_name for row in rows),
        labels=labels,
        attributes=attributes,
        attribute_mask=mask,
    )


# --- the partition file ----------------------------------------------------------------------


def _read_partition(root: Path, path: Path) -> list[_Row]:
    if not path.is_file():
        raise BenchError(
            f"DeepFashion In-Shop not found: {path} does not exist. Expected layout: {LAYOUT}. "
            f"Download the In-shop Clothes Retrieval Benchmark from {INSHOP_URL} and unpack "
            f"Eval/, Anno/ and Img/img.zip (unzip it inside Img/) into {root}."
        )
    listed = _read_list(path)
    if listed.header.split() != PARTITION_HEADER.split():
        raise _bad_line(path, 2, PARTITION_HEADER, listed.header, " (the column names)")
    rows: list[_Row] = []
    first_line: dict[str, int] = {}
    for line_no, line in listed.data:
        fields = line.split()
        item = _item_number(fields[1]) if len(fields) == 3 else None
        if item is None:
            raise _bad_line(path, line_no, PARTITION_LINE, line, " with item_id like id_00000080")
        if fields[2] not in STATUSES:
            raise _bad_line(path, line_no, PARTITION_LINE, line, " with status " + _or(STATUSES))
        if fields[0] in first_line:
            raise BenchError(
                f"{path}:{line_no}: image {fields[0]} is listed twice (also on line "
                f"{first_line[fields[0]]}). {FIX}"
            )
        first_line[fields[0]] = line_no
        rows.append(_Row(line_no, fields[0], item, fields[2]))
    listed.check_count(len(rows))
    return rows


def _check_items_disjoint(path: Path, rows: list[_Row]) -> None:
    """No item may have images both in train and in query or gallery."""
    train_line = {row.item: row.line_no for row in reversed(rows) if row.status == "train"}
    test_rows = [row for row in rows if row.status != "train" and row.item in train_line]
    if test_rows:
        row, shared = test_rows[0], len({test_row.item for test_row in test_rows})
        raise BenchError(
            f"{path}:{row.line_no}: item {_item_name(row.item)} is in {row.status} here and in "
            f"train on line {train_line[row.item]} ({shared} item(s) are in both); In-Shop "
            f"items must not overlap between train and query/gallery. {FIX}"
        )


def _check_splits(path: Path, by_status: dict[str, list[_Row]]) -> None:
    for status, rows in by_status.items():
        if not rows:
            raise BenchError(f"{path}: lists no {status} images. {FIX}")
    gallery_items = {row.item for row in by_status["gallery"]}
    # Queries whose item has no gallery image are kept (they count as queries without relevant
    # images); only a partition where that holds for all of them is surely broken.
    if all(row.item not in gallery_items for row in by_status["query"]):
        raise BenchError(
            f"{path}: none of the {len(by_status['query']):,} query images has a gallery image "
            f"of its item, so nothing can be retrieved. {FIX}"
        )


def _check_counts(
    root: Path, by_status: dict[str, list[_Row]], expected: Mapping[str, int]
) -> None:
    found = {status: len(rows) for status, rows in by_status.items()}
    found["images"] = sum(found.values())
    found["train_items"] = len({row.item for row in by_status["train"]})
    found["test_items"] = len({row.item for row in by_status["query"] + by_status["gallery"]})
    unknown = sorted(set(expected) - set(found))
    if unknown:
        raise BenchError(
            f"expected_counts has unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(INSHOP_COUNTS)}."
        )
    if all(found[key] == value for key, value in expected.items()):
        return
    listing = "; ".join(
        f"{key}: found {found[key]:,}, expected {value:,}" for key, value in expected.items()
    )
    raise BenchError(
        f"{root}: the In-Shop partition does not match the release ({listing}). Download "
        f"list_eval_partition.txt again from {INSHOP_URL} and put it in {root / 'Eval'}."
    )


def _find_image_dir(root: Path, partition: Path, rows: list[_Row]) -> Path:
    """`root/Img` (as Img/img.zip unzips) or `root`, whichever holds the first listed image."""
    candidates = (root / "Img", root)
    first = rows[0]
    image_dir = next((c for c in candidates if (c / first.image_name).is_file()), None)
    if image_dir is None:
        tried = " or ".join(str(c / first.image_name) for c in candidates)
        raise BenchError(
            f"{partition}:{first.line_no}: image {first.image_name} is in neither layout tried: "
            f"{tried}. Unzip Img/img.zip inside {root / 'Img'} (its password, if it asks, "
            f"comes from the authors: {INSHOP_URL})."
        )
    missing = [row for row in rows if not (image_dir / row.image_name).is_file()]
    if missing:
        raise BenchError(
            f"{partition}:{missing[0].line_no}: {len(missing):,} listed image(s) are missing "
            f"under {image_dir}, e.g. {image_dir / missing[0].image_name}. "
            "Unzip Img/img.zip again."
        )
    return image_dir


# --- attributes ------------------------------------------------------------------------------


def _read_attributes(root: Path, items: set[int]) -> tuple[tuple[str, ...], dict[int, np.ndarray]]:
    """(attribute names, {item: (A,) int8 codes}); no list_attr_items.txt means no attributes."""
    values_path = _find_attribute_file(root, "list_attr_items.txt")
    if values_path is None:
        return (), {}
    # Prefer the names file beside the values file, then the other location.
    names_path = values_path.parent / "list_attr_cloth.txt"
    if not names_path.is_file():
        names_path = _find_attribute_file(root, "list_attr_cloth.txt")
    if names_path is None:
        looked = " and ".join(str(root / d / "list_attr_cloth.txt") for d in ATTRIBUTE_DIRS)
        raise BenchError(
            f"{values_path} exists but list_attr_cloth.txt (the attribute names) was not found; "
            f"looked at {looked}. Copy it from the Anno/ folder of the In-Shop download."
        )
    names = _read_attribute_names(names_path)
    codes = _read_attribute_rows(values_path, names)
    if not items & codes.keys():
        raise BenchError(
            f"{values_path}: none of its {len(codes):,} items is in {root / PARTITION}; "
            "the attribute file belongs to another release. Take both from the same download."
        )
    return names, codes


def _find_attribute_file(root: Path, name: str) -> Path | None:
    return next((root / d / name for d in ATTRIBUTE_DIRS if (root / d / name).is_file()), None)


def _read_attribute_names(path: Path) -> tuple[str, ...]:
    """One name per line; a trailing integer column (the attribute type) is dropped."""
    listed = _read_list(path)
    names = []
    for _, line in listed.data:
        fields = line.rsplit(maxsplit=1)
        has_type = len(fields) == 2 and fields[1].lstrip("-").isdigit()
        names.append(fields[0].strip() if has_type else line.strip())
    listed.check_count(len(names))
    if not names:
        raise BenchError(f"{path}: lists no attribute names. {FIX}")
    return tuple(names)


def _read_attribute_rows(path: Path, names: tuple[str, ...]) -> dict[int, np.ndarray]:
    """{item: codes}; a repeated identical row is dropped, a conflicting one is an error."""
    listed = _read_list(path)
    expected = f"<item_id> <{len(names)} values, each 1, -1 or 0>"
    codes: dict[int, np.ndarray] = {}
    first_line: dict[int, int] = {}
    for line_no, line in listed.data:
        fields = line.split()
        item = _item_number(fields[0])
        values = [ATTRIBUTE_CODES.get(field) for field in fields[1:]]
        if item is None or len(values) != len(names) or None in values:
            raise _bad_line(path, line_no, expected, line)
        row = np.array(values, dtype=np.int8)
        if item in codes and not np.array_equal(codes[item], row):
            raise _conflict(path, item, first_line[item], line_no, names, codes[item], row)
        codes.setdefault(item, row)
        first_line.setdefault(item, line_no)
    # Line 1 may count the rows or the distinct items: the releases are said to repeat rows.
    listed.check_count(len(listed.data), len(codes))
    return codes


def _conflict(
    path: Path,
    item: int,
    first: int,
    second: int,
    names: tuple[str, ...],
    first_row: np.ndarray,
    second_row: np.ndarray,
) -> BenchError:
    differ = np.flatnonzero(first_row != second_row)
    shown = ", ".join(
        f"'{names[a]}' {first_row[a]} vs {second_row[a]}" for a in differ[:3].tolist()
    )
    more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
    return BenchError(
        f"{path}:{second}: item {_item_name(item)} has two different attribute rows, on lines "
        f"{first} and {second} ({shown}{more}). Delete the wrong one."
    )


# --- shared line handling --------------------------------------------------------------------


class _ListFile(NamedTuple):
    """A counted list file: line 1 the row count, line 2 the header, then the data lines."""

    path: Path
    count: int
    header: str
    data: list[tuple[int, str]]  # (line_no, line) of the non-blank data lines

    def check_count(self, *allowed: int) -> None:
        if self.count not in allowed:
            raise BenchError(
                f"{self.path}:1: line 1 says {self.count:,} rows but {allowed[0]:,} follow the "
                "header. The file is truncated or edited; re-extract it."
            )


def _read_list(path: Path) -> _ListFile:
    if not path.is_file():
        raise BenchError(f"{path}: required In-Shop file is missing. Re-extract the download.")
    lines = read_text(path, FIX).splitlines()
    if not lines or not lines[0].strip().isdigit():
        raise _bad_line(path, 1, "<number of rows>", lines[0] if lines else "")
    if len(lines) < 2 or not lines[1].strip():
        raise _bad_line(path, 2, "a header of column names", lines[1] if len(lines) > 1 else "")
    data = [(line_no, line) for line_no, line in _numbered(lines[2:], start=3) if line.strip()]
    return _ListFile(path, int(lines[0]), lines[1], data)


def _numbered(lines: list[str], start: int) -> Iterator[tuple[int, str]]:
    return zip(range(start, start + len(lines)), lines, strict=True)


def _item_number(field: str) -> int | None:
    match = _ITEM_ID.fullmatch(field)
    return int(match.group(1)) if match else None


def _item_name(item: int) -> str:
    return f"id_{item:08d}"


def _or(values: tuple[str, ...]) -> str:
    return ", ".join(values[:-1]) + " or " + values[-1]


def _bad_line(path: Path, line_no: int, expected: str, got: str, why: str = "") -> BenchError:
    return BenchError(f"{path}:{line_no}: expected '{expected}'{why}, got '{got.strip()}'. {FIX}")


INSHOP_SPEC = DatasetSpec(
    name="inshop",
    protocol="std-dml-512",
    summary=(
        "DeepFashion In-Shop clothes, 7,982 items / 52,712 images in <data_root>/inshop/; "
        "3,997 items train, 3,985 test as 14,218 query / 12,612 gallery images."
    ),
    task="query-gallery",
    load=lambda root: load_inshop(Path(root) / "inshop", expected_counts=INSHOP_COUNTS),
    recall_at=(1, 10, 20, 30, 40, 50),
    url=INSHOP_URL,
    layout="<data_root>/inshop/ holding " + LAYOUT.replace("<root>/", ""),
    counts=INSHOP_COUNTS,
    citation=(
        "Liu, Luo, Qiu, Wang, Tang. DeepFashion: Powering Robust Clothes Recognition and "
        "Retrieval with Rich Annotations. CVPR 2016."
    ),
)
