"""Checks that read the MethodSpec only: it validates, and its hyper-parameters agree."""

from __future__ import annotations

import jsonschema

from benchmark.plugins import Registry, validate_spec  # validate_spec: what registration checks
from benchmark.specs import MethodSpec
from benchmark.testing.result import CheckFailed


def check_spec(registry: Registry, method: MethodSpec) -> str:
    """What the registry checks, plus what a leaderboard needs: summary, paper, a dataset."""
    validate_spec("methods", method)
    if not method.summary.strip():
        raise CheckFailed("summary is empty")
    if not method.paper.title.strip() or not method.paper.url.startswith("http"):
        raise CheckFailed("paper needs a title and an http(s) url")
    unknown = [r.dataset for r in method.reported if r.dataset not in registry.datasets]
    if unknown:
        raise CheckFailed(f"reported figures name unknown datasets: {', '.join(unknown)}")
    return f"{method.fidelity}; tasks {', '.join(method.tasks)}; heads {', '.join(method.heads)}"


def check_hparams(method: MethodSpec) -> str:
    """The schema is a valid JSON schema that declares every default and catches misspelt
    names; defaults and every preset validate against it."""
    schema = dict(method.hparam_schema)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        raise CheckFailed(f"hparam_schema is not a valid JSON schema: {error.message}") from None
    declared = set(schema.get("properties", {}))
    undeclared = sorted(set(method.defaults) - declared)
    if undeclared:
        raise CheckFailed(f"defaults {undeclared} are not declared in hparam_schema.properties")
    if schema.get("additionalProperties", True) is not False:
        raise CheckFailed(
            "hparam_schema allows unknown names: set additionalProperties to false "
            "(benchmark.specs.closed_schema) so that a misspelt --set is refused"
        )
    for label, values in {"defaults": method.defaults, **method.presets}.items():
        try:
            jsonschema.validate(dict(values), schema)
        except jsonschema.ValidationError as error:
            raise CheckFailed(f"{label} do not match hparam_schema: {error.message}") from None
    return f"{len(method.defaults)} defaults, {len(method.presets)} preset(s) validate"
