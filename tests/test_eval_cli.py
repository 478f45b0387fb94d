from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from benchmark.cli import cli
from benchmark.config import build_run_config
from benchmark.engine.run import RunOptions, execute
from benchmark.metrics.retrieval import retrieval_metrics


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def clustered(rng: np.random.Generator, n: int, classes: int, dim: int = 8):
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, dim))
    return (centres[labels] + 0.8 * rng.normal(size=(n, dim))).astype(np.float32), labels


def invoke_json(runner: CliRunner, *args: str) -> dict:
    result = runner.invoke(cli, ["eval", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_retrieval_file_is_scored_like_the_library_call(runner, tmp_path):
    embeddings, labels = clustered(np.random.default_rng(0), 60, 6)
    np.savez(tmp_path / "run.npz", embeddings=embeddings, labels=labels)
    figures = invoke_json(runner, str(tmp_path / "run.npz"))
    expected = retrieval_metrics(
        torch.from_numpy(embeddings), torch.from_numpy(embeddings), torch.from_numpy(labels),
        torch.from_numpy(labels), recall_at=(1, 2, 4, 8), exclude_self=True,
    )  # fmt: skip
    assert figures == pytest.approx(expected)
    assert "recall@8" in figures


def test_query_gallery_file_is_recognised_and_uses_its_k_list(runner, tmp_path):
    rng = np.random.default_rng(1)
    query, query_labels = clustered(rng, 30, 5)
    gallery, gallery_labels = clustered(rng, 70, 5)
    np.savez(
        tmp_path / "qg.npz",
        query=query,
        query_labels=query_labels,
        gallery=gallery,
        gallery_labels=gallery_labels,
    )
    figures = invoke_json(runner, str(tmp_path / "qg.npz"), "--metrics", "recall@1,map@r")
    assert set(figures) >= {"recall@1", "map@r"}
    assert "recall@8" not in figures
    default = invoke_json(runner, str(tmp_path / "qg.npz"))
    assert {"recall@10", "recall@50"} <= set(default)


def test_hashing_file_gives_map_at_k(runner, tmp_path):
    rng = np.random.default_rng(2)
    labels = (rng.random((80, 5)) < 0.3).astype(np.int64)
    labels[labels.sum(1) == 0, 0] = 1
    codes = rng.normal(size=(80, 16)).astype(np.float32)
    np.savez(
        tmp_path / "h.npz",
        query=codes[:20],
        query_labels=labels[:20],
        database=codes[20:],
        database_labels=labels[20:],
    )
    figures = invoke_json(runner, str(tmp_path / "h.npz"), "--top-k", "10")
    assert 0.0 <= figures["map@k"] <= 1.0
    assert figures["queries"] == 20


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a zip file", "not an .npz file (no zip archive); save the arrays with numpy.savez."),
        (
            {"embeddings": np.zeros((2, 2)), "labels": np.array([{"a": 1}, None])},
            "array 'labels' holds Python objects (dtype object); bench eval reads numeric arrays "
            "only and never unpickles (a pickle can run code).",
        ),
        (
            {"embeddings": np.zeros((4, 2)), "labels": np.array([0.5, 1.5, 0.5, 1.5])},
            "array 'labels' holds 0.5 at index 0; labels are integer class ids (floats are "
            "accepted only where whole, such as 1.0).",
        ),
        (
            {"embeddings": np.zeros((2, 2)), "labels": np.array([1.0, np.nan])},
            "array 'labels' holds nan at index 1;",
        ),
        (
            {"embeddings": np.zeros((3, 2))},
            "a 'retrieval' file needs the arrays embeddings, labels; "
            "missing: labels (found: embeddings).",
        ),
        (
            {"vectors": np.zeros((3, 2))},
            "cannot tell the task from its arrays (vectors); expected "
            "retrieval: embeddings, labels;",
        ),
        (
            {"embeddings": np.array(["a", "b"]), "labels": np.zeros(2)},
            "array 'embeddings' has dtype <U1; expected numbers.",
        ),
    ],
)
def test_malformed_files_are_named_with_the_problem(runner, tmp_path, content, message):
    path = tmp_path / "bad.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.savez(path, **content)
    result = runner.invoke(cli, ["eval", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {path}: ")
    assert message in result.stderr


def test_eval_needs_exactly_one_source(runner, tmp_path):
    result = runner.invoke(cli, ["eval"])
    assert result.exit_code == 2
    assert "Give either an EMBEDDINGS.npz file or --checkpoint, not both." in result.stderr


def test_checkpoint_rescoring_reproduces_the_run(runner, registry, data_root, tmp_path):
    fast = ("train.epochs=1", "train.iterations_per_epoch=2", "data.classes_per_batch=4")
    config = build_run_config(registry, method="ms", dataset="synth-cub", overrides=fast)
    result, path = execute(registry, config, RunOptions(data_root, tmp_path, "cpu", False))
    figures = invoke_json(
        runner, "--checkpoint", str(path), "--data-root", str(data_root), "--device", "cpu"
    )
    assert figures == result["final"]["metrics"]
    del result["checkpoint"]
    path.write_text(json.dumps(result))
    again = runner.invoke(cli, ["eval", "--checkpoint", str(path), "--data-root", str(data_root)])
    assert again.exit_code == 2
    assert f"{path} names no checkpoint: the run was made with --no-save-checkpoint" in again.stderr


def test_whole_float_labels_score_as_their_integers(runner, tmp_path):
    embeddings, labels = clustered(np.random.default_rng(3), 40, 4)
    np.savez(tmp_path / "int.npz", embeddings=embeddings, labels=labels)
    np.savez(tmp_path / "float.npz", embeddings=embeddings, labels=labels.astype(np.float32))
    assert invoke_json(runner, str(tmp_path / "float.npz")) == invoke_json(
        runner, str(tmp_path / "int.npz")
    )


def test_files_above_the_size_limit_are_refused_before_loading(runner, tmp_path, monkeypatch):
    path = tmp_path / "big.npz"
    np.savez_compressed(path, embeddings=np.zeros((100, 8)), labels=np.zeros(100, np.int64))
    monkeypatch.setenv("BENCH_EVAL_MAX_GB", "0.000005")  # 5,000 bytes; the arrays hold 7,200
    result = runner.invoke(cli, ["eval", str(path)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {path}: its arrays hold 7,200 bytes, more than the limit of 5,000 bytes; "
        "raise it with BENCH_EVAL_MAX_GB (now 0.000005; default 4).\n"
    )
    monkeypatch.setenv("BENCH_EVAL_MAX_GB", "lots")
    result = runner.invoke(cli, ["eval", str(path)])
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: BENCH_EVAL_MAX_GB='lots': expected a size in gigabytes, e.g. 16.\n"
    )
    monkeypatch.setenv("BENCH_EVAL_MAX_GB", "0.00001")
    assert "recall@1" in invoke_json(runner, str(path))


def test_an_array_header_claiming_more_than_the_file_holds_is_refused(runner, tmp_path):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 4)}
    )
    path = tmp_path / "lying.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("embeddings.npy", header.getvalue() + bytes(64))
        archive.writestr("labels.npy", header.getvalue() + bytes(64))
    result = runner.invoke(cli, ["eval", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"Error: {path}: its arrays hold 32,000,000,000,000 bytes, more than the limit of "
        "4,000,000,000 bytes; raise it with BENCH_EVAL_MAX_GB"
    )
