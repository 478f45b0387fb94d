"""Fixtures shared by the core's tests (tests/) and the bundled plugins' (plugins/*/tests).

Tests are offline and load only the bundled plugins, never others that happen to be installed.
"""

from __future__ import annotations

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
