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
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(runner, args, message):
    result = runner.invoke(cli, ["run", *args])
    assert result.exit_code == 2
    error = result.stderr[result.stderr.index("Error: ") :]  # after the protocol note, if any
    assert error.startswith(message)
    assert "Traceback" not in result.output


def test_a_missing_data_root_is_named_by_the_datasets_loader(runner, tmp_path):
    root = tmp_path / "nowhere"
    result = runner.invoke(cli, ["run", "-p", "ms", "-d", "cub", "--data-root", str(root)])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1].startswith(
        f"Error: CUB-200-2011 not found: neither {root / 'cub' / 'images.txt'} nor "
    )
    assert "Traceback" not in result.output and not root.exists()


def test_bench_data_env_var_is_the_fallback_data_root(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "missing"))
    result = runner.invoke(cli, ["run", "-p", "ms", "-d", "cub"])
    assert result.exit_code == 2
    assert f"neither {tmp_path / 'missing' / 'cub' / 'images.txt'} nor" in result.stderr
    assert not (tmp_path / "missing").exists()  # only a generated dataset creates its root
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "file"))
    result = runner.invoke(cli, ["run", "-p", "ms", "-d", "synth-cub"])
    assert result.exit_code == 2
    assert result.stderr.splitlines(keepends=True)[-1] == (
        f"Error: Data root {tmp_path / 'file'} (from $BENCH_DATA) is not a folder: point "
        "$BENCH_DATA at the folder holding the datasets.\n"
    )


def test_a_generated_dataset_creates_a_missing_data_root(runner, data_root, tmp_path, monkeypatch):
    from benchmark.data.datasets import synth

    root = tmp_path / "new" / "deeper"

    def copy_of_the_session_synth_cub(folder, seed):  # generating anew takes seconds
        import shutil

        shutil.copytree(data_root / "synth-cub", folder)

    monkeypatch.setattr(synth, "generate_synth_cub", copy_of_the_session_synth_cub)
    # `bench data check` resolves the root as `bench run` does, and is quicker than a run.
    result = runner.invoke(cli, ["data", "check", "synth-cub", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "ok"
    assert (root / "synth-cub" / "CUB_200_2011" / ".complete").is_file()


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
    assert [line.split(":")[0] for line in progress[:3]] == [
        "epoch   0 (iteration 0) test",  # the untrained network
        "epoch   0 (iteration 0) validation",
        "epoch   1 (iteration 2) validation",
    ]
    assert re.match(r"epoch   [01] \(iteration [02]\) test", progress[3]) and len(progress) == 4
    assert "R@1 " in progress[1] and "loss " in progress[2] and "loss " not in progress[1]
    table = result.stdout.splitlines()
    assert table[0].split() == [
        "split", "epoch", "iteration", "loss", "R@1", "R@2", "R@4", "R@8", "MAP@R", "R-PRECISION",
    ]  # fmt: skip
    assert [row.split()[:3] for row in table[2:5]] == [
        ["test", "0", "0"],
        ["validation", "0", "0"],
        ["validation", "1", "2"],
    ]
    assert table[5].split()[0] == "test"
    assert table[6].startswith("test figures: weights of epoch ")
    assert table[6].endswith(", the best on the validation split")
    (written,) = (tmp_path / "synth-cub" / "ms").glob("*.json")
    assert table[-1] == f"Result written to {written}"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--seed",
            "-1",
            "Error: Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295",
        ),
        ("--seed", str(2**64), "Error: Invalid value for '--seed': 18446744073709551616 is not in"),
        (
            "--seeds",
            "0,-1",
            "Error: Invalid value for '--seeds': expected distinct seeds from 0 to",
        ),
        (
            "--seeds",
            "10000000000",
            "Error: Invalid value for '--seeds': a count of seeds is at least 1 and",
        ),
    ],
)
def test_bad_seeds_are_refused_when_the_options_are_parsed(runner, option, value, message):
    # An unknown method would be reported by the command; the seed is refused before it runs.
    result = runner.invoke(cli, ["run", "-p", "no-such-method", "-d", "synth-cub", option, value])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Unknown method" not in result.stderr


@pytest.mark.parametrize("device", ["garbage", "cuda:x", "CPU", "cpu:1", "cuda:-1"])
def test_a_device_that_is_no_device_lists_the_accepted_forms(runner, tmp_path, device):
    args = ["run", "-p", "ms", "-d", "synth-cub", "--data-root", str(tmp_path), "--device", device]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: --device {device}: not a device this benchmark runs on; use auto, cpu, cuda, "
        "cuda:N (N counting the CUDA devices from 0) or mps.\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_cuda_device_that_is_not_there_is_named(monkeypatch):
    import torch

    from benchmark.engine.run import pick_device
    from benchmark.errors import BenchError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda:1")
    assert pick_device("cuda") == torch.device("cuda")
    with pytest.raises(BenchError) as error:
        pick_device("cuda:99")
    assert str(error.value) == (
        "--device cuda:99: there is no CUDA device 99; this machine has 2 (cuda:0 to cuda:1)."
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BenchError, match="--device cuda:0: no CUDA device is available; use"):
        pick_device("cuda:0")


def test_mps_is_refused_where_there_is_none(monkeypatch):
    import torch

    from benchmark.engine.run import pick_device
    from benchmark.errors import BenchError

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(BenchError, match="--device mps: no MPS .Apple GPU. device is available"):
        pick_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("mps") == torch.device("mps")


def test_a_protocol_that_is_a_folder_or_not_utf8_is_named(runner, tmp_path):
    folder = tmp_path / "protocols.json"
    folder.mkdir()
    result = runner.invoke(cli, ["run", "-p", "ms", "-d", "synth-cub", "--protocol", str(folder)])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {folder}: is a folder, not a file; give the file's path.\n"
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{\n  "name": "caf\xe9"\n}\n')
    result = runner.invoke(cli, ["run", "-p", "ms", "-d", "synth-cub", "--protocol", str(latin1)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {latin1}:2: not UTF-8 text (byte 0xe9 in column 15); save it as UTF-8.\n"
    )
