"""Summaries of replicate runs: mean, sample standard deviation and a Student-t confidence
interval, as the Reality Check (Musgrave et al. 2020) reports them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


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
    from scipy import stats  # here, not at the top: the command line imports this module

    t = stats.t.ppf(0.5 + confidence / 2, df=n - 1)
    return {"mean": mean, "std": std, "ci95": float(t * std / math.sqrt(n)), "n": n}


def summarize_metrics(
    metrics: Iterable[Mapping[str, float]], names: Sequence[str]
) -> dict[str, dict[str, float | int | None]]:
    """summarize() of each named metric over several runs' metric dictionaries."""
    rows = list(metrics)
    return {name: summarize([row[name] for row in rows]) for name in names}


MAX_SEED = 2**32 - 1  # numpy's seeds; seed_everything takes numpy's seed modulo 2**32
MAX_SEED_COUNT = 1000


def parse_seeds(text: str) -> list[int]:
    """ "0,1,2" -> [0, 1, 2]; "5" -> [0, 1, 2, 3, 4] (a count)."""
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        raise ValueError(f"expected a count (5) or a list (0,1,2), got {text!r}") from None
    if len(values) == 1:
        if not 1 <= values[0] <= MAX_SEED_COUNT:
            raise ValueError(
                f"a count of seeds is at least 1 and at most {MAX_SEED_COUNT:,}, got {values[0]}"
            )
        return list(range(values[0]))
    if len(set(values)) != len(values) or not 0 <= min(values) <= max(values) <= MAX_SEED:
        raise ValueError(f"expected distinct seeds from 0 to {MAX_SEED}, got {text!r}")
    return values
