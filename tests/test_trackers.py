"""The built-in trackers, driven through their lifecycle hooks as a run calls them.

The CSV log after a real run is tested in test_plugin_isolation.py (that run shares its cost).
"""

from __future__ import annotations

import sys

import pluggy
import pytest
from click.testing import CliRunner

from benchmark import hookspecs
from benchmark.cli import cli
from benchmark.errors import BenchError
from benchmark.trackers import build_trackers
from benchmark.trackers.csv_log import csv_text

CONFIG = {"method": "ms", "dataset": "synth-cub", "seed": 3}
EVALUATIONS = [  # (iteration, split, metrics, train_logs), as bench_epoch_end receives them
    (0, "validation", {"recall@1": 0.25, "map@r": 0.125}, None),
    (50, "validation", {"recall@1": 0.5, "map@r": 0.25}, {"loss": 1.5, "pos_pairs": 7.0}),
    (50, "test", {"recall@1": 0.375, "map@r": 0.1875}, None),
]


def drive(tracker, folder, first: int = 0):
    """Call the tracker's hooks through pluggy as a run of three evaluations does (errors
    propagate), from evaluation `first` on (a resumed session); return the result's path."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(tracker)
    manager.hook.bench_run_start(config=CONFIG, fingerprint="f" * 64, output_dir=folder)
    evaluations = []
    for epoch, (iteration, split, metrics, train_logs) in enumerate(EVALUATIONS):
        trained = {"train": train_logs} if train_logs else {}
        evaluations.append(
            {"epoch": epoch, "iteration": iteration, "split": split, "metrics": metrics, **trained}
        )
        if epoch >= first:
            manager.hook.bench_epoch_end(
                epoch=epoch, iteration=iteration, train_loss=None, metrics=metrics, split=split,
                train_logs=train_logs,
            )  # fmt: skip
    path = folder / "ffffffffffff-seed3-20261122T120000.json"
    manager.hook.bench_run_end(result={"evaluations": evaluations}, path=path)
    return path


def test_csv_text_puts_train_scalars_before_metrics_and_leaves_gaps_empty():
    rows = [
        {"split": "validation", "epoch": 0, "iteration": 0, "recall@1": 0.25},
        {"split": "validation", "epoch": 1, "iteration": 2, "train/loss": 1.5, "recall@1": 0.5},
    ]
    assert csv_text(rows) == (
        "split,epoch,iteration,train/loss,recall@1\nvalidation,0,0,,0.25\nvalidation,1,2,1.5,0.5\n"
    )


def test_unknown_tracker_is_refused_before_any_training():
    result = CliRunner().invoke(cli, ["run", "-p", "ms", "-d", "synth-cub", "--log", "csv,mlfow"])
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --log: unknown tracker 'mlfow'. Available: csv, tensorboard.\n"
    )


def test_tensorboard_missing_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(BenchError) as error:
        build_trackers("csv,tensorboard")
    assert str(error.value) == (
        "--log tensorboard needs the tensorboard package, which is not installed: pip install "
        "tensorboard (or pip install 'dmlbench[tensorboard]'), or leave tensorboard out of --log."
    )


def test_tensorboard_writes_each_evaluation_as_scalars_beside_the_result_file(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ((name, tracker),) = build_trackers("tensorboard")
    path = drive(tracker, tmp_path / "synth-cub" / "ms")
    events = EventAccumulator(str(path.with_suffix(".tensorboard")))
    events.Reload()
    scalars = {
        tag: [(event.step, event.value) for event in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }
    assert name == "tensorboard-log"
    assert scalars == {
        "validation/recall@1": [(0, 0.25), (50, 0.5)],
        "validation/map@r": [(0, 0.125), (50, 0.25)],
        "train/loss": [(50, 1.5)],
        "train/pos_pairs": [(50, 7.0)],
        "test/recall@1": [(50, 0.375)],
        "test/map@r": [(50, 0.1875)],
    }
    assert [p.name for p in path.parent.iterdir()] == [path.with_suffix(".tensorboard").name]


@pytest.mark.parametrize("first", [0, 2], ids=["whole run", "resumed at the test row"])
def test_csv_tracker_renames_its_running_file_beside_the_result(tmp_path, first):
    ((_, tracker),) = build_trackers("csv")
    path = drive(tracker, tmp_path / "synth-cub" / "ms", first)
    assert [p.name for p in path.parent.iterdir()] == [path.with_suffix(".csv").name]
    assert path.with_suffix(".csv").read_text().splitlines() == [
        "split,epoch,iteration,train/loss,train/pos_pairs,recall@1,map@r",
        "validation,0,0,,,0.25,0.125",
        "validation,1,50,1.5,7.0,0.5,0.25",
        "test,2,50,,,0.375,0.1875",
    ]
