"""Evaluation metrics: exact retrieval metrics, clustering (NMI) and hashing metrics.

`benchmark.metrics.tasks.score` is the one entry point that picks them by task.
"""
