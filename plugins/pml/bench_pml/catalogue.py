"""The pytorch-metric-learning losses registered as methods `pml-<name>`, with their papers, the
library's default hyper-parameters and, where the Reality Check tuned them, its values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmark.specs import Paper


@dataclass(frozen=True)
class Baseline:
    """One library loss: `loss` is its class name in pytorch_metric_learning.losses."""

    name: str
    loss: str
    summary: str
    paper: Paper
    defaults: dict[str, Any]
    parametric: bool = False  # owns parameters sized by (num_classes, embedding_size)
    miners: tuple[str, ...] = ()  # values of the `miner` hyper-parameter; the first is default
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    order_invariant: bool = True  # False: the loss depends on the order of a batch


def _arxiv(title: str, authors: str, venue: str, number: str) -> Paper:
    return Paper(title, authors, venue, f"https://arxiv.org/abs/{number}")


# The Reality Check's tuned values (Musgrave, Belongie, Lim, ECCV 2020, supplement; CUB / Cars,
# batch 32), as the project's research notes (anchors.md, section 3.3) record them.
def _mlrc(cub: dict[str, Any], cars: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"mlrc-cub": cub, "mlrc-cars": cars}


BASELINES: tuple[Baseline, ...] = (
    Baseline(
        "contrastive", "ContrastiveLoss", "Contrastive: negatives pushed past a margin",
        Paper("Dimensionality Reduction by Learning an Invariant Mapping", "Hadsell, Chopra, LeCun",
              "CVPR 2006", "https://yann.lecun.com/exdb/publis/pdf/hadsell-chopra-lecun-06.pdf"),
        {"pos_margin": 0.0, "neg_margin": 1.0},
        presets=_mlrc({"pos_margin": -0.2, "neg_margin": 0.3841},
                      {"pos_margin": 0.2652, "neg_margin": 0.5409}),
    ),
    Baseline(
        "triplet", "TripletMarginLoss", "Triplet margin loss over mined triplets",
        _arxiv("FaceNet: A Unified Embedding for Face Recognition and Clustering",
               "Schroff, Kalenichenko, Philbin", "CVPR 2015", "1503.03832"),
        {"margin": 0.05, "swap": False, "smooth_loss": False},
        miners=("semihard", "all", "none"),
        presets=_mlrc({"margin": 0.0961}, {"margin": 0.1190}),
    ),
    Baseline(
        "margin", "MarginLoss", "Margin loss around a boundary beta (learned with learn_beta=true)",
        _arxiv("Sampling Matters in Deep Embedding Learning",
               "Wu, Manmatha, Smola, Krähenbühl", "ICCV 2017", "1706.07567"),
        {"margin": 0.2, "nu": 0.0, "beta": 1.2, "learn_beta": False},
    ),
    Baseline(
        "npairs", "NPairsLoss", "Multi-class N-pair loss: one positive against every other class",
        Paper("Improved Deep Metric Learning with Multi-class N-pair Loss Objective", "Sohn",
              "NIPS 2016", "https://papers.nips.cc/paper/6200-improved-deep-metric-learning-with-multi-class-n-pair-loss-objective"),
        {},
        # The library keeps the first positive pair of each class in batch order.
        order_invariant=False,
    ),
    Baseline(
        "lifted", "LiftedStructureLoss", "Lifted structured loss over all pairs of a batch",
        _arxiv("Deep Metric Learning via Lifted Structured Feature Embedding",
               "Oh Song, Xiang, Jegelka, Savarese", "CVPR 2016", "1511.06452"),
        {"pos_margin": 0.0, "neg_margin": 1.0},
    ),
    Baseline(
        "ntxent", "NTXentLoss", "NT-Xent (InfoNCE) with labels: a softmax over similarities",
        _arxiv("A Simple Framework for Contrastive Learning of Visual Representations",
               "Chen, Kornblith, Norouzi, Hinton", "ICML 2020", "2002.05709"),
        {"temperature": 0.07},
        presets=_mlrc({"temperature": 0.0091}, {"temperature": 0.0219}),
    ),
    Baseline(
        "proxynca", "ProxyNCALoss", "ProxyNCA: NCA against one learned proxy per class",
        _arxiv("No Fuss Distance Metric Learning using Proxies",
               "Movshovitz-Attias, Toshev, Leung, Ioffe, Singh", "ICCV 2017", "1703.07464"),
        {"softmax_scale": 1.0}, parametric=True,
        presets=_mlrc({"softmax_scale": 13.98}, {"softmax_scale": 7.97}),
    ),
    Baseline(
        "proxyanchor", "ProxyAnchorLoss", "Proxy-Anchor: proxies as anchors, weighted by hardness",
        _arxiv("Proxy Anchor Loss for Deep Metric Learning", "Kim, Kim, Cho, Kwak",
               "CVPR 2020", "2003.13911"),
        {"margin": 0.1, "alpha": 32.0}, parametric=True,
    ),
    Baseline(
        "normsoftmax", "NormalizedSoftmaxLoss", "Normalized softmax: cosine-logit classification",
        _arxiv("Classification is a Strong Baseline for Deep Metric Learning", "Zhai, Wu",
               "BMVC 2019", "1811.12649"),
        {"temperature": 0.05}, parametric=True,
    ),
    Baseline(
        "cosface", "CosFaceLoss", "CosFace: large-margin cosine classification loss",
        _arxiv("CosFace: Large Margin Cosine Loss for Deep Face Recognition",
               "Wang, Wang, Zhou, Ji, Gong, Zhou, Li, Liu", "CVPR 2018", "1801.09414"),
        {"margin": 0.35, "scale": 64.0}, parametric=True,
        presets=_mlrc({"margin": 0.6182, "scale": 100.0}, {"margin": 0.4324, "scale": 161.5}),
    ),
    Baseline(
        "arcface", "ArcFaceLoss", "ArcFace: additive angular margin classification loss",
        _arxiv("ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
               "Deng, Guo, Xue, Zafeiriou", "CVPR 2019", "1801.07698"),
        {"margin": 28.6, "scale": 64.0}, parametric=True,
        presets=_mlrc({"margin": 23.22, "scale": 100.0}, {"margin": 20.52, "scale": 49.50}),
    ),
    Baseline(
        "softtriple", "SoftTripleLoss", "SoftTriple: several learned centres per class",
        _arxiv("SoftTriple Loss: Deep Metric Learning Without Triplet Sampling",
               "Qian, Shang, Sun, Hu, Li, Jin", "ICCV 2019", "1909.05235"),
        {"centers_per_class": 10, "la": 20.0, "gamma": 0.1, "margin": 0.01}, parametric=True,
    ),
    Baseline(
        "fastap", "FastAPLoss", "FastAP: a histogram approximation of average precision",
        Paper("Deep Metric Learning to Rank", "Cakir, He, Xia, Kulis, Sclaroff", "CVPR 2019",
              "https://openaccess.thecvf.com/content_CVPR_2019/html/Cakir_Deep_Metric_Learning_to_Rank_CVPR_2019_paper.html"),
        {"num_bins": 10},
    ),
    Baseline(
        "circle", "CircleLoss", "Circle loss: self-paced pair similarity weights",
        _arxiv("Circle Loss: A Unified Perspective of Pair Similarity Optimization",
               "Sun, Cheng, Zhang, Zhang, Zheng, Wang, Wei", "CVPR 2020", "2002.10857"),
        {"m": 0.4, "gamma": 80.0},
    ),
    Baseline(
        "supcon", "SupConLoss", "Supervised contrastive loss",
        _arxiv("Supervised Contrastive Learning", "Khosla, Teterwak, Wang, Sarna, Tian, Isola, "
               "Maschinot, Liu, Krishnan", "NeurIPS 2020", "2004.11362"),
        {"temperature": 0.1},
    ),
    Baseline(
        "ms", "MultiSimilarityLoss", "Multi-similarity loss, the library's, with an optional miner",
        _arxiv("Multi-Similarity Loss with General Pair Weighting for Deep Metric Learning",
               "Wang, Han, Huang, Dong, Scott", "CVPR 2019", "1904.06627"),
        {"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1},
        miners=("none", "ms"),
        presets={
            "mlrc-cub": {"alpha": 0.01, "beta": 50.60, "base": 0.56, "miner": "none"},
            "mlrc-cars": {"alpha": 14.35, "beta": 75.83, "base": 0.66, "miner": "none"},
            "mlrc-cub-miner": {"alpha": 17.97, "beta": 75.66, "base": 0.77, "epsilon": 0.39,
                               "miner": "ms"},
            "mlrc-cars-miner": {"alpha": 7.49, "beta": 47.99, "base": 0.63, "epsilon": 0.72,
                                "miner": "ms"},
        },
    ),
)  # fmt: skip
