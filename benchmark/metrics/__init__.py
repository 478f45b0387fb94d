"""Evaluation metrics: exact retrieval metrics (Recall@K, MAP@R, R-Precision) over embeddings."""
