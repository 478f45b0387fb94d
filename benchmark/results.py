"""Result files: build, validate, write atomically, read."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import torch
import torchvision

from benchmark.config import canonical_json, load_schema
from benchmark.errors import BenchError
from benchmark.files import write_atomically
from benchmark.provenance import cpu_model, machine
from benchmark.specs import Splits

SCHEMA_VERSION = 1
# Result files come from other people (pull requests): bounded before anything parses them.
MAX_RESULT_BYTES = 16 << 20  # this project's own are under 10 kB
MAX_DEPTH = 64  # this project's nest 5 levels; json, jsonschema and the integrity hash recurse
VERSION = re.compile(r"^[0-9A-Za-z.+-]{1,40}$")


@cache
def _validator() -> jsonschema.Draft202012Validator:
    protocol = load_schema("protocol.schema.json")
    registry = referencing.Registry().with_resource(
        protocol["$id"], referencing.Resource.from_contents(protocol)
    )
    return jsonschema.Draft202012Validator(load_schema("result.schema.json"), registry=registry)


def validate_result(result: Mapping[str, Any], where: str = "result") -> None:
    _check_schema_version(result, where)
    error = jsonschema.exceptions.best_match(_validator().iter_errors(result))
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise BenchError(f"{where}: invalid value at '{path}': {error.message}")
    for key in ("method", "dataset"):
        if result["config"][key] != result[key]["name"]:
            raise BenchError(
                f"{where}: config.{key} {result['config'][key]!r} and {key}.name "
                f"{result[key]['name']!r} differ; bench run writes the same name in both."
            )


def _check_schema_version(result: Any, where: str) -> None:
    """A file of a newer schema says which dmlbench wrote it, rather than fail on a field."""
    version = result.get("schema_version") if isinstance(result, Mapping) else None
    if type(version) is not int or version <= SCHEMA_VERSION:
        return
    from benchmark import __version__

    made_by = result.get("environment")
    made_by = made_by.get("dmlbench") if isinstance(made_by, Mapping) else None
    # Shown on a terminal: only a plain version number, never escape sequences from a file.
    plain = isinstance(made_by, str) and VERSION.match(made_by)
    made_by = f"dmlbench {made_by}" if plain else "a newer dmlbench"
    raise BenchError(
        f"{where}: made by {made_by} (schema {version}); this dmlbench "
        f"({__version__}) reads schema {SCHEMA_VERSION}: upgrade dmlbench to read it."
    )


def result_folder(results_dir: Path, dataset: str, method: str) -> Path:
    """results/<dataset>/<method>/: the folder of a run's result file."""
    return Path(results_dir) / dataset / method


def result_path(result: Mapping[str, Any], results_dir: Path) -> Path:
    """A new file name under results/<dataset>/<method>/ (the folder is created)."""
    config = result["config"]
    folder = result_folder(results_dir, config["dataset"], config["method"])
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BenchError(
            f"Cannot create the results folder {folder}: {error.strerror}. "
            f"Pass a writable --results-dir."
        ) from None
    stamp = result["created"].replace("-", "").replace(":", "")[:15]
    return _free_name(folder, f"{result['fingerprint'][:12]}-seed{result['seed']}-{stamp}")


def integrity(result: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the whole result but this field: editing any figure,
    setting or provenance afterwards no longer matches. It shows accidental or careless edits;
    it is not a signature (anyone can recompute it)."""
    content = {key: value for key, value in result.items() if key != "integrity"}
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


def write_result(result: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Seal with `integrity`, validate, then write atomically, so no invalid or half-written
    file remains. Returns the result as written."""
    result = {**result, "integrity": integrity(result)}
    validate_result(result)
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    write_atomically(path, lambda handle: handle.write(text.encode()), "another --results-dir")
    return result


def _free_name(folder: Path, stem: str) -> Path:
    candidate, n = folder / f"{stem}.json", 1
    while candidate.exists():
        n += 1
        candidate = folder / f"{stem}-{n}.json"
    return candidate


def read_result(path: Path) -> dict[str, Any]:
    """A result file, parsed and validated, whoever wrote it."""
    result = _parse(path)
    validate_result(result, str(path))
    return result


def check_integrity(result: Mapping[str, Any], where: str) -> None:
    """A BenchError unless `result` carries the integrity hash of its own content."""
    if "integrity" not in result:
        raise BenchError(
            f"{where}: no integrity hash; it was written by an older bench. Run it again."
        )
    if integrity(result) != result["integrity"]:
        raise BenchError(
            f"{where}: its content no longer matches its integrity hash: figures, settings or "
            f"provenance were edited after the run. Publish the file as `bench run` wrote it."
        )


def _parse(path: Path) -> Any:
    if not path.is_file():  # a folder, a pipe or a device would not end, or not read
        raise BenchError(f"{path}: " + ("not a file." if path.exists() else "file not found."))
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_RESULT_BYTES + 1)
    except OSError as error:
        raise BenchError(f"{path}: cannot read it: {error.strerror}.") from None
    if len(data) > MAX_RESULT_BYTES:
        raise BenchError(
            f"{path}: larger than {MAX_RESULT_BYTES >> 20} MiB; result files are a few kB. "
            f"Is it a result file of `bench run`?"
        )
    try:
        document = json.loads(data)
        too_deep = _deeper_than(document, MAX_DEPTH)
    except json.JSONDecodeError as error:
        raise BenchError(f"{path}:{error.lineno}: not valid JSON ({error.msg}).") from None
    except RecursionError:
        too_deep = True
    except ValueError as error:  # not UTF-8, or an integer of thousands of digits
        raise BenchError(f"{path}: not valid JSON ({error}).") from None
    if too_deep:
        raise BenchError(
            f"{path}: JSON nested deeper than {MAX_DEPTH} levels; result files of `bench run` "
            f"nest a few."
        )
    return document


def _deeper_than(document: Any, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` levels (counted without recursion)."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            if depth > limit:
                return True
            stack += [(item, depth + 1) for item in value]
    return False


def untrained_metrics(result: Mapping[str, Any]) -> dict[str, float] | None:
    """The test figures of the network before any training (the epoch-0 test evaluation every
    run records; older result files have it only when they chose on the test split)."""
    return next(
        (e["metrics"] for e in result["evaluations"] if e["split"] == "test" and e["epoch"] == 0),
        None,
    )


def split_fingerprint(splits: Splits, data_root: Path) -> str:
    """sha256 of every (split, relative path, label) line: the same files give the same print."""
    lines = []
    for name in ("train", "query", "gallery"):
        images = getattr(splits, name)
        for path, label in zip(images.paths, images.labels, strict=True):
            relative = path.relative_to(data_root) if path.is_relative_to(data_root) else path
            lines.append(f"{name}\t{relative.as_posix()}\t{json.dumps(label.tolist())}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def environment(device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """Where a run ran; world_size: its processes (torchrun), each training a slice of the
    protocol's global batch."""
    from benchmark import __version__

    commit, dirty = _git_state()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "dmlbench": __version__,
        "device": _device_name(device),
        "world_size": world_size,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "git_commit": commit,
        "git_dirty": dirty,
        "command": " ".join(["bench", *sys.argv[1:]]),
        **machine(device),
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model = cpu_model() or platform.machine()
    capability = torch.backends.cpu.get_cpu_capability()
    return f"cpu: {model}, {capability}" if capability else f"cpu: {model}"


def _git_state() -> tuple[str | None, bool | None]:
    here = Path(__file__).parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain"],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(status.strip())


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
