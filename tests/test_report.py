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
            {"epoch": 0, "iteration": 0, "split": "validation", "metrics": METRICS},
            {
                "epoch": 1,
                "iteration": 10,
                "split": "validation",
                "metrics": METRICS,
                "train": {"loss": 1.5},
            },
            {"epoch": 1, "iteration": 10, "split": "test", "metrics": METRICS},
        ],
        "final": {"epoch": 1, "selection": "validation", "metrics": METRICS},
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
    assert lines[0].split() == [
        "split", "epoch", "iteration", "loss", "R@1", "R@2", "MAP@R", "RERANK@4/R@1",
    ]  # fmt: skip
    assert lines[2].split() == ["validation", "0", "0", "-", "50.00", "62.50", "25.00", "75.00"]
    assert lines[3].split() == [
        "validation", "1", "10", "1.5000", "50.00", "62.50", "25.00", "75.00",
    ]  # fmt: skip
    assert lines[4].split() == ["test", "1", "10", "-", "50.00", "62.50", "25.00", "75.00"]
    assert lines[-2] == "test figures: weights of epoch 1, the best on the validation split"
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


def test_the_seeds_table_gives_mean_sd_and_confidence_interval():
    from benchmark.report import seeds_table

    results = [
        {"seed": seed, "final": {"metrics": {"recall@1": value, "map@r": value / 2}}}
        for seed, value in ((0, 0.60), (1, 0.62), (2, 0.64))
    ]
    lines = seeds_table(results).splitlines()
    assert lines[0].split() == ["test", "(3", "seeds)", "R@1", "MAP@R"]
    assert [line.split()[-2:] for line in lines[2:]] == [
        ["60.00", "30.00"],
        ["62.00", "31.00"],
        ["64.00", "32.00"],
        ["62.00", "31.00"],
        ["2.00", "1.00"],
        ["4.97", "2.48"],
    ]
