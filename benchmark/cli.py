"""The `bench` command line: thin commands that parse, call the modules, and print."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click
from tabulate import tabulate

from benchmark.cli_check import check_command, new_plugin_command
from benchmark.errors import BenchError
from benchmark.plugins import Registry, load_plugins
from benchmark.report import (
    ConsoleReporter,
    data_report,
    dataset_info,
    evaluations_table,
    folds_table,
    listing,
    metrics_table,
    plugins_table,
    seeds_table,
)
from benchmark.stats import MAX_SEED, parse_seeds


class BenchClickError(click.ClickException):
    """A BenchError shown as 'Error: ...' without a traceback, exit status 2."""

    exit_code = 2


class BenchGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BenchError as error:
            raise BenchClickError(str(error)) from None


def registry(extra: tuple[tuple[str, object], ...] = ()) -> Registry:
    """Load plugins once per command, with `extra` (name, plugin); warn (on stderr) about broken
    ones."""
    loaded = load_plugins(extra)
    for info in loaded.plugins:
        for error in info.errors:
            click.echo(f"warning: plugin '{info.name}': {error} (see `bench plugins`)", err=True)
    return loaded


@click.group(cls=BenchGroup)
@click.version_option(package_name="dmlbench", prog_name="dmlbench")
def cli() -> None:
    """dmlbench: benchmark deep metric learning and deep hashing methods under one protocol."""


def _seed_list(ctx, param, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return parse_seeds(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@cli.command()
@click.option("--plugin", "--method", "-p", "method", required=True, help="Method to run.")
@click.option("--dataset", "-d", required=True, help="Dataset to train and evaluate on.")
@click.option(
    "--protocol",
    default=None,
    help="Name or JSON path [default: the dataset's standard protocol, which the run names].",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, MAX_SEED))
@click.option(
    "--seeds",
    default=None,
    callback=_seed_list,
    help="Run several seeds: a count (3 = seeds 0, 1, 2) or a list (0,1,2); prints mean, sd "
    "and 95% CI. Replaces --seed.",
)
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=None,
    help="k-fold cross-validation over the training classes: k runs, each choosing its "
    "checkpoint on one fold; prints the mean test figures and those of the k models' "
    "embeddings concatenated.",
)
@click.option(
    "--select-on",
    type=click.Choice(["validation", "last", "test"]),
    default=None,
    help="Which weights the test split sees [default: the protocol's, validation]. 'test' picks "
    "the best on the test split, as most papers do: the result is marked and ranked apart.",
)
@click.option("--preset", default=None, help="A named hyper-parameter set of the method.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a protocol field (train.epochs=3) or hyper-parameter (beta=50).",
)
@click.option("--data-root", default=None, help="[default: $BENCH_DATA or ~/.cache/dmlbench/data]")
@click.option("--results-dir", default="results", show_default=True, type=click.Path())
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and stop.")
@click.option(
    "--resume",
    default=None,
    metavar="PATH|auto",
    help="Continue an interrupted run from a checkpoint (one is written at every evaluation "
    "interval, beside the results, as <fingerprint>-seed<S>.resume.pt): its path, or auto for "
    "this run's newest under --results-dir (starting afresh when there is none).",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=None,
    help="Train on N processes of this machine (one per GPU) with DistributedDataParallel: "
    "re-runs the command under torchrun. The protocol's batch is global, split across them.",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option(
    "--save-checkpoint/--no-save-checkpoint",
    default=True,
    show_default=True,
    help="Save the final weights beside the result file, for `bench eval --checkpoint`, and "
    "a checkpoint at every evaluation interval, for --resume.",
)
@click.option(
    "--skip-bad-images",
    is_flag=True,
    help="Leave unreadable images out (counted in the result) instead of stopping.",
)
@click.option(
    "--log",
    "trackers",
    default=None,
    metavar="NAMES",
    help="Experiment trackers, comma-separated: csv (a row per evaluation in <result>.csv), "
    "tensorboard (event files in <result>.tensorboard/; needs pip install tensorboard).",
)
def run(
    method,
    dataset,
    protocol,
    seed,
    seeds,
    folds,
    select_on,
    preset,
    overrides,
    data_root,
    results_dir,
    device,
    dry_run,
    resume,
    nproc,
    progress,
    save_checkpoint,
    skip_bad_images,
    trackers,
) -> None:
    """Train METHOD on DATASET under PROTOCOL, evaluate, and write one result file per seed."""
    from benchmark.config import build_run_config, choose_protocol, protocol_notes

    seed_list = [seed] if seeds is None else seeds
    if folds and seeds is not None:
        raise BenchError("--folds runs one seed (--seed); it cannot be combined with --seeds.")
    if resume not in (None, "auto") and (folds or len(seed_list) > 1):
        raise BenchError(
            f"--resume {resume} continues one run; with --seeds or --folds pass --resume auto, "
            "which finds each run's own checkpoint."
        )
    if folds and not save_checkpoint:
        raise BenchError(
            "--folds needs the fold models' checkpoints for the concatenated reading; "
            "leave out --no-save-checkpoint."
        )
    from benchmark.trackers import build_trackers

    loaded = registry(build_trackers(trackers) if trackers else ())
    choice = choose_protocol(loaded, dataset, protocol)
    configs = [
        build_run_config(
            loaded, method=method, dataset=dataset, protocol=choice.name_or_path, seed=one,
            preset=preset, overrides=overrides, select_on=select_on,
        )
        for one in seed_list
    ]  # fmt: skip
    if folds:
        from benchmark.engine.folds import fold_config

        configs = [fold_config(configs[0], folds, fold) for fold in range(folds)]
    notes = protocol_notes(loaded, configs[0], choice)
    if dry_run:
        for note in notes:
            click.echo(note, err=True)
        document = {"fingerprint": configs[0].fingerprint, "config": configs[0].to_dict()}
        click.echo(json.dumps(document, indent=2, sort_keys=True))
        return
    from benchmark.data.root import resolve_data_root
    from benchmark.engine import distributed
    from benchmark.engine.run import RunOptions, execute, pick_device

    if nproc is not None:  # does not return: torchrun runs this command again
        distributed.launch(nproc, configs[0].protocol.data.batch_size)
    world = distributed.start(pick_device(device))
    options = RunOptions(
        resolve_data_root(data_root),
        Path(results_dir),
        device,
        progress and world.is_main,
        save_checkpoint,
        skip_bad_images,
        world=world,
    )
    if options.progress:
        loaded.manager.register(ConsoleReporter(), name="console")
    say = click.echo if world.is_main else _silent  # rank 0 speaks for the run
    for note in notes:
        say(note, err=True)
    results, paths = [], []
    try:
        for config in configs:
            say(
                f"{method} on {dataset}, protocol {config.protocol.name} "
                f"v{config.protocol.version}, seed {config.seed}, "
                f"fingerprint {config.fingerprint[:12]}",
                err=True,
            )
            resume_from = _resume_from(resume, options.results_dir, config, say)
            result, path = execute(loaded, config, options, resume_from)
            results.append(result)
            paths.append(path)
            say(evaluations_table(result))
            say(f"\nResult written to {path}")
    finally:
        distributed.stop(world)
    if not world.is_main:
        return
    if folds:
        _report_folds(loaded, results, paths, options)
    elif len(results) > 1:
        click.echo("\n" + seeds_table(results))


def _silent(*args, **kwargs) -> None:
    """click.echo on the ranks other than 0."""


def _resume_from(resume: str | None, results_dir: Path, config, say) -> Path | None:
    """The checkpoint `--resume` names for this run; with auto, the run's newest, if any."""
    if resume is None:
        return None
    if resume != "auto":
        say(f"Resuming from {resume}.", err=True)
        return Path(resume)
    from benchmark.engine.resume import find_resume_point, resume_path

    found = find_resume_point(results_dir, config)
    if found is None:
        folder = resume_path(results_dir, config).parent
        say(f"--resume auto: no checkpoint of this run in {folder}; starting afresh.", err=True)
    else:
        say(f"Resuming from {found}.", err=True)
    return found


def _report_folds(loaded: Registry, results, paths, options) -> None:
    from benchmark.engine.folds import (
        concatenated_figures,
        cross_validation_summary,
        write_summary,
    )
    from benchmark.report import summary_keys

    concatenated = concatenated_figures(
        loaded, paths, options.data_root, options.device, options.skip_bad_images
    )
    keys = summary_keys(results[0]["final"]["metrics"])
    summary = cross_validation_summary(results, concatenated, keys)
    click.echo("\n" + folds_table(results, summary))
    click.echo(f"\nCross-validation summary written to {write_summary(summary, paths[-1])}")


def _int_list(ctx, param, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(item) for item in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


@cli.command(name="eval")
@click.argument("embeddings", required=False, type=click.Path(path_type=Path))
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    help="Re-score a saved run: its result .json or checkpoint .pt.",
)
@click.option(
    "--task",
    type=click.Choice(["retrieval", "query-gallery", "hashing"]),
    help="[default: inferred from the array names]",
)
@click.option("--metrics", help="Comma-separated metric names [default: the task's set].")
@click.option("--recall-at", callback=_int_list, help="K list, e.g. 1,2,4,8.")
@click.option("--top-k", type=click.IntRange(min=1), help="Hashing: mAP@k [default: all].")
@click.option(
    "--distance", type=click.Choice(["cosine", "euclidean"]), default="cosine", show_default=True
)
@click.option("--data-root", default=None, help="With --checkpoint: where the dataset lives.")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def eval_(
    embeddings, checkpoint, task, metrics, recall_at, top_k, distance, data_root, device, as_json
) -> None:
    """Score EMBEDDINGS (.npz) produced by anything, or re-score a saved run.

    Labels must be integers (whole floats such as 1.0 pass); pickled arrays are refused, and so
    is a file whose arrays exceed $BENCH_EVAL_MAX_GB gigabytes (default 4)."""
    if (embeddings is None) == (checkpoint is None):
        raise click.UsageError("Give either an EMBEDDINGS.npz file or --checkpoint, not both.")
    wanted = metrics.split(",") if metrics else None
    if checkpoint is not None:
        from benchmark.data.root import resolve_data_root
        from benchmark.engine.rescore import rescore

        _, figures = rescore(registry(), checkpoint, resolve_data_root(data_root), device, wanted)
    else:
        from benchmark.embeddings import load_embedding_file
        from benchmark.metrics.tasks import score

        found = load_embedding_file(embeddings, task)
        figures = score(
            found.task,
            found.query,
            found.gallery,
            found.query_labels,
            found.gallery_labels,
            recall_at=recall_at,
            top_k=top_k,
            distance=distance,
            metrics=wanted,
        )
    click.echo(json.dumps(figures, indent=2) if as_json else metrics_table(figures))


@cli.group()
def data() -> None:
    """What a dataset is and where it goes (info); whether it is all there (check)."""


@data.command()
@click.argument("name")
def info(name: str) -> None:
    """Describe dataset NAME: source, expected layout under the data root, split sizes."""
    click.echo(dataset_info(registry().dataset(name)))


@data.command()
@click.argument("name")
@click.option("--root", default=None, help="Data root [default: $BENCH_DATA or ~/.cache/...].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(name: str, root: str | None, as_json: bool) -> None:
    """Verify NAME's layout, annotations and images; exit 0 only when all hold."""
    from benchmark.data.check import check_dataset
    from benchmark.data.root import resolve_data_root

    report = check_dataset(registry().dataset(name), resolve_data_root(root))
    click.echo(json.dumps(asdict(report), indent=2) if as_json else data_report(report))
    if not report.ok:
        sys.exit(1)


@data.command()
@click.argument("name", type=click.Choice(["coco"]))
@click.option(
    "--annotations",
    "annotation_files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="instances_train2014.json and instances_val2014.json (repeat the option).",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--queries", default=5000, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--train",
    default=10000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Training images, drawn from the database.",
)
@click.option("--root", default=None, help="Data root; the lists go to <root>/coco/.")
def prepare(
    name: str,
    annotation_files: tuple[Path, ...],
    seed: int,
    queries: int,
    train: int,
    root: str | None,
) -> None:
    """Build NAME's split lists from the official annotation files."""
    from benchmark.data.datasets.coco import build_coco_split, coco_category_names, write_coco_lists
    from benchmark.data.root import resolve_data_root

    files = list(annotation_files)
    target = resolve_data_root(root) / "coco"
    target.mkdir(parents=True, exist_ok=True)
    split = build_coco_split(files, seed=seed, queries=queries, train=train)
    write_coco_lists(split, target, coco_category_names(files), seed=seed)
    sizes = ", ".join(f"{part} {len(rows):,}" for part, rows in split.items())
    click.echo(f"Wrote train.txt, test.txt and database.txt to {target} ({sizes}).")


@data.command(name="cache")
@click.argument("name")
@click.option(
    "--protocol",
    default="cpu-smoke",
    show_default=True,
    help="Its data.resize and data.crop decide what is stored.",
)
@click.option("--root", default=None, help="Data root [default: $BENCH_DATA or ~/.cache/...].")
@click.option("--force", is_flag=True, help="Rebuild even when a valid cache exists.")
def cache(name: str, protocol: str, root: str | None, force: bool) -> None:
    """Decode and resize NAME's images once into uint8 arrays that runs then use."""
    import time

    from benchmark.config import resolve_protocol
    from benchmark.data.prepared import prepare_dataset
    from benchmark.data.root import resolve_data_root

    loaded, data_root = registry(), resolve_data_root(root)
    data_cfg = resolve_protocol(loaded, protocol)["data"]
    started = time.perf_counter()
    splits = loaded.dataset(name).load(data_root)
    paths = prepare_dataset(splits, data_root, name, data_cfg["resize"], data_cfg["crop"], force)
    click.echo(
        f"Prepared {name} at {data_cfg['resize']} px in "
        f"{time.perf_counter() - started:.1f} s: "
        + ", ".join(f"{split} -> {path}" for split, path in paths.items())
    )


@cli.command()
def plugins() -> None:
    """List installed plugins, their versions and what each registers."""
    loaded = load_plugins()
    click.echo(plugins_table(loaded))


@cli.command(name="list")
@click.argument("kind", type=click.Choice(["datasets", "methods", "backbones", "protocols"]))
def list_(kind: str) -> None:
    """List registered datasets, methods, backbones or protocols."""
    rows, headers = listing(registry(), kind)
    click.echo(tabulate(rows, headers=headers, tablefmt="simple"))


@cli.group()
def leaderboard() -> None:
    """Leaderboard tables built from result files (never typed by hand)."""


_RESULTS_OPTION = click.option(
    "--results",
    "results_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    default=[Path("leaderboards/results")],
    show_default=True,
    help="Folder of result files (repeatable).",
)
_OUT_OPTION = click.option(
    "--out", type=click.Path(path_type=Path), default=Path("leaderboards"), show_default=True
)


def _leaderboard_files(results_dirs, out: Path, html: bool) -> dict[str, str]:
    from benchmark.leaderboard import build, collect, render_files

    loaded = registry()
    return render_files(build(loaded, collect(list(results_dirs)), out), html)


@leaderboard.command(name="build")
@_RESULTS_OPTION
@_OUT_OPTION
@click.option(
    "--html", is_flag=True,
    help="Also write OUT/index.html, one self-contained page [default: when it exists already].",
)  # fmt: skip
def leaderboard_build(results_dirs, out: Path, html: bool) -> None:
    """Write <dataset>.md and <dataset>.json under OUT from every result file found."""
    from benchmark.leaderboard import PAGE, write_files

    html = html or (out / PAGE).exists()  # a committed page stays in step with its tables

    for path in write_files(_leaderboard_files(results_dirs, out, html), out):
        click.echo(f"wrote {path}")


@leaderboard.command(name="check")
@_RESULTS_OPTION
@_OUT_OPTION
def leaderboard_check(results_dirs, out: Path) -> None:
    """Exit 1 when the tables under OUT (and its index.html, if any) differ from what `build`
    would write."""
    from benchmark.leaderboard import PAGE, stale_files

    html = (out / PAGE).exists()
    stale = stale_files(_leaderboard_files(results_dirs, out, html), out)
    if stale:
        flag = " --html" if html else ""
        click.echo(
            f"Stale leaderboard files under {out}: {', '.join(stale)}. Run `bench leaderboard "
            f"build{flag}` and commit the result.",
            err=True,
        )
        sys.exit(1)
    click.echo(f"Leaderboards under {out} match their result files.")


@cli.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--into",
    type=click.Path(path_type=Path),
    default=Path("leaderboards/results"),
    show_default=True,
    help="Where published result files live.",
)
def submit(results, into: Path) -> None:
    """Check RESULTS for publication (schema, fingerprint, integrity, clean commit, no
    duplicate) and copy them under INTO with stable names; all or nothing."""
    from benchmark.submit import submit as publish

    for path in publish(list(results), into):
        click.echo(f"published {path}")


@cli.command(name="report")
@click.argument("result", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="[default: RESULT with .png]")
@click.option("--queries", default=6, show_default=True, type=click.IntRange(1, 20))
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(1, 20))
@click.option("--grid/--no-grid", default=True, show_default=True, help="Draw the retrieval grid "
              "(needs the run's checkpoint and its dataset).")  # fmt: skip
@click.option("--data-root", default=None, help="[default: $BENCH_DATA or ~/.cache/dmlbench/data]")
@click.option("--device", default="auto", show_default=True)
def report(result: Path, out, queries: int, top_k: int, grid: bool, data_root, device) -> None:
    """A PNG of one run: training curves, and test queries with their top-k results (correct
    framed green, wrong red)."""
    from benchmark.data.root import resolve_data_root
    from benchmark.runreport import write_report

    target = out or result.with_suffix(".png")
    root = resolve_data_root(data_root) if grid else None  # the curves need no data
    write_report(registry(), result, target, root, device, queries, top_k, grid)
    click.echo(f"wrote {target}")


cli.add_command(check_command)
cli.add_command(new_plugin_command)


def main() -> None:
    cli(prog_name="bench")


if __name__ == "__main__":
    sys.exit(main())
