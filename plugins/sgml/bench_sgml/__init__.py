"""dmlbench plugin: SGML, "Semantic Granularity Metric Learning for Visual Search"
(Manandhar, Bastan, Yap, 2019), and its main baseline, binomial deviance (Yi et al., 2014)."""

from __future__ import annotations

from pathlib import Path

from bench_sgml.binomial import BinomialDevianceLoss, binomial_deviance
from bench_sgml.granularity import granularity_similarity, modulation
from bench_sgml.loss import SGMLLoss, attribute_loss, soft_binomial_deviance
from benchmark.hookspecs import hookimpl
from benchmark.specs import BuildContext, MethodSpec, Paper, closed_schema

__all__ = [
    "BINOMIAL_SPEC",
    "SGML_SPEC",
    "BinomialDevianceLoss",
    "SGMLLoss",
    "attribute_loss",
    "bench_methods",
    "bench_protocols",
    "binomial_deviance",
    "granularity_similarity",
    "modulation",
    "soft_binomial_deviance",
]

PROTOCOLS = Path(__file__).parent / "protocols"

# Yi et al. 2014's values, as public binomial-deviance implementations use them (the issue and
# the reference notes; not re-read from that paper).
BINOMIAL_DEFAULTS = {"alpha": 2.0, "beta": 0.5, "cost": 25.0}

# Everything below gamma is ours: the SGML paper's method section was not available.
SGML_DEFAULTS = {
    **BINOMIAL_DEFAULTS,
    "gamma": 1.0,
    "attribute_weight": 1.0,
    "granularity": "predicted",
    "similarity": "cosine",
    "modulation": "exp",
    "soften": "weight",
    "pairs": "negatives",
}

_BINOMIAL_PROPERTIES = {
    "alpha": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 1000,
        "description": "scale of the similarity inside the deviance",
    },
    "beta": {
        "type": "number",
        "minimum": -1,
        "maximum": 1,
        "description": "similarity threshold (cosine scale)",
    },
    "cost": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 1000,
        "description": "C: label of a negative pair is -C (balances the many negatives)",
    },
}

_SGML_PROPERTIES = {
    **_BINOMIAL_PROPERTIES,
    "gamma": {
        "type": "number",
        "minimum": 0,
        "maximum": 100,
        "description": "strength of the granularity modulation; 0 = plain binomial deviance",
    },
    "attribute_weight": {
        "type": "number",
        "minimum": 0,
        "maximum": 1000,
        "description": "weight of the attribute (multi-label BCE) loss",
    },
    "granularity": {
        "enum": ["predicted", "ground-truth"],
        "description": "attribute vectors of the similarity: sigmoid of the head (detached) or "
        "the dataset's",
    },
    "similarity": {
        "enum": ["cosine", "jaccard"],
        "description": "similarity of two attribute vectors (jaccard binarises at 0.5)",
    },
    "modulation": {
        "enum": ["exp", "linear"],
        "description": "g(s): exp(-gamma s) or 1 - gamma s / (1 + gamma)",
    },
    "soften": {
        "enum": ["weight", "label"],
        "description": "g multiplies each pair's term (weight) or its label m (label)",
    },
    "pairs": {
        "enum": ["negatives", "all"],
        "description": "modulate negatives only, or also positives by g(1 - s)",
    },
}


def build_sgml(ctx: BuildContext) -> SGMLLoss:
    return SGMLLoss(**ctx.hparams)


def build_binomial(ctx: BuildContext) -> BinomialDevianceLoss:
    return BinomialDevianceLoss(**ctx.hparams)


SGML_SPEC = MethodSpec(
    name="sgml",
    summary="SGML: embedding + attribute heads; binomial deviance softened by attribute similarity",
    paper=Paper(
        title="Semantic Granularity Metric Learning for Visual Search",
        authors="Manandhar, Bastan, Yap",
        venue="arXiv 1911.06047 (2019); J. Visual Communication and Image Representation 2020",
        url="https://arxiv.org/abs/1911.06047",
    ),
    tasks=("retrieval", "query-gallery"),
    build=build_sgml,
    defaults=SGML_DEFAULTS,
    hparam_schema=closed_schema(_SGML_PROPERTIES),
    heads=("embedding", "attributes"),
    paper_protocols={"cub": "sgml-cub", "inshop": "sgml-inshop"},
    eval_output="embedding",
    distance="cosine",
    fidelity="reconstructed",
    fidelity_notes=(
        "Reconstructed from the paper's abstract; its method section and code were not "
        "available. From the abstract: a multitask network learning attributes and the "
        "embedding together, and a soft-binomial deviance modulated by an attribute-space "
        "(semantic granularity) similarity. Ours, each a hyper-parameter: the modulation "
        "g(s) = exp(-gamma s) on negatives (gamma 1), applied as a pair weight; cosine of the "
        "predicted, detached attribute probabilities; attribute loss weight 1; the attribute "
        "head as one linear layer on the pooled feature. The paper's figures are not known "
        "(its In-Shop Recall@1 is only inferred from the abstract, about 91.8-91.9), so none "
        "are listed."
    ),
    reported=(),
)

BINOMIAL_SPEC = MethodSpec(
    name="binomial",
    summary="Binomial deviance on cosine similarities (Yi et al. 2014); SGML's main baseline",
    paper=Paper(
        title="Deep Metric Learning for Person Re-Identification",
        authors="Yi, Lei, Liao, Li",
        venue="ICPR 2014",
        # The arXiv version ("... for Practical Person Re-Identification", Yi, Lei, Li).
        url="https://arxiv.org/abs/1407.4979",
    ),
    tasks=("retrieval", "query-gallery"),
    build=build_binomial,
    defaults=BINOMIAL_DEFAULTS,
    hparam_schema=closed_schema(_BINOMIAL_PROPERTIES),
    heads=("embedding",),
    eval_output="embedding",
    distance="cosine",
    fidelity="faithful",
    fidelity_notes=(
        "The standard form: log(1 + exp(-alpha (S - beta) m)), m = 1 for positives and -C for "
        "negatives, each kind averaged over the batch's ordered pairs, on cosine similarities; "
        "alpha 2, beta 0.5, C 25. The formula is from the reference notes and public "
        "implementations, not re-read from the paper. Yi et al. learned a siamese CNN for "
        "person re-identification; here the loss runs on the harness's P x K batches."
    ),
)


@hookimpl
def bench_methods() -> list[MethodSpec]:
    return [SGML_SPEC, BINOMIAL_SPEC]


@hookimpl
def bench_protocols() -> list[Path]:
    return sorted(PROTOCOLS.glob("*.json"))
