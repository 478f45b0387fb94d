"""Leaderboards from hand-made result files: aggregation, separation, paper rows, staleness."""

from __future__ import annotations

import json
import math
import os
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
    write(folder, "pddm", make_result(method="pddm", recall=0.60, dataset="cub",
                                      protocol="std-dml-512", version=2))  # fmt: skip
    # The same figure off the dataset's protocol is never compared with the paper's.
    write(folder, "smoke", make_result(method="pddm", recall=0.9, dataset="cub", fingerprint="e"))
    document = build(registry, collect([folder]), tmp_path)["cub"]
    assert {row["method"] for row in document["paper"]} == {"ms", "pddm"}  # all methods' CUB
    (paper,) = [row for row in document["paper"] if row["method"] == "pddm"]
    assert paper["metrics"]["recall@1"] == 0.583
    assert all(row["difference"] == {} for row in document["paper"] if row["method"] == "ms")
    assert paper["difference"]["recall@1"] == pytest.approx(0.60 - 0.583)
    markdown = render_files({"cub": document})["cub.md"]
    assert "## Paper-reported figures (not reproduced here, not ranked)" in markdown
    assert "recall@1 +1.70 (std-dml-512 v2)" in markdown


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


# --- result files are untrusted input (they arrive in contributors' pull requests) -----------


def build_command(results: Path, out: Path):
    return CliRunner().invoke(cli, ["leaderboard", "build", "--results", results, "--out", out])


def test_a_dataset_name_cannot_write_outside_out(make_result, reseal, tmp_path):
    result = make_result()
    result["dataset"]["name"] = "../../pwned-board"
    path = write(tmp_path / "deep" / "results", "ms", reseal(result))
    outcome = build_command(tmp_path / "deep" / "results", tmp_path / "deep" / "boards")
    assert outcome.exit_code == 2
    assert f"{path}: invalid value at 'dataset.name': '../../pwned-board' does not match" in (
        outcome.stderr
    )
    assert list(tmp_path.rglob("pwned-board*")) == []


@pytest.mark.parametrize("link", ["file", "folder"])
def test_links_in_the_results_folder_are_refused_not_followed(make_result, tmp_path, link):
    results, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    write(results, "honest", make_result(seed=0))
    outside = write(elsewhere, "outside", make_result(seed=1, recall=0.99))
    if link == "file":
        linked = results / "synth-cub" / "ms" / "linked.json"
        linked.symlink_to(outside)
    else:
        linked = results / "synth-cub" / "linked"
        linked.symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(BenchError, match=f"{linked} is a symbolic link"):
        collect([results])


def test_a_hand_edited_figure_is_refused(make_result, tmp_path):
    results = tmp_path / "results"
    result = make_result()
    result["final"]["metrics"]["recall@1"] = 0.99
    path = write(results, "edited", result)
    outcome = build_command(results, tmp_path / "boards")
    assert outcome.exit_code == 2
    assert f"{path}: its content no longer matches its integrity hash" in outcome.stderr
    assert not (tmp_path / "boards").exists()


def test_a_result_without_integrity_is_refused_as_submit_refuses_it(make_result, tmp_path):
    result = make_result()
    del result["integrity"]
    path = write(tmp_path / "results", "unsealed", result)
    with pytest.raises(BenchError, match=f"{path}: no integrity hash; it was written by an older"):
        collect([tmp_path / "results"])


def test_check_also_verifies_integrity(make_result, results, tmp_path):
    out = tmp_path / "boards"
    assert build_command(results, out).exit_code == 0
    edited = results / "synth-cub" / "ms" / "ms-1.json"
    document = json.loads(edited.read_text())
    document["final"]["metrics"]["recall@1"] = 0.99
    edited.write_text(json.dumps(document))
    checked = CliRunner().invoke(cli, ["leaderboard", "check", "--results", results, "--out", out])
    assert checked.exit_code == 2 and "no longer matches its integrity hash" in checked.stderr


def test_one_configuration_and_seed_under_two_names_is_refused(registry, make_result, tmp_path):
    results = tmp_path / "results"
    later = write(results, "run", make_result(seed=4))
    first = write(results, "run-copy", make_result(seed=4))  # sorts before run.json
    with pytest.raises(BenchError) as error:
        build(registry, collect([results]), tmp_path)
    assert str(error.value) == (
        f"{later}: configuration {'a' * 12} seed 4 is also in {first}: one run counts once. "
        f"Remove one of the two files."
    )


def test_html_pipes_and_newlines_in_fields_reach_the_tables_escaped(registry, make_result,
                                                                    reseal, tmp_path):  # fmt: skip
    result = make_result(overrides=["<img src=x onerror=alert(1)>", "a|b\nc"])
    result["method"]["plugin_version"] = "</td><script>alert(1)</script>"
    results = write(tmp_path / "results", "evil", reseal(result)).parents[2]
    markdown = render_files(build(registry, collect([results]), tmp_path))["synth-cub.md"]
    assert "<img" not in markdown and "<script" not in markdown
    (row,) = [line for line in markdown.splitlines() if line.startswith("| 1 ")]
    assert "&lt;img src=x onerror=alert(1)&gt;, a\\|b c" in row
    assert "ms &lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in row
    header = markdown.splitlines()[markdown.splitlines().index(row) - 2]
    assert row.replace("\\|", "").count("|") == header.count("|")


def test_result_links_are_percent_encoded(registry, make_result, tmp_path):
    write(tmp_path / "results", "run (copy) #2", make_result())
    document = build(registry, collect([tmp_path / "results"]), tmp_path)["synth-cub"]
    assert document["tables"][0]["rows"][0]["results"] == [
        "results/synth-cub/ms/run%20%28copy%29%20%232.json"
    ]


def test_links_are_relative_to_out_not_to_the_working_directory(make_result, tmp_path, monkeypatch):
    write(tmp_path / "results", "run", make_result())
    monkeypatch.chdir(tmp_path)
    assert build_command(Path("results"), Path("site/boards")).exit_code == 0
    markdown = (tmp_path / "site" / "boards" / "synth-cub.md").read_text()
    assert "[1](../../results/synth-cub/ms/run.json)" in markdown


def test_a_dataset_no_plugin_registers_is_named(registry, make_result, tmp_path):
    path = write(tmp_path / "results", "run", make_result(dataset="mystery-birds"))
    with pytest.raises(BenchError) as error:
        build(registry, collect([tmp_path / "results"]), tmp_path)
    assert str(error.value) == (
        f"{path}: dataset 'mystery-birds' is not registered by any installed plugin, so its "
        f"metrics are not known. Install the plugin that registers it (`bench plugins` lists "
        f"those installed) and build again."
    )


def test_a_result_without_the_main_metric_is_named(registry, make_result, reseal, tmp_path):
    result = make_result()
    del result["final"]["metrics"]["recall@1"]
    path = write(tmp_path / "results", "run", reseal(result))
    with pytest.raises(BenchError, match=f"{path}: final.metrics has no 'recall@1', the main "):
        build(registry, collect([tmp_path / "results"]), tmp_path)


def test_a_future_schema_says_which_dmlbench_made_it(make_result, tmp_path):
    result = make_result()
    result.update(schema_version=2, environment={**result["environment"], "dmlbench": "7.3.0"})
    path = write(tmp_path / "results", "future", result)
    with pytest.raises(BenchError) as error:
        collect([tmp_path / "results"])
    assert str(error.value) == (
        f"{path}: made by dmlbench 7.3.0 (schema 2); this dmlbench (0.1.0) reads schema 1: "
        f"upgrade dmlbench to read it."
    )
    result["environment"]["dmlbench"] = "\x1b[2J"  # no terminal escape reaches the screen
    write(tmp_path / "results", "future", result)
    with pytest.raises(BenchError, match="future.json: made by a newer dmlbench .schema 2.; "):
        collect([tmp_path / "results"])


def test_deeply_nested_json_gets_a_clear_error(make_result, tmp_path):
    path = tmp_path / "results" / "synth-cub" / "ms" / "deep.json"
    path.parent.mkdir(parents=True)
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BenchError, match=f"{path}: JSON nested deeper than 64 levels"):
        collect([tmp_path / "results"])
    result = make_result()
    nested: dict = {}
    result["config"]["hparams"]["deep"] = nested
    for _ in range(100):
        nested["deeper"] = nested = {}
    path.write_text(json.dumps(result))
    with pytest.raises(BenchError, match=f"{path}: JSON nested deeper than 64 levels"):
        collect([tmp_path / "results"])


def test_an_oversized_result_file_is_refused_before_it_is_parsed(make_result, tmp_path):
    path = write(tmp_path / "results", "huge", make_result())
    with path.open("a") as handle:
        handle.write(" " * (16 << 20))
    with pytest.raises(BenchError, match=f"{path}: larger than 16 MiB; result files are"):
        collect([tmp_path / "results"])


def test_a_linked_table_under_out_is_neither_written_through_nor_taken_as_fresh(
    make_result, tmp_path
):
    results, out = tmp_path / "results", tmp_path / "boards"
    write(results, "run", make_result())
    assert build_command(results, out).exit_code == 0
    outside = tmp_path / "outside.md"
    outside.write_text((out / "synth-cub.md").read_text())
    (out / "synth-cub.md").unlink()
    (out / "synth-cub.md").symlink_to(outside)
    args = ["--results", results, "--out", out]
    checked = CliRunner().invoke(cli, ["leaderboard", "check", *args])
    assert checked.exit_code == 1 and "synth-cub.md" in checked.stderr
    built = build_command(results, out)
    assert built.exit_code == 2 and f"{out / 'synth-cub.md'} is a symbolic link" in built.stderr
    assert outside.read_text().startswith("# synth-cub")


def test_a_result_whose_names_disagree_is_refused(make_result, reseal, tmp_path):
    result = make_result()
    result["method"]["name"] = "sgml"  # ranked as sgml, filed under ms
    path = write(tmp_path / "results", "run", reseal(result))
    with pytest.raises(BenchError) as error:
        collect([tmp_path / "results"])
    assert str(error.value) == (
        f"{path}: config.method 'ms' and method.name 'sgml' differ; bench run writes the same "
        f"name in both."
    )


def test_unreadable_json_is_named(tmp_path):
    folder = tmp_path / "results" / "synth-cub" / "ms"
    folder.mkdir(parents=True)
    (folder / "latin1.json").write_bytes(b'{"method": "\xe9"}')
    with pytest.raises(BenchError, match=f"{folder / 'latin1.json'}: not valid JSON"):
        collect([tmp_path / "results"])
    (folder / "latin1.json").unlink()
    os.mkfifo(folder / "pipe.json")  # reading it would wait for a writer for ever
    with pytest.raises(BenchError, match=f"{folder / 'pipe.json'}: not a file."):
        collect([tmp_path / "results"])


def test_a_protocol_not_meant_for_the_dataset_gets_its_own_unranked_table(
    registry, make_result, tmp_path
):
    folder = tmp_path / "results"
    write(folder, "std", make_result(dataset="cub", protocol="std-dml-512", version=2,
                                     recall=0.60))  # fmt: skip
    write(folder, "smoke", make_result(dataset="cub", recall=0.95, fingerprint="b"))
    document = build(registry, collect([folder]), tmp_path)["cub"]
    keys = [(t["protocol"], t["standard"], [r["fingerprint"][0] for r in t["rows"]])
            for t in document["tables"]]  # fmt: skip
    # The higher figure of a small CNN on the wrong protocol does not outrank the standard run.
    assert keys == [("std-dml-512", True, ["a"]), ("cpu-smoke", False, ["b"])]
    markdown = render_files({"cub": document}, html=True)
    assert (
        "## cpu-smoke v3 (standard protocol), checkpoint chosen on the validation split "
        "— OFF-PROTOCOL for this dataset" in markdown["cub.md"]
    )
    assert "never ranked with them" in markdown["cub.md"]
    assert "OFF-PROTOCOL for this dataset, not ranked" in markdown["index.html"]


def test_an_older_result_without_protocol_datasets_is_standard_on_its_datasets_protocol(
    registry, make_result, reseal, tmp_path
):
    from benchmark.leaderboard import meant_for

    result = make_result()
    del result["config"]["protocol"]["datasets"]
    assert meant_for(registry, reseal(result))  # synth-cub's standard protocol is cpu-smoke
    result["config"]["dataset"] = result["dataset"]["name"] = "cub"
    assert not meant_for(registry, reseal(result))  # cub's is std-dml-512


def test_each_table_has_a_no_training_row_and_rows_below_it_are_flagged(
    registry, make_result, tmp_path
):
    folder = tmp_path / "results"
    for seed, untrained in enumerate((0.50, 0.54)):
        write(folder, f"ms-{seed}", make_result(seed=seed, recall=0.7, untrained=untrained))
    write(folder, "pddm", make_result(method="pddm", recall=0.4, untrained=0.52, fingerprint="b"))
    write(folder, "old", make_result(method="sgml", recall=0.6, fingerprint="c"))  # none recorded
    table = build(registry, collect([folder]), tmp_path)["synth-cub"]["tables"][0]
    flags = {row["method"]: row["below_untrained"] for row in table["rows"]}
    assert flags == {"ms": False, "sgml": False, "pddm": True}
    (untrained,) = table["untrained"]
    assert (untrained["backbone"], untrained["size"], untrained["runs"]) == (
        "convnet-small",
        "64-d",
        3,
    )
    assert untrained["metrics"]["recall@1"]["mean"] == pytest.approx(0.52)
    markdown = render_files({"synth-cub": {**build(registry, collect([folder]), tmp_path)[
        "synth-cub"]}}, html=True)  # fmt: skip
    lines = markdown["synth-cub.md"].splitlines()
    assert any(line.startswith("| 3   | pddm ⚠ below no training") for line in lines)
    (row,) = [line for line in lines if "no training " in line and "untrained network" in line]
    assert "| convnet-small | 64-d   | 52.00 ± 4.97 |" in row
    assert "pddm ⚠ below no training" in markdown["index.html"]
    assert '<tr class="untrained">' in markdown["index.html"]


def test_the_reproduce_command_names_the_datasets_own_protocol(registry):
    from benchmark.leaderboard import reproduce_command

    assert "--protocol std-hash " in reproduce_command(registry, "csq", "coco")
    assert "--protocol std-dml-512 " in reproduce_command(registry, "ms", "inshop")
    assert "--protocol cpu-smoke " in reproduce_command(registry, "ms", "synth-cub")
