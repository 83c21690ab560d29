"""Retrieval metrics: mean average precision at k, leave-one-out within a split."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def average_precision_at_k(relevant: Sequence[bool], k: int, total_relevant: int | None = None) -> float:
    """AP@k of one ranked list.

    Normalised by ``min(k, total_relevant)`` (the best achievable number of hits in k),
    the usual definition in the hashing literature, so a perfect top-k scores 1.
    """
    rel = np.asarray(relevant[:k], dtype=bool)
    hits = np.cumsum(rel)
    if not rel.any():
        return 0.0
    precision = hits / np.arange(1, len(rel) + 1)
    denom = min(k, total_relevant) if total_relevant else int(rel.sum())
    return float((precision * rel).sum() / max(1, denom))


def map_at_k(ranked_labels: Sequence[Sequence], query_labels: Sequence, k: int = 10,
             label_counts: dict | None = None) -> float:
    """Mean AP@k over queries; ``ranked_labels[q]`` are the labels of q's results, best first.

    Args:
        label_counts: items per label in the searched set (excluding the query
            itself), for the ``min(k, relevant)`` normaliser; ``None`` uses the hits.
    """
    scores = []
    for labels, query in zip(ranked_labels, query_labels):
        relevant = [label == query for label in labels]
        total = label_counts.get(query) if label_counts else None
        scores.append(average_precision_at_k(relevant, k, total))
    return float(np.mean(scores)) if scores else 0.0


def float_knn(vectors: np.ndarray, k: int, queries: np.ndarray | None = None,
              leave_one_out: bool = True) -> np.ndarray:
    """Indices of the k most cosine-similar vectors (leave-one-out within ``vectors``)."""
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    q = v if queries is None else queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    sims = q @ v.T
    if leave_one_out:
        np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]
