"""The conformance kit: checks any installed method passes (`bench check NAME`), importable by a
plugin's own tests.

    from benchmark.testing import assert_conforms

    def test_my_method_conforms(tmp_path):
        assert_conforms("my-method", data_root=tmp_path)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from benchmark.errors import BenchError
from benchmark.plugins import Registry, load_plugins
from benchmark.testing import loss_checks, training_checks
from benchmark.testing.probe import build_probe
from benchmark.testing.result import CheckFailed, CheckResult
from benchmark.testing.static_checks import check_hparams, check_spec

__all__ = ["CheckFailed", "CheckResult", "assert_conforms", "format_results", "run_checks"]

# Training steps of the learning check, and of the determinism check's second run.
TRAINING_STEPS, DETERMINISM_STEPS = 60, 3


def run_checks(
    name: str,
    data_root: Path,
    *,
    registry: Registry | None = None,
    quick: bool = False,
    steps: int | None = None,
    device: str = "cpu",
) -> list[CheckResult]:
    """Every check of method `name`, in order. `quick`: the spec and loss checks only, without
    the training, checkpoint and determinism checks (which train `steps` steps).

    Raises BenchError for an unknown method."""
    registry = load_plugins() if registry is None else registry
    method = registry.method(name)
    results = [_run("spec is valid", lambda: check_spec(registry, method))]
    results.append(_run("hyper-parameters agree", lambda: check_hparams(method)))
    try:
        probe = build_probe(registry, name, data_root, device)
    except Exception as error:  # the remaining checks cannot run: say why, once
        return [*results, CheckResult("set up on synth data", False, _describe(error))]
    results += [
        _run("loss: random batch", lambda: loss_checks.check_random_batch(probe)),
        _run("loss: single class", lambda: loss_checks.check_single_class(probe)),
        _run("loss: repeated embeddings", lambda: loss_checks.check_repeated(probe)),
        _order_check(probe),
    ]
    if quick:
        return results
    steps = steps or TRAINING_STEPS
    training = _run_value(lambda: training_checks.train(probe, steps))
    if isinstance(training, CheckResult):
        return [*results, training]
    determinism = min(DETERMINISM_STEPS, steps)
    return [
        *results,
        _run("training improves", lambda: training_checks.check_learning(probe, training)),
        _run("checkpoint restores", lambda: training_checks.check_checkpoint(probe, training)),
        _run(
            "deterministic on CPU",
            lambda: training_checks.check_determinism(probe, training, determinism),
        ),
    ]


def _order_check(probe) -> CheckResult:
    if not probe.method.order_invariant:
        return CheckResult(
            "invariant to batch order", True, "skipped: the method declares order_invariant=False"
        )
    return _run("invariant to batch order", lambda: loss_checks.check_order(probe))


def _run(name: str, check: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, check())
    except Exception as error:  # a check that raises has failed: the error is the reason
        return CheckResult(name, False, _describe(error))


def _run_value(train: Callable[[], object]) -> object:
    try:
        return train()
    except Exception as error:
        return CheckResult("training runs", False, _describe(error))


def _describe(error: Exception) -> str:
    if isinstance(error, CheckFailed | BenchError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def format_results(name: str, results: Iterable[CheckResult]) -> str:
    """The table `bench check` prints: one line per check, ✓ or ✗, and the reason."""
    from tabulate import tabulate

    rows = [("✓" if r.passed else "✗", r.name, r.reason) for r in results]
    return f"bench check {name}\n" + tabulate(rows, headers=("", "check", "detail"))


def assert_conforms(name: str, data_root: Path, **options) -> list[CheckResult]:
    """For a plugin's tests: run the checks of `name` and fail with the table on any ✗."""
    results = run_checks(name, data_root, **options)
    if not all(result.passed for result in results):
        raise AssertionError(format_results(name, results))
    return results
