from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.cli import cli
from benchmark.config import build_run_config
from benchmark.data.datasets.synth import SYNTH_CUB_SPEC
from benchmark.engine.run import RunOptions, execute
from benchmark.results import split_fingerprint


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_info_describes_source_layout_and_official_split(runner):
    result = runner.invoke(cli, ["data", "info", "cub"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("cub: CUB-200-2011 birds")
    assert lines[1:3] == ["task: retrieval", "recall@K: 1, 2, 4, 8"]
    assert lines[4].startswith("layout: <data_root>/cub/CUB_200_2011/{images/, images.txt")
    assert lines[5] == (
        "official split: images 11,788, train 5,864, query 5,924, gallery 5,924, classes 200"
    )


def test_info_of_an_unknown_dataset_suggests_names(runner):
    result = runner.invoke(cli, ["data", "info", "car196"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: Unknown dataset 'car196'. Did you mean 'cars196'")


def test_check_reports_counts_and_the_split_fingerprint(runner, data_root):
    result = runner.invoke(cli, ["data", "check", "synth-cub", "--root", str(data_root), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    splits = SYNTH_CUB_SPEC.load(data_root)
    assert report["counts"] == {
        "train": len(splits.train),
        "query": len(splits.query),
        "gallery": len(splits.gallery),
        "classes": 100,
        "images": len(splits.train) + len(splits.query),
    }
    assert report["split_fingerprint"] == split_fingerprint(splits, data_root)
    assert report["bad_images"] == []


def test_check_lists_unreadable_images_and_exits_1(runner, data_root, tmp_path):
    shutil.copytree(data_root / "synth-cub", tmp_path / "synth-cub")
    images = sorted((tmp_path / "synth-cub" / "CUB_200_2011" / "images").rglob("*.jpg"))
    images[1].write_bytes(b"not a jpeg")
    result = runner.invoke(cli, ["data", "check", "synth-cub", "--root", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[2] == "1 missing or unreadable images:"
    assert lines[3].startswith(f"  {images[1]}: unreadable (UnidentifiedImageError")
    assert lines[-1] == "FAILED"
    images[0].unlink()  # a generated dataset missing a file is to be generated again
    result = runner.invoke(cli, ["data", "check", "synth-cub", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: The generated dataset synth-cub in {tmp_path / 'synth-cub'} is damaged: delete "
        f"that folder and run again to regenerate it. ({images[0]} is missing.)\n"
    )


def test_check_lists_the_missing_images_of_a_dataset(tmp_path):
    from PIL import Image

    from benchmark.data.check import check_dataset
    from benchmark.specs import DatasetSpec, ImageSet, Splits

    Image.new("RGB", (4, 4)).save(tmp_path / "here.png")
    images = ImageSet((tmp_path / "here.png", tmp_path / "gone.png"), np.array([0, 1]))
    spec = DatasetSpec("tiny", "", "retrieval", load=lambda root: Splits(images, images, images))
    report = check_dataset(spec, tmp_path)
    assert report.bad_images == [f"{tmp_path / 'gone.png'}: missing"]
    assert report.counts["images"] == 2


def test_check_of_an_absent_dataset_names_the_path(runner, tmp_path):
    result = runner.invoke(cli, ["data", "check", "cars196", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert str(tmp_path / "cars196") in result.stderr
    assert "Traceback" not in result.output


def test_prepare_coco_writes_the_three_lists(runner, tmp_path):
    annotations = []
    for part, first in (("train2014", 1), ("val2014", 100)):
        images = [
            {"id": i, "file_name": f"COCO_{part}_{i:012d}.jpg"} for i in range(first, first + 6)
        ]
        notes = [
            {"id": i, "image_id": i, "category_id": 1 + i % 2, "iscrowd": 0}
            for i in range(first, first + 6)
        ]
        categories = [{"id": 1, "name": "zebra"}, {"id": 2, "name": "apple"}]
        path = tmp_path / f"instances_{part}.json"
        path.write_text(
            json.dumps({"images": images, "annotations": notes, "categories": categories})
        )
        annotations += ["--annotations", str(path)]
    result = runner.invoke(
        cli,
        [
            "data",
            "prepare",
            "coco",
            *annotations,
            "--queries",
            "3",
            "--train",
            "4",
            "--root",
            str(tmp_path / "data"),  # created, as it is missing
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Wrote train.txt, test.txt and database.txt to {tmp_path / 'data' / 'coco'}"
        " (train 4, query 3, database 9).\n"
    )
    lines = (tmp_path / "data" / "coco" / "test.txt").read_text().splitlines()
    assert lines[0].startswith("# dmlbench ") and '"categories": ["apple", "zebra"]' in lines[0]
    assert len(lines) == 4 and all(len(line.split()) == 3 for line in lines[1:])


def test_a_prepared_cache_is_used_and_evaluates_like_the_plain_pipeline(
    runner, registry, data_root, tmp_path
):
    shutil.copytree(data_root / "synth-cub", tmp_path / "synth-cub")
    fast = ("train.epochs=1", "train.iterations_per_epoch=2", "data.classes_per_batch=4")
    config = build_run_config(registry, method="ms", dataset="synth-cub", overrides=fast)
    options = RunOptions(tmp_path, tmp_path / "results", "cpu", False, False)
    plain, _ = execute(registry, config, options)
    result = runner.invoke(cli, ["data", "cache", "synth-cub", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Prepared synth-cub at 64 px in ")
    assert (tmp_path / ".prepared" / "synth-cub" / "resize64" / "train" / "images.npy").exists()
    prepared, _ = execute(registry, config, options)
    assert (plain["dataset"]["pipeline"], prepared["dataset"]["pipeline"]) == ("plain", "prepared")
    assert prepared["evaluations"][0]["metrics"] == plain["evaluations"][0]["metrics"]
    assert prepared["evaluations"][2]["train"]["loss"] > 0


def test_check_decodes_each_image_whole_and_refuses_oversized_ones(
    runner, data_root, tmp_path, monkeypatch
):
    from PIL import Image

    shutil.copytree(data_root / "synth-cub", tmp_path / "synth-cub")
    images = sorted((tmp_path / "synth-cub" / "CUB_200_2011" / "images").rglob("*.jpg"))
    whole = images[0].read_bytes()
    images[0].write_bytes(whole[: len(whole) // 2])  # Image.verify() passes this one
    Image.new("RGB", (100, 100)).save(images[1])
    # 100 x 100 is above the limit but below twice it, where PIL only warns and decodes.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 8000)
    result = runner.invoke(cli, ["data", "check", "synth-cub", "--root", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[2] == "2 missing or unreadable images:"
    assert lines[3].startswith(f"  {images[0]}: unreadable (OSError: image file is truncated")
    assert lines[4] == (
        f"  {images[1]}: unreadable (it has 10,000 pixels, more than PIL's limit of 8,000 "
        "(PIL.Image.MAX_IMAGE_PIXELS): a possible decompression bomb, refused)"
    )
