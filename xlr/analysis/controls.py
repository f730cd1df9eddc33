"""Controls of the bias analysis (notebook 05): checks that the measures can see an effect
when one is planted, and do not see one between seeds of the same arm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from xlr.analysis.bias import QUERY_COLUMNS, USED_RANK_COLUMNS, rank_distance_per_query
from xlr.analysis.intervals import compare_arms, paired_units
from xlr.analysis.stats import sign_flip_test
from xlr.arms import ZEROSHOT
from xlr.eval.results import check_table


def plant_same_language_boost(ranks: pd.DataFrame, boost: int) -> pd.DataFrame:
    """Positive control: move every caption query's same-language relevant items up ``boost``.

    New rank = max(1, rank - boost) for items in the query's own language; every other item keeps
    its rank (so planted ranks may tie). A measure of language bias must register the planted
    preference: same-language-first rises, and so does the rank distance wherever the boost
    moves a query's own language ahead of the others (with a boost past every other language it
    becomes the best item, and the RD grows unless that language was the worst-ranked one).
    """
    if boost < 0:
        raise ValueError(f"boost is a number of ranks to move up, at least 0; got {boost}")
    check_table(ranks, USED_RANK_COLUMNS, "ranks")
    own = ranks["relevant_lang"] == ranks["query_lang"]
    planted = ranks.copy()
    planted["rank"] = np.where(own, np.maximum(1, ranks["rank"] - boost), ranks["rank"])
    return planted


def positive_control(
    ranks: pd.DataFrame,
    pool: Sequence[str],
    boost: int = 50,
    n_resamples: int = 1000,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """A planted same-language boost must raise the zero-shot model's rank distance.

    The multilingual ``ranks`` of the zero-shot arm get their same-language items moved up
    ``boost`` ranks (:func:`plant_same_language_boost`); the paired comparison of planted
    against real rank distance over ``pool`` must exclude zero for caption queries. Returns the
    comparison with a ``passed`` column; raises if the caption queries did not pass, since a
    bias measure that cannot see a planted bias cannot be trusted with a real one.
    """
    base = ranks[ranks["arm"] == ZEROSHOT.name]
    if base.empty:
        raise ValueError("the positive control plants a bias in the zero-shot arm: evaluate it")
    planted_name = f"{ZEROSHOT.name}+boost{boost}"
    boosted = plant_same_language_boost(base, boost).assign(arm=planted_name)
    per_query = rank_distance_per_query(pd.concat([base, boosted]), pool=pool)
    on = ["benchmark", "task", "query_idx", "base_seed"]
    table = compare_arms(per_query, planted_name, ZEROSHOT.name, on, n_resamples, confidence)
    table["passed"] = table["low"] > 0
    captions = table[table["query_kind"] == "caption"]
    if captions.empty or not captions["passed"].all():
        raise AssertionError(
            f"positive control failed: a planted same-language boost of {boost} ranks went "
            f"unseen by the rank distance\n{captions.to_string()}"
        )
    return table


def negative_control(per_query: pd.DataFrame, seeds: Sequence[int]) -> pd.DataFrame:
    """Sign-flip p-value between the first two fine-tuning seeds of every trained arm, on the
    caption queries of ``per_query`` (a rank distance table).

    Seeds differ by chance only, so the p-values should rarely fall below the test level; if
    they often do, arm differences must be judged against the seed spread. With fewer than two
    seeds there is nothing to compare: one row says so.
    """
    captions = per_query[per_query["query_kind"] == "caption"]
    arms = sorted(a for a in captions["arm"].unique() if a != ZEROSHOT.name)
    if len(seeds) < 2 or not arms:
        note = "needs two run.seeds and a trained arm (params/synthetic.yaml has them)"
        return pd.DataFrame([{"arm": None, "seed_a": None, "seed_b": None, "p_value": None,
                              "note": note}])  # fmt: skip
    seed_a, seed_b = seeds[:2]
    rows = [
        {
            "arm": arm,
            "seed_a": seed_a,
            "seed_b": seed_b,
            "p_value": seed_negative_control(captions, arm, seed_a, seed_b),
            "note": "",
        }
        for arm in arms
    ]
    return pd.DataFrame(rows)


def seed_negative_control(
    per_query: pd.DataFrame,
    arm: str,
    seed_a: int,
    seed_b: int,
    n_permutations: int = 10_000,
    rng: np.random.Generator | int = 0,
) -> float:
    """Sign-flip p-value between two fine-tuning seeds of one arm on the same queries.

    The negative control of :func:`compare_arms`: seeds of one arm differ by chance only, so the
    p-value should rarely fall below the test level. If it often does, the per-query test is
    detecting seed noise, and arm differences must be judged against :func:`seed_spread`.
    ``per_query`` must hold one benchmark, task and query kind (filter it first).
    """
    check_table(per_query, [*QUERY_COLUMNS, "value"], "per-query")
    runs = per_query[per_query["arm"] == arm]
    groups = runs[["benchmark", "task", "query_kind"]].drop_duplicates()
    if len(groups) != 1:
        raise ValueError(
            f"the negative control compares one benchmark, task and query kind; arm {arm!r} "
            f"has {len(groups)}: filter the table first"
        )
    a, b = (runs[runs["seed"] == seed] for seed in (seed_a, seed_b))
    on = ["benchmark", "task", "query_idx", "base_seed"]
    units = paired_units(a, b, on)
    return sign_flip_test(
        units["value_a"].to_numpy(), units["value_b"].to_numpy(), n_permutations, rng
    )
