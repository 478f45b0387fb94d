"""Draw convergence.png from result files: training loss and validation R@1 per epoch.

    python plugins/pddm/docs/convergence.py RESULT.json ... [--out PNG]

The PNG defaults to convergence.png beside this file. Runs are grouped by method; each curve is
the mean over its seeds, the band their range. The losses of different methods are on different
scales, so each run's per-epoch mean training loss is divided by its first epoch's.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def curves(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """(method, loss per epoch relative to epoch 1, validation R@1 per epoch from 0)."""
    result = json.loads(path.read_text())
    validation = [e for e in result["evaluations"] if e["split"] == "validation"]
    losses = np.array([e["train"]["loss"] for e in validation[1:]])
    recall = np.array([100 * e["metrics"]["recall@1"] for e in validation])
    return result["method"]["name"], losses / losses[0], recall


def band(axis, values: list[np.ndarray], first_epoch: int, label: str) -> None:
    stacked = np.stack(values)
    epochs = np.arange(first_epoch, first_epoch + stacked.shape[1])
    axis.plot(epochs, stacked.mean(axis=0), marker="o", label=f"{label} ({len(values)} seeds)")
    axis.fill_between(epochs, stacked.min(axis=0), stacked.max(axis=0), alpha=0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("convergence.png"))
    args = parser.parse_args()
    by_method: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for path in args.results:
        method, losses, recall = curves(path)
        by_method[method].append((losses, recall))
    figure, (loss_axis, recall_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for method, runs in sorted(by_method.items()):
        band(loss_axis, [losses for losses, _ in runs], 1, method)
        band(recall_axis, [recall for _, recall in runs], 0, method)
    loss_axis.set(yscale="log", xlabel="epoch", ylabel="training loss / epoch-1 loss")
    recall_axis.set(xlabel="epoch", ylabel="validation R@1 (%)")
    loss_axis.set_title("training loss (mean over the epoch)")
    recall_axis.set_title("validation R@1")
    for axis in (loss_axis, recall_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("synth-cub, cpu-smoke (6 epochs x 50 steps of 8 x 4), 2-core CPU")
    figure.tight_layout()
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
