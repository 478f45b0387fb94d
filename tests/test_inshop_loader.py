"""The DeepFashion In-Shop reader on a tiny folder in the real layout."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.datasets.inshop import INSHOP_COUNTS, INSHOP_SPEC, load_inshop
from benchmark.errors import BenchError

TRAIN = {80: 3, 3: 2, 1215: 2, 47: 3, 9: 2, 600: 1}  # item -> images
TEST = {12: (2, 1), 5: (1, 2), 7001: (1, 1), 64: (2, 2), 2: (1, 2), 300: (1, 0)}  # (query, gallery)
NAMES = ("floral print", "long sleeve", "denim", "v neck")
TYPES = (1, 2, 3, 1)
WITHOUT_ATTRIBUTES = {9, 300}  # items with no row in list_attr_items.txt
HEADER = "image_name item_id evaluation_status"


def item_name(item: int) -> str:
    return f"id_{item:08d}"


def make_rows() -> list[tuple[str, int, str]]:
    """(image_name, item, status) in a shuffled order: splits must keep the file's order."""
    rows = []
    for item, count in TRAIN.items():
        rows += [(item, view, "train") for view in range(count)]
    for item, (queries, galleries) in TEST.items():
        rows += [(item, view, "query") for view in range(queries)]
        rows += [(item, queries + view, "gallery") for view in range(galleries)]
    random.Random(0).shuffle(rows)
    return [(image_name(item, view), item, status) for item, view, status in rows]


def image_name(item: int, view: int) -> str:
    gender = "MEN" if item % 2 == 0 else "WOMEN"
    return f"img/{gender}/Denim/{item_name(item)}/{view + 1:02d}_1_front.jpg"


ROWS = make_rows()


def codes(item: int) -> list[int]:
    return [(item + a) % 3 - 1 for a in range(len(NAMES))]  # -1, 0 (unknown) and 1


def write_counted(path: Path, header: str, lines: list[str], count: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = len(lines) if count is None else count
    path.write_text("".join(f"{line}\n" for line in [str(count), header, *lines]))


def write_partition(root: Path, rows: list[tuple[str, int, str]]) -> None:
    lines = [f"{name} {item_name(item)} {status}" for name, item, status in rows]
    write_counted(root / "Eval" / "list_eval_partition.txt", HEADER, lines)


def append_line(path: Path, line: str) -> int:
    """Append one line and return its 1-based line number (line 1's count is left alone)."""
    lines = path.read_text().splitlines() + [line]
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name, item, _ in ROWS:
        path = tmp_path / "Img" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (item % 256, 0, 0)).save(path)
    write_partition(tmp_path, ROWS)
    attributes = tmp_path / "Anno" / "attributes"
    names = [f"{name:<16}{kind}" for name, kind in zip(NAMES, TYPES, strict=True)]
    write_counted(attributes / "list_attr_cloth.txt", "attribute_name  attribute_type", names)
    items = [item for item in [*TRAIN, *TEST] if item not in WITHOUT_ATTRIBUTES]
    lines = [f"{item_name(item)} " + " ".join(map(str, codes(item))) for item in items]
    lines.insert(3, lines[0])  # an identical repeated row is dropped
    write_counted(attributes / "list_attr_items.txt", "item_id attribute_labels", lines, len(items))
    return tmp_path


def expected(status: str) -> list[tuple[str, int, str]]:
    return [row for row in ROWS if row[2] == status]


def test_splits_follow_the_partition_file(root: Path) -> None:
    splits = load_inshop(root)
    assert splits.query is not splits.gallery
    for status in ("train", "query", "gallery"):
        image_set, rows = getattr(splits, status), expected(status)
        assert image_set.labels.dtype == np.int64
        assert image_set.labels.tolist() == [item for _, item, _ in rows]
        assert image_set.paths == tuple(root / "Img" / name for name, _, _ in rows)
        assert all(path.is_file() for path in image_set.paths)
    assert (len(splits.train), len(splits.query), len(splits.gallery)) == (13, 8, 8)
    assert set(splits.train.labels.tolist()) == set(TRAIN)
    assert set(splits.query.labels.tolist()) == set(TEST)
    assert not set(splits.query.paths) & set(splits.gallery.paths)
    # Item 300 has a query but no gallery image: kept, it counts as a query with nothing to find.
    assert 300 in splits.query.labels and 300 not in splits.gallery.labels


def test_every_image_inherits_its_items_attributes(root: Path) -> None:
    splits = load_inshop(root)
    assert splits.attribute_names == NAMES  # the type column is dropped, inner spaces kept
    for status in ("train", "query", "gallery"):
        image_set = getattr(splits, status)
        assert image_set.attributes.dtype == np.float32
        assert image_set.attribute_mask.dtype == np.bool_
        for row, item in enumerate(image_set.labels.tolist()):
            item_codes = np.array(codes(item))
            known = item_codes != 0 if item not in WITHOUT_ATTRIBUTES else np.zeros(4, bool)
            assert image_set.attribute_mask[row].tolist() == known.tolist()
            assert image_set.attributes[row].tolist() == (known & (item_codes == 1)).tolist()


def test_attribute_files_may_sit_directly_in_anno(root: Path) -> None:
    for name in ("list_attr_items.txt", "list_attr_cloth.txt"):
        (root / "Anno" / "attributes" / name).rename(root / "Anno" / name)
    assert load_inshop(root).attribute_names == NAMES


def test_no_attribute_files_means_no_attributes(root: Path) -> None:
    shutil.rmtree(root / "Anno")
    splits = load_inshop(root)
    assert splits.attribute_names == ()
    assert splits.train.attributes is None and splits.query.attribute_mask is None


def test_names_file_missing_is_an_error(root: Path) -> None:
    (root / "Anno" / "attributes" / "list_attr_cloth.txt").unlink()
    with pytest.raises(BenchError, match="list_attr_cloth.txt \\(the attribute names\\) was not"):
        load_inshop(root)


def test_images_may_sit_directly_under_the_root(root: Path) -> None:
    (root / "Img" / "img").rename(root / "img")
    (root / "Img").rmdir()
    splits = load_inshop(root)
    assert splits.gallery.paths[0] == root / expected("gallery")[0][0]


def test_missing_images_name_both_layouts_tried(root: Path) -> None:
    shutil.rmtree(root / "Img")
    with pytest.raises(BenchError) as error:
        load_inshop(root)
    first = ROWS[0][0]
    message = str(error.value)
    assert f"{root / 'Img' / first} or {root / first}" in message
    assert "Unzip Img/img.zip inside" in message


def test_one_missing_image_is_named(root: Path) -> None:
    name = expected("gallery")[-1][0]
    (root / "Img" / name).unlink()
    with pytest.raises(BenchError, match="1 listed image\\(s\\) are missing") as error:
        load_inshop(root)
    assert str(root / "Img" / name) in str(error.value)


def test_missing_partition_names_the_path_and_the_layout(root: Path) -> None:
    path = root / "Eval" / "list_eval_partition.txt"
    path.unlink()
    with pytest.raises(BenchError) as error:
        load_inshop(root)
    message = str(error.value)
    assert f"{path} does not exist" in message
    assert "Expected layout: <root>/Eval/list_eval_partition.txt" in message
    assert "<root>/Img/img/" in message and "InShopRetrieval.html" in message


def test_row_count_on_line_1_must_match(root: Path) -> None:
    path = root / "Eval" / "list_eval_partition.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([str(len(ROWS) + 1), *lines[1:]]) + "\n")
    with pytest.raises(BenchError) as error:
        load_inshop(root)
    assert f"{path}:1: line 1 says {len(ROWS) + 1} rows but {len(ROWS)} follow" in str(error.value)


@pytest.mark.parametrize(
    ("line_no", "line", "expected_text"),
    [
        (1, "many", "'<number of rows>'"),
        (2, "image_name evaluation_status", "'image_name item_id evaluation_status'"),
    ],
)
def test_bad_header_lines(root: Path, line_no: int, line: str, expected_text: str) -> None:
    path = root / "Eval" / "list_eval_partition.txt"
    lines = path.read_text().splitlines()
    lines[line_no - 1] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BenchError) as error:
        load_inshop(root)
    assert f"{path}:{line_no}: expected {expected_text}" in str(error.value)
    assert f"got '{line}'" in str(error.value)


@pytest.mark.parametrize(
    ("file", "line"),
    [
        ("Eval/list_eval_partition.txt", "img/WOMEN/Denim/id_00000099/01_1_front.jpg id_00000099"),
        ("Eval/list_eval_partition.txt", "img/WOMEN/Denim/id_00000099/01_1_front.jpg 99 train"),
        ("Eval/list_eval_partition.txt", "img/WOMEN/x.jpg id_00000099 train extra"),
        ("Anno/attributes/list_attr_items.txt", "id_00000099 1 -1 0"),
        ("Anno/attributes/list_attr_items.txt", "id_00000099 1 -1 0 2"),
        ("Anno/attributes/list_attr_items.txt", "99 1 -1 0 1"),
    ],
)
def test_malformed_line_is_named_by_file_and_line(root: Path, file: str, line: str) -> None:
    path = root / file
    line_no = append_line(path, line)
    with pytest.raises(BenchError) as error:
        load_inshop(root)
    message = str(error.value)
    assert f"{path}:{line_no}: expected '" in message
    assert f"got '{line}'" in message and "Fix or re-extract the file." in message


def test_unknown_status_is_named(root: Path) -> None:
    path = root / "Eval" / "list_eval_partition.txt"
    line_no = append_line(path, f"{ROWS[0][0]}x {item_name(ROWS[0][1])} val")
    with pytest.raises(BenchError, match="with status train, query or gallery") as error:
        load_inshop(root)
    assert f"{path}:{line_no}:" in str(error.value)


def test_item_in_train_and_test_is_an_error(root: Path) -> None:
    rows = [*ROWS, (image_name(80, 8), 80, "gallery")]
    (root / "Img" / rows[-1][0]).write_bytes((root / "Img" / ROWS[0][0]).read_bytes())
    write_partition(root, rows)
    train_line = 3 + next(i for i, row in enumerate(ROWS) if row[1] == 80)
    with pytest.raises(BenchError) as error:
        load_inshop(root)
    message = str(error.value)
    assert f":{len(rows) + 2}: item id_00000080 is in gallery here and in train on line " in message
    assert f"line {train_line} (1 item(s) are in both)" in message


def test_queries_without_any_gallery_image_are_an_error(root: Path) -> None:
    rows = [row for row in ROWS if row[2] == "train" or row[1] in (300, 12)]
    rows = [row for row in rows if not (row[1] == 12 and row[2] == "query")]
    write_partition(root, rows)
    with pytest.raises(BenchError, match="none of the 1 query images has a gallery image"):
        load_inshop(root)


def test_conflicting_attribute_rows_name_both_lines(root: Path) -> None:
    path = root / "Anno" / "attributes" / "list_attr_items.txt"
    lines = path.read_text().splitlines()
    first = next(n for n, line in enumerate(lines, 1) if line.startswith(f"{item_name(5)} "))
    flipped = [-value if value else 1 for value in codes(5)]
    line_no = append_line(path, f"{item_name(5)} " + " ".join(map(str, flipped)))
    with pytest.raises(BenchError) as error:
        load_inshop(root)
    message = str(error.value)
    assert f"{path}:{line_no}: item id_00000005 has two different attribute rows" in message
    assert f"on lines {first} and {line_no}" in message and "'floral print'" in message


def test_attribute_row_count_may_count_rows_or_items(root: Path) -> None:
    path = root / "Anno" / "attributes" / "list_attr_items.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([str(len(lines) - 2), *lines[1:]]) + "\n")  # counts the rows
    assert load_inshop(root).attribute_names == NAMES
    path.write_text("\n".join(["3", *lines[1:]]) + "\n")
    with pytest.raises(BenchError, match=f"{path}:1: line 1 says 3 rows"):
        load_inshop(root)


def test_expected_counts_mismatch_says_found_and_expected(root: Path) -> None:
    counts = {"images": 29, "train": 13, "query": 8, "gallery": 8}
    assert len(load_inshop(root, expected_counts={**counts, "test_items": 6}).gallery) == 8
    with pytest.raises(BenchError) as error:
        load_inshop(root, expected_counts=INSHOP_COUNTS)
    message = str(error.value)
    assert "images: found 29, expected 52,712; train: found 13, expected 25,882" in message
    assert "train_items: found 6, expected 3,997; test_items: found 6, expected 3,985" in message


def test_spec_reads_the_inshop_folder_of_the_data_root(root: Path, tmp_path: Path) -> None:
    assert INSHOP_SPEC.task == "query-gallery"
    assert INSHOP_SPEC.recall_at == (1, 10, 20, 30, 40, 50)
    with pytest.raises(BenchError, match=re.escape(str(tmp_path / "inshop" / "Eval"))):
        INSHOP_SPEC.load(tmp_path)


@pytest.mark.parametrize(
    "file", ["Eval/list_eval_partition.txt", "Anno/attributes/list_attr_cloth.txt"]
)
def test_a_list_that_is_not_utf8_or_cannot_be_read_is_named(
    root: Path, file: str, unreadable
) -> None:
    path = root / file
    original = path.read_bytes()
    path.write_bytes(original.replace(b"\n", b"\ncaf\xe9 ", 1))
    with pytest.raises(BenchError) as error:
        load_inshop(root)
    assert str(error.value) == (
        f"{path}:2: not UTF-8 text (byte 0xe9 in column 4). Fix or re-extract the file."
    )
    path.write_bytes(original)
    unreadable(path)
    with pytest.raises(BenchError) as error:
        load_inshop(root)
    assert str(error.value) == f"{path}: cannot be read (Permission denied); check its permissions."
