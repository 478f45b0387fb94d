"""Resume checkpoints: an interrupted run, resumed, ends exactly as an uninterrupted one."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import benchmark.cli
from benchmark import hookimpl
from benchmark.cli import cli
from benchmark.config import build_run_config
from benchmark.engine.loop import BestWeights
from benchmark.engine.optim import build_scheduler
from benchmark.engine.resume import (
    RunProgress,
    load_resume_point,
    restore_progress,
    resume_path,
    save_resume_point,
)
from benchmark.engine.rng import random_states, restore_random_states
from benchmark.engine.run import RunOptions, Timer, execute
from benchmark.engine.train import TrainState
from benchmark.errors import BenchError, StopRun
from benchmark.plugins import load_plugins
from benchmark.protocol import ScheduleSettings
from benchmark.specs import ImageSet

METHOD = "pml-proxyanchor"  # a criterion with learned proxies, optimised with Adam
OVERRIDES = (
    "train.epochs=3",
    "train.iterations_per_epoch=1",
    "data.classes_per_batch=4",
    "data.samples_per_class=2",
    "data.resize=20",
    "data.crop=16",
)


class TinyCub:
    """synth-cub cut to its first classes, so that a run takes seconds."""

    @hookimpl
    def bench_datasets(self):
        spec = load_plugins(entry_points=False).dataset("synth-cub")

        def load(root, **options):
            splits = spec.load(root, **options)
            test = _first_classes(splits.query, 6)
            return replace(
                splits, train=_first_classes(splits.train, 12), query=test, gallery=test,
                attribute_names=(),
            )  # fmt: skip

        return [replace(spec, name="tiny-cub", load=load)]


def _first_classes(images: ImageSet, count: int) -> ImageSet:
    keep = np.isin(images.labels, np.unique(images.labels)[:count])
    paths = tuple(path for path, kept in zip(images.paths, keep, strict=True) if kept)
    return ImageSet(paths, images.labels[keep])


class StopAfter:
    """Interrupts a run at the evaluation of epoch `epoch`, as a killed job would be."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    @hookimpl
    def bench_epoch_end(self, epoch, split):
        if epoch == self.epoch and split == "validation":
            raise StopRun(f"stopped at epoch {epoch}")


def run_command(data_root, results_dir, *extra):
    args = ["run", "-p", METHOD, "-d", "tiny-cub", "--data-root", str(data_root)]
    args += ["--results-dir", str(results_dir), "--device", "cpu", "--no-progress"]
    args += [arg for override in OVERRIDES for arg in ("--set", override)]
    return CliRunner().invoke(cli, [*args, *extra])


@pytest.fixture()
def tiny_cli(monkeypatch):
    """`bench run` sees the tiny-cub dataset."""
    monkeypatch.setattr(
        benchmark.cli, "registry", lambda *extra: load_plugins([("tiny", TinyCub())])
    )


@pytest.fixture(scope="module")
def runs(data_root, tmp_path_factory):
    """The same run three ways: through, stopped after epoch 1's checkpoint, and resumed."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(
        benchmark.cli, "registry", lambda *extra: load_plugins([("tiny", TinyCub())])
    )
    through_dir, stopped_dir = tmp_path_factory.mktemp("through"), tmp_path_factory.mktemp("cut")
    through = run_command(data_root, through_dir, "--resume", "auto")
    registry = load_plugins([("tiny", TinyCub()), ("stop", StopAfter(2))])
    config = build_run_config(registry, method=METHOD, dataset="tiny-cub", overrides=OVERRIDES)
    with pytest.raises(StopRun, match="stopped at epoch 2"):
        execute(registry, config, RunOptions(data_root, stopped_dir, "cpu", False))
    checkpoint = resume_path(stopped_dir, config)
    kept = shutil.copy(checkpoint, tmp_path_factory.mktemp("kept") / checkpoint.name)
    resumed = run_command(data_root, stopped_dir, "--resume", "auto")
    monkeypatch.undo()
    return config, through, through_dir, resumed, stopped_dir, checkpoint, kept


def results_in(folder):
    return [json.loads(path.read_text()) for path in sorted(folder.rglob("*.json"))]


def test_a_resumed_run_ends_with_the_figures_of_an_uninterrupted_one(runs):
    config, through, through_dir, resumed, stopped_dir, checkpoint, _ = runs
    assert through.exit_code == 0, through.output
    assert resumed.exit_code == 0, resumed.output
    (first,), (second,) = results_in(through_dir), results_in(stopped_dir)
    assert second["evaluations"] == first["evaluations"]  # losses and validation curve too
    assert [(e["epoch"], e["split"]) for e in second["evaluations"]] == [
        (0, "test"), (0, "validation"), (1, "validation"), (2, "validation"), (3, "validation"),
        (first["final"]["epoch"], "test"),
    ]  # fmt: skip
    assert second["final"] == first["final"]
    assert second["resumed"] == [{"epoch": 1, "checkpoint": checkpoint.name}]
    assert "resumed" not in first
    assert not checkpoint.exists()  # removed once the result file is written


def test_resume_auto_says_whether_it_found_a_checkpoint(runs):
    config, through, through_dir, resumed, _, checkpoint, _ = runs
    folder = through_dir / "tiny-cub" / METHOD
    assert f"--resume auto: no checkpoint of this run in {folder}; starting afresh." in (
        through.stderr
    )
    assert f"Resuming from {checkpoint}." in resumed.stderr


def test_the_checkpoint_holds_the_run_state_and_loads_with_weights_only(runs):
    config, *_, kept = runs
    payload = load_resume_point(kept, config)
    assert (payload["epoch"], payload["iteration"], payload["seed"]) == (1, 1, 0)
    # The untrained test figures, then the validation curve so far.
    assert [(e["epoch"], e["split"]) for e in payload["evaluations"]] == [
        (0, "test"), (0, "validation"), (1, "validation"),
    ]  # fmt: skip
    proxies = payload["criterion"]["loss.proxies"]
    assert proxies.shape == (9, 64)  # 12 classes less a quarter kept for validation
    moments = [s["exp_avg"].shape for s in payload["optimizer"]["state"].values()]
    assert (9, 64) in moments  # Adam's state of the proxies
    assert payload["scheduler"]["last_epoch"] == 1
    assert payload["best"]["metric"] == "recall@1" and payload["best"]["epoch"] in (0, 1)
    assert set(payload["random"]) == {"python", "numpy", "torch", "cuda"}


def test_a_checkpoint_of_another_configuration_is_refused(runs, data_root, tmp_path, tiny_cli):
    config, *_, kept = runs
    changed = run_command(
        data_root, tmp_path, "--resume", str(kept), "--set", "train.optimizer.lr=0.01"
    )
    assert changed.exit_code == 2
    other = build_run_config(
        load_plugins([("tiny", TinyCub())]), method=METHOD, dataset="tiny-cub",
        overrides=(*OVERRIDES, "train.optimizer.lr=0.01"),
    )  # fmt: skip
    assert (
        f"--resume: checkpoint {kept} belongs to configuration {config.fingerprint}, but this "
        f"run's is {other.fingerprint}." in changed.stderr
    )
    assert not tmp_path.joinpath("tiny-cub").exists()  # refused before any work


def test_a_checkpoint_of_another_seed_or_kind_is_refused(runs):
    config, _, through_dir, *_, kept = runs
    with pytest.raises(BenchError, match="is of seed 0, but this run's is 1; pass --seed 0"):
        load_resume_point(kept, replace(config, seed=1))
    (final,) = through_dir.rglob("*.pt")  # the final weights, for re-scoring
    with pytest.raises(BenchError, match=r"is not a resume checkpoint \(those end in"):
        load_resume_point(final, config)


def test_resume_path_is_refused_with_several_seeds(tmp_path):
    result = CliRunner().invoke(
        cli, ["run", "-p", "ms", "-d", "synth-cub", "--seeds", "2", "--resume", "x.resume.pt"]
    )
    assert result.exit_code == 2
    assert "--resume x.resume.pt continues one run; with --seeds or --folds pass --resume " in (
        result.stderr
    )


def test_random_states_round_trip_through_a_weights_only_file(tmp_path):
    generator = torch.Generator().manual_seed(5)
    torch.save(random_states(generator), tmp_path / "states.pt")

    def draw():
        return (random.random(), np.random.rand(), torch.rand(1).item(),
                torch.rand(1, generator=generator).item())  # fmt: skip

    first = draw()
    restore_random_states(torch.load(tmp_path / "states.pt", weights_only=True), generator)
    assert draw() == first


class CountingCriterion(torch.nn.Module):
    """A criterion with a parameter, a buffer and state outside both (get_extra_state)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(3))
        self.register_buffer("seen", torch.zeros(3))
        self.calls = 0

    def forward(self, embeddings):
        self.calls += 1
        self.seen += 1
        return (embeddings * self.scale).pow(2).mean()

    def get_extra_state(self):
        return {"calls": self.calls}

    def set_extra_state(self, state) -> None:
        self.calls = state["calls"]


def tiny_progress(seed: int) -> RunProgress:
    torch.manual_seed(seed)
    model, criterion = torch.nn.Linear(4, 3), CountingCriterion()
    optimizer = torch.optim.Adam([*model.parameters(), *criterion.parameters()], lr=0.1)
    scheduler = build_scheduler(optimizer, 10, ScheduleSettings("cosine"))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    state = TrainState(model, criterion, optimizer, scheduler, scaler, torch.device("cpu"), False)
    return RunProgress(state, BestWeights("recall@1"), [], Timer(), None, [])


def train(progress: RunProgress, steps: int) -> list[float]:
    state, losses = progress.state, []
    for _ in range(steps):
        loss = state.criterion(state.model(torch.randn(8, 4)))
        state.optimizer.zero_grad()
        loss.backward()
        state.optimizer.step()
        state.scheduler.step()
        losses.append(loss.item())
    return losses


def test_state_outside_a_criterion_state_dict_round_trips(registry, tmp_path):
    config = build_run_config(registry, method="ms", dataset="synth-cub")
    expected = train(tiny_progress(0), 6)
    cut = tiny_progress(0)
    train(cut, 3)
    cut.best.offer(1, {"recall@1": 0.25}, cut.state)
    save_resume_point(tmp_path / "x.resume.pt", cut, 1, config)
    resumed = tiny_progress(1)  # other initial weights and generator states
    restore_progress(load_resume_point(tmp_path / "x.resume.pt", config), resumed)
    assert train(resumed, 3) == expected[3:]
    assert resumed.state.criterion.calls == 6 and resumed.state.criterion.seen.tolist() == [6] * 3
    assert (resumed.best.epoch, resumed.best.value) == (1, 0.25)
