"""One broken plugin never takes the command line or a run down (issue 11, plugin isolation).

The broken plugins are real entry points: a distribution's *.dist-info folder on sys.path.
"""

from __future__ import annotations

import csv
import json
import re
import sys
import textwrap

import pytest
from click.testing import CliRunner

from benchmark import hookimpl
from benchmark.cli import cli
from benchmark.errors import StopRun
from benchmark.plugins import load_plugins

BROKEN = {
    "bench_broken_import": "raise ImportError(\"No module named 'missing_dependency'\")\n",
    "bench_broken_methods": """
        from benchmark import hookimpl

        @hookimpl
        def bench_methods():
            raise RuntimeError("boom in bench_methods")
        """,
    "bench_broken_epoch": """
        from benchmark import hookimpl

        calls = []

        @hookimpl
        def bench_epoch_end(epoch, split):
            calls.append((epoch, split))
            raise ValueError(f"boom at evaluation {len(calls)}")
        """,
}
ENTRY_POINTS = """\
[dmlbench]
broken-import = bench_broken_import
broken-methods = bench_broken_methods
broken-epoch = bench_broken_epoch
"""
EPOCH = {"iteration": 0, "train_loss": None, "metrics": {}, "split": "test", "train_logs": None}
# Small images: the three evaluations of synth-cub are most of the run's time.
TINY = ["train.epochs=1", "train.iterations_per_epoch=2", "data.classes_per_batch=4"]
TINY += ["data.resize=32", "data.crop=28"]


@pytest.fixture(scope="module")
def broken_installed(tmp_path_factory):
    """bench-broken 0.1.0 installed beside the bundled plugins and selected by BENCH_PLUGINS."""
    site = tmp_path_factory.mktemp("site")
    for module, source in BROKEN.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / "bench_broken-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-broken\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        patch.setenv("BENCH_PLUGINS", "ms,broken-import,broken-methods,broken-epoch")
        yield
        for module in BROKEN:
            sys.modules.pop(module, None)


@pytest.fixture(scope="module")
def tiny_run(broken_installed, data_root, tmp_path_factory):
    """`bench run -p ms -d synth-cub --log csv` beside the broken plugins: (output, result dir)."""
    results = tmp_path_factory.mktemp("results")
    args = ["run", "-p", "ms", "-d", "synth-cub", "--data-root", str(data_root), "--device"]
    args += ["cpu", "--results-dir", str(results), "--no-progress", "--log", "csv"]
    return CliRunner().invoke(cli, args + [f"--set={item}" for item in TINY]), results


def test_bench_plugins_reports_the_broken_ones_with_their_errors(broken_installed):
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:] if line}
    assert rows["broken-import"][:5] == ["broken-import", "0.1.0", "entry", "point"] + [
        "bench_broken_import"
    ]
    assert [rows[name][-1] for name in ("broken-import", "broken-methods", "broken-epoch")] == [
        "broken",
        "broken",
        "ok",
    ]
    assert rows["ms"][-1] == "ok"
    assert result.stdout.split("Problems:\n")[1].splitlines() == [
        "broken-import: failed to load: ImportError: No module named 'missing_dependency'",
        "broken-methods: bench_methods raised RuntimeError: boom in bench_methods",
    ]


def test_bench_list_methods_works_and_warns_once_per_broken_plugin(broken_installed):
    result = CliRunner().invoke(cli, ["list", "methods"])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()[2:]] == ["ms"]
    assert result.stderr.splitlines() == [
        "warning: plugin 'broken-import': failed to load: ImportError: No module named "
        "'missing_dependency' (see `bench plugins`)",
        "warning: plugin 'broken-methods': bench_methods raised RuntimeError: boom in "
        "bench_methods (see `bench plugins`)",
    ]


def test_a_run_goes_on_when_a_lifecycle_hook_raises_and_warns_once(tiny_run):
    output, results = tiny_run
    assert output.exit_code == 0, output.output
    warnings = [line for line in output.stderr.splitlines() if "broken-epoch" in line]
    assert warnings == [
        "warning: plugin 'broken-epoch': bench_epoch_end raised ValueError: boom at evaluation "
        "1; the run goes on (its later errors are not shown)"
    ]
    calls = sys.modules["bench_broken_epoch"].calls
    assert [split for _, split in calls] == ["test", "validation", "validation", "test"]
    (written,) = (results / "synth-cub" / "ms").glob("*.json")
    assert output.stdout.splitlines()[-1] == f"Result written to {written}"


def test_csv_log_holds_a_row_per_evaluation_of_the_result_file(tiny_run):
    output, results = tiny_run
    (written,) = (results / "synth-cub" / "ms").glob("*.json")
    evaluations = json.loads(written.read_text())["evaluations"]
    with written.with_suffix(".csv").open() as handle:
        rows = list(csv.DictReader(handle))
    metrics = list(evaluations[0]["metrics"])
    train = [f"train/{key}" for key in evaluations[2]["train"]]
    columns = list(rows[0])
    assert columns[: 3 + len(train)] == ["split", "epoch", "iteration", *train]
    assert sorted(columns[3 + len(train) :]) == sorted(metrics)
    assert "train/loss" in train and len(rows) == len(evaluations) == 4
    for row, entry in zip(rows, evaluations, strict=True):
        assert (row["split"], int(row["epoch"]), int(row["iteration"])) == (
            entry["split"],
            entry["epoch"],
            entry["iteration"],
        )
        assert {key: float(row[key]) for key in metrics} == entry["metrics"]
        logged = {key: float(row[f"train/{key}"]) for key in entry.get("train", {})}
        assert logged == entry.get("train", {})
        assert all(row[key] == "" for key in train if key[6:] not in entry.get("train", {}))
    assert not list(written.parent.glob("*.running.csv"))  # renamed at the run's end


class Recorder:
    def __init__(self):
        self.calls = []

    @hookimpl
    def bench_epoch_end(self, epoch):
        self.calls.append(epoch)


class Raising:
    def __init__(self, error: BaseException):
        self.error = error

    @hookimpl
    def bench_epoch_end(self, epoch):
        raise self.error


def test_notify_calls_every_plugin_and_warns_once_about_a_raising_one(capsys):
    recorder = Recorder()
    registry = load_plugins(
        [("raising", Raising(RuntimeError("no server"))), ("recorder", recorder)],
        entry_points=False,
    )
    for epoch in (0, 1):
        registry.notify("bench_epoch_end", epoch=epoch, **EPOCH)
    assert recorder.calls == [0, 1]
    raising = next(p for p in registry.plugins if p.name == "raising")
    assert raising.errors == ["bench_epoch_end raised RuntimeError: no server"]
    assert capsys.readouterr().err.splitlines() == [
        "warning: plugin 'raising': bench_epoch_end raised RuntimeError: no server; the run "
        "goes on (its later errors are not shown)"
    ]


@pytest.mark.parametrize("error", [StopRun("time budget spent"), KeyboardInterrupt()])
def test_stop_run_and_keyboard_interrupt_from_a_hook_stop_the_run(error):
    registry = load_plugins([("stopper", Raising(error))], entry_points=False)
    with pytest.raises(type(error)):
        registry.notify("bench_epoch_end", epoch=1, **EPOCH)
    assert registry.plugins[-1].errors == []


def test_a_plugin_rejected_half_way_leaves_none_of_its_hooks():
    class HalfValid:
        @hookimpl
        def bench_datasets(self):  # registered first: pluggy goes by name
            return []

        @hookimpl
        def bench_methods(self, unknown_argument):
            return []

    registry = load_plugins([("half", HalfValid())], entry_points=False)
    assert registry.plugins[-1].errors[0].startswith("failed to load: PluginValidationError:")
    impls = registry.manager.hook.bench_datasets.get_hookimpls()
    assert [impl.plugin_name for impl in impls] == ["builtin"]


def test_a_registration_hook_returning_no_list_is_reported():
    class Single:
        @hookimpl
        def bench_methods(self):
            return "ms"

    registry = load_plugins([("single", Single())], entry_points=False)
    assert registry.plugins[-1].errors == ["bench_methods returned str, not a list"]


def test_bench_trace_plugins_logs_each_hook_call(monkeypatch, capsys):
    monkeypatch.setenv("BENCH_TRACE_PLUGINS", "1")
    registry = load_plugins([("recorder", Recorder())], entry_points=False)
    registry.notify("bench_epoch_end", epoch=3, **EPOCH)
    lines = capsys.readouterr().err.splitlines()
    pattern = re.compile(r"plugin trace: (\S+) (bench_\w+) \d+\.\d\d ms$")
    assert [pattern.match(line).groups() for line in lines] == [
        ("builtin", "bench_datasets"),
        ("builtin", "bench_backbones"),
        ("builtin", "bench_protocols"),
        ("recorder", "bench_epoch_end"),
    ]


def test_a_name_in_bench_plugins_that_no_plugin_has_is_reported(monkeypatch):
    monkeypatch.setenv("BENCH_PLUGINS", "ms,mss")
    registry = load_plugins()
    assert [(p.name, p.source) for p in registry.plugins] == [
        ("builtin", "built-in"),
        ("ms", "entry point bench_ms"),
        ("mss", "$BENCH_PLUGINS"),
    ]
    (error,) = registry.plugins[-1].errors
    assert error.startswith(
        "not installed: no entry point of group 'dmlbench' has this name. Did you mean 'ms'? "
        "Available: "
    )
    assert error.endswith(". Fix BENCH_PLUGINS or pip install the plugin.")
    assert "ms" in registry.methods
