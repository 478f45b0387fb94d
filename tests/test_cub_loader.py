"""The CUB-200-2011 reader on a tiny folder in the real archive layout."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.datasets.cub import CUB_COUNTS, find_cub_dir, load_cub
from benchmark.errors import BenchError

# image id -> class id; ids interleave classes so that only a join on id gets them right
CLASS_OF = {1: 4, 2: 1, 3: 6, 4: 2, 5: 3, 6: 5, 7: 1, 8: 2, 9: 4, 10: 5, 11: 6, 12: 3, 13: 2}
ATTRIBUTES = ("has_color::red", "has_size::small", "has_shape::round")
NOT_VISIBLE = {(2, 1), (7, 3), (9, 2)}  # (image id, attribute id) with certainty_id 1
EXTRA_FIELDS = {1, 5, 12}  # images whose attribute lines carry 6 fields, like some real ones
TRAIN_IDS = [2, 4, 5, 7, 8, 12, 13]  # classes 1-3
TEST_IDS = [1, 3, 6, 9, 10, 11]  # classes 4-6


def is_present(image_id: int, attribute_id: int) -> int:
    return (image_id + attribute_id) % 2


def image_path(cub_dir: Path, image_id: int) -> Path:
    class_id = CLASS_OF[image_id]
    return cub_dir / "images" / f"{class_id:03d}.Class_{class_id}" / f"bird_{image_id}.jpg"


def write_lines(path: Path, lines: list[str], seed: int) -> None:
    random.Random(seed).shuffle(lines)  # the reader must not rely on line order
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def append_line(path: Path, line: str) -> int:
    """Append one line and return its 1-based line number."""
    lines = path.read_text().splitlines() + [line]
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


@pytest.fixture
def cub_root(tmp_path: Path) -> Path:
    cub_dir = tmp_path / "CUB_200_2011"
    for image_id in CLASS_OF:
        path = image_path(cub_dir, image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (image_id * 10, 0, 0)).save(path)
    relative = {i: image_path(cub_dir, i).relative_to(cub_dir / "images") for i in CLASS_OF}
    write_lines(cub_dir / "images.txt", [f"{i} {relative[i].as_posix()}" for i in CLASS_OF], 1)
    write_lines(cub_dir / "image_class_labels.txt", [f"{i} {c}" for i, c in CLASS_OF.items()], 2)
    write_lines(cub_dir / "classes.txt", [f"{c} {c:03d}.Class_{c}" for c in range(1, 7)], 3)
    write_lines(cub_dir / "train_test_split.txt", [f"{i} {i % 2}" for i in CLASS_OF], 4)
    write_lines(tmp_path / "attributes.txt", [f"{a} {n}" for a, n in enumerate(ATTRIBUTES, 1)], 5)
    rows = []
    for image_id in CLASS_OF:
        for attribute_id in range(1, len(ATTRIBUTES) + 1):
            certainty = 1 if (image_id, attribute_id) in NOT_VISIBLE else 4
            extra = " 0 7.25" if image_id in EXTRA_FIELDS else " 3.5"
            rows.append(
                f"{image_id} {attribute_id} {is_present(image_id, attribute_id)} {certainty}{extra}"
            )
    write_lines(cub_dir / "attributes" / "image_attribute_labels.txt", rows, 6)
    return tmp_path


def test_join_on_image_id_and_first_half_class_split(cub_root: Path) -> None:
    splits = load_cub(cub_root)
    cub_dir = cub_root / "CUB_200_2011"
    assert splits.query is splits.gallery
    for image_set, ids in ((splits.train, TRAIN_IDS), (splits.query, TEST_IDS)):
        assert image_set.labels.dtype == np.int64
        assert image_set.labels.tolist() == [CLASS_OF[i] for i in ids]
        assert image_set.paths == tuple(image_path(cub_dir, i) for i in ids)
        assert all(path.is_absolute() and path.is_file() for path in image_set.paths)
    assert sorted(set(splits.train.labels.tolist())) == [1, 2, 3]
    assert sorted(set(splits.query.labels.tolist())) == [4, 5, 6]


def test_attributes_mask_and_row_alignment(cub_root: Path) -> None:
    splits = load_cub(cub_root)
    assert splits.attribute_names == ATTRIBUTES  # read from beside CUB_200_2011/
    for image_set, ids in ((splits.train, TRAIN_IDS), (splits.query, TEST_IDS)):
        expected = [[is_present(i, a) for a in range(1, 4)] for i in ids]
        known = [[(i, a) not in NOT_VISIBLE for a in range(1, 4)] for i in ids]
        assert image_set.attributes.dtype == np.float32
        assert image_set.attributes.tolist() == expected
        assert image_set.attribute_mask.tolist() == known


def test_root_may_be_the_cub_folder_and_names_may_sit_inside_it(cub_root: Path) -> None:
    cub_dir = cub_root / "CUB_200_2011"
    (cub_root / "attributes.txt").rename(cub_dir / "attributes" / "attributes.txt")
    assert find_cub_dir(cub_root) == cub_dir
    splits = load_cub(cub_dir)
    assert splits.attribute_names == ATTRIBUTES
    assert len(splits.train) == 7 and len(splits.query) == 6


def test_no_attribute_files_means_no_attributes(cub_root: Path) -> None:
    (cub_root / "CUB_200_2011" / "attributes" / "image_attribute_labels.txt").unlink()
    splits = load_cub(cub_root)
    assert splits.attribute_names == ()
    assert splits.train.attributes is None and splits.train.attribute_mask is None


def test_missing_images_txt_says_where_to_unpack(cub_root: Path) -> None:
    (cub_root / "CUB_200_2011" / "images.txt").unlink()
    with pytest.raises(BenchError) as error:
        load_cub(cub_root)
    assert "images.txt" in str(error.value)
    assert f"unpack it in {cub_root}" in str(error.value)


def test_missing_labels_file_is_named(cub_root: Path) -> None:
    path = cub_root / "CUB_200_2011" / "image_class_labels.txt"
    path.unlink()
    with pytest.raises(BenchError, match="required CUB file is missing") as error:
        load_cub(cub_root)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("file", "line"),
    [
        ("image_class_labels.txt", "14 x"),
        ("image_class_labels.txt", "14 3 1"),
        ("images.txt", "14"),
        ("attributes/image_attribute_labels.txt", "3 1 1"),
        ("attributes/image_attribute_labels.txt", "3 one 1 4 2.0"),
        ("attributes/image_attribute_labels.txt", "99 1 1 4 2.0"),  # unknown image id
        ("attributes/image_attribute_labels.txt", "3 4 1 4 2.0"),  # attribute id out of range
        ("attributes/image_attribute_labels.txt", "3 1 1 7 2.0"),  # certainty_id not 1-4
        ("attributes/image_attribute_labels.txt", "3 1 1 4 2.0"),  # (image, attribute) again
    ],
)
def test_malformed_line_is_named_by_file_and_line(cub_root: Path, file: str, line: str) -> None:
    path = cub_root / "CUB_200_2011" / file
    line_no = append_line(path, line)
    with pytest.raises(BenchError) as error:
        load_cub(cub_root)
    message = str(error.value)
    assert f"{path}:{line_no}:" in message
    assert f"got '{line}'" in message and "Fix or re-extract the file." in message


def test_duplicate_image_id_names_both_lines(cub_root: Path) -> None:
    path = cub_root / "CUB_200_2011" / "images.txt"
    first = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text[:2] == "5 ")
    line_no = append_line(path, "5 somewhere/else.jpg")
    with pytest.raises(BenchError, match=f"id 5 is listed twice \\(also on line {first}\\)") as err:
        load_cub(cub_root)
    assert f"{path}:{line_no}:" in str(err.value)


def test_image_without_label_is_an_error(cub_root: Path) -> None:
    labels = cub_root / "CUB_200_2011" / "image_class_labels.txt"
    lines = labels.read_text().splitlines()
    labels.write_text("".join(f"{line}\n" for line in lines if not line.startswith("8 ")))
    with pytest.raises(BenchError, match="image id 8 has no line in") as error:
        load_cub(cub_root)
    assert str(labels) in str(error.value)


def test_expected_counts_mismatch_says_found_and_expected(cub_root: Path) -> None:
    assert len(load_cub(cub_root, expected_counts=(13, 7, 6)).train) == 7
    with pytest.raises(BenchError) as error:
        load_cub(cub_root, expected_counts=CUB_COUNTS)
    message = str(error.value)
    assert "found 13 images (7 train / 6 test), expected 11,788 (5,864 / 5,924)" in message
    assert "CUB-200 (2010) has 6,033 images" in message


def test_certainty_threshold_decides_which_values_are_known(cub_root: Path) -> None:
    everything = load_cub(cub_root, min_certainty=1)
    assert everything.train.attribute_mask.all() and everything.query.attribute_mask.all()
    definite = load_cub(cub_root, min_certainty=4)
    assert not definite.train.attribute_mask[0, 0]  # image 2, attribute 1 is "not visible"
    assert definite.train.attribute_mask.sum() == 7 * 3 - 2  # (2, 1) and (7, 3) are train


def test_class_level_attributes_binarise_the_continuous_table(cub_root: Path) -> None:
    table = cub_root / "CUB_200_2011" / "attributes" / "class_attribute_labels_continuous.txt"
    # class c has attribute a present for more than 50 % of annotators when (c + a) is even
    table.write_text(
        "".join(
            " ".join("75.0" if (c + a) % 2 == 0 else "50.0" for a in range(1, 4)) + "\n"
            for c in range(1, 7)
        )
    )
    splits = load_cub(cub_root, attributes="class")
    for image_set, ids in ((splits.train, TRAIN_IDS), (splits.query, TEST_IDS)):
        expected = [[float((CLASS_OF[i] + a) % 2 == 0) for a in range(1, 4)] for i in ids]
        assert image_set.attributes.tolist() == expected
        assert image_set.attribute_mask.all()
    table.unlink()
    with pytest.raises(BenchError, match="class_attribute_labels_continuous.txt not found"):
        load_cub(cub_root, attributes="class")


def write_class_table(cub_root: Path) -> Path:
    table = cub_root / "CUB_200_2011" / "attributes" / "class_attribute_labels_continuous.txt"
    table.write_text("".join("75.0 50.0 75.0\n" for _ in range(6)))
    return table


@pytest.mark.parametrize(
    "file",
    [
        "CUB_200_2011/images.txt",
        "CUB_200_2011/image_class_labels.txt",
        "CUB_200_2011/classes.txt",
        "attributes.txt",
        "CUB_200_2011/attributes/image_attribute_labels.txt",  # read by np.loadtxt
        "CUB_200_2011/attributes/class_attribute_labels_continuous.txt",
    ],
)
def test_a_list_that_is_not_utf8_is_named_by_file_and_line(cub_root: Path, file: str) -> None:
    write_class_table(cub_root)
    path = cub_root / file
    line_no = len(path.read_bytes().splitlines()) + 1
    path.write_bytes(path.read_bytes() + b"99 caf\xe9\n")
    with pytest.raises(BenchError) as error:
        load_cub(cub_root, attributes="class")
    assert str(error.value) == (
        f"{path}:{line_no}: not UTF-8 text (byte 0xe9 in column 7). Fix or re-extract the file."
    )


@pytest.mark.parametrize(
    "file",
    [
        "CUB_200_2011/image_class_labels.txt",
        "CUB_200_2011/attributes/class_attribute_labels_continuous.txt",
    ],
)
def test_a_list_that_cannot_be_read_is_named(cub_root: Path, file: str, unreadable) -> None:
    write_class_table(cub_root)
    unreadable(cub_root / file)
    with pytest.raises(BenchError) as error:
        load_cub(cub_root, attributes="class")
    assert str(error.value) == (
        f"{cub_root / file}: cannot be read (Permission denied); check its permissions."
    )
