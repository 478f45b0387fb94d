"""dmlbench plugin: central similarity hashing. CSQ (Yuan et al., "Central Similarity
Quantization for Efficient Image and Video Retrieval", CVPR 2020) and ICS (Zhang and Peng,
"Instance-weighted Central Similarity for Multi-label Image Retrieval", arXiv 2108.05274)."""

from __future__ import annotations

from bench_ics.centres import generate_centres, load_centres, sylvester_hadamard
from bench_ics.loss import (
    CSQLoss,
    ICSLoss,
    centre_loss,
    clamped_centre_loss,
    mean_targets,
    quantisation_loss,
    sign_of_mean_targets,
)
from bench_ics.simplex import project_to_simplex
from benchmark.hookspecs import hookimpl
from benchmark.specs import BuildContext, MethodSpec, Paper, Reported, closed_schema

__all__ = [
    "CSQ_SPEC",
    "ICS_SPEC",
    "CSQLoss",
    "ICSLoss",
    "bench_methods",
    "centre_loss",
    "clamped_centre_loss",
    "generate_centres",
    "load_centres",
    "mean_targets",
    "project_to_simplex",
    "quantisation_loss",
    "sign_of_mean_targets",
    "sylvester_hadamard",
]

# yuanli2333/Hadamard-Matrix-for-hashing @ 55cab00: lambda2 = 0.05 in every ResNet-50 command of
# its README; squared quantisation and the sign-of-mean target as in its train.py.
CSQ_DEFAULTS = {
    "centre_loss": "logits",
    "lambda_q": 0.05,
    "quantisation": "squared",
    "target": "sign",
    "centres": "hadamard",
    "centres_file": "",
    "centre_seed": 0,
}
# ICS has no public code. eta and lambda_r are those of LSCSH (Mahiro2211/LSCSH @ 3145fc4), the
# closest public code, which may not match the paper; lambda_q is CSQ's.
ICS_DEFAULTS = {
    "lambda_q": 0.05,
    "lambda_r": 0.001,
    "eta": 0.1,
    "weight_steps": 1,
    "quantisation": "squared",
    "centres": "hadamard",
    "centres_file": "",
    "centre_seed": 0,
}

_SHARED = {
    "lambda_q": {
        "type": "number",
        "minimum": 0,
        "maximum": 1000,
        "description": "weight of the quantisation loss",
    },
    "quantisation": {
        "enum": ["squared", "log-cosh"],
        "description": "squared: mean (|h|-1)^2 (official code); log-cosh: mean log cosh(|h|-1) "
        "(paper)",
    },
    "centres": {
        "enum": ["hadamard", "shipped", "random"],
        "description": "hadamard: Algorithm 1 (Hadamard rows 0.., balanced random beyond 2K "
        "classes); shipped: the official NUS-WIDE files' convention (rows 1.., the all-ones "
        "row skipped, balanced random from K classes on); random: balanced random rows",
    },
    "centres_file": {
        "type": "string",
        "description": "load the centres from this .npy / .txt / torch file instead (one +1/-1 "
        "row per class); empty: generate",
    },
    "centre_seed": {
        "type": "integer",
        "minimum": 0,
        "description": "seed of random centres and of the tie-filling vector",
    },
}
_CSQ_PROPERTIES = {
    **_SHARED,
    "centre_loss": {
        "enum": ["logits", "official-clamped"],
        "description": "logits: BCE from the pre-tanh value in logit space (keeps the gradient "
        "of saturated bits); official-clamped: torch's BCELoss on (h+1)/2 as the official code "
        "(no gradient once tanh rounds to +-1)",
    },
    "target": {
        "enum": ["sign", "mean"],
        "description": "multi-label target: sign of the mean centre (official) or the "
        "unbinarised mean",
    },
}
_ICS_PROPERTIES = {
    **_SHARED,
    "lambda_r": {
        "type": "number",
        "minimum": 0,
        "maximum": 1000,
        "description": "weight of the maximum-entropy regulariser sum w log w",
    },
    "eta": {
        "type": "number",
        "minimum": 0,
        "maximum": 1000,
        "description": "step size of the projected-gradient weight update; 0 = weights stay "
        "uniform",
    },
    "weight_steps": {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "description": "projected-gradient steps on the batch's weights per training step",
    },
}


def _shared_arguments(ctx: BuildContext) -> dict:
    if ctx.hash_bits < 1:
        raise ValueError("central similarity hashing needs the protocol's model.hash.bits")
    hparams = ctx.hparams
    return {
        "classes": ctx.num_classes,
        "bits": ctx.hash_bits,
        "centres": hparams["centres"],
        "centres_file": hparams["centres_file"],
        "centre_seed": hparams["centre_seed"],
        "lambda_q": hparams["lambda_q"],
        "quantisation": hparams["quantisation"],
    }


def build_csq(ctx: BuildContext) -> CSQLoss:
    hparams = ctx.hparams
    return CSQLoss(
        target=hparams["target"], centre_form=hparams["centre_loss"], **_shared_arguments(ctx)
    )


def build_ics(ctx: BuildContext) -> ICSLoss:
    hparams = ctx.hparams
    return ICSLoss(
        num_images=ctx.num_train_images,
        eta=hparams["eta"],
        lambda_r=hparams["lambda_r"],
        weight_steps=hparams["weight_steps"],
        **_shared_arguments(ctx),
    )


_README = "official README (yuanli2333/Hadamard-Matrix-for-hashing @ 55cab00)"
REPORTED = tuple(
    Reported("coco", {"map@k": value}, f"ResNet-50, {bits} bits, mAP@5000", _README)
    for bits, value in ((16, 0.796), (32, 0.838), (64, 0.861))
)

CSQ_SPEC = MethodSpec(
    name="csq",
    summary="CSQ: tanh codes pulled to Hadamard hash centres by BCE, plus quantisation",
    paper=Paper(
        title="Central Similarity Quantization for Efficient Image and Video Retrieval",
        authors="Yuan, Wang, Zhang, Tay, Jie, Liu, Feng",
        venue="CVPR 2020",
        url="https://arxiv.org/abs/1908.00347",
    ),
    tasks=("hashing",),
    build=build_csq,
    defaults=CSQ_DEFAULTS,
    hparam_schema=closed_schema(_CSQ_PROPERTIES),
    heads=("hash",),
    eval_output="hash",
    distance="hamming",
    fidelity="faithful",
    fidelity_notes=(
        "Loss, target and centres follow the official code (train.py @ 55cab00): BCE between "
        "(h+1)/2 and (c+1)/2 averaged over bits, squared quantisation with lambda 0.05 "
        "(ResNet-50), the sign of the mean centre with ties from one fixed random vector. The "
        "BCE is computed from the head's pre-tanh value z in logit space (q = sigmoid(2z)): "
        "the official value wherever its codes are unsaturated (within 1e-6 in float32), and "
        "the true gradient where the official code's is 0 (a wrong-side bit whose tanh has "
        "rounded to +-1, |z| > 9 in float32); centre_loss=official-clamped is the official "
        "form (torch's BCELoss on the codes). The harness's hash head takes its tanh in float32 "
        "outside autocast, so mixed precision does not freeze bits. centres=shipped follows "
        "the official NUS-WIDE files (Hadamard rows 1..21 at 32 and 64 bits, random at 16); "
        "the default takes rows 0..m-1 (Algorithm 1). The "
        "paper's log-cosh quantisation is quantisation=log-cosh (averaged, not summed, so "
        "lambda keeps its scale). The official COCO centre files are balanced random, not "
        "Hadamard rows: load them with centres_file to match. The hash head is the protocol's "
        "(model.hash); CSQ's official head is hidden=2048, dropout=0.5. The official code "
        "picks its checkpoint on the test set; the harness does not."
    ),
    reported=REPORTED,
)

ICS_SPEC = MethodSpec(
    name="ics",
    summary="ICS: CSQ with per-image centre weights learned by projected gradient, max-entropy",
    paper=Paper(
        title="Instance-weighted Central Similarity for Multi-label Image Retrieval",
        authors="Zhang, Peng",
        venue="arXiv 2108.05274 (2021)",
        url="https://arxiv.org/abs/2108.05274",
    ),
    tasks=("hashing",),
    build=build_ics,
    defaults=ICS_DEFAULTS,
    hparam_schema=closed_schema(_ICS_PROPERTIES),
    heads=("hash",),
    eval_output="hash",
    distance="hamming",
    fidelity="reconstructed",
    fidelity_notes=(
        "No official code; the paper's method section was not read. From its abstract: a "
        "weighted combination of each image's hash centres as its target, weights learned by "
        "alternating projected-gradient steps (network fixed) and back-propagation (weights "
        "fixed), with a maximum-entropy regulariser. Ours or LSCSH's (Mahiro2211/LSCSH, the "
        "closest public code, relation to the authors unknown): eta 0.1 and lambda_r 0.001 "
        "(LSCSH), one weight step per training step, the per-image weight objective with BCE "
        "averaged over bits (LSCSH sums over bits and averages over the batch, so its eta is "
        "not on this scale), a correct Euclidean simplex projection over the image's labels in "
        "which zero weights can recover (LSCSH's is neither), weights indexed by image, and "
        "CSQ's loss (in logit space, from the pre-tanh value, so saturated bits keep their "
        "gradient; there is no official clamped form to offer) and lambda_q otherwise. ICS's "
        "own figures are not known, so none are listed."
    ),
    reported=(),
)


@hookimpl
def bench_methods() -> list[MethodSpec]:
    return [CSQ_SPEC, ICS_SPEC]
