"""dmlbench plugin: PDDM, "Local Similarity-Aware Deep Feature Embedding" (NIPS 2016)."""

from __future__ import annotations

from bench_pddm.loss import PDDMLoss, double_header_hinge
from bench_pddm.mining import MODES, Quadruplets, hard_quadruplets
from bench_pddm.unit import PDDMUnit
from benchmark.hookspecs import hookimpl
from benchmark.specs import BuildContext, MethodSpec, Paper, Reported

__all__ = [
    "PDDM_SPEC",
    "PDDMLoss",
    "PDDMUnit",
    "Quadruplets",
    "bench_methods",
    "double_header_hinge",
    "hard_quadruplets",
]

# There is no official code. alpha, beta and lambda are those of the third-party
# vadimkantorov/metriclearningbench (model.py, class Pddm, @ 6ee5992), not checked against the
# paper.
DEFAULTS = {
    "alpha": 0.5,
    "beta": 1.0,
    "lambda": 0.5,
    "hidden": 0,
    "quadruplets": "per-positive-pair",
    "neighbours": 8,
    "rerank_top_k": 0,
    "normalize_inputs": False,
}

HPARAM_SCHEMA = {
    "type": "object",
    "properties": {
        "alpha": {
            "type": "number",
            "minimum": 0,
            "maximum": 100,
            "description": "margin of the metric (PDDM score) hinges",
        },
        "beta": {
            "type": "number",
            "minimum": 0,
            "maximum": 4,
            "description": "margin of the embedding hinges (squared distance of unit vectors)",
        },
        "lambda": {
            "type": "number",
            "minimum": 0,
            "maximum": 100,
            "description": "weight of the embedding loss E_e",
        },
        "hidden": {
            "type": "integer",
            "minimum": 0,
            "maximum": 65536,
            "description": "width of the PDDM unit's layers; 0 = the embedding size",
        },
        "quadruplets": {
            "enum": list(MODES),
            "description": "per-positive-pair: one quadruplet per positive pair of the batch "
            "(default); one-per-batch: only the hardest positive pair (metriclearningbench)",
        },
        "neighbours": {
            "type": "integer",
            "minimum": 0,
            "maximum": 65536,
            "description": "each head's hardest negative is sought among its this many nearest "
            "negatives (its local neighbourhood); 0 = among every negative of the batch",
        },
        "rerank_top_k": {
            "type": "integer",
            "minimum": 0,
            "maximum": 10000,
            "description": "also report Recall@K after re-ranking each query's top k by the "
            "PDDM score; 0 = off",
        },
        "normalize_inputs": {
            "type": "boolean",
            "description": "L2-normalise u and v before their layers (recalled from the paper, "
            "not confirmed; neither reimplementation does)",
        },
    },
    "required": [
        "alpha",
        "beta",
        "lambda",
        "hidden",
        "quadruplets",
        "neighbours",
        "rerank_top_k",
        "normalize_inputs",
    ],
    "additionalProperties": False,
}

_SECONDARY = (
    "secondary comparison table (Fine-grained Retrieval Prompt Tuning); not checked against "
    "the paper"
)


def _recall(values: tuple[float, ...]) -> dict[str, float]:
    return {f"recall@{k}": value for k, value in zip((1, 2, 4, 8), values, strict=True)}


# Fractions in [0, 1], the scale of the core's retrieval metrics.
REPORTED = (
    Reported("cub", _recall((0.583, 0.692, 0.790, 0.884)), "PDDM + Quadruplet", _SECONDARY),
    Reported("cars196", _recall((0.574, 0.686, 0.801, 0.894)), "PDDM + Quadruplet", _SECONDARY),
)


def build(ctx: BuildContext) -> PDDMLoss:
    hparams = ctx.hparams
    return PDDMLoss(
        embedding_dim=ctx.embedding_dim,
        alpha=hparams["alpha"],
        beta=hparams["beta"],
        lam=hparams["lambda"],
        hidden=hparams["hidden"],
        mode=hparams["quadruplets"],
        neighbours=hparams["neighbours"],
        rerank_top_k=hparams["rerank_top_k"],
        normalize_inputs=hparams["normalize_inputs"],
    )


PDDM_SPEC = MethodSpec(
    name="pddm",
    summary="PDDM: a learned pair similarity, hard quadruplet mining, double-header hinge loss",
    paper=Paper(
        title="Local Similarity-Aware Deep Feature Embedding",
        authors="Huang, Loy, Tang",
        venue="NIPS 2016",
        url="https://arxiv.org/abs/1610.08904",
    ),
    tasks=("retrieval", "query-gallery"),
    build=build,
    defaults=DEFAULTS,
    hparam_schema=HPARAM_SCHEMA,
    heads=("embedding",),
    eval_output="embedding",
    distance="cosine",
    fidelity="reconstructed",
    fidelity_notes=(
        "There is no official code. alpha 0.5, beta 1.0 and lambda 0.5 come from a third-party "
        "reimplementation (vadimkantorov/metriclearningbench, marked WIP), not from the paper. "
        "The mining is our reading of the seed texts (hard quadruplets, plural; nearly linear "
        "batch cost; hard samples in a local neighbourhood): one quadruplet per positive pair, "
        "each head's hardest negative by PDDM score among its 8 nearest negatives, the unit "
        "scoring only those pairs; quadruplets=one-per-batch with neighbours=0 is "
        "metriclearningbench's single hardest quadruplet per batch, without its choice of the "
        "anchor or a positive as a negative. Not confirmed from the paper: the mining, whether "
        "u and v are L2-normalised before their layers (not by default, as in both "
        "reimplementations; normalize_inputs=true does), the layer widths (default: the "
        "embedding size) and the batch construction (here the protocol's P x K sampler). "
        "Retrieval uses the embedding, not the PDDM score; with rerank_top_k > 0 the PDDM "
        "re-ranking of each query's top k is reported as separate rerank@k figures."
    ),
    reported=REPORTED,
)


@hookimpl
def bench_methods() -> list[MethodSpec]:
    return [PDDM_SPEC]
