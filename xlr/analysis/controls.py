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


def plant_language_penalty(ranks: pd.DataFrame, lang: str, penalty: int) -> pd.DataFrame:
    """Positive control: move every relevant item in ``lang`` down ``penalty`` ranks.

    New rank = rank + ``penalty`` for items in ``lang``; every other item keeps its rank (so
    planted ranks may tie, or pass the gallery's end). This plants the bias a model has against
    a language it learnt poorly: its translations found late. A measure of language bias must
    register it: the rank distance of a query grows by ``penalty`` where ``lang`` was already
    its worst-ranked language, and wherever ``lang`` moves past the query's worst one; it can
    shrink only where ``lang`` was the best-ranked language, by less than the gap to the second.
    """
    if penalty < 0:
        raise ValueError(f"penalty is a number of ranks to move down, at least 0; got {penalty}")
    check_table(ranks, USED_RANK_COLUMNS, "ranks")
    planted = ranks.copy()
    planted["rank"] = ranks["rank"] + np.where(ranks["relevant_lang"] == lang, penalty, 0)
    return planted


def positive_control(
    ranks: pd.DataFrame,
    pool: Sequence[str],
    penalty: int = 50,
    lang: str | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """A planted penalty on one language must raise the zero-shot model's rank distance.

    The zero-shot arm's ranks of one multilingual pool of languages ``pool`` (e.g. task
    ``multilingual``) get their ``lang`` items moved down ``penalty`` ranks
    (:func:`plant_language_penalty`); the paired comparison of planted against real rank
    distance must exclude zero for caption queries. ``lang`` defaults to the pool's last
    language (in the study's order, a held-out one): a language the model already finds late,
    as the bias it plants would. Penalising the language a model finds first (English, for a
    LAION model's image queries) shrinks many distances instead, since the second-best language
    becomes the nearest. Returns the comparison with a
    ``passed`` column; raises if the caption queries did not pass, since a bias measure that
    cannot see a planted bias cannot be trusted with a real one.
    """
    lang = lang or pool[-1]
    if lang not in pool:
        raise ValueError(f"the planted language {lang!r} is not in the pool {list(pool)}")
    base = ranks[ranks["arm"] == ZEROSHOT.name]
    if base.empty:
        raise ValueError("the positive control plants a bias in the zero-shot arm: evaluate it")
    planted_name = f"{ZEROSHOT.name}+{lang}-{penalty}"
    penalised = plant_language_penalty(base, lang, penalty).assign(arm=planted_name)
    per_query = rank_distance_per_query(pd.concat([base, penalised]), pool=pool)
    on = ["benchmark", "task", "query_idx", "base_seed"]
    table = compare_arms(per_query, planted_name, ZEROSHOT.name, on, n_resamples, confidence)
    table["passed"] = table["low"] > 0
    captions = table[table["query_kind"] == "caption"]
    if captions.empty or not captions["passed"].all():
        raise AssertionError(
            f"positive control failed: {lang} items moved down {penalty} ranks went unseen by "
            f"the rank distance\n{captions.to_string()}"
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
