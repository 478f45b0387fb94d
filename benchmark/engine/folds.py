"""k-fold cross-validation over the training classes, as the Reality Check reports it: k runs,
run i choosing its checkpoint on fold i; on the test split, the mean of the k models' figures
("separated") and the figure of their L2-normalised embeddings concatenated ("concatenated", a
k-model ensemble)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.config import RunConfig
from benchmark.engine.evaluate import embed_both
from benchmark.engine.rescore import restore_run
from benchmark.errors import BenchError
from benchmark.metrics.tasks import score
from benchmark.plugins import Registry
from benchmark.protocol import ValidationSettings
from benchmark.stats import summarize_metrics


def fold_config(config: RunConfig, folds: int, fold: int) -> RunConfig:
    """`config` with its validation split replaced by fold `fold` of `folds`."""
    protocol = config.protocol
    validation = protocol.eval.validation
    if protocol.eval.selection == "test" or validation is None:
        raise BenchError(
            "--folds needs a protocol that selects on a validation split (eval.validation); "
            "this one selects on the test split or defines none."
        )
    by_fold = ValidationSettings(seed=validation.seed, folds=folds, fold=fold)
    evaluation = dataclasses.replace(protocol.eval, validation=by_fold)
    overrides = (*config.overrides, f"--folds {folds} (fold {fold})")
    return config.replace(protocol=protocol.replace(eval=evaluation), overrides=overrides)


def concatenated_figures(
    registry: Registry, paths: list[Path], data_root: Path, device: str, skip_bad: bool = False
) -> dict[str, float]:
    """Test figures of the runs' L2-normalised outputs concatenated (one vector per image)."""
    runs = [restore_run(registry, path, data_root, device, skip_bad) for path in paths]
    first = runs[0]
    protocol = first.config.protocol
    query_parts, gallery_parts, labels = [], [], None
    for run in runs:
        query, query_labels, gallery, gallery_labels = _test_outputs(run)
        query_parts.append(F.normalize(query, dim=1))
        gallery_parts.append(F.normalize(gallery, dim=1))
        labels = (query_labels, gallery_labels)
    task = first.dataset.task
    same = first.pipeline.gallery is first.pipeline.query
    query = torch.cat(query_parts, dim=1)
    gallery = query if same else torch.cat(gallery_parts, dim=1)
    return score(
        task, query, gallery, *labels, recall_at=first.dataset.recall_at,
        top_k=first.dataset.top_k, distance=first.method.distance,
        block_size=protocol.eval.block_size,
    )  # fmt: skip


def _test_outputs(run) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    protocol = run.config.protocol
    return embed_both(
        run.model, run.pipeline.query, run.pipeline.gallery, run.method.eval_output,
        protocol.eval.batch_size, run.device, protocol.train.amp, protocol.data,
    )  # fmt: skip


def cross_validation_summary(
    results: list[dict[str, Any]], concatenated: dict[str, float], keys: list[str]
) -> dict[str, Any]:
    """What `bench run --folds` reports: per-fold test figures, their mean (± CI) and the
    concatenated-embedding figures."""
    return {
        "folds": len(results),
        "fingerprints": [r["fingerprint"] for r in results],
        "separated": summarize_metrics((r["final"]["metrics"] for r in results), keys),
        # Method-specific figures (re-ranking) have no concatenated reading.
        "concatenated": {k: concatenated[k] for k in keys if k in concatenated},
    }


def write_summary(summary: dict[str, Any], result_path: Path) -> Path:
    """Beside the folds' result files, in cross-validation/ (not a result file itself)."""
    import json

    from benchmark.files import write_atomically

    folder = result_path.parent / "cross-validation"
    try:
        folder.mkdir(exist_ok=True)
    except OSError as error:
        raise BenchError(f"Cannot create {folder}: {error.strerror}.") from None
    path = folder / f"{summary['fingerprints'][0][:12]}-{summary['folds']}folds.json"
    text = json.dumps(summary, indent=2, sort_keys=True).encode()
    write_atomically(path, lambda handle: handle.write(text))
    return path
