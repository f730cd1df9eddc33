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

from xlr.analysis.bias import QUERY_COLUMNS, TopLanguages, rank_distance_per_query, top_languages


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
    ``multilingual_seen`` over the seen ones) a run at a time; each frame's benchmarks are
    measured over the pool languages they have, as :func:`rank_distance_per_query` measures a
    whole table: a benchmark with fewer than two has no rows, a relevant item outside ``pool``
    is an error, and so is a pool language no run has (a typo). The result equals the measures
    of all runs' ranks in one table, rows aside (``tests/test_pools.py``).
    """
    distances, queries, langs = [], [], []
    ranked: set[str] = set()
    for ranks in runs:
        for _, part in ranks.groupby(["benchmark", "task"], sort=False):
            present = set(part["relevant_lang"])
            part_pool = [lang for lang in pool if lang in present]
            ranked.update(part_pool)
            if len(part_pool) < 2 and present <= set(pool):
                continue  # no rank distance with one language; outside ones are an error below
            distances.append(rank_distance_per_query(part, pool=part_pool))
            tops = top_languages(part, pool=part_pool)
            queries.append(tops.queries)
            langs.append(tops.langs)
    absent = sorted(set(pool) - ranked)
    if absent:
        raise ValueError(
            f"pool languages {absent} have no relevant item in any run's ranks (they have "
            f"{sorted(ranked)}); check the pool's languages"
        )
    if not distances:
        raise ValueError(f"no benchmark has at least two languages of the pool {list(pool)}")
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
