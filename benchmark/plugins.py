"""The plugin manager: built-in plugins plus entry points of group `dmlbench`, and the registry.

Each plugin's hooks are called one by one so that a plugin that fails to import, raises in a
hook, or returns a malformed or duplicate spec is reported by name while the others keep working.
$BENCH_PLUGINS (a comma list; empty = none) chooses which installed entry points load.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pluggy

from benchmark import hookspecs
from benchmark.errors import BenchError, StopRun, suggest
from benchmark.hookcalls import call_plugin, implementers, say, trace_hook_calls, trace_requested
from benchmark.specs import TASKS, BackboneSpec, DatasetSpec, MethodSpec

BUILTIN_PLUGINS = {"builtin": "benchmark.builtin"}
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
KINDS = {"datasets": DatasetSpec, "backbones": BackboneSpec, "methods": MethodSpec}


@dataclass
class PluginInfo:
    """One loaded (or broken) plugin and what it registered."""

    name: str
    version: str
    source: str
    registered: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass
class Registry:
    """Every registered component by kind and name, and the plugin that registered each."""

    manager: pluggy.PluginManager
    plugins: list[PluginInfo] = field(default_factory=list)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    backbones: dict[str, BackboneSpec] = field(default_factory=dict)
    methods: dict[str, MethodSpec] = field(default_factory=dict)
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: dict[tuple[str, str], PluginInfo] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)

    def dataset(self, name: str) -> DatasetSpec:
        return _lookup(self.datasets, name, "dataset")

    def backbone(self, name: str) -> BackboneSpec:
        """A registered backbone, or `<family>:<variant>` of a family spec (one with variants)."""
        family, sep, variant = name.partition(":")
        spec = self.backbones.get(family)
        if spec is not None and spec.variants is not None:
            if not sep:
                raise BenchError(
                    f"Backbone '{name}' is a family: name one of its models, as {name}:<name>."
                )
            return spec.variants(variant)
        return _lookup(self.backbones, name, "backbone")

    def method(self, name: str) -> MethodSpec:
        return _lookup(self.methods, name, "method plugin")

    def protocol(self, name: str) -> dict[str, Any]:
        return _lookup(self.protocols, name, "protocol")

    def owner(self, kind: str, name: str) -> PluginInfo:
        return self.owners[(kind, name)]

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call lifecycle hook `hook_name` plugin by plugin. A plugin that raises is warned about
        once (and marked broken) and the run goes on; StopRun and BaseExceptions such as
        KeyboardInterrupt propagate."""
        for plugin in implementers(self.manager, hook_name):
            try:
                call_plugin(self.manager, plugin, hook_name, kwargs)
            except StopRun:
                raise
            except Exception as error:
                self._failed(self.manager.get_name(plugin), hook_name, error)

    def _failed(self, name: str, hook_name: str, error: Exception) -> None:
        if name in self.failed:
            return
        self.failed.add(name)
        message = f"{hook_name} raised {type(error).__name__}: {error}"
        for info in self.plugins:
            if info.name == name:
                info.errors.append(message)
        say(
            f"warning: plugin '{name}': {message}; the run goes on (its later errors are not shown)"
        )


def _lookup(table: dict[str, Any], name: str, what: str) -> Any:
    if name not in table:
        raise BenchError(f"Unknown {what} '{name}'.{suggest(name, table)}")
    return table[name]


def load_plugins(extra: Iterable[tuple[str, object]] = (), entry_points: bool = True) -> Registry:
    """Build a fresh registry from the built-in plugins, entry points and `extra` (name, plugin)."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    if trace_requested():
        trace_hook_calls(manager)
    registry = Registry(manager)
    from benchmark import __version__

    for name, module_name in BUILTIN_PLUGINS.items():
        _register(
            registry,
            name,
            lambda m=module_name: importlib.import_module(m),
            __version__,
            "built-in",
        )
    if entry_points:
        installed = _installed_entry_points()
        for ep in _selected(installed):
            version = ep.dist.version if ep.dist else "?"
            _register(registry, ep.name, ep.load, version, f"entry point {ep.value}")
        registry.plugins += _missing_plugins({ep.name for ep in installed})
    for name, plugin in extra:
        _register(registry, name, lambda p=plugin: p, "?", "registered in code")
    for info in registry.plugins:
        if not info.errors:
            _collect(registry, info)
    return registry


def _installed_entry_points() -> list[importlib.metadata.EntryPoint]:
    """Entry points of group dmlbench, sorted, so that registration order (and so which of two
    duplicates wins) is stable."""
    return sorted(importlib.metadata.entry_points(group=hookspecs.PROJECT), key=lambda e: e.name)


def _selected(installed: list[importlib.metadata.EntryPoint]) -> list:
    """The entry points $BENCH_PLUGINS names (comma list; empty = none; unset = all)."""
    wanted = _wanted_plugins()
    return installed if wanted is None else [ep for ep in installed if ep.name in wanted]


def _wanted_plugins() -> list[str] | None:
    """The names $BENCH_PLUGINS lists, or None when it is not set."""
    wanted = os.environ.get("BENCH_PLUGINS")
    if wanted is None:
        return None
    return list(dict.fromkeys(name.strip() for name in wanted.split(",") if name.strip()))


def _missing_plugins(installed: set[str]) -> list[PluginInfo]:
    """A broken entry for each name in $BENCH_PLUGINS that no installed entry point has."""
    missing = [name for name in _wanted_plugins() or [] if name not in installed]
    return [
        PluginInfo(name, "-", "$BENCH_PLUGINS", errors=[_not_installed(name, installed)])
        for name in missing
    ]


def _not_installed(name: str, installed: set[str]) -> str:
    return (
        f"not installed: no entry point of group '{hookspecs.PROJECT}' has this name."
        f"{suggest(name, installed)} Fix BENCH_PLUGINS or pip install the plugin."
    )


def _register(registry: Registry, name: str, load, version: str, source: str) -> None:
    info = PluginInfo(name, version, source)
    registry.plugins.append(info)
    plugin = None
    try:
        plugin = load()
        registry.manager.register(plugin, name=name)
    except Exception as error:  # a broken plugin is reported, never fatal
        info.errors.append(f"failed to load: {type(error).__name__}: {error}")
        if plugin is not None and registry.manager.get_plugin(name) is plugin:
            registry.manager.unregister(name=name)  # pluggy may have added some of its hooks


def _collect(registry: Registry, info: PluginInfo) -> None:
    plugin = registry.manager.get_plugin(info.name)
    for kind in (*KINDS, "protocols"):
        try:
            returned = call_plugin(registry.manager, plugin, f"bench_{kind}", {})
        except Exception as error:
            info.errors.append(f"bench_{kind} raised {type(error).__name__}: {error}")
            continue
        for specs in returned:
            if not isinstance(specs, list | tuple):
                info.errors.append(f"bench_{kind} returned {type(specs).__name__}, not a list")
                continue
            for spec in specs:
                _add(registry, info, kind, spec)


def _add(registry: Registry, info: PluginInfo, kind: str, spec: Any) -> None:
    try:
        name, value = validate_spec(kind, spec)
    except BenchError as error:
        info.errors.append(f"malformed {kind[:-1]}: {error}")
        return
    table = getattr(registry, kind)
    if name in table:
        first = registry.owners[(kind, name)]
        info.errors.append(
            f"{kind[:-1]} '{name}' is already registered by plugin "
            f"'{first.name}' {first.version}; this one was ignored"
        )
        return
    table[name] = value
    registry.owners[(kind, name)] = info
    info.registered.setdefault(kind, []).append(name)


def validate_spec(kind: str, spec: Any) -> tuple[str, Any]:
    if kind == "protocols":
        from benchmark.config import load_protocol_file

        protocol = load_protocol_file(Path(spec))
        return protocol["name"], protocol
    expected = KINDS[kind]
    if not isinstance(spec, expected):
        raise BenchError(f"expected a {expected.__name__}, got {type(spec).__name__}")
    if not isinstance(spec.name, str) or not NAME_PATTERN.match(spec.name):
        raise BenchError(f"name {spec.name!r} must match {NAME_PATTERN.pattern}")
    if isinstance(spec, MethodSpec):
        _check_method(spec)
    if isinstance(spec, DatasetSpec) and spec.task not in TASKS:
        raise BenchError(f"dataset '{spec.name}': task {spec.task!r} is not one of {TASKS}")
    return spec.name, spec


def _check_method(spec: MethodSpec) -> None:
    unknown = set(spec.tasks) - set(TASKS)
    if not spec.tasks or unknown:
        raise BenchError(
            f"method '{spec.name}': tasks {spec.tasks} must be a non-empty subset of {TASKS}"
        )
    from benchmark.models.model import HEADS

    if not spec.heads or set(spec.heads) - set(HEADS):
        raise BenchError(
            f"method '{spec.name}': heads {spec.heads} must be a non-empty subset of {HEADS}"
        )
    if spec.eval_output not in spec.heads:
        raise BenchError(
            f"method '{spec.name}': eval_output '{spec.eval_output}' is not one of its heads "
            f"{spec.heads}"
        )
    for label, values in {"defaults": spec.defaults, **spec.presets}.items():
        try:
            jsonschema.validate(dict(values), dict(spec.hparam_schema))
        except jsonschema.ValidationError as error:
            raise BenchError(
                f"method '{spec.name}': {label} do not match its hparam_schema: {error.message}"
            ) from None
        except jsonschema.SchemaError as error:
            raise BenchError(
                f"method '{spec.name}': its hparam_schema is not a valid JSON schema: "
                f"{error.message}"
            ) from None
