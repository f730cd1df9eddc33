"""Intervals and paired tests over per-query values: each arm's mean with a bootstrap interval,
paired differences between arms, the spread over seeds.

Per-query tables come from :mod:`xlr.analysis.bias` (rank distance, preferences) or
:func:`xlr.eval.metrics.per_query_values` (recall, mAP), so every figure, table and claim of the
study draws its interval from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from xlr.analysis.bias import QUERY_COLUMNS
from xlr.analysis.stats import (
    bootstrap_mean,
    paired_bootstrap_difference,
    seed_summary,
    sign_flip_test,
)
from xlr.eval.metrics import DEFAULT_KS, per_query_values
from xlr.eval.results import check_table


def summarize_with_ci(
    ranks: pd.DataFrame,
    metric: str,
    by: Sequence[str] = ("arm", "benchmark", "task", "query_lang", "target_lang"),
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    strata: str | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> pd.DataFrame:
    """Mean of a per-query metric with a percentile-bootstrap interval over queries, per group.

    ``by`` are ranks columns or ``target_lang`` (the pool, ``all`` or ``seen``, for the
    multilingual tasks, else the relevant items' language). With ``strata`` (e.g.
    ``query_lang``) the estimate is the macro mean over strata, resampled within each. Groups
    keep missing seeds (the zero-shot arm).
    """
    values = per_query_values(ranks, metric, ks, extra=[c for c in by if c in ranks.columns])
    rows = []
    for group, part in values.groupby(list(by), dropna=False, sort=False):
        labels = part[strata].to_numpy() if strata else None
        interval = bootstrap_mean(
            part["value"].to_numpy(), n_resamples, confidence, seed, strata=labels
        )
        rows.append(
            dict(zip(by, group, strict=True))
            | {
                "metric": metric,
                "estimate": interval.estimate,
                "low": interval.low,
                "high": interval.high,
                "n": interval.n,
                "confidence": confidence,
            }
        )
    return pd.DataFrame(rows)


PAIR_KEYS: tuple[str, ...] = ("benchmark", "task", "query_idx", "base_seed", "seed")


ARM_SUMMARY_KEYS: tuple[str, ...] = ("arm", "benchmark", "task", "query_kind")


_UNIT_KEYS = ["benchmark", "task", "query_kind", "query_lang", "query_idx"]


def _query_units(per_query: pd.DataFrame) -> pd.DataFrame:
    """One row per query (:data:`_UNIT_KEYS`), its ``value`` averaged over seeds and bases.

    The query is the resampling unit: the same query scored under several seeds is one piece of
    evidence about the query population, not several; the seed spread is :func:`seed_spread`.
    """
    return per_query.groupby(_UNIT_KEYS, sort=False, dropna=False)["value"].mean().reset_index()


def bootstrap_by_arm(
    per_query: pd.DataFrame,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    rng: np.random.Generator | int = 0,
) -> pd.DataFrame:
    """Bootstrap interval over queries of each arm's macro mean, per benchmark, task, query kind.

    Each query's value is first averaged over the seeds and bases it ran in, then queries are
    resampled within their query language (``strata``) so the macro mean keeps its weights.
    Returns ``estimate, low, high, n`` (queries) and ``confidence``.
    """
    check_table(per_query, [*QUERY_COLUMNS, "value"], "per-query")
    rng = np.random.default_rng(rng)
    rows = []
    for keys, group in per_query.groupby(list(ARM_SUMMARY_KEYS), sort=True, dropna=False):
        units = _query_units(group)
        interval = bootstrap_mean(
            units["value"].to_numpy(), n_resamples, confidence, rng, units["query_lang"].to_numpy()
        )
        rows.append({**dict(zip(ARM_SUMMARY_KEYS, keys, strict=True)), **vars(interval)})
    return pd.DataFrame(rows)


def paired_units(a: pd.DataFrame, b: pd.DataFrame, on: Sequence[str]) -> pd.DataFrame:
    """Per query unit, the mean ``value_a`` and ``value_b`` of rows joined on ``on``: the pairs
    every paired test of the study (arms, and seeds in the negative control) is computed on."""
    keys = list(dict.fromkeys([*on, *_UNIT_KEYS]))
    try:
        joined = a[[*keys, "value"]].merge(
            b[[*keys, "value"]], on=keys, suffixes=("_a", "_b"), validate="many_to_one"
        )
    except pd.errors.MergeError as error:
        raise ValueError(
            f"the reference side has several rows per {keys}; join on more keys (e.g. seed)"
        ) from error
    if joined.empty:
        raise ValueError(f"the two sides share no query on {keys}; nothing to compare")
    return (
        joined.groupby(_UNIT_KEYS, sort=False, dropna=False)[["value_a", "value_b"]]
        .mean()
        .reset_index()
    )


def _paired_test(
    units: pd.DataFrame,
    n_resamples: int,
    confidence: float,
    n_permutations: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    a, b = units["value_a"].to_numpy(), units["value_b"].to_numpy()
    interval = paired_bootstrap_difference(
        a, b, n_resamples, confidence, rng, units["query_lang"].to_numpy()
    )
    return {**vars(interval), "p_value": sign_flip_test(a, b, n_permutations, rng)}


def compare_arms(
    per_query: pd.DataFrame,
    arm_a: str,
    arm_b: str,
    on: Sequence[str] = PAIR_KEYS,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    n_permutations: int = 10_000,
    rng: np.random.Generator | int = 0,
) -> pd.DataFrame:
    """Paired comparison arm_a - arm_b on the same queries, per benchmark, task and query kind.

    Rows are joined on ``on`` (default: same query, base and fine-tuning seed); to compare every
    seed of an arm against a reference scored once per base (the zero-shot model), leave
    ``seed`` out of ``on``. Each query's differences are averaged over the runs it was paired in;
    ``estimate, low, high`` is the bootstrap interval of the macro mean difference (strata = query
    language) and ``p_value`` the two-sided sign-flip test of the plain mean difference (the two
    coincide when every query language has as many queries, as on parallel benchmarks).
    """
    check_table(per_query, [*QUERY_COLUMNS, "value"], "per-query")
    rng = np.random.default_rng(rng)
    sides = [per_query[per_query["arm"] == arm] for arm in (arm_a, arm_b)]
    for arm, side in zip((arm_a, arm_b), sides, strict=True):
        if side.empty:
            raise ValueError(
                f"arm {arm!r} is not in the table (arms: {sorted(per_query['arm'].unique())})"
            )
    units = paired_units(*sides, on)
    rows = []
    for keys, group in units.groupby(["benchmark", "task", "query_kind"], sort=True, dropna=False):
        test = _paired_test(group, n_resamples, confidence, n_permutations, rng)
        names = dict(zip(("benchmark", "task", "query_kind"), keys, strict=True))
        rows.append({**names, "arm_a": arm_a, "arm_b": arm_b, **test})
    return pd.DataFrame(rows)


def seed_spread(per_run: pd.DataFrame, keys: Sequence[str] = ARM_SUMMARY_KEYS) -> pd.DataFrame:
    """Mean and standard deviation (ddof=1) of a per-run ``value`` over seeds and bases.

    ``per_run`` is e.g. :func:`xlr.analysis.bias.macro_mean`, ``preference_divergence`` or
    ``language_fairness`` (after picking its ``value``); ``keys`` are the columns kept.
    """
    check_table(per_run, [*keys, "value"], "per-run")
    rows = [
        {**dict(zip(keys, group_keys, strict=True)), **vars(seed_summary(group["value"]))}
        for group_keys, group in per_run.groupby(list(keys), sort=True, dropna=False)
    ]
    return pd.DataFrame(rows)
