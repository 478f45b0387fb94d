"""One entry point that scores embeddings as their task prescribes.

Training-time evaluation and `bench eval` both go through `score`, so a figure means the same
thing wherever it was computed.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from benchmark.errors import BenchError

DEFAULT_RECALL_AT = {"retrieval": (1, 2, 4, 8), "query-gallery": (1, 10, 20, 30, 40, 50)}
CLUSTERING_METRICS = ("nmi",)


def score(
    task: str,
    query: Tensor,
    gallery: Tensor,
    query_labels: Tensor,
    gallery_labels: Tensor,
    *,
    recall_at: Sequence[int] | None = None,
    top_k: int | None = None,
    distance: str = "cosine",
    metrics: Sequence[str] | None = None,
    block_size: int = 256,
    seed: int = 0,
    spread: bool = False,
) -> dict[str, float]:
    """Metrics of query against gallery (the same tensors for `retrieval`, self excluded).

    retrieval / query-gallery: the retrieval metrics (default set unless `metrics` names
    others; "nmi" clusters the query embeddings). hashing: codes by sign, Hamming ranking,
    mAP@top_k (None = the whole database) and the other hashing figures.
    spread: also the per-query deviations, "sd:<name>" (`benchmark.metrics.intervals`).
    """
    if task == "hashing":
        return _hashing(
            query, gallery, query_labels, gallery_labels, top_k, metrics, block_size, spread
        )
    if task not in DEFAULT_RECALL_AT:
        raise BenchError(f"Unknown task '{task}'. Available: retrieval, query-gallery, hashing.")
    from benchmark.metrics.retrieval import retrieval_metrics

    wanted = None if metrics is None else [m for m in metrics if m not in CLUSTERING_METRICS]
    figures = retrieval_metrics(
        query, gallery, query_labels, gallery_labels,
        recall_at=recall_at or DEFAULT_RECALL_AT[task], exclude_self=task == "retrieval",
        distance=distance, block_size=block_size, metrics=wanted or None, spread=spread,
    )  # fmt: skip
    if metrics is not None and "nmi" in metrics:
        from benchmark.metrics.clustering import nmi

        figures["nmi"] = nmi(query, query_labels, seed=seed)
    return figures


def _hashing(query, database, query_labels, database_labels, top_k, metrics, block_size, spread):
    from benchmark.metrics.hashing import hash_codes, hashing_metrics

    figures = hashing_metrics(
        hash_codes(query), hash_codes(database), query_labels, database_labels,
        top_k=top_k, block_size=block_size, spread=spread,
    )  # fmt: skip
    if metrics is None:
        return figures
    unknown = sorted(set(metrics) - set(figures))
    if unknown:
        raise BenchError(
            f"Unknown hashing metric(s) {', '.join(unknown)}. Available: "
            f"{', '.join(sorted(figures))}."
        )
    return {name: figures[name] for name in metrics}
