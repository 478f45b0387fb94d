"""Summaries of replicate runs: mean, sample standard deviation and a Student-t confidence
interval, as the Reality Check (Musgrave et al. 2020) reports them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from scipy import stats


def summarize(values: Sequence[float], confidence: float = 0.95) -> dict[str, float | int | None]:
    """{"mean", "std", "ci95", "n"}: ci95 is the half-width mean ± t * std / sqrt(n) with n - 1
    degrees of freedom; std and ci95 are None for a single value."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = math.fsum(values) / n
    if n == 1:
        return {"mean": mean, "std": None, "ci95": None, "n": 1}
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    t = stats.t.ppf(0.5 + confidence / 2, df=n - 1)
    return {"mean": mean, "std": std, "ci95": float(t * std / math.sqrt(n)), "n": n}


def summarize_metrics(
    metrics: Iterable[Mapping[str, float]], names: Sequence[str]
) -> dict[str, dict[str, float | int | None]]:
    """summarize() of each named metric over several runs' metric dictionaries."""
    rows = list(metrics)
    return {name: summarize([row[name] for row in rows]) for name in names}


def parse_seeds(text: str) -> list[int]:
    """ "0,1,2" -> [0, 1, 2]; "5" -> [0, 1, 2, 3, 4] (a count)."""
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        raise ValueError(f"--seeds takes a count (5) or a list (0,1,2), got {text!r}") from None
    if len(values) == 1:
        if values[0] < 1:
            raise ValueError(f"--seeds needs a count of at least 1, got {values[0]}")
        return list(range(values[0]))
    if len(set(values)) != len(values) or min(values) < 0:
        raise ValueError(f"--seeds must list distinct seeds >= 0, got {text!r}")
    return values
