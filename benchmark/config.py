"""Protocol files, `--set` overrides, and the frozen RunConfig with its fingerprint."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from benchmark.errors import BenchError
from benchmark.models.weights import check_pretrained
from benchmark.plugins import Registry, suggest
from benchmark.specs import BackboneSpec, DatasetSpec, MethodSpec

SCHEMA_DIR = Path(__file__).parent / "schemas"
FIXED_PROTOCOL_KEYS = ("name", "version", "kind", "summary")


@cache
def load_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / name).read_text())


def validate(document: Any, schema: Mapping[str, Any], where: str) -> None:
    """Raise a BenchError naming `where` and the JSON path of the first invalid field."""
    try:
        jsonschema.validate(document, schema)
    except jsonschema.ValidationError as error:
        path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise BenchError(f"{where}: invalid value at '{path}': {error.message}") from None


def read_json(path: Path) -> Any:
    """The JSON document in file `path`; a BenchError names the file (and line) when it is
    missing, a folder, unreadable, not UTF-8 or not JSON."""
    from benchmark.textfile import read_text

    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise BenchError(f"{path}:{error.lineno}: not valid JSON ({error.msg}).") from None


def load_protocol_file(path: Path) -> dict[str, Any]:
    protocol = read_json(path)
    validate(protocol, load_schema("protocol.schema.json"), f"protocol file {path}")
    return protocol


def resolve_protocol(registry: Registry, name_or_path: str) -> dict[str, Any]:
    """A registered protocol by name, or a protocol file by path."""
    if name_or_path.endswith(".json") or "/" in name_or_path:
        return load_protocol_file(Path(name_or_path))
    return copy.deepcopy(registry.protocol(name_or_path))


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's numbers. The fingerprint covers all of it but the seed,
    so runs that differ only in their seed are replicates of one configuration."""

    method: str
    preset: str
    hparams: Mapping[str, Any]
    dataset: str
    protocol: Mapping[str, Any]
    seed: int
    overrides: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "preset": self.preset,
            "hparams": dict(self.hparams),
            "dataset": self.dataset,
            "protocol": copy.deepcopy(dict(self.protocol)),
            "seed": self.seed,
            "overrides": list(self.overrides),
        }

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.to_dict())


def fingerprint(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of what decides the numbers.

    Left out: the seed (replicates share a fingerprint), the preset label and the override list
    (their effect is in the hyper-parameters and protocol)."""
    decisive = {k: config[k] for k in ("method", "hparams", "dataset", "protocol")}
    return hashlib.sha256(canonical_json(decisive).encode()).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def build_run_config(
    registry: Registry,
    *,
    method: str,
    dataset: str,
    protocol: str = "cpu-smoke",
    seed: int = 0,
    preset: str | None = None,
    overrides: Sequence[str] = (),
    select_on: str | None = None,
) -> RunConfig:
    """Resolve names, merge method defaults (or a preset) and overrides, validate everything.

    select_on: shorthand for the override eval.selection=<value> (validation, last or test).
    """
    if select_on is not None:
        overrides = (*overrides, f"eval.selection={select_on}")
    method_spec = registry.method(method)
    dataset_spec = registry.dataset(dataset)
    if dataset_spec.task not in method_spec.tasks:
        raise BenchError(
            f"Method '{method}' supports the tasks {', '.join(method_spec.tasks)}, "
            f"but dataset '{dataset}' is a '{dataset_spec.task}' dataset. "
            f"Choose a {'/'.join(method_spec.tasks)} dataset: "
            f"{_datasets_for(registry, method_spec)}."
        )
    resolved = resolve_protocol(registry, protocol)
    resolved["data"].setdefault("dataset_options", {})
    preset_name, hparams = _preset(method_spec, preset)
    for item in overrides:
        _apply_override(item, resolved, hparams, method_spec)
    validate(resolved, load_schema("protocol.schema.json"), "protocol after --set")
    validate(hparams, dict(method_spec.hparam_schema), f"hyper-parameters of method '{method}'")
    _check_dataset_options(dataset_spec, resolved["data"]["dataset_options"])
    _check_selection(resolved)
    _apply_backbone(registry.backbone(resolved["model"]["backbone"]), resolved)
    return RunConfig(method, preset_name, hparams, dataset, resolved, seed, tuple(overrides))


def _apply_backbone(spec: BackboneSpec, protocol: dict[str, Any]) -> None:
    """Check the weights asked for; a backbone's input convention replaces the protocol's
    normalisation (recorded in the config, hence in the fingerprint)."""
    check_pretrained(spec, protocol["model"])
    convention = spec.input_convention
    if convention is not None:
        protocol["data"].update(
            channels=convention.channels,
            pixel_range=float(convention.pixel_range),
            mean=[float(value) for value in convention.mean],
            std=[float(value) for value in convention.std],
        )


def _check_selection(protocol: Mapping[str, Any]) -> None:
    if protocol["eval"].get("selection") == "validation" and "validation" not in protocol["eval"]:
        raise BenchError(
            f"Protocol '{protocol['name']}' selects on the validation split but defines none: "
            f"add eval.validation ({{fraction, seed}}) or select on 'last'."
        )


def _check_dataset_options(spec: DatasetSpec, options: dict[str, Any]) -> None:
    if options and not spec.options_schema:
        raise BenchError(
            f"Dataset '{spec.name}' takes no options, but data.dataset_options "
            f"sets {', '.join(sorted(options))}."
        )
    if spec.options_schema:
        validate(options, dict(spec.options_schema), f"data.dataset_options of '{spec.name}'")


def _datasets_for(registry: Registry, spec: MethodSpec) -> str:
    return ", ".join(sorted(n for n, d in registry.datasets.items() if d.task in spec.tasks))


def _preset(spec: MethodSpec, preset: str | None) -> tuple[str, dict[str, Any]]:
    if preset is None or preset == "default":
        return "default", copy.deepcopy(dict(spec.defaults))
    if preset not in spec.presets:
        raise BenchError(
            f"Unknown preset '{preset}' of method '{spec.name}'."
            f"{suggest(preset, ['default', *spec.presets])}"
        )
    return preset, copy.deepcopy(dict(spec.presets[preset]))


def _apply_override(
    item: str, protocol: dict[str, Any], hparams: dict[str, Any], spec: MethodSpec
) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise BenchError(f"--set '{item}': expected key=value, e.g. --set train.epochs=3.")
    value = _parse_value(raw)
    name = key.removeprefix("method.")
    if name in spec.hparam_schema.get("properties", {}):
        hparams[name] = _typed(key, hparams.get(name), value)
        return
    parent, leaf = _protocol_slot(key, protocol, spec)
    parent[leaf] = _typed(key, parent.get(leaf), value)


def _protocol_slot(key: str, protocol: dict[str, Any], spec: MethodSpec) -> tuple[dict, str]:
    *parents, leaf = key.split(".")
    node: Any = protocol
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    # dataset_options are checked against the dataset's own schema afterwards
    free = key.startswith("data.dataset_options.") and len(parents) == 2
    known_leaf = isinstance(node, dict) and (leaf in node or free or _schema_allows(key))
    if not known_leaf or key in FIXED_PROTOCOL_KEYS or isinstance(node.get(leaf), dict):
        choices = [
            *_leaf_paths(protocol),
            *(f"method.{k}" for k in spec.hparam_schema.get("properties", {})),
        ]
        same_leaf = [c for c in choices if c.rsplit(".", 1)[-1] == leaf]
        raise BenchError(f"--set: unknown key '{key}'.{suggest(key, choices, same_leaf)}")
    return node, leaf


def _schema_allows(key: str) -> bool:
    node: Any = load_schema("protocol.schema.json")
    for part in key.split("."):
        node = node.get("properties", {}).get(part) if isinstance(node, dict) else None
    return node is not None


def _leaf_paths(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            paths.extend(_leaf_paths(value, f"{path}."))
        elif path not in FIXED_PROTOCOL_KEYS:
            paths.append(path)
    return paths


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _typed(key: str, current: Any, value: Any) -> Any:
    """Keep a number's type stable (2 for a float field becomes 2.0) so fingerprints agree."""
    if isinstance(current, float) and type(value) is int:
        return float(value)
    if current is not None and value is not None and type(value) is not type(current):
        raise BenchError(
            f"--set {key}: expected a {type(current).__name__} like "
            f"{json.dumps(current)}, got {json.dumps(value)}."
        )
    return value
