"""The console table of a run's evaluations."""

from __future__ import annotations

from benchmark.report import evaluations_table, summary_keys

METRICS = {
    "recall@1": 0.5,
    "recall@2": 0.625,
    "precision@1": 0.5,
    "map@r": 0.25,
    "rerank@4/recall@1": 0.75,
    "queries": 8,
}


def test_summary_columns_put_re_ranked_figures_last():
    assert summary_keys(METRICS) == ["recall@1", "recall@2", "map@r", "rerank@4/recall@1"]


def test_the_table_has_one_row_per_evaluation_in_percent():
    result = {
        "evaluations": [
            {"epoch": 0, "iteration": 0, "metrics": METRICS},
            {"epoch": 1, "iteration": 10, "metrics": METRICS, "train": {"loss": 1.5}},
        ],
        "timings": {
            "train_seconds": 1.0,
            "eval_seconds": 2.0,
            "total_seconds": 3.0,
            "train_images_per_second": 320.0,
        },
        "config": {"method": "pddm"},
        "dataset": {"name": "synth-cub"},
        "environment": {"device": "cpu: x86_64"},
    }
    lines = evaluations_table(result).splitlines()
    assert lines[0].split() == ["epoch", "iteration", "loss", "R@1", "R@2", "MAP@R", "RERANK@4/R@1"]
    assert lines[2].split() == ["0", "0", "-", "50.00", "62.50", "25.00", "75.00"]
    assert lines[3].split() == ["1", "10", "1.5000", "50.00", "62.50", "25.00", "75.00"]
    assert lines[-1] == (
        "pddm on synth-cub: train 1.0 s (320 img/s), eval 2.0 s, total 3.0 s on cpu: x86_64"
    )


def test_hashing_columns_are_map_and_the_hamming_ball_precision():
    metrics = {
        "map@k": 0.5,
        "map@k_index_order": 0.5,
        "precision@radius2": 0.25,
        "recall@radius2": 0.75,
        "queries": 3,
    }
    assert summary_keys(metrics) == ["map@k", "map@k_index_order", "precision@radius2"]
