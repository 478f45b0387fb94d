"""`bench submit`: check result files for publication and copy them where leaderboards read.

A file is accepted when it matches the result schema, its fingerprint is the one its embedded
config gives, its integrity hash matches its content (no figure, setting or provenance edited
after the run), it names the commit it was run from on a clean checkout, and no published file
holds the same configuration and seed. Either every file given is accepted and copied, or none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmark.config import fingerprint
from benchmark.errors import BenchError
from benchmark.files import path_inside, write_atomically
from benchmark.results import check_integrity, read_result


def published_name(result: dict[str, Any]) -> Path:
    """The stable place of a result under the published folder."""
    config = result["config"]
    name = f"{result['fingerprint'][:12]}-seed{result['seed']}.json"
    return Path(config["dataset"]) / config["method"] / name


def check_for_publication(path: Path) -> dict[str, Any]:
    """The result in `path`, or a BenchError saying what does not match."""
    result = read_result(path)
    check_integrity(result, str(path))
    if fingerprint(result["config"]) != result["fingerprint"]:
        raise BenchError(
            f"{path}: its fingerprint is not the one its config gives: the config was edited "
            f"after the run."
        )
    environment = result["environment"]
    if not environment.get("git_commit") or environment.get("git_dirty") is not False:
        raise BenchError(
            f"{path}: it does not name a clean commit (git_commit "
            f"{environment.get('git_commit')!r}, git_dirty {environment.get('git_dirty')!r}); "
            f"run from a clean checkout so that the code behind the figures can be found."
        )
    return result


def submit(paths: list[Path], into: Path) -> list[Path]:
    """Check every file, then copy all of them under `into`; return where they went."""
    accepted: dict[Path, tuple[Path, dict[str, Any]]] = {}
    for path in paths:
        result = check_for_publication(path)
        target = path_inside(into, published_name(result))
        configuration, seed = result["fingerprint"][:12], result["seed"]
        if target in accepted:
            raise BenchError(
                f"{path} and {accepted[target][0]} are the same configuration ({configuration}) "
                f"and seed ({seed}): submit one of them."
            )
        if target.exists():
            raise BenchError(
                f"{path}: configuration {configuration} seed {seed} is already published as "
                f"{target}."
            )
        accepted[target] = path, result
    for target, (_, result) in accepted.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(result, indent=2, sort_keys=True) + "\n"
        write_atomically(
            target, lambda handle, text=text: handle.write(text.encode()), "another --into"
        )
    return list(accepted)
