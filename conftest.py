"""Fixtures shared by the core's tests (tests/) and the bundled plugins' (plugins/*/tests).

Tests are offline and load only the bundled plugins, never others that happen to be installed.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

os.environ["BENCH_OFFLINE"] = "1"
os.environ["BENCH_PLUGINS"] = "ms,pddm,sgml,ics,pml"


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding synth-cub, generated once per test session."""
    from benchmark.data.datasets.synth import ensure_synth_cub

    root = tmp_path_factory.mktemp("data")
    ensure_synth_cub(root)
    return root


@pytest.fixture(scope="session")
def registry():
    from benchmark.plugins import load_plugins

    return load_plugins()


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding synth-coco, generated once per test session."""
    from benchmark.data.datasets.synth_coco import ensure_synth_coco

    root = tmp_path_factory.mktemp("coco-data")
    ensure_synth_coco(root)
    return root


@pytest.fixture()
def make_result(registry):
    """A function building a schema-valid result file's content by hand (no training), sealed
    with its integrity hash as `bench run` seals it (`reseal` after editing one)."""
    from benchmark.results import integrity, validate_result

    def make(
        *,
        method="ms",
        seed=0,
        recall=0.5,
        dataset="synth-cub",
        selection="validation",
        version=3,
        fingerprint="a",
        overrides=(),
        protocol="cpu-smoke",
        untrained=None,
    ):
        protocol = copy.deepcopy(registry.protocols[protocol])
        protocol["version"] = version
        metrics = {"recall@1": recall, "recall@2": recall + 0.1, "recall@4": recall + 0.2,
                   "recall@8": recall + 0.3, "map@r": recall / 2}  # fmt: skip
        spec = registry.method(method)
        result = {
            "schema_version": 1,
            "fingerprint": fingerprint * 64,
            "config": {
                "method": method,
                "preset": "default",
                "hparams": dict(spec.defaults),
                "dataset": dataset,
                "protocol": protocol,
                "seed": seed,
                "overrides": list(overrides),
            },  # fmt: skip
            "method": {
                "name": method,
                "plugin": method,
                "plugin_version": "0.1.0",
                "hparams": dict(spec.defaults),
                "fidelity": spec.fidelity,
                "paper": {"title": spec.paper.title, "url": spec.paper.url},
            },  # fmt: skip
            "dataset": {
                "name": dataset,
                "task": "retrieval",
                "split_fingerprint": "0" * 64,
                "counts": {"train": 10, "query": 10, "gallery": 10, "train_classes": 5},
            },
            "seed": seed,
            "evaluations": [{"epoch": 6, "iteration": 300, "split": "test", "metrics": metrics}],
            "final": {"epoch": 6, "selection": selection, "metrics": metrics},
            "environment": {
                "python": "3.11",
                "torch": "2",
                "torchvision": "0",
                "dmlbench": "0.1.0",
                "device": "cpu: x86_64",
                "platform": "linux",
            },  # fmt: skip
            "timings": {
                "data_seconds": 1.0,
                "train_seconds": 30.0,
                "eval_seconds": 10.0,
                "total_seconds": 1800.0,
                "train_images_per_second": 300.0,
            },  # fmt: skip
            "created": "2026-11-22T12:00:00Z",
        }
        if untrained is not None:  # the untrained network's test recall@1, as bench run records
            figures = {**metrics, "recall@1": untrained, "map@r": untrained / 2}
            result["evaluations"].insert(
                0, {"epoch": 0, "iteration": 0, "split": "test", "metrics": figures}
            )
        result["integrity"] = integrity(result)
        validate_result(result)
        return result

    return make


@pytest.fixture()
def reseal():
    """A function sealing an edited result again, as someone who edits one by hand can."""
    from benchmark.results import integrity

    def seal(result: dict) -> dict:
        result["integrity"] = integrity(result)
        return result

    return seal


@pytest.fixture
def unreadable(monkeypatch):
    """deny(path): reading file `path` then fails as it does without read permission (chmod 000
    cannot show that where tests run as root)."""
    denied: set[Path] = set()
    read_bytes = Path.read_bytes

    def guarded(path: Path) -> bytes:
        if path in denied:
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", guarded)
    return denied.add
