"""`bench new-plugin`: names and folders it refuses, and the plugin it writes: it registers,
passes the conformance kit, installs, passes its own tests, `bench check` and `bench run`."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmark import cli
from benchmark.errors import BenchError
from benchmark.plugins import load_plugins
from benchmark.scaffold import write_plugin
from benchmark.testing import format_results, run_checks


@pytest.mark.parametrize("name", ["My-Loss", "1loss", "my loss", "my--loss", "loss-", "x" * 41])
def test_unusable_names_are_refused(name, tmp_path):
    with pytest.raises(BenchError, match=f"Plugin name '{name}' is not usable: use lowercase"):
        write_plugin(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_refused_with_exit_status_2(tmp_path):
    (tmp_path / "my-loss").mkdir()
    outcome = CliRunner().invoke(cli.cli, ["new-plugin", "my-loss", "--dir", str(tmp_path)])
    assert outcome.exit_code == 2
    assert f"{tmp_path / 'my-loss'} already exists: choose another name" in outcome.output
    assert list((tmp_path / "my-loss").iterdir()) == []


def test_a_missing_dir_is_created_with_its_parents(tmp_path):
    parent = tmp_path / "new" / "plugins"
    outcome = CliRunner().invoke(cli.cli, ["new-plugin", "my-loss", "--dir", str(parent)])
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stdout.startswith(f"Wrote the method plugin 'my-loss' to {parent / 'my-loss'}.")
    assert sorted(path.name for path in parent.iterdir()) == ["my-loss"]
    assert (parent / "my-loss" / "pyproject.toml").is_file()


def test_a_dir_under_a_file_is_refused_with_exit_status_2(tmp_path):
    (tmp_path / "file").write_text("")
    outcome = CliRunner().invoke(
        cli.cli, ["new-plugin", "my-loss", "--dir", str(tmp_path / "file" / "x")]
    )
    assert outcome.exit_code == 2
    assert outcome.stderr.startswith(f"Error: --dir {tmp_path / 'file' / 'x'}: cannot create it (")


def test_the_package_has_everything_a_plugin_needs(tmp_path):
    outcome = CliRunner().invoke(cli.cli, ["new-plugin", "my-loss", "--dir", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    root = tmp_path / "my-loss"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "README.md",
        "bench_my_loss/__init__.py",
        "bench_my_loss/loss.py",
        "bench_my_loss/protocol.json",
        "conftest.py",
        "pyproject.toml",
        "tests/test_bench_my_loss.py",
    ]
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.dmlbench]\nmy-loss = "bench_my_loss"' in pyproject
    assert 'name = "bench-my-loss"' in pyproject
    readme = (root / "README.md").read_text()
    for field in (
        "| paper |",
        "| reference implementation compared against |",
        "| fidelity level |",
    ):
        assert field in readme
    assert json.loads((root / "bench_my_loss/protocol.json").read_text())["name"] == "my-loss-smoke"


@pytest.fixture()
def generated(tmp_path, monkeypatch):
    """A freshly generated plugin, importable from its folder (not installed)."""
    root = write_plugin("scaffolded", tmp_path)
    monkeypatch.syspath_prepend(str(root))
    yield root, importlib.import_module("bench_scaffolded")
    for name in [m for m in sys.modules if m.startswith("bench_scaffolded")]:
        del sys.modules[name]


def test_the_generated_plugin_registers_and_passes_the_quick_checks(generated, data_root):
    _, module = generated
    registry = load_plugins([("scaffolded", module)], entry_points=False)
    assert [info.errors for info in registry.plugins] == [[], []]
    assert registry.protocol("scaffolded-smoke")["kind"] == "paper"
    results = run_checks("scaffolded", data_root, registry=registry, quick=True)
    assert all(result.passed for result in results), format_results("scaffolded", results)


def throwaway_venv(folder: Path) -> Path:
    """A venv whose packages are the running one's (a .pth file adds its site-packages), so
    installing into it leaves the project's venv untouched. Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    running = sysconfig.get_paths()["purelib"]
    Path(purelib, "running-venv.pth").write_text(f"import site; site.addsitedir({running!r})\n")
    return python


def test_the_scaffold_round_trip(tmp_path, data_root):
    """generate -> pip install into a throwaway venv -> its tests -> bench check -> bench run
    (which find the plugin through its entry point: $BENCH_PLUGINS names it alone)."""
    env = {**os.environ, "BENCH_PLUGINS": "round-trip", "BENCH_DATA": str(data_root)}

    def run(*command: str, cwd: Path = tmp_path) -> str:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    python = str(throwaway_venv(tmp_path / "venv"))
    plugin = write_plugin("round-trip", tmp_path)
    run(
        python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(plugin)
    )
    assert "4 passed" in run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=plugin)
    checked = run(python, "-m", "benchmark", "check", "round-trip", "--steps", "12")
    assert checked.splitlines()[-1] == "9 of 9 checks passed."
    run(
        python, "-m", "benchmark", "run", "--plugin", "round-trip", "--dataset", "synth-cub",
        "--set", "train.epochs=1", "--set", "train.iterations_per_epoch=2",
        "--set", "data.classes_per_batch=4", "--set", "data.resize=32", "--set", "data.crop=28",
        "--no-progress", "--no-save-checkpoint",
        "--results-dir", str(tmp_path / "results"),
    )  # fmt: skip
    (result,) = (tmp_path / "results" / "synth-cub" / "round-trip").glob("*.json")
    written = json.loads(result.read_text())
    assert written["method"]["plugin"] == "round-trip"
    assert written["method"]["fidelity"] == "reconstructed"
