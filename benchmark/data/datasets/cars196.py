"""Stanford Cars (CARS196) read from either official layout, split by class for zero-shot retrieval.

The real data lives under `<data_root>/cars196/`, in one of two layouts:

- A, the original release: `car_ims/000001.jpg ...` and `cars_annos.mat`;
- B, the devkit release: `cars_train/`, `cars_test/`, `devkit/cars_meta.mat`,
  `devkit/cars_train_annos.mat` and `cars_test_annos_withlabels.mat` (beside `devkit/` or in it).

Layout B's two folders are the classification split, so they are read as one pool. Either way
classes 1-98 train and 99-196 test (8,054 / 8,131 images), as the DML papers split them.

Attributes are derived from the class names, `<Make> <Model...> [<Body type>] <Year>`, as one-hot
groups `make::<Make>`, `body::<Body type>` and `year::<Year>`; the body group is masked out for
the 14 names without a body type. The DML split is make-disjoint (train holds the makes AM General
to Eagle, test FIAT to smart), so make attributes never transfer to test; body type and year do.
"""

from __future__ import annotations

from numbers import Integral
from pathlib import Path, PurePosixPath

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from benchmark.errors import BenchError
from benchmark.specs import DatasetSpec, ImageSet, Splits

CARS_URL = "https://ai.stanford.edu/~jkrause/cars/car_dataset.html"
# The Stanford download links are dead; this thread has the mirrors and the devkit.
MIRRORS_URL = "https://github.com/pytorch/vision/issues/7545"
CARS_COUNTS = (16185, 8054, 8131)
CARS_NUM_CLASSES = 196
FIX = "Fix the file or download it again."
NAME_PATTERN = "<Make> <Model...> [<Body type>] <Year>"
MULTI_WORD_MAKES = ("AM General", "Aston Martin", "Land Rover")
BODY_TYPES = ("SUV", "Sedan", "Coupe", "Convertible", "Hatchback", "Wagon", "Minivan", "Van", "Cab")
BODY_ALIASES = {"SuperCab": "Cab"}  # "Crew Cab", "Quad Cab", ... end in the word "Cab" already
TEST_ANNOTATIONS = "cars_test_annos_withlabels.mat"

Record = tuple[str, int, str]  # (path relative to the root, class id, "<file>: annotations(i)")


def load_cars196(
    root: Path,
    expected_counts: tuple[int, int, int] | None = None,
    *,
    expected_classes: int | None = None,
) -> Splits:
    """Read CARS196 from `root` (layout A or B) and split it: classes 1..C/2 train, the rest test.

    expected_counts: (total, train, test) image counts to assert, e.g. CARS_COUNTS.
    expected_classes: number of class names to assert, e.g. CARS_NUM_CLASSES.
    """
    root = Path(root)
    names_path, class_names, records = _read_layout(root)
    if expected_classes is not None and len(class_names) != expected_classes:
        raise BenchError(
            f"{names_path}: lists {len(class_names)} class names, expected {expected_classes}. "
            f"{FIX}"
        )
    parsed = [_parse(names_path, index, name) for index, name in enumerate(class_names, start=1)]
    models = [class_model(name) for name in class_names]
    attribute_names, class_attributes, class_mask = attribute_table(parsed, models)
    records = sorted(records, key=lambda record: _folder_and_name(record[0]))
    paths = np.array([root / record[0] for record in records], dtype=object)
    labels = np.array([record[1] for record in records], dtype=np.int64)
    # The class table, not the images, fixes the split, so a class without images cannot move it.
    in_train = labels <= len(class_names) // 2
    train, test = (
        ImageSet(
            paths=tuple(paths[rows]),
            labels=labels[rows],
            attributes=class_attributes[labels[rows] - 1],
            attribute_mask=class_mask[labels[rows] - 1],
        )
        for rows in (np.flatnonzero(in_train), np.flatnonzero(~in_train))
    )
    if expected_counts is not None:
        _check_counts(root, (len(labels), len(train), len(test)), expected_counts)
    return Splits(train=train, query=test, gallery=test, attribute_names=attribute_names)


def _folder_and_name(relative: str) -> tuple[str, str]:
    path = PurePosixPath(relative)
    return path.parent.as_posix(), path.name


def _check_counts(root: Path, found: tuple[int, int, int], expected: tuple[int, int, int]) -> None:
    if tuple(found) == tuple(expected):
        return
    raise BenchError(
        f"{root}: found {found[0]:,} images ({found[1]:,} train / {found[2]:,} test), expected "
        f"{expected[0]:,} ({expected[1]:,} / {expected[2]:,}). The full dataset has 16,185 images "
        f"(devkit layout: 8,144 in cars_train plus 8,041 in cars_test); unpack it again (mirrors: "
        f"{MIRRORS_URL})."
    )


# --- class names and attributes --------------------------------------------------------------


def parse_class_name(name: str) -> tuple[str, str | None, int]:
    """(make, body type or None, year) of a class name `<Make> <Model...> [<Body type>] <Year>`.

    The body type, when there is one, is the word right before the year ("SuperCab" counts as
    "Cab"), so "Ram C/V Cargo Van Minivan 2012" is a Minivan and "Acura TL Type-S 2008" has none.
    """
    tokens = name.split()
    make = next((m for m in MULTI_WORD_MAKES if tokens[: len(m.split())] == m.split()), None)
    make_length = len(make.split()) if make else 1
    year = tokens[-1] if tokens else ""
    if len(tokens) <= make_length or not (len(year) == 4 and year.isascii() and year.isdigit()):
        raise ValueError(f"expected '{NAME_PATTERN}', got '{name}'")
    word = tokens[-2] if len(tokens) - 1 > make_length else ""
    body = BODY_ALIASES.get(word, word)
    return make or tokens[0], body if body in BODY_TYPES else None, int(year)


def class_model(name: str) -> str:
    """The model: the words between the make and the body type (or the year, without one),
    e.g. "S4" of "Audi S4 Sedan 2012", "Silverado 1500 Extended" of "... Extended Cab 2012"."""
    make, body, _ = parse_class_name(name)
    words = name.split()[len(make.split()) : -1]
    return " ".join(words[:-1] if body is not None else words)


def attribute_table(
    parsed: list[tuple[str, str | None, int]], models: list[str] | None = None
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(names, (C, A) one-hot values, (C, A) known mask), one row per class, from parsed names.

    Only values that occur get a column: makes and years sorted, body types in BODY_TYPES order,
    then the models (sorted; `model::<make> <model>`, since one model spans several years).
    """
    makes = sorted({make for make, _, _ in parsed})
    present_bodies = {body for _, body, _ in parsed}
    bodies = [body for body in BODY_TYPES if body in present_bodies]
    years = sorted({year for _, _, year in parsed})
    names = (
        tuple(f"make::{make}" for make in makes)
        + tuple(f"body::{body}" for body in bodies)
        + tuple(f"year::{year}" for year in years)
    )
    column = {name: index for index, name in enumerate(names)}
    body_columns = [column[f"body::{body}"] for body in bodies]
    values = np.zeros((len(parsed), len(names)), dtype=np.float32)
    mask = np.ones(values.shape, dtype=bool)
    for row, (make, body, year) in enumerate(parsed):
        values[row, [column[f"make::{make}"], column[f"year::{year}"]]] = 1
        if body is None:
            mask[row, body_columns] = False
        else:
            values[row, column[f"body::{body}"]] = 1
    if models is None:
        return names, values, mask
    keys = [f"model::{make} {model}" for (make, _, _), model in zip(parsed, models, strict=True)]
    columns = sorted(set(keys))
    one_hot = np.array([[key == c for c in columns] for key in keys], dtype=np.float32)
    return (
        names + tuple(columns),
        np.hstack([values, one_hot]),
        np.hstack([mask, np.ones(one_hot.shape, dtype=bool)]),
    )


def _parse(path: Path, index: int, name: str) -> tuple[str, str | None, int]:
    try:
        return parse_class_name(name)
    except ValueError as error:
        raise BenchError(f"{path}: class_names({index}): {error}. {FIX}") from None


# --- layouts ---------------------------------------------------------------------------------


def _read_layout(root: Path) -> tuple[Path, list[str], list[Record]]:
    """(file holding class_names, class names, image records) of whichever layout `root` holds.

    When both are present the original release wins: it is the one the DML papers read.
    """
    if (root / "cars_annos.mat").is_file():
        return _read_original(root)
    if (root / "devkit" / "cars_meta.mat").is_file():
        return _read_devkit(root)
    raise BenchError(
        f"CARS196 not found in {root}. Expected either (A) the original release, "
        f"{root / 'car_ims'}/000001.jpg ... and {root / 'cars_annos.mat'}, or (B) the devkit "
        f"release, {root / 'cars_train'}/, {root / 'cars_test'}/, "
        f"{root / 'devkit' / 'cars_meta.mat'}, devkit/cars_train_annos.mat and {TEST_ANNOTATIONS} "
        f"(in {root} or devkit/). Unpack one of them there (mirrors: {MIRRORS_URL})."
    )


def _read_original(root: Path) -> tuple[Path, list[str], list[Record]]:
    path = root / "cars_annos.mat"
    _require_folders(path, [root / "car_ims"], "car_ims.tgz")
    mat = _load_mat(path)
    class_names = _class_names(path, mat)
    annotations = _struct_array(path, mat, ("relative_im_path", "class"))
    # The `test` field is the classification split (classes shared by both halves): not read.
    records = _records(path, annotations, "relative_im_path", len(class_names))
    return path, class_names, _check_unique(records)


def _read_devkit(root: Path) -> tuple[Path, list[str], list[Record]]:
    meta_path = root / "devkit" / "cars_meta.mat"
    _require_folders(meta_path, [root / "cars_train", root / "cars_test"], "cars_*.tgz")
    class_names = _class_names(meta_path, _load_mat(meta_path))
    records: list[Record] = []
    for folder, path in (
        ("cars_train", root / "devkit" / "cars_train_annos.mat"),
        ("cars_test", _find_test_annotations(root)),
    ):
        mat = _load_mat(path)
        if folder == "cars_test" and "class" not in _field_names(mat):
            raise BenchError(
                f"{path}: has no `class` field, so the test images are unlabelled (this is the "
                f"devkit's cars_test_annos.mat). Get {TEST_ANNOTATIONS} (mirrors: {MIRRORS_URL}) "
                f"and put it in {root} or {root / 'devkit'}."
            )
        annotations = _struct_array(path, mat, ("fname", "class"))
        # File names repeat across cars_train/ and cars_test/, so the folder is in the key.
        records += _records(path, annotations, "fname", len(class_names), prefix=f"{folder}/")
    return meta_path, class_names, _check_unique(records)


def _records(
    path: Path, annotations: np.ndarray, path_field: str, num_classes: int, prefix: str = ""
) -> list[Record]:
    return [
        (
            prefix + _text_field(path, index, record, path_field),
            _class_field(path, index, record, num_classes),
            f"{path}: annotations({index})",
        )
        for index, record in enumerate(annotations, start=1)
    ]


def _find_test_annotations(root: Path) -> Path:
    """The labelled test annotations; else the devkit's unlabelled file, to be reported as such."""
    candidates = (
        root / TEST_ANNOTATIONS,
        root / "devkit" / TEST_ANNOTATIONS,
        root / "devkit" / "cars_test_annos.mat",
    )
    return next((path for path in candidates if path.is_file()), candidates[0])


def _require_folders(found: Path, folders: list[Path], archive: str) -> None:
    for folder in folders:
        if not folder.is_dir():
            raise BenchError(
                f"Found {found} but not the image folder {folder}: unpack {archive} into "
                f"{folder.parent}."
            )


def _check_unique(records: list[Record]) -> list[Record]:
    seen: dict[str, str] = {}
    for relative, _, where in records:
        if relative in seen:
            raise BenchError(f"{where}: image {relative} is listed twice (also {seen[relative]}).")
        seen[relative] = where
    return records


# --- .mat files ------------------------------------------------------------------------------


def _load_mat(path: Path) -> dict:
    if not path.is_file():
        raise BenchError(
            f"{path}: required CARS196 file is missing. Unpack it (see {MIRRORS_URL})."
        )
    try:
        # squeeze_me turns 1x1 fields into scalars and strings; fields are then read by name
        # because their order differs between cars_annos.mat and the devkit files.
        return scipy.io.loadmat(path, squeeze_me=True)
    except (MatReadError, NotImplementedError, ValueError, TypeError, OSError) as error:
        raise BenchError(f"{path}: could not be read as a MATLAB file ({error}). {FIX}") from None


def _field_names(mat: dict) -> tuple[str, ...]:
    return np.atleast_1d(mat.get("annotations", np.zeros(0))).dtype.names or ()


def _struct_array(path: Path, mat: dict, fields: tuple[str, ...]) -> np.ndarray:
    """The `annotations` struct array as a 1-D array of records, checked to hold `fields`."""
    if "annotations" not in mat:
        found = ", ".join(key for key in mat if not key.startswith("__")) or "none"
        raise BenchError(f"{path}: has no `annotations` variable (found: {found}). {FIX}")
    present = _field_names(mat)
    for field in fields:
        if field not in present:
            raise BenchError(
                f"{path}: `annotations` has no field `{field}` (its fields: "
                f"{', '.join(present) or 'none'}). {FIX}"
            )
    return np.atleast_1d(mat["annotations"])


def _class_names(path: Path, mat: dict) -> list[str]:
    if "class_names" not in mat:
        raise BenchError(f"{path}: has no `class_names` variable. {FIX}")
    names = np.atleast_1d(mat["class_names"]).tolist()
    for index, name in enumerate(names, start=1):
        if not isinstance(name, str) or not name.strip():
            raise BenchError(
                f"{path}: class_names({index}) is {name!r}, expected a name like "
                f"'Audi S4 Sedan 2012'. {FIX}"
            )
    if not names:
        raise BenchError(f"{path}: `class_names` is empty. {FIX}")
    return [name.strip() for name in names]


def _value(path: Path, index: int, record: np.void, field: str) -> object:
    value = record[field]
    if isinstance(value, np.ndarray):
        # squeeze_me leaves an empty field ([] in MATLAB) as an empty array.
        if value.size != 1:
            raise BenchError(f"{path}: annotations({index}): field `{field}` is empty. {FIX}")
        value = value.item()
    return value


def _class_field(path: Path, index: int, record: np.void, num_classes: int) -> int:
    value = _value(path, index, record, "class")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a class saved as a MATLAB double
    if isinstance(value, bool) or not isinstance(value, Integral) or not 1 <= value <= num_classes:
        raise BenchError(
            f"{path}: annotations({index}): class {value} is not a class id in 1..{num_classes} "
            f"(one per class name). {FIX}"
        )
    return int(value)


def _text_field(path: Path, index: int, record: np.void, field: str) -> str:
    value = _value(path, index, record, field)
    if not isinstance(value, str) or not value.strip():
        raise BenchError(
            f"{path}: annotations({index}): field `{field}` is {value!r}, expected a file name. "
            f"{FIX}"
        )
    return value.strip()


CARS196_SPEC = DatasetSpec(
    name="cars196",
    protocol="std-dml-512",
    summary=(
        "Stanford Cars, 196 models / 16,185 images in <data_root>/cars196/; classes 1-98 train, "
        "99-196 test."
    ),
    task="retrieval",
    layout=(
        "<data_root>/cars196/ holding either car_ims/ + cars_annos.mat (original release) or "
        "cars_train/, cars_test/, devkit/cars_meta.mat, devkit/cars_train_annos.mat and "
        "cars_test_annos_withlabels.mat (devkit release)"
    ),
    counts={"images": 16185, "train": 8054, "query": 8131, "gallery": 8131, "classes": 196},
    load=lambda root: load_cars196(
        root / "cars196", expected_counts=CARS_COUNTS, expected_classes=CARS_NUM_CLASSES
    ),
    recall_at=(1, 2, 4, 8),
    url=CARS_URL,
    citation=(
        "Krause, Stark, Deng, Fei-Fei. 3D Object Representations for Fine-Grained "
        "Categorization. 4th IEEE Workshop on 3D Representation and Recognition (3dRR-13), 2013."
    ),
)
