"""The multilingual pools' per-query bias measures, gathered run by run.

A pool task's ranks hold a row per query and pool language: 8.4 million rows for the synthetic
study's ``multilingual`` task, and about ten times that at the real study's scale, tens of GB in
one frame. What notebook 05 reads of them, each query's maximum rank distance and its
best-ranked language, is one row per query, and each run's is its own; so it is measured one
ranks file (one run on one benchmark, :func:`xlr.eval.results.read_runs`) at a time, and only
the per-query rows are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from xlr.analysis.bias import (
    QUERY_COLUMNS,
    USED_RANK_COLUMNS,
    TopLanguages,
    check_within_pool,
    pool_run_measures,
)
from xlr.eval.results import check_table


@dataclass(frozen=True)
class PoolMeasures:
    """One pool task's per-query measures over every run read.

    ``rank_distance``: :func:`xlr.analysis.bias.rank_distance_per_query`'s table;
    ``tops``: each query's best pool item and the pool languages
    (:class:`xlr.analysis.bias.TopLanguages`).
    """

    rank_distance: pd.DataFrame
    tops: TopLanguages


def pool_measures(runs: Iterable[pd.DataFrame], pool: Sequence[str]) -> PoolMeasures:
    """Rank distance and top languages of the queries of one pool task, frame by frame.

    ``runs`` yields ranks of one pool task (``multilingual`` over every study language,
    ``multilingual_seen`` over the seen ones) a run at a time (a file without the task's rows
    yields an empty frame, skipped). Each frame is measured over the pool languages it has,
    validated once (:func:`pool_run_measures`), as
    :func:`rank_distance_per_query` and :func:`top_languages` measure a whole table: a relevant
    item outside ``pool`` is an error, and so is a pool language no run has (a typo). The result
    equals the measures of all runs' ranks in one table, rows aside (``tests/test_pools.py``),
    but for a run with fewer than two pool languages: it has no rank distance, and here no top
    language either (a whole table gives each of its queries that one language, a share of 1).
    """
    distances, queries, langs = [], [], []
    ranked: set[str] = set()
    for ranks in runs:
        if ranks.empty:
            continue
        check_table(ranks, USED_RANK_COLUMNS, "ranks")
        check_within_pool(ranks, pool)
        present = set(ranks["relevant_lang"])
        run_pool = [lang for lang in pool if lang in present]
        ranked.update(run_pool)
        if len(run_pool) < 2:
            continue
        distance, tops = pool_run_measures(ranks, run_pool)
        distances.append(distance)
        queries.append(tops.queries)
        langs.append(tops.langs)
    absent = sorted(set(pool) - ranked)
    if absent:
        raise ValueError(
            f"pool languages {absent} have no relevant item in any run's ranks (they have "
            f"{sorted(ranked)}); check the pool's languages"
        )
    if not distances:
        raise ValueError(f"no run has at least two languages of the pool {list(pool)}")
    return PoolMeasures(
        pd.concat(distances, ignore_index=True),
        TopLanguages(
            pd.concat(queries, ignore_index=True).sort_values(QUERY_COLUMNS, ignore_index=True),
            _one_pool_per_benchmark(pd.concat(langs, ignore_index=True)),
        ),
    )


def _one_pool_per_benchmark(langs: pd.DataFrame) -> pd.DataFrame:
    """The runs' pool languages, once per benchmark and task; every run of a benchmark must have
    been ranked against the same pool, or the uniform shares would disagree."""
    langs = langs.drop_duplicates(ignore_index=True)
    size = langs.groupby(["benchmark", "task"])["lang"].transform("size").to_numpy()
    differing = langs.loc[abs(size * langs["uniform"].to_numpy() - 1) > 1e-9, "benchmark"]
    if not differing.empty:
        raise ValueError(
            f"runs of {sorted(set(differing))} were ranked against pools of different languages; "
            "evaluate every arm on the same evaluation sets (notebook 04)"
        )
    return langs
