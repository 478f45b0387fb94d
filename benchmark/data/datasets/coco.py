"""MS-COCO for multi-label hashing, read from the train / test / database list files.

The data lives at `<data_root>/coco/`; each list has one image a line, `<path> <80 labels 0/1>`:

    coco/train.txt      training images (drawn from the database)
    coco/test.txt       the queries
    coco/database.txt   what the queries retrieve from
    coco/train2014/COCO_train2014_000000000009.jpg, coco/val2014/...   (the images)

`build_coco_split` and `write_coco_lists` make the lists from the official 2014 annotations:
5,000 seeded queries, the other 117,218 images with a category as the database, 10,000 of
those for training. Label columns are the categories sorted by name, as in the public lists.
Line 1 of each list is then a header, `# dmlbench {"builder": ..., "seed": ...,
"categories": [...]}`, which names the columns.

The public lists of DeepHash-pytorch (`train2014/...`), CSQ (`data/coco/train2014/...`) and
HashNet also read. Leading folders that do not exist under `coco/` are dropped, as decided by
each file's first image. HashNet's absolute paths (`/home/caozhangjie/run-czj/dataset/coco/
train2014/...`) must first be made relative, e.g.
`sed -i 's#^/home/caozhangjie/run-czj/dataset/coco/##' train.txt test.txt database.txt`.
Third-party splits differ in size (CSQ trains on 9,992 images), so the official counts are
checked only for lists whose header says our builder wrote them; for others the check is
skipped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NamedTuple

import numpy as np

from benchmark.errors import BenchError
from benchmark.specs import DatasetSpec, ImageSet, Splits
from benchmark.textfile import read_text

COCO_URL = "https://cocodataset.org"
COCO_COUNTS = {"query": 5000, "database": 117218, "train": 10000, "classes": 80}
COCO_BUILDER = "dmlbench build_coco_split"
LISTS = {"train": "train.txt", "query": "test.txt", "database": "database.txt"}
HEADER_PREFIX = "# dmlbench "
LAYOUT = (
    "<root>/train.txt, test.txt (queries) and database.txt, one '<image path> <80 labels 0/1>' "
    "a line with paths relative to <root> (e.g. train2014/COCO_train2014_000000000009.jpg); "
    "images in <root>/train2014/ and <root>/val2014/"
)
FIX = "Fix the line, or rebuild the lists with `bench data prepare coco`."
REBUILD = "Save it as UTF-8, or rebuild the lists with `bench data prepare coco`."
Split = dict[str, list[tuple[str, list[int]]]]
_ANNOTATION_FILE = re.compile(r"instances_(\w+)\.json")
_ABSOLUTE = re.compile(r"/|[A-Za-z]:[\\/]")  # POSIX or Windows


class _Row(NamedTuple):
    line_no: int
    path: str
    labels: str  # the 0/1 values joined, e.g. "0100..."


class _Width(NamedTuple):
    classes: int
    source: str  # where the width was fixed, for error messages


class _ListFile(NamedTuple):
    path: Path
    header: dict[str, Any] | None
    rows: list[_Row]
    width: _Width


def load_coco(root: Path, expected_counts: Mapping[str, int] | None = None) -> Splits:
    """Read `root`/train.txt, test.txt and database.txt as train, query and gallery.

    Labels are (N, classes) int64 multi-hot. expected_counts (keys from COCO_COUNTS): "classes"
    fixes the label width; "query" and "database" are asserted only when the header says the
    lists come from `build_coco_split` (queries, and queries + database = the 122,218 pool).
    """
    root = Path(root)
    _check_count_keys(expected_counts)
    classes = (expected_counts or {}).get("classes")
    width = None if classes is None else _Width(classes, f"expected_counts (classes {classes})")
    lists: dict[str, _ListFile] = {}
    for split, name in LISTS.items():
        lists[split] = _read_list(root, root / name, width)
        width = lists[split].width  # the first file fixes the width for the others
    header = _common_header(list(lists.values()))
    if expected_counts is not None:
        found = {split: len(listed.rows) for split, listed in lists.items()}
        _check_counts(root, header, found, expected_counts)
    sets = {split: _image_set(root, listed) for split, listed in lists.items()}
    _check_disjoint(lists["query"], sets["query"], lists["database"], sets["database"])
    names = tuple(header["categories"]) if header else ()
    return Splits(sets["train"], sets["query"], sets["database"], attribute_names=names)


def _image_set(root: Path, listed: _ListFile) -> ImageSet:
    flat = np.frombuffer("".join(row.labels for row in listed.rows).encode("ascii"), np.uint8)
    labels = (flat - ord("0")).astype(np.int64).reshape(len(listed.rows), -1)
    return ImageSet(paths=_resolve_paths(root, listed), labels=labels)


# --- reading a list file ---------------------------------------------------------------------


def _read_list(root: Path, path: Path, width: _Width | None) -> _ListFile:
    if not path.is_file():
        raise BenchError(
            f"MS-COCO hashing list not found: {path} does not exist. Expected layout: {LAYOUT}. "
            f"Build the lists from instances_train2014.json and instances_val2014.json "
            f"({COCO_URL}) with `bench data prepare coco`, or copy the public train/test/"
            f"database lists (DeepHash-pytorch, HashNet, CSQ) into {root}."
        )
    lines = read_text(path, REBUILD).splitlines()
    header = _parse_header(path, lines[0]) if lines else None
    if header is not None:
        width = _header_width(path, header, width)
    rows: list[_Row] = []
    first_line: dict[str, int] = {}
    for line_no, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        row = _parse_row(path, line_no, line, width, header)
        width = width or _Width(len(row.labels), f"{path}:{line_no}")
        if row.path in first_line:
            raise BenchError(
                f"{path}:{line_no}: image {row.path} is listed twice (also on line "
                f"{first_line[row.path]}). {FIX}"
            )
        first_line[row.path] = line_no
        rows.append(row)
    if not rows or width is None:
        raise BenchError(f"{path}: lists no images. Expected layout: {LAYOUT}. {FIX}")
    return _ListFile(path, header, rows, width)


def _parse_row(
    path: Path, line_no: int, line: str, width: _Width | None, header: dict | None
) -> _Row:
    fields = line.split()
    if width is not None and len(fields) != 1 + width.classes:
        raise BenchError(
            f"{path}:{line_no}: expected {1 + width.classes} fields (an image path and "
            f"{width.classes} labels, each 0 or 1, as in {width.source}), got {len(fields)}. {FIX}"
        )
    if len(fields) < 2:
        raise BenchError(f"{path}:{line_no}: expected '<image path> <labels 0/1>', got '{line}'.")
    labels = "".join(fields[1:])
    if len(labels) != len(fields) - 1 or not set(labels) <= {"0", "1"}:
        column = next(i for i, value in enumerate(fields[1:]) if value not in ("0", "1"))
        name = f" ({header['categories'][column]})" if header else ""
        raise BenchError(
            f"{path}:{line_no}: label column {column}{name} is '{fields[1 + column]}'; "
            f"expected 0 or 1. {FIX}"
        )
    if "1" not in labels:
        raise BenchError(
            f"{path}:{line_no}: image {fields[0]} has no label (all {len(labels)} values are 0). "
            "The standard protocol drops such images (the pool is the 122,218 images with at "
            "least one category): delete the line."
        )
    return _Row(line_no, fields[0], labels)


def _parse_header(path: Path, line: str) -> dict[str, Any] | None:
    """The `# dmlbench {json}` header on line 1, or None (any other `#` line is a comment)."""
    if not line.startswith(HEADER_PREFIX):
        return None
    try:
        header = json.loads(line[len(HEADER_PREFIX) :])
    except json.JSONDecodeError:
        header = None
    names = header.get("categories") if isinstance(header, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise BenchError(
            f"{path}:1: a '{HEADER_PREFIX}' header must be a JSON object whose 'categories' "
            "lists the column names. Delete the line or rebuild with `bench data prepare coco`."
        )
    return header


def _header_width(path: Path, header: dict[str, Any], width: _Width | None) -> _Width:
    classes = len(header["categories"])
    if width is not None and width.classes != classes:
        raise BenchError(
            f"{path}:1: the header names {classes} categories; expected {width.classes}, as in "
            f"{width.source}. {FIX}"
        )
    return width or _Width(classes, f"the header of {path}")


def _common_header(lists: list[_ListFile]) -> dict[str, Any] | None:
    """The header the lists share; headers that differ mean the files come from two builds."""
    with_header = [listed for listed in lists if listed.header is not None]
    for listed in with_header[1:]:
        if listed.header != with_header[0].header:
            raise BenchError(
                f"{listed.path}:1 and {with_header[0].path}:1: the headers differ, so the lists "
                "come from different builds (another seed or category order). Rebuild all "
                "three with `bench data prepare coco`."
            )
    return with_header[0].header if with_header else None


# --- image paths -----------------------------------------------------------------------------


def _resolve_paths(root: Path, listed: _ListFile) -> tuple[Path, ...]:
    """Paths below `root`, dropping the leading folders (CSQ's `data/coco/`) that the first
    listed image shows are not there."""
    absolute = next((row for row in listed.rows if _ABSOLUTE.match(row.path)), None)
    if absolute is not None:
        raise _absolute_path(root, listed.path, absolute)
    first = listed.rows[0]
    parts = first.path.split("/")
    drop = next((n for n in range(len(parts)) if root.joinpath(*parts[n:]).is_file()), None)
    if drop is None:
        tried = ", ".join(str(root.joinpath(*parts[n:])) for n in range(len(parts)))
        raise BenchError(
            f"{listed.path}:{first.line_no}: image {first.path} not found; tried {tried}. "
            f"Expected layout: {LAYOUT}. Unzip train2014.zip and val2014.zip into {root}."
        )
    # Strings, not Path objects, until the end: this runs over 122,218 images.
    relative = [row.path.split("/", drop)[-1] for row in listed.rows]
    missing = [i for i, name in enumerate(relative) if not os.path.isfile(os.path.join(root, name))]
    if missing:
        row, example = listed.rows[missing[0]], root / relative[missing[0]]
        raise BenchError(
            f"{listed.path}:{row.line_no}: {len(missing):,} listed image(s) are missing, e.g. "
            f"{example}. Unzip train2014.zip and val2014.zip into {root} again."
        )
    return tuple(root / name for name in relative)


def _absolute_path(root: Path, path: Path, row: _Row) -> BenchError:
    parts = PurePosixPath(row.path).parts
    folder = next((i for i, part in enumerate(parts) if part in ("train2014", "val2014")), None)
    prefix = "/".join(parts[:folder]).replace("//", "/") + "/" if folder else "<prefix>/"
    return BenchError(
        f"{path}:{row.line_no}: image path {row.path} is absolute; list paths must be relative "
        f"to {root} (as in HashNet's lists, written for another machine). Rewrite them, e.g. "
        f"sed -i 's#^{prefix}##' {' '.join(LISTS.values())}"
    )


# --- checks across the lists -----------------------------------------------------------------


def _check_disjoint(query: _ListFile, queries: ImageSet, database: _ListFile, db: ImageSet) -> None:
    shared = set(queries.paths) & set(db.paths)
    if shared:
        row = next(r for r, p in zip(query.rows, queries.paths, strict=True) if p in shared)
        raise BenchError(
            f"{query.path}:{row.line_no}: query {row.path} is also in {database.path} "
            f"({len(shared):,} of the queries are); a query would retrieve itself at distance 0. "
            "Remove the queries from the database, or rebuild with `bench data prepare coco`."
        )


def _check_count_keys(expected: Mapping[str, int] | None) -> None:
    unknown = sorted(set(expected or {}) - set(COCO_COUNTS))
    if unknown:
        raise BenchError(
            f"expected_counts has unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(COCO_COUNTS)}."
        )


def _check_counts(
    root: Path, header: dict | None, found: dict[str, int], expected: Mapping[str, int]
) -> None:
    """Standard sizes, for our builder's lists only: third-party splits differ in size."""
    if header is None or header.get("builder") != COCO_BUILDER:
        return
    if "query" not in expected or "database" not in expected:
        return
    pool, want_pool = found["query"] + found["database"], expected["query"] + expected["database"]
    if found["query"] == expected["query"] and pool == want_pool:
        return
    raise BenchError(
        f"{root}: the lists hold {found['query']:,} queries and {pool:,} images in query + "
        f"database; the standard split has {expected['query']:,} and {want_pool:,} (every COCO "
        "2014 train and val image with a category). Rebuild them with `bench data prepare coco` "
        "from both instances_train2014.json and instances_val2014.json, at the default sizes."
    )


# --- building the lists from the official annotations ----------------------------------------


class _Instances(NamedTuple):
    categories: tuple[tuple[int, str], ...]  # (id, name) in file order
    images: tuple[tuple[str, frozenset[int]], ...]  # (list path, category ids), annotated only


def build_coco_split(
    annotation_files: list[Path],
    seed: int = 0,
    queries: int = 5000,
    train: int = 10000,
    order: Literal["name", "id"] = "name",
) -> Split:
    """{"train", "query", "database"}: (list path, 0/1 labels) from COCO `instances_*.json`.

    Images with at least one annotation (crowd ones count) form the pool, labelled over the
    categories sorted by `order` (see coco_category_names); draw_split splits it. Paths are
    `<folder>/<file_name>` with the folder from the file name: instances_val2014.json ->
    val2014/. The JSON files are parsed once per process (cached by path, size and mtime).
    """
    instances = [_read_instances(Path(file)) for file in annotation_files]
    columns = [category_id for category_id, _ in _columns(annotation_files, instances, order)]
    pool = [
        (path, [int(category in ids) for category in columns])
        for part in instances
        for path, ids in part.images
    ]
    _check_pool(annotation_files, pool, queries, train)
    return draw_split(pool, seed, queries, train)


def coco_category_names(
    annotation_files: list[Path], order: Literal["name", "id"] = "name"
) -> list[str]:
    """The label columns' category names: sorted by name (the public lists' order) or by id."""
    instances = [_read_instances(Path(file)) for file in annotation_files]
    return [name for _, name in _columns(annotation_files, instances, order)]


def draw_split(pool: Sequence[tuple[str, list[int]]], seed: int, queries: int, train: int) -> Split:
    """`queries` query images, the rest as database, `train` training images from the database.

    Images are ranked by sha256 of (seed, path), so the split depends only on the seed and the
    set of paths: not on the pool's order, the platform or a library version. The database
    keeps that shuffled order (ties in Hamming distance are then broken in a random order).
    """
    if queries < 1 or train < 1 or len(pool) - queries < train:
        raise BenchError(
            f"cannot split {len(pool):,} images into {queries:,} queries and a database holding "
            f"{train:,} training images: lower queries or train."
        )
    ranked = sorted(pool, key=lambda item: _rank(seed, "split", item[0]))
    database = ranked[queries:]
    chosen = sorted(database, key=lambda item: _rank(seed, "train", item[0]))[:train]
    split = {"train": chosen, "query": ranked[:queries], "database": database}
    _check_split(split)
    return split


def write_coco_lists(
    split: Split,
    target_dir: Path,
    category_names: Sequence[str],
    *,
    seed: int,
    builder: str = COCO_BUILDER,
) -> None:
    """Write train.txt, test.txt (the queries) and database.txt into `target_dir`.

    Each file is written to a temp file and renamed, all renames last. Line 1 is the header:
    builder, seed and the column names in order.
    """
    _check_split(split, len(category_names))
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    header = {"builder": builder, "seed": seed, "categories": list(category_names)}
    temps = {name: target_dir / f"{name}.tmp-{os.getpid()}" for name in LISTS.values()}
    try:
        for key, name in LISTS.items():
            lines = [HEADER_PREFIX + json.dumps(header)]
            lines += [f"{path} {' '.join(map(str, labels))}" for path, labels in split[key]]
            temps[name].write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        for name, temp in temps.items():
            temp.replace(target_dir / name)
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)


def _rank(seed: int, purpose: str, path: str) -> bytes:
    return hashlib.sha256(f"{seed}/{purpose}/{path}".encode()).digest()


def _check_split(split: Split, classes: int | None = None) -> None:
    missing = sorted(set(LISTS) - set(split))
    if missing:
        raise BenchError(f"split has no {', '.join(missing)} list; expected keys {list(LISTS)}.")
    paths = {key: [path for path, _ in split[key]] for key in LISTS}
    for key, listed in paths.items():
        if not listed or len(set(listed)) != len(listed):
            raise BenchError(f"split['{key}'] is empty or lists an image twice.")
    if set(paths["query"]) & set(paths["database"]):
        raise BenchError("split: query and database share images; they must be disjoint.")
    if not set(paths["train"]) <= set(paths["database"]):
        raise BenchError("split: every training image must also be in the database.")
    valid = ({0, 1}, {1})  # 0/1 values with at least one 1, as load_coco requires
    rows = (row for key in LISTS for row in split[key])
    bad = next((path for path, labels in rows if set(labels) not in valid), None)
    if bad is not None:
        raise BenchError(f"split: the labels of {bad} are not 0/1 with at least one 1.")
    widths = {len(labels) for key in LISTS for _, labels in split[key]}
    if len(widths) != 1 or (classes is not None and widths != {classes}):
        named = "" if classes is None else f" and {classes} category names"
        raise BenchError(f"split: label lengths {sorted(widths)}{named} do not all agree.")


def _check_pool(files: list[Path], pool: list, queries: int, train: int) -> None:
    twice = [path for path, count in Counter(path for path, _ in pool).items() if count > 1]
    if twice:
        raise BenchError(
            f"{twice[0]} is listed more than once in {_names(files)}: give each file once."
        )
    if len(pool) < queries + train:
        raise BenchError(
            f"{_names(files)}: only {len(pool):,} images have a category; the split needs "
            f"{queries:,} queries plus {train:,} training images from the database. Give both "
            "instances_train2014.json and instances_val2014.json, or lower queries and train."
        )


def _names(files: list[Path]) -> str:
    return ", ".join(str(file) for file in files)


def _columns(files: list[Path], instances: list[_Instances], order: str) -> list[tuple[int, str]]:
    if order not in ("name", "id"):
        raise BenchError(f"order={order!r}: expected 'name' (the public lists') or 'id'.")
    if not instances:
        raise BenchError("no annotation files given: pass instances_train2014.json and val.")
    for file, part in zip(files[1:], instances[1:], strict=True):
        if sorted(part.categories) != sorted(instances[0].categories):
            raise BenchError(
                f"{file} and {files[0]} list different categories; take both from the same "
                f"COCO release ({COCO_URL})."
            )
    return sorted(instances[0].categories, key=lambda c: c[1] if order == "name" else c[0])


def _read_instances(path: Path) -> _Instances:
    if not path.is_file():
        raise BenchError(
            f"{path} does not exist. Download annotations_trainval2014.zip from {COCO_URL} "
            "and pass its annotations/instances_train2014.json and instances_val2014.json."
        )
    stat = path.stat()
    return _parse_instances(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _parse_instances(path: Path, size: int, mtime_ns: int) -> _Instances:
    """The categories and the annotated images; size and mtime only key the cache."""
    match = _ANNOTATION_FILE.fullmatch(path.name)
    if match is None:
        raise BenchError(
            f"{path}: cannot tell the image folder from the name; expected "
            "instances_<folder>.json, e.g. instances_train2014.json for train2014/."
        )
    text = read_text(path, "Download it again.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise BenchError(f"{path}: not valid JSON ({error}). Download it again.") from error
    top = {key: _key(path, data, key, "the top level") for key in _TOP_KEYS}
    categories = {
        _key(path, c, "id", f"categories[{i}]"): str(_key(path, c, "name", f"categories[{i}]"))
        for i, c in enumerate(top["categories"])
    }
    names = {
        _key(path, image, "id", f"images[{i}]"): _key(path, image, "file_name", f"images[{i}]")
        for i, image in enumerate(top["images"])
    }
    labels: dict[Any, set[int]] = {}
    for i, annotation in enumerate(top["annotations"]):
        image_id = _key(path, annotation, "image_id", f"annotations[{i}]")
        category_id = _key(path, annotation, "category_id", f"annotations[{i}]")
        if image_id not in names or category_id not in categories:
            raise BenchError(
                f"{path}: annotations[{i}] refers to image_id {image_id} / category_id "
                f"{category_id}, which 'images' / 'categories' do not list. Download it again."
            )
        labels.setdefault(image_id, set()).add(category_id)
    images = tuple(
        (f"{match.group(1)}/{names[image_id]}", frozenset(ids)) for image_id, ids in labels.items()
    )
    return _Instances(tuple(categories.items()), images)


_TOP_KEYS = ("images", "annotations", "categories")


def _key(path: Path, record: Any, key: str, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise BenchError(
            f"{path}: {where} has no '{key}' key; is it a COCO instances_*.json file? Download "
            f"annotations_trainval2014.zip again from {COCO_URL}."
        )
    return record[key]


COCO_SPEC = DatasetSpec(
    name="coco",
    protocol="std-hash",
    summary=(
        "MS-COCO 2014 multi-label hashing, 80 categories in <data_root>/coco/: 5,000 queries, "
        "a 117,218-image database, 10,000 training images drawn from it; mAP@5000."
    ),
    task="hashing",
    load=lambda root: load_coco(Path(root) / "coco", expected_counts=COCO_COUNTS),
    recall_at=(),
    top_k=5000,
    main_metric="map@k",
    url=COCO_URL,
    layout="<data_root>/coco/ holding " + LAYOUT.replace("<root>/", ""),
    counts=COCO_COUNTS,
    citation=(
        "Lin et al. Microsoft COCO: Common Objects in Context. ECCV 2014. Split protocol: "
        "Cao, Long, Wang, Yu. HashNet: Deep Learning to Hash by Continuation. ICCV 2017."
    ),
)
