from __future__ import annotations

import json

import pytest
import torch

from benchmark import hookimpl
from benchmark.config import build_run_config
from benchmark.engine.checkpoint import load_checkpoint
from benchmark.engine.optim import lr_factor
from benchmark.engine.run import RunOptions, execute
from benchmark.errors import BenchError
from benchmark.plugins import load_plugins
from benchmark.protocol import ScheduleSettings
from benchmark.results import read_result, validate_result, write_result

FAST = ("train.epochs=1", "train.iterations_per_epoch=3", "data.classes_per_batch=4")
SELECTION = ("train.epochs=3", "train.iterations_per_epoch=2", "data.classes_per_batch=4")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    @hookimpl
    def bench_run_start(self, config, fingerprint):
        self.calls.append(("start", config["method"], fingerprint))

    @hookimpl
    def bench_epoch_end(self, epoch, iteration, train_loss, metrics, split):
        self.calls.append(
            ("epoch", split, epoch, iteration, train_loss is None, "recall@1" in metrics)
        )

    @hookimpl
    def bench_run_end(self, result, path):
        self.calls.append(("end", path.exists()))


@pytest.fixture(scope="module")
def short_run(data_root, tmp_path_factory):
    recorder = Recorder()
    registry = load_plugins([("recorder", recorder)])
    config = build_run_config(registry, method="ms", dataset="synth-cub", overrides=FAST, seed=3)
    results_dir = tmp_path_factory.mktemp("results")
    result, path = execute(registry, config, RunOptions(data_root, results_dir, "cpu", False))
    return config, result, path, recorder, results_dir


def test_a_short_run_writes_one_valid_result_file(short_run):
    config, result, path, _, results_dir = short_run
    assert path.parent == results_dir / "synth-cub" / "ms"
    assert path.name.startswith(f"{config.fingerprint[:12]}-seed3-")
    checkpoint = path.with_suffix(".pt")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, checkpoint.name]
    assert result["checkpoint"] == checkpoint.name
    assert read_result(path) == json.loads(json.dumps(result))
    assert result["fingerprint"] == config.fingerprint
    assert result["method"]["plugin"] == "ms" and result["method"]["fidelity"] == "faithful"


def test_the_result_holds_the_untrained_test_figures_validation_curves_and_one_test_evaluation(
    short_run,
):
    _, result, _, _, _ = short_run
    assert [(e["split"], e["epoch"], e["iteration"]) for e in result["evaluations"]] == [
        ("test", 0, 0),  # the untrained network: a baseline, it chooses nothing
        ("validation", 0, 0),
        ("validation", 1, 3),
        ("test", result["final"]["epoch"], 3 if result["final"]["epoch"] == 1 else 0),
    ]
    final = result["final"]
    assert (
        final["selection"] == "validation"
        and final["metrics"] == result["evaluations"][3]["metrics"]
    )
    assert {"recall@1", "recall@2", "recall@4", "recall@8", "map@r"} <= set(final["metrics"])
    assert 0.0 <= final["metrics"]["recall@1"] <= final["metrics"]["recall@8"] <= 1.0
    assert result["evaluations"][2]["train"]["loss"] > 0
    assert "train" not in result["evaluations"][0]
    # Every evaluation has its 95% half-widths; the choice says which epochs were near-ties.
    assert all(0 < e["intervals"]["recall@1"] < 1 for e in result["evaluations"])
    assert set(final["near_ties"]) <= {0, 1} - {final["epoch"]}
    counts = result["dataset"]["counts"]
    assert counts["train_classes"] == 50 and counts["query"] == counts["gallery"]
    # A quarter of the 50 training classes is held out for validation (cpu-smoke).
    assert counts["validation_query"] == counts["validation_gallery"]
    assert counts["train_used"] + counts["validation_query"] == counts["train"]


def test_lifecycle_hooks_are_called_in_order(short_run):
    config, result, _, recorder, _ = short_run
    chosen = [c for c in recorder.calls if c[:2] == ("epoch", "test")][1:]
    assert recorder.calls == [
        ("start", "ms", config.fingerprint),
        ("epoch", "test", 0, 0, True, True),
        ("epoch", "validation", 0, 0, True, True),
        ("epoch", "validation", 1, 3, False, True),
        *chosen,
        ("end", True),
    ]
    assert len(chosen) == 1
    # The hook sees the chosen weights' epoch and iteration, as the result file does.
    test = result["evaluations"][-1]
    assert chosen[0][2:4] == (test["epoch"], test["iteration"])


def test_the_same_seed_gives_identical_numbers_on_the_cpu(short_run, data_root, tmp_path):
    config, first, _, _, _ = short_run
    registry = load_plugins()
    second, _ = execute(registry, config, RunOptions(data_root, tmp_path, "cpu", False))
    assert second["evaluations"] == first["evaluations"]


def test_an_invalid_result_is_not_written(short_run, tmp_path):
    _, result, _, _, _ = short_run
    broken = {**result, "fingerprint": "not-a-hash"}
    with pytest.raises(BenchError, match="result: invalid value at 'fingerprint'"):
        write_result(broken, tmp_path / "broken.json")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BenchError, match="invalid value at 'final'"):
        validate_result({**result, "final": {"epoch": 1}})


@pytest.mark.parametrize(
    ("schedule", "iteration", "expected"),
    [
        ({"name": "constant"}, 50, 1.0),
        ({"name": "multistep", "milestones": [0.4, 0.8], "gamma": 0.1}, 39, 1.0),
        ({"name": "multistep", "milestones": [0.4, 0.8], "gamma": 0.1}, 40, 0.1),
        ({"name": "multistep", "milestones": [0.4, 0.8], "gamma": 0.1}, 99, 0.01),
        ({"name": "cosine"}, 50, 0.5),
        ({"name": "cosine", "warmup_iterations": 10}, 4, 0.5),
    ],
)
def test_learning_rate_schedule(schedule, iteration, expected):
    assert lr_factor(iteration, 100, ScheduleSettings(**schedule)) == pytest.approx(expected)


def test_the_checkpoint_restores_the_trained_weights(short_run):
    config, result, path, _, _ = short_run
    payload = load_checkpoint(path.with_suffix(".pt"))
    assert payload["fingerprint"] == config.fingerprint
    assert payload["config"] == json.loads(json.dumps(result["config"]))
    assert "heads.embedding.linear.weight" in payload["model"]


def test_a_foreign_checkpoint_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(
        BenchError,
        match=f"Checkpoint {path} lacks config, criterion, "
        "fingerprint, model: it was not written by `bench run`.",
    ):
        load_checkpoint(path)


def test_dataset_options_reach_the_loader(registry, data_root):
    from benchmark.engine.run import load_splits

    def protocol(certainty):
        return build_run_config(
            registry, method="ms", dataset="synth-cub",
            overrides=[f"data.dataset_options.min_certainty={certainty}"],
        ).protocol  # fmt: skip

    spec = registry.dataset("synth-cub")
    strict = load_splits(spec, protocol(4), data_root)
    loose = load_splits(spec, protocol(1), data_root)
    assert loose.train.attribute_mask.all()
    assert strict.train.attribute_mask.sum() < loose.train.attribute_mask.sum()


class PlainCub:
    """synth-cub with its attributes removed, as a dataset a plugin might register."""

    @hookimpl
    def bench_datasets(self):
        from dataclasses import replace

        spec = load_plugins(entry_points=False).dataset("synth-cub")

        def load(root, **options):
            splits = spec.load(root, **options)
            train, test = (
                replace(images, attributes=None, attribute_mask=None)
                for images in (splits.train, splits.query)  # query is gallery (retrieval)
            )
            return replace(splits, train=train, query=test, gallery=test, attribute_names=())

        return [replace(spec, name="plain-cub", load=load)]


def test_a_method_with_an_attribute_head_fails_early_on_a_dataset_without_attributes(
    data_root, tmp_path
):
    registry = load_plugins([("plain", PlainCub())])
    config = build_run_config(registry, method="sgml", dataset="plain-cub", overrides=FAST)
    with pytest.raises(
        BenchError,
        match="Method 'sgml' trains an attribute head, but dataset 'plain-cub' loaded no "
        "attributes",
    ):
        execute(registry, config, RunOptions(data_root, tmp_path / "results", "cpu", False))
    assert not (tmp_path / "results").exists()


def run_with(registry, data_root, tmp_path, select_on=None):
    recorder = Recorder()
    registry = load_plugins([("recorder", recorder)])
    config = build_run_config(
        registry, method="ms", dataset="synth-cub", overrides=SELECTION, select_on=select_on
    )
    result, path = execute(registry, config, RunOptions(data_root, tmp_path, "cpu", False))
    return result, path, [call[1:3] for call in recorder.calls if call[0] == "epoch"]


def test_the_test_split_is_evaluated_only_at_the_end_by_default(registry, data_root, tmp_path):
    result, path, evaluated = run_with(registry, data_root, tmp_path)
    # Before training, the untrained network's test figures: a baseline that chooses nothing.
    assert evaluated[:-1] == [("test", 0), *(("validation", epoch) for epoch in range(4))]
    assert evaluated[-1][0] == "test"
    # The chosen weights are those of the best validation evaluation (ties: the earliest).
    curve = [e["metrics"]["recall@1"] for e in result["evaluations"] if e["split"] == "validation"]
    assert result["final"]["epoch"] == curve.index(max(curve)) == evaluated[-1][1]
    # ... and they are what the checkpoint holds: re-scoring gives the final test figures.
    from benchmark.engine.rescore import rescore

    _, figures = rescore(load_plugins(), path, data_root, "cpu")
    assert figures["recall@1"] == pytest.approx(result["final"]["metrics"]["recall@1"], abs=1e-12)


def test_select_on_test_evaluates_the_test_split_throughout_and_says_so(
    registry, data_root, tmp_path
):
    result, _, evaluated = run_with(registry, data_root, tmp_path, select_on="test")
    assert evaluated == [("test", epoch) for epoch in range(4)]
    assert result["final"]["selection"] == "test"
    assert "eval.selection=test" in result["config"]["overrides"]
    curve = [e["metrics"]["recall@1"] for e in result["evaluations"]]
    assert result["final"]["metrics"]["recall@1"] == max(curve)


def test_select_on_last_keeps_the_last_weights(registry, data_root, tmp_path):
    result, _, evaluated = run_with(registry, data_root, tmp_path, select_on="last")
    assert evaluated == [("test", 0), *(("validation", e) for e in range(4)), ("test", 3)]
    assert result["final"]["selection"] == "last" and result["final"]["epoch"] == 3


def test_selecting_on_a_validation_split_the_protocol_lacks_is_refused(registry, tmp_path):
    protocol = json.loads(json.dumps(registry.protocols["cpu-smoke"]))
    del protocol["eval"]["validation"]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(protocol))
    with pytest.raises(BenchError, match="selects on the validation split but defines none"):
        build_run_config(registry, method="ms", dataset="synth-cub", protocol=str(path))


def test_the_criterion_runs_without_autocast_on_float32_outputs(monkeypatch):
    from benchmark.engine import train
    from benchmark.engine.train import TrainState, train_step
    from benchmark.specs import Batch

    seen = {}

    class Recording(torch.nn.Module):
        def forward(self, outputs, batch):
            seen["autocast"] = torch.is_autocast_enabled("cpu")
            seen["dtype"] = outputs["embedding"].dtype
            return outputs["embedding"].square().mean()

    # Mixed precision is off on the CPU; stand a bfloat16 autocast in for the GPU's.
    monkeypatch.setattr(
        train, "autocast", lambda device, enabled: torch.autocast("cpu", torch.bfloat16)
    )
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    wrapped = lambda images: {"embedding": model(images)}  # noqa: E731
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    state = TrainState(
        type("M", (), {"__call__": staticmethod(wrapped)})(), Recording(), optimizer,
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0),
        torch.amp.GradScaler("cpu", enabled=False), torch.device("cpu"), True,
    )  # fmt: skip
    batch = Batch(torch.randn(2, 3, 2, 2), torch.tensor([0, 1]), torch.arange(2))
    logs = train_step(state, batch)
    assert seen == {"autocast": False, "dtype": torch.float32}
    assert logs["loss"] > 0 and state.iteration == 1


def test_a_non_finite_loss_stops_the_epoch_naming_its_iteration():
    from benchmark.engine.train import SYNC_EVERY, TrainState, train_epoch
    from benchmark.specs import Batch

    class NanAtThird(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, outputs, batch):
            self.calls += 1
            loss = outputs["embedding"].square().mean()
            return loss * float("nan") if self.calls == 3 else loss

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    wrapped = type("M", (torch.nn.Module,), {"forward": lambda self, x: {"embedding": model(x)}})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = NanAtThird()
    state = TrainState(
        wrapped(), criterion, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1),
        torch.amp.GradScaler("cpu", enabled=False), torch.device("cpu"), False, iteration=10,
    )  # fmt: skip
    batch = Batch(torch.randn(2, 3, 2, 2), torch.tensor([0, 1]), torch.arange(2))
    loader = type("L", (list,), {})([batch] * 8)
    loader.dataset = type("D", (), {"skipped": set()})()
    with pytest.raises(BenchError, match=r"The loss became nan at iteration 12; lower"):
        train_epoch(state, loader, 1, False)
    assert criterion.calls == min(8, SYNC_EVERY)  # checked at the epoch's end, not every step
