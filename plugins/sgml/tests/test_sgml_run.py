"""SGML through the harness: the attribute head is built, trained, saved and re-scored."""

from __future__ import annotations

import pytest

from benchmark.config import build_run_config
from benchmark.engine.checkpoint import load_checkpoint
from benchmark.engine.rescore import rescore
from benchmark.engine.run import RunOptions, execute

FAST = ("train.epochs=1", "train.iterations_per_epoch=3", "data.classes_per_batch=4")


@pytest.fixture(scope="module")
def sgml_run(registry, data_root, tmp_path_factory):
    config = build_run_config(registry, method="sgml", dataset="synth-cub", overrides=FAST)
    options = RunOptions(data_root, tmp_path_factory.mktemp("results"), "cpu", False)
    result, path = execute(registry, config, options)
    return result, path


def test_the_result_says_the_method_is_reconstructed(sgml_run):
    result, _ = sgml_run
    assert result["method"]["fidelity"] == "reconstructed"
    assert "not known" in result["method"]["fidelity_notes"]
    assert result["method"]["hparams"]["gamma"] == 1.0


def test_training_logs_both_parts_of_the_loss(sgml_run):
    result, _ = sgml_run
    logs = [e for e in result["evaluations"] if "train" in e][-1]["train"]
    assert logs["loss"] == pytest.approx(logs["deviance"] + logs["attributes"], rel=1e-5)
    assert 0.0 <= logs["negative_similarity"] <= 1.0


def test_the_checkpoint_holds_an_attribute_head_sized_by_the_dataset(registry, sgml_run, data_root):
    _, path = sgml_run
    splits = registry.dataset("synth-cub").load(data_root)
    weights = load_checkpoint(path.with_suffix(".pt"))["model"]
    assert weights["heads.attributes.linear.weight"].shape == (len(splits.attribute_names), 256)


def test_a_saved_sgml_run_is_rescored_to_the_same_figures(registry, sgml_run, data_root):
    result, path = sgml_run
    _, figures = rescore(registry, path, data_root, "cpu")
    final = result["final"]["metrics"]
    assert figures["recall@1"] == pytest.approx(final["recall@1"], abs=1e-9)


@pytest.mark.parametrize("name", ["sgml-cub", "sgml-inshop"])
def test_the_shipped_protocols_are_registered_as_paper_protocols(registry, name):
    protocol = registry.protocols[name]
    assert protocol["kind"] == "paper" and "ours" in protocol["summary"]
    assert protocol["model"]["embedding_dim"] == 512
    assert (protocol["model"]["backbone"], protocol["model"]["pretrained"]) == (
        "resnet50",
        "imagenet",
    )
    assert registry.owner("protocols", name).name == "sgml"
