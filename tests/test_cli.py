from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from benchmark.cli import cli
from benchmark.config import build_run_config


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_dry_run_prints_the_resolved_config_and_its_fingerprint(runner, registry):
    result = runner.invoke(
        cli,
        [
            "run",
            "--plugin",
            "ms",
            "--dataset",
            "synth-cub",
            "--dry-run",
            "--set",
            "train.epochs=2",
            "--seed",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    expected = build_run_config(
        registry, method="ms", dataset="synth-cub", seed=4, overrides=["train.epochs=2"]
    )
    assert document == {"fingerprint": expected.fingerprint, "config": expected.to_dict()}
    assert document["config"]["protocol"]["train"]["epochs"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--plugin", "mss", "--dataset", "synth-cub"],
            "Error: Unknown method plugin 'mss'. Did you mean 'ms'? Available: binomial, csq, ics, "
            "ms, pddm, pml-arcface, pml-circle, pml-contrastive, pml-cosface, pml-fastap, "
            "pml-lifted, pml-margin, pml-ms, pml-normsoftmax, pml-npairs, pml-ntxent, "
            "pml-proxyanchor, pml-proxynca, pml-softtriple, pml-supcon, pml-triplet, sgml.\n",
        ),
        (
            ["--plugin", "ms", "--dataset", "synth-cub", "--protocol", "smoke"],
            "Error: Unknown protocol 'smoke'. Did you mean 'cpu-smoke'? Available: cpu-smoke, "
            "sgml-cub, sgml-inshop, std-dml-128, std-dml-512, std-hash.\n",
        ),
        (
            ["--plugin", "ms", "--dataset", "synth-cub", "--set", "train.lr=0.1"],
            "Error: --set: unknown key 'train.lr'. Did you mean 'train.optimizer.lr'",
        ),
        (
            ["--plugin", "ms", "--dataset", "synth-cub", "--data-root", "/nonexistent/dmlbench"],
            "Error: Data root /nonexistent/dmlbench (from --data-root) does not exist or is not a "
            "folder: create it, or point --data-root at the folder holding the datasets.\n",
        ),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(runner, args, message):
    result = runner.invoke(cli, ["run", *args])
    assert result.exit_code == 2
    error = result.stderr[result.stderr.index("Error: ") :]  # after the protocol note, if any
    assert error.startswith(message)
    assert "Traceback" not in result.output


def test_bench_data_env_var_is_the_fallback_data_root(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "missing"))
    result = runner.invoke(cli, ["run", "-p", "ms", "-d", "synth-cub"])
    assert result.exit_code == 2
    assert f"Data root {tmp_path / 'missing'} (from $BENCH_DATA)" in result.stderr


def test_plugins_lists_versions_and_registrations(runner):
    result = runner.invoke(cli, ["plugins"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["plugin", "version", "source", "registers", "status"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert list(rows) == ["builtin", "ics", "ms", "pddm", "pml", "sgml"]  # entry points by name
    assert rows["ms"][:5] == ["ms", "0.1.0", "entry", "point", "bench_ms"]
    assert rows["ms"][-3:] == ["methods:", "ms", "ok"]
    assert (
        rows["sgml"][-6:]
        == ["methods:", "sgml,", "binomial;", "protocols:", "sgml-cub,", "sgml-inshop", "ok"][-6:]
    )
    assert (
        "datasets: cub, cars196, inshop, coco, synth-cub, synth-inshop, synth-coco; "
        "backbones: convnet-small, resnet18, resnet50, googlenet, bninception, timm; "
        "protocols: cpu-smoke, std-dml-128, "
        "std-dml-512, std-hash" in lines[2]
    )


def test_list_methods(runner):
    result = runner.invoke(cli, ["list", "methods"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["method", "tasks", "paper", "protocols", "plugin", "summary"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert [n for n in rows if not n.startswith("pml-")] == [
        "binomial", "csq", "ics", "ms", "pddm", "sgml",
    ]  # fmt: skip
    assert len([n for n in rows if n.startswith("pml-")]) == 16
    assert rows["ms"].split()[:5] == ["ms", "retrieval,", "query-gallery", "-", "ms"]
    assert rows["csq"].split()[:4] == ["csq", "hashing", "-", "ics"]
    assert "sgml-cub (cub), sgml-inshop (inshop)  sgml" in rows["sgml"]


def test_list_protocols_and_backbones(runner):
    protocols = runner.invoke(cli, ["list", "protocols"]).stdout.splitlines()
    assert protocols[2].split()[:3] == ["cpu-smoke", "4", "standard"]
    backbones = runner.invoke(cli, ["list", "backbones"]).stdout.splitlines()
    assert [line.split()[0] for line in backbones[2:]] == [
        "bninception", "convnet-small", "googlenet", "resnet18", "resnet50", "timm",
    ]  # fmt: skip
    assert backbones[5].split()[1:3] == ["imagenet", "builtin"]


def test_list_rejects_an_unknown_kind(runner):
    result = runner.invoke(cli, ["list", "losses"])
    assert result.exit_code == 2
    assert "Invalid value for '{datasets|methods|backbones|protocols}'" in result.stderr


def test_run_reports_each_evaluation_and_ends_with_a_table(runner, data_root, tmp_path):
    fast = ["train.epochs=1", "train.iterations_per_epoch=2", "data.classes_per_batch=4"]
    args = ["run", "-p", "ms", "-d", "synth-cub", "--data-root", str(data_root), "--device", "cpu"]
    args += ["--results-dir", str(tmp_path)] + [f"--set={item}" for item in fast]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    progress = re.findall(r"epoch +\d+ \(iteration \d+\) \w+: [^\r\n]*", result.stderr)
    assert [line.split(":")[0] for line in progress[:2]] == [
        "epoch   0 (iteration 0) validation",
        "epoch   1 (iteration 2) validation",
    ]
    assert re.match(r"epoch   [01] \(iteration [02]\) test", progress[2]) and len(progress) == 3
    assert "R@1 " in progress[0] and "loss " in progress[1] and "loss " not in progress[0]
    table = result.stdout.splitlines()
    assert table[0].split() == [
        "split", "epoch", "iteration", "loss", "R@1", "R@2", "R@4", "R@8", "MAP@R", "R-PRECISION",
    ]  # fmt: skip
    assert [row.split()[:3] for row in table[2:4]] == [
        ["validation", "0", "0"],
        ["validation", "1", "2"],
    ]
    assert table[4].split()[0] == "test"
    assert table[5].startswith("test figures: weights of epoch ")
    assert table[5].endswith(", the best on the validation split")
    (written,) = (tmp_path / "synth-cub" / "ms").glob("*.json")
    assert table[-1] == f"Result written to {written}"
