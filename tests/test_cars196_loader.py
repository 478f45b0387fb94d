"""The CARS196 reader on tiny folders in both official layouts, written with scipy.io.savemat."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from benchmark.data.datasets.cars196 import (
    CARS196_SPEC,
    CARS_COUNTS,
    CARS_NUM_CLASSES,
    class_model,
    load_cars196,
    parse_class_name,
)
from benchmark.errors import BenchError
from benchmark.specs import Splits

CLASS_NAMES = (
    "AM General Hummer SUV 2000",
    "Acura TL Type-S 2008",
    "Chevrolet Silverado 1500 Extended Cab 2012",
    "Ram C/V Cargo Van Minivan 2012",
    "smart fortwo Convertible 2012",
    "Ford Ranger SuperCab 2011",
)
PARSED = {
    1: ("AM General", "SUV", 2000),
    2: ("Acura", None, 2008),
    3: ("Chevrolet", "Cab", 2012),
    4: ("Ram", "Minivan", 2012),
    5: ("smart", "Convertible", 2012),
    6: ("Ford", "Cab", 2011),
}
# Devkit images as (folder, file name, class id), in (folder, file name) order. Names repeat across
# the two folders with different classes, so a reader keyed on the file name alone loses images.
DEVKIT_IMAGES = (
    ("cars_test", "00001.jpg", 1),
    ("cars_test", "00002.jpg", 5),
    ("cars_test", "00003.jpg", 2),
    ("cars_test", "00004.jpg", 6),
    ("cars_train", "00001.jpg", 4),
    ("cars_train", "00002.jpg", 3),
    ("cars_train", "00003.jpg", 1),
    ("cars_train", "00004.jpg", 6),
    ("cars_train", "00005.jpg", 2),
    ("cars_train", "00006.jpg", 5),
    ("cars_train", "00007.jpg", 3),
)
LABELS = [label for _, _, label in DEVKIT_IMAGES]
TRAIN_ROWS = [row for row, label in enumerate(LABELS) if label <= 3]
TEST_ROWS = [row for row, label in enumerate(LABELS) if label > 3]
MODELS = {
    1: "AM General Hummer",
    2: "Acura TL Type-S",
    3: "Chevrolet Silverado 1500 Extended",
    4: "Ram C/V Cargo Van",
    5: "smart fortwo",
    6: "Ford Ranger",
}
CLASS_ATTRIBUTE_NAMES = (
    "make::AM General",
    "make::Acura",
    "make::Chevrolet",
    "make::Ford",
    "make::Ram",
    "make::smart",
    "body::SUV",
    "body::Convertible",
    "body::Minivan",
    "body::Cab",
    "year::2000",
    "year::2008",
    "year::2011",
    "year::2012",
)
ATTRIBUTE_NAMES = CLASS_ATTRIBUTE_NAMES + tuple(f"model::{m}" for m in sorted(MODELS.values()))


def original_name(row: int) -> str:
    """Layout A's file for the row-th devkit image, so that both layouts sort alike."""
    return f"car_ims/{row + 1:06d}.jpg"


def struct_array(records: list[dict]) -> np.ndarray:
    """A 1xN object-field record array: savemat writes it as a MATLAB struct array."""
    fields = list(records[0])
    array = np.zeros((1, len(records)), dtype=[(field, object) for field in fields])
    for index, record in enumerate(records):
        array[0, index] = tuple(record[field] for field in fields)
    return array


def cell_row(values: tuple[str, ...]) -> np.ndarray:
    cells = np.empty((1, len(values)), dtype=object)
    cells[0, :] = values
    return cells


def bbox(row: int) -> dict:
    return {
        f"bbox_{key}": np.array([[value]], dtype=np.uint16)
        for key, value in zip(
            ("x1", "y1", "x2", "y2"), (row, row + 1, row + 30, row + 20), strict=True
        )
    }


def original_record(row: int, class_id: int) -> dict:
    # cars_annos.mat field order: relative_im_path, bbox_x1..bbox_y2, class, test.
    return {
        "relative_im_path": original_name(row),
        **bbox(row),
        "class": np.array([[class_id]], dtype=np.uint8),
        "test": np.array([[row % 2]], dtype=np.uint8),
    }


def devkit_record(row: int, file_name: str, class_id: int | None) -> dict:
    # Devkit field order: bbox_x1..bbox_y2, class, fname (the unlabelled test file lacks class).
    labelled = {} if class_id is None else {"class": np.array([[class_id]], dtype=np.uint8)}
    return {**bbox(row), **labelled, "fname": file_name}


def shuffled(records: list[dict], seed: int) -> list[dict]:
    random.Random(seed).shuffle(records)  # the reader must not rely on record order
    return records


def save_image(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (shade * 20, 0, 0)).save(path)


def save_annotations(path: Path, records: list[dict], **variables: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"annotations": struct_array(records), **variables})


def write_original(root: Path) -> list[dict]:
    """Layout A in root; returns the records in the order they were written."""
    for row in range(len(DEVKIT_IMAGES)):
        save_image(root / original_name(row), row)
    records = shuffled([original_record(row, label) for row, label in enumerate(LABELS)], 1)
    save_annotations(root / "cars_annos.mat", records, class_names=cell_row(CLASS_NAMES))
    return records


def write_devkit(root: Path, labelled_test_file: Path | None = None) -> None:
    """Layout B in root, the labelled test annotations at `labelled_test_file` (default: root)."""
    for row, (folder, file_name, _) in enumerate(DEVKIT_IMAGES):
        save_image(root / folder / file_name, row)
    (root / "devkit").mkdir()
    scipy.io.savemat(root / "devkit" / "cars_meta.mat", {"class_names": cell_row(CLASS_NAMES)})
    for folder, path in (
        ("cars_train", root / "devkit" / "cars_train_annos.mat"),
        ("cars_test", labelled_test_file or root / "cars_test_annos_withlabels.mat"),
    ):
        records = [
            devkit_record(row, file_name, label)
            for row, (image_folder, file_name, label) in enumerate(DEVKIT_IMAGES)
            if image_folder == folder
        ]
        save_annotations(path, shuffled(records, len(folder)))


@pytest.fixture
def original_root(tmp_path: Path) -> Path:
    write_original(tmp_path)
    return tmp_path


@pytest.fixture
def devkit_root(tmp_path: Path) -> Path:
    write_devkit(tmp_path)
    return tmp_path


def assert_splits_alike(first: Splits, second: Splits) -> None:
    assert first.attribute_names == second.attribute_names
    for name in ("train", "query"):
        one, other = getattr(first, name), getattr(second, name)
        assert len(one) == len(other)
        assert one.labels.tolist() == other.labels.tolist()
        assert one.attributes.tolist() == other.attributes.tolist()
        assert one.attribute_mask.tolist() == other.attribute_mask.tolist()


def test_both_layouts_give_the_same_splits(tmp_path: Path) -> None:
    write_original(tmp_path / "a")
    write_devkit(tmp_path / "b")
    original, devkit = load_cars196(tmp_path / "a"), load_cars196(tmp_path / "b")
    assert_splits_alike(original, devkit)
    assert original.train.paths == tuple(tmp_path / "a" / original_name(row) for row in TRAIN_ROWS)
    assert devkit.train.paths[:2] == (
        tmp_path / "b" / "cars_test" / "00001.jpg",
        tmp_path / "b" / "cars_test" / "00003.jpg",
    )


def test_first_half_class_split_in_folder_then_name_order(devkit_root: Path) -> None:
    splits = load_cars196(devkit_root, expected_counts=(11, 6, 5), expected_classes=6)
    assert splits.query is splits.gallery
    for image_set, rows in ((splits.train, TRAIN_ROWS), (splits.query, TEST_ROWS)):
        assert image_set.labels.dtype == np.int64
        assert image_set.labels.tolist() == [LABELS[row] for row in rows]
        expected = [devkit_root / DEVKIT_IMAGES[row][0] / DEVKIT_IMAGES[row][1] for row in rows]
        assert image_set.paths == tuple(expected)
        assert all(path.is_file() for path in image_set.paths)
    assert sorted(set(splits.train.labels.tolist())) == [1, 2, 3]
    assert sorted(set(splits.query.labels.tolist())) == [4, 5, 6]


def test_devkit_file_names_repeat_across_folders(devkit_root: Path) -> None:
    splits = load_cars196(devkit_root)
    paths = splits.train.paths + splits.query.paths
    assert len(set(paths)) == len(DEVKIT_IMAGES)
    labels = np.concatenate([splits.train.labels, splits.query.labels]).tolist()
    label_of = dict(zip(paths, labels, strict=True))
    assert label_of[devkit_root / "cars_train" / "00001.jpg"] == 4
    assert label_of[devkit_root / "cars_test" / "00001.jpg"] == 1


def test_labelled_test_annotations_may_sit_in_devkit(tmp_path: Path) -> None:
    write_devkit(
        tmp_path, labelled_test_file=tmp_path / "devkit" / "cars_test_annos_withlabels.mat"
    )
    assert len(load_cars196(tmp_path).query) == len(TEST_ROWS)


def test_attributes_and_mask_follow_the_class(original_root: Path) -> None:
    splits = load_cars196(original_root)
    assert splits.attribute_names == ATTRIBUTE_NAMES
    body_columns = [name.startswith("body::") for name in ATTRIBUTE_NAMES]
    for image_set in (splits.train, splits.query):
        assert image_set.attributes.dtype == np.float32
        assert image_set.attribute_mask.dtype == bool
        for values, known, label in zip(
            image_set.attributes, image_set.attribute_mask, image_set.labels, strict=True
        ):
            make, body, year = PARSED[int(label)]
            on = {f"make::{make}", f"year::{year}", f"model::{MODELS[int(label)]}"}
            on |= {f"body::{body}"} if body else set()
            assert values.tolist() == [float(name in on) for name in ATTRIBUTE_NAMES]
            expected_known = [not (is_body and body is None) for is_body in body_columns]
            assert known.tolist() == expected_known


def test_split_is_make_disjoint_in_the_fixture_as_in_the_real_data(original_root: Path) -> None:
    splits = load_cars196(original_root)
    make_columns = [name.startswith("make::") for name in splits.attribute_names]
    train_makes = splits.train.attributes[:, make_columns].any(axis=0)
    test_makes = splits.query.attributes[:, make_columns].any(axis=0)
    assert not (train_makes & test_makes).any()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Ram C/V Cargo Van Minivan 2012", ("Ram", "Minivan", 2012)),
        ("smart fortwo Convertible 2012", ("smart", "Convertible", 2012)),
        ("AM General Hummer SUV 2000", ("AM General", "SUV", 2000)),
        ("Acura TL Type-S 2008", ("Acura", None, 2008)),
        ("Acura Integra Type R 2001", ("Acura", None, 2001)),
        ("Chevrolet Silverado 1500 Extended Cab 2012", ("Chevrolet", "Cab", 2012)),
        ("Dodge Ram Pickup 3500 Quad Cab 2009", ("Dodge", "Cab", 2009)),
        ("Ford Ranger SuperCab 2011", ("Ford", "Cab", 2011)),
        ("Aston Martin V8 Vantage Coupe 2012", ("Aston Martin", "Coupe", 2012)),
        ("Land Rover Range Rover SUV 2012", ("Land Rover", "SUV", 2012)),
        (
            "Rolls-Royce Phantom Drophead Coupe Convertible 2012",
            ("Rolls-Royce", "Convertible", 2012),
        ),
        ("Ford E-Series Wagon Van 2012", ("Ford", "Van", 2012)),
        ("Mercedes-Benz Sprinter Van 2012", ("Mercedes-Benz", "Van", 2012)),
        ("Lamborghini Gallardo LP 570-4 Superleggera 2012", ("Lamborghini", None, 2012)),
        ("Chevrolet Corvette Ron Fellows Edition Z06 2007", ("Chevrolet", None, 2007)),
        ("Eagle Talon Hatchback 1998", ("Eagle", "Hatchback", 1998)),
        ("Volvo 240 Sedan 1993", ("Volvo", "Sedan", 1993)),
        ("Audi 100 Wagon 1994", ("Audi", "Wagon", 1994)),
    ],
)
def test_parse_class_name(name: str, expected: tuple[str, str | None, int]) -> None:
    assert parse_class_name(name) == expected


@pytest.mark.parametrize("name", ["", "2012", "Audi S4 Sedan", "Aston Martin", "Audi S4 Sedan 12"])
def test_parse_class_name_rejects_names_without_make_or_year(name: str) -> None:
    with pytest.raises(ValueError, match="<Make> <Model...> \\[<Body type>\\] <Year>"):
        parse_class_name(name)


def test_no_layout_found_describes_both(tmp_path: Path) -> None:
    with pytest.raises(BenchError) as error:
        load_cars196(tmp_path)
    message = str(error.value)
    assert f"CARS196 not found in {tmp_path}" in message
    for part in ("cars_annos.mat", "car_ims", "cars_train", "cars_test", "devkit/cars_meta.mat"):
        assert part in message
    assert "cars_test_annos_withlabels.mat" in message


def test_missing_image_folder_says_what_to_unpack(original_root: Path) -> None:
    for path in (original_root / "car_ims").iterdir():
        path.unlink()
    (original_root / "car_ims").rmdir()
    with pytest.raises(BenchError, match="unpack car_ims.tgz into"):
        load_cars196(original_root)


def test_unlabelled_devkit_test_annotations_ask_for_the_labelled_file(devkit_root: Path) -> None:
    labelled = devkit_root / "cars_test_annos_withlabels.mat"
    unlabelled = devkit_root / "devkit" / "cars_test_annos.mat"
    records = scipy.io.loadmat(labelled)["annotations"]
    fields = [field for field in records.dtype.names if field != "class"]
    save_annotations(
        unlabelled, [{field: record[field] for field in fields} for record in records[0]]
    )
    labelled.unlink()
    with pytest.raises(BenchError) as error:
        load_cars196(devkit_root)
    message = str(error.value)
    assert message.startswith(f"{unlabelled}: has no `class` field")
    assert "Get cars_test_annos_withlabels.mat" in message


@pytest.mark.parametrize("bad_class", [0, 7])
def test_class_out_of_range_names_file_and_record(original_root: Path, bad_class: int) -> None:
    path = original_root / "cars_annos.mat"
    records = write_original(original_root)
    records[4]["class"] = np.array([[bad_class]], dtype=np.uint8)
    save_annotations(path, records, class_names=cell_row(CLASS_NAMES))
    with pytest.raises(BenchError) as error:
        load_cars196(original_root)
    assert str(error.value).startswith(
        f"{path}: annotations(5): class {bad_class} is not a class id in 1..6"
    )


def test_empty_field_names_file_and_record(devkit_root: Path) -> None:
    path = devkit_root / "devkit" / "cars_train_annos.mat"
    records = [devkit_record(row, f"{row:05d}.jpg", 1) for row in range(1, 4)]
    records[1]["fname"] = np.zeros((0, 0))
    save_annotations(path, records)
    with pytest.raises(BenchError) as error:
        load_cars196(devkit_root)
    assert str(error.value).startswith(f"{path}: annotations(2): field `fname` is empty")


def test_missing_field_names_file_and_field(original_root: Path) -> None:
    path = original_root / "cars_annos.mat"
    records = [{"relative_im_path": original_name(row), **bbox(row)} for row in range(3)]
    save_annotations(path, records, class_names=cell_row(CLASS_NAMES))
    with pytest.raises(BenchError) as error:
        load_cars196(original_root)
    assert str(error.value).startswith(f"{path}: `annotations` has no field `class`")


def test_bad_class_name_names_file_and_index(devkit_root: Path) -> None:
    path = devkit_root / "devkit" / "cars_meta.mat"
    scipy.io.savemat(
        path, {"class_names": cell_row(CLASS_NAMES[:2] + ("Ram C/V",) + CLASS_NAMES[3:])}
    )
    with pytest.raises(BenchError) as error:
        load_cars196(devkit_root)
    assert str(error.value).startswith(f"{path}: class_names(3): expected '<Make>")


def test_expected_counts_mismatch_says_found_and_expected(original_root: Path) -> None:
    assert len(load_cars196(original_root, expected_counts=(11, 6, 5)).query) == 5
    with pytest.raises(BenchError) as error:
        load_cars196(original_root, expected_counts=CARS_COUNTS)
    message = str(error.value)
    assert "found 11 images (6 train / 5 test), expected 16,185 (8,054 / 8,131)" in message
    with pytest.raises(BenchError, match="lists 6 class names, expected 196"):
        load_cars196(original_root, expected_classes=CARS_NUM_CLASSES)


def test_spec_reads_the_cars196_folder_of_the_data_root(tmp_path: Path) -> None:
    write_original(tmp_path / "cars196")
    with pytest.raises(BenchError) as error:
        CARS196_SPEC.load(tmp_path)
    names_path = tmp_path / "cars196" / "cars_annos.mat"
    assert str(error.value).startswith(f"{names_path}: lists 6 class names, expected 196")
    assert CARS196_SPEC.name == "cars196" and CARS196_SPEC.task == "retrieval"


@pytest.mark.parametrize(("label", "name"), list(enumerate(CLASS_NAMES, start=1)))
def test_model_is_the_words_between_make_and_body_type(label: int, name: str) -> None:
    make = PARSED[label][0]
    assert f"{make} {class_model(name)}" == MODELS[label]
