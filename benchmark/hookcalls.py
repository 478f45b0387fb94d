"""Calling hooks plugin by plugin, so one plugin's error is its own; and tracing hook calls.

`BENCH_TRACE_PLUGINS=1` logs every hook call (plugin, hook, duration) to stderr.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import pluggy
from tqdm import tqdm

TRACE_VARIABLE = "BENCH_TRACE_PLUGINS"


def say(line: str) -> None:
    """One line on stderr that leaves a running progress bar intact."""
    tqdm.write(line, file=sys.stderr)


def implementers(manager: pluggy.PluginManager, hook_name: str) -> list[object]:
    """The plugins implementing `hook_name`, each once, in pluggy's calling order."""
    impls = getattr(manager.hook, hook_name).get_hookimpls()
    return list(dict.fromkeys(impl.plugin for impl in reversed(impls)))


def call_plugin(
    manager: pluggy.PluginManager, plugin: object, hook_name: str, kwargs: Mapping[str, Any]
) -> list[Any]:
    """The non-None results of `plugin`'s own implementations of `hook_name`; [] if it has none.

    A hook wrapper of `plugin` wraps only `plugin`'s implementations here.
    """
    if plugin not in implementers(manager, hook_name):
        return []
    others = [other for other in manager.get_plugins() if other is not plugin]
    return manager.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)


def trace_requested() -> bool:
    return os.environ.get(TRACE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def trace_hook_calls(manager: pluggy.PluginManager) -> None:
    """Log each hook call through `manager`: 'plugin trace: PLUGIN HOOK 0.12 ms [raised E]'."""
    started: list[float] = []

    def before(hook_name, hook_impls, kwargs) -> None:
        started.append(time.perf_counter())

    def after(outcome, hook_name, hook_impls, kwargs) -> None:
        milliseconds = 1000 * (time.perf_counter() - started.pop())
        plugins = ",".join(dict.fromkeys(impl.plugin_name for impl in hook_impls)) or "-"
        error = outcome.exception
        raised = f" raised {type(error).__name__}" if error is not None else ""
        say(f"plugin trace: {plugins} {hook_name} {milliseconds:.2f} ms{raised}")

    manager.add_hookcall_monitoring(before, after)
