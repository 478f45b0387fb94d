"""k-fold cross-validation: folds partition the training classes; the concatenated reading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.config import build_run_config
from benchmark.engine.folds import concatenated_figures, fold_config
from benchmark.engine.loop import validation_plan
from benchmark.engine.rescore import rescore
from benchmark.engine.run import RunOptions, execute
from benchmark.errors import BenchError

FAST = ("train.epochs=1", "train.iterations_per_epoch=2", "data.classes_per_batch=4")


def test_the_folds_partition_the_training_classes(registry, data_root):
    config = build_run_config(registry, method="ms", dataset="synth-cub", overrides=FAST)
    splits = registry.dataset("synth-cub").load(data_root)
    held = []
    for fold in range(4):
        protocol = fold_config(config, 4, fold).protocol
        assert protocol.to_json()["eval"]["validation"] == {"folds": 4, "fold": fold, "seed": 0}
        plan = validation_plan(protocol, splits, "retrieval")
        held.append(set(splits.train.labels[plan.query].tolist()))
    assert sorted(len(classes) for classes in held) == [12, 12, 13, 13]  # 50 classes
    assert set().union(*held) == set(splits.train.labels.tolist())
    assert sum(len(classes) for classes in held) == 50  # disjoint


def test_folds_need_a_validation_split(registry):
    config = build_run_config(
        registry, method="ms", dataset="synth-cub", overrides=FAST, select_on="test"
    )
    with pytest.raises(BenchError, match="--folds needs a protocol that selects on a validation"):
        fold_config(config, 4, 0)


def test_the_concatenation_of_one_model_with_itself_ranks_as_the_model(
    registry, data_root, tmp_path
):
    config = fold_config(
        build_run_config(registry, method="ms", dataset="synth-cub", overrides=FAST), 4, 1
    )
    result, path = execute(registry, config, RunOptions(data_root, tmp_path, "cpu", False))
    assert result["config"]["protocol"]["eval"]["validation"]["fold"] == 1
    doubled = concatenated_figures(registry, [path, path], data_root, "cpu")
    _, single = rescore(registry, path, data_root, "cpu")
    # Equal up to float rounding of the doubled dot products, which may reorder a near tie.
    tolerance = 2 / single["queries"]
    for name in ("recall@1", "recall@8", "map@r"):
        assert doubled[name] == pytest.approx(single[name], abs=tolerance), name


def test_bench_run_folds_prints_the_separated_and_concatenated_readings(data_root, tmp_path):
    from click.testing import CliRunner

    from benchmark.cli import cli

    args = ["run", "-p", "ms", "-d", "synth-cub", "--folds", "2", "--no-progress"]
    args += ["--data-root", str(data_root), "--results-dir", str(tmp_path), "--device", "cpu"]
    args += [f"--set={item}" for item in FAST]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("test (2 folds)"))
    table = lines[start:]
    assert [row.split()[0] for row in table[2:8]] == [
        "fold",
        "fold",
        "mean",
        "sd",
        "95%",
        "concatenated",
    ]
    (summary_path,) = (tmp_path / "synth-cub" / "ms" / "cross-validation").glob("*.json")
    summary = json.loads(summary_path.read_text())
    assert summary["folds"] == 2 and len(summary["fingerprints"]) == 2
    finals = [json.loads(p.read_text())["final"]["metrics"]["recall@1"]
              for p in sorted((tmp_path / "synth-cub" / "ms").glob("*.json"))]  # fmt: skip
    assert summary["separated"]["recall@1"]["mean"] == pytest.approx(np.mean(finals))
    assert f"{100 * summary['concatenated']['recall@1']:.2f}" in table[7]


def test_method_specific_figures_have_no_concatenated_reading():
    from benchmark.engine.folds import cross_validation_summary
    from benchmark.report import folds_table

    results = [
        {"fingerprint": f"{i}" * 64, "final": {"metrics": {"recall@1": r, "rerank@4/recall@1": r}}}
        for i, r in ((1, 0.5), (2, 0.7))
    ]
    keys = ["recall@1", "rerank@4/recall@1"]
    summary = cross_validation_summary(results, {"recall@1": 0.75, "queries": 10}, keys)
    assert summary["concatenated"] == {"recall@1": 0.75}
    assert summary["separated"]["recall@1"]["mean"] == pytest.approx(0.6)
    last = folds_table(results, summary).splitlines()[-1].split()
    assert last == ["concatenated", "75.00", "-"]


def test_folds_without_checkpoints_are_refused_before_any_run(tmp_path):
    from click.testing import CliRunner

    from benchmark.cli import cli

    args = ["run", "-p", "ms", "-d", "synth-cub", "--folds", "2", "--no-save-checkpoint"]
    result = CliRunner().invoke(cli, [*args, "--results-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--folds needs the fold models' checkpoints" in result.stderr
    assert list(tmp_path.iterdir()) == []
