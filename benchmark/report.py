"""Plain-text tables for the command line."""

from __future__ import annotations

import re
import sys
from typing import Any

from tabulate import tabulate
from tqdm import tqdm

from benchmark.hookspecs import hookimpl
from benchmark.plugins import Registry
from benchmark.specs import DatasetSpec

SUMMARY_COLUMNS = ("map@r", "r_precision", "map@k", "map@k_index_order", "precision@radius2")
RECALL_AT_K = re.compile(r"recall@[0-9]+$")


def summary_keys(metrics: dict[str, float]) -> list[str]:
    """The figures worth a column: Recall@K in K order, then MAP@R, R-Precision, hashing mAP,
    then re-ranked Recall@K (rerank@k/recall@K) where a method reports it."""
    return (
        [k for k in metrics if RECALL_AT_K.match(k)]
        + [k for k in SUMMARY_COLUMNS if k in metrics]
        + [k for k in metrics if k.startswith("rerank@")]
    )


def column_name(key: str) -> str:
    if RECALL_AT_K.match(key) or key.startswith("rerank@"):
        return key.replace("recall@", "R@").upper()
    return key.upper().replace("_", "-")


SELECTED_BY = {
    "validation": "the best on the validation split",
    "last": "the last ones",
    "test": "the best ON THE TEST SPLIT (not comparable with validation-selected results)",
}


def evaluations_table(result: dict[str, Any]) -> str:
    """One row per evaluation (split, epoch, mean training loss, metrics in percent), then how
    the test figures' weights were chosen and the run's timings."""
    keys = summary_keys(result["final"]["metrics"])
    rows = []
    for entry in result["evaluations"]:
        loss = entry.get("train", {}).get("loss")
        rows.append(
            [
                entry["split"],
                entry["epoch"],
                entry["iteration"],
                "-" if loss is None else f"{loss:.4f}",
                *(f"{100 * entry['metrics'][k]:.2f}" for k in keys),
            ]
        )
    headers = ["split", "epoch", "iteration", "loss", *(column_name(k) for k in keys)]
    final, timings = result["final"], result["timings"]
    footer = (
        f"\ntest figures: weights of epoch {final['epoch']}, "
        f"{SELECTED_BY[final['selection']]}"
        f"{_near_ties(result)}{_against_untrained(result, keys)}"
        f"\n{result['config']['method']} on {result['dataset']['name']}: train "
        f"{timings['train_seconds']:.1f} s ({timings['train_images_per_second']:.0f} img/s), "
        f"eval {timings['eval_seconds']:.1f} s, total {timings['total_seconds']:.1f} s "
        f"on {result['environment']['device']}"
    )
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True) + footer


def _against_untrained(result: dict[str, Any], keys: list[str]) -> str:
    """The final test figures beside the untrained network's, which every method should beat."""
    from benchmark.results import untrained_metrics  # here: results imports torch

    untrained = untrained_metrics(result)
    if untrained is None:
        return ""
    final = result["final"]["metrics"]
    shown = [k for k in keys if k in untrained and k in final]
    shown = shown[:1] + [k for k in ("map@r",) if k in shown[1:]]
    pairs = [f"{column_name(k)} {100 * untrained[k]:.2f} -> {100 * final[k]:.2f}" for k in shown]
    below = bool(shown) and final[shown[0]] < untrained[shown[0]]
    warning = " (BELOW the untrained network: the method did not learn)" if below else ""
    return f"\nno training -> trained (test): {', '.join(pairs)}{warning}"


def _near_ties(result: dict[str, Any]) -> str:
    ties = result["final"].get("near_ties")
    if not ties:
        return ""
    epochs = ", ".join(str(epoch) for epoch in ties)
    final = result["final"]
    split = "test" if final["selection"] == "test" else "validation"
    chosen = next(e for e in result["evaluations"]
                  if e["split"] == split and e["epoch"] == final["epoch"])  # fmt: skip
    # The first summary figure is the datasets' main metric (R@1; hashing: mAP@k).
    metric = next((k for k in summary_keys(chosen["metrics"]) if k in chosen.get("intervals", {})),
                  None)  # fmt: skip
    figure = ""
    if metric is not None:
        value, half = 100 * chosen["metrics"][metric], 100 * chosen["intervals"][metric]
        figure = f" ({column_name(metric)} {value:.2f} ± {half:.2f}, "
        figure += f"{chosen['metrics'].get('queries', 0):,} queries)"
    return (
        f"\nnear-tie: on the {split} split, epoch{'s' if len(ties) > 1 else ''} {epochs} "
        f"scored within noise of the chosen epoch{figure}; the choice among them is chance"
    )


def seeds_table(results: list[dict[str, Any]]) -> str:
    """The test figures of replicate runs (one row per seed), then mean, sd and 95% CI."""
    rows, headers, _ = _replicates(results, [f"seed {r['seed']}" for r in results])
    return tabulate(rows, headers=[f"test ({len(results)} seeds)", *headers], **TABLE)


def folds_table(results: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """k-fold runs: each fold model's test figures, their mean (the "separated" reading), and
    the figures of the k models' embeddings concatenated."""
    rows, headers, keys = _replicates(results, [f"fold {i}" for i in range(len(results))])
    concatenated = summary["concatenated"]
    rows.append(
        [
            "concatenated",
            *(f"{100 * concatenated[k]:.2f}" if k in concatenated else "-" for k in keys),
        ]
    )
    return tabulate(rows, headers=[f"test ({len(results)} folds)", *headers], **TABLE)


TABLE = {"tablefmt": "simple", "disable_numparse": True}


def _replicates(results: list[dict[str, Any]], labels: list[str]):
    from benchmark.stats import summarize_metrics

    keys = summary_keys(results[0]["final"]["metrics"])
    rows = [
        [label, *(f"{100 * r['final']['metrics'][k]:.2f}" for k in keys)]
        for label, r in zip(labels, results, strict=True)
    ]
    summary = summarize_metrics((r["final"]["metrics"] for r in results), keys)
    for label, field in (("mean", "mean"), ("sd", "std"), ("95% CI ±", "ci95")):
        rows.append([label, *(f"{100 * summary[k][field]:.2f}" for k in keys)])
    return rows, [column_name(k) for k in keys], keys


def metrics_table(figures: dict[str, float]) -> str:
    """Metric name and value: rates in percent, counts as integers."""
    rows = [
        [name, value if isinstance(value, int) else f"{100 * value:.2f} %"]
        for name, value in figures.items()
    ]
    return tabulate(rows, headers=["metric", "value"], tablefmt="simple", disable_numparse=True)


def dataset_info(spec: DatasetSpec) -> str:
    lines = [f"{spec.name}: {spec.summary}", f"task: {spec.task}"]
    if spec.recall_at:
        lines.append(f"recall@K: {', '.join(map(str, spec.recall_at))}")
    if spec.top_k is not None:
        lines.append(f"mAP@k: k = {spec.top_k}")
    lines += [f"source: {spec.url}"] if spec.url else []
    lines += [f"layout: {spec.layout}"] if spec.layout else []
    if spec.counts:
        lines.append("official split: " + ", ".join(f"{k} {v:,}" for k, v in spec.counts.items()))
    lines += [f"cite: {spec.citation}"] if spec.citation else []
    return "\n".join(lines)


def data_report(report) -> str:
    counts = ", ".join(f"{key} {value:,}" for key, value in report.counts.items())
    lines = [f"{report.name}: {counts}", f"split fingerprint: {report.split_fingerprint}"]
    if report.bad_images:
        lines.append(f"{len(report.bad_images)} missing or unreadable images:")
        lines += [f"  {problem}" for problem in report.bad_images]
    lines.append("ok" if report.ok else "FAILED")
    return "\n".join(lines)


def plugins_table(registry: Registry) -> str:
    rows, problems = [], []
    for info in registry.plugins:
        registers = (
            "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.registered.items())
            or "-"
        )
        rows.append(
            [info.name, info.version, info.source, registers, "broken" if info.errors else "ok"]
        )
        problems += [f"{info.name}: {error}" for error in info.errors]
    text = tabulate(
        rows, headers=["plugin", "version", "source", "registers", "status"], tablefmt="simple"
    )
    return text + ("\n\nProblems:\n" + "\n".join(problems) if problems else "")


def listing(registry: Registry, kind: str) -> tuple[list[list[str]], list[str]]:
    table = getattr(registry, kind)
    if kind == "protocols":
        rows = [
            [n, p["version"], p["kind"], ", ".join(p.get("datasets", ())) or "-", p["summary"]]
            for n, p in sorted(table.items())
        ]
        return rows, ["protocol", "version", "kind", "for", "summary"]
    rows = []
    for name, spec in sorted(table.items()):
        details = _LISTED[kind](spec)
        rows.append([name, *details, registry.owner(kind, name).name, spec.summary])
    return rows, [kind[:-1], *_COLUMNS[kind], "plugin", "summary"]


_LISTED = {
    "datasets": lambda spec: (spec.task, spec.protocol or "-"),
    "methods": lambda spec: (", ".join(spec.tasks), _paper_protocols(spec)),
    "backbones": lambda spec: (", ".join(spec.weights) or "-",),
}
_COLUMNS = {
    "datasets": ("task", "protocol"),
    "methods": ("tasks", "paper protocols"),
    "backbones": ("weights",),
}


def _paper_protocols(spec) -> str:
    mapping = spec.paper_protocols
    return ", ".join(f"{mapping[d]} ({d})" for d in sorted(mapping)) or "-"


class ConsoleReporter:
    """A lifecycle-hook plugin the CLI registers: one line per evaluation while a run goes on."""

    @hookimpl
    def bench_epoch_end(self, epoch, iteration, train_loss, metrics, split) -> None:
        shown = [
            f"{k.replace('recall@', 'R@')} {100 * metrics[k]:.2f}" for k in summary_keys(metrics)
        ]
        loss = "" if train_loss is None else f"loss {train_loss:.4f}  "
        tqdm.write(
            f"epoch {epoch:>3} (iteration {iteration}) {split}: {loss}{'  '.join(shown)}",
            file=sys.stderr,
        )
