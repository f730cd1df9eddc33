"""Retrieval metrics as pure functions of the ranks of relevant items (no models, no scores).

Every function takes a :class:`QueryRanks` (the 1-based gallery ranks of each query's relevant
items, as :func:`xlr.eval.search.relevant_ranks` writes them) and returns one value per query,
so the task metric is the mean and :mod:`xlr.analysis.stats` can put an interval on it.

Recall@k is a hit rate, CLIP_benchmark's convention: a query scores 1 when any of its relevant
items is in the top k, whatever their number. :func:`per_query_values` applies them to a saved
ranks table (:mod:`xlr.eval.results`), which is how notebooks 05 and 06 score queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xlr.eval.results import IDENTITY_COLUMNS, POOL_OF_TASK

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)


@dataclass(frozen=True)
class QueryRanks:
    """1-based ranks of every query's relevant items, sorted ascending within each query.

    Query ``q``'s ranks are ``ranks[offsets[q]:offsets[q + 1]]``. Each query has at least one
    relevant item: a metric of a query with nothing to find is undefined, and scoring it 0 would
    silently lower every average.
    """

    offsets: np.ndarray
    ranks: np.ndarray

    @classmethod
    def from_long(
        cls, query_idx: np.ndarray, rank: np.ndarray, n_queries: int | None = None
    ) -> QueryRanks:
        """Group long-form (query, rank) pairs; ``n_queries`` (default max + 1) queries expected.

        Raises ``ValueError`` naming the queries without any relevant item.
        """
        query_idx = np.asarray(query_idx, dtype=np.int64)
        rank = np.asarray(rank, dtype=np.int64)
        if query_idx.shape != rank.shape or query_idx.ndim != 1:
            raise ValueError(
                f"query_idx and rank must be 1-D of one length, got {query_idx.shape} and "
                f"{rank.shape}"
            )
        if len(rank) == 0:
            raise ValueError("no ranks given: there is no query with a relevant item to score")
        if query_idx.min() < 0:
            raise ValueError("query indices must be non-negative")
        if rank.min() < 1:
            raise ValueError(f"ranks are 1-based, got a rank of {rank.min()}")
        n_queries = int(query_idx.max()) + 1 if n_queries is None else n_queries
        counts = np.bincount(query_idx, minlength=n_queries)
        if len(counts) > n_queries:
            raise ValueError(f"query indices reach {query_idx.max()} but n_queries={n_queries}")
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            raise ValueError(
                f"{len(empty)} of {n_queries} queries have no relevant item (first: "
                f"{empty[:5].tolist()}); drop them from the task or give them a relevant item"
            )
        order = np.lexsort((rank, query_idx))
        query_idx, rank = query_idx[order], rank[order]
        if np.any((np.diff(query_idx) == 0) & (np.diff(rank) == 0)):
            raise ValueError("two relevant items of one query share a rank; ranks must be exact")
        return cls(np.concatenate([[0], np.cumsum(counts)]), rank)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, n_queries: int | None = None) -> QueryRanks:
        """Group the ``query_idx, relevant_idx, rank`` table of :func:`relevant_ranks`."""
        return cls.from_long(frame["query_idx"].to_numpy(), frame["rank"].to_numpy(), n_queries)

    @property
    def n_queries(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        """Number of relevant items per query."""
        return np.diff(self.offsets)


def best_rank(ranks: QueryRanks) -> np.ndarray:
    """Rank of each query's first relevant item, int64 ``[Q]``."""
    return ranks.ranks[ranks.offsets[:-1]]


def hit_at_k(ranks: QueryRanks, k: int) -> np.ndarray:
    """1.0 where any relevant item is in the top ``k``, else 0.0; the mean is Recall@k."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return (best_rank(ranks) <= k).astype(np.float64)


def mean_recall(ranks: QueryRanks, ks: Sequence[int] = DEFAULT_KS) -> np.ndarray:
    """Per-query mean of :func:`hit_at_k` over ``ks``; its mean is the usual "mean recall"."""
    if not ks:
        raise ValueError("mean_recall needs at least one k")
    return np.mean([hit_at_k(ranks, k) for k in ks], axis=0)


def reciprocal_rank(ranks: QueryRanks) -> np.ndarray:
    """1 / rank of each query's first relevant item; the mean is MRR."""
    return 1.0 / best_rank(ranks)


def average_precision(ranks: QueryRanks) -> np.ndarray:
    """Average precision of each query over the full ranking; the mean is mAP.

    With relevant items at sorted ranks r_1 < ... < r_n, AP = (1/n) * sum_i i / r_i: the
    precision at each relevant item, averaged over all n relevant items.
    """
    counts = ranks.counts
    position = np.arange(1, len(ranks.ranks) + 1) - np.repeat(ranks.offsets[:-1], counts)
    precision = position / ranks.ranks
    return np.add.reduceat(precision, ranks.offsets[:-1]) / counts


def summarize(ranks: QueryRanks, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Task-level means: ``R@k`` for each k, ``mean_recall``, ``MRR`` and ``mAP``."""
    summary = {f"R@{k}": float(hit_at_k(ranks, k).mean()) for k in ks}
    summary["mean_recall"] = float(mean_recall(ranks, ks).mean())
    summary["MRR"] = float(reciprocal_rank(ranks).mean())
    summary["mAP"] = float(average_precision(ranks).mean())
    return summary


def _target_lang(ranks: pd.DataFrame) -> pd.Series:
    """Each rank row's target language: the pool (``all``, ``seen``) for the multilingual tasks,
    else the relevant item's language."""
    return ranks["task"].map(POOL_OF_TASK).fillna(ranks["relevant_lang"])


def _metric_values(ranks: QueryRanks, metric: str, ks: Sequence[int]) -> np.ndarray:
    """Per-query values of ``R@k``, ``mean_recall``, ``MRR`` or ``mAP``."""
    if metric.startswith("R@") and metric[2:].isdigit():
        return hit_at_k(ranks, int(metric[2:]))
    named = {
        "mean_recall": lambda r: mean_recall(r, ks),
        "MRR": reciprocal_rank,
        "mAP": average_precision,
    }
    if metric not in named:
        raise ValueError(f"unknown metric {metric!r}; use R@<k>, mean_recall, MRR or mAP")
    return named[metric](ranks)


def per_query_values(
    ranks: pd.DataFrame, metric: str, ks: Sequence[int] = DEFAULT_KS, extra: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per query (identity, task, query_lang, target_lang, query_idx, query_image_id)
    with ``value``; ``extra`` carries further per-query columns of ``ranks`` along (e.g. a
    language group). The image is kept because it, not the query, is the unit an interval
    resamples (:mod:`xlr.analysis.stats`)."""
    keys = [*IDENTITY_COLUMNS, "task", "query_lang", "target_lang", "query_idx", "query_image_id"]
    keys += [column for column in extra if column not in keys]
    frame = ranks.assign(target_lang=_target_lang(ranks))
    codes = frame.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    out = frame[keys].drop_duplicates().reset_index(drop=True)  # groups in first-seen order
    query_ranks = QueryRanks.from_long(codes, frame["rank"].to_numpy(), len(out))
    out["value"] = _metric_values(query_ranks, metric, ks)
    return out
