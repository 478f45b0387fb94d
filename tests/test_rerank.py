"""Re-ranked Recall@K: a method's own pair score re-orders each query's top candidates."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmark.errors import BenchError
from benchmark.metrics.rerank import reranked_recall
from benchmark.metrics.retrieval import retrieval_metrics


def cosine_scorer(query, candidates):
    return (F.normalize(query, dim=1)[:, None, :] * F.normalize(candidates, dim=2)).sum(2)


def data(seed: int = 0, n: int = 40, dim: int = 6):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=generator), torch.randint(0, 5, (n,), generator=generator)


@pytest.mark.parametrize("exclude_self", [True, False])
def test_re_ranking_by_the_ranking_score_itself_changes_nothing(exclude_self):
    vectors, labels = data()
    gallery, gallery_labels = (vectors, labels) if exclude_self else data(1, n=60)
    reranked = reranked_recall(
        vectors, gallery, labels, gallery_labels, cosine_scorer, top_k=8,
        recall_at=(1, 2, 4, 8, 16), exclude_self=exclude_self, block_size=7,
    )  # fmt: skip
    plain = retrieval_metrics(
        vectors, gallery, labels, gallery_labels, recall_at=(1, 2, 4, 8),
        exclude_self=exclude_self,
    )  # fmt: skip
    assert set(reranked) == {f"rerank@8/recall@{k}" for k in (1, 2, 4, 8)}  # no K above top_k
    for k in (1, 2, 4, 8):
        assert reranked[f"rerank@8/recall@{k}"] == pytest.approx(plain[f"recall@{k}"], abs=1e-12)


def test_a_scorer_that_knows_the_labels_moves_every_hit_in_the_top_k_to_rank_one():
    vectors, labels = data(2)
    gallery_labels = labels

    def oracle(query, candidates):
        # Recover which rows these are to score same-label candidates first.
        q = (query[:, None, :] == vectors[None]).all(2).float().argmax(1)
        c = (candidates[:, :, None, :] == vectors[None, None]).all(3).float().argmax(2)
        return (labels[c] == labels[q][:, None]).float()

    reranked = reranked_recall(
        vectors, vectors, labels, gallery_labels, oracle, top_k=4, recall_at=(1, 4),
        exclude_self=True,
    )  # fmt: skip
    plain = retrieval_metrics(vectors, vectors, labels, labels, recall_at=(4,), exclude_self=True)
    assert reranked["rerank@4/recall@1"] == pytest.approx(plain["recall@4"], abs=1e-12)
    assert reranked["rerank@4/recall@4"] == pytest.approx(plain["recall@4"], abs=1e-12)


def test_a_constructed_reversal():
    # One query (row 0) of class 0; gallery rows 1..3 by decreasing cosine: class 1, 1, 0.
    vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.5, 0.8]])
    labels = torch.tensor([0, 1, 1, 0])

    def reverse(query, candidates):
        return -cosine_scorer(query, candidates)

    figures = reranked_recall(
        vectors[:1], vectors[1:], labels[:1], labels[1:], reverse, top_k=3, recall_at=(1, 2),
        exclude_self=False,
    )  # fmt: skip
    assert figures == {"rerank@3/recall@1": 1.0, "rerank@3/recall@2": 1.0}
    plain = retrieval_metrics(
        vectors[:1], vectors[1:], labels[:1], labels[1:], recall_at=(1, 2), exclude_self=False
    )
    assert plain["recall@1"] == 0.0 and plain["recall@2"] == 0.0


def test_a_top_k_larger_than_the_gallery_is_refused():
    vectors, labels = data(n=5)
    with pytest.raises(BenchError, match=r"1 <= top_k <= 4 gallery items .* got top_k=5"):
        reranked_recall(
            vectors, vectors, labels, labels, cosine_scorer, top_k=5, recall_at=(1,),
            exclude_self=True,
        )  # fmt: skip
