"""The negative control of the bias analysis (notebook 05): two fine-tuning seeds of one arm
differ by chance only, so the paired comparisons between them should rarely find a difference.
If they often do, the comparison mistakes seed noise for an effect.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as distributions

from xlr.analysis.bias import QUERY_COLUMNS
from xlr.analysis.figure_style import arm_order
from xlr.analysis.intervals import paired_comparison
from xlr.analysis.tables import blank_missing, markdown_table, save_table
from xlr.arms import ZEROSHOT, Arm
from xlr.eval.results import check_table

# Why the negative control does not judge a study of one base (seed_negative_control).
NO_REPLICATE = "one base: two seeds' difference has no replicate to judge it by"
# The stem of its table under a report's tables/: notebook 05 writes it
# (save_negative_control), the landing page reads it (xlr.report_banner.banner).
NEGATIVE_CONTROL_TABLE = "negative_control"


def negative_control(
    per_query: pd.DataFrame, seeds: Sequence[int], level: float = 0.05
) -> pd.DataFrame:
    """The paired p-value between the first two fine-tuning seeds of every trained arm, on the
    caption queries of ``per_query`` (a rank distance table), one row per benchmark and arm,
    with a ``result``: ``pass`` when the seeds do not differ at ``level``, ``fail`` when they do.
    Fallbacks of one adapter arm that score alike (every fallback in a seen-language pool) share
    one row, whose ``note`` names the others.

    Seeds differ by chance only, so the p-values should rarely fall below the test level (about
    a ``level`` share of rows fail by chance); if they often do, arm differences must be judged
    against the spread between seeds, not the intervals. With fewer than two seeds there is
    nothing to compare: one row says so, with result ``not run``. With one base, each row is
    ``not run`` with :data:`NO_REPLICATE` as its note (:func:`seed_negative_control`).
    """
    captions = per_query[per_query["query_kind"] == "caption"]
    arms = arm_order([a for a in captions["arm"].unique() if a != ZEROSHOT.name])
    if len(seeds) < 2 or not arms:
        note = (
            f"needs two run.seeds and a trained arm; this run has {len(seeds)} seed(s) "
            "(params/synthetic.yaml has two)"
        )
        return pd.DataFrame([{"benchmark": "every benchmark", "task": "every task",
                              "arm": "every trained arm",
                              "seed_a": pd.NA, "seed_b": pd.NA, "p_value": np.nan,
                              "result": "not run", "note": note}])  # fmt: skip
    seed_a, seed_b = seeds[:2]
    rows = []
    for (benchmark, task), table in captions.groupby(["benchmark", "task"], sort=False):
        for arm, twins in _distinct_models(table, arms):
            p_value = seed_negative_control(table, arm, seed_a, seed_b)
            if np.isnan(p_value):
                result, note = "not run", NO_REPLICATE
            elif p_value < level:
                result, note = "fail", f"the seeds differ at p < {level}"
            else:
                result, note = "pass", ""
            if twins:
                alike = f"the same model here as {', '.join(twins)} (one row for all)"
                note = f"{note}; {alike}" if note else alike
            rows.append(
                {
                    "benchmark": benchmark,
                    "task": task,
                    "arm": arm,
                    "seed_a": seed_a,
                    "seed_b": seed_b,
                    "p_value": p_value,
                    "result": result,
                    "note": note,
                }
            )
    return pd.DataFrame(rows)


def _distinct_models(table: pd.DataFrame, arms: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Each of ``arms`` unlike every earlier fallback of the same adapters on ``table``, with the
    fallbacks that score exactly as it does: a seen-language pool routes no held-out query, so
    there an adapter arm's fallbacks are one model, to be weighed once."""
    keys = ["base_seed", "seed", "query_idx"]
    kept: dict[str, tuple[str, pd.DataFrame, list[str]]] = {}
    for arm in arms:
        scores = table.loc[table["arm"] == arm, [*keys, "value"]].sort_values(keys)
        scores = scores.reset_index(drop=True)
        try:
            trained = Arm.parse(arm).with_fallback(None).name
        except ValueError:  # no arm name (a user's own label): a model of its own
            trained = arm
        twin = next((k for k, (t, s, _) in kept.items() if t == trained and s.equals(scores)), None)
        if twin is None:
            kept[arm] = (trained, scores, [])
        else:
            kept[twin][2].append(arm)
    return [(arm, twins) for arm, (_, _, twins) in kept.items()]


class ChancePattern(NamedTuple):
    """How many comparisons failed, of how many, and the chance of that many or more."""

    failed: int
    compared: int
    chance: float


def chance_pattern(table: pd.DataFrame, level: float = 0.05) -> ChancePattern | None:
    """How many of :func:`negative_control`'s rows that ran have p < ``level``, of how many,
    and the binomial probability of that many or more if seeds differ by chance only; None
    when no row ran. With many rows (benchmarks x tasks x arms) a failure or two is expected;
    it is a pattern of failures that says seeds matter. The binomial treats the rows as
    independent; they share images and the seed pair, so the real tail is wider and the
    probability understates chance. ``p_value`` may be text (a saved table's cells)."""
    p_values = pd.to_numeric(table["p_value"], errors="coerce").dropna()
    if p_values.empty:
        return None
    failed, n = int((p_values < level).sum()), len(p_values)
    return ChancePattern(failed, n, float(distributions.binom.sf(failed - 1, n, level)))


def negative_control_summary(table: pd.DataFrame, level: float = 0.05) -> str:
    """One line on :func:`negative_control`'s rows together (:func:`chance_pattern`); when no
    row ran, the line gives their notes (why)."""
    pattern = chance_pattern(table, level)
    if pattern is None:
        notes = table["note"].unique() if "note" in table.columns else []
        return "negative control not run" + "".join(f": {note}" for note in notes[:1])
    failed, n, chance = pattern
    return (
        f"negative control: {failed} of {n} comparisons have p < {level:g}; {n * level:.1f} "
        f"expected by chance; P(>= {failed} by chance) = {chance:.2g} if the rows were "
        "independent (they share images and seeds: read it as a lower bound)"
    )


def save_negative_control(table: pd.DataFrame, directory: str | os.PathLike[str]) -> list[Path]:
    """:func:`negative_control`'s ``table`` saved as ``directory/`` :data:`NEGATIVE_CONTROL_TABLE`
    ``.csv`` and ``.md`` (the report's ``tables/``): the landing page lists it and warns when
    its rows fail more often than chance allows (:func:`xlr.report_banner.banner`), which a run
    otherwise says only in notebook 05. The Markdown copy shows p to three significant digits
    and a blank mark where a row did not run; the CSV keeps the values. Returns the paths."""
    shown = table.assign(p_value=table["p_value"].map(lambda p: f"{p:.3g}", na_action="ignore"))
    return save_table(
        table, directory, NEGATIVE_CONTROL_TABLE, markdown_table(blank_missing(shown))
    )


def seed_negative_control(
    per_query: pd.DataFrame,
    arm: str,
    seed_a: int,
    seed_b: int,
) -> float:
    """The p-value of :func:`paired_comparison` between two fine-tuning seeds of one arm on
    the same queries (paired by base; bases and images are its units, as for arm comparisons),
    or NaN where the difference has no training replicate (:data:`NO_REPLICATE`).

    The negative control of :func:`xlr.analysis.intervals.compare_arms`: seeds of one arm
    differ by chance only, so the p-value should rarely fall below the test level. If it often
    does, the comparison mistakes seed noise for an effect, and arm differences must be judged
    against the spread between seeds, not the intervals.
    With one base the two seeds give one run of differences (training unit ``none``): its
    interval is conditional on that run and covers image noise only, while the difference
    between two seeds is training noise, which more images do not average away; its p-value
    would fall towards 0 as images grow, however alike the seeds are. ``per_query`` must hold
    one benchmark, task and query kind (filter it first).
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
    comparison = paired_comparison(a, b, on)
    if comparison["training_unit"].item() == "none":
        return np.nan
    return float(comparison["p_value"].item())
