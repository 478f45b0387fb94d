"""`bench check` (the conformance kit) and `bench new-plugin` (the scaffold): thin commands."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command(name="check")
@click.argument("name")
@click.option(
    "--quick", is_flag=True, help="Spec and loss checks only: no training (a few seconds)."
)
@click.option("--steps", type=click.IntRange(min=4), default=None, help="Training steps [60].")
@click.option("--data-root", default=None, help="[default: $BENCH_DATA or ~/.cache/dmlbench/data]")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or mps.")
def check_command(name: str, quick: bool, steps: int | None, data_root, device: str) -> None:
    """Run the conformance checks on method NAME; exit 1 when any fails."""
    from benchmark.cli import registry
    from benchmark.data.root import resolve_data_root
    from benchmark.engine.run import pick_device
    from benchmark.testing import format_results, run_checks

    loaded = registry()
    loaded.method(name)  # an unknown name is bad input (exit 2), not a failed check
    results = run_checks(
        name, resolve_data_root(data_root), registry=loaded, quick=quick, steps=steps,
        device=str(pick_device(device)),
    )  # fmt: skip
    click.echo(format_results(name, results))
    failed = [result.name for result in results if not result.passed]
    click.echo(f"\n{len(results) - len(failed)} of {len(results)} checks passed.")
    if failed:
        sys.exit(1)


@click.command(name="new-plugin")
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder in which the plugin's folder is created.",
)
def new_plugin_command(name: str, parent: Path) -> None:
    """Write an installable method plugin package NAME (pip install -e it, then bench check)."""
    from benchmark.scaffold import write_plugin

    target = write_plugin(name, parent)
    click.echo(f"Wrote the method plugin '{name}' to {target}. Next:")
    click.echo(f"  pip install -e {target}")
    click.echo(f"  bench check {name}")
    click.echo(f"  python -m pytest {target / 'tests'}")
