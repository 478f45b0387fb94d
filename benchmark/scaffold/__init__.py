"""`bench new-plugin`: write a complete, installable method plugin package from the templates
under template/ (package data), with a protocol derived from cpu-smoke."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from benchmark.errors import BenchError

# A method name that is also a distribution name (bench-NAME) and, with '-' as '_', a module.
PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
# Template file -> its path in the generated package ({module} is bench_<name>).
FILES = {
    "pyproject.toml": "pyproject.toml",
    "README.md": "README.md",
    "conftest.py": "conftest.py",
    "module/__init__.py": "{module}/__init__.py",
    "module/loss.py": "{module}/loss.py",
    "tests/test_method.py": "tests/test_{module}.py",
}


def plugin_names(name: str) -> dict[str, str]:
    """The names the templates use; a BenchError for a name that cannot be all of them."""
    if not PLUGIN_NAME.match(name) or len(name) > 40:
        raise BenchError(
            f"Plugin name {name!r} is not usable: use lowercase letters and digits, starting "
            f"with a letter, words joined by '-' or '_' (at most 40 characters), e.g. 'my-loss'."
        )
    module = "bench_" + name.replace("-", "_")
    words = re.split(r"[-_]", name)
    return {
        "name": name,
        "module": module,
        "distribution": "bench-" + name.replace("_", "-"),
        "class_name": "".join(word.capitalize() for word in words) + "Loss",
        "function": "_".join(words) + "_loss",
        "protocol": f"{name}-smoke",
    }


def write_plugin(name: str, parent: Path) -> Path:
    """Write plugin `name` into parent/<name>, creating `parent` if needed; refuse an existing
    folder. Returns the folder."""
    names = plugin_names(name)
    target = Path(parent) / name
    if target.exists():
        raise BenchError(
            f"{target} already exists: choose another name or --dir, or remove the folder."
        )
    try:
        Path(parent).mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file in the way, or no permission
        raise BenchError(f"--dir {parent}: cannot create it ({error.strerror}).") from None
    # Written beside the target and renamed, so a failure leaves no half-written plugin.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
    try:
        _render_into(staging, names)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _render_into(folder: Path, names: dict[str, str]) -> None:
    templates = resources.files(__package__) / "template"
    for source, destination in FILES.items():
        text = (templates / (source + ".tmpl")).read_text(encoding="utf-8")
        path = folder / destination.format(**names)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(text, names), encoding="utf-8")
    protocol = folder / names["module"] / "protocol.json"
    protocol.write_text(json.dumps(smoke_protocol(names), indent=2) + "\n", encoding="utf-8")


def render(text: str, names: dict[str, str]) -> str:
    """Replace each {{key}} with its name."""
    for key, value in names.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def smoke_protocol(names: dict[str, str]) -> dict:
    """The core's cpu-smoke protocol under the plugin's own name: a starting point to edit."""
    source = resources.files("benchmark") / "protocols" / "cpu-smoke.json"
    protocol = json.loads(source.read_text(encoding="utf-8"))
    protocol.update(
        name=names["protocol"],
        version=1,
        kind="paper",
        summary=f"cpu-smoke as shipped by plugin {names['name']}: edit it to the method's recipe.",
    )
    return protocol
