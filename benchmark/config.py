"""Protocol files, `--set` overrides, and the frozen RunConfig with its fingerprint."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from benchmark.errors import BenchError, suggest
from benchmark.models.weights import check_pretrained
from benchmark.plugins import Registry
from benchmark.protocol import DESCRIPTIVE_KEYS, DataSettings, Protocol, effective
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
    protocol: Protocol
    seed: int
    overrides: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "preset": self.preset,
            "hparams": copy.deepcopy(dict(self.hparams)),
            "dataset": self.dataset,
            "protocol": self.protocol.to_json(),
            "seed": self.seed,
            "overrides": list(self.overrides),
        }

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.to_dict())

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> RunConfig:
        """The config a result file or checkpoint stored (`to_dict`), its protocol typed; one
        written before the typed protocol gets its defaults filled in."""
        return cls(
            stored["method"], stored["preset"], dict(stored["hparams"]), stored["dataset"],
            Protocol.from_json(stored["protocol"]), stored["seed"], tuple(stored["overrides"]),
        )  # fmt: skip


def fingerprint(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of what decides the numbers.

    Left out: the seed (replicates share a fingerprint), the preset label and the override list
    (their effect is in the hyper-parameters and protocol), and what a protocol says it is meant
    for (protocol.DESCRIPTIVE_KEYS). A run records its protocol's effective values, so the print
    of a stored config is the print of the run; files written before the typed protocol keep
    theirs, computed the same way over what they stored."""
    decisive = {k: config[k] for k in ("method", "hparams", "dataset", "protocol")}
    protocol = decisive["protocol"]
    decisive["protocol"] = {k: v for k, v in protocol.items() if k not in DESCRIPTIVE_KEYS}
    return hashlib.sha256(canonical_json(decisive).encode()).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class ProtocolChoice:
    """Which protocol a run takes and what the user should be told about it."""

    name_or_path: str
    note: str | None = None  # for the console: which default was taken


def choose_protocol(registry: Registry, dataset: str, requested: str | None) -> ProtocolChoice:
    """The protocol asked for, else the dataset's standard one (DatasetSpec.protocol)."""
    spec = registry.dataset(dataset)
    if requested is not None:
        return ProtocolChoice(requested)
    if spec.protocol is None:
        raise BenchError(
            f"Dataset '{dataset}' declares no standard protocol: name one with --protocol "
            f"(bench list protocols)."
        )
    return ProtocolChoice(
        spec.protocol, f"protocol {spec.protocol}: the standard protocol of {dataset}"
    )


def protocol_notes(registry: Registry, config: RunConfig, choice: ProtocolChoice) -> list[str]:
    """What to tell the user about the protocol of a run: the default taken, a warning when it
    is not meant for the dataset, and the method's own paper protocol for it."""
    notes = [] if choice.note is None else [choice.note]
    protocol, dataset = config.protocol, config.dataset
    if not protocol.meant_for(dataset):
        notes.append(
            f"warning: protocol {protocol.name} is meant for {', '.join(protocol.datasets)}, "
            f"not {dataset}; its results are not ranked in {dataset}'s standard table."
        )
    paper = registry.method(config.method).paper_protocols.get(dataset)
    if paper is not None and paper != protocol.name:
        notes.append(f"{config.method}'s own paper protocol for {dataset}: --protocol {paper}")
    return notes


def build_run_config(
    registry: Registry,
    *,
    method: str,
    dataset: str,
    protocol: str | None = None,
    seed: int = 0,
    preset: str | None = None,
    overrides: Sequence[str] = (),
    select_on: str | None = None,
) -> RunConfig:
    """Resolve names, merge method defaults (or a preset) and overrides, validate everything.

    protocol: a registered name or a file path; None: the dataset's standard protocol.
    select_on: shorthand for the override eval.selection=<value> (validation, last or test).
    """
    if select_on is not None:
        overrides = (*overrides, f"eval.selection={select_on}")
    method_spec = registry.method(method)
    dataset_spec = registry.dataset(dataset)
    _check_task(registry, method_spec, dataset_spec)
    chosen = choose_protocol(registry, dataset, protocol).name_or_path
    resolved = effective(resolve_protocol(registry, chosen))
    preset_name, hparams = _preset(method_spec, preset)
    for item in overrides:
        _apply_override(item, resolved, hparams, method_spec)
    validate(resolved, load_schema("protocol.schema.json"), "protocol after --set")
    validate(hparams, dict(method_spec.hparam_schema), f"hyper-parameters of method '{method}'")
    typed = Protocol.from_json(resolved)
    typed = typed.replace(data=_dataset_options(dataset_spec, typed.data))
    _check_selection(typed)
    typed = _apply_backbone(registry.backbone(typed.model.backbone), typed)
    return RunConfig(method, preset_name, hparams, dataset, typed, seed, tuple(overrides))


def _check_task(registry: Registry, method: MethodSpec, dataset: DatasetSpec) -> None:
    if dataset.task not in method.tasks:
        raise BenchError(
            f"Method '{method.name}' supports the tasks {', '.join(method.tasks)}, "
            f"but dataset '{dataset.name}' is a '{dataset.task}' dataset. "
            f"Choose a {'/'.join(method.tasks)} dataset: {_datasets_for(registry, method)}."
        )


def _apply_backbone(spec: BackboneSpec, protocol: Protocol) -> Protocol:
    """Check the weights asked for; a backbone's input convention replaces the protocol's
    normalisation (recorded in the config, hence in the fingerprint)."""
    check_pretrained(spec, protocol.model.pretrained)
    convention = spec.input_convention
    if convention is None:
        return protocol
    data = dataclasses.replace(
        protocol.data,
        channels=convention.channels,
        pixel_range=float(convention.pixel_range),
        mean=tuple(float(value) for value in convention.mean),
        std=tuple(float(value) for value in convention.std),
    )
    return protocol.replace(data=data)


def _check_selection(protocol: Protocol) -> None:
    if protocol.eval.selection == "validation" and protocol.eval.validation is None:
        raise BenchError(
            f"Protocol '{protocol.name}' selects on the validation split but defines none: "
            f"add eval.validation ({{fraction, seed}}) or select on 'last'."
        )


def _dataset_options(spec: DatasetSpec, data: DataSettings) -> DataSettings:
    """data.dataset_options checked against the dataset's schema, its defaults filled in."""
    options = dict(data.dataset_options)
    if options and not spec.options_schema:
        raise BenchError(
            f"Dataset '{spec.name}' takes no options, but data.dataset_options "
            f"sets {', '.join(sorted(options))}."
        )
    if not spec.options_schema:
        return data
    validate(options, dict(spec.options_schema), f"data.dataset_options of '{spec.name}'")
    for name, schema in spec.options_schema.get("properties", {}).items():
        if "default" in schema:
            options.setdefault(name, copy.deepcopy(schema["default"]))
    return dataclasses.replace(data, dataset_options=options)


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
    if key in FIXED_PROTOCOL_KEYS or key in DESCRIPTIVE_KEYS:
        raise BenchError(
            f"--set {key}: the protocol's {key} is fixed by its protocol file; write a protocol "
            f"file of your own (with another name) and pass it with --protocol."
        )
    *parents, leaf = key.split(".")
    node: Any = protocol
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    # dataset_options are checked against the dataset's own schema afterwards
    free = key.startswith("data.dataset_options.") and len(parents) == 2
    known_leaf = isinstance(node, dict) and (leaf in node or free or _schema_allows(key))
    if not known_leaf or isinstance(node.get(leaf), dict):
        raise BenchError(f"--set: unknown key '{key}'.{_suggest_key(key, protocol, spec)}")
    return node, leaf


def _suggest_key(key: str, protocol: dict[str, Any], spec: MethodSpec) -> str:
    """Close protocol paths and hyper-parameters: `bta` finds `beta`, `lr` finds its path."""
    hparams = list(spec.hparam_schema.get("properties", {}))
    paths = _leaf_paths(protocol)
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [path for path in paths if path.rsplit(".", 1)[-1] == leaf]
    close = difflib.get_close_matches(key.removeprefix("method."), hparams, n=3, cutoff=0.6)
    close += difflib.get_close_matches(key, paths, n=3, cutoff=0.6)
    return suggest(key, [*paths, *(f"method.{k}" for k in hparams)], same_leaf or close)


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
        elif path not in (*FIXED_PROTOCOL_KEYS, *DESCRIPTIVE_KEYS):
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
