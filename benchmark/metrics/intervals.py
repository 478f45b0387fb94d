"""95% confidence half-widths of one evaluation's figures, over its queries.

A figure is a mean over queries, so a second evaluation of similar weights can differ from it
by sampling noise alone: a few queries of a few hundred. Two figures within each other's
half-widths are a near-tie, and choosing between them is choosing noise.

  rates (recall@K, precision@1): the Wilson score interval of a proportion of n queries
    (Wilson 1927), reported as half its width (it is not symmetric about the rate);
  means of per-query values (map@r, r_precision, map, map@k): a Student-t interval,
    t(0.975, n - 1) * sd / sqrt(n), sd the sample standard deviation over the queries.

The metric functions give the standard deviations, asked with `spread=True`, as "sd:<name>"
entries; `split_intervals` turns them, and the rates, into half-widths.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import Tensor

SPREAD_PREFIX = "sd:"
CONFIDENCE = 0.95
_Z = 1.959963984540054  # the standard normal's 0.975 quantile


def wilson_half_width(rate: float, n: int, z: float = _Z) -> float:
    """Half the width of the Wilson score interval of a proportion `rate` of `n` trials."""
    if n <= 0 or math.isnan(rate):
        return float("nan")
    spread = rate * (1 - rate) / n + z * z / (4 * n * n)
    return z * math.sqrt(spread) / (1 + z * z / n)


def t_half_width(sd: float, n: int) -> float:
    """Half-width of the Student-t interval of a mean of `n` values of sample deviation `sd`."""
    if n < 2 or math.isnan(sd):
        return float("nan")
    from scipy import stats  # here, not at the top: the command line imports this module

    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df=n - 1)) * sd / math.sqrt(n)


def sample_sd(values: Tensor) -> float:
    """The sample standard deviation (n - 1) of per-query values; NaN under two values."""
    return values.double().std().item() if len(values) > 1 else float("nan")


def is_rate(name: str) -> bool:
    return name == "precision@1" or (name.startswith("recall@") and name[7:].isdigit())


def split_intervals(figures: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """(the figures without their "sd:" entries, {name: 95% half-width}) for every rate and
    every mean whose deviation is given; "queries" is n."""
    metrics = {k: v for k, v in figures.items() if not k.startswith(SPREAD_PREFIX)}
    n = int(figures.get("queries", 0))
    intervals = {name: wilson_half_width(value, n) for name, value in metrics.items()
                 if is_rate(name)}  # fmt: skip
    for key, sd in figures.items():
        if key.startswith(SPREAD_PREFIX):
            intervals[key[len(SPREAD_PREFIX) :]] = t_half_width(sd, n)
    return metrics, {name: value for name, value in intervals.items() if not math.isnan(value)}


def near_ties(evaluations: list[Mapping], chosen_epoch: int, split: str, metric: str) -> list[int]:
    """Epochs of `split` evaluations other than the chosen one whose half-width on `metric`
    reaches the chosen figure: the choice among them is within noise."""
    entries = [e for e in evaluations if e["split"] == split and metric in e["metrics"]]
    chosen = next((e for e in entries if e["epoch"] == chosen_epoch), None)
    if chosen is None:
        return []
    best = chosen["metrics"][metric]
    return [
        e["epoch"]
        for e in entries
        if e["epoch"] != chosen_epoch
        and metric in e.get("intervals", {})
        and abs(best - e["metrics"][metric]) <= e["intervals"][metric]
    ]
