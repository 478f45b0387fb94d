"""The typed protocol: defaults declared once, fingerprints over the effective values, and the
protocol a dataset runs under."""

from __future__ import annotations

import copy
import dataclasses
import json
import typing

import pytest
from click.testing import CliRunner

import benchmark.protocol as protocol_module
from benchmark.cli import cli
from benchmark.config import build_run_config, fingerprint, load_schema
from benchmark.errors import BenchError
from benchmark.protocol import Protocol, effective

# (dotted path, the default a protocol that leaves it out gets)
DEFAULTS = [
    ("train.optimizer.momentum", 0.9),
    ("train.schedule.warmup_iterations", 0),
    ("train.schedule.milestones", []),
    ("train.schedule.gamma", 0.1),
    ("train.channels_last", False),
    ("train.compile", False),
    ("data.channels", "rgb"),
    ("data.pixel_range", 1.0),
    ("data.dataset_options", {}),
]


def cpu_smoke(registry) -> dict:
    return copy.deepcopy(registry.protocol("cpu-smoke"))


def set_path(document: dict, path: str, value) -> dict:
    *parents, leaf = path.split(".")
    node = document
    for part in parents:
        node = node[part]
    node[leaf] = value
    return document


def drop_path(document: dict, path: str) -> dict:
    *parents, leaf = path.split(".")
    node = document
    for part in parents:
        node = node[part]
    node.pop(leaf, None)
    return document


def run_fingerprint(registry, tmp_path, document, dataset="synth-cub") -> str:
    path = tmp_path / f"{document['name']}.json"
    path.write_text(json.dumps(document))
    config = build_run_config(registry, method="ms", dataset=dataset, protocol=str(path))
    return config.fingerprint


@pytest.mark.parametrize(("path", "default"), DEFAULTS)
def test_a_left_out_key_and_its_stated_default_are_one_configuration(
    registry, tmp_path, path, default
):
    document = drop_path(cpu_smoke(registry), path)
    stated = set_path(cpu_smoke(registry), path, default)
    assert f'"{path.rsplit(".", 1)[-1]}"' not in json.dumps(document)
    assert run_fingerprint(registry, tmp_path, document) == run_fingerprint(
        registry, tmp_path, stated
    )


def test_a_stated_value_other_than_the_default_is_another_configuration(registry, tmp_path):
    plain = run_fingerprint(registry, tmp_path, cpu_smoke(registry))
    other = set_path(cpu_smoke(registry), "train.optimizer.momentum", 0.95)
    assert run_fingerprint(registry, tmp_path, other) != plain


def test_a_left_out_selection_is_last_and_fingerprints_as_stated(registry, tmp_path):
    document = cpu_smoke(registry)
    del document["eval"]["selection"]
    stated = set_path(cpu_smoke(registry), "eval.selection", "last")
    assert Protocol.from_json(document).eval.selection == "last"
    assert run_fingerprint(registry, tmp_path, document) == run_fingerprint(
        registry, tmp_path, stated
    )


def test_a_dataset_option_default_is_in_the_fingerprint(registry):
    left_out = build_run_config(registry, method="ms", dataset="synth-cub")
    stated = build_run_config(
        registry,
        method="ms",
        dataset="synth-cub",
        overrides=["data.dataset_options.min_certainty=2"],
    )
    assert left_out.protocol.data.dataset_options == {"min_certainty": 2}
    assert left_out.fingerprint == stated.fingerprint


def test_numbers_are_typed_by_field(registry, tmp_path):
    document = cpu_smoke(registry)
    written = set_path(set_path(cpu_smoke(registry), "train.epochs", 6.0), "model.hash.dropout", 1)
    written["train"]["optimizer"]["lr"] = 0.001
    document["model"]["hash"]["dropout"] = 1.0
    typed = Protocol.from_json(written)
    assert (typed.train.epochs, typed.model.hash.dropout) == (6, 1.0)
    assert json.dumps(typed.to_json()["train"]["epochs"]) == "6"
    assert run_fingerprint(registry, tmp_path, written) == run_fingerprint(
        registry, tmp_path, document
    )


def test_changing_a_default_in_code_changes_the_fingerprint(registry, monkeypatch):
    before = build_run_config(registry, method="ms", dataset="synth-cub").fingerprint

    @dataclasses.dataclass(frozen=True)
    class OptimizerSettings(protocol_module.OptimizerSettings):
        momentum: float = 0.8

    monkeypatch.setattr(protocol_module, "OptimizerSettings", OptimizerSettings)
    protocol_module._hints.cache_clear()
    try:
        after = build_run_config(registry, method="ms", dataset="synth-cub")
    finally:
        monkeypatch.undo()
        protocol_module._hints.cache_clear()
    assert after.protocol.train.optimizer.momentum == 0.8
    assert after.fingerprint != before


def test_every_shipped_protocol_is_its_own_effective_form(registry):
    for name, document in registry.protocols.items():
        values = effective(document)
        assert effective(values) == values, name
        assert Protocol.from_json(values) == Protocol.from_json(document), name


def test_dry_run_prints_the_effective_values(registry):
    result = CliRunner().invoke(cli, ["run", "-p", "ms", "-d", "synth-cub", "--dry-run"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    train = printed["config"]["protocol"]["train"]
    assert train["optimizer"]["momentum"] == 0.9 and train["schedule"]["gamma"] == 0.1
    assert printed["fingerprint"] == fingerprint(printed["config"])


# --- one source for defaults: the dataclasses; the schema describes the same fields -------------


SECTIONS = {
    "": Protocol,
    "model": protocol_module.ModelSettings,
    "model.hash": protocol_module.HashSettings,
    "data": protocol_module.DataSettings,
    "train": protocol_module.TrainSettings,
    "train.optimizer": protocol_module.OptimizerSettings,
    "train.schedule": protocol_module.ScheduleSettings,
    "eval": protocol_module.EvalSettings,
    "eval.validation": protocol_module.ValidationSettings,
}


def schema_section(path: str) -> dict:
    node = load_schema("protocol.schema.json")
    for part in filter(None, path.split(".")):
        node = node["properties"][part]
    return node


@pytest.mark.parametrize("path", sorted(SECTIONS))
def test_the_schema_and_the_settings_name_the_same_fields_and_the_same_required_ones(path):
    settings, schema = SECTIONS[path], schema_section(path)
    fields = dataclasses.fields(settings)
    assert {f.name for f in fields} == set(schema["properties"])
    without_default = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    assert without_default == set(schema.get("required", []))


def test_the_schema_declares_no_default_of_its_own():
    assert '"default"' not in json.dumps(load_schema("protocol.schema.json"))


def test_every_settings_field_has_a_type_the_reader_knows():
    for settings in SECTIONS.values():
        for name, hint in typing.get_type_hints(settings).items():
            assert hint is not typing.Any, f"{settings.__name__}.{name}"


# --- the protocol a dataset runs under ----------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "method", "expected"),
    [
        ("synth-cub", "ms", "cpu-smoke"),
        ("synth-coco", "csq", "cpu-smoke"),
        ("cub", "ms", "std-dml-512"),
        ("inshop", "ms", "std-dml-512"),
        ("coco", "csq", "std-hash"),
    ],
)
def test_without_protocol_a_run_takes_its_datasets_standard_protocol(
    registry, dataset, method, expected
):
    config = build_run_config(registry, method=method, dataset=dataset)
    assert config.protocol.name == expected
    assert config.protocol.meant_for(dataset)


def test_the_cli_says_which_protocol_it_chose(registry):
    result = CliRunner().invoke(cli, ["run", "-p", "ms", "-d", "inshop", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == (
        "protocol std-dml-512: the standard protocol of inshop"
    )


def test_a_protocol_meant_for_other_datasets_warns_and_must_be_named(registry):
    result = CliRunner().invoke(
        cli, ["run", "-p", "ms", "-d", "cub", "--protocol", "cpu-smoke", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == (
        "warning: protocol cpu-smoke is meant for synth-*, not cub; its results are not ranked "
        "in cub's standard table."
    )
    assert "standard protocol" not in result.stderr


def test_the_dry_run_names_the_methods_own_paper_protocol(registry):
    result = CliRunner().invoke(cli, ["run", "-p", "sgml", "-d", "cub", "--dry-run"])
    assert "sgml's own paper protocol for cub: --protocol sgml-cub" in result.stderr


def test_list_methods_shows_paper_protocols_and_list_datasets_their_protocol():
    methods = CliRunner().invoke(cli, ["list", "methods"]).stdout
    assert "sgml-cub (cub), sgml-inshop (inshop)" in methods
    datasets = CliRunner().invoke(cli, ["list", "datasets"]).stdout.splitlines()
    assert next(line for line in datasets if line.startswith("coco ")).split()[:3] == [
        "coco", "hashing", "std-hash",
    ]  # fmt: skip


def test_a_dataset_without_a_standard_protocol_asks_for_one(registry):
    from benchmark.config import choose_protocol
    from benchmark.plugins import load_plugins

    class Bare:
        from benchmark.hookspecs import hookimpl

        @hookimpl
        def bench_datasets(self):
            spec = load_plugins(entry_points=False).dataset("synth-cub")
            return [dataclasses.replace(spec, name="bare", protocol=None)]

    loaded = load_plugins([("bare", Bare())], entry_points=False)
    with pytest.raises(BenchError) as error:
        choose_protocol(loaded, "bare", None)
    assert str(error.value) == (
        "Dataset 'bare' declares no standard protocol: name one with --protocol "
        "(bench list protocols)."
    )
    assert choose_protocol(loaded, "bare", "cpu-smoke").name_or_path == "cpu-smoke"


def test_what_a_protocol_is_meant_for_is_not_in_the_fingerprint(registry, tmp_path):
    document = cpu_smoke(registry)
    wider = cpu_smoke(registry)
    wider["datasets"] = ["synth-*", "cub"]
    assert run_fingerprint(registry, tmp_path, document) == run_fingerprint(
        registry, tmp_path, wider
    )
    with pytest.raises(BenchError, match="--set datasets: the protocol's datasets is fixed"):
        build_run_config(registry, method="ms", dataset="synth-cub", overrides=["datasets=[]"])


def test_results_written_before_the_typed_protocol_keep_their_fingerprints():
    from pathlib import Path

    from benchmark.submit import check_for_publication

    path = Path(__file__).parent / "fixtures" / "result-cpu-smoke-v3.json"  # cpu-smoke v3
    result = check_for_publication(path)  # schema, integrity and fingerprint as stored
    assert "momentum" not in json.dumps(result["config"]["protocol"])
    assert fingerprint(result["config"]) == result["fingerprint"]
