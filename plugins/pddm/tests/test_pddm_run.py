"""PDDM through the harness: the unit is optimised, checkpointed, restored, and can re-rank."""

from __future__ import annotations

import pytest
import torch
from bench_pddm import PDDMLoss

from benchmark.config import build_run_config
from benchmark.engine.checkpoint import load_checkpoint
from benchmark.engine.optim import build_optimizer
from benchmark.engine.rescore import rescore
from benchmark.engine.run import RunOptions, execute
from benchmark.protocol import OptimizerSettings, ScheduleSettings, TrainSettings

FAST = (
    "train.epochs=1",
    "train.iterations_per_epoch=4",
    "data.classes_per_batch=4",
    "rerank_top_k=4",
)
RERANKED = ("rerank@4/recall@1", "rerank@4/recall@2", "rerank@4/recall@4")


@pytest.fixture(scope="module")
def pddm_run(registry, data_root, tmp_path_factory):
    config = build_run_config(registry, method="pddm", dataset="synth-cub", overrides=FAST)
    options = RunOptions(data_root, tmp_path_factory.mktemp("results"), "cpu", False)
    return execute(registry, config, options)


def test_the_unit_parameters_are_in_the_optimizer():
    criterion = PDDMLoss(embedding_dim=8, alpha=0.5, beta=1.0, lam=0.5)
    model = torch.nn.Module()
    model.backbone, model.heads = torch.nn.Linear(2, 2), torch.nn.Linear(2, 8)
    train = TrainSettings(
        epochs=1, iterations_per_epoch=1, optimizer=OptimizerSettings("adam", 1e-3, 0.0),
        backbone_lr_mult=1.0, schedule=ScheduleSettings("constant"), amp=False,
    )  # fmt: skip
    optimizer = build_optimizer(model, criterion, train)
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in criterion.unit.parameters()} <= optimised


def test_re_ranked_figures_are_reported_beside_the_standard_ones(pddm_run):
    result, _ = pddm_run
    for evaluation in result["evaluations"]:
        metrics = evaluation["metrics"]
        assert {"recall@1", "recall@8", *RERANKED} <= set(metrics)
        assert "rerank@4/recall@8" not in metrics  # K above top_k is not defined
        assert 0.0 <= metrics["rerank@4/recall@1"] <= metrics["recall@4"]


def test_the_checkpoint_holds_the_unit(pddm_run):
    _, path = pddm_run
    saved = load_checkpoint(path.with_suffix(".pt"))["criterion"]
    fresh = PDDMLoss(embedding_dim=64, alpha=0.5, beta=1.0, lam=0.5).state_dict()
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in fresh.items()}


def test_reloading_the_checkpoint_restores_the_unit(registry, pddm_run, data_root, tmp_path):
    result, path = pddm_run
    _, figures = rescore(registry, path, data_root, "cpu")
    final = result["final"]["metrics"]
    for name in ("recall@1", *RERANKED):
        assert figures[name] == pytest.approx(final[name], abs=1e-9), name
    # The re-ranked figure does depend on the saved unit: reversing its score changes it.
    payload = load_checkpoint(path.with_suffix(".pt"))
    for key in ("unit.score.weight", "unit.score.bias"):
        payload["criterion"][key] = -payload["criterion"][key]
    reversed_path = tmp_path / "reversed.pt"
    torch.save(payload, reversed_path)
    _, reversed_figures = rescore(registry, reversed_path, data_root, "cpu")
    assert reversed_figures["recall@1"] == pytest.approx(final["recall@1"], abs=1e-9)
    assert reversed_figures["rerank@4/recall@1"] != final["rerank@4/recall@1"]
