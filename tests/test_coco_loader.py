"""The MS-COCO hashing lists: the reader on tiny list files, and the builder on tiny JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.datasets.coco import (
    COCO_BUILDER,
    COCO_COUNTS,
    COCO_SPEC,
    build_coco_split,
    coco_category_names,
    draw_split,
    load_coco,
    write_coco_lists,
)
from benchmark.errors import BenchError

CATEGORIES = ("bicycle", "dining table", "person", "zebra")  # a name with a space, as in COCO
TRAIN_NAME, VAL_NAME = "train2014/COCO_train2014_{:012d}.jpg", "val2014/COCO_val2014_{:012d}.jpg"
DATABASE = [
    (TRAIN_NAME.format(9), [1, 0, 1, 0]),
    (TRAIN_NAME.format(25), [0, 0, 0, 1]),
    (VAL_NAME.format(42), [0, 1, 1, 0]),
    (TRAIN_NAME.format(73), [1, 1, 1, 1]),
    (VAL_NAME.format(74), [0, 0, 1, 0]),
]
QUERIES = [(VAL_NAME.format(136), [0, 1, 0, 0]), (TRAIN_NAME.format(164), [1, 0, 0, 1])]
TRAIN = [DATABASE[3], DATABASE[0], DATABASE[4]]  # drawn from the database, in its own order
LISTS = {"train.txt": TRAIN, "test.txt": QUERIES, "database.txt": DATABASE}
HEADER = "# dmlbench " + json.dumps({"builder": "someone", "seed": 7, "categories": CATEGORIES})


def list_line(path: str, labels: list[int]) -> str:
    return f"{path} {' '.join(map(str, labels))}"


def write_list(path: Path, rows: list[tuple[str, list[int]]], header: str | None = HEADER) -> None:
    lines = ([header] if header else []) + [list_line(*row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def write_images(root: Path, names: list[str]) -> None:
    for index, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (index * 20 % 256, 0, 0)).save(root / name)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_images(tmp_path, [path for path, _ in DATABASE + QUERIES])
    for name, rows in LISTS.items():
        write_list(tmp_path / name, rows)
    return tmp_path


def replace_line(path: Path, line_no: int, line: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = line
    path.write_text("\n".join(lines) + "\n")


# --- reading ---------------------------------------------------------------------------------


def test_lists_become_train_query_and_gallery(root: Path) -> None:
    splits = load_coco(root)
    for image_set, rows in ((splits.train, TRAIN), (splits.query, QUERIES)):
        assert image_set.paths == tuple(root / path for path, _ in rows)
        assert image_set.labels.dtype == np.int64
        assert image_set.labels.tolist() == [labels for _, labels in rows]
    assert splits.gallery.labels.shape == (5, 4)
    assert splits.gallery.paths == tuple(root / path for path, _ in DATABASE)
    assert splits.attribute_names == CATEGORIES
    assert splits.train.attributes is None


def test_lists_without_header_have_no_names(root: Path) -> None:
    for name, rows in LISTS.items():
        write_list(root / name, rows, header=None)
    splits = load_coco(root)
    assert splits.attribute_names == ()
    assert splits.query.labels.tolist() == [labels for _, labels in QUERIES]


@pytest.mark.parametrize("prefix", ["data/coco/", "COCO_2014/"])  # CSQ's; any missing folder
def test_leading_folders_that_are_not_there_are_dropped(root: Path, prefix: str) -> None:
    write_list(root / "test.txt", [(prefix + path, labels) for path, labels in QUERIES])
    assert load_coco(root).query.paths == tuple(root / path for path, _ in QUERIES)


def test_absolute_paths_say_how_to_rewrite_them(root: Path) -> None:
    hashnet = "/home/caozhangjie/run-czj/dataset/coco/"
    write_list(root / "database.txt", [(hashnet + path, labels) for path, labels in DATABASE])
    with pytest.raises(BenchError, match="database.txt:2: image path /home/") as error:
        load_coco(root)
    assert f"sed -i 's#^{hashnet}##' train.txt test.txt database.txt" in str(error.value)


def test_count_check_applies_to_our_builders_lists_only(root: Path) -> None:
    standard = {"query": 5000, "database": 117218}
    assert len(load_coco(root, expected_counts=standard).query) == 2  # "someone" built these
    ours = HEADER.replace('"someone"', json.dumps(COCO_BUILDER))
    for name, rows in LISTS.items():
        write_list(root / name, rows, header=ours)
    with pytest.raises(BenchError, match=r"2 queries and 7 images .* has 5,000 and 122,218"):
        load_coco(root, expected_counts=standard)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            list_line(TRAIN_NAME.format(25), [1, 0, 1]),
            r"database.txt:3: expected 5 fields \(an image path and 4 labels, each 0 or 1, as in "
            "the header of",
        ),
        (list_line(TRAIN_NAME.format(25), [1, 0, 2, 0]), r"database.txt:3: label column 2 \("),
        (TRAIN_NAME.format(25) + " 1 0 10 0", r"label column 2 \(person\) is '10'"),
        (
            list_line(TRAIN_NAME.format(25), [0, 0, 0, 0]),
            "database.txt:3: image .* has no label .* The standard protocol drops such images",
        ),
        (
            list_line(TRAIN_NAME.format(73), [1, 1, 1, 1]),
            r"database.txt:5: .* listed twice \(also on line 3\)",
        ),
    ],
)
def test_bad_lines_are_named_by_file_and_line(root: Path, line: str, message: str) -> None:
    replace_line(root / "database.txt", 3, line)
    with pytest.raises(BenchError, match=message):
        load_coco(root)


def test_label_width_must_agree_across_the_files(root: Path) -> None:
    write_list(root / "train.txt", TRAIN, header=None)
    write_list(root / "database.txt", DATABASE, header=None)
    wider = [(path, labels + [0]) for path, labels in QUERIES]
    write_list(root / "test.txt", wider, header=None)
    with pytest.raises(BenchError, match=r"test.txt:1: expected 5 fields .* as in .*train.txt:1"):
        load_coco(root)


def test_expected_classes_fix_the_width(root: Path) -> None:
    message = r"train.txt:1: the header names 4 categories; expected 80, as in expected_counts"
    with pytest.raises(BenchError, match=message):
        load_coco(root, expected_counts={"classes": 80})
    with pytest.raises(BenchError, match="unknown key.* images"):
        load_coco(root, expected_counts={"images": 3})


def test_missing_list_names_the_path_and_the_layout(root: Path) -> None:
    (root / "database.txt").unlink()
    with pytest.raises(BenchError, match="Expected layout: <root>/train.txt") as error:
        load_coco(root)
    assert f"{root / 'database.txt'} does not exist" in str(error.value)
    with pytest.raises(BenchError, match=f"{root / 'coco' / 'train.txt'} does not exist"):
        COCO_SPEC.load(root)


def test_missing_image_and_shared_query_are_errors(root: Path) -> None:
    write_list(root / "database.txt", DATABASE + QUERIES[1:])
    with pytest.raises(BenchError, match=r"test.txt:3: query .*164.jpg is also in .*database"):
        load_coco(root)
    (root / DATABASE[2][0]).unlink()
    with pytest.raises(BenchError, match=r"database.txt:4: 1 listed image\(s\) are missing"):
        load_coco(root)


def test_headers_from_two_builds_are_an_error(root: Path) -> None:
    write_list(root / "test.txt", QUERIES, header=HEADER.replace('"seed": 7', '"seed": 8'))
    with pytest.raises(BenchError, match="headers differ"):
        load_coco(root)


def test_spec_is_the_standard_protocol() -> None:
    assert (COCO_SPEC.task, COCO_SPEC.top_k, COCO_SPEC.recall_at) == ("hashing", 5000, ())
    assert (
        COCO_SPEC.counts
        == COCO_COUNTS
        == {
            "query": 5000,
            "database": 117218,
            "train": 10000,
            "classes": 80,
        }
    )


# --- building from the annotation JSON -------------------------------------------------------

CATEGORY_IDS = {1: "person", 3: "car", 18: "dog", 44: "bottle", 90: "toothbrush"}
BY_NAME = ["bottle", "car", "dog", "person", "toothbrush"]
BY_ID = ["person", "car", "dog", "bottle", "toothbrush"]
CROWD_ONLY = 14  # an image whose only annotation is a crowd one: it is kept
IMAGE_IDS = {"train2014": range(1, 31), "val2014": range(101, 111)}


def image_categories(image_id: int) -> list[int]:
    """Every 7th image has none; the others one or two categories."""
    if image_id % 7 == 0:
        return [90] if image_id == CROWD_ONLY else []
    ids = list(CATEGORY_IDS)
    return sorted({ids[image_id % 5], ids[image_id * 3 % 4]})


def file_name(folder: str, image_id: int) -> str:
    return f"COCO_{folder}_{image_id:012d}.jpg"


def write_instances(folder: Path, part: str) -> Path:
    images = [{"id": i, "file_name": file_name(part, i), "width": 4} for i in IMAGE_IDS[part]]
    annotations = [
        {"id": len(images) * 10 + k, "image_id": i, "category_id": c, "iscrowd": int(c == 90)}
        for i in IMAGE_IDS[part]
        for k, c in enumerate(image_categories(i))
    ]
    categories = [{"id": i, "name": name, "supercategory": "x"} for i, name in CATEGORY_IDS.items()]
    path = folder / f"instances_{part}.json"
    data = {"images": images, "annotations": annotations, "categories": categories[::-1]}
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def annotations(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "annotations"
    folder.mkdir()
    return [write_instances(folder, part) for part in IMAGE_IDS]


def expected_pool(columns: list[str]) -> dict[str, list[int]]:
    ids = {name: i for i, name in CATEGORY_IDS.items()}
    return {
        f"{part}/{file_name(part, i)}": [int(ids[name] in image_categories(i)) for name in columns]
        for part, image_ids in IMAGE_IDS.items()
        for i in image_ids
        if image_categories(i)
    }


def as_dict(split: dict) -> dict[str, dict[str, list[int]]]:
    return {key: dict(rows) for key, rows in split.items()}


def test_pool_is_the_annotated_images_crowd_ones_included(annotations: list[Path]) -> None:
    split = build_coco_split(annotations, queries=6, train=10)
    pool = {**dict(split["query"]), **dict(split["database"])}
    assert pool == expected_pool(BY_NAME)
    assert len(pool) == 40 - 5 + 1  # 5 images without a category, 1 of them with a crowd one
    assert f"train2014/{file_name('train2014', CROWD_ONLY)}" in pool
    assert (len(split["query"]), len(split["database"]), len(split["train"])) == (6, 30, 10)


def test_columns_are_sorted_by_name_or_by_id(annotations: list[Path]) -> None:
    assert coco_category_names(annotations) == BY_NAME
    assert coco_category_names(annotations, order="id") == BY_ID
    by_id = build_coco_split(annotations, queries=6, train=10, order="id")
    assert dict(by_id["query"] + by_id["database"]) == expected_pool(BY_ID)
    with pytest.raises(BenchError, match="order='size'"):
        build_coco_split(annotations, order="size")  # type: ignore[arg-type]


def test_split_is_disjoint_nested_and_seeded(annotations: list[Path]) -> None:
    split = as_dict(build_coco_split(annotations, seed=3, queries=6, train=10))
    assert not split["query"].keys() & split["database"].keys()
    assert split["train"].keys() <= split["database"].keys()
    again = build_coco_split(annotations[::-1], seed=3, queries=6, train=10)
    assert as_dict(again) == split and list(as_dict(again)["database"]) == list(split["database"])
    other = as_dict(build_coco_split(annotations, seed=4, queries=6, train=10))
    assert other["query"].keys() != split["query"].keys()


def test_too_few_images_and_bad_sizes_are_errors(annotations: list[Path]) -> None:
    with pytest.raises(BenchError, match="only 27 images have a category"):
        build_coco_split(annotations[:1], queries=20, train=10)
    with pytest.raises(BenchError, match="cannot split 3 images"):
        draw_split([("a", [1]), ("b", [1]), ("c", [1])], seed=0, queries=0, train=1)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda data: data.pop("categories"), "the top level has no 'categories' key"),
        (lambda data: data["images"][3].pop("file_name"), r"images\[3\] has no 'file_name'"),
        (
            lambda data: data["annotations"][2].pop("category_id"),
            r"annotations\[2\] has no 'category_id' key",
        ),
        (
            lambda data: data["annotations"][0].update(category_id=5),
            r"annotations\[0\] refers to image_id 101 / category_id 5",
        ),
    ],
)
def test_malformed_json_names_the_file_and_the_key(annotations: list[Path], edit, message) -> None:
    data = json.loads(annotations[1].read_text())
    edit(data)
    annotations[1].write_text(json.dumps(data))
    with pytest.raises(BenchError, match=message) as error:
        build_coco_split(annotations, queries=6, train=10)
    assert str(annotations[1].resolve()) in str(error.value)


def test_unreadable_or_misnamed_files_are_errors(annotations: list[Path], tmp_path: Path) -> None:
    annotations[0].write_text('{"images": [')
    with pytest.raises(BenchError, match="instances_train2014.json: not valid JSON"):
        build_coco_split(annotations)
    renamed = annotations[1].rename(tmp_path / "val.json")
    with pytest.raises(BenchError, match="expected instances_<folder>.json"):
        build_coco_split([renamed])
    with pytest.raises(BenchError, match="missing.json does not exist"):
        build_coco_split([tmp_path / "missing.json"])


def test_written_lists_read_back(annotations: list[Path], tmp_path: Path) -> None:
    split = build_coco_split(annotations, seed=3, queries=6, train=10)
    target = tmp_path / "coco"
    write_coco_lists(split, target, coco_category_names(annotations), seed=3)
    assert sorted(p.name for p in target.iterdir()) == ["database.txt", "test.txt", "train.txt"]
    header = json.loads((target / "test.txt").read_text().splitlines()[0][len("# dmlbench ") :])
    assert header == {"builder": COCO_BUILDER, "seed": 3, "categories": BY_NAME}
    write_images(target, [path for path, _ in split["query"] + split["database"]])
    splits = load_coco(target)
    assert splits.attribute_names == tuple(BY_NAME)
    for image_set, key in ((splits.train, "train"), (splits.query, "query")):
        assert image_set.paths == tuple(target / path for path, _ in split[key])
        assert image_set.labels.tolist() == [labels for _, labels in split[key]]
    assert splits.gallery.labels.tolist() == [labels for _, labels in split["database"]]
    with pytest.raises(BenchError, match="6 queries and 36 images"):
        load_coco(target, expected_counts=COCO_COUNTS | {"classes": 5})


def test_write_rejects_a_leaky_split(tmp_path: Path) -> None:
    split = {"train": DATABASE[:1], "query": QUERIES + DATABASE[:1], "database": DATABASE}
    with pytest.raises(BenchError, match="query and database share images"):
        write_coco_lists(split, tmp_path, CATEGORIES, seed=0)
    with pytest.raises(BenchError, match="label lengths"):
        write_coco_lists({**split, "query": QUERIES}, tmp_path, CATEGORIES[:3], seed=0)
    unlabelled = {**split, "query": QUERIES + [(VAL_NAME.format(5), [0, 0, 0, 0])]}
    with pytest.raises(BenchError, match="labels of val2014/COCO_val2014_000000000005.jpg are"):
        write_coco_lists(unlabelled, tmp_path, CATEGORIES, seed=0)
    assert not list(tmp_path.iterdir())


def test_a_list_that_is_not_utf8_or_cannot_be_read_is_named(root: Path, unreadable) -> None:
    path = root / "train.txt"
    line_no = len(path.read_bytes().splitlines()) + 1
    path.write_bytes(path.read_bytes() + b"train2014/caf\xe9.jpg 1 0 0 0\n")
    with pytest.raises(BenchError) as error:
        load_coco(root)
    assert str(error.value) == (
        f"{path}:{line_no}: not UTF-8 text (byte 0xe9 in column 14). Save it as UTF-8, or "
        "rebuild the lists with `bench data prepare coco`."
    )
    unreadable(root / "test.txt")
    write_list(path, TRAIN)
    with pytest.raises(BenchError) as error:
        load_coco(root)
    assert str(error.value) == (
        f"{root / 'test.txt'}: cannot be read (Permission denied); check its permissions."
    )


def test_annotations_that_are_not_utf8_or_cannot_be_read_are_named(
    annotations: list[Path], unreadable
) -> None:
    path = annotations[0]
    path.write_bytes(b'{"images": [],\n "info": "caf\xe9"}')
    with pytest.raises(BenchError) as error:
        build_coco_split(annotations)
    assert str(error.value) == (
        f"{path.resolve()}:2: not UTF-8 text (byte 0xe9 in column 14). Download it again."
    )
    unreadable(annotations[1].resolve())
    with pytest.raises(BenchError) as error:
        build_coco_split(annotations[1:])
    assert str(error.value) == (
        f"{annotations[1].resolve()}: cannot be read (Permission denied); check its permissions."
    )
