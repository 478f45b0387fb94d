"""`bench report RESULT.json`: one PNG that shows what a run did — its training curves from the
result file, and a retrieval grid from its checkpoint: some test queries and their top-k
results, correct ones framed green, wrong ones red (relevant = same class or item; hashing:
sharing a label). Queries are spread evenly over the query set, so the grid is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.engine.evaluate import embed_both
from benchmark.engine.rescore import RestoredRun, restore_run
from benchmark.files import write_atomically
from benchmark.metrics.hashing import hamming_distance, hash_codes
from benchmark.metrics.retrieval import (
    best_ranked,
    closeness,
    distance_bias,
    drop_self,
    ranking_space,
)
from benchmark.plugins import Registry
from benchmark.results import read_result

RIGHT, WRONG = "#00b000", "#e00000"  # frames; not colours of the curves above them
THUMBNAIL = 96  # pixels; the grid shows images, not their augmentation


@dataclass(frozen=True)
class Grid:
    """Which gallery items each chosen query retrieved, and whether each is relevant."""

    queries: np.ndarray  # (q,) indices into the query split
    retrieved: np.ndarray  # (q, k) indices into the gallery split, best first
    relevant: np.ndarray  # (q, k) bool


def write_report(
    registry: Registry,
    result_path: Path,
    out: Path,
    data_root: Path | None,
    device: str,
    queries: int = 6,
    top_k: int = 5,
    grid: bool = True,
) -> Path:
    """Write the report PNG of the run saved in `result_path` to `out`; returns `out`."""
    import matplotlib

    matplotlib.use("Agg")
    result = read_result(result_path)
    restored = restore_run(registry, result_path, data_root, device) if grid else None
    chosen = retrieval_grid(restored, queries, top_k) if restored else None
    figure = _figure(result, restored, chosen)
    write_atomically(
        out, lambda handle: figure.savefig(handle, format="png", dpi=100), "another --out"
    )
    import matplotlib.pyplot as plt

    plt.close(figure)
    return out


def retrieval_grid(run: RestoredRun, queries: int, top_k: int) -> Grid:
    """The top-k gallery items of `queries` evenly spaced test queries, as the run ranks them."""
    protocol = run.config.protocol
    query, gallery = run.pipeline.query, run.pipeline.gallery
    q_vectors, q_labels, g_vectors, g_labels = embed_both(
        run.model, query, gallery, run.method.eval_output, protocol.eval.batch_size,
        run.device, protocol.train.amp, protocol.data,
    )  # fmt: skip
    chosen = np.unique(np.linspace(0, len(q_vectors) - 1, queries).round().astype(int))
    index = torch.as_tensor(chosen, device=q_vectors.device)
    scores = _scores(q_vectors[index], g_vectors, run.method.distance)
    same_set = gallery is query
    ranked = best_ranked(scores, top_k + int(same_set))
    if same_set:
        ranked = drop_self(ranked, index)
    ranked = ranked[:, :top_k]
    return Grid(chosen, ranked.cpu().numpy(), _relevant(q_labels[index], g_labels, ranked))


def _scores(query: torch.Tensor, gallery: torch.Tensor, distance: str) -> torch.Tensor:
    """Higher is closer, as the metrics rank: minus the Hamming distance of the codes, or
    retrieval's closeness (cosine or euclidean)."""
    if distance == "hamming":
        return -hamming_distance(hash_codes(query), hash_codes(gallery)).float()
    query, gallery = ranking_space(query, distance), ranking_space(gallery, distance)
    return closeness(query, gallery, distance_bias(gallery, distance))


def _relevant(query_labels, gallery_labels, ranked) -> np.ndarray:
    found = gallery_labels[ranked]  # (q, k) or (q, k, C) multi-hot
    if found.dim() == 3:
        return ((found * query_labels[:, None, :]).sum(-1) > 0).cpu().numpy()
    return (found == query_labels[:, None]).cpu().numpy()


def _figure(result: Mapping[str, Any], run: RestoredRun | None, grid: Grid | None):
    import matplotlib.pyplot as plt

    rows = 0 if grid is None else len(grid.queries)
    columns = 1 + (0 if grid is None else grid.retrieved.shape[1])
    figure = plt.figure(figsize=(max(9.0, 1.4 * columns), 4.2 + 1.4 * rows), layout="constrained")
    layout = figure.add_gridspec(1 + rows, columns, height_ratios=[3] + [1] * rows)
    halves = layout[0, :].subgridspec(1, 2)
    _loss_curve(figure.add_subplot(halves[0]), result["evaluations"])
    _metric_curves(figure.add_subplot(halves[1]), result)
    if grid is not None:
        _grid(figure, layout, run, grid)
    method, dataset = result["method"]["name"], result["dataset"]["name"]
    figure.suptitle(f"{method} on {dataset}, {result['config']['protocol']['name']}, seed "
                    f"{result['seed']} ({result['fingerprint'][:12]})")  # fmt: skip
    return figure


def _loss_curve(axes, evaluations: Sequence[Mapping[str, Any]]) -> None:
    trained = [e for e in evaluations if "train" in e and "loss" in e["train"]]
    axes.plot([e["epoch"] for e in trained], [e["train"]["loss"] for e in trained], marker="o")
    axes.set(xlabel="epoch", ylabel="training loss (epoch mean)", title="training loss")
    _epoch_axis(axes)


def _metric_curves(axes, result: Mapping[str, Any]) -> None:
    """The evaluations' main figures per epoch, one line per split and metric; the selected
    epoch marked."""
    names = ("map@k",) if result["dataset"]["task"] == "hashing" else ("recall@1", "map@r")
    for split in sorted({e["split"] for e in result["evaluations"]}):
        points = [e for e in result["evaluations"] if e["split"] == split]
        for name in names:
            values = [
                (e["epoch"], 100 * e["metrics"][name]) for e in points if name in e["metrics"]
            ]
            if values:
                axes.plot(*zip(*values, strict=True), marker="o", label=f"{split} {name}")
    axes.axvline(result["final"]["epoch"], color="#7f7f7f", linestyle="--",
                 label=f"weights used ({result['final']['selection']})")  # fmt: skip
    axes.set(xlabel="epoch", ylabel="%", title="evaluations")
    _epoch_axis(axes)
    axes.legend(fontsize=8)


def _epoch_axis(axes) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)


def _grid(figure, layout, run: RestoredRun, grid: Grid) -> None:
    query_images, gallery_images = run.splits.query, run.splits.gallery
    for row, query in enumerate(grid.queries):
        _thumbnail(figure.add_subplot(layout[1 + row, 0]), query_images.paths[query],
                   "query" if row == 0 else "", "#1f77b4")  # fmt: skip
        for column, (item, right) in enumerate(
            zip(grid.retrieved[row], grid.relevant[row], strict=True), 1
        ):
            title = f"top {column}" if row == 0 else ""
            colour = RIGHT if right else WRONG
            _thumbnail(figure.add_subplot(layout[1 + row, column]), gallery_images.paths[item],
                       title, colour)  # fmt: skip


def _thumbnail(axes, path: Path, title: str, frame: str) -> None:
    from PIL import Image

    with Image.open(path) as image:
        axes.imshow(np.asarray(image.convert("RGB").resize((THUMBNAIL, THUMBNAIL))))
    axes.set_xticks([])
    axes.set_yticks([])
    for side in axes.spines.values():
        side.set_edgecolor(frame)
        side.set_linewidth(4)
    if title:
        axes.set_title(title, fontsize=9)
