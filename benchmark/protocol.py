"""The protocol as typed, frozen settings, with every default declared once: here.

A protocol file is JSON checked against `schemas/protocol.schema.json`; `Protocol.from_json`
turns it into these dataclasses, filling in what it leaves out, and `Protocol.to_json` gives
the effective values back. Runs record and fingerprint `to_json()`, so a protocol that omits a
key and one that states its default are the same configuration, and changing a default here
changes the fingerprint of every run that relied on it (bump the shipped protocols' versions).

Numbers are typed by field: `"lr": 1` and `"lr": 1.0` are the same protocol.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

Selection = Literal["validation", "last", "test"]

# What a protocol is meant for, not what it computes: left out of run fingerprints, so that a
# protocol can name a new dataset without becoming another configuration.
DESCRIPTIVE_KEYS = ("datasets",)


@dataclass(frozen=True)
class HashSettings:
    """The hash head: tanh codes of `bits` bits; hidden > 0 adds CSQ's two hidden layers."""

    bits: int
    hidden: int
    dropout: float


@dataclass(frozen=True)
class ModelSettings:
    backbone: str
    pretrained: str | None  # None, a weight name the backbone offers, or a file path or URL
    pooling: Literal["avg", "max", "avg+max"]
    embedding_dim: int
    normalize: bool
    freeze_bn: bool
    pretrained_sha256: str | None = None
    hash: HashSettings | None = None  # None: no hash head (metric-learning protocols)

    @property
    def hash_bits(self) -> int:
        """Bits of the hash head; 0 without one."""
        return 0 if self.hash is None else self.hash.bits


@dataclass(frozen=True)
class DataSettings:
    resize: int
    crop: int
    augment: Literal["random-resized-crop", "random-crop", "center-crop"]
    hflip: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes_per_batch: int
    samples_per_class: int
    num_workers: int
    cache: bool
    channels: Literal["rgb", "bgr"] = "rgb"
    pixel_range: float = 1.0
    dataset_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        """Images of one optimiser step: P x K (global under torchrun)."""
        return self.classes_per_batch * self.samples_per_class


@dataclass(frozen=True)
class OptimizerSettings:
    name: Literal["adam", "adamw", "sgd"]
    lr: float
    weight_decay: float
    momentum: float = 0.9  # sgd only


@dataclass(frozen=True)
class ScheduleSettings:
    name: Literal["constant", "multistep", "cosine"]
    warmup_iterations: int = 0
    milestones: tuple[float, ...] = ()  # multistep: fractions of the total iterations
    gamma: float = 0.1  # multistep: factor at each milestone


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    iterations_per_epoch: int
    optimizer: OptimizerSettings
    backbone_lr_mult: float
    schedule: ScheduleSettings
    amp: bool
    channels_last: bool = False
    compile: bool = False

    @property
    def total_iterations(self) -> int:
        return self.epochs * self.iterations_per_epoch


@dataclass(frozen=True)
class ValidationSettings:
    """A share `fraction` of the training classes (items, images), or fold `fold` of `folds`."""

    seed: int
    fraction: float | None = None
    folds: int | None = None
    fold: int | None = None


@dataclass(frozen=True)
class EvalSettings:
    every: int
    batch_size: int
    block_size: int
    # Protocols written before selection existed chose their last weights.
    selection: Selection = "last"
    validation: ValidationSettings | None = None


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    kind: Literal["standard", "paper"]
    summary: str
    model: ModelSettings
    data: DataSettings
    train: TrainSettings
    eval: EvalSettings
    # Dataset names or patterns (synth-*) the protocol is meant for; empty: not declared.
    datasets: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Protocol:
        """The protocol of a schema-valid document, defaults filled in."""
        return _build(cls, document)

    def to_json(self) -> dict[str, Any]:
        """The effective values as JSON: every field, an absent optional one left out."""
        return _plain(self)

    def meant_for(self, dataset: str) -> bool:
        """Whether the protocol declares `dataset` (or declares nothing)."""
        return not self.datasets or any(fnmatch.fnmatchcase(dataset, p) for p in self.datasets)

    def replace(self, **sections: Any) -> Protocol:
        return dataclasses.replace(self, **sections)


def effective(document: Mapping[str, Any]) -> dict[str, Any]:
    """A schema-valid protocol document with its defaults filled in."""
    return Protocol.from_json(document).to_json()


# --- between JSON and dataclasses -------------------------------------------------------------


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, document: Mapping[str, Any]) -> Any:
    hints = _hints(cls)
    values = {
        f.name: _value(hints[f.name], document[f.name])
        for f in dataclasses.fields(cls)
        if f.name in document
    }
    return cls(**values)


def _value(hint: Any, raw: Any) -> Any:
    """`raw` (JSON) as the field type `hint` says: dataclass, float, tuple, optional."""
    if raw is None:
        return None
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return _value(next(a for a in arguments if a is not type(None)), raw)
    if dataclasses.is_dataclass(hint):
        return _build(hint, raw)
    if hint is float:
        return float(raw)
    if hint is int:
        return int(raw)  # the schema's integers include 3.0
    if origin is tuple:
        return tuple(_value(arguments[0], item) for item in raw)
    if origin is Mapping or hint is Mapping:
        return dict(raw)
    return raw


def _plain(settings: Any) -> dict[str, Any]:
    plain = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if value is None and f.default is None:
            continue  # an optional part the protocol does not have
        plain[f.name] = _json(value)
    return plain


def _json(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return _plain(value)
    if isinstance(value, tuple):
        return [_json(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _json(item) for key, item in value.items()}
    return value
