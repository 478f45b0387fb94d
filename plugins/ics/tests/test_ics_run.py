"""CSQ and ICS through the harness on synth-coco: hash head, hashing metrics, saved weights."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark.config import build_run_config
from benchmark.engine.checkpoint import load_checkpoint
from benchmark.engine.rescore import rescore
from benchmark.engine.run import RunOptions, execute
from benchmark.errors import BenchError

FAST = ("train.epochs=1", "train.iterations_per_epoch=4", "model.hash.bits=16")


@pytest.fixture(scope="module")
def ics_run(registry, coco_root, tmp_path_factory):
    config = build_run_config(registry, method="ics", dataset="synth-coco", overrides=FAST)
    options = RunOptions(coco_root, tmp_path_factory.mktemp("results"), "cpu", False)
    return execute(registry, config, options)


def test_a_hashing_run_reports_the_hashing_metrics(ics_run):
    result, _ = ics_run
    metrics = result["final"]["metrics"]
    assert {"map@k", "map@k_index_order", "precision@radius2", "recall@radius2"} <= set(metrics)
    assert result["dataset"]["counts"]["train_classes"] == 20  # label columns, not values
    assert result["method"]["fidelity"] == "reconstructed"


def test_the_result_summarises_centres_and_learned_weights(ics_run):
    result, _ = ics_run
    summary = result["criterion_summary"]
    assert summary["centres"] == {
        "construction": "hadamard rows and negations", "classes": 20, "bits": 16,
        "min_distance": 8.0, "mean_distance": pytest.approx(8.0 + 8 * 4 / 190),
        "max_distance": 16.0,
    }  # fmt: skip
    weights = summary["weights"]
    assert 0 < weights["images_seen"] <= 4 * 32
    assert sum(weights["normalised_entropy_histogram"]) == weights["multi_label_images"]


def test_the_checkpoint_keeps_the_per_image_weights(ics_run):
    result, path = ics_run
    saved = load_checkpoint(path.with_suffix(".pt"))["criterion"]
    assert saved["weights"].shape == (result["dataset"]["counts"]["train"], 20)
    seen = saved["seen"]
    assert int(seen.sum()) == result["criterion_summary"]["weights"]["images_seen"]
    torch.testing.assert_close(saved["weights"][seen].sum(dim=1), torch.ones(int(seen.sum())))


def test_a_saved_hashing_run_is_rescored_to_the_same_figures(registry, ics_run, coco_root):
    result, path = ics_run
    _, figures = rescore(registry, path, coco_root, "cpu")
    assert figures["map@k"] == pytest.approx(result["final"]["metrics"]["map@k"], abs=1e-12)


def test_csq_on_a_protocol_without_a_hash_head_says_what_is_missing(registry, coco_root, tmp_path):
    protocol = json.loads(json.dumps(registry.protocols["cpu-smoke"]))
    del protocol["model"]["hash"]
    path = tmp_path / "no-hash.json"
    path.write_text(json.dumps(protocol))
    config = build_run_config(
        registry, method="csq", dataset="synth-coco", protocol=str(path), overrides=FAST[:2]
    )
    with pytest.raises(BenchError, match="'hash' head needs the protocol's model.hash section"):
        execute(registry, config, RunOptions(coco_root, tmp_path / "results", "cpu", False))
    assert not (tmp_path / "results").exists()
