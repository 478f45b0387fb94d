"""Leaderboards from hand-made result files: aggregation, separation, paper rows, staleness."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmark.cli import cli
from benchmark.errors import BenchError
from benchmark.leaderboard import build, collect, render_files, stale_files, write_files


def write(folder: Path, name: str, result: dict) -> Path:
    path = folder / result["config"]["dataset"] / result["method"]["name"] / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return path


@pytest.fixture()
def results(make_result, tmp_path):
    folder = tmp_path / "results"
    for seed, recall in enumerate((0.60, 0.62, 0.64)):
        write(folder, f"ms-{seed}", make_result(seed=seed, recall=recall))
    write(folder, "sgml", make_result(method="sgml", recall=0.7, fingerprint="b"))
    write(folder, "old", make_result(recall=0.9, version=2, fingerprint="c"))
    write(folder, "peek", make_result(recall=0.95, selection="test", fingerprint="d"))
    return folder


def test_seeds_of_one_configuration_are_aggregated_with_a_t_interval(registry, results):
    document = build(registry, collect([results]), results.parent)["synth-cub"]
    current = document["tables"][0]
    assert (current["protocol"], current["version"], current["selection"]) == (
        "cpu-smoke",
        3,
        "validation",
    )
    assert [row["method"] for row in current["rows"]] == ["sgml", "ms"]  # by recall@1
    ms = current["rows"][1]
    assert ms["seeds"] == [0, 1, 2] and ms["metrics"]["recall@1"]["n"] == 3
    assert ms["metrics"]["recall@1"]["mean"] == pytest.approx(0.62)
    assert ms["metrics"]["recall@1"]["ci95"] == pytest.approx(4.302653 * 0.02 / math.sqrt(3))
    assert ms["hours"] == {"CPU": 1.5}  # 3 x 1,800 s
    assert ms["results"] == [f"results/synth-cub/ms/ms-{seed}.json" for seed in range(3)]


def test_protocol_versions_and_selection_rules_never_share_a_ranking(registry, results):
    document = build(registry, collect([results]), results.parent)["synth-cub"]
    keys = [(t["version"], t["selection"], [r["method"] for r in t["rows"]])
            for t in document["tables"]]  # fmt: skip
    # Test-selected results come last, in their own table, whatever their figures.
    assert keys == [(3, "validation", ["sgml", "ms"]), (2, "validation", ["ms"]),
                    (3, "test", ["ms"])]  # fmt: skip
    markdown = render_files({"synth-cub": document})["synth-cub.md"]
    assert "## cpu-smoke v3 (standard protocol), checkpoint chosen ON THE TEST SPLIT" in markdown
    assert "| 1   | ms       | defaults   | ms 0.1.0 |" in markdown
    assert "62.00 ± 4.97" in markdown


def test_paper_figures_are_listed_apart_with_the_difference(registry, make_result, tmp_path):
    folder = tmp_path / "results"
    write(folder, "pddm", make_result(method="pddm", recall=0.60, dataset="cub"))
    document = build(registry, collect([folder]), tmp_path)["cub"]
    assert {row["method"] for row in document["paper"]} == {"ms", "pddm"}  # all methods' CUB
    (paper,) = [row for row in document["paper"] if row["method"] == "pddm"]
    assert paper["metrics"]["recall@1"] == 0.583
    assert all(row["difference"] == {} for row in document["paper"] if row["method"] == "ms")
    assert paper["difference"]["recall@1"] == pytest.approx(0.60 - 0.583)
    markdown = render_files({"cub": document})["cub.md"]
    assert "## Paper-reported figures (not reproduced here, not ranked)" in markdown
    assert "recall@1 +1.70 (cpu-smoke v3)" in markdown


def test_a_broken_result_file_is_named(registry, results):
    broken = results / "synth-cub" / "ms" / "ms-1.json"
    document = json.loads(broken.read_text())
    document["final"]["selection"] = "best"
    broken.write_text(json.dumps(document))
    with pytest.raises(BenchError, match=f"{broken}: invalid value at 'final.selection'"):
        collect([results])


def test_check_passes_on_fresh_tables_and_fails_on_stale_ones(registry, results, tmp_path):
    out = tmp_path / "leaderboards"
    files = render_files(build(registry, collect([results]), out))
    write_files(files, out)
    assert stale_files(files, out) == []
    runner = CliRunner()
    args = ["--results", str(results), "--out", str(out)]
    assert runner.invoke(cli, ["leaderboard", "check", *args]).exit_code == 0
    (out / "synth-cub.md").write_text("typed by hand\n")
    (out / "orphan.json").write_text("{}")
    result = runner.invoke(cli, ["leaderboard", "check", *args])
    assert result.exit_code == 1
    assert "Stale leaderboard files" in result.stderr
    assert "orphan.json, synth-cub.md" in result.stderr
    rebuilt = runner.invoke(cli, ["leaderboard", "build", *args])
    assert rebuilt.exit_code == 0 and "synth-cub.md" in rebuilt.stdout
    assert (out / "synth-cub.md").read_text() == files["synth-cub.md"]


def test_datasets_with_papers_figures_get_a_page_with_the_command_that_fills_it(registry, results):
    documents = build(registry, collect([results]), results.parent)
    assert set(documents) == {"cars196", "coco", "cub", "inshop", "synth-cub"}
    coco = render_files(documents)["coco.md"]
    assert "No reproduced result yet" in coco
    assert "bench run --plugin csq --dataset coco --protocol std-hash --seeds 3" in coco
    assert "| csq      | ResNet-50, 16 bits, mAP@5000 | 79.6" in coco
