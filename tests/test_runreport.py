"""`bench report`: the retrieval grid ranks as the metrics do, frames say right and wrong, and a
run without a checkpoint gets its curves only when asked."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from benchmark.cli import cli
from benchmark.config import build_run_config
from benchmark.engine.rescore import restore_run
from benchmark.engine.run import RunOptions, execute
from benchmark.runreport import RIGHT, WRONG, _relevant, _scores, retrieval_grid

from .test_engine import FAST


@pytest.fixture(scope="module")
def saved_run(registry, data_root, tmp_path_factory):
    config = build_run_config(registry, method="ms", dataset="synth-cub", overrides=FAST)
    options = RunOptions(data_root, tmp_path_factory.mktemp("results"), "cpu", False)
    return execute(registry, config, options)[1]


def test_the_grid_holds_each_querys_nearest_others_by_cosine(registry, data_root, saved_run):
    run = restore_run(registry, saved_run, data_root, "cpu")
    grid = retrieval_grid(run, queries=4, top_k=3)
    vectors = [run.pipeline.query[i][0] for i in range(len(run.pipeline.query))]
    with torch.no_grad():
        embedded = run.model.eval()(torch.stack(vectors))["embedding"].double()
    embedded = torch.nn.functional.normalize(embedded, dim=1).numpy()
    labels = run.splits.query.labels
    assert list(grid.queries) == list(np.linspace(0, len(labels) - 1, 4).round().astype(int))
    for row, query in enumerate(grid.queries):
        similarity = embedded @ embedded[query]
        similarity[query] = -np.inf  # the query itself is never a result
        assert list(grid.retrieved[row]) == list(np.argsort(-similarity, kind="stable")[:3])
        assert list(grid.relevant[row]) == list(labels[grid.retrieved[row]] == labels[query])


def test_report_png_frames_right_and_wrong_results(registry, data_root, saved_run, tmp_path):
    out = tmp_path / "report.png"
    args = ["report", str(saved_run), "--out", str(out), "--data-root", str(data_root),
            "--queries", "3", "--top-k", "4", "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    grid = retrieval_grid(restore_run(registry, saved_run, data_root, "cpu"), 3, 4)
    from PIL import Image

    with Image.open(out) as image:
        counts = {rgb: n for n, rgb in image.convert("RGB").getcolors(1 << 20)}
    green, red = (counts.get(_rgb(colour), 0) for colour in (RIGHT, WRONG))
    # Every frame has the same size, so the green share is the share of right results.
    assert green + red > 1000
    assert green / (green + red) == pytest.approx(grid.relevant.mean(), abs=0.05)


def test_a_run_without_checkpoint_needs_no_grid(saved_run, tmp_path):
    result = json.loads(saved_run.read_text())
    result.pop("checkpoint")
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(result))
    refused = CliRunner().invoke(cli, ["report", str(bare)])
    assert refused.exit_code == 2
    assert "names no checkpoint" in refused.output and "--no-grid" in refused.output
    drawn = CliRunner().invoke(cli, ["report", str(bare), "--no-grid"])
    assert drawn.exit_code == 0, drawn.output
    assert bare.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hashing_ranks_by_hamming_and_counts_a_shared_label_as_relevant():
    query = torch.tensor([[0.5, -0.2, 0.1]])
    gallery = torch.tensor([[-1.0, 1.0, -1.0], [0.3, -0.9, 0.0], [1.0, 1.0, 1.0]])
    scores = _scores(query, gallery, "hamming")
    assert scores.tolist() == [[-3.0, 0.0, -1.0]]  # minus the Hamming distance
    labels = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 1]])
    ranked = torch.tensor([[1, 2, 0]])
    assert _relevant(torch.tensor([[0, 0, 1]]), labels, ranked).tolist() == [[False, True, True]]


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
