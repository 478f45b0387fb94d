from __future__ import annotations

import json
import re

import pytest
import torch

from benchmark import hookimpl
from benchmark.builtin import PROTOCOL_DIR
from benchmark.config import build_run_config, fingerprint, load_protocol_file
from benchmark.errors import BenchError
from benchmark.plugins import load_plugins
from benchmark.specs import MethodSpec, Paper


def config(registry, *overrides, **kwargs):
    return build_run_config(
        registry, method="ms", dataset="synth-cub", overrides=overrides, **kwargs
    )


def test_cpu_smoke_resolves_with_the_method_defaults(registry):
    resolved = config(registry)
    assert resolved.protocol.name == "cpu-smoke"
    assert resolved.protocol.model.backbone == "convnet-small"
    assert dict(resolved.hparams) == {"alpha": 2.0, "beta": 40.0, "base": 0.5, "margin": 0.1}
    assert resolved.preset == "default"
    assert re.fullmatch(r"[0-9a-f]{64}", resolved.fingerprint)


def test_overrides_reach_protocol_fields_and_hyper_parameters(registry):
    resolved = config(
        registry,
        "train.epochs=3",
        "beta=50",
        "method.base=1",
        "data.hflip=false",
        "model.pretrained=null",
    )
    assert resolved.protocol.train.epochs == 3
    assert resolved.hparams["beta"] == 50.0 and isinstance(resolved.hparams["beta"], float)
    assert resolved.hparams["base"] == 1.0
    assert resolved.protocol.data.hflip is False
    assert resolved.overrides == (
        "train.epochs=3",
        "beta=50",
        "method.base=1",
        "data.hflip=false",
        "model.pretrained=null",
    )


def test_fingerprint_ignores_seed_and_number_spelling_but_not_values(registry):
    base = config(registry).fingerprint
    assert config(registry, seed=7).fingerprint == base
    assert config(registry, "alpha=2").fingerprint == base
    assert config(registry, "alpha=2.5").fingerprint != base
    assert config(registry, "train.epochs=2").fingerprint != base
    assert config(registry).fingerprint == fingerprint(config(registry).to_dict())


def test_presets_switch_hyper_parameters(registry):
    paper = config(registry, preset="paper")
    assert (paper.preset, paper.hparams["beta"], paper.hparams["base"]) == ("paper", 50.0, 1.0)
    with pytest.raises(
        BenchError,
        match=r"Unknown preset 'papr' of method 'ms'\. Did you mean "
        r"'paper'\?",
    ):
        config(registry, preset="papr")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.epochz=3", "--set: unknown key 'train.epochz'. Did you mean 'train.epochs',"),
        ("betta=3", "--set: unknown key 'betta'. Did you mean 'beta'?"),
        ("bta=50", "--set: unknown key 'bta'. Did you mean 'beta'?"),
        ("epochs", "--set 'epochs': expected key=value, e.g. --set train.epochs=3."),
        ("train.epochs=three", '--set train.epochs: expected a int like 6, got "three".'),
        ("data.hflip=1", "--set data.hflip: expected a bool like true, got 1."),
        ("name=other", "--set name: the protocol's name is fixed by its protocol file;"),
        ("version=9", "--set version: the protocol's version is fixed by its protocol file;"),
        ("train=3", "--set: unknown key 'train'."),
    ],
)
def test_bad_overrides_are_rejected_with_a_clear_message(registry, item, message):
    with pytest.raises(BenchError) as error:
        config(registry, item)
    assert str(error.value).startswith(message)


def test_values_outside_the_schema_name_the_field(registry):
    with pytest.raises(BenchError) as error:
        config(registry, "train.epochs=0")
    assert str(error.value) == (
        "protocol after --set: invalid value at 'train.epochs': 0 is less than the minimum of 1"
    )
    with pytest.raises(
        BenchError, match="hyper-parameters of method 'ms': invalid value at 'alpha'"
    ):
        config(registry, "alpha=-1")


def test_invalid_protocol_file_names_file_and_field(tmp_path):
    path = tmp_path / "bad.json"
    protocol = json.loads((PROTOCOL_DIR / "cpu-smoke.json").read_text())
    protocol["data"]["augment"] = "mixup"
    path.write_text(json.dumps(protocol))
    with pytest.raises(BenchError) as error:
        load_protocol_file(path)
    assert str(error.value).startswith(
        f"protocol file {path}: invalid value at 'data.augment': 'mixup' is not one of"
    )
    path.write_text('{\n "name": "x",\n oops\n}')
    with pytest.raises(BenchError, match=re.escape(f"{path}:3: not valid JSON")):
        load_protocol_file(path)


def test_protocol_by_path_and_unknown_name(registry, tmp_path):
    source = registry.protocols["cpu-smoke"]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({**source, "name": "mine"}))
    assert config(registry, protocol=str(path)).protocol.name == "mine"
    with pytest.raises(BenchError, match="Unknown protocol 'cpu-smok'. Did you mean 'cpu-smoke'"):
        config(registry, protocol="cpu-smok")


def test_task_mismatch_is_explained():
    class HashingOnly:
        @hookimpl
        def bench_methods(self):
            return [
                MethodSpec(
                    "hash-only",
                    "s",
                    Paper("t", "a", "v", "u"),
                    ("hashing",),
                    lambda ctx: torch.nn.Identity(),
                    {},
                    {"type": "object"},
                )
            ]

    registry = load_plugins([("hash", HashingOnly())], entry_points=False)
    with pytest.raises(BenchError) as error:
        build_run_config(registry, method="hash-only", dataset="synth-cub")
    assert str(error.value).startswith(
        "Method 'hash-only' supports the tasks hashing, but "
        "dataset 'synth-cub' is a 'retrieval' dataset."
    )


def test_dataset_options_are_checked_against_the_dataset_schema(registry):
    resolved = config(registry, "data.dataset_options.min_certainty=3")
    assert resolved.protocol.data.dataset_options == {"min_certainty": 3}
    assert config(registry).protocol.data.dataset_options == {"min_certainty": 2}  # its default
    with pytest.raises(BenchError) as error:
        config(registry, "data.dataset_options.attributes=class")
    assert str(error.value) == (
        "data.dataset_options of 'synth-cub': invalid value at '(top level)': Additional "
        "properties are not allowed ('attributes' was unexpected)"
    )
    with pytest.raises(
        BenchError, match="Dataset 'cars196' takes no options, but data.dataset_options sets x."
    ):
        build_run_config(
            registry, method="ms", dataset="cars196", overrides=["data.dataset_options.x=1"]
        )


@pytest.mark.parametrize("name", ["std-dml-512", "std-dml-128", "std-hash"])
def test_standard_protocols_select_on_validation(registry, name):
    protocol = registry.protocols[name]
    assert protocol["kind"] == "standard" and protocol["version"] == 2
    assert protocol["eval"]["selection"] == "validation" and protocol["eval"]["validation"]
    assert (protocol["model"]["backbone"], protocol["model"]["pretrained"]) == (
        "resnet50",
        "imagenet",
    )
    assert protocol["train"]["amp"] is True


def test_standard_protocols_differ_only_where_they_say(registry):
    large, small = registry.protocols["std-dml-512"], registry.protocols["std-dml-128"]
    assert (large["model"]["embedding_dim"], small["model"]["embedding_dim"]) == (512, 128)
    assert {**large["model"], "embedding_dim": 0} == {**small["model"], "embedding_dim": 0}
    assert large["train"] == small["train"] and large["data"] == small["data"]
    assert registry.protocols["std-hash"]["model"]["hash"] == {
        "bits": 64, "hidden": 2048, "dropout": 0.5,
    }  # fmt: skip


def test_a_protocol_file_that_cannot_be_read_says_why(tmp_path, unreadable):
    path = tmp_path / "mine.json"
    path.write_text("{}")
    unreadable(path)
    with pytest.raises(BenchError) as error:
        load_protocol_file(path)
    assert str(error.value) == f"{path}: cannot be read (Permission denied); check its permissions."
    with pytest.raises(BenchError) as error:
        load_protocol_file(tmp_path / "absent.json")
    assert str(error.value) == f"{tmp_path / 'absent.json'}: file not found."
