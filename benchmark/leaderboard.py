"""Leaderboards derived from result files, never typed: one Markdown file and one JSON file per
dataset, one ranked table per (protocol, version, selection rule).

Runs with the same configuration fingerprint are replicates (seeds) and are aggregated as mean ±
a Student-t 95% confidence interval. Tables of different protocols, protocol versions or
selection rules are never merged; results that chose their checkpoint on the test split get
their own, labelled table, and so do results of a protocol not meant for the dataset (run with
an explicit --protocol elsewhere). Each table has a "no training" row per backbone and size: the
untrained network's test figures, which every result records; a row below its own is flagged.
Paper-reported figures (MethodSpec.reported) are listed apart and never ranked, with the
difference to the reproduced mean where both exist.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tabulate import tabulate

from benchmark.charts import escape
from benchmark.errors import BenchError
from benchmark.files import link_error, path_inside, write_atomically
from benchmark.plugins import Registry
from benchmark.results import check_integrity, read_result, untrained_metrics
from benchmark.stats import summarize

PAGE = "index.html"  # the web page, written with --html
SUMMARY_FOLDERS = {"cross-validation"}  # beside result files, but not result files
SELECTION_TITLES = {
    "validation": "checkpoint chosen on the validation split",
    "last": "last checkpoint",
    "test": "checkpoint chosen ON THE TEST SPLIT — not comparable with the tables above",
}


@dataclass(frozen=True)
class Board:
    """The key of one ranked table."""

    dataset: str
    protocol: str
    version: int
    kind: str
    selection: str
    standard: bool = True  # the protocol is meant for the dataset (DatasetSpec/MethodSpec name it)


def collect(folders: Sequence[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Every result file under `folders`, schema-validated and integrity-checked, sorted by
    path. They come from contributors' pull requests: no link is followed."""
    found = []
    for folder in folders:
        if not folder.is_dir():
            raise BenchError(f"Results folder {folder} does not exist; pass --results DIR.")
        for path in result_files(folder):
            result = read_result(path)
            check_integrity(result, str(path))
            found.append((path, result))
    return found


def result_files(folder: Path) -> list[Path]:
    """The .json files under `folder` but in summary folders; a BenchError at a symbolic link
    (a file or folder), which could lead outside `folder`."""
    found = []
    for parent, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if name not in SUMMARY_FOLDERS]
        for name in folders + files:
            if (Path(parent) / name).is_symlink():
                raise link_error(Path(parent) / name, folder)
        found += [Path(parent) / name for name in files if name.endswith(".json")]
    return sorted(found)


def board_of(result: Mapping[str, Any], registry: Registry | None = None) -> Board:
    protocol = result["config"]["protocol"]
    standard = registry is None or meant_for(registry, result)
    return Board(
        result["dataset"]["name"], protocol["name"], protocol["version"], protocol["kind"],
        result["final"]["selection"], standard,
    )  # fmt: skip


def meant_for(registry: Registry, result: Mapping[str, Any]) -> bool:
    """Whether the result's protocol is meant for its dataset: the datasets its stored protocol
    declares, or for files older than that field, the dataset's standard protocol or the
    method's paper protocol for it."""
    protocol, dataset = result["config"]["protocol"], result["dataset"]["name"]
    if "datasets" in protocol:
        patterns = protocol["datasets"]
        return not patterns or any(fnmatch.fnmatchcase(dataset, p) for p in patterns)
    method = registry.methods.get(result["method"]["name"])
    paper = method.paper_protocols.get(dataset) if method else None
    return protocol["name"] in (registry.datasets[dataset].protocol, paper)


def build(
    registry: Registry, results: Iterable[tuple[Path, dict[str, Any]]], base: Path
) -> dict[str, dict[str, Any]]:
    """{dataset: its leaderboard document}; result links are relative to `base`, the folder
    of the tables."""
    results = list(results)
    _refuse_duplicates(results)
    boards: dict[Board, list[tuple[Path, dict]]] = defaultdict(list)
    for path, result in results:
        _check_ranked(registry, path, result)
        boards[board_of(result, registry)].append((path, result))
    documents: dict[str, dict[str, Any]] = {}
    for board in sorted(boards, key=_board_order):
        document = documents.setdefault(board.dataset, _empty(registry, board.dataset))
        rows = _rows(registry, boards[board], base)
        untrained = untrained_rows(boards[board], document["metrics"])
        document["tables"].append({**board.__dict__, "rows": rows, "untrained": untrained})
    for name in sorted(registry.datasets):  # datasets with papers' figures, even unreproduced
        if any(r.dataset == name for m in registry.methods.values() for r in m.reported):
            documents.setdefault(name, _empty(registry, name))
    for name, document in documents.items():
        document["paper"] = _paper_rows(registry, name, document["tables"])
    return dict(sorted(documents.items()))


def _refuse_duplicates(results: Sequence[tuple[Path, dict[str, Any]]]) -> None:
    """One run counts once: the same configuration and seed under two names is refused."""
    seen: dict[tuple[str, int], Path] = {}
    for path, result in results:
        key = (result["fingerprint"], result["seed"])
        if key in seen:
            raise BenchError(
                f"{path}: configuration {key[0][:12]} seed {key[1]} is also in {seen[key]}: "
                f"one run counts once. Remove one of the two files."
            )
        seen[key] = path


def _check_ranked(registry: Registry, path: Path, result: Mapping[str, Any]) -> None:
    """A dataset no installed plugin registers has no known metrics to rank on: refused, rather
    than ranked on a guess."""
    name = result["dataset"]["name"]
    if name not in registry.datasets:
        raise BenchError(
            f"{path}: dataset {name!r} is not registered by any installed plugin, so its metrics "
            f"are not known. Install the plugin that registers it (`bench plugins` lists those "
            f"installed) and build again."
        )
    main = registry.datasets[name].main_metric
    if main not in result["final"]["metrics"]:
        raise BenchError(
            f"{path}: final.metrics has no {main!r}, the main metric of {name}, which its "
            f"tables rank on."
        )


def _empty(registry: Registry, dataset: str) -> dict[str, Any]:
    spec = registry.datasets[dataset]
    return {
        "dataset": dataset,
        "main_metric": spec.main_metric,
        "metrics": list(_metric_names(spec)),
        "tables": [],
    }


def _metric_names(spec) -> tuple[str, ...]:
    if spec.task == "hashing":
        return ("map@k", "map@k_index_order", "precision@radius2")
    return (*(f"recall@{k}" for k in spec.recall_at), "map@r")


def _board_order(board: Board) -> tuple:
    # Off-protocol and test-selected tables last; within a protocol the newest version first.
    return (board.dataset, board.selection == "test", not board.standard, board.kind,
            board.protocol, -board.version, board.selection)  # fmt: skip


def _rows(registry: Registry, runs: list[tuple[Path, dict]], base: Path) -> list[dict[str, Any]]:
    by_config: dict[str, list[tuple[Path, dict]]] = defaultdict(list)
    for path, result in runs:
        by_config[result["fingerprint"]].append((path, result))
    spec = registry.datasets[runs[0][1]["dataset"]["name"]]
    names, main = _metric_names(spec), spec.main_metric
    rows = [_row(replicates, names, base) for replicates in by_config.values()]
    for row in rows:
        own = row["untrained"].get(main)
        row["below_untrained"] = own is not None and row["metrics"][main]["mean"] < own["mean"]
    return sorted(rows, key=lambda row: (-row["metrics"][main]["mean"], row["method"]))


def untrained_rows(runs: list[tuple[Path, dict]], names: Sequence[str]) -> list[dict]:
    """The "no training" row of each (backbone, size) of a table: the untrained network's test
    figures over every run of it that records them."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for _, result in runs:
        figures = untrained_metrics(result)
        if figures is not None:
            groups[_backbone_and_size(result)].append(figures)
    return [
        {
            "backbone": backbone,
            "size": size,
            "runs": len(figures),
            "metrics": _summaries(figures, names),
        }  # fmt: skip
        for (backbone, size), figures in sorted(groups.items())
    ]


def _summaries(figures: Sequence[Mapping[str, float]], names: Sequence[str]) -> dict:
    return {
        name: summarize([f[name] for f in figures])
        for name in names
        if figures and all(name in f for f in figures)
    }


def _backbone_and_size(result: Mapping[str, Any]) -> tuple[str, str]:
    model = result["config"]["protocol"]["model"]
    hashing = result["dataset"]["task"] == "hashing"
    size = f"{model['hash']['bits']} bits" if hashing else f"{model['embedding_dim']}-d"
    return model["backbone"], size


def _row(replicates: list[tuple[Path, dict]], names: Sequence[str], base: Path) -> dict:
    replicates = sorted(replicates, key=lambda item: item[1]["seed"])
    first = replicates[0][1]
    backbone, size = _backbone_and_size(first)
    untrained = [untrained_metrics(r) for _, r in replicates]
    seconds = sum(r["timings"]["total_seconds"] for _, r in replicates)
    device = "GPU" if first["environment"]["device"].startswith("cuda") else "CPU"
    return {
        "method": first["method"]["name"],
        "plugin": f"{first['method']['plugin']} {first['method']['plugin_version']}",
        "preset": first["config"]["preset"],
        # What differs from the method's defaults and the protocol: preset and --set items.
        "settings": _settings(first["config"]),
        "fidelity": first["method"]["fidelity"],
        "backbone": backbone,
        "size": size,
        "fingerprint": first["fingerprint"],
        "seeds": [r["seed"] for _, r in replicates],
        "metrics": _summaries([r["final"]["metrics"] for _, r in replicates], names),
        # The same runs' untrained networks; empty unless every replicate recorded its own.
        "untrained": _summaries(untrained, names) if None not in untrained else {},
        "hours": {device: round(seconds / 3600, 4)},
        "results": [_link(path, base) for path, _ in replicates],
    }


def _settings(config: Mapping[str, Any]) -> str:
    items = [] if config["preset"] == "default" else [f"preset {config['preset']}"]
    return ", ".join(items + list(config["overrides"])) or "defaults"


def _link(path: Path, base: Path) -> str:
    """The URL of `path` from the folder `base`; percent-encoded, as file names are anyone's."""
    return quote(Path(os.path.relpath(path.resolve(), base.resolve())).as_posix())


def _paper_rows(registry: Registry, dataset: str, tables: list[dict]) -> list[dict[str, Any]]:
    """MethodSpec.reported figures for this dataset, with reproduced − reported where the
    method has a row (the first table it appears in: validation-selected tables come first)."""
    reproduced = {}
    for table in (t for t in tables if t.get("standard", True)):  # never an off-protocol run
        for row in table["rows"]:
            reproduced.setdefault(row["method"], (table, row))
    rows = []
    for name in sorted(registry.methods):
        for reported in registry.method(name).reported:
            if reported.dataset != dataset:
                continue
            row = {"method": name, "setting": reported.setting, "source": reported.source,
                   "metrics": dict(reported.metrics), "difference": {},
                   "command": reproduce_command(registry, name, dataset)}  # fmt: skip
            if name in reproduced:
                table, ours = reproduced[name]
                row["compared_with"] = f"{table['protocol']} v{table['version']}"
                row["difference"] = {
                    k: ours["metrics"][k]["mean"] - v
                    for k, v in reported.metrics.items()
                    if k in ours["metrics"]
                }
            rows.append(row)
    return rows


def reproduce_command(registry: Registry, method: str, dataset: str) -> str:
    """The command that fills a reproduced figure beside a paper's, under a standard protocol."""
    spec = registry.datasets.get(dataset)
    if spec is None or spec.protocol is None:  # no standard protocol: the run asks for one
        return f"bench run --plugin {method} --dataset {dataset} --protocol PROTOCOL --seeds 3"
    return (
        f"bench run --plugin {method} --dataset {dataset} --protocol {spec.protocol} --seeds 3 "
        f"&& bench submit results/{dataset}/{method}/*.json"
    )


# --- rendering -------------------------------------------------------------------------------


def render_markdown(document: Mapping[str, Any]) -> str:
    """The dataset's leaderboard page: one ranked table per board, then the papers' figures."""
    names = document["metrics"]
    lines = [f"# {cell(document['dataset'])}", "", _GENERATED, ""]
    for table in document["tables"]:
        lines += [f"## {table_title(table)}", ""]
        if not table.get("standard", True):
            lines += [_OFF_PROTOCOL, ""]
        lines += [_ranked_table(table["rows"], table.get("untrained", []), names), ""]
    if not document["tables"]:
        lines += ["No reproduced result yet: the commands under the papers' figures fill it.", ""]
    if document["paper"]:
        lines += ["## Paper-reported figures (not reproduced here, not ranked)", "",
                  _paper_table(document["paper"], names), "", "To reproduce:", ""]  # fmt: skip
        lines += sorted({f"    {row['command']}" for row in document["paper"]}) + [""]
    return "\n".join(lines)


def table_title(table: Mapping[str, Any]) -> str:
    """The heading of a table: protocol, version, kind, selection rule, and whether the
    protocol is meant for the dataset (escaped: the names come from result files)."""
    title = (f"{cell(table['protocol'])} v{table['version']} ({cell(table['kind'])} protocol), "
             f"{SELECTION_TITLES[table['selection']]}")  # fmt: skip
    return title if table.get("standard", True) else f"{title} — OFF-PROTOCOL for this dataset"


_OFF_PROTOCOL = (
    "These runs used a protocol not meant for this dataset (named with `--protocol`): "
    "they are not comparable with its standard tables and are never ranked with them."
)
BELOW = " ⚠ below no training"

_GENERATED = (
    "Generated by `bench leaderboard build` from the result files it links; do not edit. "
    "Figures in percent, mean ± 95% confidence interval over seeds (Student t)."
)


def _ranked_table(rows: list[dict], untrained: list[dict], names: Sequence[str]) -> str:
    headers = ["#", "method", "settings", "plugin", "backbone", "size", *names]
    headers += ["seeds", "hours", "results"]
    body = [
        [
            rank,
            row["method"] + (BELOW if row.get("below_untrained") else ""),
            row["settings"],
            row["plugin"],
            row["backbone"],
            row["size"],
            *(format_figure(row["metrics"].get(name)) for name in names),
            len(row["seeds"]),
            ", ".join(f"{h:.2f} {device}" for device, h in row["hours"].items()),
            " ".join(f"[{i + 1}]({link})" for i, link in enumerate(row["results"])),
        ]
        for rank, row in enumerate(rows, 1)
    ]
    body += [
        ["-", "no training", "untrained network", "-", row["backbone"], row["size"],
         *(format_figure(row["metrics"].get(name)) for name in names), row["runs"], "-", "-"]
        for row in untrained
    ]  # fmt: skip
    return _table(headers, body)


def _table(headers: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    cells = [[cell(value) for value in line] for line in body]
    return tabulate(cells, headers=[cell(h) for h in headers], tablefmt="github",
                    disable_numparse=True)  # fmt: skip


def cell(value: Any) -> str:
    """Text of a Markdown table cell: HTML escaped as on the page, so that no field of a result
    file adds markup; `|` escaped and lines joined, so that none breaks the table."""
    return " ".join(escape(str(value)).splitlines()).replace("|", "\\|")


def format_figure(summary: Mapping[str, Any] | None) -> str:
    if summary is None:
        return "-"
    if summary["ci95"] is None:
        return f"{100 * summary['mean']:.2f}"
    return f"{100 * summary['mean']:.2f} ± {100 * summary['ci95']:.2f}"


def _paper_table(rows: list[dict], names: Sequence[str]) -> str:
    headers = ["method", "setting", *names, "reproduced − paper", "source"]
    body = []
    for row in rows:
        figures = [f"{100 * row['metrics'][n]:.1f}" if n in row["metrics"] else "-" for n in names]
        difference = ", ".join(
            f"{name} {100 * value:+.2f} ({row['compared_with']})"
            for name, value in row["difference"].items()
        )
        body.append([row["method"], row["setting"], *figures, difference or "-", row["source"]])
    return _table(headers, body)


def render_files(documents: Mapping[str, dict[str, Any]], html: bool = False) -> dict[str, str]:
    """{relative file name: content} of a leaderboard folder; `html` adds the web page."""
    files = {}
    for name, document in sorted(documents.items()):
        files[f"{name}.md"] = render_markdown(document)
        files[f"{name}.json"] = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if html:
        from benchmark.web import render_html

        files[PAGE] = render_html(documents)
    return files


def write_files(files: Mapping[str, str], out: Path) -> list[Path]:
    """Write each file under `out`, never through a symbolic link."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = path_inside(out, Path(name))
        write_atomically(
            path, lambda handle, text=text: handle.write(text.encode()), "another --out"
        )
        written.append(path)
    return written


def stale_files(files: Mapping[str, str], out: Path) -> list[str]:
    """Names of tables under `out` that differ from `files`, are missing, or have no source."""
    stale = [name for name, text in files.items() if _read(out / name) != text]
    present = {p.name for p in out.glob("*.md")} | {p.name for p in out.glob("*.json")}
    present |= {PAGE} & {p.name for p in out.glob("*.html")}
    present.discard("README.md")  # the folder's own, hand-written explanation
    return sorted(stale + [name for name in present - set(files)])


def _read(path: Path) -> str | None:
    if path.is_symlink():  # stale: `build` refuses to write through it
        return None
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
